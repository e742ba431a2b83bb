// SPDX-License-Identifier: MPL-2.0
//! CMAF ingest: DASH-IF Live Media Ingest Protocol v1.2, Interface-1.
//!
//! Each track of the muxer's output becomes a CMAF track of its own (ISO/IEC 23000-19 clause
//! 7), sent to its own URL on its own connection: a CMAF header (`ftyp`, `moov` with one
//! `trak`), then one CMAF segment per request (`styp`, `prft`, `moof`, `mdat`). Ad signals go
//! in a timed metadata track whose samples are `emsg` boxes.
//!
//! - [`boxes`]: the boxes CMAF adds (`styp`, `prft`, `btrt`, `kind`, `elng`, `urim`, `emsg`);
//! - [`header`]: the CMAF header of a track, from the muxer's `moov`;
//! - [`segment`]: CMAF segments, whole or as CMAF chunks;
//! - [`stream`]: muxer bytes in, per-track headers and segments out, on the fragment grid;
//! - [`metadata`]: the timed metadata track (`.cmfm`) carrying SCTE-35 in `emsg` samples;
//! - [`naming`]: the URL of each track under the publishing point.
//!
//! The HTTP side of one track is [`crate::session::cmaf::CmafSession`].

pub mod boxes;
pub mod header;
pub mod metadata;
pub mod naming;
pub mod segment;
pub mod stream;
