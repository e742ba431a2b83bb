// SPDX-License-Identifier: MPL-2.0
//! What the endpoint keeps, as the service keeps it, independent of the ingest protocol.
//!
//! A publishing point (`/<name>.isml`) holds **one timeline per track name**, whichever
//! ingest request brought the fragments: a second copy of a fragment time (a redundant
//! encoder, another stream carrying the same track, a resend after a reconnect; Azure
//! fragmented MP4 live ingest §1.7 and §1.10) is dropped and counted, an overlap is dropped and
//! counted, a gap and a fragment older than the newest (filling a hole) are counted — the
//! counts the heartbeats report. A copy of a time that lasts longer than the one kept, and fits
//! before the next, replaces it: the full segment of a redundant encoder that goes on, where the
//! one that stopped sent its last segment cut short. Smooth ingest feeds the timelines through a
//! [`Source`] per `Streams(<id>)`, CMAF ingest through a source per track path; a sparse (text)
//! track's entries are instants (its messages), which neither overlap nor leave gaps.
//!
//! A timeline keeps what lies within the archive window. Fragment bytes stay in memory up to a
//! cap per track; with an on-disk archive, older ones are read back from their files (the
//! timeline keeps their times, so pruning never lists a directory), without one they go.
//! Outputs (Smooth, DASH, HLS) are rendered from a snapshot ([`Point::listing`]) and cached
//! per generation of the point: polling players cost a lookup.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::ingest::{DeclaredTrack, Fragment};
use crate::media::meta::{Kind, TrackMeta};

/// One fragment of a timeline.
#[derive(Debug, Clone)]
pub struct Entry {
    pub duration: u64,
    /// moof + mdat bytes, and the moof's length.
    pub size: u64,
    pub moof_len: u32,
    /// The bytes, while in memory; `None` once they are only in the archive.
    pub data: Option<Bytes>,
    /// Handed to the archive writer.
    pub archived: bool,
}

/// How a fragment fitted its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Right after the newest one (or the first).
    InOrder,
    /// After a gap.
    Discontinuity,
    /// Before the newest, filling a hole: kept.
    Past,
    /// The same time as one already kept: dropped.
    Duplicate,
    /// The same time as one already kept, lasting longer and fitting before the next: it
    /// replaces the kept one, which lasted `replaced` ticks.
    Longer { replaced: u64 },
    /// Overlapping one already kept: dropped.
    Overlap,
}

impl Arrival {
    pub fn kept(self) -> bool {
        matches!(self, Arrival::InOrder | Arrival::Discontinuity | Arrival::Past | Arrival::Longer { .. })
    }
}

/// The latest end of a fragment on a timeline, in seconds of media time: 2^40 s (about 35,000
/// years) is far beyond any epoch-based timeline.
pub const MAX_MEDIA_SECONDS: u64 = 1 << 40;

/// A track's fragments by time.
#[derive(Debug, Default)]
pub struct Timeline {
    pub entries: BTreeMap<u64, Entry>,
    /// Bytes held in memory.
    pub memory: u64,
    /// Entries ever removed from the front: the HLS media sequence number of the first one.
    pub removed_front: u64,
    /// Entries before this time have no bytes in memory.
    evicted_until: u64,
}

impl Timeline {
    /// Where a fragment of `t`, `d` would go.
    pub fn place(&self, t: u64, d: u64) -> Arrival {
        if let Some(kept) = self.entries.get(&t) {
            let next = self.entries.range(t + 1..).next().map(|(s, _)| *s);
            if d > kept.duration && next.is_none_or(|n| n >= t.saturating_add(d)) {
                return Arrival::Longer { replaced: kept.duration };
            }
            return Arrival::Duplicate;
        }
        let before = self.entries.range(..t).next_back().map(|(s, e)| s + e.duration);
        let after = self.entries.range(t..).next().map(|(s, _)| *s);
        if before.is_some_and(|end| end > t) || after.is_some_and(|next| next < t.saturating_add(d)) {
            Arrival::Overlap
        } else if after.is_some() {
            Arrival::Past
        } else if before.is_some_and(|end| end != t) {
            Arrival::Discontinuity
        } else {
            Arrival::InOrder
        }
    }

