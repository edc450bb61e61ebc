#!/usr/bin/env bash
# Runs every test: format and lint gates, template lints and checkov, the AsyncAPI document's
# validation (scripts/validate-asyncapi.sh), unit tests, the integration tests against a moto
# server that this script installs, starts on a free port and stops again, the release binary
# driven through a local Lambda Runtime API, a short fuzz run (scripts/fuzz-smoke.sh), the
# JavaScript client's tests (scripts/test-js.sh), the local hub's end-to-end checks with wscat
# and headless Chromium (scripts/e2e-local.sh), and `sam build` for arm64.
# Needs a Rust toolchain (rustup), python3 and Node.js with npm on PATH; installs the rest
# itself (Chromium with apt-get when /usr/bin/chromium is missing, which needs root; the
# nightly toolchain and cargo-fuzz for the fuzz run).
set -euo pipefail
cd "$(dirname "$0")/.."

# The test venv (moto, cfn-lint, aws-sam-cli, cargo-lambda, zig) and a moto server on a free
# port, stopped on exit; the SDK is pointed at it with fake credentials.
source scripts/moto.sh
# checkov gets a venv of its own: it pins a boto3 that aws-sam-cli's cannot live with.
checkov_venv="${WSHUB_CHECKOV_VENV:-.venv-checkov}"
if [ ! -x "$checkov_venv/bin/python" ]; then
  python3 -m venv "$checkov_venv"
fi
"$checkov_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-checkov.txt
export SAM_CLI_TELEMETRY=0

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cfn-lint template.yaml
sam validate --lint
# Fails on any finding; accepted ones are skipped with their reason in the resource's Metadata.
# --skip-download: no call to Prisma Cloud for guidelines (and no network needed).
"$checkov_venv/bin/checkov" -f template.yaml --framework cloudformation --quiet --compact --skip-download
# The protocol document: `asyncapi validate` (@asyncapi/cli), failing on errors and warnings.
./scripts/validate-asyncapi.sh

# tests/lambda_binary.rs runs the release binary, as Lambda would.
cargo build --release --locked --bin wshub
export WSHUB_LAMBDA_BINARY="$PWD/target/release/wshub"
cargo test --all-targets --locked -- --include-ignored

# The fuzz targets (fuzz/), briefly, from their committed corpus; see BENCHMARKS.md for long runs.
./scripts/fuzz-smoke.sh

# The JavaScript client (clients/js): built, packed, unit-tested, and run against the local hub
# and in headless Chromium.
./scripts/test-js.sh

# The local hub, end to end, with real clients.
./scripts/e2e-local.sh

# The deployable artifact: an arm64 bootstrap, cross-built by cargo-lambda with zig.
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
sam build
python3 - .aws-sam/build/HubFunction/bootstrap <<'PY'
import sys
path = sys.argv[1]
with open(path, "rb") as f:
    header = f.read(20)
# ELF magic, then e_machine at offset 18: 183 is AArch64.
if header[:4] != b"\x7fELF" or int.from_bytes(header[18:20], "little") != 183:
    sys.exit(f"{path} is not an arm64 ELF executable")
print(f"{path}: arm64 ELF, ok")
PY
