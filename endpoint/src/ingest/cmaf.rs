// SPDX-License-Identifier: MPL-2.0
//! CMAF ingest (DASH-IF Live Media Ingest v1.2, Interface-1; docs/protocol.md §6), read as a
//! receiver of the spec reads it. Each track has its own path,
//! `<name>.isml/Streams(<track>.cmfv|cmfa|cmfm)`, and each request to it carries one of:
//! - nothing: the probe ("General Protocol, Manifest and Track Format Requirements" 1);
//! - the track's CMAF header, `ftyp` and a `moov` of one `trak` with `mvex` (ISO/IEC 23000-19
//!   §7.3.1; "General Protocol ..." 2);
//! - one CMAF segment: `styp`, `prft`, then one `moof` + `mdat`, or several as CMAF chunks
//!   (ISO/IEC 23000-19 §7.3.2; "General Protocol ..." 3, 4, 15, 19, 20').
//!
//! [`CmafBody`] collects a request's boxes as they arrive (bounded as the Smooth reader is);
//! [`read_header`] and [`read_segment`] check them, trusting nothing of the sender: a body
//! that cannot be followed is answered 400, a track this endpoint cannot carry 415 (a handler
//! other than video, audio and timed metadata, a codec it cannot describe, a metadata scheme
//! other than DASH event messages, encrypted chunks), a segment of a track whose header it
//! does not have 412 ("Failure Behaviors" 5b, 5c, 5e) — each with a one-line reason.
//!
//! A segment becomes one stored fragment (moof + mdat): as it came when it is one fragment;
//! its CMAF chunks joined into one when it came in several ([`fragment::merge`]). The timed
//! metadata track's segments ("Requirements for Timed Metadata Tracks") are read for their
//! events ([`events`]): `emsg` boxes (ISO/IEC 23009-1 §5.10.3.3) in the samples, each active
//! event repeated in every sample it covers; the SCTE-35 ones (scheme
//! `urn:scte:scte35:2013:bin`, SCTE 214-3) are kept, each as a Smooth sparse fragment at its
//! presentation time ([`sparse_fragment`]), the form the Smooth output serves and DASH and
//! HLS read their events from.

use bytes::Bytes;
use fmp4ingest_core::Error as CoreError;
use fmp4ingest_core::bmff::fourcc::codes;
use fmp4ingest_core::bmff::{BoxRef, Boxes, FourCC};
use fmp4ingest_core::cmaf::boxes::{
    DASH_EVENT_URI, EventMessage, ProducerReferenceTime, SCTE35_BIN_SCHEME, SegmentType, UNKNOWN_EVENT_DURATION,
    parse_uri_meta_sample_entry,
};
use fmp4ingest_core::movie::parse_moov;
use fmp4ingest_core::scte35::parse_section;
use fmp4ingest_core::sparse::{SparseMessage, write_sparse_fragment};

use super::boxes::{BoxReader, Item, Limits};
use super::{DeclaredTrack, Fragment};
use crate::media::fragment;
use crate::media::init;
use crate::media::meta::{Kind, TrackMeta};

/// What a track's path says it carries: the extension of `Streams(<name>.<ext>)`, as AWS
/// MediaLive's CMAF Ingest output and Unified Origin name them (docs/protocol.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    Video,
    Audio,
    Metadata,
}

impl Extension {
    /// The track name and extension of a stream id `<name>.cmfv|cmfa|cmfm`.
    pub fn of(stream: &str) -> Option<(&str, Extension)> {
        let (name, ext) = stream.rsplit_once('.')?;
        let e = match ext {
            "cmfv" => Extension::Video,
            "cmfa" => Extension::Audio,
            "cmfm" => Extension::Metadata,
            _ => return None,
        };
        Some((name, e))
    }

    fn kind(self) -> Kind {
        match self {
            Extension::Video => Kind::Video,
            Extension::Audio => Kind::Audio,
            Extension::Metadata => Kind::Text,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Extension::Video => "cmfv",
            Extension::Audio => "cmfa",
            Extension::Metadata => "cmfm",
        }
    }
}

/// A refused request: its status and a reason in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

fn bad(reason: impl Into<String>) -> Refusal {
    Refusal { status: 400, reason: reason.into() }
}

fn unsupported(reason: impl Into<String>) -> Refusal {
    Refusal { status: 415, reason: reason.into() }
}

