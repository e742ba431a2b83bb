#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Every test: the workspace's cargo tests (unit tests and live pipelines against our receiver),
# the WASM build of the no_std core, and the meson build, test and install of the plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TERM_COLOR=never
# meson's cargo build reuses what cargo test built.
export CARGO_TARGET_DIR="$PWD/target"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (workspace, every target, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test (workspace)"
cargo test --workspace --locked

echo "== fuzz targets: their corpora replayed (stable), then a short run of each (cargo fuzz, nightly)"
cargo test --manifest-path fuzz/Cargo.toml --locked
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "no nightly toolchain: cargo fuzz needs it (rustup toolchain install nightly)" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
work="$(mktemp -d)"
for target in splitter moov rewrite scte35 cmaf endpoint_route endpoint_programs endpoint_ingest endpoint_cmaf; do
  mkdir -p "$work/$target"
  (cd fuzz && CARGO_TARGET_DIR="$PWD/target" cargo +nightly fuzz run "$target" --features fuzzing "$work/$target" "corpus/$target" -- \
    -max_total_time=10 -rss_limit_mb=2048 2>&1 | tail -n 2)
done
rm -rf "$work"

echo "== WASM build of fmp4ingest-core (wasm32-unknown-unknown, no_std)"
RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$PWD/target/wasm-web" \
  /usr/bin/cargo build --locked -p fmp4ingest-core -Zbuild-std=core,alloc --target wasm32-unknown-unknown

echo "== meson build, test and install of the plugin"
if [ -d builddir ]; then
  meson setup --reconfigure builddir --buildtype=debug >/dev/null
else
  meson setup builddir --buildtype=debug >/dev/null
fi
meson compile -C builddir
meson test -C builddir --print-errorlogs
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
meson install -C builddir --destdir "$stage" >/dev/null
installed="$(find "$stage" -name libgstfmp4ingest.so)"
test -n "$installed" || { echo "meson install did not install libgstfmp4ingest.so"; exit 1; }
echo "installed: ${installed#"$stage"}"

echo "== all tests passed"
