//! What the endpoint keeps of its publishing points, as the service keeps it: per stream and
//! track a deduplicated timeline of fragments (ingest-spec §1.7: a fragment is identified by
//! its stream, track and time; later copies are dropped), with the counts the heartbeats
//! report (§7: overlaps, discontinuities, timestamps in the past), within an archive window
//! (seed 003: ArchiveWindowLength) and a byte cap per stream, so that memory stays bounded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::mp4::{MoovTrack, SmilTrack};

/// What a track is, from the Live Server Manifest and the moov.
#[derive(Debug, Clone, Default)]
pub struct TrackMeta {
    pub track_id: u32,
    /// `trackName`: the name in URLs and manifests.
    pub name: String,
    /// `video`, `audio` or `text` (a sparse track).
    pub kind: String,
    pub timescale: u32,
    /// `systemBitrate`, the declared bitrate.
    pub bitrate: u64,
    pub params: Vec<(String, String)>,
    pub sample_entry: String,
}

impl TrackMeta {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn from_header(smil: &SmilTrack, moov: Option<&MoovTrack>) -> Option<TrackMeta> {
        let track_id: u32 = smil.param("trackID")?.parse().ok()?;
        let kind = match smil.element.as_str() {
            "video" => "video",
            "audio" => "audio",
            _ => "text",
        };
        Some(TrackMeta {
            track_id,
            name: smil.param("trackName").unwrap_or(kind).to_string(),
            kind: kind.to_string(),
            timescale: smil
                .param("timescale")
                .and_then(|t| t.parse().ok())
                .or(moov.map(|m| m.timescale))
                .unwrap_or(10_000_000),
            bitrate: smil.attr("systemBitrate").and_then(|b| b.parse().ok()).unwrap_or(0),
            params: smil.params.clone(),
            sample_entry: moov.map(|m| m.entry.clone()).unwrap_or_default(),
        })
    }
}

/// One fragment as it arrived: its moof and mdat, as served.
#[derive(Debug, Clone)]
pub struct StoredFragment {
    pub time: u64,
    pub duration: u64,
    pub bytes: Arc<Vec<u8>>,
    pub arrived: SystemTime,
}

/// How a fragment fitted the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Right after the last one (or the first).
    InOrder,
    /// After a gap.
    Discontinuity,
    /// Before the newest, filling a hole: kept.
    Past,
    /// The same time as one already kept: dropped.
    Duplicate,
    /// Overlapping one already kept: dropped.
    Overlap,
}

/// One arrival, for the heartbeat windows.
#[derive(Debug, Clone, Copy)]
pub struct ArrivalRecord {
    pub at: Instant,
    pub wall: SystemTime,
    pub bytes: u64,
    pub time: u64,
    pub duration: u64,
    pub how: Arrival,
}

/// Arrivals remembered for the heartbeats: the last five minutes.
pub const ARRIVAL_MEMORY: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Track {
    pub meta: TrackMeta,
    pub fragments: BTreeMap<u64, StoredFragment>,
    pub arrivals: VecDeque<ArrivalRecord>,
    pub bytes: u64,
    /// Counts since the start, by kind of arrival.
    pub duplicates: u64,
    pub overlaps: u64,
    pub discontinuities: u64,
    pub past: u64,
}

impl Track {
    pub fn new(meta: TrackMeta) -> Self {
        Track {
            meta,
            fragments: BTreeMap::new(),
            arrivals: VecDeque::new(),
            bytes: 0,
            duplicates: 0,
            overlaps: 0,
            discontinuities: 0,
            past: 0,
        }
    }

