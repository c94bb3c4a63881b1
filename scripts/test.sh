#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (Node and PostHog's
# reference VM for the oracle tests), then formatting, lints and every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=env.sh
. scripts/env.sh
ensure_rust
ensure_build_deps
step() { printf '\n==> %s\n' "$*"; }

step "installing the PostHog VM oracle"
scripts/install-oracle.sh
export HOGPIPE_REQUIRE_ORACLE=1

step "installing the PostHog SDKs for the end-to-end tests"
scripts/install-sdks.sh

step "installing the warehouse backends (chDB, Debian's clickhouse-server)"
HOGPIPE_CHDB_LIB="$(scripts/install-chdb.sh)"
export HOGPIPE_CHDB_LIB
scripts/clickhouse.sh install
step "starting PostgreSQL (Debian's) for the sink tests"
# Its state in a temp dir of this checkout's own (the server runs as the `postgres` user, which
# cannot enter /root), so two checkouts testing at once do not share one server.
export HOGPIPE_PG_DIR="${TMPDIR:-/tmp}/hogpipe-postgres-$(id -u)-$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
HOGPIPE_TEST_PG_URL=$(scripts/postgres.sh start hogpipe_test)
export HOGPIPE_TEST_PG_URL
trap 'scripts/postgres.sh stop' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings

step "cargo test"
set +e
cargo test --workspace 2>&1 | tee "$HOGPIPE_CACHE/last-test.log"
status=${PIPESTATUS[0]}
set -e
passed=$(awk '/^test result/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) p += $i } END { print p + 0 }' "$HOGPIPE_CACHE/last-test.log")
failed=$(awk '/^test result/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) f += $i } END { print f + 0 }' "$HOGPIPE_CACHE/last-test.log")

if [ "$status" -eq 0 ]; then
  step "the Kafka event log against a standalone broker (tansu)"
  set +e
  scripts/test-kafka-broker.sh 2>&1 | tee "$HOGPIPE_CACHE/last-kafka-test.log"
  status=${PIPESTATUS[0]}
  set -e
  passed=$((passed + $(awk '/^test result/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) p += $i } END { print p + 0 }' "$HOGPIPE_CACHE/last-kafka-test.log")))
  failed=$((failed + $(awk '/^test result/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) f += $i } END { print f + 0 }' "$HOGPIPE_CACHE/last-kafka-test.log")))
fi
if [ "$status" -eq 0 ]; then
  step "the REST API fuzzed from its OpenAPI description (schemathesis)"
  if scripts/test-api-schema.sh; then
    passed=$((passed + 1))
  else
    status=1
    failed=$((failed + 1))
  fi
fi
echo
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$status"