fn quoted(t: FourCC) -> String {
    t.as_str().map_or_else(|| format!("{:02x?}", t.as_bytes()), |s| format!("'{s}'"))
}

/// What a request's body held.
#[derive(Debug, Clone)]
pub enum Request {
    /// A body starting with `ftyp`: a header.
    Header(Vec<Item>),
    /// Anything else with a body: a segment.
    Segment(Vec<Item>),
}

/// The boxes of one request body, collected as they arrive.
#[derive(Debug)]
pub struct CmafBody {
    reader: BoxReader,
    items: Vec<Item>,
    /// Bytes taken so far, and the most one body may hold: one box and one mdat's worth.
    taken: u64,
    cap: u64,
}

impl CmafBody {
    pub fn new(limits: Limits) -> Self {
        CmafBody { reader: BoxReader::new(limits), items: Vec::new(), taken: 0, cap: limits.max_box + limits.max_mdat }
    }

    /// Adds body bytes. An error is final.
    pub fn push(&mut self, data: &[u8]) -> Result<(), Refusal> {
        self.taken += data.len() as u64;
        if self.taken > self.cap {
            return Err(bad(format!("a request body over {} bytes: one CMAF header or segment is smaller", self.cap)));
        }
        self.reader.push(data);
        while let Some(item) = self.reader.next_item().map_err(bad)? {
            self.items.push(item);
        }
        Ok(())
    }

    /// The body ended: what it held.
    pub fn finish(self) -> Result<Request, Refusal> {
        self.reader.finish().map_err(bad)?;
        match self.items.first() {
            None => Err(bad("a body without a box")),
            Some(Item::Box { header, .. }) if header.box_type == codes::FTYP => Ok(Request::Header(self.items)),
            Some(_) => Ok(Request::Segment(self.items)),
        }
    }
}

/// A track's CMAF header, read and checked.
#[derive(Debug, Clone)]
pub struct Header {
    /// `ftyp` + `moov` as ingested: the track's init segment for DASH and HLS.
    pub bytes: Bytes,
    pub track: DeclaredTrack,
}

/// The `moov`'s only `trak` and its sample entry.
fn sample_entry(trak: &[u8]) -> Result<BoxRef<'_>, CoreError> {
    let trak = Boxes::new(trak).next().ok_or(CoreError::MissingBox { parent: codes::MOOV, child: codes::TRAK })??;
    let stsd = trak.require(codes::MDIA)?.require(codes::MINF)?.require(codes::STBL)?.require(codes::STSD)?;
    stsd.children_after(8)?.next().ok_or(CoreError::Truncated { in_box: codes::STSD, field: "entry" })?
}

