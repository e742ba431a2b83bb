// SPDX-License-Identifier: MPL-2.0
//! What the receiver remembers of each POST, and the incremental reading of its body.

use std::time::Instant;

use crate::mp4::{self, FragmentInfo, MoovTrack, SmilTrack};

/// One HTTP request to a `Streams(<id>)` URL.
#[derive(Debug, Clone)]
pub struct PostRecord {
    /// Order of arrival among all requests.
    pub index: usize,
    pub stream_id: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub chunked: bool,
    pub content_length: Option<u64>,
    /// The body ended properly (last chunk, or Content-Length reached).
    pub complete: bool,
    /// Body bytes and chunk count.
    pub bytes: u64,
    pub chunks: u64,
    /// Top-level boxes before the first fragment, in order.
    pub header_boxes: Vec<String>,
    pub header_bytes: Vec<u8>,
    pub smil: Option<String>,
    pub smil_tracks: Vec<SmilTrack>,
    pub moov_tracks: Vec<MoovTrack>,
    pub fragments: Vec<FragmentInfo>,
    /// Top-level boxes after the header other than moof/mdat (mfra, free, ...).
    pub other_boxes: Vec<String>,
    /// Protocol violations found in this request.
    pub violations: Vec<String>,
    /// Status the receiver answered with, once it did.
    pub status: Option<u16>,
    /// How the receiver ended the request on purpose (an injected fault), if it did, and when.
    pub ended_by_receiver: Option<String>,
    pub fault_at: Option<Instant>,
    pub started: Instant,
    /// When the first body byte arrived.
    pub first_byte_at: Option<Instant>,
    pub ended: Option<Instant>,
    /// For a request with a Content-Length body (a sparse POST): how long after the answer the
    /// client closed the connection; `None` while it is open (the receiver waits 3 s).
    pub client_closed_after: Option<std::time::Duration>,
    /// For a hostile answer: the response bytes written before the client stopped taking them.
    pub hostile_bytes: Option<u64>,
    /// After a stall that ended with the connection kept: the bytes the receiver's side held
    /// when it started reading again (its kernel's receive queue and its own buffer), and the
    /// bytes it read after that. More read than held means bytes arrived after the stall.
    pub held_at_resume: Option<u64>,
    pub read_after_resume: u64,
}

impl PostRecord {
    pub fn new(
        index: usize,
        stream_id: String,
        path: String,
        headers: Vec<(String, String)>,
        chunked: bool,
        content_length: Option<u64>,
    ) -> Self {
        PostRecord {
            index,
            stream_id,
            path,
            headers,
            chunked,
            content_length,
            complete: false,
            bytes: 0,
            chunks: 0,
            header_boxes: Vec::new(),
            header_bytes: Vec::new(),
            smil: None,
            smil_tracks: Vec::new(),
            moov_tracks: Vec::new(),
            fragments: Vec::new(),
            other_boxes: Vec::new(),
            violations: Vec::new(),
            status: None,
            ended_by_receiver: None,
            fault_at: None,
            started: Instant::now(),
            first_byte_at: None,
            ended: None,
            client_closed_after: None,
            hostile_bytes: None,
            held_at_resume: None,
            read_after_resume: 0,
        }
    }

