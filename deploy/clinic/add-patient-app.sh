#!/usr/bin/env bash
# add-patient-app.sh HUB_ID PATIENT_ID < password
# The patient's app logs in as PATIENT_ID and reads its own alerts; it publishes nothing.
# shellcheck source=deploy/clinic/common.sh
source "$(dirname "$0")/common.sh"
[ $# -eq 2 ] || die "usage: add-patient-app.sh HUB_ID PATIENT_ID < password"
hub="$1" patient="$2"
check_id hub "$hub"
check_id patient "$patient"
role_exists "patient-app-$patient" && die "patient app '$patient' already exists"
acls=$(read_acls "$PREFIX/$hub/$patient/alert/event" "$PREFIX/$hub/$patient/alert/state")
dynsec "$(jq -cn --arg r "patient-app-$patient" --argjson a "$acls" \
    '[{command:"createRole", rolename:$r, acls:$a}]')" >/dev/null
create_client "$patient" "patient-app-$patient"
echo "add-patient-app: $patient (hub $hub)"