    pub fn insert(&mut self, t: u64, e: Entry) {
        if let Some(d) = &e.data {
            self.memory += d.len() as u64;
        }
        if t < self.evicted_until && e.data.is_some() {
            self.evicted_until = t;
        }
        if let Some(old) = self.entries.insert(t, e) {
            self.memory -= old.data.map_or(0, |d| d.len() as u64);
        }
    }

    /// The newest fragment's end.
    pub fn end(&self) -> Option<u64> {
        self.entries.iter().next_back().map(|(t, e)| t + e.duration)
    }

    pub fn first(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// Drops what ends more than `window` ticks before the newest end, then holds memory to
    /// `memory_cap`: the oldest bytes go to the archive alone (`on_disk`), or go with their
    /// entries. Returns the (time, duration) of the entries removed.
    pub fn trim(&mut self, window: u64, memory_cap: u64, on_disk: bool) -> Vec<(u64, u64)> {
        let mut removed = Vec::new();
        let Some(newest_end) = self.end() else { return removed };
        let horizon = newest_end.saturating_sub(window);
        while let Some(entry) = self.entries.first_entry() {
            if *entry.key() + entry.get().duration > horizon {
                break;
            }
            let (t, e) = entry.remove_entry();
            self.memory -= e.data.map_or(0, |d| d.len() as u64);
            self.removed_front += 1;
            removed.push((t, e.duration));
        }
        while self.memory > memory_cap {
            let Some((&t, e)) = self.entries.range_mut(self.evicted_until..).find(|(_, e)| e.data.is_some()) else {
                break;
            };
            if on_disk && e.archived {
                self.memory -= e.data.take().map_or(0, |d| d.len() as u64);
                self.evicted_until = t + 1;
            } else {
                let e = self.entries.remove(&t).expect("present");
                self.memory -= e.data.map_or(0, |d| d.len() as u64);
                if self.entries.range(..t).next().is_none() {
                    self.removed_front += 1;
                }
                removed.push((t, e.duration));
            }
        }
        removed
    }
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

/// Counts since the track began, by kind of arrival.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub duplicates: u64,
    pub overlaps: u64,
    pub discontinuities: u64,
    pub past: u64,
}

#[derive(Debug)]
pub struct Track {
    pub meta: Arc<TrackMeta>,
    /// ftyp + moov for DASH and HLS.
    pub init: Option<Bytes>,
    pub timeline: Timeline,
    pub arrivals: VecDeque<ArrivalRecord>,
    pub counts: Counts,
    /// The rendered fragment lists of its outputs.
    pub cache: crate::output::SharedCache,
    /// Bumped by every change of its timeline or description (its HLS media playlist is
    /// cached for it, not for the point's).
    pub generation: u64,
}

impl Track {
    pub fn new(meta: TrackMeta, init: Option<Bytes>) -> Self {
        Track {
            meta: Arc::new(meta),
            init,
            timeline: Timeline::default(),
            arrivals: VecDeque::new(),
            counts: Counts::default(),
            cache: Default::default(),
            generation: 0,
        }
    }

