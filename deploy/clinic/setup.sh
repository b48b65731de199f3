#!/usr/bin/env bash
# Once per clinic broker, after `mosquitto_ctrl dynsec init`: deny by default, take the admin's
# read access to every topic away (it administers identities; it reads no health data), and
# create the shared `console` role. Safe to run again.
# shellcheck source=deploy/clinic/common.sh
source "$(dirname "$0")/common.sh"

dynsec "$(jq -cn '[{command:"setDefaultACLAccess", acls:[
    {acltype:"publishClientSend", allow:false}, {acltype:"publishClientReceive", allow:false},
    {acltype:"subscribe", allow:false}, {acltype:"unsubscribe", allow:true}]}]')" >/dev/null

DYNSEC_TOLERATE='ACL not found' dynsec "$(jq -cn '[
    {command:"removeRoleACL", rolename:"admin", acltype:"publishClientReceive", topic:"#"},
    {command:"removeRoleACL", rolename:"admin", acltype:"subscribePattern", topic:"#"}]')" \
    >/dev/null

# The console reads status, alerts, wearable status and vitals of every hub and publishes only
# delivery receipts (docs/delivery.md): acknowledgements go out over each nurse's own login
# (docs/care-team.md).
if ! role_exists console; then
    dynsec '[{"command":"createRole","rolename":"console"}]' >/dev/null
fi
acls=$(read_acls "$PREFIX/+/status" "$PREFIX/+/bridge/state" "$PREFIX/+/+/alert/event" \
    "$PREFIX/+/+/alert/state" "$PREFIX/+/+/device/+/status" "$PREFIX/+/+/vitals" \
    | jq -c --argjson r "$(acl publishClientSend "$PREFIX/+/+/alert/receipt")" '. + [$r]')
DYNSEC_TOLERATE='already exists' add_role_acls console "$acls"
echo "setup: default deny, admin reads nothing, role console ready"
