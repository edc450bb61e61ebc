#!/usr/bin/env bash
# The whole benchmark suite (issue 5; BENCHMARKS.md explains each figure). Each part is also a
# script of its own. Runs them in turn, so the figures of one run share the same machine state,
# and writes the combined report to target/bench/report.md as well as stdout.
# Nothing here is asserted against a time: the scripts fail only when something is lost,
# duplicated or broken. Takes about 30-40 minutes on 2 cores, most of it release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
report=target/bench/report.md
{
  echo "# wshub benchmark report"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ) · $(nproc) cores · $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) · $(uname -m) · commit $(git rev-parse --short HEAD)"
} >"$report"
part() {
  local title=$1
  shift
  echo "== $title: $*" >&2
  { echo; echo "## $title"; echo; echo '```'; echo "\$ $*"; echo '```'; "$@"; } | tee -a "$report"
}
part "1. Cold start" ./scripts/bench-coldstart.sh 40
part "2. Size" ./scripts/bench-size.sh
part "3. Fan-out in one invocation, 4. sharded fan-out" ./scripts/bench-fanout.sh
part "5. DynamoDB cost per push" ./scripts/bench-dynamodb-cost.sh
part "6. CPU per event" ./scripts/bench-cpu.sh
part "7. Local hub" ./scripts/bench-local-load.sh 5000 20
echo "report: $report" >&2
