// SPDX-License-Identifier: MPL-2.0
//! Writing the ingest stream's `moov`: empty (no samples), one `trak` per track and `mvex`/`trex`
//! (docs/protocol.md §2.5; the sparse layout of §5.3 and A.3 comes out of the same writer).
//!
//! It is written from the track descriptions rather than copied from the muxer, so that it says
//! exactly what the Live Server Manifest says: same track_IDs, same timescales, same sample
//! entries, durations 0, no edit lists, no mehd.

use alloc::vec::Vec;

use crate::bmff::FourCC;
use crate::bmff::fourcc::codes;
use crate::bmff::writer::{PutBytes, write_box, write_full_box};
use crate::movie::{TrackInfo, TrackKind, pack_language};

/// What the moov says about one track.
#[derive(Debug, Clone, Copy)]
pub struct MoovTrack<'a> {
    pub track_id: u32,
    /// `vide`, `soun` or `meta`.
    pub handler: FourCC,
    pub timescale: u32,
    pub language: [u8; 3],
    /// Presentation size in pixels (0 for non-video).
    pub width: u32,
    pub height: u32,
    /// The complete sample entry box for `stsd`.
    pub sample_entry: &'a [u8],
}

impl<'a> MoovTrack<'a> {
    pub fn from_info(t: &'a TrackInfo) -> Self {
        MoovTrack {
            track_id: t.track_id,
            handler: t.handler,
            timescale: t.timescale,
            language: t.language,
            width: if t.kind == TrackKind::Video { t.display_width } else { 0 },
            height: if t.kind == TrackKind::Video { t.display_height } else { 0 },
            sample_entry: &t.sample_entry,
        }
    }
}

const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Where a caller of [`write_moov_with`] may add boxes to a track, in the order ISO/IEC
/// 14496-12 gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrakSlot {
    /// In `mdia`, after `hdlr` (an `elng`).
    AfterHandler,
    /// At the end of `trak` (a `udta`).
    EndOfTrak,
}

