// SPDX-License-Identifier: MPL-2.0
//! The CMAF header of one track (ISO/IEC 23000-19 7.3.1, 7.5): `ftyp` with the CMAF brands,
//! then a `moov` with one `trak` and `mvex`/`trex`, no samples.
//!
//! It is written from the muxer's moov as the Smooth header is: the muxer's sample entry
//! (avc1, avc3, hvc1, hev1, or mp4a made plain) with a `btrt` (DASH-IF Live Media Ingest,
//! "General Protocol, Manifest and Track Format Requirements" 12), the language in `mdhd` and
//! in `elng` when it is not a 3-letter code ("Requirements for Formatting Media Tracks" 5),
//! and a `kind` box per role in `udta` (ibid. 11). Every byte is a function of these inputs,
//! so that the header is the same on every connection, after every restart and in every
//! encoder of a redundant pair (ibid. "Requirements for Failovers" 3) — given the same
//! bitrate: a bitrate measured on the first segment differs between encoders that started at
//! different times, so redundant encoders declare theirs.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::bmff::fourcc::codes;
use crate::bmff::writer::{PutBytes, write_box};
use crate::bmff::{Boxes, FourCC};
use crate::cmaf::boxes::{
    BitRate, DASH_EVENT_URI, Kind, SWITCHING_SET_SCHEME, write_elng, write_uri_meta_sample_entry,
};
use crate::error::{Error, Result};
use crate::moov::{MoovTrack, TrakSlot, write_moov_with};
use crate::movie::{AUDIO_ENTRY_FIELDS, TrackInfo, TrackKind, VISUAL_ENTRY_FIELDS};

/// What a CMAF track carries, and the file extension of its path (`.cmfv`, `.cmfa`, `.cmfm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmafTrackKind {
    Video,
    Audio,
    /// A timed metadata track (`hdlr` `meta`).
    Metadata,
}

impl CmafTrackKind {
    /// The extension DASH-IF ingest receivers (and MediaLive) use for the track's name.
    pub fn extension(self) -> &'static str {
        match self {
            CmafTrackKind::Video => "cmfv",
            CmafTrackKind::Audio => "cmfa",
            CmafTrackKind::Metadata => "cmfm",
        }
    }
}

impl From<TrackKind> for CmafTrackKind {
    fn from(k: TrackKind) -> Self {
        match k {
            TrackKind::Video => CmafTrackKind::Video,
            TrackKind::Audio => CmafTrackKind::Audio,
        }
    }
}

/// How a track is described beyond what the muxer's moov says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackDescription {
    /// Average bitrate (bits per second) for `btrt`; `None` takes the muxer's, else a measured
    /// one.
    pub bitrate: Option<u32>,
    /// Peak bitrate for `btrt`; `None` is the average.
    pub max_bitrate: Option<u32>,
    /// An ISO 639-2/T code (`eng`) or a BCP 47 tag (`en-US`, `pt-BR`); `None` keeps the
    /// muxer's `mdhd` language.
    pub language: Option<String>,
    /// DASH roles (`main`, `alternate`, `commentary`, `description`, ...), one `kind` each.
    pub roles: Vec<String>,
    /// The switching set the track belongs to (characters A-Za-z0-9_.-~).
    pub switching_set: Option<String>,
}

/// A built CMAF header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmafHeader {
    /// `ftyp` + `moov`.
    pub bytes: Bytes,
    pub track_id: u32,
    pub kind: CmafTrackKind,
    pub timescale: u32,
    /// What `btrt` declares (none for a metadata track).
    pub bitrate: Option<BitRate>,
}

/// The `ftyp` of every CMAF header: major `cmfc` (the CMAF track brand, ISO/IEC 23000-19 7.2),
/// compatible `iso6` and `cmfc`.
pub fn write_cmaf_ftyp(out: &mut Vec<u8>) {
    write_box(out, codes::FTYP, |o| {
        o.put_fourcc(codes::CMFC);
        o.put_u32(0);
        o.put_fourcc(codes::ISO6);
        o.put_fourcc(codes::CMFC);
    });
}

/// The `mdhd` language and the `elng` tag (if any) of a configured language.
fn languages(configured: Option<&str>, muxer: [u8; 3]) -> ([u8; 3], Option<&str>) {
    let Some(tag) = configured.filter(|t| !t.is_empty()) else { return (muxer, None) };
    let three = |s: &str| -> Option<[u8; 3]> {
        let b = s.as_bytes();
        (b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic))
            .then(|| [b[0].to_ascii_lowercase(), b[1].to_ascii_lowercase(), b[2].to_ascii_lowercase()])
    };
    match three(tag) {
        Some(code) => (code, None),
        None => (tag.split('-').next().and_then(three).unwrap_or(*b"und"), Some(tag)),
    }
}

