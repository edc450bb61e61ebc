#!/usr/bin/env bash
# Cold start (BENCHMARKS.md): the release `wshub` beside a minimal lambda_runtime hello-world
# (examples/hello.rs, same profile), launched alternately against a Runtime API served by
# examples/coldstart.rs, with moto as DynamoDB. Usage: scripts/bench-coldstart.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-40}
source scripts/moto.sh
cargo build --release --locked --quiet --bin wshub --example hello --example coldstart
./target/release/examples/coldstart --wshub target/release/wshub --hello target/release/examples/hello \
  --dynamodb "$AWS_ENDPOINT_URL_DYNAMODB" --runs "$runs"
