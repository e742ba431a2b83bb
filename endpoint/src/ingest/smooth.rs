// SPDX-License-Identifier: MPL-2.0
//! Smooth ingest (Azure fragmented MP4 live ingest; MS-SSTR 2.2.7): the body of a POST to
//! `<name>.isml/Streams(<id>)`, read as it arrives. It starts with the header — `ftyp`, the
//! Live Server Manifest (`uuid` A5D40B30-...) and `moov` — and goes on with one moof + mdat
//! per fragment and track, each carrying its time and duration in a `tfxd`.
//!
//! [`SmoothBody`] is sans-IO: bytes in, [`Event`]s out. The header becomes the declared
//! tracks (each a [`TrackMeta`] with its init segment); every fragment is checked and timed
//! (see [`crate::media::fragment`]). A fragment that cannot be placed is refused alone, with
//! its reason, and reading goes on; a body that cannot be followed (a broken box, no header
//! before the media) ends with an error that the server answers 400.

use std::collections::VecDeque;

use bytes::Bytes;
use fmp4ingest_core::bmff::fourcc::codes;
use fmp4ingest_core::movie::parse_moov;
use fmp4ingest_core::smooth_boxes::LIVE_SERVER_MANIFEST_UUID;

use super::boxes::{BoxReader, Item, Limits};
use super::lsm::{self, LsmTrack};
pub use super::{DeclaredTrack, Fragment};
use crate::media::fragment;
use crate::media::init;
use crate::media::meta::{Kind, TrackMeta};

#[derive(Debug, Clone)]
pub enum Event {
    /// The header: its bytes and the tracks it declares.
    Header {
        bytes: Bytes,
        tracks: Vec<DeclaredTrack>,
    },
    Fragment(Fragment),
    /// Something wrong that does not stop reading: a fragment refused, an odd header.
    Note(String),
}

/// Reads one POST body.
#[derive(Debug)]
pub struct SmoothBody {
    reader: BoxReader,
    /// Header boxes seen so far.
    header: Vec<Bytes>,
    lsm: Option<Vec<LsmTrack>>,
    moov: Option<Bytes>,
    tracks: Option<Vec<DeclaredTrack>>,
    events: VecDeque<Event>,
}

impl SmoothBody {
    pub fn new(limits: Limits) -> Self {
        SmoothBody {
            reader: BoxReader::new(limits),
            header: Vec::new(),
            lsm: None,
            moov: None,
            tracks: None,
            events: VecDeque::new(),
        }
    }

    /// Adds body bytes; then take the events with [`SmoothBody::next_event`].
    pub fn push(&mut self, data: &[u8]) -> Result<(), String> {
        self.reader.push(data);
        while let Some(item) = self.reader.next_item()? {
            self.on_item(item)?;
        }
        Ok(())
    }

    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The body ended.
    pub fn finish(&mut self) -> Result<(), String> {
        self.reader.finish()?;
        if self.tracks.is_none() && !self.header.is_empty() {
            return Err("the body ends before its header is complete (ftyp, Live Server Manifest, moov)".into());
        }
        Ok(())
    }

    /// The declared tracks, once the header was read.
    pub fn tracks(&self) -> Option<&[DeclaredTrack]> {
        self.tracks.as_deref()
    }

    fn on_item(&mut self, item: Item) -> Result<(), String> {
        match item {
            Item::Box { header, bytes } if self.tracks.is_none() => {
                if header.box_type == codes::UUID && header.usertype == Some(LIVE_SERVER_MANIFEST_UUID) {
                    // uuid header, version and flags, then the SMIL text.
                    let text = bytes.get(usize::from(header.header_len) + 4..).unwrap_or_default();
                    let text =
                        std::str::from_utf8(text).map_err(|_| "the Live Server Manifest is not UTF-8".to_string())?;
                    self.lsm = Some(lsm::parse(text).map_err(|e| format!("the Live Server Manifest: {e}"))?);
                } else if header.box_type == codes::MOOV {
                    self.moov = Some(bytes.clone());
                }
                self.header.push(bytes);
                if self.lsm.is_some() && self.moov.is_some() {
                    self.declare()?;
                }
            }
            Item::Box { header, .. } => {
                // mfra (the legacy end of stream), free, skip: nothing to keep.
                if !matches!(header.box_type, codes::MFRA | codes::FREE | codes::SKIP) {
                    let kind = header.box_type.as_str().unwrap_or("?").to_string();
                    self.events.push_back(Event::Note(format!("a '{kind}' box after the header: ignored")));
                }
            }
            Item::Fragment { .. } if self.tracks.is_none() => {
                return Err(
                    "a fragment before the header: the body must start with ftyp, the Live Server Manifest and moov"
                        .into(),
                );
            }
            Item::Fragment { bytes, moof_len } => {
                let event = match self.fragment(bytes, moof_len) {
                    Ok(f) => Event::Fragment(f),
                    Err(e) => Event::Note(format!("fragment refused: {e}")),
                };
                self.events.push_back(event);
            }
        }
        Ok(())
    }

