#!/usr/bin/env bash
# A short fuzz run for CI: each cargo-fuzz target (fuzz/fuzz_targets/) for FUZZ_SECONDS
# (default 20) from its committed corpus (fuzz/corpus/<target>/). Fails on any crash, panic,
# timeout or out-of-memory; the input that did it is saved under fuzz/artifacts/<target>/.
# New inputs go to target/fuzz-smoke/, so the committed corpus only changes on purpose
# (BENCHMARKS.md has the long runs and how the corpus was minimized).
# Needs rustup and a C++ compiler (libfuzzer-sys builds libFuzzer); installs the nightly
# toolchain and the pinned cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_fuzz_version=0.13.2
seconds="${FUZZ_SECONDS:-20}"
targets=(classify_and_route client_frame push_body)

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -qxF "cargo-fuzz $cargo_fuzz_version"; then
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

# The same flags as the long runs, so one build serves both. No sanitizer: the crate and its
# targets have no unsafe code, so ASan would only slow the run; debug assertions (-a) turn
# integer overflow into a panic the fuzzer reports.
flags=(--sanitizer none --debug-assertions)
cargo +nightly fuzz build "${flags[@]}"
for target in "${targets[@]}"; do
  scratch="target/fuzz-smoke/$target"
  mkdir -p "$scratch"
  echo "fuzzing $target for ${seconds}s"
  # -timeout: an input taking over 10 s counts as a hang; -rss_limit_mb: libFuzzer's default.
  cargo +nightly fuzz run "${flags[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict=fuzz/dict/wshub.dict
done