/// Writes the moov. `movie_timescale` only scales mvhd's (zero) duration.
pub fn write_moov(out: &mut Vec<u8>, movie_timescale: u32, tracks: &[MoovTrack<'_>]) {
    write_moov_with(out, movie_timescale, tracks, &mut |_, _, _| {});
}

/// Writes the moov, calling `extra(track index, slot, out)` where a track may hold more boxes.
pub fn write_moov_with(
    out: &mut Vec<u8>,
    movie_timescale: u32,
    tracks: &[MoovTrack<'_>],
    extra: &mut dyn FnMut(usize, TrakSlot, &mut Vec<u8>),
) {
    let next_track_id = tracks.iter().map(|t| t.track_id).max().unwrap_or(0).saturating_add(1);
    write_box(out, codes::MOOV, |o| {
        write_full_box(o, codes::MVHD, 0, 0, |o| {
            o.put_u32(0); // creation_time
            o.put_u32(0); // modification_time
            o.put_u32(movie_timescale);
            o.put_u32(0); // duration: live
            o.put_u32(0x0001_0000); // rate 1.0
            o.put_u16(0x0100); // volume 1.0
            o.put_zeros(10);
            for m in UNITY_MATRIX {
                o.put_u32(m);
            }
            o.put_zeros(24); // pre_defined
            o.put_u32(next_track_id);
        });
        for (i, t) in tracks.iter().enumerate() {
            write_trak(o, t, &mut |slot, o| extra(i, slot, o));
        }
        write_box(o, codes::MVEX, |o| {
            for t in tracks {
                write_full_box(o, codes::TREX, 0, 0, |o| {
                    o.put_u32(t.track_id);
                    o.put_u32(1); // default_sample_description_index
                    o.put_u32(0);
                    o.put_u32(0);
                    o.put_u32(0);
                });
            }
        });
    });
}

fn write_trak(o: &mut Vec<u8>, t: &MoovTrack<'_>, extra: &mut dyn FnMut(TrakSlot, &mut Vec<u8>)) {
    write_box(o, codes::TRAK, |o| {
        // flags 7: enabled, in movie, in preview
        write_full_box(o, codes::TKHD, 0, 7, |o| {
            o.put_u32(0);
            o.put_u32(0);
            o.put_u32(t.track_id);
            o.put_u32(0); // reserved
            o.put_u32(0); // duration
            o.put_zeros(8);
            o.put_u16(0); // layer
            o.put_u16(0); // alternate_group
            o.put_u16(if t.handler == codes::SOUN { 0x0100 } else { 0 });
            o.put_u16(0);
            for m in UNITY_MATRIX {
                o.put_u32(m);
            }
            o.put_u32(t.width << 16);
            o.put_u32(t.height << 16);
        });
        write_box(o, codes::MDIA, |o| {
            write_full_box(o, codes::MDHD, 0, 0, |o| {
                o.put_u32(0);
                o.put_u32(0);
                o.put_u32(t.timescale);
                o.put_u32(0);
                o.put_u16(pack_language(&t.language));
                o.put_u16(0);
            });
            write_full_box(o, codes::HDLR, 0, 0, |o| {
                o.put_u32(0); // pre_defined
                o.put_fourcc(t.handler);
                o.put_zeros(12);
                o.put_u8(0); // empty name
            });
            extra(TrakSlot::AfterHandler, o);
            write_box(o, codes::MINF, |o| {
                match t.handler {
                    codes::VIDE => write_full_box(o, codes::VMHD, 0, 1, |o| o.put_zeros(8)),
                    codes::SOUN => write_full_box(o, codes::SMHD, 0, 0, |o| o.put_zeros(4)),
                    _ => write_full_box(o, codes::NMHD, 0, 0, |_| {}),
                }
                write_box(o, codes::DINF, |o| {
                    write_full_box(o, codes::DREF, 0, 0, |o| {
                        o.put_u32(1);
                        // flags 1: media data is in the same file
                        write_full_box(o, codes::URL, 0, 1, |_| {});
                    });
                });
                write_box(o, codes::STBL, |o| {
                    write_full_box(o, codes::STSD, 0, 0, |o| {
                        o.put_u32(1);
                        o.extend_from_slice(t.sample_entry);
                    });
                    write_full_box(o, codes::STTS, 0, 0, |o| o.put_u32(0));
                    write_full_box(o, codes::STSC, 0, 0, |o| o.put_u32(0));
                    write_full_box(o, codes::STSZ, 0, 0, |o| {
                        o.put_u32(0);
                        o.put_u32(0);
                    });
                    write_full_box(o, codes::STCO, 0, 0, |o| o.put_u32(0));
                });
            });
        });
        extra(TrakSlot::EndOfTrak, o);
    });
}

/// A MetaDataSampleEntry with no fields beyond SampleEntry: size, coding name, 6 reserved
/// bytes, data_reference_index 1 (docs/protocol.md §5.3).
pub fn metadata_sample_entry(coding_name: FourCC) -> Vec<u8> {
    let mut e = Vec::new();
    write_box(&mut e, coding_name, |o| {
        o.put_zeros(6);
        o.put_u16(1);
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::parse_hex;
    use crate::movie::parse_moov;
    use crate::test_support::{avc1_entry, mp4a_entry, spec_tracks};

    const SPARSE_MOOV_A1: &str = "
        00 00 01 ED 6D 6F 6F 76 00 00 00 6C 6D 76 68 64 00 00 00 00 00 00 00 00 00 00 00 00 00 98 96 80
        00 00 00 00 00 01 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 40 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 04 00 00 01 51 74 72 61 6B 00 00 00 5C
        74 6B 68 64 00 00 00 07 00 00 00 00 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 40 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ED 6D 64 69 61
        00 00 00 20 6D 64 68 64 00 00 00 00 00 00 00 00 00 00 00 00 00 98 96 80 00 00 00 00 55 C4 00 00
        00 00 00 21 68 64 6C 72 00 00 00 00 00 00 00 00 6D 65 74 61 00 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 A4 6D 69 6E 66 00 00 00 0C 6E 6D 68 64 00 00 00 00 00 00 00 24 64 69 6E 66 00 00 00
        1C 64 72 65 66 00 00 00 00 00 00 00 01 00 00 00 0C 75 72 6C 20 00 00 00 01 00 00 00 6C 73 74 62
        6C 00 00 00 20 73 74 73 64 00 00 00 00 00 00 00 01 00 00 00 10 73 63 74 65 00 00 00 00 00 00 00
        01 00 00 00 10 73 74 74 73 00 00 00 00 00 00 00 00 00 00 00 10 73 74 73 63 00 00 00 00 00 00 00
        00 00 00 00 14 73 74 73 7A 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 10 73 74 63 6F 00 00 00
        00 00 00 00 00 00 00 00 28 6D 76 65 78 00 00 00 20 74 72 65 78 00 00 00 00 00 00 00 03 00 00 00
        01 00 00 00 00 00 00 00 00 00 00 00 00";

    #[test]
    fn sparse_moov_matches_appendix_a1() {
        let entry = metadata_sample_entry(codes::SCTE);
        let track = MoovTrack {
            track_id: 3,
            handler: codes::META,
            timescale: 10_000_000,
            language: *b"und",
            width: 0,
            height: 0,
            sample_entry: &entry,
        };
        let mut out = Vec::new();
        write_moov(&mut out, 10_000_000, &[track]);
        assert_eq!(out.len(), 493);
        assert_eq!(out, parse_hex(SPARSE_MOOV_A1));
    }

    #[test]
    fn written_moov_parses_back_to_the_same_tracks() {
        let (mut video, mut audio) = spec_tracks();
        video.sample_entry = avc1_entry(1280, 720, &parse_hex("01 64 00 1F FF E1 00 02 67 64 01 00 02 68 EE"));
        audio.sample_entry = mp4a_entry();
        let mut out = Vec::new();
        write_moov(&mut out, 1000, &[MoovTrack::from_info(&video), MoovTrack::from_info(&audio)]);
        let movie = parse_moov(&out).unwrap();
        assert_eq!(movie.tracks.len(), 2);
        let v = &movie.tracks[0];
        assert_eq!((v.track_id, v.timescale, v.width, v.height), (1, 10_000_000, 1280, 720));
        assert_eq!((v.display_width, v.display_height), (1280, 720));
        assert_eq!(v.codec_private_data, parse_hex("00000001 6764 00000001 68EE"));
        assert_eq!(v.sample_entry, video.sample_entry);
        let a = &movie.tracks[1];
        assert_eq!((a.track_id, a.channels, a.sample_rate, a.language), (2, 2, 48000, *b"eng"));
        assert_eq!(a.codec_private_data, [0x11, 0x90]);
        assert_eq!(a.bitrate, Some(128_000));
        assert_eq!(a.sample_entry, audio.sample_entry);
        assert_eq!(a.smooth_fourcc(), "AACL");
    }

    #[test]
    fn a_moov_without_tracks_is_refused() {
        let mut out = Vec::new();
        write_moov(&mut out, 1000, &[]);
        assert_eq!(parse_moov(&out), Err(crate::error::Error::NoTracks));
    }
}
