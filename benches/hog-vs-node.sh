#!/usr/bin/env bash
# Runs the Hog benchmark programs (benches/hog/*.hog) in hogpipe's VM and in PostHog's reference
# VM (@posthog/hogvm@1.0.71 under Node) on this machine, and prints both times and the ratio.
# Usage: benches/hog-vs-node.sh [MIN_SECONDS_PER_PROGRAM] [EVENTS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env.sh
min=${1:-2}
events=${2:-100000}
scripts/install-oracle.sh >/dev/null
cargo build -q --release -p hogpipe
bin="$CARGO_TARGET_DIR/release/hogpipe"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" bench hog --export "$tmp" --events "$events" 2>/dev/null
echo "running hogpipe …" >&2
"$bin" bench hog --json --min-time "$min" --events "$events" > "$tmp/hogpipe.json"
echo "running @posthog/hogvm under $(node --version) …" >&2
TZ=UTC node benches/node-bench.js "$tmp" "$min" > "$tmp/node.json"
python3 - "$tmp/hogpipe.json" "$tmp/node.json" <<'PY'
import json, sys
ours, theirs = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
def fmt(s):
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.2f} µs"
print(f"{'program':<11} {'hogpipe':>12} {'@posthog/hogvm':>15} {'speed-up':>9}   notes")
worst = None
for name, o in ours.items():
    t = theirs.get(name)
    if t is None:
        continue
    ratio = t["seconds_per_iteration"] / o["seconds_per_iteration"]
    worst = ratio if worst is None else min(worst, ratio)
    note = ""
    if o.get("per_event"):
        note = f"per event; {1 / o['seconds_per_iteration']:,.0f} events/s here"
        if o.get("kept") != t.get("kept"):
            note += f"; KEPT DIFFERS: {o.get('kept')} vs {t.get('kept')}"
    print(f"{name:<11} {fmt(o['seconds_per_iteration']):>12} {fmt(t['seconds_per_iteration']):>15} {ratio:>8.1f}x   {note}")
if worst is not None:
    print(f"slowest speed-up: {worst:.1f}x")
PY
