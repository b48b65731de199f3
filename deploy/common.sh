# Shared by install.sh and uninstall.sh (sourced; both set DRY_RUN before using these).
# shellcheck shell=bash

say() { printf '==> %s\n' "$*"; }

# Privileged commands: printed in a dry run, run otherwise.
run() {
    if ((DRY_RUN)); then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

run_sh() { # a shell snippet, shown as written
    if ((DRY_RUN)); then
        printf '+ %s\n' "$1"
    else
        sh -c "$1"
    fi
}
