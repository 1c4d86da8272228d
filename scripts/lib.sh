# Shared by scripts/run and scripts/test: a virtualenv with the pinned dependencies, and
# reachable PostgreSQL and Redis (local ones are started when installed but stopped).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NEWSAGG_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

ensure_venv() {
    local python="${PYTHON:-}"
    if [ -z "$python" ]; then
        for candidate in python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 &&
               "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                python="$candidate"; break
            fi
        done
    fi
    [ -n "$python" ] || die "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)"
    if [ ! -x "$PY" ]; then
        say "creating virtualenv $VENV"
        "$python" -m venv "$VENV" || die "cannot create a virtualenv (apt-get install python3-venv)"
    fi
    # Reinstall only when the dependency files changed since the last install.
    local stamp="$VENV/.newsagg-installed"
    local want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing pinned dependencies (constraints.txt)"
        "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$PY" -m pip install --quiet --disable-pip-version-check \
            -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
        echo "$want" > "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

# host and port of a URL (defaults for PostgreSQL and Redis)
url_host() { "$PY" -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).hostname or "localhost")' "$1"; }
url_port() { "$PY" -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).port or sys.argv[2])' "$1" "$2"; }
is_local() { case "$1" in localhost|127.*|::1|"") return 0;; *) return 1;; esac; }
port_open() { "$PY" -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2).close()' "$1" "$2" 2>/dev/null; }

wait_port() {
    local host="$1" port="$2" i
    for i in $(seq 1 60); do port_open "$host" "$port" && return 0; sleep 0.5; done
    return 1
}

ensure_postgres() {
    local url="${DATABASE_URL:-postgresql://localhost/newsagg}"
    local host port; host="$(url_host "$url")"; port="$(url_port "$url" 5432)"
    port_open "$host" "$port" && return 0
    if is_local "$host" && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        say "starting the local PostgreSQL"
        local version
        for version in $(ls /etc/postgresql); do
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        done
        wait_port "$host" "$port" && return 0
    fi
    die "PostgreSQL is not reachable at $host:$port. Install it (apt-get install postgresql) or point DATABASE_URL at a running server."
}

ensure_redis() {
    local url="${REDIS_URL:-redis://localhost:6379/0}"
    local host port; host="$(url_host "$url")"; port="$(url_port "$url" 6379)"
    port_open "$host" "$port" && return 0
    if is_local "$host" && command -v redis-server >/dev/null 2>&1; then
        say "starting the local Redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no
        wait_port "$host" "$port" && return 0
    fi
    die "Redis is not reachable at $host:$port. Install it (apt-get install redis-server) or point REDIS_URL at a running server."
}
