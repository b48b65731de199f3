#!/usr/bin/env bash
# Install or upgrade crs-hub on Raspberry Pi OS Bookworm. Safe to run again: files the admin is
# expected to edit (config, mosquitto ACL, passwords, certificates) are created once and kept.
#
#   sudo ./deploy/install.sh                          # from a checkout of the repository
#   DESTDIR=/tmp/root ./deploy/install.sh --dry-run   # or: --root /tmp/root --dry-run
#
# A dry run writes the files under the given root and prints (never runs) the commands that
# need root on a real system: apt-get, useradd, chown, pip into /opt, systemctl.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install.sh [--dry-run] [--root DIR]

  --dry-run   write files under DIR (or $DESTDIR) and print the privileged commands instead
              of running them
  --root DIR  install under DIR instead of / (only together with --dry-run)

environment: CRS_HUB_ID=hub-...  the hub id for a new config (default: hub-<6 random hex>)
EOF
}

DRY_RUN=0
ROOT="${DESTDIR:-}"
while (($#)); do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --root=*) ROOT="${1#--root=}" ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done
ROOT="${ROOT%/}"

if ((DRY_RUN)); then
    # Refuse to "dry run" onto the real system: the whole point is a scratch root.
    [[ -n "$ROOT" ]] || { echo "install.sh: --dry-run needs --root DIR or DESTDIR" >&2; exit 2; }
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
else
    [[ -z "$ROOT" ]] || { echo "install.sh: --root/DESTDIR only with --dry-run" >&2; exit 2; }
    [[ $EUID -eq 0 ]] || { echo "install.sh: run as root (sudo), or use --dry-run" >&2; exit 1; }
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=/opt/crs-hub/venv
SERVICE_USER=crs-hub
APT_PACKAGES=(python3-venv bluez mosquitto mosquitto-clients openssl espeak-ng alsa-utils)

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

set_owner() { # OWNER:GROUP PATH. A dry run prints the command for the real path; root:root it
    # leaves out, since that is what the real install gets from running as root anyway.
    if ((!DRY_RUN)) || [[ "$1" != root:root ]]; then
        run chown "$1" "$2"
    fi
}

install_dir() { # PATH MODE OWNER:GROUP
    mkdir -p "$ROOT$1"
    chmod "$2" "$ROOT$1"
    set_owner "$3" "$1"
}

install_file() { # SRC DEST MODE OWNER:GROUP  (replaced on every run)
    mkdir -p "$(dirname "$ROOT$2")"
    if ! cmp -s "$1" "$ROOT$2" 2>/dev/null; then
        install -m "$3" "$1" "$ROOT$2"
    fi
    chmod "$3" "$ROOT$2"
    set_owner "$4" "$2"
}

keep_or_install() { # SRC DEST MODE OWNER:GROUP  (created once; local edits are kept)
    if [[ -e "$ROOT$2" ]]; then
        say "keeping existing $2"
        chmod "$3" "$ROOT$2"
        set_owner "$4" "$2"
    else
        install_file "$@"
    fi
}

toml_get() { # FILE SECTION KEY -> value on stdout (python3 is part of Raspberry Pi OS)
    python3 - "$1" "$2" "$3" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f).get(sys.argv[2], {}).get(sys.argv[3], ""))
PY
}

# --- 1. packages and the service user ---------------------------------------------------------
say "packages: ${APT_PACKAGES[*]}"
run apt-get update
run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"

say "service user $SERVICE_USER (static, in groups bluetooth for BlueZ's D-Bus policy and audio for the alarm sound)"
run_sh "getent group $SERVICE_USER >/dev/null || groupadd --system $SERVICE_USER"
run_sh "getent passwd $SERVICE_USER >/dev/null || useradd --system --gid $SERVICE_USER --groups bluetooth,audio --home-dir /var/lib/crs-hub --no-create-home --shell /usr/sbin/nologin $SERVICE_USER"
run usermod --append --groups bluetooth,audio "$SERVICE_USER"

# --- 2. the program: a venv under /opt, owned by root so the service cannot rewrite itself -----
say "crs-hub into $VENV"
install_dir /opt/crs-hub 0755 root:root
if [[ ! -x "$ROOT$VENV/bin/python" ]]; then
    run python3 -m venv "$VENV"
fi
run "$VENV/bin/pip" install --quiet --upgrade "$REPO"
install_file "$REPO/docs/raspberry-pi.md" /opt/crs-hub/share/doc/raspberry-pi.md 0644 root:root
install_file "$REPO/deploy/mosquitto/bridge-clinic.conf.template" \
    /opt/crs-hub/share/mosquitto/bridge-clinic.conf.template 0644 root:root

# --- 3. configuration: readable by the service only ------------------------------------------
say "configuration in /etc/crs-hub"
install_dir /etc/crs-hub 0750 "root:$SERVICE_USER"
CONFIG=/etc/crs-hub/config.toml
if [[ ! -e "$ROOT$CONFIG" ]]; then
    example="$REPO/config.example.toml"
    [[ -f "$example" ]] || { echo "install.sh: $example is missing" >&2; exit 1; }
    hub_id="${CRS_HUB_ID:-hub-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}"
    # hub-... keeps hub usernames apart from patient (p-...) and team names in the ACL patterns.
    [[ "$hub_id" =~ ^hub-[a-z0-9-]+$ ]] || { echo "install.sh: bad hub id '$hub_id'" >&2; exit 2; }
    example_id="$(toml_get "$example" hub id)"
    tmp="$(mktemp)"
    trap 'rm -f "$tmp"' EXIT
    sed "s/\"$example_id\"/\"$hub_id\"/g" "$example" >"$tmp"
    install_file "$tmp" "$CONFIG" 0640 "root:$SERVICE_USER"
    rm -f "$tmp"
    say "new $CONFIG for hub $hub_id: set the patient and wearables, then check-config"