/// A sample entry with `btrt` as its last child (any `btrt` the muxer wrote goes), its
/// other children kept in order. `fields` is the length of the entry's fields before them.
fn with_btrt(entry: &[u8], fields: usize, bitrate: BitRate) -> Result<Vec<u8>> {
    let b =
        Boxes::new(entry).next().ok_or(Error::MissingBox { parent: codes::STSD, child: FourCC::new(b"entr") })??;
    let body = b.body();
    if body.len() < fields {
        return Err(Error::Truncated { in_box: b.box_type(), field: "sample entry fields" });
    }
    // Children that do not parse are refused rather than dropped.
    let children = b.children_after(fields)?.collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(entry.len() + BitRate::SIZE);
    write_box(&mut out, b.box_type(), |o| {
        o.extend_from_slice(&body[..fields]);
        for c in children.iter().filter(|c| c.box_type() != codes::BTRT) {
            o.extend_from_slice(c.bytes);
        }
        bitrate.write(o);
    });
    Ok(out)
}

/// The `elng` and `kind` boxes a description adds.
fn write_extras(o: &mut Vec<u8>, slot: TrakSlot, elng: Option<&str>, desc: &TrackDescription) {
    match slot {
        TrakSlot::AfterHandler => {
            if let Some(tag) = elng {
                write_elng(o, tag);
            }
        }
        TrakSlot::EndOfTrak => {
            let mut kinds: Vec<Kind> =
                desc.roles.iter().filter(|r| !r.is_empty()).map(|r| Kind::dash_role(r)).collect();
            if let Some(set) = desc.switching_set.as_ref().filter(|s| !s.is_empty()) {
                kinds.push(Kind { scheme_uri: SWITCHING_SET_SCHEME.into(), value: set.clone() });
            }
            if !kinds.is_empty() {
                write_box(o, codes::UDTA, |o| {
                    for k in &kinds {
                        k.write(o);
                    }
                });
            }
        }
    }
}

impl CmafHeader {
    /// The header of an audio or video track of the muxer. `bitrate` is what `btrt` says.
    pub fn for_track(info: &TrackInfo, bitrate: BitRate, desc: &TrackDescription) -> Result<CmafHeader> {
        let fields = match info.kind {
            TrackKind::Video => VISUAL_ENTRY_FIELDS,
            TrackKind::Audio => AUDIO_ENTRY_FIELDS,
        };
        let entry = with_btrt(&info.sample_entry, fields, bitrate)?;
        let (language, elng) = languages(desc.language.as_deref(), info.language);
        let track = MoovTrack { language, sample_entry: &entry, ..MoovTrack::from_info(info) };
        let mut out = Vec::with_capacity(entry.len() + 1024);
        write_cmaf_ftyp(&mut out);
        write_moov_with(&mut out, info.timescale, &[track], &mut |_, slot, o| write_extras(o, slot, elng, desc));
        Ok(CmafHeader {
            bytes: Bytes::from(out),
            track_id: info.track_id,
            kind: info.kind.into(),
            timescale: info.timescale,
            bitrate: Some(bitrate),
        })
    }

    /// The header of a timed metadata track whose samples are `emsg` boxes (DASH-IF Live Media
    /// Ingest, "Requirements for Timed Metadata Tracks" 1, 5b): `hdlr` `meta`, `nmhd`, a
    /// `urim` sample entry holding `urn:mpeg:dash:event:2012`.
    pub fn for_metadata(track_id: u32, timescale: u32, desc: &TrackDescription) -> CmafHeader {
        let mut entry = Vec::new();
        write_uri_meta_sample_entry(&mut entry, DASH_EVENT_URI);
        let (language, elng) = languages(desc.language.as_deref(), *b"und");
        let track = MoovTrack {
            track_id,
            handler: codes::META,
            timescale,
            language,
            width: 0,
            height: 0,
            sample_entry: &entry,
        };
        let mut out = Vec::with_capacity(1024);
        write_cmaf_ftyp(&mut out);
        write_moov_with(&mut out, timescale, &[track], &mut |_, slot, o| write_extras(o, slot, elng, desc));
        CmafHeader { bytes: Bytes::from(out), track_id, kind: CmafTrackKind::Metadata, timescale, bitrate: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::BoxRef;
    use crate::cmaf::boxes::{DASH_ROLE_SCHEME, parse_elng, parse_uri_meta_sample_entry};
    use crate::hex::parse_hex;
    use crate::movie::parse_moov;
    use crate::smooth_boxes::parse_ftyp;
    use crate::test_support::{avc1_entry, mp4a_entry, spec_tracks};

    fn video() -> TrackInfo {
        let (mut v, _) = spec_tracks();
        let mut entry = avc1_entry(1280, 720, &parse_hex("01 64 00 1F FF E1 00 02 67 64 01 00 02 68 EE"));
        // The muxer's own btrt, which ours replaces: the entry's size grows by its 20 bytes.
        let size = u32::from_be_bytes(entry[..4].try_into().unwrap()) + 20;
        entry[..4].copy_from_slice(&size.to_be_bytes());
        BitRate { buffer_size_db: 1, max_bitrate: 2, avg_bitrate: 3 }.write(&mut entry);
        v.sample_entry = entry;
        v
    }

    fn find<'a>(b: BoxRef<'a>, path: &[&[u8; 4]]) -> BoxRef<'a> {
        path.iter().fold(b, |b, t| b.require(FourCC::new(t)).unwrap())
    }

