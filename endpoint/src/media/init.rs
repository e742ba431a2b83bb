// SPDX-License-Identifier: MPL-2.0
//! Init segments for DASH and HLS, built from the ingested moov.
//!
//! A Smooth ingest moov describes every track of its stream; a DASH Representation and an HLS
//! `EXT-X-MAP` want one track each (ISO/IEC 23009-1 §6.3.4.2 and RFC 8216 §3.3: an
//! initialization segment of ftyp + moov). The init segment of a track is `ftyp` (iso6) and a
//! moov with the ingested `mvhd`, that track's `trak` as ingested, and `mvex` with its `trex`
//! (ISO/IEC 14496-12 §8.8.3; a default one when the ingest had none). Nothing of the sample
//! description is rewritten: what the encoder declared is what the player gets.

use fmp4ingest_core::bmff::fourcc::codes;
use fmp4ingest_core::bmff::writer::{PutBytes, write_box, write_full_box};
use fmp4ingest_core::bmff::{BoxRef, Boxes, FourCC};

/// One `trak` of a moov, with what fragment reading needs.
#[derive(Debug, Clone)]
pub struct MoovTrak<'a> {
    pub track_id: u32,
    pub handler: FourCC,
    pub timescale: u32,
    /// The whole trak box.
    pub trak: &'a [u8],
    /// The whole trex box for this track, if the moov has one.
    pub trex: Option<&'a [u8]>,
    /// trex's sample defaults (ISO/IEC 14496-12 §8.8.3), zeros without a trex.
    pub defaults: SampleDefaults,
}

/// The `trex` defaults that fragment reading falls back on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleDefaults {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
}

fn err(e: fmp4ingest_core::Error) -> String {
    format!("{e:?}")
}

/// The moov box's children: mvhd and the traks with their trex.
pub struct Moov<'a> {
    pub mvhd: &'a [u8],
    pub traks: Vec<MoovTrak<'a>>,
}

/// Reads a whole moov box (header included).
pub fn read_moov(moov: &[u8]) -> Result<Moov<'_>, String> {
    let moov = Boxes::new(moov).next().ok_or("an empty moov")?.map_err(err)?;
    if moov.box_type() != codes::MOOV {
        return Err(format!("expected a moov, found {}", moov.box_type().as_str().unwrap_or("?")));
    }
    let mvhd = moov.require(codes::MVHD).map_err(err)?.bytes;
    let mut trexes: Vec<(u32, &[u8], SampleDefaults)> = Vec::new();
    if let Some(mvex) = moov.child(codes::MVEX).map_err(err)? {
        for b in mvex.children().map_err(err)? {
            let b = b.map_err(err)?;
            if b.box_type() == codes::TREX {
                let mut r = b.reader();
                r.full_box().map_err(err)?;
                let id = r.u32("track_ID").map_err(err)?;
                r.skip(4, "default_sample_description_index").map_err(err)?;
                let duration = r.u32("default_sample_duration").map_err(err)?;
                let size = r.u32("default_sample_size").map_err(err)?;
                let flags = r.u32("default_sample_flags").map_err(err)?;
                trexes.push((id, b.bytes, SampleDefaults { duration, size, flags }));
            }
        }
    }
    let mut traks = Vec::new();
    for b in moov.children().map_err(err)? {
        let b = b.map_err(err)?;
        if b.box_type() == codes::TRAK {
            let (track_id, handler, timescale) = trak_ids(b).map_err(err)?;
            if traks.iter().any(|t: &MoovTrak<'_>| t.track_id == track_id) {
                return Err(format!("two traks with track_ID {track_id}"));
            }
            let trex = trexes.iter().find(|(id, _, _)| *id == track_id);
            traks.push(MoovTrak {
                track_id,
                handler,
                timescale,
                trak: b.bytes,
                trex: trex.map(|t| t.1),
                defaults: trex.map_or_else(SampleDefaults::default, |t| t.2),
            });
        }
    }
    Ok(Moov { mvhd, traks })
}

/// track_ID (tkhd), handler (hdlr) and timescale (mdhd) of a trak.
fn trak_ids(trak: BoxRef<'_>) -> fmp4ingest_core::Result<(u32, FourCC, u32)> {
    let mut r = trak.require(codes::TKHD)?.reader();
    let (version, _) = r.full_box()?;
    r.skip(if version == 1 { 16 } else { 8 }, "creation/modification_time")?;
    let track_id = r.u32("track_ID")?;
    let mdia = trak.require(codes::MDIA)?;
    let mut r = mdia.require(codes::MDHD)?.reader();
    let (version, _) = r.full_box()?;
    r.skip(if version == 1 { 16 } else { 8 }, "creation/modification_time")?;
    let timescale = r.u32("timescale")?;
    let mut r = mdia.require(codes::HDLR)?.reader();
    r.full_box()?;
    r.skip(4, "pre_defined")?;
    Ok((track_id, r.fourcc("handler_type")?, timescale))
}

