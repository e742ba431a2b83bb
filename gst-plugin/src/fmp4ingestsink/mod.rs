//! `fmp4ingestsink`: pushes a live fragmented MP4 stream to a Smooth Streaming / Azure-style
//! ingest endpoint (`.../ingest.isml/Streams(<id>)`).
//!
//! Put any fragmenting MP4 muxer in front of it (mp4mux, ismlmux or qtmux with
//! `fragment-duration`, isofmp4mux, cmafmux). The element rewrites the muxer's output into a
//! conformant ingest stream (ftyp, Live Server Manifest, moov, then Smooth fragments with tfxd)
//! and sends it with the protocol's probe and long-running chunked POST.

use gst::glib;
use gst::prelude::*;

mod imp;
mod key_units;
mod reporting;
mod tcp_watch;
mod uploader;
mod utc;

/// Where the ingest timeline's times come from (`timestamp-mode`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFmp4IngestTimestampMode")]
pub enum TimestampMode {
    /// The pipeline's running time (plus `timestamp-offset`).
    #[default]
    #[enum_value(name = "Pipeline running time", nick = "pipeline")]
    Pipeline = 0,
    /// UTC since the Unix epoch, from the pipeline clock (plus `timestamp-offset`): the same
    /// in every encoder, across restarts.
    #[enum_value(name = "UTC since the Unix epoch", nick = "utc")]
    Utc = 1,
}

glib::wrapper! {
    pub struct Fmp4IngestSink(ObjectSubclass<imp::Fmp4IngestSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "fmp4ingestsink", gst::Rank::NONE, Fmp4IngestSink::static_type())
}