/// Reads a header request's boxes: `ftyp` and a `moov` of one track with `mvex`, of a kind
/// this endpoint carries, which the path's extension (if any) agrees with. `name` is the
/// track's name on the point (the stream id without its extension).
pub fn read_header(items: Vec<Item>, name: &str, ext: Option<Extension>) -> Result<Header, Refusal> {
    let mut boxes = Vec::new();
    let mut moov = None;
    for item in items {
        match item {
            Item::Box { header, bytes } => {
                match header.box_type {
                    codes::FTYP if boxes.is_empty() => {}
                    codes::MOOV if moov.is_none() => moov = Some(bytes.clone()),
                    codes::FREE | codes::SKIP => continue,
                    other => {
                        return Err(bad(format!(
                            "a {} box in a CMAF header, which is ftyp and moov (ISO/IEC 23000-19 7.3.1)",
                            quoted(other)
                        )));
                    }
                }
                boxes.push(bytes);
            }
            Item::Fragment { .. } => {
                return Err(bad("a moof in a header request: the header and each segment go in requests of their own"));
            }
        }
    }
    let moov_bytes = moov.ok_or_else(|| bad("a CMAF header without its moov"))?;
    let moov = init::read_moov(&moov_bytes).map_err(|e| bad(format!("the moov: {e}")))?;
    let [trak] = moov.traks.as_slice() else {
        return Err(bad(format!("a CMAF header holds one track; this moov has {}", moov.traks.len())));
    };
    if trak.trex.is_none() {
        return Err(bad("a moov without mvex/trex: not a CMAF header (ISO/IEC 23000-19 7.3.1)"));
    }
    let kind = match trak.handler {
        codes::VIDE => Kind::Video,
        codes::SOUN => Kind::Audio,
        codes::META => Kind::Text,
        other => {
            return Err(unsupported(format!(
                "a track of handler {}: this endpoint carries video (vide), audio (soun) and timed metadata (meta)",
                quoted(other)
            )));
        }
    };
    if let Some(e) = ext.filter(|e| e.kind() != kind) {
        return Err(bad(format!("a {} track sent to a .{} path", kind.as_str(), e.as_str())));
    }
    let mut meta = TrackMeta::new(name, kind, trak.timescale);
    let bytes = Bytes::from(boxes.concat());
    let init = if kind == Kind::Text {
        let entry = sample_entry(trak.trak).map_err(|e| bad(format!("the moov: {e}")))?;
        let uri = (entry.box_type() == codes::URIM).then(|| parse_uri_meta_sample_entry(entry).ok()).flatten();
        if uri.as_deref() != Some(DASH_EVENT_URI) {
            return Err(unsupported(format!(
                "a timed metadata track of sample entry {} ({}): this endpoint carries DASH event messages \
                 (urim, {DASH_EVENT_URI})",
                quoted(entry.box_type()),
                uri.as_deref().unwrap_or("no URI")
            )));
        }
        // As the Smooth sparse track the service announced (Azure timed metadata 2.2.1, 3.1).
        meta.params = [("Subtype", "DATA"), ("Scheme", SCTE35_BIN_SCHEME), ("manifestOutput", "true")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        None
    } else {
        let movie = parse_moov(&moov_bytes).map_err(|e| match e {
            CoreError::UnsupportedCodec { sample_entry, .. } => unsupported(format!(
                "sample entry {}: this endpoint describes H.264, HEVC and AAC tracks",
                quoted(sample_entry)
            )),
            e => bad(format!("the moov: {e}")),
        })?;
        let info = movie.track(trak.track_id).ok_or_else(|| bad("the moov's track cannot be read"))?;
        meta.describe_from(info);
        Some(bytes.clone())
    };
    let track = DeclaredTrack { track_id: trak.track_id, meta, init, defaults: trak.defaults };
    Ok(Header { bytes, track })
}

/// A segment, read and checked against its track's header.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The first fragment's `mfhd` sequence_number.
    pub sequence: u32,
    /// A `styp` of the segment says `lmsg`: the track's last segment.
    pub lmsg: bool,
    /// The segment as one fragment.
    pub fragment: Fragment,
    /// Chunks it came in.
    pub chunks: usize,
    /// What was odd but did not stop it.
    pub notes: Vec<String>,
}

/// The `mfhd` sequence_number of a fragment.
fn sequence_of(bytes: &[u8]) -> Option<u32> {
    let moof = Boxes::new(bytes).next()?.ok()?;
    let mut r = moof.child(codes::MFHD).ok()??.reader();
    r.full_box().ok()?;
    r.u32("sequence_number").ok()
}