else
    say "keeping existing $CONFIG"
    chmod 0640 "$ROOT$CONFIG"
    set_owner "root:$SERVICE_USER" "$CONFIG"
fi
HUB_ID="$(toml_get "$ROOT$CONFIG" mqtt username)"
[[ -n "$HUB_ID" ]] || HUB_ID="$(toml_get "$ROOT$CONFIG" hub id)"

PASSWORD_FILE=/etc/crs-hub/mqtt-password
if [[ ! -e "$ROOT$PASSWORD_FILE" ]]; then
    (umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$ROOT$PASSWORD_FILE"; echo >>"$ROOT$PASSWORD_FILE")
fi
chmod 0640 "$ROOT$PASSWORD_FILE"
set_owner "root:$SERVICE_USER" "$PASSWORD_FILE"

# --- 4. mosquitto: loopback + TLS listeners, passwords, ACL -----------------------------------
say "mosquitto configuration"
install_file "$REPO/deploy/mosquitto/crs-hub.conf" /etc/mosquitto/conf.d/crs-hub.conf 0644 root:root
keep_or_install "$REPO/deploy/mosquitto/crs-hub.acl" /etc/mosquitto/crs-hub.acl 0640 root:mosquitto

BROKER_PASSWD=/etc/mosquitto/crs-hub.passwd
if [[ ! -e "$ROOT$BROKER_PASSWD" ]]; then
    (umask 077; : >"$ROOT$BROKER_PASSWD")
fi
chmod 0640 "$ROOT$BROKER_PASSWD"
set_owner root:mosquitto "$BROKER_PASSWD"
if ! grep -q "^$HUB_ID:" "$ROOT$BROKER_PASSWD"; then
    if command -v mosquitto_passwd >/dev/null; then
        # Hash a one-line plain file with -U, so the password never appears on a command line.
        entry="$(mktemp)"
        (umask 077; printf '%s:%s\n' "$HUB_ID" "$(head -n1 "$ROOT$PASSWORD_FILE")" >"$entry")
        mosquitto_passwd -U "$entry"
        cat "$entry" >>"$ROOT$BROKER_PASSWD"
        rm -f "$entry"
        say "broker user $HUB_ID added to $BROKER_PASSWD"
    elif ((DRY_RUN)); then
        run_sh "mosquitto_passwd $BROKER_PASSWD $HUB_ID  # password: the one in $PASSWORD_FILE"
    else
        echo "install.sh: mosquitto_passwd is missing (apt-get install mosquitto)" >&2
        exit 1
    fi
fi

CERTS=/etc/mosquitto/certs
install_dir "$CERTS" 0755 root:root
if [[ ! -e "$ROOT$CERTS/crs-hub-server.crt" ]]; then
    if command -v openssl >/dev/null; then
        say "a local CA and server certificate for the TLS listener (give apps crs-hub-ca.crt)"
        host="$(hostname 2>/dev/null || echo raspberrypi)"
        work="$(mktemp -d)"
        ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.crt" -days 3650 \
            -subj "/CN=crs-hub local CA ($host)" 2>/dev/null
        openssl req "${ec[@]}" -keyout "$work/server.key" -out "$work/server.csr" \
            -subj "/CN=$host.local" 2>/dev/null
        printf 'subjectAltName=DNS:%s.local,DNS:%s,DNS:localhost,IP:127.0.0.1\n' "$host" "$host" >"$work/san"
        openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
            -CAcreateserial -out "$work/server.crt" -days 825 -extfile "$work/san" 2>/dev/null
        install_file "$work/ca.key" "$CERTS/crs-hub-ca.key" 0600 root:root
        install_file "$work/ca.crt" "$CERTS/crs-hub-ca.crt" 0644 root:root
        install_file "$work/server.key" "$CERTS/crs-hub-server.key" 0640 root:mosquitto
        install_file "$work/server.crt" "$CERTS/crs-hub-server.crt" 0644 root:root
        rm -rf "$work"
    elif ((DRY_RUN)); then
        run_sh "openssl ...  # create $CERTS/crs-hub-{ca,server}.{crt,key}"
    else
        echo "install.sh: openssl is missing (apt-get install openssl)" >&2
        exit 1
    fi
fi

# --- 5. systemd -------------------------------------------------------------------------------
say "systemd units"
install_file "$REPO/systemd/crs-hub.service" /etc/systemd/system/crs-hub.service 0644 root:root
install_file "$REPO/systemd/crs-hub-failure@.service" "/etc/systemd/system/crs-hub-failure@.service" 0644 root:root
run systemctl daemon-reload
run systemctl enable --now bluetooth.service
run systemctl enable mosquitto.service
run systemctl restart mosquitto.service
run systemctl enable crs-hub.service
# An upgrade restarts a running hub; a first install waits until the config is filled in.
run systemctl try-restart crs-hub.service
if ((DRY_RUN)); then
    run "$VENV/bin/crs-hub" check-config "$CONFIG"
else
    "$VENV/bin/crs-hub" check-config "$CONFIG" || say "the config needs attention (see above)"
fi

# --- 6. the status page's access code: created once and shown once; only its hash is kept ----
say "status page access code (shown once: give it to the patient; replace it with 'crs-hub access-code')"
install_dir /var/lib/crs-hub 0700 "$SERVICE_USER:$SERVICE_USER"
run runuser -u "$SERVICE_USER" -- "$VENV/bin/crs-hub" access-code --config "$CONFIG" --if-missing

say "done. Next: edit $CONFIG, run 'crs-hub check-config', then 'systemctl start crs-hub'"
