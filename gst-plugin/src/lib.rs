// SPDX-License-Identifier: MPL-2.0
//! GStreamer plugin `fmp4ingest`: the `fmp4ingestsink` element.
//!
//! A thin shell around `fmp4ingest-core`: GStreamer glue, properties, messages, and HTTP on
//! connections of its own ([`http`], hyper and rustls) run by one driver skeleton ([`driver`])
//! on one shared tokio runtime. Protocol decisions live in the core.

use gst::glib;

mod driver;
mod fmp4ingestsink;
mod http;
mod runtime;

pub use fmp4ingestsink::Fmp4IngestSink;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    fmp4ingestsink::register(plugin)
}

gst::plugin_define!(
    fmp4ingest,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
