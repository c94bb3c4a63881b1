#!/usr/bin/env bash
# A standalone Kafka-protocol broker for tests: tansu (https://tansu.io) with in-memory storage.
#
#   scripts/tansu.sh install   install tansu into $HOGPIPE_CACHE/bin (once; ~9 minutes cold)
#   scripts/tansu.sh start     install if needed, start a broker on a free loopback port in the
#                              background, wait until it accepts connections, print host:port
#   scripts/tansu.sh address   print the running broker's host:port
#   scripts/tansu.sh stop      stop the broker started by `start`
#
# State (pid, address, log) lives in $HOGPIPE_TANSU_DIR (default: a per-user temp dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=env.sh
. "$root/scripts/env.sh"
# shellcheck source=ports.sh
. "$root/scripts/ports.sh"

TANSU_VERSION=0.6.0
tansu_bin="$HOGPIPE_CACHE/bin/tansu"
state_dir="${HOGPIPE_TANSU_DIR:-${TMPDIR:-/tmp}/hogpipe-tansu-$(id -u)}"
pid_file="$state_dir/tansu.pid"
addr_file="$state_dir/tansu.addr"
log_file="$state_dir/tansu.log"

log() { echo "tansu.sh: $*" >&2; }

install_tansu() {
  if [ -x "$tansu_bin" ]; then
    return 0
  fi
  ensure_rust
  log "installing tansu $TANSU_VERSION into $HOGPIPE_CACHE/bin (takes ~9 minutes the first time)"
  # Its own target dir, so the build is not mixed into the workspace's.
  CARGO_TARGET_DIR="$HOGPIPE_CACHE/target-tansu" \
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore \
    --root "$HOGPIPE_CACHE" >&2
}

running() {
  [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

start() {
  if running; then
    cat "$addr_file"
    return 0
  fi
  install_tansu
  mkdir -p "$state_dir"
  local port
  port=$(free_port)
  # setsid: the broker outlives this script and gets its own process group.
  setsid "$tansu_bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ \
    >"$log_file" 2>&1 </dev/null &
  echo $! >"$pid_file"
  for _ in $(seq 1 300); do
    if listening "$port"; then
      echo "127.0.0.1:$port" >"$addr_file"
      echo "127.0.0.1:$port"
      return 0
    fi
    if ! running; then
      log "tansu exited while starting; its log ($log_file):"
      tail -n 30 "$log_file" >&2 || true
      rm -f "$pid_file"
      return 1
    fi
    sleep 0.1
  done
  log "tansu did not accept connections on 127.0.0.1:$port within 30 s; log: $log_file"
  stop
  return 1
}

stop() {
  if running; then
    local pid
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pid_file" "$addr_file"
}

case "${1:-}" in
  install) install_tansu ;;
  start) start ;;
  stop) stop ;;
  address)
    if running; then cat "$addr_file"; else log "not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 install|start|address|stop" >&2
    exit 2
    ;;
esac