/// Reads a segment request's boxes against the track's header: 412 when its fragments are of
/// another track than the header's, 400 when it cannot be followed.
pub fn read_segment(items: Vec<Item>, header: &Header) -> Result<Segment, Refusal> {
    let track = &header.track;
    let (mut chunks, mut notes, mut lmsg) = (Vec::new(), Vec::new(), false);
    for item in items {
        match item {
            Item::Box { header: h, bytes } => {
                let b = || Boxes::new(&bytes).next().and_then(Result::ok);
                match h.box_type {
                    codes::STYP => {
                        let st = b().map(SegmentType::parse).ok_or_else(|| bad("a broken styp"))?;
                        let st = st.map_err(|e| bad(format!("the styp: {e}")))?;
                        lmsg |= st.has(codes::LMSG);
                    }
                    codes::PRFT => {
                        let p = b().map(ProducerReferenceTime::parse).ok_or_else(|| bad("a broken prft"))?;
                        p.map_err(|e| bad(format!("the prft: {e}")))?;
                    }
                    codes::EMSG => notes.push("an emsg box in the segment, outside the samples: ignored".into()),
                    codes::FREE | codes::SKIP | codes::SIDX => {}
                    other => return Err(bad(format!("a {} box in a CMAF segment", quoted(other)))),
                }
            }
            Item::Fragment { bytes, moof_len } => chunks.push((bytes, moof_len)),
        }
    }
    if chunks.is_empty() {
        return Err(bad("a segment request without a moof and its mdat"));
    }
    // The header's defaults for any track: the track_ID is compared after.
    let defaults = |_| Some(track.defaults);
    let mut infos = Vec::with_capacity(chunks.len());
    for (bytes, moof_len) in &chunks {
        let info = fragment::read(bytes, *moof_len, &defaults).map_err(bad)?;
        if info.track_id != track.track_id {
            return Err(Refusal {
                status: 412,
                reason: format!(
                    "a segment of track {}, and the header this endpoint has for this path is of track {}: \
                     send this track's header",
                    info.track_id, track.track_id
                ),
            });
        }
        infos.push(info);
    }
    let first = infos[0];
    let time = first.tfdt.ok_or_else(|| bad("a CMAF fragment without tfdt (ISO/IEC 23000-19 7.5.16)"))?;
    let sequence = sequence_of(&chunks[0].0).ok_or_else(|| bad("a moof without mfhd"))?;
    let (bytes, moof_len) = if chunks.len() == 1 {
        chunks.pop().expect("one")
    } else {
        fragment::merge(&chunks, &defaults)
            .map_err(|e| if e.contains("encrypted") { unsupported(e) } else { bad(e) })?
    };
    let duration = infos.iter().try_fold(0u64, |d, i| d.checked_add(i.duration));
    let duration = duration
        .filter(|d| time.checked_add(*d).is_some())
        .ok_or_else(|| bad(format!("the segment at tfdt {time} ends beyond 2^64 ticks")))?;
    let fragment = Fragment {
        track_id: track.track_id,
        time,
        duration,
        samples: infos.iter().map(|i| i.samples).sum(),
        bytes,
        moof_len,
    };
    Ok(Segment { sequence, lmsg, fragment, chunks: infos.len(), notes })
}

/// An event of the timed metadata track, on its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: u32,
    /// The splice: the event's presentation time, in the track's timescale.
    pub presentation_time: u64,
    /// In the track's timescale; `None` when unknown.
    pub duration: Option<u64>,
    pub scheme: String,
    pub value: String,
    pub message: Bytes,
}

/// Ticks of one timescale in another.
fn rescale(t: u64, from: u32, to: u32) -> u64 {
    if from == to {
        t
    } else {
        u64::try_from(u128::from(t) * u128::from(to) / u128::from(from.max(1))).unwrap_or(u64::MAX)
    }
}

/// The events of a timed metadata segment, each once, and what was odd about them. The
/// samples hold `emsg` boxes (and may hold `emeb`, the empty filler of ISO/IEC 23001-18);
/// version 1 gives the presentation time, version 0 a delta from its sample's ("Requirements
/// for Timed Metadata Tracks" 5a), in the timescale the box gives (5c asks for the track's).
/// A SCTE-35 event whose message is not a whole splice_info_section (SCTE 35 §9.6, CRC
/// included) is left out.
pub fn events(segment: &Segment, header: &Header) -> Result<(Vec<Event>, Vec<String>), Refusal> {
    let f = &segment.fragment;
    let timescale = header.track.meta.timescale;
    let mut rows = Vec::new();
    fragment::walk(&f.bytes, f.moof_len, &|_| Some(header.track.defaults), &mut |s| rows.push(s)).map_err(bad)?;
    let (mut out, mut notes): (Vec<Event>, Vec<String>) = (Vec::new(), Vec::new());
    let mut at = f.time;
    for s in rows {
        let sample = &f.bytes[s.offset as usize..(s.offset + u64::from(s.size)) as usize];
        for b in Boxes::new(sample) {
            let b = b.map_err(|e| bad(format!("a metadata sample at {at}: {e}")))?;
            if b.box_type() == FourCC::new(b"emeb") {
                continue;
            }
            let m = EventMessage::parse(b).map_err(|e| bad(format!("a metadata sample at {at}: {e}")))?;
            let presentation_time = match m.version {
                0 => at.saturating_add(rescale(m.presentation_time, m.timescale, timescale)),
                _ => rescale(m.presentation_time, m.timescale, timescale),
            };
            let duration = (m.event_duration != UNKNOWN_EVENT_DURATION)
                .then(|| rescale(u64::from(m.event_duration), m.timescale, timescale));
            if out.iter().any(|e| e.id == m.id && e.presentation_time == presentation_time) {
                continue;
            }
            if m.scheme_id_uri != SCTE35_BIN_SCHEME {
                notes.push(format!(
                    "event {} of scheme {:?}: only {SCTE35_BIN_SCHEME} is carried",
                    m.id, m.scheme_id_uri
                ));
                continue;
            }
            if let Err(e) = parse_section(&m.message_data) {
                notes.push(format!("event {}: not a splice_info_section ({e:?}): left out", m.id));
                continue;
            }
            if m.timescale != timescale {
                notes.push(format!("event {}: timescale {}, the track's is {timescale}", m.id, m.timescale));
            }
            out.push(Event {
                id: m.id,
                presentation_time,
                duration,
                scheme: m.scheme_id_uri,
                value: m.value,
                message: m.message_data,
            });
        }
        at = at.saturating_add(u64::from(s.duration));
    }
    Ok((out, notes))
}

