#!/usr/bin/env bash
# retire.sh hub|patient-app|nurse|console ID
# Deletes the identity and its own role. A retired hub also leaves every team's and nurse's
# ACLs; its retained messages stop being delivered (check_retain_source in the broker config).
# shellcheck source=deploy/clinic/common.sh
source "$(dirname "$0")/common.sh"
[ $# -eq 2 ] || die "usage: retire.sh hub|patient-app|nurse|console ID"
kind="$1" id="$2"
case "$kind" in
    hub | patient-app | console) check_id "$kind" "$id" ;;
    nurse) check_id nurse "$id" ;;
    *) die "unknown kind '$kind' (hub, patient-app, nurse or console)" ;;
esac

commands=$(jq -cn --arg u "$id" '[{command:"deleteClient", username:$u}]')
case "$kind" in
    hub | patient-app | nurse)
        commands=$(jq -c --arg r "$kind-$id" '. + [{command:"deleteRole", rolename:$r}]' \
            <<<"$commands") ;;
esac
if [ "$kind" = hub ]; then
    # Every ACL on this hub's topics, in any care-team or nurse role.
    roles=$(dynsec '[{"command":"listRoles","count":-1}]' \
        | jq -c '.responses[0].data.roles | map(select(startswith("care-team-") or startswith("nurse-")))')
    gets=$(jq -c 'map({command:"getRole", rolename:.})' <<<"$roles")
    if [ "$gets" != "[]" ]; then
        removals=$(dynsec "$gets" | jq -c --arg p "$PREFIX/$id/" \
            '[.responses[].data.role as $r | $r.acls[] | select(.topic | startswith($p))
              | {command:"removeRoleACL", rolename:$r.rolename, acltype, topic}]')
        commands=$(jq -c --argjson more "$removals" '. + $more' <<<"$commands")
    fi
fi
DYNSEC_TOLERATE='not found' dynsec "$commands" >/dev/null
echo "retire: $kind $id"
