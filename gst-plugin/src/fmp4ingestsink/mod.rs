// SPDX-License-Identifier: MPL-2.0
//! `fmp4ingestsink`: pushes a live fragmented MP4 stream to a Smooth Streaming / Azure-style
//! ingest endpoint (`.../ingest.isml/Streams(<id>)`).
//!
//! Put any fragmenting MP4 muxer in front of it (mp4mux, ismlmux or qtmux with
//! `fragment-duration`, isofmp4mux, cmafmux). The element rewrites the muxer's output into a
//! conformant ingest stream (ftyp, Live Server Manifest, moov, then Smooth fragments with tfxd)
//! and sends it with the protocol's probe and long-running chunked POST.
//!
//! Ad signals: with `sparse-stream-id` set, the element keeps a sparse SCTE-35 stream next to
//! the media stream (docs/protocol.md §5). It takes custom downstream events (serialized or
//! out-of-band) that reach its sink pad, or that are given to it with `gst_element_send_event()`:
//!
//! - `fmp4ingest-splice`: `running-time` (guint64 ns, required: the splice instant on the
//!   pipeline's running time), `id` (guint, required), `duration` (guint64 ns, 0 = unknown),
//!   `out-of-network` (boolean, default true), `cancel` (boolean, default false). The element
//!   builds the splice_insert.
//! - `fmp4ingest-scte35`: `section` (GstBuffer, required: a whole splice_info_section, CRC
//!   included), `running-time` (guint64 ns, required), `id` (guint; default the
//!   splice_event_id of a splice_insert, else a counter), `duration` (guint64 ns; default the
//!   break_duration).
//! - `scte-sit`, from `tsdemux send-scte35-events=true`: the section, with its splice time
//!   mapped to running time by tsdemux.
//!
//! Each message goes out `splice-lead` (4 s) before its splice; less lead is sent at once with
//! a warning; a malformed section or a splice in the past is refused with a warning and an
//! `fmp4ingestsink-signal-refused` message. `splice-mode` asks upstream for a key frame at the
//! splice, and can start a new fragment there.

use gst::glib;
use gst::prelude::*;

mod ad_events;
mod ads;
mod cmaf_path;
mod cmaf_reporting;
mod cmaf_settings;
mod cmaf_uploader;
mod http_settings;
mod imp;
mod key_units;
mod reporting;
mod sparse_uploader;
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

/// What the media does at an ad splice (`splice-mode`), like MediaLive's sparse track types.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFmp4IngestSpliceMode")]
pub enum SpliceMode {
    /// Nothing: the message alone.
    #[enum_value(name = "Message only", nick = "none")]
    None = 0,
    /// A key frame at the splice (SCTE_35_WITHOUT_SEGMENTATION).
    #[default]
    #[enum_value(name = "Key frame at the splice", nick = "keyframe")]
    KeyFrame = 1,
    /// A key frame that also starts a fragment (SCTE_35).
    #[enum_value(name = "Key frame and a new fragment at the splice", nick = "segment")]
    Segment = 2,
}

glib::wrapper! {
    pub struct Fmp4IngestSink(ObjectSubclass<imp::Fmp4IngestSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "fmp4ingestsink", gst::Rank::NONE, Fmp4IngestSink::static_type())
}