/// An event as the Smooth sparse fragment of its track (Azure timed metadata 2.2.3): the
/// `tfxd` at its presentation time, lasting the event (0 when unknown), the `mdat` holding
/// version 1, the id, a delta of 0 and the splice_info_section.
pub fn sparse_fragment(e: &Event, track_id: u32) -> Fragment {
    let duration = e.duration.unwrap_or(0);
    let m = SparseMessage {
        time: e.presentation_time,
        duration,
        id: e.id,
        presentation_time_delta: 0,
        message: e.message.clone(),
    };
    let bytes = write_sparse_fragment(track_id, 1, &m);
    let moof_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    Fragment { track_id, time: e.presentation_time, duration, samples: 1, bytes: Bytes::from(bytes), moof_len }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Real CMAF ingest from fmp4ingestsink (`protocol=cmaf`, isofmp4mux, 1 s segments, 64x48
    /// H.264, mono AAC, a metadata track `scte35` with one splice event): per track the header,
    /// then every segment once. `chunked-video.cmfv`: mp4mux with `low-latency=true`, segments
    /// in CMAF chunks.
    pub fn fixture(name: &str) -> &'static [u8] {
        match name {
            "video.cmfv" => include_bytes!("../../tests/data/cmaf/video.cmfv"),
            "audio.cmfa" => include_bytes!("../../tests/data/cmaf/audio.cmfa"),
            "scte35.cmfm" => include_bytes!("../../tests/data/cmaf/scte35.cmfm"),
            "chunked-video.cmfv" => include_bytes!("../../tests/data/cmaf/chunked-video.cmfv"),
            _ => panic!("no fixture {name}"),
        }
    }

    /// A fixture cut into its requests' bodies: the header, then each segment (from a `styp`
    /// of brand `cmfs` to the next).
    pub fn requests(file: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut at = 0;
        while at + 8 <= file.len() {
            let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
            let kind = &file[at + 4..at + 8];
            let starts = at == 0 || (kind == b"styp" && &file[at + 8..at + 12] == b"cmfs");
            if starts {
                out.push(Vec::new());
            }
            out.last_mut().unwrap().extend_from_slice(&file[at..at + size]);
            at += size;
        }
        out
    }

    fn request(body: &[u8], chunk: usize) -> Result<Request, Refusal> {
        let mut b = CmafBody::new(Limits::default());
        for c in body.chunks(chunk) {
            b.push(c)?;
        }
        b.finish()
    }

    fn header_of(name: &str) -> Header {
        let (track, ext) = Extension::of(name).unwrap();
        let Request::Header(items) = request(&requests(fixture(name))[0], 1000).unwrap() else { panic!() };
        read_header(items, track, Some(ext)).unwrap()
    }

    fn segments_of(name: &str, header: &Header) -> Vec<Segment> {
        requests(fixture(name))[1..]
            .iter()
            .map(|body| {
                let Request::Segment(items) = request(body, 333).unwrap() else { panic!() };
                read_segment(items, header).unwrap()
            })
            .collect()
    }

    #[test]
    fn headers_of_every_kind() {
        let v = header_of("video.cmfv");
        assert_eq!((v.track.meta.kind, v.track.meta.name.as_str()), (Kind::Video, "video"));
        assert!(v.track.meta.codecs.starts_with("avc1.") && v.track.meta.width == 64, "{:?}", v.track.meta);
        assert!(v.track.meta.bitrate > 0, "the btrt's");
        assert_eq!(v.track.init.as_deref(), Some(&requests(fixture("video.cmfv"))[0][..]));
        let a = header_of("audio.cmfa");
        assert_eq!((a.track.meta.codecs.as_str(), a.track.meta.channels), ("mp4a.40.2", 1));
        let m = header_of("scte35.cmfm");
        assert_eq!((m.track.meta.kind, m.track.meta.timescale), (Kind::Text, v.track.meta.timescale));
        assert_eq!(m.track.meta.param("Scheme"), Some(SCTE35_BIN_SCHEME));
        assert!(m.track.init.is_none());
    }

    #[test]
    fn headers_that_are_refused() {
        let video = requests(fixture("video.cmfv"));
        let items = |body: &[u8]| match request(body, 64).unwrap() {
            Request::Header(i) | Request::Segment(i) => i,
        };
        let e = read_header(items(&video[0]), "video", Some(Extension::Audio)).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.reason.contains("video track sent to a .cmfa path"), "{e:?}");
        let with_segment = [video[0].clone(), video[1].clone()].concat();
        assert_eq!(read_header(items(&with_segment), "video", None).unwrap_err().status, 400);
        let ftyp_only = &video[0][..24];
        assert!(read_header(items(ftyp_only), "video", None).unwrap_err().reason.contains("without its moov"));
        // A metadata track of another scheme: 415.
        let meta = requests(fixture("scte35.cmfm"))[0].clone();
        let at = meta.windows(DASH_EVENT_URI.len()).position(|w| w == DASH_EVENT_URI.as_bytes()).unwrap();
        let mut other = meta.clone();
        other[at..at + 3].copy_from_slice(b"xyz");
        let e = read_header(items(&other), "scte35", Some(Extension::Metadata)).unwrap_err();
        assert_eq!(e.status, 415, "{e:?}");
        // A handler it does not carry: 415. An unknown codec: 415.
        let mut subt = video[0].clone();
        let at = subt.windows(4).position(|w| w == b"vide").unwrap();
        subt[at..at + 4].copy_from_slice(b"subt");
        assert_eq!(read_header(items(&subt), "video", None).unwrap_err().status, 415);
        let mut vp9 = video[0].clone();
        let at = vp9.windows(4).position(|w| w == b"avc1").unwrap();
        vp9[at..at + 4].copy_from_slice(b"vp09");
        let e = read_header(items(&vp9), "video", None).unwrap_err();
        assert_eq!(e.status, 415, "{e:?}");
    }

    #[test]
    fn segments_in_any_chunking_with_their_times() {
        for name in ["video.cmfv", "audio.cmfa"] {
            let h = header_of(name);
            let segs = segments_of(name, &h);
            assert!(segs.len() >= 5);
            for w in segs.windows(2) {
                let (a, b) = (&w[0].fragment, &w[1].fragment);
                assert_eq!(a.time + a.duration, b.time, "{name}: contiguous");
                assert_eq!(w[0].sequence + 1, w[1].sequence, "{name}");
            }
            assert!(segs[..segs.len() - 1].iter().all(|s| !s.lmsg), "{name}: lmsg on the last one only");
            assert!(segs.iter().all(|s| s.chunks == 1 && s.notes.is_empty()));
            // Stored as they came: moof + mdat.
            let body = &requests(fixture(name))[1];
            let f = &segs[0].fragment;
            assert!(body.ends_with(&f.bytes), "{name}");
        }
        let h = header_of("video.cmfv");
        let v = segments_of("video.cmfv", &h);
        assert_eq!(v.iter().map(|s| s.fragment.samples).sum::<u32>(), 180, "every frame");
        // The last one sent again with lmsg (docs/protocol.md §6.2): the end is seen.
        let last = requests(fixture("video.cmfv")).pop().unwrap();
        let mut styp = Vec::new();
        fmp4ingest_core::cmaf::segment::segment_type(true).write(&mut styp);
        let again = [styp, last[24..].to_vec()].concat();
        let Request::Segment(items) = request(&again, 100).unwrap() else { panic!() };
        let s = read_segment(items, &h).unwrap();
        assert!(s.lmsg && s.fragment.bytes == v.last().unwrap().fragment.bytes);
    }

    #[test]
    fn chunked_segments_become_one_fragment_with_every_sample() {
        let h = header_of("chunked-video.cmfv");
        let segs = segments_of("chunked-video.cmfv", &h);
        assert!(segs.iter().any(|s| s.chunks > 1), "{:?}", segs.iter().map(|s| s.chunks).collect::<Vec<_>>());
        assert_eq!(segs.iter().map(|s| s.fragment.samples).sum::<u32>(), 90);
        let defaults = |_| Some(h.track.defaults);
        for (i, s) in segs.iter().enumerate() {
            // The joined fragment reads back with the segment's samples, time and duration, and
            // its payload is the chunks' payloads, in order.
            let f = &s.fragment;
            let mut rows = Vec::new();
            let info = fragment::walk(&f.bytes, f.moof_len, &defaults, &mut |r| rows.push(r)).unwrap();
            assert_eq!((info.tfdt, info.samples, info.duration), (Some(f.time), f.samples, f.duration));
            assert!(rows[0].flags & 0x0001_0000 == 0, "the first sample is a sync sample");
            let body = &requests(fixture("chunked-video.cmfv"))[i + 1];
            let Request::Segment(items) = request(body, 4096).unwrap() else { panic!() };
            let mut payload = Vec::new();
            let mut frames = 0;
            for item in items {
                if let Item::Fragment { bytes, moof_len } = item {
                    let mut rows = Vec::new();
                    fragment::walk(&bytes, moof_len, &defaults, &mut |r| rows.push(r)).unwrap();
                    frames += rows.len();
                    for r in rows {
                        payload.extend_from_slice(&bytes[r.offset as usize..][..r.size as usize]);
                    }
                }
            }
            assert_eq!(frames as u32, f.samples);
            assert_eq!(&f.bytes[f.moof_len + 8..], &payload[..]);
        }
    }

    #[test]
    fn segments_that_are_refused() {
        let h = header_of("video.cmfv");
        let video = requests(fixture("video.cmfv"));
        let seg = |body: &[u8]| match request(body, 64) {
            Ok(Request::Segment(items)) => read_segment(items, &h),
            Ok(Request::Header(_)) => panic!("a header"),
            Err(e) => Err(e),
        };
        // A segment of the audio track on the video's path: 412, the header is not this track's.
        let audio = requests(fixture("audio.cmfa"));
        let a = header_of("audio.cmfa");
        if a.track.track_id != h.track.track_id {
            assert_eq!(seg(&audio[1]).unwrap_err().status, 412);
        }
        // Cut off, no fragment, a stray box: 400.
        let cut = &video[1][..video[1].len() - 10];
        assert_eq!(request(cut, 64).unwrap_err().status, 400);
        assert_eq!(seg(&video[1][..56]).unwrap_err().status, 400);
        let stray = [video[1].clone(), video[0][24..].to_vec()].concat();
        assert!(seg(&stray).unwrap_err().reason.contains("'moov' box in a CMAF segment"));
        // A body over one box and one mdat.
        let mut b = CmafBody::new(Limits { max_box: 100, max_mdat: 100 });
        assert_eq!(b.push(&[0; 201]).unwrap_err().status, 400);
    }

    #[test]
    fn metadata_segments_give_their_events_once() {
        let h = header_of("scte35.cmfm");
        let segs = segments_of("scte35.cmfm", &h);
        let mut all: Vec<Event> = Vec::new();
        for s in &segs {
            let (evs, notes) = events(s, &h).unwrap();
            assert!(notes.is_empty(), "{notes:?}");
            for e in evs {
                if !all.contains(&e) {
                    all.push(e);
                }
            }
        }
        assert_eq!(all.len(), 1, "{all:?}");
        let e = &all[0];
        let ts = u64::from(h.track.meta.timescale);
        // Spliced 5.3 s into the pipeline's running time, for 2 s.
        assert_eq!((e.id, e.presentation_time, e.duration), (5, 53 * ts / 10, Some(2 * ts)));
        let info = parse_section(&e.message).unwrap();
        assert_eq!(info.event_id(), Some(5));
        // As a Smooth sparse fragment: its time, duration and message, read back.
        let f = sparse_fragment(e, h.track.track_id);
        let info = fragment::read(&f.bytes, f.moof_len, &|_| Some(Default::default())).unwrap();
        assert_eq!((info.tfxd, info.samples), (Some((e.presentation_time, 2 * ts)), 1));
        assert_eq!(&f.bytes[f.moof_len + 8 + 12..], &e.message[..]);
    }
}
