// SPDX-License-Identifier: MPL-2.0
//! fmp4ingest-core: everything that goes on the wire of a Smooth Streaming ("Azure-style
//! fragmented MP4") live ingest, with no IO.
//!
//! The crate is `no_std` + `alloc`, reads no clock and starts no thread: time comes in as an
//! argument. It builds for `wasm32-unknown-unknown`. The GStreamer element in `gst-plugin` is a
//! thin driver around it.
//!
//! The media path, top to bottom:
//! [`splitter::BoxSplitter`] (muxer bytes to init segment and fragments) →
//! [`movie::parse_moov`] (track info) and [`track_fragment::FragmentReader`] (per-track
//! samples) → [`ingest_header::IngestHeader`] (ftyp, Live Server Manifest, moov) and
//! [`fragment::write_fragment`] (Smooth moof with tfxd) — all driven by
//! [`ingest_stream::IngestStream`], on the fixed grid of [`timeline`]. The HTTP side is the
//! sans-IO [`session::IngestSession`].
//!
//! Ad signalling: [`scte35`] (splice_info_section checks and splice_insert building),
//! [`sparse`] (the sparse stream's header and fragments), [`ad_signals::AdSignals`] (when each
//! message goes and with what times) and [`session::sparse::SparseSession`] (its short POSTs).
//!
//! CMAF ingest (DASH-IF Live Media Ingest, Interface-1) shares the splitter, the moov parser,
//! the fragment reader and the grid: [`cmaf::stream::CmafStream`] splits the muxer's output
//! into one CMAF track per media track (a [`cmaf::header::CmafHeader`], then segments as
//! [`cmaf::segment::CmafChunk`]s), ad signals become the timed metadata track of
//! [`cmaf::metadata`], and each track's requests are the sans-IO
//! [`session::cmaf::CmafSession`].

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod ad_signals;
pub mod bmff;
pub mod cmaf;
pub mod error;
pub mod fragment;
pub mod hex;
pub mod ingest_header;
pub mod ingest_stream;
pub mod ingest_url;
pub mod manifest;
pub mod moov;
pub mod movie;
mod muxer_input;
pub mod payload;
pub mod scte35;
pub mod sequence;
pub mod session;
pub mod smooth_boxes;
pub mod sparse;
pub mod splitter;
pub mod timeline;
pub mod track_fragment;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_support;

pub use bytes::Bytes;
pub use error::{Error, Result};
