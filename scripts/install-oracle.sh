#!/usr/bin/env bash
# Installs PostHog's reference HogVM (@posthog/hogvm, pinned in hog-lang/tests/oracle/package.json)
# with npm, idempotently. The oracle tests run every corpus program through it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/hog-lang/tests/oracle"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "install-oracle: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
fi
if [ -f "$dir/node_modules/@posthog/hogvm/package.json" ] && grep -q '"version": "1.0.71"' "$dir/node_modules/@posthog/hogvm/package.json"; then
  exit 0
fi
echo "install-oracle: installing @posthog/hogvm@1.0.71 into $dir/node_modules"
(cd "$dir" && npm install --no-audit --no-fund --silent)
