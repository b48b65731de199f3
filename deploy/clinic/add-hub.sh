#!/usr/bin/env bash
# add-hub.sh HUB_ID PATIENT_ID TEAM < password
# A hub (or its bridge) may write and read its own tree only, never an acknowledgement; TEAM
# may read this patient's topics, and each of its nurses may acknowledge for them.
# shellcheck source=deploy/clinic/common.sh
source "$(dirname "$0")/common.sh"
[ $# -eq 3 ] || die "usage: add-hub.sh HUB_ID PATIENT_ID TEAM < password"
hub="$1" patient="$2" team="$3"
check_id hub "$hub"
check_id patient "$patient"
check_id team "$team"
role_exists "hub-$hub" && die "hub '$hub' already exists (retire it first)"
ensure_team "$team"

tree="$PREFIX/$hub/#"
acls=$(jq -cs . <<<"$(acl publishClientSend "$tree")
$(acl publishClientSend "$PREFIX/$hub/+/alert/ack/+" deny 10)
$(acl subscribePattern "$tree")
$(acl publishClientReceive "$tree")")
dynsec "$(jq -cn --arg r "hub-$hub" --argjson a "$acls" \
    '[{command:"createRole", rolename:$r, acls:$a}]')" >/dev/null
create_client "$hub" "hub-$hub"

add_role_acls "care-team-$team" "$(read_acls "$PREFIX/$hub/status" "$PREFIX/$hub/bridge/state" \
    "$PREFIX/$hub/$patient/#")"
while IFS= read -r nurse; do
    [ -n "$nurse" ] || continue
    add_role_acls "nurse-$nurse" "[$(ack_acl "$hub" "$patient" "$nurse")]"
done < <(team_nurses "$team")
echo "add-hub: $hub (patient $patient) for $team"
