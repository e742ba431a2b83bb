#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The benchmarks (not part of the test command): figures go into BENCHMARKS.md.
#   scripts/bench.sh                      every suite (about half an hour)
#   scripts/bench.sh throughput core      some of them: throughput core latency many failover endpoint
# Release builds of the plugin (for gst-launch) and of the benchmark binary; inputs are made
# once into target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked -q --release -p gst-plugin-fmp4ingest --lib
cargo build --locked -q --release -p fmp4ingest-examples --bin fmp4ingest-bench
cargo build --locked -q --release -p fmp4ingest-endpoint --bin fmp4ingest-endpoint
exec target/release/fmp4ingest-bench "$@" --out BENCHMARKS.md