    fn fragment(&mut self, bytes: Bytes, moof_len: usize) -> Result<Fragment, String> {
        let tracks = self.tracks.as_deref().unwrap_or_default();
        let defaults = |id: u32| tracks.iter().find(|t| t.track_id == id).map(|t| t.defaults);
        let info = fragment::read(&bytes, moof_len, &defaults)?;
        let (time, duration) = match (info.tfxd, info.tfdt) {
            (Some((t, d)), _) => (t, d),
            (None, Some(t)) => (t, info.duration),
            (None, None) => return Err(format!("track {}: neither a tfxd nor a tfdt gives its time", info.track_id)),
        };
        Ok(Fragment { track_id: info.track_id, time, duration, samples: info.samples, bytes, moof_len })
    }

    /// The header is complete: the tracks it declares.
    fn declare(&mut self) -> Result<(), String> {
        let (Some(lsm), Some(moov_bytes)) = (&self.lsm, &self.moov) else { return Ok(()) };
        let moov = init::read_moov(moov_bytes).map_err(|e| format!("the moov: {e}"))?;
        // The codecs of audio and video tracks; without them a track still plays in Smooth.
        let movie = match parse_moov(moov_bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                self.events.push_back(Event::Note(format!("the moov: {e:?}; its tracks are served in Smooth only")));
                None
            }
        };
        let mut tracks: Vec<DeclaredTrack> = Vec::new();
        for l in lsm {
            let Some(track_id) = l.track_id() else {
                self.events.push_back(Event::Note(format!("a <{}> without a numeric trackID: ignored", l.element)));
                continue;
            };
            let Some(trak) = moov.traks.iter().find(|t| t.track_id == track_id) else {
                self.events
                    .push_back(Event::Note(format!("track {track_id} is in the manifest but not the moov: ignored")));
                continue;
            };
            let kind = match l.element.as_str() {
                "video" => Kind::Video,
                "audio" => Kind::Audio,
                _ => Kind::Text,
            };
            let name = l.param("trackName").unwrap_or(kind.as_str()).to_string();
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err(format!("track {track_id}: trackName {name:?} (1 to 128 printable characters)"));
            }
            if tracks.iter().any(|t| t.meta.name == name) {
                return Err(format!("two tracks named {name:?} in one stream"));
            }
            let timescale = l.param("timescale").and_then(|t| t.trim().parse().ok()).unwrap_or(trak.timescale);
            if timescale == 0 {
                return Err(format!("track {name}: timescale 0"));
            }
            let mut meta = TrackMeta {
                name,
                kind,
                timescale,
                bitrate: l.system_bitrate,
                language: l.system_language.clone().unwrap_or_else(|| "und".into()),
                params: l.params.clone(),
                codecs: String::new(),
                width: 0,
                height: 0,
                sample_rate: 0,
                channels: 0,
            };
            if let Some(info) = movie.as_ref().and_then(|m| m.track(track_id)).filter(|_| kind != Kind::Text) {
                meta.describe_from(info);
            }
            let init = (kind != Kind::Text).then(|| init::init_segment(&moov, track_id).map(Bytes::from)).flatten();
            tracks.push(DeclaredTrack { track_id, meta, init, defaults: trak.defaults });
        }
        if tracks.is_empty() {
            return Err("the header declares no track that the moov describes".into());
        }
        let bytes = Bytes::from(self.header.concat());
        self.events.push_back(Event::Header { bytes, tracks: tracks.clone() });
        self.tracks = Some(tracks);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::fragment::tests::smooth_fragment;
    use crate::media::init::tests::two_track_moov;

    pub fn lsm_box(smil: &str) -> Vec<u8> {
        let mut b = ((8 + 16 + 4 + smil.len()) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(b"uuid");
        b.extend_from_slice(&LIVE_SERVER_MANIFEST_UUID);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(smil.as_bytes());
        b
    }

    pub const SMIL: &str = r#"<?xml version="1.0"?><smil xmlns="http://www.w3.org/2001/SMIL20/Language"><body><switch>
        <video systemBitrate="1000000"><param name="trackID" value="1"/><param name="trackName" value="video"/>
        <param name="timescale" value="90000"/><param name="FourCC" value="H264"/></video>
        <audio systemBitrate="128000" systemLanguage="eng"><param name="trackID" value="2"/><param name="trackName" value="audio"/></audio>
        </switch></body></smil>"#;

    /// ftyp, the Live Server Manifest of [`SMIL`], a moov of tracks 1 and 2.
    pub fn header() -> Vec<u8> {
        [b"\0\0\0\x0cftypisml".to_vec(), lsm_box(SMIL), two_track_moov()].concat()
    }

    fn events(b: &mut SmoothBody) -> Vec<Event> {
        std::iter::from_fn(|| b.next_event()).collect()
    }

    #[test]
    fn header_then_fragments() {
        let mut b = SmoothBody::new(Limits::default());
        b.push(&header()).unwrap();
        let ev = events(&mut b);
        // This moov has no sample entries: the core's parser says so, and the tracks stay.
        assert!(matches!(&ev[0], Event::Note(n) if n.contains("Smooth only")), "{ev:?}");
        let Some(Event::Header { tracks, bytes }) = ev.get(1) else { panic!("{ev:?}") };
        assert_eq!(bytes.len(), header().len());
        assert_eq!(tracks.len(), 2);
        assert_eq!(
            (tracks[0].meta.name.as_str(), tracks[0].meta.kind, tracks[0].meta.timescale),
            ("video", Kind::Video, 90000)
        );
        assert_eq!((tracks[1].meta.language.as_str(), tracks[1].meta.timescale), ("eng", 48000));
        assert!(tracks.iter().all(|t| t.init.is_some()));
        let (f, _) = smooth_fragment(1, 9000);
        let (unknown, _) = smooth_fragment(7, 0);
        for piece in [&f[..10], &f[10..], &unknown[..]] {
            b.push(piece).unwrap();
        }
        let ev = events(&mut b);
        assert!(
            matches!(&ev[0], Event::Fragment(f) if (f.track_id, f.time, f.duration, f.samples) == (1, 9000, 2000, 2)),
            "{ev:?}"
        );
        assert!(matches!(&ev[1], Event::Note(n) if n.contains("track 7")), "{ev:?}");
        b.finish().unwrap();
    }

    /// 2 s of 64x48 H.264 and mono AAC as fmp4ingestsink sent them (mp4mux, 1 s fragments).
    pub const REAL_BODY: &[u8] = include_bytes!("../../tests/data/smooth-ingest-2s.bin");

    #[test]
    fn a_real_body_in_any_chunking() {
        for chunk in [1, 100, 4096, REAL_BODY.len()] {
            let mut b = SmoothBody::new(Limits::default());
            let mut ev = Vec::new();
            for c in REAL_BODY.chunks(chunk) {
                b.push(c).unwrap();
                ev.extend(events(&mut b));
            }
            b.finish().unwrap();
            let Some(Event::Header { tracks, .. }) = ev.first() else { panic!("{ev:?}") };
            let names: Vec<(&str, Kind, bool)> =
                tracks.iter().map(|t| (t.meta.name.as_str(), t.meta.kind, t.meta.codecs.is_empty())).collect();
            assert_eq!(names, [("video", Kind::Video, false), ("audio", Kind::Audio, false)]);
            assert!(tracks[0].meta.codecs.starts_with("avc1."), "{}", tracks[0].meta.codecs);
            assert_eq!(tracks[1].meta.codecs, "mp4a.40.2");
            assert_eq!((tracks[1].meta.sample_rate, tracks[1].meta.channels), (48000, 1));
            let frags: Vec<&Fragment> =
                ev.iter().filter_map(|e| if let Event::Fragment(f) = e { Some(f) } else { None }).collect();
            assert!(ev.iter().all(|e| !matches!(e, Event::Note(_))), "{ev:?}");
            // Every video frame and AAC frame, in fragments one after the other.
            let samples = |id: u32| frags.iter().filter(|f| f.track_id == id).map(|f| f.samples).sum::<u32>();
            assert_eq!(samples(1), 60);
            assert!((90..=92).contains(&samples(2)), "{}", samples(2));
            for id in [1, 2] {
                let mut t: Vec<(u64, u64)> =
                    frags.iter().filter(|f| f.track_id == id).map(|f| (f.time, f.duration)).collect();
                t.sort_unstable();
                assert!(t.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0), "track {id}: {t:?}");
            }
            // Each served as DASH/HLS and as Smooth, and read back.
            for f in frags {
                let defaults = |id: u32| tracks.iter().find(|t| t.track_id == id).map(|t| t.defaults);
                for wrap in
                    [crate::media::fragment::Wrap::Cmaf, crate::media::fragment::Wrap::Smooth { lookahead: &[] }]
                {
                    let (head, payload) =
                        crate::media::fragment::rewrap(&f.bytes, f.moof_len, f.time, f.duration, wrap).unwrap();
                    let all = [&head[..], &payload[..]].concat();
                    let info = crate::media::fragment::read(&all, head.len() - 8, &defaults).unwrap();
                    assert_eq!(info.samples, f.samples);
                }
            }
        }
    }

    #[test]
    fn bodies_that_cannot_be_followed() {
        let (f, _) = smooth_fragment(1, 0);
        let mut b = SmoothBody::new(Limits::default());
        assert!(b.push(&f).unwrap_err().contains("before the header"));
        let mut b = SmoothBody::new(Limits::default());
        let bad = [b"\0\0\0\x0cftypisml".to_vec(), lsm_box("<smil><video>")].concat();
        assert!(b.push(&bad).unwrap_err().contains("Live Server Manifest"));
        let mut b = SmoothBody::new(Limits::default());
        b.push(b"\0\0\0\x0cftypisml").unwrap();
        assert!(b.finish().unwrap_err().contains("before its header"));
        let dup = SMIL.replace("value=\"audio\"", "value=\"video\"");
        let mut b = SmoothBody::new(Limits::default());
        let e = b.push(&[lsm_box(&dup), two_track_moov()].concat()).unwrap_err();
        assert!(e.contains("two tracks named"), "{e}");
    }
}
