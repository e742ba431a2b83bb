// SPDX-License-Identifier: MPL-2.0
//! The ingest timeline: where each sample lies, and output fragments on a fixed grid
//! (docs/protocol.md §4.1–§4.4).
//!
//! Samples are placed on a target timeline: the pipeline's running time, or UTC since the Unix
//! epoch, in the track's timescale. Output fragment k of a track starts at the first sample at or
//! after boundary `B(k) = k × D` (a sync sample for video) and ends where fragment k+1 starts.
//! The times written are the boundaries themselves: the remainder between a boundary and the
//! sample at it is absorbed into the sample durations at the edges, so that `t[n+1] = t[n] +
//! d[n]` holds with no gap, and two encoders fed the same signal write the same times, durations
//! and indexes whatever the phase of their frames. The muxer's fragments are coalesced or split
//! to fit the grid; the media payload is re-sliced, never copied.

use alloc::vec::Vec;

use crate::payload::Payload;
use crate::track_fragment::{Sample, TrackFragment};

/// How the target timeline is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampMode {
    /// Times from the pipeline's running time.
    Pipeline,
    /// Times since the Unix epoch (UTC): the same for every encoder.
    Utc,
}

/// The grid and the mapping onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridConfig {
    pub mode: TimestampMode,
    /// Fragment duration `D` in nanoseconds; 0 keeps the muxer's fragments as they are.
    pub fragment_duration_ns: u64,
    /// Target time (ns) of running time 0: 0 in pipeline mode plus any configured offset; in
    /// UTC mode the UTC instant of running time 0 plus any configured offset.
    pub target_offset_ns: i128,
}

/// A fragment on the grid.
#[derive(Debug, Clone)]
pub struct GridFragment {
    /// Samples with their written durations; `decode_time` is the written decode time of the
    /// first sample.
    pub fragment: TrackFragment,
    /// Written presentation time of the first sample (tfxd fragment_absolute_time).
    pub time: u64,
    /// Written duration (tfxd fragment_duration): where the next fragment starts, minus `time`.
    pub duration: u64,
    /// `time / D`: the same in every encoder and across restarts (tfxd v2, mfhd).
    pub index: u64,
    /// The first sample was not a sync sample (video whose key frame came late or never).
    pub starts_without_sync: bool,
    /// The track's first fragment, started at a key frame off the grid: the track's key frames
    /// never came near a boundary (see [`OFF_GRID_AFTER`]). Its fragments start at key frames.
    pub starts_off_grid: bool,
}

/// The final part of a fragment still being built (see [`Grid::open_fragment`]).
#[derive(Debug, Clone)]
pub struct OpenFragment {
    /// The fragment's index, as [`GridFragment::index`].
    pub index: u64,
    /// Written presentation time of the first sample, as [`GridFragment::time`].
    pub time: u64,
    /// Written decode time of the first sample.
    pub decode_time: u64,
    /// The samples whose written durations are final, and their bytes.
    pub samples: Vec<Sample>,
    pub data: Payload,
}

/// The samples of an output fragment being assembled.
#[derive(Debug)]
struct Building {
    track_id: u32,
    index: u64,
    /// Written start (presentation, ticks).
    start: u64,
    /// Actual decode ticks of the samples (negative near the start of a timeline whose
    /// B-frames decode before time 0), and the samples.
    decode: Decodes,
    samples: Vec<Sample>,
    data: Payload,
    /// Bytes `[start, end)` of the muxer fragment being read that belong to this fragment but
    /// are not sliced into `data` yet: consecutive samples are sliced once, as one run.
    pending: Option<(u64, u64)>,
    /// Where it must end: [`Grid::next_edge`], kept here because every sample asks (and a
    /// boundary costs a 128-bit division); refreshed when the cuts change.
    edge: u64,
    starts_without_sync: bool,
    starts_off_grid: bool,
}

/// What [`Grid::whole_fragment`] found: the output fragment the muxer fragment becomes.
struct WholeFragment {
    /// Its samples' decode ticks: one run.
    decode: Decodes,
    start: u64,
    index: u64,
    edge: u64,
    data: Payload,
}

/// The decode ticks of a fragment's samples, as runs: within a muxer fragment each sample
/// decodes where the one before it ends, so a run is its first tick, and the durations give
/// the rest. The first run is held inline: a fragment made of one run allocates nothing.
#[derive(Debug, Default)]
struct Decodes {
    /// Decode tick of the first sample.
    first: i128,
    /// (index of the first sample of each later run, its decode tick), in sample order.
    jumps: Vec<(usize, i128)>,
    len: usize,
    last: i128,
    /// Where the last sample ends: the next one continues the run when it decodes there.
    next: i128,
}

impl Decodes {
    fn push(&mut self, a: i128, duration: u32) {
        if self.len == 0 {
            self.first = a;
        } else if a != self.next {
            self.jumps.push((self.len, a));
        }
        self.last = a;
        self.next = a + i128::from(duration);
        self.len += 1;
    }

    fn first(&self) -> Option<i128> {
        (self.len > 0).then_some(self.first)
    }

    fn last(&self) -> Option<i128> {
        (self.len > 0).then_some(self.last)
    }

    /// Moves every tick by `by`.
    fn shift(&mut self, by: i128) {
        self.first += by;
        for r in self.jumps.iter_mut() {
            r.1 += by;
        }
        self.last += by;
        self.next += by;
    }
}

impl Building {
    /// Slices the pending run out of `source` (the muxer fragment's payload) into `data`.
    fn take_pending(&mut self, source: &Payload) {
        if let Some((start, end)) = self.pending.take()
            && let Some(run) = source.slice(start, end - start)
        {
            self.data.append(run);
        }
    }

    /// Adds the sample at `[at, at + size)` of the muxer fragment to the pending run.
    fn add_bytes(&mut self, source: &Payload, at: u64, size: u64) {
        match self.pending {
            Some((start, end)) if end == at => self.pending = Some((start, end + size)),
            _ => {
                self.take_pending(source);
                self.pending = Some((at, at + size));
            }
        }
    }
}

/// Grid state of one track.
#[derive(Debug)]
struct TrackGrid {
    track_id: u32,
    timescale: u32,
    video: bool,
    /// Target decode ticks minus the muxer's decode ticks, once known.
    offset: Option<i128>,
    building: Option<Building>,
    /// The current fragment was closed at this boundary before the next sample was seen: that
    /// sample starts the next fragment whatever it is.
    closed_at: Option<u64>,
    /// Longest sample seen, for tolerances.
    longest: u32,
    /// Samples in the track's last fragment: the next one's vectors are reserved that big.
    last_count: usize,
    /// Largest composition offset seen: the reorder window of B-frames.
    max_cto: u32,
    /// Whether the video timeline was checked against the first key frame at a boundary.
    settled: bool,
    /// In UTC mode, before the track's first fragment: the presentation tick of its first
    /// sample, from which [`OFF_GRID_AFTER`] counts.
    waiting_since: Option<u64>,
}

/// In UTC mode a video track starts at a key frame on a boundary, so that an encoder that
/// joins later writes the same fragments (see [`Grid::first_start`]). Key frames that have not
/// come near a boundary within this many fragment durations never will: the encoder ignores
/// the sink's key-unit requests, or the fragments were muxed before their times were known (an
/// `appsrc` of whole fragments). The track then starts at its next key frame, off the grid,
/// rather than never.
pub const OFF_GRID_AFTER: u64 = 2;