    /// Places a fragment on the timeline; returns how it fitted.
    pub fn add(&mut self, f: StoredFragment, now: Instant) -> Arrival {
        let (t, d) = (f.time, f.duration);
        let how = if self.fragments.contains_key(&t) {
            Arrival::Duplicate
        } else {
            let before = self.fragments.range(..t).next_back().map(|(_, p)| p.time + p.duration);
            let after = self.fragments.range(t..).next().map(|(_, n)| n.time);
            if before.is_some_and(|end| end > t) || after.is_some_and(|next| next < t + d) {
                Arrival::Overlap
            } else if after.is_some() {
                Arrival::Past
            } else if before.is_some_and(|end| end != t) {
                Arrival::Discontinuity
            } else {
                Arrival::InOrder
            }
        };
        match how {
            Arrival::Duplicate => self.duplicates += 1,
            Arrival::Overlap => self.overlaps += 1,
            Arrival::Discontinuity => self.discontinuities += 1,
            Arrival::Past => self.past += 1,
            Arrival::InOrder => {}
        }
        let size = f.bytes.len() as u64;
        self.arrivals.push_back(ArrivalRecord { at: now, wall: f.arrived, bytes: size, time: t, duration: d, how });
        while self.arrivals.front().is_some_and(|a| now.duration_since(a.at) > ARRIVAL_MEMORY) {
            self.arrivals.pop_front();
        }
        if matches!(how, Arrival::InOrder | Arrival::Discontinuity | Arrival::Past) {
            self.bytes += size;
            self.fragments.insert(t, f);
        }
        how
    }

    /// Drops fragments that end more than `window` before the newest one ends; and, while the
    /// track holds more than `max_bytes`, the oldest.
    pub fn trim(&mut self, window: Duration, max_bytes: u64) {
        let Some(newest_end) = self.fragments.values().next_back().map(|f| f.time + f.duration) else { return };
        let keep_ticks = (window.as_secs_f64() * f64::from(self.meta.timescale.max(1))) as u64;
        let horizon = newest_end.saturating_sub(keep_ticks);
        while let Some((&t, f)) = self.fragments.iter().next() {
            if f.time + f.duration <= horizon || self.bytes > max_bytes {
                self.bytes -= f.bytes.len() as u64;
                self.fragments.remove(&t);
            } else {
                break;
            }
        }
    }

    /// The newest fragment's end, in ticks.
    pub fn end(&self) -> Option<u64> {
        self.fragments.values().next_back().map(|f| f.time + f.duration)
    }
}

/// One `Streams(<id>)` of a publishing point.
#[derive(Debug, Default)]
pub struct Stream {
    /// The header boxes (ftyp, manifest, moov) of the latest POST.
    pub header: Vec<u8>,
    pub tracks: BTreeMap<u32, Track>,
    pub posts: u64,
    /// POSTs with a body that are still being read.
    pub open_posts: u64,
    /// A POST ended with the zero-length chunk (the encoder stopped on purpose).
    pub ended: bool,
    pub last_arrival: Option<Instant>,
}

impl Stream {
    /// A new header: the tracks it declares (keeping what they already hold).
    pub fn set_header(&mut self, header: Vec<u8>, smil: &[SmilTrack], moov: &[MoovTrack]) {
        self.header = header;
        for s in smil {
            let id = s.param("trackID").and_then(|t| t.parse::<u32>().ok());
            let Some(meta) = TrackMeta::from_header(s, moov.iter().find(|m| Some(m.track_id) == id)) else { continue };
            match self.tracks.get_mut(&meta.track_id) {
                Some(t) => t.meta = meta,
                None => {
                    self.tracks.insert(meta.track_id, Track::new(meta));
                }
            }
        }
    }

    pub fn bytes(&self) -> u64 {
        self.tracks.values().map(|t| t.bytes).sum()
    }
}

/// A publishing point: `/<name>.isml`.
#[derive(Debug, Default)]
pub struct PublishingPoint {
    pub streams: BTreeMap<String, Stream>,
}

impl PublishingPoint {
    /// Live while a media POST is open or a media fragment came in the last `idle` from a
    /// stream that did not end; recorded otherwise.
    pub fn is_live(&self, now: Instant, idle: Duration) -> bool {
        // A sparse stream (short POSTs, text tracks only) does not keep the point live.
        self.streams
            .values()
            .filter(|s| s.tracks.values().any(|t| t.meta.kind != "text"))
            .any(|s| s.open_posts > 0 || (!s.ended && s.last_arrival.is_some_and(|a| now.duration_since(a) < idle)))
    }

    /// Tracks by name across its streams (a redundant copy in another stream, §1.10, is the
    /// same track): the first stream (by id) that carries a name serves it.
    pub fn tracks_by_name(&self) -> BTreeMap<String, &Track> {
        let mut out: BTreeMap<String, &Track> = BTreeMap::new();
        for s in self.streams.values() {
            for t in s.tracks.values() {
                out.entry(t.meta.name.clone()).or_insert(t);
            }
        }
        out
    }
}