/// The init segment of one track: ftyp, and a moov of the ingested mvhd, the track's trak and
/// its trex.
pub fn init_segment(moov: &Moov<'_>, track_id: u32) -> Option<Vec<u8>> {
    let t = moov.traks.iter().find(|t| t.track_id == track_id)?;
    let mut out = Vec::with_capacity(64 + moov.mvhd.len() + t.trak.len());
    write_box(&mut out, codes::FTYP, |o| {
        o.put_fourcc(FourCC(*b"iso6"));
        o.put_u32(0);
        o.put_fourcc(FourCC(*b"iso6"));
        o.put_fourcc(FourCC(*b"mp41"));
    });
    write_box(&mut out, codes::MOOV, |o| {
        o.extend_from_slice(moov.mvhd);
        o.extend_from_slice(t.trak);
        write_box(o, codes::MVEX, |o| match t.trex {
            Some(trex) => o.extend_from_slice(trex),
            None => write_full_box(o, codes::TREX, 0, 0, |o| {
                o.put_u32(track_id);
                o.put_u32(1); // default_sample_description_index
                o.put_u32(0);
                o.put_u32(0);
                o.put_u32(0);
            }),
        });
    });
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A moov of two tracks (video 1, audio 2, a trex for 1 only), as a test input.
    pub fn two_track_moov() -> Vec<u8> {
        let trak = |id: u32, handler: &[u8; 4], timescale: u32| {
            let mut t = Vec::new();
            write_box(&mut t, codes::TRAK, |o| {
                write_full_box(o, codes::TKHD, 0, 3, |o| {
                    o.put_zeros(8);
                    o.put_u32(id);
                    o.put_zeros(72);
                });
                write_box(o, codes::MDIA, |o| {
                    write_full_box(o, codes::MDHD, 0, 0, |o| {
                        o.put_zeros(8);
                        o.put_u32(timescale);
                        o.put_zeros(8);
                    });
                    write_full_box(o, codes::HDLR, 0, 0, |o| {
                        o.put_u32(0);
                        o.put_fourcc(FourCC(*handler));
                        o.put_zeros(13);
                    });
                });
            });
            t
        };
        let mut moov = Vec::new();
        write_box(&mut moov, codes::MOOV, |o| {
            write_full_box(o, codes::MVHD, 0, 0, |o| o.put_zeros(96));
            o.extend_from_slice(&trak(1, b"vide", 90000));
            o.extend_from_slice(&trak(2, b"soun", 48000));
            write_box(o, codes::MVEX, |o| {
                write_full_box(o, codes::TREX, 0, 0, |o| {
                    o.put_u32(1);
                    o.put_u32(1);
                    o.put_u32(3000);
                    o.put_u32(0);
                    o.put_u32(0x0101_0000);
                })
            });
        });
        moov
    }

    #[test]
    fn one_track_per_init_segment() {
        let moov_bytes = two_track_moov();
        let moov = read_moov(&moov_bytes).unwrap();
        assert_eq!(moov.traks.len(), 2);
        assert_eq!((moov.traks[0].track_id, moov.traks[0].timescale), (1, 90000));
        assert_eq!(moov.traks[0].defaults, SampleDefaults { duration: 3000, size: 0, flags: 0x0101_0000 });
        assert_eq!(moov.traks[1].handler, FourCC(*b"soun"));
        for id in [1, 2] {
            let init = init_segment(&moov, id).unwrap();
            let boxes: Vec<_> = Boxes::new(&init).map(|b| b.unwrap()).collect();
            assert_eq!(boxes[0].box_type(), codes::FTYP);
            let again = read_moov(boxes[1].bytes).unwrap();
            assert_eq!(again.traks.len(), 1, "one trak in the init segment of track {id}");
            assert_eq!(again.traks[0].track_id, id);
            assert!(again.traks[0].trex.is_some(), "a trex, ingested or default");
        }
        assert!(init_segment(&moov, 3).is_none());
        assert!(read_moov(b"\0\0\0\x08free").is_err());
    }
}