    /// Places a fragment on the timeline (keeping it unless it duplicates or overlaps one
    /// already there); returns how it fitted.
    pub fn add(
        &mut self,
        time: u64,
        duration: u64,
        bytes: Bytes,
        moof_len: usize,
        now: Instant,
        wall: SystemTime,
    ) -> Arrival {
        let how = if self.meta.kind == Kind::Text {
            // Messages are instants: only a second copy of one is refused.
            match (self.timeline.entries.contains_key(&time), self.timeline.entries.keys().next_back()) {
                (true, _) => Arrival::Duplicate,
                (false, Some(newest)) if time < *newest => Arrival::Past,
                _ => Arrival::InOrder,
            }
        } else {
            self.timeline.place(time, duration)
        };
        match how {
            Arrival::Duplicate | Arrival::Longer { .. } => self.counts.duplicates += 1,
            Arrival::Overlap => self.counts.overlaps += 1,
            Arrival::Discontinuity => self.counts.discontinuities += 1,
            Arrival::Past => self.counts.past += 1,
            Arrival::InOrder => {}
        }
        let size = bytes.len() as u64;
        self.arrivals.push_back(ArrivalRecord { at: now, wall, bytes: size, time, duration, how });
        while self.arrivals.front().is_some_and(|a| now.duration_since(a.at) > ARRIVAL_MEMORY) {
            self.arrivals.pop_front();
        }
        if how.kept() {
            let entry = Entry { duration, size, moof_len: moof_len as u32, data: Some(bytes), archived: false };
            self.timeline.insert(time, entry);
            self.generation += 1;
        }
        how
    }

    /// The window in this track's ticks.
    pub fn ticks(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * f64::from(self.meta.timescale.max(1))) as u64
    }

    /// Drops what the window and the memory cap do not keep (text tracks keep their few bytes
    /// in memory); returns what was removed.
    pub fn trim(&mut self, window: Duration, memory_cap: u64, on_disk: bool) -> Vec<(u64, u64)> {
        let cap = if self.meta.kind == Kind::Text { u64::MAX } else { memory_cap };
        let window = self.ticks(window);
        let removed = self.timeline.trim(window, cap, on_disk);
        if !removed.is_empty() {
            self.generation += 1;
        }
        removed
    }
}

/// One ingest request stream: Smooth `Streams(<id>)`, or a CMAF track's `Streams(<name>.<ext>)`.
#[derive(Debug, Default)]
pub struct Source {
    /// Requests with a body so far.
    pub requests: u64,
    /// Requests whose body is still being read.
    pub open: u64,
    pub last_arrival: Option<Instant>,
    /// Its tracks: track_ID in its fragments → track name.
    pub tracks: BTreeMap<u32, String>,
    /// It carries audio or video (a sparse stream alone does not keep a point live).
    pub media: bool,
    /// Fragments refused (malformed, undeclared track, conflicting declaration).
    pub refused: u64,
    /// CMAF ingest: the track's header and what its requests were answered.
    pub cmaf: CmafSource,
}

/// What a CMAF ingest track path has sent (DASH-IF Live Media Ingest, Interface-1).
#[derive(Debug, Default)]
pub struct CmafSource {
    /// The header last taken, since this endpoint started: without one, a segment is answered
    /// 412.
    pub header: Option<crate::ingest::cmaf::Header>,
    /// Requests by what they carried or how they were answered.
    pub probes: u64,
    pub headers: u64,
    pub segments: u64,
    /// Segments answered 412 (no header, or one of another track).
    pub precondition_failed: u64,
    /// Requests answered 400 or 415.
    pub refused: u64,
    /// The last segment said `lmsg`: the track ended.
    pub ended: bool,
}

/// The outputs cached per point.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    Smooth,
    Mpd,
    HlsMain,
    HlsMedia(String),
}

/// A publishing point.
#[derive(Debug, Default)]
pub struct Point {
    pub tracks: BTreeMap<String, Track>,
    pub sources: BTreeMap<String, Source>,
    /// The wall-clock instant of media time 0 (DASH availabilityStartTime, HLS date-times):
    /// set by the first fragment, from its arrival and its end.
    pub anchor: Option<SystemTime>,
    /// Bumped by every change the outputs show.
    pub generation: u64,
    pub changed: Option<SystemTime>,
    pub cache: HashMap<(Output, bool), (u64, Bytes)>,
    /// MPDs the encoders posted, by file name, as they came.
    pub mpds: BTreeMap<String, Bytes>,
}

