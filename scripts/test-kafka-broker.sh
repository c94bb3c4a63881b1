#!/usr/bin/env bash
# The Kafka event log against a standalone Kafka-protocol broker (tansu): installs the build
# dependencies of librdkafka and tansu if missing, starts the broker, creates the topics, runs the
# ignored `tansu_*` tests of capture/tests/kafka.rs against it and stops the broker.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=env.sh
. scripts/env.sh

ensure_rust
ensure_build_deps

brokers=$(scripts/tansu.sh start)
trap 'scripts/tansu.sh stop' EXIT
echo "tansu broker at $brokers" >&2

for topic in events_plugin_ingestion events_plugin_ingestion_historical; do
  "$HOGPIPE_CACHE/bin/tansu" topic create --broker "tcp://$brokers" --partitions 4 "$topic" >&2
done

HOGPIPE_TEST_KAFKA_BROKERS="$brokers" \
  cargo test -p hogpipe-capture --test kafka -- --ignored tansu
