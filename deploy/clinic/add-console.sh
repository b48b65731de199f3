#!/usr/bin/env bash
# add-console.sh USERNAME < password: the identity `crs-hub console` logs in with ([mqtt]).
# shellcheck source=deploy/clinic/common.sh
source "$(dirname "$0")/common.sh"
[ $# -eq 1 ] || die "usage: add-console.sh USERNAME < password"
check_id console "$1"
role_exists console || die "run setup.sh first"
create_client "$1" console
echo "add-console: $1"
