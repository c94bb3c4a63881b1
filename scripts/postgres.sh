#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests: Debian's `postgresql` package, one cluster under a
# temp dir, listening on 127.0.0.1 only, trust authentication for the `postgres` superuser.
#
#   scripts/postgres.sh install       install Debian's postgresql (apt-get) unless it is there
#   scripts/postgres.sh start [DB]    install if needed, create the cluster if needed, start it if
#                                     it is not running, create database DB (default `hogpipe`)
#                                     if missing, print its URL (postgres://postgres@127.0.0.1:PORT/DB)
#   scripts/postgres.sh url [DB]      print the running server's URL for DB
#   scripts/postgres.sh restart       stop and start the running server (same port, data kept)
#   scripts/postgres.sh stop          stop the server and delete its cluster (it is throwaway)
#
# State (cluster, socket, log, port) lives in $HOGPIPE_PG_DIR (default: a per-user temp dir), so
# several servers can run at once, one per dir. The port is $HOGPIPE_PG_PORT, or a free one.
# PostgreSQL refuses to run as root: as root, the server runs as the package's `postgres` user.
# The server runs with fsync off: it is for tests, and a killed server process still loses nothing
# the kernel has (only a machine crash would).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=env.sh
. "$root/scripts/env.sh"
# shellcheck source=ports.sh
. "$root/scripts/ports.sh"

state_dir="${HOGPIPE_PG_DIR:-${TMPDIR:-/tmp}/hogpipe-postgres-$(id -u)}"
data_dir="$state_dir/data"
port_file="$state_dir/port"
log_file="$state_dir/postgres.log"

log() { echo "postgres.sh: $*" >&2; }

# The newest installed server's bin dir (Debian: /usr/lib/postgresql/<major>/bin).
bin_dir() {
  if [ -n "${HOGPIPE_PG_BIN:-}" ]; then
    echo "$HOGPIPE_PG_BIN"
    return 0
  fi
  local dir
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
    return 0
  fi
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

install_postgres() {
  if bin_dir >/dev/null; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      log "PostgreSQL is not installed and this is not root: install Debian's postgresql with apt-get first"
      return 1
    fi
    sudo=(sudo)
  fi
  log "installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -q postgresql >&2 ||
    { "${sudo[@]}" apt-get update -q >&2 && "${sudo[@]}" apt-get install -y -q postgresql >&2; }
  bin_dir >/dev/null || { log "postgresql installed but no initdb found under /usr/lib/postgresql"; return 1; }
}

# Runs a PostgreSQL program as the user the server runs as (root cannot run initdb or pg_ctl).
as_pg() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null; then
    runuser -u postgres -- "$@"
  else
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  fi
}



running() {
  [ -f "$data_dir/PG_VERSION" ] && as_pg "$(bin_dir)/pg_ctl" -D "$data_dir" status >/dev/null 2>&1
}

check_db_name() {
  if ! [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    log "database name '$1': use letters, digits and underscores (not starting with a digit)"
    exit 2
  fi
}

url_of() {
  echo "postgres://postgres@127.0.0.1:$(cat "$port_file")/$1"
}

create_cluster() {
  mkdir -p "$state_dir"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { log "no 'postgres' user to run the server as (the package creates it)"; exit 1; }
    chown postgres: "$state_dir"
    runuser -u postgres -- test -w "$state_dir" 2>/dev/null ||
      { log "user postgres cannot reach $state_dir: make its parent dirs traversable (chmod o+x)"; exit 1; }
  fi
  if [ ! -f "$data_dir/PG_VERSION" ]; then
    rm -rf "$data_dir"
    as_pg "$(bin_dir)/initdb" -D "$data_dir" -U postgres --auth=trust -E UTF8 --no-locale >"$state_dir/initdb.log" 2>&1 ||
      { log "initdb failed; its output ($state_dir/initdb.log):"; tail -n 20 "$state_dir/initdb.log" >&2; exit 1; }
  fi
}

# Starts the server on $HOGPIPE_PG_PORT, else on the port it had (a restart keeps it: clients
# reconnect to the same URL), else on a free one. When the port was free at the check but taken at
# the bind (another program won the race), a new port is tried, unless the port was fixed.
start_server() {
  local port="${HOGPIPE_PG_PORT:-}" fixed=1 attempt
  if [ -z "$port" ]; then
    fixed=
    if [ -f "$port_file" ] && ! listening "$(cat "$port_file")"; then
      port=$(cat "$port_file")
    else
      port=$(free_port)
    fi
  fi
  for attempt in 1 2 3 4 5; do
    echo "$port" >"$port_file"
    rm -f "$log_file"
    # -w: returns once the server accepts connections. 9>&-: the server must not inherit the lock.
    if as_pg "$(bin_dir)/pg_ctl" -D "$data_dir" -l "$log_file" -w -t 60 -s \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$state_dir -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
      start >&2 9>&-; then
      return 0
    fi
    if [ -n "$fixed" ] || ! grep -q "Address already in use" "$log_file" 2>/dev/null || [ "$attempt" = 5 ]; then
      break
    fi
    log "port $port was taken before the server could bind it; trying another"
    port=$(free_port)
  done
  log "the server did not start on 127.0.0.1:$port; its log ($log_file):"
  tail -n 30 "$log_file" >&2 || true
  exit 1
}

create_db() {
  local db=$1 psql
  psql="$(bin_dir)/psql"
  local exists
  exists=$("$psql" -X -q -h 127.0.0.1 -p "$(cat "$port_file")" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$db'")
  if [ "$exists" != 1 ]; then
    "$psql" -X -q -h 127.0.0.1 -p "$(cat "$port_file")" -U postgres -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
  fi
}

start() {
  local db="${1:-hogpipe}"
  check_db_name "$db"
  install_postgres
  create_cluster
  running || start_server
  create_db "$db"
  url_of "$db" >"$state_dir/url"
  url_of "$db"
}

stop() {
  if running; then
    as_pg "$(bin_dir)/pg_ctl" -D "$data_dir" -m fast -w -t 60 -s stop >&2 || true
  fi
  rm -rf "$state_dir"
}

restart() {
  if ! running; then
    log "no server running in $state_dir"
    exit 1
  fi
  as_pg "$(bin_dir)/pg_ctl" -D "$data_dir" -m fast -w -t 60 -s stop >&2
  start_server
}

# One command at a time per state dir (tests start servers from parallel threads).
mkdir -p "$(dirname "$state_dir")"
exec 9>"$state_dir.lock"
flock 9

case "${1:-}" in
  install) install_postgres ;;
  start) start "${2:-}" ;;
  stop) stop ;;
  restart) restart ;;
  url)
    db="${2:-hogpipe}"
    check_db_name "$db"
    if running; then url_of "$db"; else log "no server running in $state_dir"; exit 1; fi
    ;;
  *)
    echo "usage: $0 install|start [DB]|url [DB]|restart|stop" >&2
    exit 2
    ;;
esac
