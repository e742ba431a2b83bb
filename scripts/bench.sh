#!/usr/bin/env bash
# The benchmarks (not part of the test command): figures go into BENCHMARKS.md.
#   scripts/bench.sh            all benchmarks
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked -q -p fmp4ingest-examples --bin fmp4ingest-bench
exec target/debug/fmp4ingest-bench "$@" --out BENCHMARKS.md
