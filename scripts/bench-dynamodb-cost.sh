#!/usr/bin/env bash
# DynamoDB cost per push (BENCHMARKS.md): starts moto server on a free loopback port, loads
# CONNECTIONS connections into a fresh table and pushes one SQS message to each target kind
# (connection, user, topic, broadcast) and one `sendmessage` through the router; prints the
# operations, read capacity and (issue 12) write requests and write capacity per push with
# recording on and off, the reads of a recovery (`subscribe` with `since`, a `history` page),
# and the latency recording adds to a topic push (LATENCY_PUSHES per mode). Fails if a targeted
# push issued a Scan, a publication made more than 3 write requests, or a recovery read more than
# one GetItem and one Query. Stops moto on exit.
# Needs a Rust toolchain and python3; scripts/moto.sh installs and starts moto.
# Usage: scripts/bench-dynamodb-cost.sh [CONNECTIONS] [LATENCY_PUSHES]   (defaults 1000 and 200)
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-1000}
latency_pushes=${2:-200}

source scripts/moto.sh
cargo build --locked --quiet --example dynamodb_cost

RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/debug/examples/dynamodb_cost" "$connections" "$latency_pushes"
