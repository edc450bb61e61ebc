#!/usr/bin/env bash
# Fan-out benchmarks (BENCHMARKS.md, issue 5 items 3 and 4): starts a moto server (DynamoDB and
# SQS) on a free loopback port, builds the release `wshub` binary and the harness, and runs
#   single:  one invocation broadcasting to N connections (no queue), and
#   sharded: one broadcast split into shard jobs over M concurrent invocations.
# Every mode prints JSON lines (also kept in target/bench/fanout.jsonl). Extra arguments go to
# both runs' global flags, e.g. `scripts/bench-fanout.sh --latency-ms 20`.
# Environment knobs: SINGLE_N, SINGLE_RATE, SHARD_N, SHARD_M, SHARD_RATE, SHARD_C, SHARD_THRESHOLD,
# SHARD_DEADLINE_MS, MODES ("single sharded"). The harness is src/bin/bench-fanout.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
[ -x "$venv/bin/moto_server" ] || venv=/work/main/.venv
python=$venv/bin/python
mkdir -p target/bench
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >target/bench/moto.log 2>&1 &
moto=$!
trap 'kill "$moto" 2>/dev/null || true; wait "$moto" 2>/dev/null || true' EXIT
"$python" - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(150):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1); sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit("moto server did not start; see target/bench/moto.log")
PY
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port" AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL || true
cargo build --release --locked --quiet --features bench --bin wshub --bin bench-fanout
bench=./target/release/bench-fanout
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; moto on $port" >&2
for mode in ${MODES:-single sharded}; do
  case $mode in
    single) "$bench" "$@" --rate "${SINGLE_RATE:-10000}" single --n "${SINGLE_N:-1000,10000,50000}" ;;
    sharded) "$bench" "$@" --rate "${SHARD_RATE:-2000}" sharded --n "${SHARD_N:-20000}" --m "${SHARD_M:-1,2,4,8,16}" \
      --concurrency "${SHARD_C:-8}" --threshold "${SHARD_THRESHOLD:-2000}" --deadline-ms "${SHARD_DEADLINE_MS:-3000}" ;;
  esac
done | tee -a target/bench/fanout.jsonl
