# shellcheck shell=bash
# Shared helpers for scripts/test, scripts/leakcheck and scripts/check.sh.
# Source it; it defines functions and SIGIL_ROOT (the repository root) and changes nothing else.

SIGIL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export SIGIL_ROOT

# section TITLE: a header that stands out in a long CI log.
section() {
    printf '\n==> %s\n' "$*"
}

# note TEXT: one indented progress line.
note() {
    printf '    %s\n' "$*"
}

# die TEXT: one clear line on stderr, then exit 1.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# as_root CMD...: run CMD as root (directly when we are root, else through sudo if there is one).
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root to run: $* (run as root, or install it by hand)"
    fi
}

# Exit hooks: on_exit CMD registers CMD (a string evaluated at exit); hooks run in reverse order of
# registration, each one even if an earlier one failed, with the script's exit status in
# SIGIL_EXIT_STATUS. INT/TERM turn into a normal exit so the hooks run.
_sigil_exit_hooks=()
SIGIL_EXIT_STATUS=0
on_exit() {
    _sigil_exit_hooks+=("$1")
}
_sigil_run_exit_hooks() {
    local status=$? i
    # shellcheck disable=SC2034 # read by the hooks
    SIGIL_EXIT_STATUS=$status
    set +e
    for ((i = ${#_sigil_exit_hooks[@]} - 1; i >= 0; i--)); do
        eval "${_sigil_exit_hooks[i]}"
    done
    exit "$status"
}
trap _sigil_run_exit_hooks EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Swift lives in /opt/swift on the project's machines; make sure it is on PATH.
if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
    PATH="/opt/swift/usr/bin:$PATH"
    export PATH
fi
