#!/usr/bin/env bash
# Size (BENCHMARKS.md): the stripped bootstrap and its deployment zip, arm64 and x86_64, for
# built by cargo-lambda as `sam build` builds it.
# Usage: scripts/bench-size.sh            the current release profile
#        scripts/bench-size.sh variants   also each profile choice, one target dir per variant
#                                         (x86_64 only; ~10 min each on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${WSHUB_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
export PATH="$PWD/$venv/bin:$PATH"
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

kb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
echo "| arch | bootstrap (stripped) | zip |"
echo "|---|---|---|"
for arch in arm64 x86-64; do
  cargo lambda build --release --locked --quiet --$arch --bin wshub --output-format zip >/dev/null
  zip=target/lambda/wshub/bootstrap.zip
  inside=$(python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("bootstrap").file_size)' "$zip")
  echo "| $arch | $(kb "$inside") | $(kb "$(stat -c %s "$zip")") |"
done

if [ "${1:-}" = variants ]; then
  echo
  echo "| variant (x86_64, wshub) | opt-level | panic | bootstrap |"
  echo "|---|---|---|---|"
  for v in "release:3:unwind" "s:s:unwind" "z:z:unwind" "abort:3:abort" "s-abort:s:abort" "z-abort:z:abort"; do
    IFS=: read -r name opt panic <<<"$v"
    CARGO_TARGET_DIR="target/size-$name" CARGO_PROFILE_RELEASE_OPT_LEVEL="$opt" CARGO_PROFILE_RELEASE_PANIC="$panic" \
      cargo build --release --locked --quiet --bin wshub
    echo "| $name | $opt | $panic | $(kb "$(stat -c %s "target/size-$name/release/wshub")") |"
  done
fi
