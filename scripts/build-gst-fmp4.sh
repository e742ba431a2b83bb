#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Builds gst-plugins-rs' fmp4 plugin (isofmp4mux, cmafmux; not packaged in Debian 12) from the
# crate the tests use, into target/gst-fmp4/debug/libgstfmp4.so, for gst-launch by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fetch --locked -q
manifest=$(cargo metadata --locked --format-version 1 | python3 -c \
  'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="gst-plugin-fmp4"))')
cargo build -q --manifest-path "$manifest" --lib --target-dir target/gst-fmp4
echo "$PWD/target/gst-fmp4/debug/libgstfmp4.so"
