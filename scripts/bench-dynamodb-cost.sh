#!/usr/bin/env bash
# DynamoDB cost per push (BENCHMARKS.md): starts moto server on a free loopback port, loads
# CONNECTIONS connections into a fresh table and pushes one SQS message to each target kind
# (connection, user, topic, broadcast) through the router; prints the operations and read
# capacity per push. Fails if a targeted push issued a Scan. Stops moto on exit.
# Needs a Rust toolchain and python3; installs moto (the version scripts/test.sh pins) into
# the same venv. Usage: scripts/bench-dynamodb-cost.sh [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-1000}

venv="${WSHUB_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$(grep '^moto\[server\]==' scripts/requirements-test.txt)"

cargo build --locked --quiet --example dynamodb_cost

mkdir -p target/bench
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >target/bench/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT
"$venv/bin/python" - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/moto-api/"
for _ in range(150):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(f"moto server did not answer on {url}; see target/bench/moto.log")
PY

# Fake credentials and a region for the SDK; nothing here may reach real AWS.
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL || true
AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn \
  ./target/debug/examples/dynamodb_cost "$connections"
