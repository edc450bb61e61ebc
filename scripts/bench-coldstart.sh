#!/usr/bin/env bash
# Cold start (BENCHMARKS.md): the release `wshub` beside a minimal lambda_runtime hello-world
# (examples/hello.rs, same profile), launched alternately against a Runtime API served by
# examples/coldstart.rs, with moto as DynamoDB; and wshub again with its secrets in moto's Parameter
# Store and Secrets Manager instead of the environment. Usage: scripts/bench-coldstart.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-40}
source scripts/moto.sh
mkdir -p target/bench
cargo build --release --locked --quiet --bin wshub --example hello --example coldstart
./target/release/examples/coldstart --wshub target/release/wshub --hello target/release/examples/hello \
  --dynamodb "$AWS_ENDPOINT_URL_DYNAMODB" --secrets "$AWS_ENDPOINT_URL_SSM" --runs "$runs"

# Init in instructions, which a busy machine does not change: each binary under callgrind from
# exec until its first Runtime API request (to a closed port, so it exits right there).
if command -v valgrind >/dev/null; then
  closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  for binary in target/release/examples/hello target/release/wshub; do
    env -i PATH=/usr/bin:/bin AWS_LAMBDA_FUNCTION_NAME=wshub AWS_LAMBDA_FUNCTION_VERSION='$LATEST' \
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_LOG_GROUP_NAME=g AWS_LAMBDA_LOG_STREAM_NAME=s \
      AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
      CONNECTIONS_TABLE=t AUTH_TOKENS=alice=alice-token APIGW_MANAGEMENT_ENDPOINT=http://127.0.0.1:9/prod \
      PUSH_QUEUE_URL=http://127.0.0.1:9/000000000000/push AWS_LAMBDA_RUNTIME_API="127.0.0.1:$closed" \
      valgrind --tool=callgrind --callgrind-out-file=/dev/null --log-file=target/bench/init-callgrind.log \
      "$binary" >/dev/null 2>&1 || true
    echo "init instructions, exec → first poll, $(basename "$binary"): $(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' target/bench/init-callgrind.log)"
  done
fi