/// Places muxer fragments of every track on the grid.
#[derive(Debug)]
pub struct Grid {
    config: GridConfig,
    tracks: Vec<TrackGrid>,
    /// Extra fragment starts (target ns, sorted): splice points that start a new fragment
    /// (docs/protocol.md §5.9). Only the fragment a cut falls in is split; the grid goes on.
    cuts: Vec<i128>,
    /// Tests only: never take [`Grid::whole_fragment`]'s shortcut, to compare against it.
    #[cfg(test)]
    sample_by_sample: bool,
    /// Tests only: how many times the shortcut was taken.
    #[cfg(test)]
    shortcuts: usize,
}

/// Ticks of `ns` nanoseconds at `timescale`, rounded down.
pub fn ns_to_ticks(ns: i128, timescale: u32) -> i128 {
    (ns * i128::from(timescale)).div_euclid(1_000_000_000)
}

impl Grid {
    pub fn new(config: GridConfig) -> Self {
        Grid {
            config,
            tracks: Vec::new(),
            cuts: Vec::new(),
            #[cfg(test)]
            sample_by_sample: false,
            #[cfg(test)]
            shortcuts: 0,
        }
    }

    pub fn config(&self) -> &GridConfig {
        &self.config
    }

    /// Boundary `k` in ticks of `timescale`: `floor(k × D × timescale / 1e9)`, so that every
    /// track and every encoder computes the same boundaries.
    fn boundary(&self, k: u64, timescale: u32) -> u64 {
        let t = u128::from(k) * u128::from(self.config.fragment_duration_ns) * u128::from(timescale) / 1_000_000_000;
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// The index of the last boundary at or before `ticks`.
    fn index_at(&self, ticks: u64, timescale: u32) -> u64 {
        let d = u128::from(self.config.fragment_duration_ns) * u128::from(timescale);
        if d == 0 {
            return 0;
        }
        let mut k = u64::try_from(u128::from(ticks) * 1_000_000_000 / d).unwrap_or(u64::MAX);
        while k > 0 && self.boundary(k, timescale) > ticks {
            k -= 1;
        }
        while self.boundary(k + 1, timescale) <= ticks {
            k += 1;
        }
        k
    }

    /// Starts a fragment of every track at `target_ns` (a splice point, on the target
    /// timeline), in addition to the grid's boundaries: for video at the first sync sample at
    /// or after it, for audio at the first frame. Returns false when a track is already past
    /// it. A cut within one sample of a boundary is that boundary.
    pub fn add_cut(&mut self, target_ns: i128) -> bool {
        let late = self.tracks.iter().any(|t| {
            let at = ns_to_ticks(target_ns, t.timescale);
            t.building.as_ref().map(|b| i128::from(b.start)).or(t.closed_at.map(i128::from)).is_some_and(|s| s >= at)
                || t.building.as_ref().and_then(|b| b.decode.last()).is_some_and(|d| d >= at)
        });
        if late {
            return false;
        }
        if let Err(i) = self.cuts.binary_search(&target_ns) {
            self.cuts.insert(i, target_ns);
        }
        self.refresh_edges();
        true
    }

    /// Withdraws a cut (a cancelled splice) that no fragment has used yet.
    pub fn remove_cut(&mut self, target_ns: i128) -> bool {
        match self.cuts.binary_search(&target_ns) {
            Ok(i) => {
                self.cuts.remove(i);
                self.refresh_edges();
                true
            }
            Err(_) => false,
        }
    }

    /// The cuts of a track in its ticks, leaving out those within one sample of a boundary.
    fn cut_ticks(&self, ti: usize) -> impl Iterator<Item = u64> + '_ {
        let t = &self.tracks[ti];
        let ts = t.timescale;
        let tol = u64::from(t.longest.max(1));
        self.cuts.iter().filter_map(move |c| u64::try_from(ns_to_ticks(*c, ts)).ok()).filter(move |c| {
            let k = self.index_at(*c, ts);
            *c - self.boundary(k, ts) >= tol && self.boundary(k + 1, ts) - *c >= tol
        })
    }

    /// Where the fragment being built must end: the next boundary, or a cut before it.
    fn next_edge(&self, ti: usize, index: u64, start: u64) -> u64 {
        let next = self.boundary(index + 1, self.tracks[ti].timescale);
        self.cut_ticks(ti).filter(|c| *c > start).fold(next, u64::min)
    }

    /// Recomputes every fragment's edge after the cuts changed.
    fn refresh_edges(&mut self) {
        for ti in 0..self.tracks.len() {
            if let Some((index, start)) = self.tracks[ti].building.as_ref().map(|b| (b.index, b.start)) {
                let edge = self.next_edge(ti, index, start);
                if let Some(b) = self.tracks[ti].building.as_mut() {
                    b.edge = edge;
                }
            }
        }
    }

    /// The last edge (boundary or cut) at or before `ticks`.
    fn edge_at(&self, ti: usize, ticks: u64) -> u64 {
        let ts = self.tracks[ti].timescale;
        let b = self.boundary(self.index_at(ticks, ts), ts);
        self.cut_ticks(ti).filter(|c| *c <= ticks).fold(b, u64::max)
    }

    /// Forgets cuts every track has passed.
    fn prune_cuts(&mut self) {
        if self.cuts.is_empty() || self.tracks.is_empty() {
            return;
        }
        let tracks = &self.tracks;
        self.cuts.retain(|c| {
            tracks.iter().any(|t| {
                let at = ns_to_ticks(*c, t.timescale);
                match (&t.building, t.closed_at) {
                    (Some(b), _) => i128::from(b.start) < at,
                    (None, Some(e)) => i128::from(e) <= at,
                    (None, None) => true,
                }
            })
        });
    }