impl Point {
    /// Live while a media request is open and for `idle` after the last media fragment;
    /// recorded otherwise. An encoder that ends its stream on purpose leaves the point live for
    /// that time too: players following the live edge then fetch its last fragments as live
    /// ones and meet the end (ENDLIST, a static MPD, IsLive="FALSE") only once they have them
    /// (hlsdemux2 ends every rendition when one playlist ends; dashdemux2 stops at the change
    /// while it waits for a fragment).
    pub fn is_live(&self, now: Instant, idle: Duration) -> bool {
        self.sources
            .values()
            .filter(|s| s.media)
            .any(|s| s.open > 0 || s.last_arrival.is_some_and(|a| now.duration_since(a) < idle))
    }

    fn touch(&mut self, wall: SystemTime) {
        self.generation += 1;
        self.changed = Some(wall);
    }

    /// A source declared its tracks. A name already on the point is the same track (its
    /// declaration is refreshed) unless kind or timescale differ: then that source's copy is
    /// refused, with the reason returned.
    pub fn declare(&mut self, source: &str, declared: &[DeclaredTrack], wall: SystemTime) -> Vec<String> {
        let mut notes = Vec::new();
        let mut mapped = BTreeMap::new();
        for d in declared {
            match self.tracks.get_mut(&d.meta.name) {
                Some(t) if t.meta.kind != d.meta.kind || t.meta.timescale != d.meta.timescale => {
                    notes.push(format!(
                        "track {} of stream {source} is {} at timescale {}, the point's is {} at {}: its fragments are refused",
                        d.meta.name,
                        d.meta.kind.as_str(),
                        d.meta.timescale,
                        t.meta.kind.as_str(),
                        t.meta.timescale
                    ));
                    continue;
                }
                Some(t) => {
                    if *t.meta != d.meta {
                        t.meta = Arc::new(d.meta.clone());
                        t.generation += 1;
                    }
                    if d.init.is_some() {
                        t.init = d.init.clone();
                    }
                }
                None => {
                    self.tracks.insert(d.meta.name.clone(), Track::new(d.meta.clone(), d.init.clone()));
                }
            }
            mapped.insert(d.track_id, d.meta.name.clone());
        }
        let s = self.sources.entry(source.to_string()).or_default();
        s.media = declared.iter().any(|d| d.meta.kind != Kind::Text);
        s.tracks = mapped;
        self.touch(wall);
        notes
    }

