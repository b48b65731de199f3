# shellcheck shell=bash
# Shared by the clinic provisioning scripts (sourced, not run). They talk to mosquitto's
# dynamic-security plugin (mosquitto 2.0.11, Debian bookworm) through its JSON control topic.
#
# Why JSON over mosquitto_rr / mosquitto_pub and not mosquitto_ctrl (all checked on 2.0.11):
#   - mosquitto_ctrl exits 0 even when a command fails ("Error: Client not found" on stderr);
#   - its -o option file is ignored (only $XDG_CONFIG_HOME/mosquitto_ctrl is read);
#   - a new client's password goes on its command line (-p, visible in ps) or to a prompt that
#     cannot read a pipe.
#   mosquitto_rr returns the plugin's answer, which names every failed command; but it sends
#   -f/-s payloads the plugin rejects ("Payload not valid JSON"), so commands carrying a password
#   are published with mosquitto_pub -s (stdin) and then checked with mosquitto_rr.
#
# Admin credentials: $CRS_DYNSEC_ADMIN (default /etc/crs-hub/dynsec-admin), a directory readable
# only by root holding two option files, `mosquitto_rr` and `mosquitto_pub`, with the same lines:
#   -h 127.0.0.1
#   -p 1883
#   -u admin
#   -P <the admin password from `mosquitto_ctrl dynsec init`>
# (mosquitto's clients read $XDG_CONFIG_HOME/<client name>; nothing secret is on a command line.)

set -euo pipefail

CRS_DYNSEC_ADMIN="${CRS_DYNSEC_ADMIN:-/etc/crs-hub/dynsec-admin}"
PREFIX="${CRS_TOPIC_PREFIX:-crs/v1}"
# shellcheck disable=SC2016  # the topic's first level is literally "$CONTROL"
CONTROL='$CONTROL/dynamic-security/v1'

die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (apt-get install $2)"
}

need mosquitto_rr mosquitto-clients
need mosquitto_pub mosquitto-clients
need jq jq
if [ ! -r "$CRS_DYNSEC_ADMIN/mosquitto_rr" ] || [ ! -r "$CRS_DYNSEC_ADMIN/mosquitto_pub" ]; then
    die "no admin option files in $CRS_DYNSEC_ADMIN (see deploy/clinic/common.sh)"
fi

# Pseudonymous ids only ([a-z0-9-], nurses may use . and _): never names. "response" is the
# hub's ack-response topic level, so it can never be a username.
check_id() {
    local what="$1" value="$2" pattern='^[a-z0-9][a-z0-9-]{0,63}$'
    [ "$what" = nurse ] && pattern='^[a-z0-9][a-z0-9._-]{0,63}$'
    [[ "$value" =~ $pattern ]] || die "$what id '$value' must match $pattern (a pseudonym)"
    [ "$value" != response ] || die "'response' is reserved"
}