    /// Adds a muxer fragment of a track; returns the output fragments it completed.
    /// `anchor` is the running time (ns) of one sample's presentation time, by index, when the
    /// transport knew it; without any anchor the muxer's own timeline is taken as running time.
    pub fn push(
        &mut self,
        track_id: u32,
        timescale: u32,
        video: bool,
        fragment: TrackFragment,
        anchor: Option<(usize, u64)>,
    ) -> Vec<GridFragment> {
        let ti = match self.tracks.iter().position(|t| t.track_id == track_id) {
            Some(i) => i,
            None => {
                self.tracks.push(TrackGrid {
                    track_id,
                    timescale: timescale.max(1),
                    video,
                    offset: None,
                    building: None,
                    closed_at: None,
                    longest: 0,
                    last_count: 0,
                    max_cto: 0,
                    settled: !video,
                    waiting_since: None,
                });
                self.tracks.len() - 1
            }
        };
        if self.tracks[ti].offset.is_none() {
            let target_offset = self.config.target_offset_ns;
            let ts = self.tracks[ti].timescale;
            // The muxer's presentation ticks of the anchored sample, and where that sample is in
            // target ticks: the offset holds for decode times as well.
            let (muxer_ticks, running_ns) = match anchor {
                Some((i, rt)) => {
                    let before: u64 = fragment.samples.iter().take(i).map(|s| u64::from(s.duration)).sum();
                    let cto = fragment.samples.get(i).map_or(0, |s| i128::from(s.cto));
                    (i128::from(fragment.decode_time + before) + cto, i128::from(rt))
                }
                None => (
                    i128::from(fragment.decode_time),
                    i128::from(fragment.decode_time) * 1_000_000_000 / i128::from(ts),
                ),
            };
            let target = ns_to_ticks(running_ns + target_offset, ts);
            self.tracks[ti].offset = Some(target - muxer_ticks);
        }
        let mut out = Vec::new();
        let mut muxer_decode = i128::from(fragment.decode_time);
        let mut data_pos = 0u64;
        let whole = self.whole_fragment(ti, &fragment);
        let samples: &[Sample] = if whole.is_some() { &[] } else { &fragment.samples };
        for s in samples {
            // The offset may move once, at the first key frame (see add_sample).
            let t = &mut self.tracks[ti];
            let a = muxer_decode + t.offset.unwrap_or(0);
            muxer_decode += i128::from(s.duration);
            // Most samples only join the fragment being built: nothing to decide for them (the
            // same test as add_sample's, without its bookkeeping, which they would not change).
            let sync = s.is_sync();
            let plain = s.duration <= t.longest
                && s.cto.unsigned_abs() <= t.max_cto
                && !(t.video && sync && !t.settled)
                && t.building.as_ref().is_some_and(|b| {
                    let p = u64::try_from(a + i128::from(s.cto)).unwrap_or(0);
                    let can_start = !t.video || sync;
                    !(can_start && p + u64::from(s.duration / 2) >= b.edge)
                });
            if let (true, Some(b)) = (plain, t.building.as_mut()) {
                b.decode.push(a, s.duration);
                b.samples.push(*s);
                b.add_bytes(&fragment.data, data_pos, u64::from(s.size));
            } else if let Some(done) = self.add_sample(ti, a, *s, &fragment.data, data_pos) {
                out.push(done);
            }
            data_pos += u64::from(s.size);
        }
        if let Some(w) = whole {
            #[cfg(test)]
            {
                self.shortcuts += 1;
            }
            let tr = &mut self.tracks[ti];
            if let Some(open) = tr.building.take() {
                tr.last_count = open.samples.len();
                out.push(finish(open, w.start));
            }
            tr.closed_at = None;
            tr.building = Some(Building {
                track_id: tr.track_id,
                index: w.index,
                start: w.start,
                decode: w.decode,
                samples: fragment.samples,
                data: w.data,
                pending: None,
                edge: w.edge,
                starts_without_sync: false,
                starts_off_grid: false,
            });
        } else if let Some(b) = self.tracks[ti].building.as_mut() {
            b.take_pending(&fragment.data);
        }
        // Complete when the samples reach the next boundary: the next one starts the next
        // fragment, so there is no need to wait for it. Video must end right at the boundary
        // (where the next key frame is); audio frames straddle it, and the last one is cut
        // short on paper.
        let ts = self.tracks[ti].timescale;
        let half = u64::from(self.tracks[ti].longest / 2);
        let video = self.tracks[ti].video;
        if let Some(b) = &self.tracks[ti].building {
            let end = b.decode.last().unwrap_or(0) + b.samples.last().map_or(0, |s| i128::from(s.duration));
            let cto = b.samples.first().map_or(0, |s| i128::from(s.cto));
            let end_presentation = u64::try_from(end + cto).unwrap_or(0);
            // Video is closed early only at a boundary, where a key frame was asked for ahead
            // of time; at a cut it waits for the key frame itself (see add_sample).
            let next = if video { self.boundary(b.index + 1, ts) } else { b.edge };
            let reached = end_presentation + half >= next;
            if reached && (!video || end_presentation <= next + half) {
                let tr = &mut self.tracks[ti];
                if let Some(done) = tr.building.take() {
                    tr.closed_at = Some(next);
                    tr.settled = true;
                    tr.last_count = done.samples.len();
                    out.push(finish(done, next));
                }
            }
        }
        self.prune_cuts();
        out
    }

    /// The common case in one step: a muxer fragment that starts the next output fragment
    /// right after one closed at a boundary, and holds nothing that would start another one
    /// or change what the track has seen (longest sample, largest reorder, a first key frame
    /// to settle on). Sample by sample, [`Grid::add_sample`] would start a fragment at its
    /// first sample and add every other one as it is: here the fragment takes the muxer's
    /// samples and payload whole, without a copy of the sample table or a slice per run.
    fn whole_fragment(&self, ti: usize, fragment: &TrackFragment) -> Option<WholeFragment> {
        #[cfg(test)]
        if self.sample_by_sample {
            return None;
        }
        let t = &self.tracks[ti];
        let (Some(offset), true) = (t.offset, t.settled) else {
            return None;
        };
        let first = fragment.samples.first()?;
        if t.video && !first.is_sync() {
            return None;
        }
        // A sample longer, or reordered further, than any before changes what the track has
        // seen (checked for the others in the loop below).
        let new_to_the_track = |s: &Sample| s.duration > t.longest || s.cto.unsigned_abs() > t.max_cto;
        if new_to_the_track(first) {
            return None;
        }
        let a0 = i128::from(fragment.decode_time) + offset;
        let p0 = u64::try_from(a0 + i128::from(first.cto)).unwrap_or(0);
        let tol = u64::from(t.longest);
        let (start, index) = match (&t.building, t.closed_at) {
            // The last fragment was closed at a boundary: this one starts the next.
            (None, Some(boundary)) => self.start_point(p0, boundary, tol, t.timescale),
            // Still open (B-frames presented past its end keep it so until the next key
            // frame): this one's first sample closes it, where add_sample would.
            (Some(b), _) => {
                let reach = p0 + u64::from(first.duration / 2);
                if reach < b.edge {
                    return None;
                }
                self.start_after(b, p0, self.edge_at(ti, reach).max(b.edge), tol, t.timescale)
            }
            (None, None) => return None,
        };
        let edge = self.next_edge(ti, index, start);
        // In i64 (the loop runs for every sample of the stream): ticks this far from zero
        // leave it to the sample-by-sample path, and a fragment's durations cannot overflow it.
        let a0_64 = i64::try_from(a0).ok().filter(|a| a.unsigned_abs() < 1 << 62)?;
        let mut a = a0_64 + i64::from(first.duration);
        let mut size = u64::from(first.size);
        for s in &fragment.samples[1..] {
            if new_to_the_track(s) {
                return None;
            }
            if !t.video || s.is_sync() {
                let p = u64::try_from(a + i64::from(s.cto)).unwrap_or(0);
                if p + u64::from(s.duration / 2) >= edge {
                    return None;
                }
            }
            a += i64::from(s.duration);
            size += u64::from(s.size);
        }
        let last_duration = fragment.samples.last().map_or(0, |s| s.duration);
        let (last, next) = (i128::from(a - i64::from(last_duration)), i128::from(a));
        let data = fragment.data.slice(0, size)?;
        let decode = Decodes { first: a0, jumps: Vec::new(), len: fragment.samples.len(), last, next };
        Some(WholeFragment { decode, start, index, edge, data })
    }

