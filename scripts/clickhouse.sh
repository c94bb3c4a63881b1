#!/usr/bin/env bash
# A throwaway ClickHouse server (Debian's clickhouse-server, 18.16) on 127.0.0.1 for tests.
#   scripts/clickhouse.sh install
#   scripts/clickhouse.sh start DIR HTTP_PORT TCP_PORT [SHARD_TCP_PORT ...]
#       starts a server with its files under DIR; with shard ports, the servers' `remote_servers`
#       has a cluster `hogpipe` with one shard per port (start one server per port, each with the
#       same list). Waits until it answers; prints its HTTP URL.
#   scripts/clickhouse.sh stop DIR
set -euo pipefail

install() {
  if ! command -v clickhouse-server >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    echo "clickhouse.sh: installing Debian's clickhouse-server" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server curl >&2 \
      || { $sudo apt-get update -q >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server curl >&2; }
  fi
}

case "${1:-}" in
  install) install ;;
  start)
    install
    dir="$2"; http="$3"; tcp="$4"; shift 4
    mkdir -p "$dir"/{data,tmp,user_files,log,format_schemas}
    dir="$(cd "$dir" && pwd)"
    shards=""
    for p in "$@"; do
      shards="$shards<shard><replica><host>127.0.0.1</host><port>$p</port></replica></shard>"
    done
    cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$http</http_port>
  <tcp_port>$tcp</tcp_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <remote_servers><hogpipe>$shards</hogpipe></remote_servers>
</yandex>
XML
    cat > "$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
    nohup clickhouse-server --config-file="$dir/config.xml" --pid-file="$dir/server.pid" \
      >"$dir/log/stdout.log" 2>&1 &
    echo $! > "$dir/server.pid.launch"
    for _ in $(seq 1 300); do
      if [ "$(curl -s "http://127.0.0.1:$http/ping" 2>/dev/null)" = "Ok." ]; then
        echo "http://127.0.0.1:$http"
        exit 0
      fi
      if ! kill -0 "$(cat "$dir/server.pid.launch")" 2>/dev/null; then
        echo "clickhouse.sh: the server exited; its logs:" >&2
        tail -20 "$dir/log/stdout.log" "$dir/log/error.log" >&2 2>/dev/null || true
        exit 1
      fi
      sleep 0.1
    done
    echo "clickhouse.sh: the server did not answer on :$http within 30 s" >&2
    exit 1
    ;;
  stop)
    dir="$2"
    pids=""
    for f in "$dir/server.pid" "$dir/server.pid.launch"; do
      [ -f "$f" ] && pids="$pids $(cat "$f")"
    done
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    # Wait for it to exit (its port free), then make sure.
    for _ in $(seq 1 100); do
      alive=0
      for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    rm -f "$dir/server.pid" "$dir/server.pid.launch"
    ;;
  *) echo "usage: $0 install | start DIR HTTP_PORT TCP_PORT [SHARD_TCP_PORT ...] | stop DIR" >&2; exit 2 ;;
esac
