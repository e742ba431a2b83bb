#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The benchmarks (not part of the test command): figures go into BENCHMARKS.md.
#   scripts/bench.sh                      every suite (about 40 minutes)
#   scripts/bench.sh throughput core      some of them: throughput core latency many failover connect endpoint cmaf
# Release builds of the plugin (for gst-launch) and of the benchmark binary; inputs are made
# once into target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# FFmpeg, the peer of the cmaf suite (not needed by the tests).
if ! command -v ffmpeg >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg
fi
cargo build --locked -q --release -p gst-plugin-fmp4ingest --lib
cargo build --locked -q --release -p fmp4ingest-examples --bin fmp4ingest-bench
cargo build --locked -q --release -p fmp4ingest-endpoint --bin fmp4ingest-endpoint
exec target/release/fmp4ingest-bench "$@" --out BENCHMARKS.md
