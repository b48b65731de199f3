#!/usr/bin/env bash
# Set up a development checkout on a Debian-family machine: the system packages the demo (or,
# with --test, the test suite) needs, and a virtual environment in .venv with crs-hub installed.
# Safe to run again. Used by the README's quick start and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

extra="demo"
if [ "${1:-}" = "--test" ]; then
    extra="test"
fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing=()
have mosquitto || missing+=(mosquitto)
have dbus-daemon || missing+=(dbus-daemon)
# The hub's own alarm: espeak-ng speaks the message, aplay (alsa-utils) plays it.
have espeak-ng || missing+=(espeak-ng)
have aplay || missing+=(alsa-utils)
if [ "$extra" = "test" ]; then
    have mosquitto_passwd || missing+=(mosquitto-clients)
    have shellcheck || missing+=(shellcheck)
    have systemd-analyze || missing+=(systemd)
    have openssl || missing+=(openssl)
    # Browser tests (status page, console): Debian's own chromium and its driver, never a download.
    have chromium || missing+=(chromium)
    have chromedriver || missing+=(chromium-driver)
    # The annunciator's tests measure the WAV files it writes (length, loudness).
    have sox || missing+=(sox)
    # The clinic's dynamic-security scripts (console tests): mosquitto_rr/mosquitto_pub and jq.
    have mosquitto_rr || missing+=(mosquitto-clients)
    have jq || missing+=(jq)
fi
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ] && ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "dev-setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$extra]"
echo "dev-setup: ready (.venv with crs-hub[$extra])"
