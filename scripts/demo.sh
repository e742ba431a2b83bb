#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The main job: 30 s of live test pattern (H.264 + AAC) pushed through fmp4ingestsink to the
# project's own ingest endpoint on 127.0.0.1 (fmp4ingest-endpoint's library), with progress,
# the gst-play-1.0 lines that play it (Smooth, DASH, HLS) and the heartbeat view with a verdict.
#   scripts/demo.sh                          push to the local endpoint
#   scripts/demo.sh --keep                   then keep serving the recording until Ctrl-C
#   scripts/demo.sh URL [--seconds N]        push to any .../Streams(<id>) URL instead
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== building the demo"
cargo build --locked -q -p fmp4ingest-examples --bin fmp4ingest-demo
exec target/debug/fmp4ingest-demo "$@"
