#!/usr/bin/env bash
# The Kafka event log against a standalone Kafka-protocol broker (tansu): installs the build
# dependencies of librdkafka and tansu if missing, starts the broker, creates the topics, runs the
# ignored `tansu_*` tests of capture/tests/kafka.rs against it and stops the broker.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=env.sh
. scripts/env.sh

# rdkafka's `cmake-build` compiles the librdkafka sources vendored in rdkafka-sys: it needs cmake,
# make and a C/C++ toolchain (no curl, TLS or SASL: those rdkafka features are off).
ensure_kafka_build_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v make >/dev/null || missing+=(make)
  command -v cc >/dev/null || missing+=(gcc)
  command -v c++ >/dev/null || missing+=(g++)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "test-kafka-broker.sh: missing ${missing[*]} and not root: install them first" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "test-kafka-broker.sh: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get install -y "${missing[@]}" >&2 ||
    { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y "${missing[@]}" >&2; }
}

ensure_rust
ensure_kafka_build_deps

brokers=$(scripts/tansu.sh start)
trap 'scripts/tansu.sh stop' EXIT
echo "tansu broker at $brokers" >&2

for topic in events_plugin_ingestion events_plugin_ingestion_historical; do
  "$HOGPIPE_CACHE/bin/tansu" topic create --broker "tcp://$brokers" --partitions 4 "$topic" >&2
done

HOGPIPE_TEST_KAFKA_BROKERS="$brokers" \
  cargo test -p hogpipe-capture --test kafka -- --ignored tansu
