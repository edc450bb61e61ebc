#!/usr/bin/env bash
# DynamoDB cost of topic presence (BENCHMARKS.md): starts moto server on a free loopback port,
# connects USERS users (two connections each) into a fresh table, puts all but one in the
# presence topic room:1, then measures a join, a second connection's subscribe, a presence
# read, an unsubscribe with and without a leave, a leave by $disconnect and a page of the online
# list through the router; prints the operations and read capacity of each. Stops moto on exit.
# Needs a Rust toolchain and python3; scripts/moto.sh installs and starts moto.
# Usage: scripts/bench-presence-cost.sh [USERS]
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-100}

source scripts/moto.sh
cargo build --locked --quiet --example presence_cost

RUST_LOG=warn ./target/debug/examples/presence_cost "$users"
