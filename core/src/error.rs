// SPDX-License-Identifier: MPL-2.0
//! Typed errors of the core. Every failure names the box (and where useful the field) it
//! happened in, so that the element can post an error that says what, where and what to do.

use core::fmt;

use crate::bmff::FourCC;

/// Everything that can go wrong while reading or rewriting the muxer's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A box or field ends past the bytes available.
    Truncated { in_box: FourCC, field: &'static str },
    /// A box header gives a size smaller than the header itself, or one that does not fit its parent.
    BadBoxSize { box_type: FourCC, size: u64 },
    /// A box with size 0 ("to the end of the file") cannot be delimited in a live stream.
    SizeZeroBox { box_type: FourCC },
    /// Boxes nested deeper than [`crate::bmff::MAX_DEPTH`].
    TooDeep { box_type: FourCC },
    /// A box that must be buffered whole is bigger than the configured limit.
    BoxTooLarge { box_type: FourCC, size: u64, limit: u64 },
    /// A required child box is absent.
    MissingBox { parent: FourCC, child: FourCC },
    /// A field holds a value this implementation cannot use.
    InvalidValue { in_box: FourCC, field: &'static str },
    /// The first box of the stream is not something an MP4 muxer writes.
    NotMp4 { first_box: FourCC },
    /// Boxes arrived in an order that cannot be a fragmented MP4 stream.
    UnexpectedBox { box_type: FourCC, expected: &'static str },
    /// A moof was not followed by its mdat.
    MoofWithoutMdat { next: FourCC },
    /// A fragment refers to a track that moov does not describe.
    UnknownTrack { track_id: u32 },
    /// The moov describes no track this stream can carry.
    NoTracks,
    /// A codec that Smooth ingest cannot describe.
    UnsupportedCodec { sample_entry: FourCC, handler: FourCC },
    /// Sample data referenced by a trun lies outside the fragment's mdat.
    SampleOutsideMdat { track_id: u32 },
    /// A second init segment (ftyp/moov) describes a different set of tracks.
    TrackSetChanged,
    /// A time stamp computation overflowed or went negative.
    TimestampOutOfRange { track_id: u32 },
    /// An operation was attempted after a fatal error.
    Poisoned,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { in_box, field } => {
                write!(f, "box '{in_box}' is truncated: field '{field}' runs past its end")
            }
            Error::BadBoxSize { box_type, size } => {
                write!(f, "box '{box_type}' has an impossible size of {size} bytes")
            }
            Error::SizeZeroBox { box_type } => write!(
                f,
                "box '{box_type}' has size 0 (runs to end of file), which a live stream cannot delimit; \
                 configure the muxer for fragmented output"
            ),
            Error::TooDeep { box_type } => {
                write!(f, "box '{box_type}' is nested deeper than {} levels", crate::bmff::MAX_DEPTH)
            }
            Error::BoxTooLarge { box_type, size, limit } => write!(
                f,
                "box '{box_type}' of {size} bytes exceeds the limit of {limit} bytes for a box held in memory"
            ),
            Error::MissingBox { parent, child } => {
                write!(f, "box '{parent}' has no '{child}' child")
            }
            Error::InvalidValue { in_box, field } => {
                write!(f, "box '{in_box}' has an invalid value in field '{field}'")
            }
            Error::NotMp4 { first_box } => write!(
                f,
                "input is not ISO BMFF/MP4: first box type is '{first_box}'; \
                 put a fragmenting MP4 muxer (mp4mux, ismlmux, isofmp4mux, cmafmux) before the sink"
            ),
            Error::UnexpectedBox { box_type, expected } => {
                write!(f, "unexpected box '{box_type}', expected {expected}")
            }
            Error::MoofWithoutMdat { next } => {
                write!(f, "a 'moof' was followed by '{next}' instead of its 'mdat'")
            }
            Error::UnknownTrack { track_id } => {
                write!(f, "fragment refers to track {track_id}, which the moov does not describe")
            }
            Error::NoTracks => write!(f, "the moov describes no audio or video track"),
            Error::UnsupportedCodec { sample_entry, handler } => write!(
                f,
                "unsupported codec '{sample_entry}' on a '{handler}' track; \
                 Smooth ingest carries H.264 (avc1/avc3), HEVC (hvc1/hev1) and AAC (mp4a)"
            ),
            Error::SampleOutsideMdat { track_id } => {
                write!(f, "sample data of track {track_id} lies outside the fragment's mdat")
            }
            Error::TrackSetChanged => write!(
                f,
                "a new moov describes a different set of tracks; a live ingest stream cannot change its \
                 tracks mid-stream, restart the pipeline instead"
            ),
            Error::TimestampOutOfRange { track_id } => {
                write!(f, "a time stamp of track {track_id} is out of range")
            }
            Error::Poisoned => write!(f, "the stream stopped at an earlier error"),
        }
    }
}

impl core::error::Error for Error {}

pub type Result<T, E = Error> = core::result::Result<T, E>;
