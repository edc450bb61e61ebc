#!/usr/bin/env bash
# DynamoDB cost per push (BENCHMARKS.md): starts moto server on a free loopback port, loads
# CONNECTIONS connections into a fresh table and pushes one SQS message to each target kind
# (connection, user, topic, broadcast) through the router; prints the operations and read
# capacity per push. Fails if a targeted push issued a Scan. Stops moto on exit.
# Needs a Rust toolchain and python3; scripts/moto.sh installs and starts moto. Usage: scripts/bench-dynamodb-cost.sh [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-1000}

source scripts/moto.sh
cargo build --locked --quiet --example dynamodb_cost

RUST_LOG=warn ./target/debug/examples/dynamodb_cost "$connections"
