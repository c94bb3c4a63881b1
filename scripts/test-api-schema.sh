#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI description: starts `hogpipe serve` (debug build,
# embedded chDB, a fresh data dir) on a loopback port and runs schemathesis (PyPI, pinned,
# installed into $HOGPIPE_CACHE/schemathesis) against /api/schema with a valid API key. A bounded
# run: a fixed seed, a few examples per operation, a time budget. Fails if any request gets a 5xx.
set -euo pipefail
PIN=4.32.5
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=env.sh
. scripts/env.sh
cache="${HOGPIPE_CACHE:-$HOME/.cache/hogpipe}"
venv="$cache/schemathesis/venv"
mkdir -p "$cache/schemathesis"
installed=""
if [ -x "$venv/bin/python" ]; then
  installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
fi
if [ "$installed" != "$PIN" ]; then
  echo "test-api-schema: installing schemathesis==$PIN into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$PIN" >&2
fi
if [ -z "${HOGPIPE_CHDB_LIB:-}" ]; then
  HOGPIPE_CHDB_LIB="$(scripts/install-chdb.sh)"
  export HOGPIPE_CHDB_LIB
fi
cargo build -q -p hogpipe
bin="${CARGO_TARGET_DIR:-$root/target}/debug/hogpipe"

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key="phx_schemathesis_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$work/hogpipe.toml" <<TOML
[[projects]]
id = 1
name = "Schemathesis"
token = "phc_schemathesis"
api_keys = ["$key"]
TOML
"$bin" serve --config "$work/hogpipe.toml" --data-dir "$work/data" --host 127.0.0.1 --port "$port" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "http://127.0.0.1:$port/api/schema" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$work/serve.log" >&2; echo "test-api-schema: hogpipe serve exited" >&2; exit 1; fi
  sleep 0.5
done
# Path parameters: the project the key owns (other projects are 404s, covered by the API tests).
cat >"$work/schemathesis.toml" <<TOML
[parameters]
"path.project_id" = 1
TOML
set +e
# From the temp dir: schemathesis keeps a cache (.schemathesis/) in its working directory.
(cd "$work" && "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "http://127.0.0.1:$port/api/schema" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error \
  --phases examples,coverage,fuzzing \
  --max-examples 20 --seed 20261125 --workers 2 \
  --request-timeout 30 --max-time "${HOGPIPE_SCHEMATHESIS_SECONDS:-150}" --no-color)
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "--- hogpipe serve log (last 50 lines)" >&2
  tail -50 "$work/serve.log" >&2
  echo "test-api-schema: FAILED (schemathesis exit $status)"
  exit "$status"
fi
echo "test-api-schema: passed (no 5xx on any operation)"