    /// Places a fragment of a source; the track's name and how it fitted, or why it was refused.
    pub fn add(
        &mut self,
        source: &str,
        f: &Fragment,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(String, Arrival), String> {
        let s = self.sources.get_mut(source).ok_or("no header for this stream")?;
        let Some(name) = s.tracks.get(&f.track_id).cloned() else {
            s.refused += 1;
            return Err(format!("track {} has no place on the point (see its header)", f.track_id));
        };
        // Every fragment on a timeline ends within MAX_MEDIA_SECONDS, so that the outputs' sums
        // of ticks and their wall-clock times hold whatever an encoder sent.
        let ts = u64::from(self.tracks.get(&name).map_or(1, |t| t.meta.timescale).max(1));
        if f.time.checked_add(f.duration).is_none_or(|end| end / ts > MAX_MEDIA_SECONDS) {
            s.refused += 1;
            return Err(format!(
                "track {}: the fragment at {} + {} ticks of 1/{ts} s ends beyond {MAX_MEDIA_SECONDS} s of media time",
                f.track_id, f.time, f.duration
            ));
        }
        s.last_arrival = Some(now);
        let track = self.tracks.get_mut(&name).ok_or("the track went away")?;
        let how = track.add(f.time, f.duration, f.bytes.clone(), f.moof_len, now, wall);
        if how.kept() {
            if self.anchor.is_none() {
                let ts = f64::from(track.meta.timescale.max(1));
                let end = Duration::from_secs_f64((f.time + f.duration) as f64 / ts);
                self.anchor = Some(wall.checked_sub(end).unwrap_or(SystemTime::UNIX_EPOCH));
            }
            self.touch(wall);
        }
        Ok((name, how))
    }

    /// A source's request began or ended: liveness may change.
    pub fn source_mut(&mut self, source: &str) -> &mut Source {
        self.generation += 1;
        self.sources.entry(source.to_string()).or_default()
    }

    /// Tracks in manifest order: video, audio, text; by name within a kind.
    pub fn ordered(&self) -> Vec<&Track> {
        let mut v: Vec<&Track> = self.tracks.values().collect();
        v.sort_by_key(|t| t.meta.kind.order());
        v
    }
}

/// A snapshot of tracks for rendering an output without holding the point.
#[derive(Debug, Clone)]
pub struct TrackListing {
    pub meta: Arc<TrackMeta>,
    /// (time, duration) of every fragment, in order.
    pub entries: Vec<(u64, u64)>,
    /// The HLS media sequence number of the first entry.
    pub first_sequence: u64,
    /// For a text track: each message's mdat payload, by time.
    pub messages: Vec<Bytes>,
    /// The track's rendered fragment lists.
    pub cache: crate::output::SharedCache,
}

#[derive(Debug, Clone)]
pub struct Listing {
    pub live: bool,
    /// The archive window (DVR window, timeShiftBufferDepth).
    pub window: Duration,
    pub anchor: SystemTime,
    /// When the content last changed (the MPD's publishTime).
    pub published: SystemTime,
    pub tracks: Vec<TrackListing>,
}

/// The mdat payload of a stored fragment.
fn mdat_payload(e: &Entry) -> Bytes {
    let Some(d) = &e.data else { return Bytes::new() };
    let at = e.moof_len as usize;
    let header = match d.get(at..at + 4) {
        Some([0, 0, 0, 1]) => 16,
        _ => 8,
    };
    d.slice((at + header).min(d.len())..)
}

/// The snapshot of these tracks.
pub fn listing(
    tracks: &[&Track],
    live: bool,
    window: Duration,
    anchor: Option<SystemTime>,
    published: Option<SystemTime>,
) -> Listing {
    let tracks = tracks
        .iter()
        .map(|t| TrackListing {
            meta: t.meta.clone(),
            entries: t.timeline.entries.iter().map(|(s, e)| (*s, e.duration)).collect(),
            first_sequence: t.timeline.removed_front,
            messages: if t.meta.kind == Kind::Text {
                t.timeline.entries.values().map(mdat_payload).collect()
            } else {
                Vec::new()
            },
            cache: t.cache.clone(),
        })
        .collect();
    Listing {
        live,
        window,
        anchor: anchor.unwrap_or(SystemTime::UNIX_EPOCH),
        published: published.unwrap_or_else(SystemTime::now),
        tracks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track() -> Track {
        Track::new(TrackMeta::new("video", Kind::Video, 1000), None)
    }

    fn add(t: &mut Track, time: u64, d: u64) -> Arrival {
        t.add(time, d, Bytes::from(vec![0; 100]), 50, Instant::now(), SystemTime::now())
    }

    #[test]
    fn arrivals_are_classified_and_counted() {
        let mut t = track();
        assert_eq!(add(&mut t, 0, 2000), Arrival::InOrder);
        assert_eq!(add(&mut t, 2000, 2000), Arrival::InOrder);
        assert_eq!(add(&mut t, 2000, 2000), Arrival::Duplicate);
        assert_eq!(add(&mut t, 3000, 2000), Arrival::Overlap);
        assert_eq!(add(&mut t, 8000, 2000), Arrival::Discontinuity);
        assert_eq!(add(&mut t, 4000, 2000), Arrival::Past);
        assert_eq!(t.timeline.entries.len(), 4);
        assert_eq!((t.counts.duplicates, t.counts.overlaps, t.counts.discontinuities, t.counts.past), (1, 1, 1, 1));
        assert_eq!(t.timeline.memory, 400);
        // The last segment of an encoder that stopped, cut short; the one that goes on sends the
        // whole segment at that time: it replaces the short one. Not one that would overlap the next.
        assert_eq!(add(&mut t, 10000, 500), Arrival::InOrder);
        assert_eq!(add(&mut t, 10000, 2000), Arrival::Longer { replaced: 500 });
        assert_eq!(t.timeline.entries[&10000].duration, 2000);
        assert_eq!(add(&mut t, 10000, 1000), Arrival::Duplicate);
        assert_eq!(add(&mut t, 0, 2500), Arrival::Duplicate);
        assert_eq!((t.timeline.entries.len(), t.timeline.memory, t.counts.duplicates), (5, 500, 4));
    }

    #[test]
    fn a_fragment_beyond_the_end_of_media_time_is_refused() {
        use crate::ingest::{DeclaredTrack, Fragment};
        let mut p = Point::default();
        let meta = TrackMeta::new("video", Kind::Video, 1);
        let declared = DeclaredTrack { track_id: 1, meta, init: None, defaults: Default::default() };
        p.declare("s", &[declared], SystemTime::now());
        let f = |time: u64, duration: u64| Fragment {
            track_id: 1,
            time,
            duration,
            samples: 1,
            bytes: Bytes::from(vec![0; 16]),
            moof_len: 8,
        };
        let mut add = |time, duration| p.add("s", &f(time, duration), Instant::now(), SystemTime::now());
        for (time, duration) in [(u64::MAX - 1, 2), (u64::MAX - 10, 2), (MAX_MEDIA_SECONDS, 1)] {
            let e = add(time, duration).unwrap_err();
            assert!(e.contains("beyond 1099511627776 s of media time"), "{e}");
        }
        assert_eq!(add(MAX_MEDIA_SECONDS - 2, 2).map(|(_, how)| how), Ok(Arrival::InOrder));
        assert_eq!(p.sources["s"].refused, 3);
    }

    #[test]
    fn messages_are_instants() {
        let mut t = track();
        t.meta = Arc::new(TrackMeta { kind: Kind::Text, ..(*t.meta).clone() });
        // An event of 30 s and one 2 s into it: both kept; a copy of one is refused.
        assert_eq!(add(&mut t, 10_000, 30_000), Arrival::InOrder);
        assert_eq!(add(&mut t, 12_000, 0), Arrival::InOrder);
        assert_eq!(add(&mut t, 90_000, 0), Arrival::InOrder);
        assert_eq!(add(&mut t, 50_000, 0), Arrival::Past);
        assert_eq!(add(&mut t, 12_000, 0), Arrival::Duplicate);
        assert_eq!((t.timeline.entries.len(), t.counts.overlaps, t.counts.discontinuities), (4, 0, 0));
    }

    #[test]
    fn the_window_and_the_memory_cap() {
        let mut t = track();
        for i in 0..10 {
            add(&mut t, i * 2000, 2000);
        }
        // 6 s window: the fragments ending at or before 14 s go.
        let removed = t.trim(Duration::from_secs(6), u64::MAX, false);
        assert_eq!(removed.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 2000, 4000, 6000, 8000, 10000, 12000]);
        assert_eq!((t.timeline.removed_front, t.timeline.entries.len()), (7, 3));
        // With an archive, bytes over the cap leave memory but the entries stay.
        for e in t.timeline.entries.values_mut() {
            e.archived = true;
        }
        assert!(t.trim(Duration::from_secs(600), 150, true).is_empty());
        assert_eq!(t.timeline.memory, 100);
        assert_eq!(t.timeline.entries.values().filter(|e| e.data.is_some()).count(), 1);
        // Without one, they go.
        add(&mut t, 20000, 2000);
        let removed = t.trim(Duration::from_secs(600), 150, false);
        assert_eq!(removed, [(18000, 2000)]);
        assert_eq!(t.timeline.memory, 100);
    }
}