    /// One sample at actual decode tick `a`.
    /// `source` is the muxer fragment's payload, in which the sample's bytes start at `at`.
    fn add_sample(&mut self, ti: usize, a: i128, s: Sample, source: &Payload, at: u64) -> Option<GridFragment> {
        let ts = self.tracks[ti].timescale;
        let video = self.tracks[ti].video;
        if s.duration > self.tracks[ti].longest {
            self.tracks[ti].longest = s.duration;
            // The cuts near a boundary are judged by the longest sample.
            if !self.cuts.is_empty() {
                self.refresh_edges();
            }
        }
        self.tracks[ti].max_cto = self.tracks[ti].max_cto.max(s.cto.unsigned_abs());
        let tol = u64::from(self.tracks[ti].longest.max(s.duration));
        let mut a = a;
        // Presentation tick; a sample presented before the timeline's origin counts as at 0.
        let mut p = u64::try_from(a + i128::from(s.cto)).unwrap_or(0);
        if video && s.is_sync() && !self.tracks[ti].settled {
            // The first key frame near a boundary shows where the muxer's timeline really is. The
            // qtmux family shifts a B-frame stream so that its decode times start at 0, and says
            // so nowhere: its key frames, forced at boundaries of the running time, then appear
            // up to the reorder window late. Such a key frame is put back on its boundary, and
            // the whole track with it (once, before anything went out). A key frame within one
            // frame after a boundary needs nothing.
            let b = self.boundary(self.index_at(p, ts), ts);
            let late = p - b;
            let window = u64::from(self.tracks[ti].max_cto) + tol;
            // Moving back must not take decode times below 0 (ISO cannot carry them): at the
            // start of a running-time timeline the muxer's offset is kept instead, and the
            // fragments, still contiguous and constant, start a reorder delay after the grid.
            let earliest = self.tracks[ti].building.as_ref().and_then(|b| b.decode.first()).unwrap_or(a).min(a);
            if late <= tol || earliest < i128::from(late) {
                self.tracks[ti].settled = true;
            } else if late <= window && self.tracks[ti].max_cto > 0 {
                let t = &mut self.tracks[ti];
                t.offset = t.offset.map(|o| o - i128::from(late));
                if let Some(b) = t.building.as_mut() {
                    b.decode.shift(-i128::from(late));
                }
                a -= i128::from(late);
                p -= late;
                t.settled = true;
            }
        }
        let can_start = !video || s.is_sync();
        let mut done = None;
        let start_new = match (&self.tracks[ti].building, self.tracks[ti].closed_at) {
            // Closed at a boundary already: this sample starts the next fragment.
            (None, Some(b)) => Some(self.start_point(p, b, tol, ts)),
            (None, None) => {
                let since = *self.tracks[ti].waiting_since.get_or_insert(p);
                if !can_start { None } else { self.first_start(p, since, video, tol, ts) }
            }
            (Some(b), _) => {
                let next = b.edge;
                // "At or after" the boundary (or cut), within half a sample for rounding.
                let reach = p + u64::from(s.duration / 2);
                if can_start && reach >= next {
                    Some(self.start_after(b, p, self.edge_at(ti, reach).max(next), tol, ts))
                } else {
                    None
                }
            }
        };
        if let Some((start, index)) = start_new {
            // A first fragment away from its boundary started off the grid (`first_start`).
            let off_grid = video
                && self.tracks[ti].building.is_none()
                && self.tracks[ti].closed_at.is_none()
                && start != self.boundary(index, ts);
            let edge = self.next_edge(ti, index, start);
            let tr = &mut self.tracks[ti];
            if let Some(mut b) = tr.building.take() {
                b.take_pending(source);
                tr.last_count = b.samples.len();
                done = Some(finish(b, start));
            }
            tr.closed_at = None;
            if off_grid {
                // Nothing will move this timeline to a boundary any more.
                tr.settled = true;
            }
            tr.building = Some(Building {
                track_id: tr.track_id,
                index,
                start,
                // One more than last time: a fragment of 93 or 94 frames needs no second allocation.
                decode: Decodes::default(),
                samples: Vec::with_capacity(tr.last_count + 1),
                data: Payload::new(),
                pending: None,
                edge,
                starts_without_sync: video && !s.is_sync(),
                starts_off_grid: off_grid,
            });
        }
        if let Some(b) = self.tracks[ti].building.as_mut() {
            b.decode.push(a, s.duration);
            b.samples.push(s);
            b.add_bytes(source, at, u64::from(s.size));
        }
        if done.is_some() {
            // What went out fixed the timeline.
            self.tracks[ti].settled = true;
        }
        done
    }

    /// Where a fragment whose first sample is at presentation tick `p` starts, given the
    /// boundary `b` it should start at: the boundary itself when the sample is within one
    /// sample of it (a key frame on time), else the sample's own time (a late key frame).
    fn start_point(&self, p: u64, b: u64, tol: u64, ts: u32) -> (u64, u64) {
        let start = if p.abs_diff(b) <= tol { b } else { p };
        (start, self.index_at(start, ts))
    }

    /// [`Grid::start_point`] of a fragment that closes `open`: never at or before the start
    /// of `open`'s last sample, which must keep at least one tick (a key frame one frame late
    /// after a frame right on the boundary: the boundary is taken already, the key frame
    /// starts at its own time, and the timeline stays contiguous).
    fn start_after(&self, open: &Building, p: u64, b: u64, tol: u64, ts: u32) -> (u64, u64) {
        let (start, index) = self.start_point(p, b, tol, ts);
        let cto0 = open.samples.first().map_or(0, |s| i128::from(s.cto));
        let floor = open.decode.last().map_or(0, |d| u64::try_from(d + cto0 + 1).unwrap_or(0));
        if start >= floor {
            return (start, index);
        }
        let start = p.max(floor);
        (start, self.index_at(start, ts))
    }

    /// The very first fragment of a track. In pipeline mode it starts at the boundary at or
    /// before the first sample. In UTC mode a stream that joins (a second encoder, a restart)
    /// must not send a partial fragment that differs from the other encoder's: it starts at
    /// the first boundary at or after the first sample, dropping what comes before; video
    /// whose key frames have not come near a boundary [`OFF_GRID_AFTER`] fragment durations
    /// after its first sample (at `since`) starts at the key frame `p` instead, off the grid.
    fn first_start(&self, p: u64, since: u64, video: bool, tol: u64, ts: u32) -> Option<(u64, u64)> {
        let k = self.index_at(p, ts);
        let b = self.boundary(k, ts);
        match self.config.mode {
            TimestampMode::Pipeline => Some((b, k)),
            // Within one sample after a boundary: the first sample at or after it.
            TimestampMode::Utc if p - b < tol => Some((b, k)),
            TimestampMode::Utc => {
                let next = self.boundary(k + 1, ts);
                let waited = p.saturating_sub(since) >= OFF_GRID_AFTER * self.boundary(1, ts).max(1);
                if p + tol / 2 >= next { Some((next, k + 1)) } else { (video && waited).then_some((p, k)) }
            }
        }
    }

    /// The part of the fragment a track is building that is final: every sample but the
    /// last, with its written duration (the last one's waits for the next sample or the
    /// fragment's end), and their bytes. What [`Grid::push`] later completes starts with
    /// exactly these, so a fragment can go out in pieces as it is produced (CMAF chunks).
    /// `None` while the track builds nothing, or while its timeline may still move (video
    /// before a key frame settled it).
    pub fn open_fragment(&self, track_id: u32) -> Option<OpenFragment> {
        let t = self.tracks.iter().find(|t| t.track_id == track_id)?;
        let b = t.building.as_ref().filter(|b| t.settled && b.pending.is_none())?;
        let (time, decode_time) = written_start(b);
        let mut samples = b.samples.clone();
        let n = samples.len();
        write_durations(&mut samples, &b.decode, decode_time, 0);
        samples.truncate(n.saturating_sub(1));
        let size = samples.iter().map(|s| u64::from(s.size)).sum();
        let data = b.data.slice(0, size)?;
        Some(OpenFragment { index: b.index, time, decode_time, samples, data })
    }

