// SPDX-License-Identifier: MPL-2.0
//! libFuzzer entry point of [`fmp4ingest_fuzz::endpoint_cmaf`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fmp4ingest_fuzz::endpoint_cmaf(data);
});
