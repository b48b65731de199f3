#!/usr/bin/env bash
# add-nurse.sh USERNAME TEAM < password
# A nurse reads the team's patients (group team-TEAM) and acknowledges on
# .../alert/ack/USERNAME for those patients only: one ACL per patient in the nurse's own role,
# because dynsec in mosquitto 2.0.11 has no %u (docs/care-team.md). The same password is the
# nurse's console login: put the printed hash in console.toml.
# shellcheck source=deploy/clinic/common.sh
source "$(dirname "$0")/common.sh"
[ $# -eq 2 ] || die "usage: add-nurse.sh USERNAME TEAM < password"
nurse="$1" team="$2"
check_id nurse "$nurse"
check_id team "$team"
role_exists "nurse-$nurse" && die "nurse '$nurse' already exists (retire first)"
ensure_team "$team"
acls=()
while read -r hub patient; do
    [ -n "$hub" ] && acls+=("$(ack_acl "$hub" "$patient" "$nurse")")
done < <(team_patients "$team")
json='[]'
if [ "${#acls[@]}" -gt 0 ]; then
    json=$(printf '%s\n' "${acls[@]}" | jq -cs .)
fi
password=$(read_password)
dynsec "$(jq -cn --arg r "nurse-$nurse" --argjson a "$json" \
    '[{command:"createRole", rolename:$r, acls:$a}]')" >/dev/null
printf '%s\n' "$password" | create_client "$nurse" "nurse-$nurse" "team-$team"
echo "add-nurse: $nurse in $team (${#acls[@]} patient(s))"
if [ -n "${CRS_HUB:-}" ]; then
    printf '[[nurses]]\nusername = "%s"\nteam = "%s"\npassword_hash = "%s"\n' "$nurse" "$team" \
        "$(printf '%s\n' "$password" | "$CRS_HUB" console --hash-password)"
fi
