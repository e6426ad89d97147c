# shellcheck shell=bash
# A throw-away PostgreSQL cluster for the store contract tests and the integration tests.
# postgres_start makes one in a fresh temporary directory (listening on 127.0.0.1 only, on a free
# port, unix socket in that directory, trust authentication: local test use only), creates the
# database sigil_test, exports SIGIL_TEST_POSTGRES_URL, and registers postgres_stop, which stops the
# server and deletes the directory, as an exit hook. Needs lib/common.sh sourced first.
#
# If SIGIL_TEST_POSTGRES_URL is already set, that server is used and nothing is started.

SIGIL_PG_DIR=""
SIGIL_PG_RUN=()

# The newest PostgreSQL server installed by Debian's packages (15 on Debian 12).
_postgres_bindir() {
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
    [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]] ||
        die "no PostgreSQL server under /usr/lib/postgresql (Debian package postgresql)"
    printf '%s\n' "$dir"
}

_free_port() {
    local python=python3
    if declare -F sigil_python >/dev/null; then python="$(sigil_python)"; fi
    "$python" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Runs a PostgreSQL tool as the cluster's owner: initdb refuses root, so root runs it as `postgres`.
_pg() {
    (cd "$SIGIL_PG_DIR" && "${SIGIL_PG_RUN[@]}" "$@")
}

postgres_start() {
    if [[ -n ${SIGIL_TEST_POSTGRES_URL:-} ]]; then
        note "using the server in SIGIL_TEST_POSTGRES_URL"
        return 0
    fi
    local bindir port attempt started=0
    bindir="$(_postgres_bindir)"
    SIGIL_PG_DIR="$(mktemp -d /tmp/sigil-pg.XXXXXX)"
    on_exit postgres_stop
    if [[ $EUID -eq 0 ]]; then
        id -u postgres >/dev/null 2>&1 || die "no 'postgres' user to run the test cluster as"
        chown postgres: "$SIGIL_PG_DIR"
        SIGIL_PG_RUN=(runuser -u postgres --)
    else
        SIGIL_PG_RUN=()
    fi
    _pg "$bindir/initdb" -D "$SIGIL_PG_DIR/data" -U sigil --auth=trust --no-locale --encoding=UTF8 \
        >"$SIGIL_PG_DIR/initdb.log" 2>&1 || {
        cat "$SIGIL_PG_DIR/initdb.log" >&2
        die "initdb failed"
    }
    # A port is free when we look and may be taken before the server binds it: try a few.
    for attempt in 1 2 3 4 5; do
        port="$(_free_port)"
        if _pg "$bindir/pg_ctl" -D "$SIGIL_PG_DIR/data" -l "$SIGIL_PG_DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$SIGIL_PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null; then
            started=1
            break
        fi
        note "PostgreSQL did not start on port $port (attempt $attempt)"
    done
    if ((started == 0)); then
        tail -n 20 "$SIGIL_PG_DIR/server.log" >&2 || true
        die "could not start PostgreSQL"
    fi
    SIGIL_PG_BINDIR="$bindir"
    _pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U sigil sigil_test
    export SIGIL_TEST_POSTGRES_URL="postgres://sigil@127.0.0.1:$port/sigil_test"
    note "PostgreSQL $("$bindir/postgres" -V | awk '{print $3}') in $SIGIL_PG_DIR"
    note "SIGIL_TEST_POSTGRES_URL=$SIGIL_TEST_POSTGRES_URL"
}

postgres_stop() {
    [[ -n $SIGIL_PG_DIR && -d $SIGIL_PG_DIR ]] || return 0
    if [[ -f $SIGIL_PG_DIR/data/postmaster.pid ]]; then
        _pg "${SIGIL_PG_BINDIR:-$(_postgres_bindir)}/pg_ctl" -D "$SIGIL_PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            _pg "${SIGIL_PG_BINDIR:-$(_postgres_bindir)}/pg_ctl" -D "$SIGIL_PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            true
    fi
    rm -rf "$SIGIL_PG_DIR"
    note "PostgreSQL stopped and $SIGIL_PG_DIR deleted"
    SIGIL_PG_DIR=""
}
