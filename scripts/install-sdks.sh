#!/usr/bin/env bash
# Installs the real PostHog SDKs that hogpipe's end-to-end tests (hogpipe/tests/sdk.rs) drive,
# idempotently, into a cache outside the clone:
#   posthog-python  ->  $HOGPIPE_CACHE/sdk/venv   (python3 -m venv; pip install posthog==PIN)
#   posthog-node    ->  $HOGPIPE_CACHE/sdk/node   (npm install posthog-node@PIN)
# Pinned versions (bump both here; the tests read nothing else):
#   posthog (PyPI)       7.91.1
#   posthog-node (npm)   5.70.0   (needs Node ^20.20 or >=22.22)
#   @posthog/core (npm)  1.67.3   (posthog-node's one dependency, pinned so a fresh install matches)
# A second run with both pins installed is a no-op. Prints where the SDKs are, as
#   HOGPIPE_SDK_PYTHON=<venv python>   HOGPIPE_SDK_NODE_DIR=<dir with node_modules/posthog-node>
# (one per line on stdout; the tests read these lines). Progress goes to stderr.
set -euo pipefail
PY_PIN=7.91.1
NODE_PIN=5.70.0
CORE_PIN=1.67.3
cache="${HOGPIPE_CACHE:-$HOME/.cache/hogpipe}"
sdk="$cache/sdk"
venv="$sdk/venv"
nodedir="$sdk/node"
mkdir -p "$sdk"
# Concurrent test runs install one at a time.
if command -v flock >/dev/null; then
  exec 9>"$sdk/.install.lock"
  flock 9
fi

need() {
  if ! command -v "$1" >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq "${@:2}" >/dev/null
    else
      echo "install-sdks: $1 is needed (Debian: apt-get install ${*:2})" >&2
      exit 1
    fi
  fi
}

# posthog-python
need python3 python3 python3-venv
py_installed=""
if [ -x "$venv/bin/python" ]; then
  py_installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("posthog"))' 2>/dev/null || true)
fi
if [ "$py_installed" != "$PY_PIN" ]; then
  echo "install-sdks: installing posthog==$PY_PIN into $venv" >&2
  if [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv"; then
      rm -rf "$venv"
      echo "install-sdks: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "posthog==$PY_PIN" >&2
fi

# posthog-node
need node nodejs
need npm npm
version_of() {
  node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' "$1"
}
node_installed="$(version_of "$nodedir/node_modules/posthog-node/package.json") $(version_of "$nodedir/node_modules/@posthog/core/package.json")"
if [ "$node_installed" != "$NODE_PIN $CORE_PIN" ]; then
  echo "install-sdks: installing posthog-node@$NODE_PIN (@posthog/core@$CORE_PIN) into $nodedir" >&2
  mkdir -p "$nodedir"
  cat >"$nodedir/package.json" <<JSON
{
  "name": "hogpipe-sdk-tests",
  "private": true,
  "description": "posthog-node for hogpipe's end-to-end tests (written by scripts/install-sdks.sh)",
  "dependencies": { "posthog-node": "$NODE_PIN", "@posthog/core": "$CORE_PIN" }
}
JSON
  (cd "$nodedir" && npm install --no-audit --no-fund --silent --save-exact "posthog-node@$NODE_PIN" "@posthog/core@$CORE_PIN" >&2)
fi

echo "HOGPIPE_SDK_PYTHON=$venv/bin/python"
echo "HOGPIPE_SDK_NODE_DIR=$nodedir"
