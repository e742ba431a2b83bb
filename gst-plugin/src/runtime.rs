// SPDX-License-Identifier: MPL-2.0
//! The one tokio runtime of the process, shared by every fmp4ingestsink.
//!
//! HTTP work of all sinks runs as tasks here, so that a hundred sinks cost two threads, not a
//! hundred (and no streaming thread ever waits on a socket).

use std::sync::LazyLock;

pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fmp4ingest-rt")
        .enable_all()
        .build()
        // Without a runtime the element cannot work at all; this only fails when the
        // process cannot create threads.
        .expect("fmp4ingest: cannot start the tokio runtime")
});
