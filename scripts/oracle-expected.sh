#!/usr/bin/env bash
# Regenerates hog-lang/tests/cases/*.stdout from PostHog's reference VM (@posthog/hogvm):
# each case is compiled by hogpipe, run by PostHog's VM, and what it prints becomes the expected
# output. Cases the reference VM fails on are reported and left without a .stdout.
# Usage: scripts/oracle-expected.sh [CASE.hog ...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-oracle.sh >/dev/null
cargo build -q -p hogpipe
bin="${CARGO_TARGET_DIR:-$root/target}/debug/hogpipe"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(hog-lang/tests/cases/*.hog)
for c in "${cases[@]}"; do
  "$bin" hog compile "$c" -o "$tmp/$(basename "${c%.hog}").hoge"
done
TZ=UTC node hog-lang/tests/oracle/run.js "$tmp"/*.hoge > "$tmp/results.json"
python3 - "$tmp/results.json" hog-lang/tests/cases "$bin" <<'PY'
import json, os, subprocess, sys
results = json.load(open(sys.argv[1]))
cases, binary = sys.argv[2], sys.argv[3]
listed = set()
for line in open(os.path.join(cases, "..", "oracle_differences.txt")):
    if line.strip() and not line.startswith("#"):
        listed.add(line.split(":", 1)[0].strip()[:-4])
for path, r in sorted(results.items()):
    name = os.path.basename(path)[:-5]
    if name in listed:
        # A listed difference: the expected output is hogpipe's (PostHog's current behaviour).
        out = subprocess.run([binary, "hog", "run", os.path.join(cases, name + ".hog")], capture_output=True, text=True, check=True)
        with open(os.path.join(cases, name + ".stdout"), "w") as f:
            f.write(out.stdout)
        print(f"from hogpipe (listed difference): {name}")
        continue
    if r["error"]:
        print(f"ORACLE ERROR {name}: {r['error']}")
        continue
    with open(os.path.join(cases, name + ".stdout"), "w") as f:
        f.write(r["stdout"])
PY
