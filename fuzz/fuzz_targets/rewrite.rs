// SPDX-License-Identifier: MPL-2.0
//! libFuzzer entry point of [`fmp4ingest_fuzz::rewrite`] and [`fmp4ingest_fuzz::on_the_grid`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fmp4ingest_fuzz::rewrite(data);
    fmp4ingest_fuzz::on_the_grid(data);
});
