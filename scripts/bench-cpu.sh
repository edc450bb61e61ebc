#!/usr/bin/env bash
# CPU per event (BENCHMARKS.md): criterion benchmarks of classification and of classification
# plus handling for every event type (benches/router.rs), then instructions per event under
# callgrind (examples/callgrind_router.rs), printed side by side as one Markdown table.
# Wall-clock medians move with the machine's load; instruction counts barely do.
# Needs a Rust toolchain and python3; installs valgrind with apt-get when missing (needs root).
# Usage: scripts/bench-cpu.sh [K]   (K: events replayed per callgrind run, default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
k=${1:-200}

if ! command -v valgrind >/dev/null; then
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi

cargo bench --locked --bench router
cargo build --release --locked --quiet --example callgrind_router
replay=./target/release/examples/callgrind_router
mkdir -p target/bench

# Instructions collected over a whole run (start-up included); the apply/skip difference is K events.
collected() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null --log-file=target/bench/callgrind.log \
    "$replay" "$@" >/dev/null
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' target/bench/callgrind.log
}

cases=$("$replay" 2>&1 | sed -n 's/^cases: //p' || true)
: >target/bench/ir.tsv
for case in $cases; do
  for stage in classify route; do
    applied=$(collected "$case" "$stage" "$k" apply)
    skipped=$(collected "$case" "$stage" "$k" skip)
    printf '%s\t%s\t%s\n' "$case" "$stage" $(((applied - skipped) / k)) >>target/bench/ir.tsv
  done
done

python3 - "$k" $cases <<'PY'
import json, os, sys

k, cases = sys.argv[1], sys.argv[2:]
ir = {}
with open("target/bench/ir.tsv") as f:
    for line in f:
        case, stage, count = line.split()
        ir[(case, stage)] = int(count)

def wall(stage, case):
    path = f"target/criterion/{stage}/{case}/new/estimates.json"
    if not os.path.exists(path):
        return "-"
    e = json.load(open(path))
    median, mad = e["median"]["point_estimate"], e["median_abs_dev"]["point_estimate"]
    unit, scale = ("µs", 1e3) if median >= 1e3 else ("ns", 1)
    return f"{median / scale:.2f} ± {mad / scale:.2f} {unit}"

print(f"\n{os.cpu_count()} cores; callgrind K={k}; criterion median ± median absolute deviation\n")
print("| event | classify: median | classify: Ir/event | classify + handle: median | classify + handle: Ir/event |")
print("|---|---|---|---|---|")
for case in cases:
    print(f"| {case} | {wall('classify', case)} | {ir[(case, 'classify')]:,} | {wall('route', case)} | {ir[(case, 'route')]:,} |")
PY