    fn stsd_entry(moov: BoxRef<'_>) -> BoxRef<'_> {
        let stsd = find(moov, &[b"trak", b"mdia", b"minf", b"stbl", b"stsd"]);
        stsd.children_after(8).unwrap().next().unwrap().unwrap()
    }

    #[test]
    fn a_video_header_is_ftyp_then_a_one_track_moov_with_btrt() {
        let v = video();
        let rate = BitRate { buffer_size_db: 0, max_bitrate: 3_000_000, avg_bitrate: 2_500_000 };
        let h = CmafHeader::for_track(&v, rate, &TrackDescription::default()).unwrap();
        let boxes: Vec<_> = Boxes::new(&h.bytes).map(|b| b.unwrap()).collect();
        assert_eq!(boxes.iter().map(|b| b.box_type()).collect::<Vec<_>>(), [codes::FTYP, codes::MOOV]);
        assert_eq!(parse_ftyp(boxes[0]).unwrap(), (codes::CMFC, 0, alloc::vec![codes::ISO6, codes::CMFC]));
        assert_eq!(boxes[0].bytes, parse_hex("00000018 66747970 636D6663 00000000 69736F36 636D6663"));
        let movie = parse_moov(boxes[1].bytes).unwrap();
        assert_eq!(movie.tracks.len(), 1);
        let t = &movie.tracks[0];
        assert_eq!((t.track_id, t.timescale, t.width, t.height), (1, 10_000_000, 1280, 720));
        assert_eq!(t.codec_private_data, parse_hex("00000001 6764 00000001 68EE"));
        // The muxer's btrt gave way to ours, the last child of the entry.
        assert_eq!(t.bitrate, Some(2_500_000));
        let entry = stsd_entry(boxes[1]);
        let kids: Vec<_> = entry.children_after(VISUAL_ENTRY_FIELDS).unwrap().map(|c| c.unwrap()).collect();
        assert_eq!(kids.iter().map(|c| c.box_type()).collect::<Vec<_>>(), [codes::AVCC, codes::BTRT]);
        assert_eq!(BitRate::parse(kids[1]).unwrap(), rate);
        assert_eq!(entry.bytes.len(), v.sample_entry.len());
        // One trex, for this track; no udta, no elng without a description.
        let trex = find(boxes[1], &[b"mvex", b"trex"]);
        assert_eq!(&trex.body()[4..8], &1u32.to_be_bytes());
        assert!(find(boxes[1], &[b"trak"]).child(codes::UDTA).unwrap().is_none());
        assert!(find(boxes[1], &[b"trak", b"mdia"]).child(codes::ELNG).unwrap().is_none());
        // Byte-identical for the same inputs.
        assert_eq!(CmafHeader::for_track(&v, rate, &TrackDescription::default()).unwrap(), h);
        assert_eq!(h.kind.extension(), "cmfv");
    }

    #[test]
    fn audio_gets_btrt_after_its_esds_and_its_language() {
        let (_, mut a) = spec_tracks();
        a.sample_entry = mp4a_entry();
        let rate = BitRate { buffer_size_db: 0, max_bitrate: 128_000, avg_bitrate: 128_000 };
        let desc = TrackDescription { language: Some("nld".into()), ..TrackDescription::default() };
        let h = CmafHeader::for_track(&a, rate, &desc).unwrap();
        let moov = Boxes::new(&h.bytes).nth(1).unwrap().unwrap();
        let t = &parse_moov(moov.bytes).unwrap().tracks[0];
        assert_eq!((t.language, t.sample_rate, t.channels), (*b"nld", 48000, 2));
        let kids: Vec<_> =
            stsd_entry(moov).children_after(AUDIO_ENTRY_FIELDS).unwrap().map(|c| c.unwrap().box_type()).collect();
        assert_eq!(kids, [codes::ESDS, codes::BTRT]);
        assert!(find(moov, &[b"trak", b"mdia"]).child(codes::ELNG).unwrap().is_none());
        assert_eq!(h.kind.extension(), "cmfa");
    }

    #[test]
    fn a_bcp47_language_goes_to_elng_and_roles_to_kind_boxes() {
        let (_, mut a) = spec_tracks();
        a.sample_entry = mp4a_entry();
        let desc = TrackDescription {
            language: Some("pt-BR".into()),
            roles: alloc::vec!["main".into(), "dub".into()],
            switching_set: Some("audio-1".into()),
            ..TrackDescription::default()
        };
        let h = CmafHeader::for_track(&a, BitRate::default(), &desc).unwrap();
        let moov = Boxes::new(&h.bytes).nth(1).unwrap().unwrap();
        let mdia = find(moov, &[b"trak", b"mdia"]);
        // elng right after hdlr, in mdia
        let order: Vec<_> = mdia.children().unwrap().map(|c| c.unwrap().box_type()).collect();
        assert_eq!(order, [codes::MDHD, codes::HDLR, codes::ELNG, codes::MINF]);
        assert_eq!(parse_elng(mdia.require(codes::ELNG).unwrap()).unwrap(), "pt-BR");
        // "pt" is no 3-letter code: mdhd says und.
        assert_eq!(parse_moov(moov.bytes).unwrap().tracks[0].language, *b"und");
        let trak = find(moov, &[b"trak"]);
        let order: Vec<_> = trak.children().unwrap().map(|c| c.unwrap().box_type()).collect();
        assert_eq!(order, [codes::TKHD, codes::MDIA, codes::UDTA]);
        let kinds: Vec<Kind> =
            trak.require(codes::UDTA).unwrap().children().unwrap().map(|k| Kind::parse(k.unwrap()).unwrap()).collect();
        assert_eq!(
            kinds,
            [
                Kind { scheme_uri: DASH_ROLE_SCHEME.into(), value: "main".into() },
                Kind { scheme_uri: DASH_ROLE_SCHEME.into(), value: "dub".into() },
                Kind { scheme_uri: SWITCHING_SET_SCHEME.into(), value: "audio-1".into() },
            ]
        );
        // A tag whose primary subtag has three letters keeps it in mdhd as well.
        let (code, elng) = languages(Some("deu-CH"), *b"und");
        assert_eq!((code, elng), (*b"deu", Some("deu-CH")));
        assert_eq!(languages(Some("ENG"), *b"und"), (*b"eng", None));
        assert_eq!(languages(None, *b"fra"), (*b"fra", None));
    }

    #[test]
    fn the_metadata_header_has_a_meta_handler_nmhd_and_urim() {
        let h = CmafHeader::for_metadata(3, 90_000, &TrackDescription::default());
        let moov = Boxes::new(&h.bytes).nth(1).unwrap().unwrap();
        let mdia = find(moov, &[b"trak", b"mdia"]);
        assert_eq!(&mdia.require(codes::HDLR).unwrap().body()[8..12], b"meta");
        assert!(find(mdia, &[b"minf"]).child(codes::NMHD).unwrap().is_some());
        let entry = stsd_entry(moov);
        assert_eq!(parse_uri_meta_sample_entry(entry).unwrap(), DASH_EVENT_URI);
        assert_eq!(h.kind.extension(), "cmfm");
        assert_eq!(CmafHeader::for_metadata(3, 90_000, &TrackDescription::default()), h);
    }

    #[test]
    fn a_sample_entry_whose_children_do_not_parse_is_refused() {
        let mut v = video();
        let n = v.sample_entry.len();
        // The btrt's size runs past the entry.
        v.sample_entry[n - 20..n - 16].copy_from_slice(&200u32.to_be_bytes());
        assert!(CmafHeader::for_track(&v, BitRate::default(), &TrackDescription::default()).is_err());
        v.sample_entry.truncate(40);
        v.sample_entry[..4].copy_from_slice(&40u32.to_be_bytes());
        assert!(CmafHeader::for_track(&v, BitRate::default(), &TrackDescription::default()).is_err());
    }
}