# dynsec COMMANDS_JSON_ARRAY: run the commands, print the plugin's answer; exit 2 naming every
# command that failed, except errors matching $DYNSEC_TOLERATE (a regex, e.g. "not found").
dynsec() {
    local answer failures
    answer=$(XDG_CONFIG_HOME="$CRS_DYNSEC_ADMIN" mosquitto_rr -V 5 -t "$CONTROL" \
        -e "$CONTROL/response" -W 10 -m "{\"commands\":$1}") \
        || die "no answer from the broker's dynamic-security plugin"
    failures=$(jq -r --arg ok "${DYNSEC_TOLERATE:-^$}" \
        '.responses[] | select(.error and (.error | test($ok) | not))
         | "\(.command): \(.error)"' <<<"$answer")
    [ -z "$failures" ] || die "broker refused: $failures"
    printf '%s\n' "$answer"
}

# read_password: the new client's password, one line on stdin (never an argument).
read_password() {
    local password
    IFS= read -r password || true
    [ -n "$password" ] || die "give the new password on stdin (one line), e.g. < file"
    printf '%s' "$password"
}

# create_client USERNAME ROLE [GROUP]: the password comes from stdin (see read_password).
create_client() {
    local username="$1" role="$2" group="${3:-}" password exists
    exists=$(DYNSEC_TOLERATE='not found' dynsec "$(jq -cn --arg u "$username" \
        '[{command:"getClient", username:$u}]')" | jq -r '.responses[0].error // "exists"')
    [ "$exists" != exists ] || die "client '$username' already exists (retire it first)"
    password=$(read_password)
    # The password travels in the payload, on stdin, never on a command line.
    printf '%s' "$password" | jq -cR --arg u "$username" --arg r "$role" --arg g "$group" \
        '{commands:[{command:"createClient", username:$u, password:.,
                     roles:[{rolename:$r}],
                     groups:(if $g == "" then [] else [{groupname:$g}] end)}]}' \
        | XDG_CONFIG_HOME="$CRS_DYNSEC_ADMIN" mosquitto_pub -V 5 -q 1 -t "$CONTROL" -s \
        || die "could not send createClient for '$username'"
    # mosquitto_pub cannot read the answer: check that the client is there now.
    dynsec "$(jq -cn --arg u "$username" '[{command:"getClient", username:$u}]')" >/dev/null
}

# acl TYPE TOPIC [allow|deny] [PRIORITY] -> one JSON ACL object
acl() {
    jq -cn --arg t "$1" --arg topic "$2" --arg a "${3:-allow}" --argjson p "${4:-0}" \
        '{acltype:$t, topic:$topic, allow:($a == "allow"), priority:$p}'
}

# read_acls TOPIC...: subscribe and receive rights on each topic filter, as a JSON array.
read_acls() {
    local topic out=()
    for topic in "$@"; do
        out+=("$(acl subscribePattern "$topic")" "$(acl publishClientReceive "$topic")")
    done
    printf '%s\n' "${out[@]}" | jq -cs .
}

role_exists() {
    DYNSEC_TOLERATE='not found' dynsec "$(jq -cn --arg r "$1" '[{command:"getRole", rolename:$r}]')" \
        | jq -e '.responses[0].error == null' >/dev/null
}

# ensure_team TEAM: group team-TEAM with role care-team-TEAM (read rights on its patients).
ensure_team() {
    local team="$1"
    role_exists "care-team-$team" && return 0
    dynsec "$(jq -cn --arg t "$team" \
        '[{command:"createRole", rolename:("care-team-" + $t)},
          {command:"createGroup", groupname:("team-" + $t),
           roles:[{rolename:("care-team-" + $t)}]}]')" >/dev/null
}

# team_nurses TEAM: usernames in group team-TEAM, one per line.
team_nurses() {
    dynsec "$(jq -cn --arg t "$1" '[{command:"getGroup", groupname:("team-" + $t)}]')" \
        | jq -r '.responses[0].data.group.clients[]?.username'
}

# team_patients TEAM: "hub patient" pairs the team may see, one per line.
team_patients() {
    dynsec "$(jq -cn --arg t "$1" '[{command:"getRole", rolename:("care-team-" + $t)}]')" \
        | jq -r --arg p "$PREFIX/" '.responses[0].data.role.acls[]
              | select(.acltype == "subscribePattern") | .topic
              | select(startswith($p) and endswith("/#")) | ltrimstr($p) | rtrimstr("/#")
              | split("/") | select(length == 2) | join(" ")' | sort -u
}

# ack_acl HUB PATIENT NURSE: the one topic a nurse may acknowledge on for one patient.
ack_acl() {
    acl publishClientSend "$PREFIX/$1/$2/alert/ack/$3"
}

# add_role_acls ROLE ACLS_JSON_ARRAY
add_role_acls() {
    local commands
    commands=$(jq -c --arg r "$1" 'map({command:"addRoleACL", rolename:$r} + .)' <<<"$2")
    [ "$commands" = "[]" ] || dynsec "$commands" >/dev/null
}
