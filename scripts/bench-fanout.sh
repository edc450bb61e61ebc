#!/usr/bin/env bash
# Fan-out benchmarks (BENCHMARKS.md, issue 5 items 3 and 4): starts a moto server (DynamoDB and
# SQS) on a free loopback port, builds the release `wshub` binary and the harness, and runs
#   single:  one invocation broadcasting to N connections (no queue), and
#   sharded: one broadcast split into shard jobs over M concurrent invocations.
# Every mode prints JSON lines (also kept in target/bench/fanout.jsonl). Extra arguments go to
# both runs' global flags, e.g. `scripts/bench-fanout.sh --latency-ms 20`.
# Environment knobs: SINGLE_N, SINGLE_RATE, SHARD_N, SHARD_M, SHARD_RATE, SHARD_C, SHARD_THRESHOLD,
# SHARD_DEADLINE_MS, MODES ("single sharded"). The harness is examples/bench_fanout.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/moto.sh
mkdir -p target/bench
# Two cargo runs: built together with an example, the binary would get the dev-dependencies'
# features (Cargo.toml, above the dependencies); built alone, it is the one shipped.
cargo build --release --locked --quiet --bin wshub
cargo build --release --locked --quiet --example bench_fanout
bench=./target/release/examples/bench_fanout
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; moto on $moto_port" >&2
for mode in ${MODES:-single sharded}; do
  case $mode in
    single) "$bench" "$@" --rate "${SINGLE_RATE:-10000}" single --n "${SINGLE_N:-1000,10000,50000}" ;;
    sharded) "$bench" "$@" --rate "${SHARD_RATE:-2000}" sharded --n "${SHARD_N:-20000}" --m "${SHARD_M:-1,2,4,8,16}" \
      --concurrency "${SHARD_C:-8}" --threshold "${SHARD_THRESHOLD:-2000}" --deadline-ms "${SHARD_DEADLINE_MS:-10000}" ;;
  esac
done | tee -a target/bench/fanout.jsonl