    /// An empty-body request: the protocol's probe.
    pub fn is_probe(&self) -> bool {
        self.content_length == Some(0) && !self.chunked
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum Phase {
    #[default]
    Header,
    Media,
}

/// Reads a body as it arrives, box by box, into a [`PostRecord`].
#[derive(Debug, Default)]
pub struct BodyReader {
    buf: Vec<u8>,
    phase: Phase,
    pending_moof: Option<Vec<u8>>,
    /// Refuse to buffer more than this for one box.
    pub max_box: usize,
    /// Keep each fragment's bytes (moof + mdat) in `kept`, one per fragment recorded.
    pub keep: bool,
    pub kept: Vec<Vec<u8>>,
}

impl BodyReader {
    pub fn new(max_box: usize) -> Self {
        BodyReader { max_box, ..Default::default() }
    }

    pub fn push(&mut self, data: &[u8], rec: &mut PostRecord) {
        self.buf.extend_from_slice(data);
        loop {
            if self.buf.len() < 8 {
                return;
            }
            let size32 = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            let size = match size32 {
                0 => {
                    rec.violations.push("box with size 0".into());
                    self.buf.clear();
                    return;
                }
                1 => {
                    if self.buf.len() < 16 {
                        return;
                    }
                    u64::from_be_bytes(self.buf[8..16].try_into().unwrap_or([0; 8])) as usize
                }
                n => n,
            };
            if size < 8 || size > self.max_box {
                rec.violations.push(format!("box of impossible or excessive size {size}"));
                self.buf.clear();
                return;
            }
            if self.buf.len() < size {
                return;
            }
            let bytes: Vec<u8> = self.buf.drain(..size).collect();
            self.on_box(bytes, rec);
        }
    }

    /// The body ended; anything left over is a violation.
    pub fn end(&mut self, rec: &mut PostRecord) {
        if self.phase == Phase::Header && !rec.header_boxes.is_empty() {
            self.check_header(rec);
        }
        if !self.buf.is_empty() {
            rec.violations.push(format!("body ends inside a box ({} bytes left)", self.buf.len()));
        }
        if self.pending_moof.is_some() {
            rec.violations.push("body ends with a moof without its mdat".into());
        }
    }

    fn on_box(&mut self, bytes: Vec<u8>, rec: &mut PostRecord) {
        let Some(b) = mp4::boxes(&bytes).into_iter().next() else { return };
        let kind = b.kind_str();
        if b.uuid() == Some(mp4::STREAM_MANIFEST_UUID) {
            rec.violations.push("StreamManifestBox sent (deprecated, SHOULD NOT)".into());
        }
        if b.is(b"mfra") {
            rec.violations.push("mfra sent (deprecated end-of-stream signal)".into());
        }
        match self.phase {
            Phase::Header if b.is(b"moof") => {
                self.check_header(rec);
                self.phase = Phase::Media;
                self.pending_moof = Some(bytes);
            }
            Phase::Header => {
                rec.header_boxes.push(if b.uuid() == Some(mp4::LSM_UUID) { "lsm".to_string() } else { kind.clone() });
                rec.header_bytes.extend_from_slice(&bytes);
                if b.uuid() == Some(mp4::LSM_UUID) {
                    let text = String::from_utf8_lossy(b.body().get(20..).unwrap_or(&[])).into_owned();
                    match mp4::parse_smil(&text) {
                        Ok(t) => rec.smil_tracks = t,
                        Err(e) => rec.violations.push(format!("Live Server Manifest: {e}")),
                    }
                    rec.smil = Some(text);
                } else if b.is(b"moov") {
                    match mp4::parse_moov(b.body()) {
                        Ok(t) => rec.moov_tracks = t,
                        Err(e) => rec.violations.push(format!("moov: {e}")),
                    }
                } else if b.is(b"ftyp") {
                    let body = b.body();
                    let brands: Vec<&[u8]> = body.chunks(4).collect();
                    let major = brands.first().copied().unwrap_or(&[]);
                    let minor = body.get(4..8).map(|m| u32::from_be_bytes(m.try_into().unwrap_or([0; 4])));
                    let compatible = brands.get(2..).unwrap_or(&[]);
                    if major != b"isml"
                        || minor != Some(1)
                        || !compatible.contains(&&b"piff"[..])
                        || !compatible.contains(&&b"iso2"[..])
                    {
                        rec.violations.push(format!(
                            "ftyp is not isml/1 with piff and iso2: {:?}",
                            String::from_utf8_lossy(body)
                        ));
                    }
                }
            }
            Phase::Media if b.is(b"moof") => {
                if self.pending_moof.is_some() {
                    rec.violations.push("moof followed by another moof".into());
                }
                self.pending_moof = Some(bytes);
            }
            Phase::Media if b.is(b"mdat") => match self.pending_moof.take() {
                Some(moof_bytes) => {
                    let moof = mp4::boxes(&moof_bytes).into_iter().next();
                    if let Some(moof) = moof {
                        let tracks = rec.moov_tracks.clone();
                        let trex =
                            move |id: u32| tracks.iter().find(|t| t.track_id == id).map_or(0, |t| t.trex_default_flags);
                        let mut f = mp4::parse_fragment(moof, b, &trex, &mut rec.violations);
                        let sparse = rec.moov_tracks.iter().any(|t| t.track_id == f.track_id && t.handler == "meta");
                        if sparse {
                            self.check_sparse(&mut f, b.body(), rec);
                        }
                        if !rec.moov_tracks.iter().any(|t| t.track_id == f.track_id) {
                            rec.violations
                                .push(format!("fragment of track {} that the moov does not declare", f.track_id));
                        }
                        // ISO/IEC 14496-12 8.8.5: the numbers increase in the order the fragments
                        // occur in the file (the POST body).
                        if let Some(prev) = rec.fragments.last().filter(|p| p.sequence >= f.sequence) {
                            rec.violations.push(format!(
                                "mfhd sequence_number {} (track {}) after {} (track {}): not increasing",
                                f.sequence, f.track_id, prev.sequence, prev.track_id
                            ));
                        }
                        rec.fragments.push(f);
                        if self.keep {
                            self.kept.push([moof_bytes.as_slice(), &bytes].concat());
                        }
                    }
                }
                None => rec.violations.push("mdat without a moof".into()),
            },
            Phase::Media => rec.other_boxes.push(kind),
        }
    }

    /// A sparse fragment: one sample, the Azure payload, and for SCTE-35 a whole
    /// splice_info_section with a correct CRC (docs/protocol.md §5.5).
    fn check_sparse(&self, f: &mut FragmentInfo, payload: &[u8], rec: &mut PostRecord) {
        let v = &mut rec.violations;
        if f.sample_count != 1 {
            v.push(format!("sparse fragment with {} samples", f.sample_count));
        }
        let Some(p) = mp4::SparsePayload::parse(payload) else {
            v.push(format!("sparse mdat of {} bytes is shorter than its 12-byte header", payload.len()));
            return;
        };
        if p.version != 1 {
            v.push(format!("sparse message version {}", p.version));
        }
        let scte35 =
            rec.smil_tracks.iter().any(|t| t.param("Scheme").is_some_and(|s| s.starts_with("urn:scte:scte35")));
        if scte35 && !mp4::is_valid_splice_info_section(&p.message) {
            v.push(format!("sparse message {} is not a whole splice_info_section with a valid CRC", p.id));
        }
        f.sparse = Some(p);
    }

    fn check_header(&self, rec: &mut PostRecord) {
        // A sparse stream (docs/protocol.md §5.2, §5.3): textstreams only, each with its rules.
        let text: Vec<_> = rec.smil_tracks.iter().filter(|t| t.element == "textstream").collect();
        if !text.is_empty() {
            if text.len() != rec.smil_tracks.len() {
                rec.violations.push("a stream mixes sparse and audio/video tracks".into());
            }
            for t in text {
                let name = t.param("trackName").unwrap_or("?").to_string();
                let mut want = |ok: bool, what: &str| {
                    if !ok {
                        rec.violations.push(format!("textstream {name}: {what}"));
                    }
                };
                want(t.attr("systemBitrate") == Some("0"), "systemBitrate must be \"0\"");
                want(t.param("Subtype") == Some("DATA"), "Subtype must be DATA");
                want(t.param("manifestOutput") == Some("true"), "manifestOutput must be true");
                want(t.param("parentTrackName").is_some_and(|p| !p.is_empty()), "parentTrackName missing");
                want(t.param("Scheme").is_some_and(|p| !p.is_empty()), "Scheme missing");
                let id: Option<u32> = t.param("trackID").and_then(|i| i.parse().ok());
                let moov = rec.moov_tracks.iter().find(|m| Some(m.track_id) == id).cloned();
                want(moov.as_ref().is_some_and(|m| m.handler == "meta"), "moov track is not a meta track");
                want(
                    moov.as_ref().is_some_and(|m| Some(m.timescale.to_string().as_str()) == t.param("timescale")),
                    "timescale differs from the moov's",
                );
            }
        }

        let order: Vec<&str> = rec.header_boxes.iter().map(String::as_str).collect();
        if order != ["ftyp", "lsm", "moov"] {
            rec.violations.push(format!("header boxes are {order:?}, expected ftyp, Live Server Manifest, moov"));
        }
    }
}
