#!/usr/bin/env bash
# Remove crs-hub installed by deploy/install.sh.
#
#   sudo ./deploy/uninstall.sh            # program, units, mosquitto snippet; keeps data + config
#   sudo ./deploy/uninstall.sh --purge    # also config, passwords, ACL, certificates, the alert
#                                         # journal and readings in /var/lib/crs-hub, the user
#   DESTDIR=/tmp/root ./deploy/uninstall.sh --dry-run [--purge]   # or --root DIR
#
# Apt packages (bluez, mosquitto, ...) stay: other software may use them.
set -euo pipefail

usage() {
    echo "usage: uninstall.sh [--purge] [--dry-run] [--root DIR]"
}

DRY_RUN=0
PURGE=0
ROOT="${DESTDIR:-}"
while (($#)); do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --purge) PURGE=1 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --root=*) ROOT="${1#--root=}" ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done
ROOT="${ROOT%/}"

if ((DRY_RUN)); then
    [[ -n "$ROOT" && -d "$ROOT" ]] || { echo "uninstall.sh: --dry-run needs an existing --root DIR or DESTDIR" >&2; exit 2; }
    ROOT="$(cd "$ROOT" && pwd)"
else
    [[ -z "$ROOT" ]] || { echo "uninstall.sh: --root/DESTDIR only with --dry-run" >&2; exit 2; }
    [[ $EUID -eq 0 ]] || { echo "uninstall.sh: run as root (sudo), or use --dry-run" >&2; exit 1; }
fi

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

remove() { # PATH... below the root
    local path
    for path in "$@"; do
        if [[ -e "$ROOT$path" || -L "$ROOT$path" ]]; then
            rm -rf -- "${ROOT:?}$path" 2>/dev/null || rm -rf -- "$ROOT$path"
            say "removed $path"
        fi
    done
}

say "stopping crs-hub"
run systemctl disable --now crs-hub.service
remove /etc/systemd/system/crs-hub.service "/etc/systemd/system/crs-hub-failure@.service"
run systemctl daemon-reload
run systemctl reset-failed crs-hub.service

say "mosquitto: removing the crs-hub listeners"
remove /etc/mosquitto/conf.d/crs-hub.conf /etc/mosquitto/conf.d/bridge-clinic.conf
run systemctl try-restart mosquitto.service

remove /opt/crs-hub

if ((PURGE)); then
    say "purging configuration, credentials and health data"
    remove /etc/crs-hub /var/lib/crs-hub \
        /etc/mosquitto/crs-hub.acl /etc/mosquitto/crs-hub.passwd \
        /etc/mosquitto/certs/crs-hub-ca.key /etc/mosquitto/certs/crs-hub-ca.crt \
        /etc/mosquitto/certs/crs-hub-server.key /etc/mosquitto/certs/crs-hub-server.crt
    run_sh "if getent passwd crs-hub >/dev/null; then userdel crs-hub; fi"
    run_sh "if getent group crs-hub >/dev/null; then groupdel crs-hub; fi"
    say "retained crs/v1/... messages may still be in mosquitto's database; clear them with an"
    say "empty retained publish (see docs/raspberry-pi.md) before reusing the broker"
else
    say "kept /etc/crs-hub, /var/lib/crs-hub (alert journal, readings) and the mosquitto"
    say "password file, ACL and certificates; run with --purge to remove them too"
fi
