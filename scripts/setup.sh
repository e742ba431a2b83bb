#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Installs what building and testing fmp4ingest needs on Debian 12. Safe to run again: it only
# installs packages that are missing.
set -euo pipefail

packages=(
  # GStreamer 1.22 headers for gstreamer-rs, and the tools and plugins the tests run
  pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav
  # the meson build of the plugin
  meson ninja-build python3
  # Debian's Rust 1.96 with its library sources: the offline WASM check of the core; and its
  # rustfmt, for `cargo fmt --check` on a machine without rustup
  rustc-web cargo-web rust-web-src rustfmt-web
  ca-certificates gcc
  # GNU time: the benchmarks' wall, CPU and peak RSS of whole processes
  time
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "== installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A machine without rustup still has Debian's cargo 1.96 from rustc-web, which is new enough.
if ! command -v cargo >/dev/null 2>&1; then
  echo "== no cargo on PATH: using Debian's rustc-web toolchain (/usr/bin/cargo)"
fi

# clippy, for the lint step of scripts/test.sh (rustup's component; Debian has no clippy for
# rustc-web).
if ! cargo clippy --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
  echo "== installing clippy (rustup component)"
  rustup component add clippy
fi
