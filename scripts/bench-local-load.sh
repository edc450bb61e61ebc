#!/usr/bin/env bash
# Load benchmark of the local hub (BENCHMARKS.md): SOCKETS concurrent sockets, BROADCASTS pushes
# each reaching every socket, every delivery counted, the hub's memory read from /proc.
# Loopback only; stops the hub on exit. Usage: scripts/bench-local-load.sh [SOCKETS] [BROADCASTS]
set -euo pipefail
cd "$(dirname "$0")/.."
sockets=${1:-5000}
broadcasts=${2:-20}
cargo build --release --locked --quiet --bin wshub-local --example load
mkdir -p target/bench
env -u AUTH_TOKENS -u JWT_SECRET -u JWT_JWKS_URL -u AWS_ENDPOINT_URL_DYNAMODB RUST_LOG=warn \
  ./target/release/wshub-local --port 0 >target/bench/hub.out 2>target/bench/hub.log &
hub=$!
trap 'kill -TERM "$hub" 2>/dev/null || true; wait "$hub" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "ready on" target/bench/hub.out 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^wshub-local ready on \(ws:[^ ]*\).*/\1/p' target/bench/hub.out | head -1)
echo "hub $url (pid $hub); $(nproc) cores; $sockets sockets x $broadcasts broadcasts" >&2
./target/release/examples/load --url "$url" --sockets "$sockets" --broadcasts "$broadcasts" --hub-pid "$hub"