    /// End of the stream: the fragments being built, ending where their samples end.
    pub fn flush(&mut self) -> Vec<GridFragment> {
        let mut out = Vec::new();
        for t in &mut self.tracks {
            if let Some(b) = t.building.take() {
                let end = b.decode.last().unwrap_or(0) + b.samples.last().map_or(0, |s| i128::from(s.duration));
                let cto = b.samples.first().map_or(0, |s| i128::from(s.cto));
                out.push(finish(b, u64::try_from(end + cto).unwrap_or(0)));
            }
        }
        out
    }
}

/// Writes the durations of a fragment that starts at `b.start` and ends at `end` (both
/// presentation ticks): the first sample takes up the space from the written start, the last
/// one reaches the written end, the others keep theirs.
fn finish(b: Building, end: u64) -> GridFragment {
    let cto0 = b.samples.first().map_or(0, |s| i64::from(s.cto));
    let (start, first_decode) = written_start(&b);
    let last_end = i128::from(end) - i128::from(cto0);
    let mut samples = b.samples;
    let ticks = |t: i128| u32::try_from(t.max(1)).unwrap_or(u32::MAX);
    let n = samples.len();
    if b.decode.jumps.is_empty() && n >= 2 {
        // One run: only the first and the last sample change (the written start and end);
        // every other one keeps its duration, at least one tick.
        #[cfg(test)]
        let general = {
            let mut all = samples.clone();
            write_durations(&mut all, &b.decode, first_decode, last_end);
            all
        };
        samples[0].duration = ticks(b.decode.first + i128::from(samples[0].duration) - i128::from(first_decode));
        for s in &mut samples[1..n - 1] {
            s.duration = s.duration.max(1);
        }
        samples[n - 1].duration = ticks(last_end - b.decode.last);
        #[cfg(test)]
        assert_eq!(samples, general);
    } else {
        write_durations(&mut samples, &b.decode, first_decode, last_end);
    }
    let duration = samples.iter().map(|s| u64::from(s.duration)).sum();
    GridFragment {
        fragment: TrackFragment {
            track_id: b.track_id,
            decode_time: first_decode,
            samples,
            data: b.data,
            anchor: None,
        },
        time: start,
        duration,
        index: b.index,
        starts_without_sync: b.starts_without_sync,
        starts_off_grid: b.starts_off_grid,
    }
}

/// The written presentation start of a fragment and the decode time of its first sample.
fn written_start(b: &Building) -> (u64, u64) {
    let cto0 = b.samples.first().map_or(0, |s| i64::from(s.cto));
    // A decode time cannot be negative: at the very start of a running-time timeline a B-frame
    // stream's first fragment starts at its key frame's presentation instead of at 0.
    let start = b.start.max(u64::try_from(cto0).unwrap_or(0));
    (start, start.saturating_add_signed(-cto0))
}

