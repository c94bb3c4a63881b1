#!/usr/bin/env bash
# ANCHORS.md's event transformation (hash the email, strip the URL's origin, keep `^/p/1`) on one
# core: hogpipe's pipeline (`hogpipe bench pipeline --workers 1`) against the same program in VRL
# 0.38 (benches/vrl-pipeline, built apart from the workspace), medians of RUNS runs each.
# Usage: benches/pipeline-vs-vrl.sh [EVENTS] [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env.sh
ensure_rust
ensure_build_deps
events=${1:-200000}
runs=${2:-3}
echo "building hogpipe …" >&2
cargo build -q --release -p hogpipe
bin="$CARGO_TARGET_DIR/release/hogpipe"
echo "building benches/vrl-pipeline (VRL 0.38; the first build takes minutes) …" >&2
vrl_target="$HOGPIPE_CACHE/target-vrl"
CARGO_TARGET_DIR="$vrl_target" cargo build -q --release --manifest-path benches/vrl-pipeline/Cargo.toml
vrl_bin="$vrl_target/release/vrl-pipeline-bench"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$runs"); do
  echo "hogpipe bench pipeline, run $r/$runs …" >&2
  "$bin" bench pipeline --events "$events" --workers 1 --json > "$tmp/hogpipe-$r.json"
done
echo "VRL, $runs runs …" >&2
"$vrl_bin" --events "$events" --runs "$runs" --json > "$tmp/vrl.json"
python3 - "$tmp" "$runs" <<'PY'
import json, statistics, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
hog = [json.load(open(f"{tmp}/hogpipe-{r}.json"))[0] for r in range(1, runs + 1)]
vrl = json.load(open(f"{tmp}/vrl.json"))
h_eps = statistics.median(h["events_per_second"] for h in hog)
kept = {h["kept"] for h in hog}
rows = [
    ("hogpipe: log → 3 Hog transformations + filter → null sink", h_eps, kept),
    ("VRL 0.38: JSON parse → program → serialize kept", vrl["end_to_end"]["events_per_second"], {vrl["kept"]}),
    ("VRL 0.38: program alone (events already parsed)", vrl["program_alone"]["events_per_second"], {vrl["kept"]}),
    ("VRL 0.38: from captured-event records (as hogpipe's log)", vrl["from_records"]["events_per_second"], {vrl["kept"]}),
]
print(f"{vrl['events']} events, one worker / one core, median of {runs} runs ('× hogpipe' = events/s ÷ hogpipe's)")
print(f"{'what':<58} {'events/s':>10} {'µs/event':>9} {'kept':>7} {'× hogpipe':>10}")
for name, eps, k in rows:
    print(f"{name:<58} {eps:>10,.0f} {1e6 / eps:>9.3f} {'/'.join(map(str, sorted(k))):>7} {eps / h_eps:>9.2f}x")
print("""
What each number includes:
- hogpipe: reading the events from its write-ahead log (written before timing, by the capture
  parser, so each record also carries capture's fields: uuid, timestamps, ip …), decoding them,
  the dataflow (batches of 1 024), 3 Hog transformations in the VM, the destination's filter, and
  handing the result to a null sink. Not timed: capture and writing the log.
- VRL end to end: serde_json parse of each JSON line into vrl::Value, the one VRL program (abort =
  drop, as remap's drop_on_abort), serde_json serialize of each kept event into a reused buffer.
  No log, no batching machinery, no destination filter; input lines are the bare events.
- VRL program alone: only Runtime::resolve on events parsed beforehand (batches of 1 024).
- VRL from records: as end to end, but each input is a captured-event record as hogpipe's log
  holds it (the event's JSON in the string `data`): the record is parsed, then its data. The
  closest to hogpipe's work, less the log reads, the time rules and the destination filter.""")
if kept != {vrl["expected_kept"]} or vrl["kept"] != vrl["expected_kept"]:
    print(f"KEPT DIFFERS: expected {vrl['expected_kept']}, hogpipe {sorted(kept)}, VRL {vrl['kept']}")
    sys.exit(1)
PY
