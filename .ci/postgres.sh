# Sourced by .ci/run: a throwaway PostgreSQL server for the multi-worker tuning test.
#
# Installs PostgreSQL from Debian's packages when missing (as root), initialises a data
# folder under a temporary directory, starts the server on 127.0.0.1 only, on a free port,
# as an unprivileged user (initdb refuses root), creates database `optuna`, exports
# CRYO3D_TEST_POSTGRES_URL and stops the server (and removes the folder) on exit.
# Without PostgreSQL (no root to install it) it says so and the test skips.

start_postgres() {
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "ci: installing PostgreSQL from Debian's packages"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        else
            echo "ci: no PostgreSQL and no root to install it: the PostgreSQL tuning test will skip"
            return 0
        fi
    fi
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    PG_DIR=$(mktemp -d /tmp/cryo3d-ci-pg.XXXXXX)
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local run=()
    if [ "$(id -u)" = 0 ]; then
        local user=postgres
        id -u "$user" >/dev/null 2>&1 || user=nobody
        chown "$user" "$PG_DIR"
        chmod 700 "$PG_DIR"
        run=(runuser -u "$user" --)
    fi
    PG_CTL=("${run[@]}" "$bin/pg_ctl")
    "${run[@]}" "$bin/initdb" -D "$PG_DIR/data" -U cryo3d --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log"; return 1; }
    "${PG_CTL[@]}" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c max_connections=300" start >/dev/null \
        || { cat "$PG_DIR/server.log"; return 1; }
    trap stop_postgres EXIT
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U cryo3d optuna
    export CRYO3D_TEST_POSTGRES_URL="postgresql+psycopg://cryo3d@127.0.0.1:$port/optuna"
    echo "ci: $("$bin/postgres" --version) on 127.0.0.1:$port ($PG_DIR)"
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        "${PG_CTL[@]}" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}