/// Writes the durations of `samples`, decoding at `decode` (the muxer's ticks), from
/// `first_decode` to `last_end`: each sample lasts until the next one decodes, and keeps at
/// least one tick (a fragment cut short never goes backwards).
fn write_durations(samples: &mut [Sample], decode: &Decodes, first_decode: u64, last_end: i128) {
    let n = samples.len();
    let mut runs = decode.jumps.iter().peekable();
    // Decode tick of sample i as the muxer had it: a run's first tick, or where the one
    // before it ended (read before its duration is rewritten).
    let mut at = decode.first().unwrap_or(0);
    for (i, s) in samples.iter_mut().enumerate() {
        let mut next = at + i128::from(s.duration);
        if let Some(&&(j, tick)) = runs.peek()
            && j == i + 1
        {
            next = tick;
            runs.next();
        }
        let from = if i == 0 { i128::from(first_decode) } else { at };
        let to = if i + 1 == n { last_end } else { next };
        s.duration = u32::try_from((to - from).max(1)).unwrap_or(u32::MAX);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track_fragment::{SAMPLE_FLAGS_NON_SYNC, SAMPLE_FLAGS_SYNC};
    use alloc::vec;
    use bytes::Bytes;

    const SEC: u64 = 1_000_000_000;

    fn grid(mode: TimestampMode, offset_ns: i128) -> Grid {
        Grid::new(GridConfig { mode, fragment_duration_ns: 2 * SEC, target_offset_ns: offset_ns })
    }

    /// A muxer fragment of `n` samples of `dur` ticks from decode tick `start`; sync where
    /// `sync(i)` says; each sample's data is one byte, its index mod 256.
    fn mux_frag(start: u64, n: u32, dur: u32, first_index: u32, sync: impl Fn(u32) -> bool) -> TrackFragment {
        let mut data = Payload::new();
        let mut samples = Vec::new();
        for i in 0..n {
            let k = first_index + i;
            samples.push(Sample {
                duration: dur,
                size: 1,
                flags: if sync(k) { SAMPLE_FLAGS_SYNC } else { SAMPLE_FLAGS_NON_SYNC },
                cto: 0,
            });
            data.push(Bytes::from(vec![k as u8]));
        }
        TrackFragment { track_id: 1, decode_time: start, samples, data, anchor: None }
    }

    fn summary(f: &[GridFragment]) -> Vec<(u64, u64, u64)> {
        f.iter().map(|g| (g.index, g.time, g.duration)).collect()
    }

    fn contiguous(f: &[GridFragment]) -> bool {
        f.windows(2).all(|w| w[0].time + w[0].duration == w[1].time)
            && f.iter().all(|g| g.fragment.samples.iter().map(|s| u64::from(s.duration)).sum::<u64>() == g.duration)
    }

    /// Video at 30 fps (timescale 3000) whose frame i is at `phase + 100 i` running ticks, with
    /// key frames at the first frame at or after each 2 s boundary (as forced key units give),
    /// cut by the muxer into one fragment per GOP.
    fn video_run(g: &mut Grid, phase: u64, frames: u32) -> Vec<GridFragment> {
        let key = |i: u32| {
            let t = phase + 100 * u64::from(i);
            i == 0 || (t % 6000) < 100
        };
        let mut out = Vec::new();
        let mut i = 0;
        while i < frames {
            let mut n = 1;
            while i + n < frames && !key(i + n) {
                n += 1;
            }
            out.extend(g.push(1, 3000, true, mux_frag(phase + 100 * u64::from(i), n, 100, i, key), None));
            i += n;
        }
        out.extend(g.flush());
        out
    }

    #[test]
    fn aligned_gops_become_fragments_on_the_grid_at_once() {
        let mut g = grid(TimestampMode::Pipeline, 0);
        // The first GOP alone: it reaches the boundary, so it comes out without waiting.
        let key = |i: u32| i.is_multiple_of(60);
        let first = g.push(1, 3000, true, mux_frag(21, 60, 100, 0, key), None);
        assert_eq!(summary(&first), [(0, 0, 6000)]);
        let out = video_run(&mut grid(TimestampMode::Pipeline, 0), 21, 300);
        // The last GOP ends 21 ticks past a boundary: it is closed there too.
        assert_eq!(
            summary(&out),
            [(0, 0, 6000), (1, 6000, 6000), (2, 12000, 6000), (3, 18000, 6000), (4, 24000, 6000)]
        );
        assert!(contiguous(&out));
        assert!(out.iter().all(|f| !f.starts_without_sync));
        // The 21-tick offset of the first frame went into the first sample's duration.
        assert_eq!(out[0].fragment.samples[0].duration, 121);
    }

    #[test]
    fn two_encoders_with_different_frame_phases_write_identical_fragments() {
        // Encoder B starts 3.3 s after A: its frames have another phase, and it joins mid-fragment.
        let utc = 1_700_000_000 * SEC as i128;
        let a = video_run(&mut grid(TimestampMode::Utc, utc), 13, 600);
        let b = video_run(&mut grid(TimestampMode::Utc, utc), 9_913 + 77, 500);
        let a_by_index: Vec<_> = summary(&a);
        let b_sum = summary(&b);
        // B's first fragment is the first whole one after it joined.
        let first_b = b_sum[0];
        assert_eq!(first_b.0 * 6000, first_b.1);
        let overlap: Vec<_> = b_sum.iter().filter(|f| a_by_index.iter().any(|x| x.0 == f.0)).collect();
        assert!(overlap.len() >= 5, "{overlap:?}");
        // Identical index, time and duration for every fragment both have (but the last, cut by EOS).
        for f in &overlap[..overlap.len() - 1] {
            let x = a_by_index.iter().find(|x| x.0 == f.0).unwrap();
            assert_eq!(*x, **f);
        }
        // Times are UTC in ticks: 1.7e9 s at 3000 Hz.
        assert!(b[0].time > 5_100_000_000_000);
        assert_eq!(b[0].index, b[0].time / 6000);
    }

    #[test]
    fn ntsc_frame_rate_fragments_alternate_59_and_60_frames_with_exact_durations() {
        // 29.97 fps at timescale 30000: 1001 ticks per frame, 2 s = 60000 ticks.
        let mut g = grid(TimestampMode::Pipeline, 0);
        let key = |i: u32| i == 0 || (u64::from(i) * 1001) % 60000 < 1001;
        let mut out = Vec::new();
        let mut i = 0;
        // 80 s: a 59-frame GOP comes about every 17 fragments.
        while i < 2400 {
            let mut n = 1;
            while i + n < 2400 && !key(i + n) {
                n += 1;
            }
            out.extend(g.push(1, 30000, true, mux_frag(u64::from(i) * 1001, n, 1001, i, key), None));
            i += n;
        }
        let counts: Vec<usize> = out.iter().map(|f| f.fragment.samples.len()).collect();
        assert!(counts.iter().all(|c| *c == 59 || *c == 60), "{counts:?}");
        assert!(counts.contains(&59) && counts.contains(&60));
        assert!(out.iter().all(|f| f.duration == 60000 && f.time == f.index * 60000));
        assert!(contiguous(&out));
    }

    #[test]
    fn aac_at_48_khz_alternates_93_and_94_frames_from_misaligned_muxer_fragments() {
        let mut g = grid(TimestampMode::Pipeline, 0);
        let mut out = Vec::new();
        // The muxer cuts every 50 frames, unrelated to the grid.
        for m in 0..40u32 {
            out.extend(g.push(2, 48000, false, mux_frag(u64::from(m) * 50 * 1024, 50, 1024, m * 50, |_| true), None));
        }
        let counts: Vec<usize> = out.iter().map(|f| f.fragment.samples.len()).collect();
        assert!(counts.iter().all(|c| *c == 93 || *c == 94), "{counts:?}");
        assert!(out.iter().all(|f| f.duration == 96000 && f.time == f.index * 96000), "{:?}", summary(&out));
        assert!(contiguous(&out));
        // Frames are neither lost nor repeated: data bytes run on in order.
        let bytes: Vec<u8> = out.iter().flat_map(|f| f.fragment.data.to_vec()).collect();
        assert!(bytes.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    }

    #[test]
    fn split_muxer_fragments_share_the_payload_memory() {
        let mut g = grid(TimestampMode::Pipeline, 0);
        let f = mux_frag(0, 150, 1024, 0, |_| true);
        let first_chunk = f.data.chunk(0).unwrap().as_ptr();
        let out = g.push(2, 48000, false, f, None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].fragment.data.chunk(0).unwrap().as_ptr(), first_chunk);
    }

    #[test]
    fn in_utc_a_stream_joining_mid_fragment_starts_at_the_next_boundary() {
        let utc = 1_800_000_000 * SEC as i128;
        let mut g = grid(TimestampMode::Utc, utc);
        // First sample 1.5 s into an interval: the partial fragment is not sent.
        let key = |i: u32| i == 0 || i == 15;
        let out = g.push(1, 3000, true, mux_frag(4500, 40, 100, 0, key), None);
        assert!(out.is_empty());
        let all = g.flush();
        assert_eq!(all.len(), 1);
        let boundary = u64::try_from(utc / 1_000_000 * 3 + 6000).unwrap();
        assert_eq!(all[0].time % 6000, 0);
        assert_eq!(all[0].time, boundary);
        assert_eq!(all[0].fragment.samples.len(), 25);
    }

    #[test]
    fn in_utc_video_whose_key_frames_never_reach_a_boundary_starts_off_the_grid() {
        let utc = 1_800_000_000 * SEC as i128;
        let mut g = grid(TimestampMode::Utc, utc);
        // Key frames every 2 s, always 0.9 s after a boundary (an encoder that ignores the
        // key-unit requests): none can start a fragment on the grid.
        let key = |i: u32| i.is_multiple_of(20);
        let mut out = Vec::new();
        for k in 0..8u32 {
            out.extend(g.push(1, 3000, true, mux_frag(2700 + 6000 * u64::from(k), 20, 300, 20 * k, key), None));
        }
        out.extend(g.flush());
        // Waiting OFF_GRID_AFTER fragment durations from the first sample, the track starts at
        // its next key frame: the third; the two before are not sent.
        assert_eq!(out.len(), 6, "{:?}", summary(&out));
        let base = u64::try_from(utc / 1_000_000 * 3).unwrap();
        assert_eq!(out[0].time, base + 2700 + 2 * 6000);
        assert!(out[0].starts_off_grid && out[1..].iter().all(|f| !f.starts_off_grid));
        // From there each fragment is one GOP, contiguous, starting with its key frame.
        assert!(contiguous(&out));
        assert!(out.iter().all(|f| f.fragment.samples[0].is_sync() && !f.starts_without_sync));
        assert!(out.iter().all(|f| f.time % 6000 == 2700 && f.duration == 6000));
        assert_eq!(
            out.iter().map(|f| f.index).collect::<Vec<_>>(),
            (0..6).map(|k| base / 6000 + 2 + k).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_restart_continues_at_the_next_boundary_without_overlap() {
        let utc = 1_800_000_000 * SEC as i128;
        let before = video_run(&mut grid(TimestampMode::Utc, utc), 40, 200);
        let end = before.last().map(|f| f.time + f.duration).unwrap();
        // Restarted 1.23 s of running time after the first run's last frame, on the same clock.
        let after = video_run(&mut grid(TimestampMode::Utc, utc), 40 + 100 * 200 + 3690, 200);
        assert!(after[0].time >= end, "{} < {end}", after[0].time);
        assert!(after[0].index > before.last().unwrap().index);
        assert_eq!(after[0].time % 6000, 0);
    }

    #[test]
    fn a_late_key_frame_starts_the_fragment_at_its_own_time() {
        let mut g = grid(TimestampMode::Pipeline, 0);
        // Key frames at 0 and 10 frames after the 2 s boundary.
        let key = |i: u32| i == 0 || i == 70;
        let mut out = g.push(1, 3000, true, mux_frag(0, 70, 100, 0, key), None);
        out.extend(g.push(1, 3000, true, mux_frag(7000, 50, 100, 70, key), None));
        out.extend(g.flush());
        assert_eq!(summary(&out), [(0, 0, 7000), (1, 7000, 5000)]);
        assert!(contiguous(&out));
    }

    #[test]
    fn a_key_frame_one_frame_late_after_a_frame_on_the_boundary_keeps_the_timeline_contiguous() {
        // The frame at 6000 (the boundary) is no key frame; the one at 6100 is, within one
        // frame of the boundary. The boundary cannot be the next start: the frame on it
        // belongs to the fragment before, which ends where the key frame starts.
        let key = |i: u32| i == 0 || i == 61;
        for sample_by_sample in [false, true] {
            let mut g = grid(TimestampMode::Pipeline, 0);
            g.sample_by_sample = sample_by_sample;
            let mut out = g.push(1, 3000, true, mux_frag(0, 61, 100, 0, key), None);
            out.extend(g.push(1, 3000, true, mux_frag(6100, 60, 100, 61, key), None));
            out.extend(g.flush());
            assert_eq!(summary(&out), [(0, 0, 6100), (1, 6100, 6000)], "{sample_by_sample}");
            assert!(contiguous(&out));
            assert_eq!(out[0].fragment.samples.len(), 61);
        }
    }

    #[test]
    fn a_missing_key_frame_at_a_boundary_is_flagged() {
        let mut g = grid(TimestampMode::Pipeline, 0);
        // The muxer cut at the boundary but no key frame came there.
        let key = |i: u32| i == 0;
        let mut out = g.push(1, 3000, true, mux_frag(0, 60, 100, 0, key), None);
        out.extend(g.push(1, 3000, true, mux_frag(6000, 60, 100, 60, key), None));
        assert_eq!(out.len(), 2);
        assert!(!out[0].starts_without_sync && out[1].starts_without_sync);
    }

    #[test]
    fn an_anchor_maps_the_muxer_timeline_onto_running_time() {
        // mp4mux starts its timeline at 0; the first sample's buffer said running time 7 ms.
        let mut g = grid(TimestampMode::Utc, 1_900_000_000 * SEC as i128);
        let key = |i: u32| i.is_multiple_of(60);
        let out = g.push(1, 3000, true, mux_frag(0, 60, 100, 0, key), Some((0, 7_000_000)));
        let all: Vec<_> = out.into_iter().chain(g.flush()).collect();
        // 1.9e9 s + 7 ms: the first frame is 21 ticks into its interval, which UTC mode keeps
        // as the start of fragment on the boundary.
        assert_eq!(all[0].time, 1_900_000_000 * 3000);
        assert_eq!(all[0].fragment.decode_time, 1_900_000_000 * 3000);
        assert_eq!(all[0].fragment.samples[0].duration, 121);
    }

    #[test]
    fn a_b_frame_timeline_shifted_by_the_muxer_is_put_back_on_the_grid() {
        // mp4mux with x264 B-frames: decode times start at 0, key frames carry a composition
        // offset of 2 frames, so each forced key frame shows 200 ticks (+ 21 of phase) after
        // its boundary. In UTC the timeline is moved back onto the grid.
        let utc = 1_700_000_000 * SEC as i128;
        let mut g = grid(TimestampMode::Utc, utc);
        let gop = |start: u64, first: u32| {
            let mut f = mux_frag(start, 60, 100, first, |i| i % 60 == 0);
            for (i, s) in f.samples.iter_mut().enumerate() {
                s.cto = if i == 0 { 221 } else { [321, 121, 121][i % 3] };
            }
            f
        };
        let run = |g: &mut Grid| {
            let mut out = Vec::new();
            for k in 0..4u32 {
                out.extend(g.push(1, 3000, true, gop(u64::from(k) * 6000, k * 60), None));
            }
            out.extend(g.flush());
            out
        };
        let out = run(&mut g);
        let t0 = 1_700_000_000 * 3000;
        assert_eq!(
            summary(&out)[..3],
            [(850_000_000, t0, 6000), (850_000_001, t0 + 6000, 6000), (850_000_002, t0 + 12000, 6000)]
        );
        assert!(contiguous(&out));
        assert!(out.iter().all(|f| !f.starts_without_sync));
        // At the start of a running-time timeline, moving back would need negative decode times:
        // the fragments keep the muxer's offset, contiguous and 2 s each.
        let out = run(&mut grid(TimestampMode::Pipeline, 0));
        assert_eq!(summary(&out)[..3], [(0, 221, 6000), (1, 6221, 6000), (2, 12221, 6000)]);
        assert!(contiguous(&out));
    }

    #[test]
    fn a_cut_splits_only_the_fragment_it_falls_in() {
        let mut g = grid(TimestampMode::Pipeline, 0);
        assert!(g.add_cut(3 * SEC as i128));
        // 30 fps, key frames at the 2 s boundaries and at the splice (frame 90 = 3 s).
        let key = |i: u32| i.is_multiple_of(60) || i == 90;
        let mut out = Vec::new();
        for k in 0..6u32 {
            out.extend(g.push(1, 3000, true, mux_frag(u64::from(k) * 3000, 30, 100, k * 30, key), None));
        }
        out.extend(g.flush());
        assert_eq!(summary(&out), [(0, 0, 6000), (1, 6000, 3000), (1, 9000, 3000), (2, 12000, 6000)]);
        assert!(contiguous(&out));
        assert!(out.iter().all(|f| f.fragment.samples[0].is_sync() && !f.starts_without_sync));
        // The cut is used up.
        assert!(g.cuts.is_empty());

        // 48 kHz AAC: the frame at or after 3 s is 384 samples late; the fragment is written
        // as starting at 3 s exactly.
        let mut g = grid(TimestampMode::Utc, 0);
        assert!(g.add_cut(3 * SEC as i128));
        let mut out = Vec::new();
        for m in 0..6u32 {
            out.extend(g.push(2, 48000, false, mux_frag(u64::from(m) * 50 * 1024, 50, 1024, m * 50, |_| true), None));
        }
        out.extend(g.flush());
        let times: Vec<u64> = out.iter().map(|f| f.time).collect();
        assert_eq!(times[..4], [0, 96000, 144000, 192000]);
        assert_eq!((out[1].index, out[2].index), (1, 1));
        assert!(contiguous(&out));
    }

    #[test]
    fn cuts_that_come_late_or_near_a_boundary_change_nothing() {
        let mut g = grid(TimestampMode::Pipeline, 0);
        let key = |i: u32| i.is_multiple_of(60) || i == 90;
        let mut out = g.push(1, 3000, true, mux_frag(0, 100, 100, 0, key), None);
        // Frames up to 3.33 s went in: a splice at 3 s is too late for the grid.
        assert!(!g.add_cut(3 * SEC as i128));
        // Within one frame of the 4 s boundary: the boundary itself.
        assert!(g.add_cut(4 * SEC as i128 + 10_000_000));
        // A withdrawn cut does nothing.
        assert!(g.add_cut(5 * SEC as i128));
        assert!(g.remove_cut(5 * SEC as i128));
        assert!(!g.remove_cut(5 * SEC as i128));
        out.extend(g.push(1, 3000, true, mux_frag(10_000, 80, 100, 100, |i| i % 60 == 0), None));
        out.extend(g.flush());
        assert_eq!(summary(&out), [(0, 0, 6000), (1, 6000, 6000), (2, 12000, 6000)]);
    }

    /// The muxer fragments of one track for the property tests: `fragments` of `per_fragment`
    /// samples, `base_dur` ticks plus the `jitter` pattern, sync every `gop` samples (video; all
    /// sync for audio), composition offsets from `cto(k)` (video), sample sizes 1 to 3 bytes of
    /// the sample's number, and now and then (`gaps`) a decode gap of half a sample before the
    /// next fragment.
    struct MuxerRun<'a> {
        video: bool,
        gop: u32,
        per_fragment: u32,
        fragments: usize,
        base_dur: u32,
        jitter: &'a [u32],
        gaps: &'a [u64],
        start: u64,
    }

    impl MuxerRun<'_> {
        fn fragments(&self, cto: impl Fn(u32) -> i32) -> Vec<TrackFragment> {
            let mut decode = self.start;
            let mut k = 0u32;
            let mut out = Vec::new();
            for f in 0..self.fragments {
                let mut data = Payload::new();
                let mut samples = Vec::new();
                let first = decode;
                for _ in 0..self.per_fragment {
                    let duration =
                        self.base_dur + self.jitter.get(k as usize % self.jitter.len().max(1)).copied().unwrap_or(0);
                    let sync = !self.video || k.is_multiple_of(self.gop);
                    samples.push(Sample {
                        duration,
                        size: 1 + k % 3,
                        flags: if sync { SAMPLE_FLAGS_SYNC } else { SAMPLE_FLAGS_NON_SYNC },
                        cto: if self.video { cto(k) } else { 0 },
                    });
                    data.push(Bytes::from(vec![k as u8; (1 + k % 3) as usize]));
                    decode += u64::from(duration);
                    k += 1;
                }
                decode += self.gaps.get(f).copied().unwrap_or(0) * u64::from(self.base_dur / 2);
                out.push(TrackFragment { track_id: 1, decode_time: first, samples, data, anchor: None });
            }
            out
        }
    }

    mod open_fragment {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// What `open_fragment` offers while a fragment is built is always the start of
            /// the fragment `push` or `flush` completes: same index and times, the same
            /// samples with the same durations, the same bytes.
            #[test]
            fn the_open_part_is_a_prefix_of_the_completed_fragment(
                video in any::<bool>(),
                gop in 1u32..40,
                per_fragment in 1u32..50,
                fragments in 1usize..10,
                base_dur in 1000u32..4000,
                jitter in proptest::collection::vec(0u32..3, 0..32),
                ctos in proptest::collection::vec(0i32..3, 0..32),
                gaps in proptest::collection::vec(0u64..2, 0..10),
            ) {
                let mut g = grid(TimestampMode::Pipeline, 0);
                let mut offered: Vec<OpenFragment> = Vec::new();
                let mut done = Vec::new();
                let run = MuxerRun { video, gop, per_fragment, fragments, base_dur, jitter: &jitter, gaps: &gaps, start: 0 };
                for frag in run.fragments(|k| ctos.get(k as usize % ctos.len().max(1)).copied().unwrap_or(0) * 1000) {
                    done.extend(g.push(1, 90_000, video, frag, None));
                    offered.extend(g.open_fragment(1));
                }
                done.extend(g.flush());
                for o in &offered {
                    let f = done.iter().find(|f| f.index == o.index && f.time == o.time);
                    prop_assert!(f.is_some(), "an open fragment that never completed: {} at {}", o.index, o.time);
                    let f = f.unwrap();
                    prop_assert_eq!(f.fragment.decode_time, o.decode_time);
                    prop_assert!(o.samples.len() < f.fragment.samples.len());
                    prop_assert_eq!(&f.fragment.samples[..o.samples.len()], &o.samples[..]);
                    let bytes = f.fragment.data.to_vec();
                    prop_assert_eq!(&bytes[..o.data.len() as usize], &o.data.to_vec()[..]);
                }
            }
        }
    }

    mod shortcut {
        use super::*;
        use proptest::prelude::*;

        /// What an output fragment is, everything compared: time, duration, index, whether it
        /// starts without a sync sample, decode time, the samples, the payload.
        type Summary = (u64, u64, u64, bool, u64, Vec<(u32, u32, i32)>, Vec<u8>);

        fn summary(f: &GridFragment) -> Summary {
            let samples = f.fragment.samples.iter().map(|s| (s.duration, s.size, s.cto)).collect();
            (
                f.time,
                f.duration,
                f.index,
                f.starts_without_sync,
                f.fragment.decode_time,
                samples,
                f.fragment.data.to_vec(),
            )
        }

        proptest! {
            /// The whole-fragment shortcut changes nothing: muxer fragments of video (key
            /// frames every `gop` samples, B-frame offsets, jittered durations, a decode gap
            /// now and then) or audio give the same output fragments as sample by sample.
            #[test]
            fn the_whole_fragment_shortcut_gives_what_sample_by_sample_gives(
                video in any::<bool>(),
                gop in 1u32..90,
                per_fragment in 1u32..120,
                fragments in 1usize..12,
                base_dur in 1000u32..4000,
                jitter in proptest::collection::vec(0u32..3, 0..64),
                ctos in proptest::collection::vec(0i32..3, 0..64),
                gaps in proptest::collection::vec(0u64..2, 0..12),
                start in 0u64..10_000_000,
                aligned in any::<bool>(),
            ) {
                // Or the usual case: 2 s muxer fragments on the grid, one key frame each.
                let (gop, base_dur, jitter, gaps, start) = if aligned {
                    (per_fragment, 180_000 / per_fragment, Vec::new(), Vec::new(), start / 180_000 * 180_000)
                } else {
                    (gop, base_dur, jitter, gaps, start)
                };
                // Whole from the second fragment on (with B-frames, from the third: the
                // second settles the timeline on its key frame).
                let exact = aligned && 180_000 % per_fragment == 0;
                let reordered = video && ctos.iter().any(|c| *c != 0);
                let mut fast = grid(TimestampMode::Pipeline, 0);
                let mut slow = grid(TimestampMode::Pipeline, 0);
                slow.sample_by_sample = true;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let run = MuxerRun { video, gop, per_fragment, fragments, base_dur, jitter: &jitter, gaps: &gaps, start };
                // Aligned B-frames are regular: every key frame presented one frame late.
                let cto = |k: u32| match aligned && reordered {
                    true => ((k + 1) % 2) as i32 * base_dur as i32,
                    false => *ctos.get(k as usize % ctos.len().max(1)).unwrap_or(&0) * base_dur as i32,
                };
                for frag in run.fragments(cto) {
                    a.extend(fast.push(1, 90_000, video, frag.clone(), None));
                    b.extend(slow.push(1, 90_000, video, frag, None));
                }
                a.extend(fast.flush());
                b.extend(slow.flush());
                let a: Vec<_> = a.iter().map(summary).collect();
                let b: Vec<_> = b.iter().map(summary).collect();
                prop_assert_eq!(a, b);
                prop_assert_eq!(slow.shortcuts, 0);
                if exact && fragments >= 3 {
                    // The first fragment starts the grid; every later one is whole.
                    let expected = if reordered { fragments - 2 } else { fragments - 1 };
                    prop_assert!(fast.shortcuts >= expected, "{} of {}", fast.shortcuts, fragments);
                }
            }
        }
    }
}
