// SPDX-License-Identifier: MPL-2.0
//! From muxer bytes to CMAF tracks: the no-IO media path of CMAF ingest.
//!
//! The muxer's output (mp4mux, isofmp4mux, cmafmux, ismlmux, qtmux; one track or many, one
//! `traf` per `moof` or several) goes through the same splitter, moov parser, fragment reader
//! and fragment grid as the Smooth path, and comes out split per track (DASH-IF Live Media
//! Ingest, "General Protocol, Manifest and Track Format Requirements" 8, 9): for each track a
//! [`CmafHeader`], then its segments, each the fragment of one grid interval, as
//! [`CmafChunk`]s — one per segment, or, with `chunked`, one as soon as samples are final and
//! one more when the segment completes (for low-latency chunked transfer).
//!
//! Numbering: on the grid a segment's `mfhd` sequence_number is its fragment index plus one,
//! so that two encoders on the same grid, and an encoder restarted on it, number the same
//! segment alike, +1 per segment. A splice that starts a segment inside an interval (splice
//! mode "segment") makes two segments of one index: the later part and every segment after it
//! are numbered one higher, which keeps +1 but only agrees between encoders that saw the same
//! splices (DASH-IF "Requirements for Signaling and Conditioning Splice Points" asks for
//! conditioning without a new segment where encoders must stay in sync). Without the grid the
//! muxer's fragments are the segments, numbered from 1.
//!
//! The `prft` of each segment pairs its earliest presentation time with a wall-clock time,
//! which comes in: from the timeline itself when it is UTC (every encoder writes the same
//! bytes), or from the clock the driver last gave ([`CmafStream::set_wall_clock`]; encoders
//! then differ in those 8 bytes).
//!
//! The last segment of every track carries `lmsg`. When the stream ends right after a segment
//! that went out complete (the media ended on a boundary), that segment is given again with
//! `lmsg`, identical otherwise: a receiver keeps what it has and learns that nothing follows.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::cmaf::boxes::{BitRate, ProducerReferenceTime, ReferenceTimeKind, ntp_from_unix_ns};
use crate::cmaf::header::{CmafHeader, CmafTrackKind, TrackDescription};
use crate::cmaf::metadata::{MetadataTrack, TimedEvent};
use crate::cmaf::segment::{ChunkSpec, CmafChunk, write_chunk};
use crate::error::Result;
use crate::ingest_header::default_track_names;
use crate::ingest_stream::Notice;
use crate::movie::{MovieInfo, TrackInfo, TrackKind};
use crate::muxer_input::{self, MuxerInput, MuxerStream};
use crate::splitter::SplitterLimits;
use crate::timeline::{Grid, GridConfig, GridFragment, TimestampMode, ns_to_ticks};
use crate::track_fragment::TrackFragment;

/// Where a `prft`'s wall-clock time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceTimeSource {
    /// The timeline when it is UTC, else the driver's wall clock.
    Auto,
    /// The segment's own time on the timeline: in UTC mode its UTC instant (`prft` flags 24,
    /// a small constant offset from the real time depicted), identical in every encoder; in
    /// pipeline mode a consistent but arbitrary mapping (flags 8).
    Timeline,
    /// The clock the driver last gave when the segment's first bytes were written (flags 2,
    /// the `moof` finalised): what a latency measurement wants, different in every encoder.
    WallClock,
}

/// The timed metadata track, when ad signals are carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    /// Its name in the URL (`<name>.cmfm`).
    pub name: String,
    /// Its timescale; `None` takes the media track its segments follow.
    pub timescale: Option<u32>,
    pub description: TrackDescription,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig { name: String::from("scte35"), timescale: None, description: TrackDescription::default() }
    }
}

/// How the tracks are described and written.
#[derive(Debug, Clone)]
pub struct CmafStreamConfig {
    /// The fragment grid; a fragment duration of 0 keeps the muxer's fragments.
    pub grid: GridConfig,
    pub limits: SplitterLimits,
    /// Descriptions of video and audio tracks (bitrate, language, roles).
    pub video: TrackDescription,
    pub audio: TrackDescription,
    /// Give each segment in chunks as its samples become final, for chunked transfer.
    pub chunked: bool,
    pub reference_time: ReferenceTimeSource,
    pub metadata: Option<MetadataConfig>,
}

impl Default for CmafStreamConfig {
    fn default() -> Self {
        CmafStreamConfig {
            grid: GridConfig {
                mode: TimestampMode::Pipeline,
                fragment_duration_ns: 2_000_000_000,
                target_offset_ns: 0,
            },
            limits: SplitterLimits::default(),
            video: TrackDescription::default(),
            audio: TrackDescription::default(),
            chunked: false,
            reference_time: ReferenceTimeSource::Auto,
            metadata: None,
        }
    }
}

/// A track's name (`<name>.<extension>` in its URL) and its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackHeader {
    pub name: String,
    pub header: CmafHeader,
}

impl TrackHeader {
    pub fn track_id(&self) -> u32 {
        self.header.track_id
    }

    pub fn kind(&self) -> CmafTrackKind {
        self.header.kind
    }
}

/// Things worth telling the application that do not stop the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmafNotice {
    /// What the Smooth path would say too (ignored tracks, measured bitrates, gaps, ...).
    Stream(Notice),
    /// A `prft` wanted the wall clock before the driver gave one: the timeline's time was
    /// written instead (once per track).
    NoWallClock { track_id: u32 },
    /// The track's last segment had gone out before the end of the stream was known: it is
    /// given again with `lmsg`.
    LastSegmentRepeated { track_id: u32, sequence: u32 },
}

/// What the stream produces, in order. Each track's header comes before its first chunk.
#[derive(Debug, Clone)]
pub enum CmafOutput {
    Header(TrackHeader),
    Chunk(CmafChunk),
    Notice(CmafNotice),
}

/// A segment complete on the track's timeline.
#[derive(Debug)]
struct Completed {
    fragment: TrackFragment,
    /// Written presentation time of the first sample, and the duration.
    time: u64,
    duration: u64,
    /// The grid index, on the grid.
    index: Option<u64>,
    starts_without_sync: bool,
    starts_off_grid: bool,
}

impl From<GridFragment> for Completed {
    fn from(g: GridFragment) -> Self {
        Completed {
            fragment: g.fragment,
            time: g.time,
            duration: g.duration,
            index: Some(g.index),
            starts_without_sync: g.starts_without_sync,
            starts_off_grid: g.starts_off_grid,
        }
    }
}

/// The segment a track is giving in chunks.
#[derive(Debug)]
struct Open {
    time: u64,
    sequence: u32,
    /// Samples and bytes already given.
    samples: usize,
    bytes: u64,
    /// Decode time of the next chunk.
    next_decode: u64,
}

#[derive(Debug)]
struct TrackState {
    info: TrackInfo,
    name: String,
    header: Option<CmafHeader>,
    /// Complete segments waiting for the header (its bitrate is measured on the first).
    held: Vec<Completed>,
    open: Option<Open>,
    /// The chunks of the segment being given, then of the last complete one.
    current: Vec<CmafChunk>,
    last: Vec<CmafChunk>,
    /// Where the next segment should start.
    next_time: Option<u64>,
    /// The (index, time) numbered last and its number; parts of one index after the first.
    numbered: Option<(u64, u64, u32)>,
    extra: u64,
    /// Without the grid: the next number.
    counter: u32,
    warned_clock: bool,
}

/// The metadata track and the media track whose segments it follows.
#[derive(Debug)]
struct Metadata {
    name: String,
    track: MetadataTrack,
    parent: u32,
    parent_timescale: u32,
    header_sent: bool,
    last: Option<CmafChunk>,
}

/// The media path of CMAF ingest, all tracks of one muxer.
#[derive(Debug)]
pub struct CmafStream {
    config: CmafStreamConfig,
    input: MuxerInput,
    movie: Option<MovieInfo>,
    tracks: Vec<TrackState>,
    grid: Option<Grid>,
    metadata: Option<Metadata>,
    wall_clock: Option<u64>,
    out: VecDeque<CmafOutput>,
}

impl CmafStream {
    pub fn new(config: CmafStreamConfig) -> Self {
        let grid = (config.grid.fragment_duration_ns > 0).then(|| Grid::new(config.grid));
        CmafStream {
            input: MuxerInput::new(config.limits),
            config,
            movie: None,
            tracks: Vec::new(),
            grid,
            metadata: None,
            wall_clock: None,
            out: VecDeque::new(),
        }
    }

    /// Where running time 0 lies on the target timeline (ns): the UTC instant of running time
    /// 0 in UTC mode. Set before the first fragment.
    pub fn set_target_offset(&mut self, ns: i128) {
        self.config.grid.target_offset_ns = ns;
        if self.grid.is_some() {
            self.grid = Some(Grid::new(self.config.grid));
        }
    }

    /// The wall clock now, in nanoseconds since the Unix epoch: what the next segments'
    /// `prft` say when they take the wall clock. The core reads no clock; the driver gives it
    /// before it pushes media.
    pub fn set_wall_clock(&mut self, unix_ns: u64) {
        self.wall_clock = Some(unix_ns);
    }

    /// The headers of the tracks known so far.
    pub fn headers(&self) -> impl Iterator<Item = TrackHeader> + '_ {
        let media = self
            .tracks
            .iter()
            .filter_map(|t| t.header.as_ref().map(|h| TrackHeader { name: t.name.clone(), header: h.clone() }));
        let meta = self.metadata.iter().map(|m| TrackHeader { name: m.name.clone(), header: m.track.header().clone() });
        media.chain(meta)
    }

    /// Every track known so far, from the muxer's `moov` on (before its header is built):
    /// id, name and kind, the metadata track last. A driver can open the tracks' connections
    /// with these while the headers wait for their bitrates.
    pub fn tracks(&self) -> impl Iterator<Item = (u32, &str, CmafTrackKind)> + '_ {
        let media = self.tracks.iter().map(|t| (t.info.track_id, t.name.as_str(), CmafTrackKind::from(t.info.kind)));
        let meta = self.metadata.iter().map(|m| (m.track.header().track_id, m.name.as_str(), CmafTrackKind::Metadata));
        media.chain(meta)
    }

    /// Where running time `running_ns` lies on a track's timeline, in its ticks (the
    /// metadata track's included): the time ad signals are placed at. Only on the grid.
    pub fn track_time(&self, track_id: u32, running_ns: u64) -> Option<u64> {
        self.grid.as_ref()?;
        let timescale = match &self.metadata {
            Some(m) if m.track.header().track_id == track_id => m.track.timescale(),
            _ => self.movie.as_ref()?.track(track_id)?.timescale,
        };
        u64::try_from(ns_to_ticks(i128::from(running_ns) + self.config.grid.target_offset_ns, timescale)).ok()
    }

    /// The metadata track's id and timescale, once the media's tracks are known.
    pub fn metadata_track(&self) -> Option<(u32, u32)> {
        self.metadata.as_ref().map(|m| (m.track.header().track_id, m.track.timescale()))
    }

    /// An event for the metadata track (see [`TimedEvent::scte35`]). False without one.
    pub fn add_event(&mut self, event: TimedEvent) -> bool {
        match self.metadata.as_mut() {
            Some(m) => {
                m.track.add_event(event);
                true
            }
            None => false,
        }
    }

    /// Starts a segment of every track at running time `running_ns` (a splice point), besides
    /// the grid's boundaries. False without the grid or when the media is past that point.
    pub fn add_cut(&mut self, running_ns: u64) -> bool {
        let target = i128::from(running_ns) + self.config.grid.target_offset_ns;
        self.grid.as_mut().is_some_and(|g| g.add_cut(target))
    }

    /// Withdraws a cut no segment has used yet.
    pub fn remove_cut(&mut self, running_ns: u64) -> bool {
        let target = i128::from(running_ns) + self.config.grid.target_offset_ns;
        self.grid.as_mut().is_some_and(|g| g.remove_cut(target))
    }

    pub fn push(&mut self, chunk: Bytes) -> Result<()> {
        self.push_timed(chunk, None)
    }

    /// Feeds muxer bytes with the running time (ns) of the sample they start, when known.
    /// Outputs completed before an error stay available; after one the stream takes no more.
    pub fn push_timed(&mut self, chunk: Bytes, running_time: Option<u64>) -> Result<()> {
        muxer_input::push(self, chunk, running_time)
    }

    /// End of the muxer's output: the last segment of every track, with `lmsg`.
    pub fn finish(&mut self) -> Result<()> {
        let finished = muxer_input::finish(self);
        let flushed: Vec<GridFragment> = self.grid.as_mut().map(Grid::flush).unwrap_or_default();
        let mut ended = Vec::new();
        for g in flushed {
            if let Some(ti) = self.track_index(g.fragment.track_id) {
                ended.push(ti);
                self.on_completed(ti, g.into(), true)?;
            }
        }
        for ti in 0..self.tracks.len() {
            if ended.contains(&ti) {
                continue;
            }
            if self.tracks[ti].header.is_some() {
                self.repeat_last_with_lmsg(ti)?;
            } else if !self.tracks[ti].held.is_empty() {
                self.emit_header(ti, true)?;
            }
        }
        finished
    }

    pub fn next_output(&mut self) -> Option<CmafOutput> {
        self.out.pop_front()
    }

    fn track_index(&self, track_id: u32) -> Option<usize> {
        self.tracks.iter().position(|t| t.info.track_id == track_id)
    }

    fn description(&self, ti: usize) -> &TrackDescription {
        match self.tracks[ti].info.kind {
            TrackKind::Video => &self.config.video,
            TrackKind::Audio => &self.config.audio,
        }
    }

    fn declared_bitrate(&self, ti: usize) -> Option<u32> {
        self.description(ti).bitrate.or(self.tracks[ti].info.bitrate).filter(|b| *b > 0)
    }

    /// Sends the track's header (its bitrate declared, else measured on what is held), then
    /// the segments held for it; `last_held_is_last` marks the last of them `lmsg`.
    fn emit_header(&mut self, ti: usize, last_held_is_last: bool) -> Result<()> {
        let avg = match self.declared_bitrate(ti) {
            Some(b) => b,
            None => {
                let t = &self.tracks[ti];
                let (bytes, ticks) =
                    t.held.iter().fold((0u64, 0u64), |(b, d), c| (b + c.fragment.data.len(), d + c.duration));
                let bps = match ticks {
                    0 => 0,
                    _ => u128::from(bytes) * 8 * u128::from(t.info.timescale) / u128::from(ticks),
                };
                let measured = u32::try_from(bps).unwrap_or(u32::MAX);
                let notice = Notice::MeasuredBitrate { track_id: t.info.track_id, bitrate: measured };
                self.out.push_back(CmafOutput::Notice(CmafNotice::Stream(notice)));
                measured
            }
        };
        let desc = self.description(ti);
        let rate =
            BitRate { buffer_size_db: 0, max_bitrate: desc.max_bitrate.unwrap_or(avg).max(avg), avg_bitrate: avg };
        let header = CmafHeader::for_track(&self.tracks[ti].info, rate, desc)?;
        let t = &mut self.tracks[ti];
        t.header = Some(header.clone());
        self.out.push_back(CmafOutput::Header(TrackHeader { name: t.name.clone(), header }));
        let held = core::mem::take(&mut self.tracks[ti].held);
        let n = held.len();
        for (i, c) in held.into_iter().enumerate() {
            self.emit_segment(ti, c, last_held_is_last && i + 1 == n);
        }
        Ok(())
    }

    /// A complete segment: held until the track's header is out, else given.
    fn on_completed(&mut self, ti: usize, c: Completed, lmsg: bool) -> Result<()> {
        if self.tracks[ti].header.is_some() {
            self.emit_segment(ti, c, lmsg);
            return Ok(());
        }
        self.tracks[ti].held.push(c);
        if lmsg {
            return self.emit_header(ti, true);
        }
        if self.tracks[ti].held.iter().any(|c| c.duration > 0) {
            self.emit_header(ti, false)?;
        }
        Ok(())
    }

    /// The sequence_number of the segment at grid `index` starting at `time`.
    fn sequence(&mut self, ti: usize, index: Option<u64>, time: u64) -> u32 {
        let t = &mut self.tracks[ti];
        let Some(index) = index else {
            let n = t.counter;
            t.counter = t.counter.wrapping_add(1);
            return n;
        };
        match t.numbered {
            Some((i, tm, n)) if i == index && tm == time => return n,
            Some((i, _, _)) if i == index => t.extra += 1,
            _ => {}
        }
        let n = index.wrapping_add(1).wrapping_add(t.extra) as u32;
        t.numbered = Some((index, time, n));
        n
    }

    /// The `prft` of a segment of track `ti` starting at `time`.
    fn reference(&mut self, ti: usize, time: u64) -> ProducerReferenceTime {
        let utc = self.config.grid.mode == TimestampMode::Utc && self.grid.is_some();
        let wall = match self.config.reference_time {
            ReferenceTimeSource::Auto => !utc,
            ReferenceTimeSource::Timeline => false,
            ReferenceTimeSource::WallClock => true,
        };
        let t = &mut self.tracks[ti];
        let track_id = t.info.track_id;
        if wall {
            if let Some(now) = self.wall_clock {
                return ProducerReferenceTime {
                    reference_track_id: track_id,
                    ntp_timestamp: ntp_from_unix_ns(now),
                    media_time: time,
                    kind: ReferenceTimeKind::MoofFinalized,
                };
            }
            if !t.warned_clock {
                t.warned_clock = true;
                self.out.push_back(CmafOutput::Notice(CmafNotice::NoWallClock { track_id }));
            }
        }
        let ns = u128::from(time) * 1_000_000_000 / u128::from(t.info.timescale.max(1));
        ProducerReferenceTime {
            reference_track_id: track_id,
            ntp_timestamp: ntp_from_unix_ns(u64::try_from(ns).unwrap_or(u64::MAX)),
            media_time: time,
            kind: if utc { ReferenceTimeKind::Captured } else { ReferenceTimeKind::Consistent },
        }
    }

    /// Gives what is final of the segment track `track_id` is building, in chunked mode.
    fn give_open_chunks(&mut self, track_id: u32) {
        let Some(ti) = self.track_index(track_id) else { return };
        if !self.config.chunked || self.tracks[ti].header.is_none() {
            return;
        }
        let Some(open) = self.grid.as_ref().and_then(|g| g.open_fragment(track_id)) else { return };
        let (already, bytes, next_decode) = match &self.tracks[ti].open {
            Some(o) if o.time == open.time => (o.samples, o.bytes, o.next_decode),
            _ => (0, 0, open.decode_time),
        };
        if open.samples.len() <= already {
            return;
        }
        let sequence = self.sequence(ti, Some(open.index), open.time);
        let reference = (already == 0).then(|| self.reference(ti, open.time));
        let samples = &open.samples[already..];
        let size: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
        let Some(data) = open.data.slice(bytes, size) else { return };
        let t = &mut self.tracks[ti];
        let chunk = write_chunk(&ChunkSpec {
            track_id,
            timescale: t.info.timescale,
            sequence,
            decode_time: next_decode,
            samples,
            data: &data,
            first: already == 0,
            last: false,
            lmsg: false,
            reference,
        });
        if already == 0 {
            t.current.clear();
        }
        t.open = Some(Open {
            time: open.time,
            sequence,
            samples: open.samples.len(),
            bytes: bytes + size,
            next_decode: next_decode + chunk.duration,
        });
        t.current.push(chunk.clone());
        self.out.push_back(CmafOutput::Chunk(chunk));
    }

    fn emit_segment(&mut self, ti: usize, c: Completed, lmsg: bool) {
        let track_id = c.fragment.track_id;
        if c.starts_without_sync {
            let notice = Notice::NoSyncSampleAtStart { track_id, time: c.time };
            self.out.push_back(CmafOutput::Notice(CmafNotice::Stream(notice)));
        }
        if c.starts_off_grid {
            let notice = Notice::KeyFramesOffGrid { track_id, time: c.time };
            self.out.push_back(CmafOutput::Notice(CmafNotice::Stream(notice)));
        }
        if let Some(expected) = self.tracks[ti].next_time.filter(|e| *e != c.time) {
            let notice = Notice::Discontinuity { track_id, expected, actual: c.time };
            self.out.push_back(CmafOutput::Notice(CmafNotice::Stream(notice)));
        }
        self.tracks[ti].next_time = Some(c.time.saturating_add(c.duration));
        let open = self.tracks[ti].open.take().filter(|o| o.time == c.time);
        let (sequence, already, bytes, decode_time) = match &open {
            Some(o) => (o.sequence, o.samples, o.bytes, o.next_decode),
            None => (self.sequence(ti, c.index, c.time), 0, 0, c.fragment.decode_time),
        };
        let reference = (already == 0).then(|| self.reference(ti, c.time));
        let samples = &c.fragment.samples[already.min(c.fragment.samples.len())..];
        let data = c.fragment.data.slice(bytes, c.fragment.data.len().saturating_sub(bytes)).unwrap_or_default();
        let t = &mut self.tracks[ti];
        let chunk = write_chunk(&ChunkSpec {
            track_id,
            timescale: t.info.timescale,
            sequence,
            decode_time,
            samples,
            data: &data,
            first: already == 0,
            last: true,
            lmsg,
            reference,
        });
        if already == 0 {
            t.current.clear();
        }
        t.current.push(chunk.clone());
        t.last = core::mem::take(&mut t.current);
        self.out.push_back(CmafOutput::Chunk(chunk));
        self.emit_metadata_segment(track_id, c.time, c.duration, sequence, lmsg);
    }

    /// The metadata track's segment for the parent's segment `[time, time + duration)`.
    fn emit_metadata_segment(&mut self, track_id: u32, time: u64, duration: u64, sequence: u32, lmsg: bool) {
        let Some(m) = self.metadata.as_mut().filter(|m| m.parent == track_id) else { return };
        if !m.header_sent {
            m.header_sent = true;
            let h = TrackHeader { name: m.name.clone(), header: m.track.header().clone() };
            self.out.push_back(CmafOutput::Header(h));
        }
        let (from, to) = (m.parent_timescale, m.track.timescale());
        let convert =
            |t: u64| u64::try_from(u128::from(t) * u128::from(to) / u128::from(from.max(1))).unwrap_or(u64::MAX);
        let start = convert(time);
        let end = convert(time.saturating_add(duration));
        let chunk = m.track.segment(start, end - start, sequence, lmsg);
        m.last = Some(chunk.clone());
        self.out.push_back(CmafOutput::Chunk(chunk));
    }

    /// At the end: a track whose last segment went out without `lmsg` gives it again with it.
    fn repeat_last_with_lmsg(&mut self, ti: usize) -> Result<()> {
        let t = &mut self.tracks[ti];
        if t.last.is_empty() || t.last.iter().any(|c| c.lmsg) {
            return Ok(());
        }
        let mut again = Vec::with_capacity(t.last.len());
        for (i, c) in t.last.iter().enumerate() {
            again.push(if i == 0 { c.with_lmsg()? } else { c.clone() });
        }
        let (track_id, sequence) = (t.info.track_id, again[0].sequence);
        t.last = again.clone();
        self.out.push_back(CmafOutput::Notice(CmafNotice::LastSegmentRepeated { track_id, sequence }));
        self.out.extend(again.into_iter().map(CmafOutput::Chunk));
        let meta = self.metadata.as_mut().filter(|m| m.parent == track_id);
        if let Some(m) = meta.filter(|m| m.last.as_ref().is_some_and(|c| !c.lmsg)) {
            let marked = m.last.as_ref().map(CmafChunk::with_lmsg).transpose()?;
            m.last = marked.clone();
            self.out.extend(marked.map(CmafOutput::Chunk));
        }
        Ok(())
    }
}

impl MuxerStream for CmafStream {
    fn input(&mut self) -> &mut MuxerInput {
        &mut self.input
    }

    fn movie(&self) -> Option<&MovieInfo> {
        self.movie.as_ref()
    }

    /// A track state per track, the metadata track after them, and the header of every track
    /// whose bitrate is known goes out at once.
    fn on_movie(&mut self, movie: MovieInfo) -> Result<()> {
        let names = default_track_names(&movie.tracks);
        self.tracks = movie
            .tracks
            .iter()
            .zip(names)
            .map(|(info, name)| TrackState {
                info: info.clone(),
                name,
                header: None,
                held: Vec::new(),
                open: None,
                current: Vec::new(),
                last: Vec::new(),
                next_time: None,
                numbered: None,
                extra: 0,
                counter: 1,
                warned_clock: false,
            })
            .collect();
        if let Some(mc) = &self.config.metadata {
            let parent = movie.tracks.iter().find(|t| t.kind == TrackKind::Video).unwrap_or(&movie.tracks[0]);
            let id = movie.tracks.iter().map(|t| t.track_id).max().unwrap_or(0).saturating_add(1);
            let timescale = mc.timescale.filter(|t| *t > 0).unwrap_or(parent.timescale);
            self.metadata = Some(Metadata {
                name: mc.name.clone(),
                track: MetadataTrack::new(id, timescale, &mc.description),
                parent: parent.track_id,
                parent_timescale: parent.timescale,
                header_sent: false,
                last: None,
            });
        }
        self.movie = Some(movie);
        for ti in 0..self.tracks.len() {
            if self.declared_bitrate(ti).is_some() {
                self.emit_header(ti, false)?;
            }
        }
        Ok(())
    }

    fn on_notice(&mut self, notice: Notice) {
        self.out.push_back(CmafOutput::Notice(CmafNotice::Stream(notice)));
    }

    fn on_track_fragment(&mut self, tf: TrackFragment) -> Result<()> {
        let Some(ti) = self.track_index(tf.track_id) else { return Ok(()) };
        let Some(grid) = self.grid.as_mut() else {
            // The muxer's fragment is the segment.
            let c = Completed {
                time: tf.presentation_time()?,
                duration: tf.duration(),
                index: None,
                starts_without_sync: self.tracks[ti].info.kind == TrackKind::Video && !tf.starts_with_sync(),
                starts_off_grid: false,
                fragment: tf,
            };
            return self.on_completed(ti, c, false);
        };
        let info = &self.tracks[ti].info;
        let anchor = tf.anchor;
        for g in grid.push(tf.track_id, info.timescale, info.kind == TrackKind::Video, tf, anchor) {
            if let Some(ti) = self.track_index(g.fragment.track_id) {
                self.on_completed(ti, g.into(), false)?;
            }
        }
        Ok(())
    }

    /// Chunks of the segments being built go out as soon as a muxer fragment added to them.
    fn after_fragment(&mut self, track_ids: &[u32]) {
        for id in track_ids {
            self.give_open_chunks(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::Boxes;
    use crate::bmff::fourcc::codes;
    use crate::cmaf::boxes::SegmentType;
    use crate::movie::parse_moov;
    use crate::splitter::Unit;
    use crate::test_support::{RunSpec, muxer_fragment, muxer_stream};
    use crate::track_fragment::{FragmentReader, SAMPLE_FLAGS_NON_SYNC, SAMPLE_FLAGS_SYNC, Sample};
    use alloc::vec;

    const SEC: u64 = 1_000_000_000;
    /// The spec tracks' timescale (video and audio alike in the fixtures).
    const TS: u64 = 10_000_000;

    fn outputs(s: &mut CmafStream) -> Vec<CmafOutput> {
        core::iter::from_fn(|| s.next_output()).collect()
    }

    fn chunks(out: &[CmafOutput], track_id: u32) -> Vec<&CmafChunk> {
        out.iter()
            .filter_map(|o| match o {
                CmafOutput::Chunk(c) if c.track_id == track_id => Some(c),
                _ => None,
            })
            .collect()
    }

    fn header(out: &[CmafOutput], track_id: u32) -> &TrackHeader {
        out.iter()
            .find_map(|o| match o {
                CmafOutput::Header(h) if h.track_id() == track_id => Some(h),
                _ => None,
            })
            .unwrap()
    }

    fn styp(c: &CmafChunk) -> SegmentType {
        SegmentType::parse(Boxes::new(&c.head).next().unwrap().unwrap()).unwrap()
    }

    /// `n` samples of `duration` ticks, 10 bytes each, a key frame first (video) or all sync.
    fn run(n: u32, duration: u32, start: usize, video: bool) -> RunSpec {
        let samples = (0..n)
            .map(|i| Sample {
                duration,
                size: 10,
                flags: if i == 0 || !video { SAMPLE_FLAGS_SYNC } else { SAMPLE_FLAGS_NON_SYNC },
                cto: 0,
            })
            .collect();
        RunSpec { samples, payload_start: start }
    }

    /// Video (track 1) in 2 s GOPs of 50 frames and audio (track 2) in 2 s of 100 frames, one
    /// muxer fragment per 2 s holding both, from `first` on.
    fn av_stream(first: u64, count: u64, origin: u64) -> Vec<u8> {
        let payload: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let frags: Vec<Vec<u8>> = (first..first + count)
            .map(|k| {
                let t = origin + k * 2 * TS;
                muxer_fragment(
                    &[(1, t, vec![run(50, 400_000, 0, true)]), (2, t, vec![run(100, 200_000, 500, false)])],
                    &payload,
                )
            })
            .collect();
        muxer_stream(&frags)
    }

    fn config() -> CmafStreamConfig {
        CmafStreamConfig {
            video: TrackDescription { bitrate: Some(2_000_000), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn each_track_gets_its_header_then_one_segment_per_grid_interval() {
        let mut s = CmafStream::new(config());
        assert_eq!(s.tracks().count(), 0);
        s.push(Bytes::from(av_stream(0, 3, 0))).unwrap();
        let names: Vec<_> = s.tracks().map(|(id, n, k)| (id, String::from(n), k)).collect();
        assert_eq!(
            names,
            [(1, String::from("video"), CmafTrackKind::Video), (2, String::from("audio"), CmafTrackKind::Audio)]
        );
        // And one more second: the last segment is cut short by the end of the stream.
        let payload = [1u8; 750];
        let tail = muxer_fragment(
            &[(1, 6 * TS, vec![run(25, 400_000, 0, true)]), (2, 6 * TS, vec![run(50, 200_000, 250, false)])],
            &payload,
        );
        s.push(Bytes::from(tail)).unwrap();
        s.finish().unwrap();
        let out = outputs(&mut s);
        for (id, name, ext) in [(1, "video", "cmfv"), (2, "audio", "cmfa")] {
            let h = header(&out, id);
            assert_eq!((h.name.as_str(), h.kind().extension()), (name, ext));
            let at = out.iter().position(|o| matches!(o, CmafOutput::Header(h) if h.track_id() == id)).unwrap();
            let first = out.iter().position(|o| matches!(o, CmafOutput::Chunk(c) if c.track_id == id)).unwrap();
            assert!(at < first, "the header comes first");
            let segs = chunks(&out, id);
            assert_eq!(segs.len(), 4);
            // Index k + 1, +1 each; tfdt continuous; whole segments; lmsg on the last only.
            let seqs: Vec<_> = segs.iter().map(|c| (c.sequence, c.decode_time, c.duration)).collect();
            assert_eq!(seqs, [(1, 0, 2 * TS), (2, 2 * TS, 2 * TS), (3, 4 * TS, 2 * TS), (4, 6 * TS, TS)]);
            assert!(segs.iter().all(|c| c.first && c.last));
            assert_eq!(segs.iter().map(|c| c.lmsg).collect::<Vec<_>>(), [false, false, false, true]);
            assert!(styp(segs[3]).has(codes::LMSG) && !styp(segs[2]).has(codes::LMSG));
            // styp, prft (for this track, at its media time), moof.
            for c in &segs {
                let boxes: Vec<_> = Boxes::new(&c.head).take(3).map(|b| b.unwrap()).collect();
                assert_eq!(
                    boxes.iter().map(|b| b.box_type()).collect::<Vec<_>>(),
                    [codes::STYP, codes::PRFT, codes::MOOF]
                );
                let p = ProducerReferenceTime::parse(boxes[1]).unwrap();
                assert_eq!((p.reference_track_id, p.media_time), (id, c.decode_time));
            }
        }
        // The video bitrate was declared; audio's comes from its esds.
        assert_eq!(header(&out, 1).header.bitrate.unwrap().avg_bitrate, 2_000_000);
        assert_eq!(header(&out, 2).header.bitrate.unwrap().avg_bitrate, 128_000);
        // Pipeline timeline, no wall clock given: the timeline's time, and a notice per track.
        let no_clock = out.iter().filter(|o| matches!(o, CmafOutput::Notice(CmafNotice::NoWallClock { .. }))).count();
        assert_eq!(no_clock, 2);
    }

    #[test]
    fn an_undeclared_bitrate_is_measured_on_the_first_segment() {
        let mut s = CmafStream::new(CmafStreamConfig::default());
        s.push(Bytes::from(av_stream(0, 2, 0))).unwrap();
        let out = outputs(&mut s);
        // 50 frames of 10 bytes in 2 s: 2000 b/s.
        assert_eq!(header(&out, 1).header.bitrate.unwrap().avg_bitrate, 2000);
        assert!(out.iter().any(|o| matches!(
            o,
            CmafOutput::Notice(CmafNotice::Stream(Notice::MeasuredBitrate { track_id: 1, bitrate: 2000 }))
        )));
    }

    #[test]
    fn the_wall_clock_given_goes_into_prft() {
        let mut s = CmafStream::new(CmafStreamConfig { reference_time: ReferenceTimeSource::WallClock, ..config() });
        s.set_wall_clock(1_700_000_000 * SEC + 250_000_000);
        s.push(Bytes::from(av_stream(0, 2, 0))).unwrap();
        let out = outputs(&mut s);
        let c = chunks(&out, 2)[0];
        let p = ProducerReferenceTime::parse(Boxes::new(&c.head).nth(1).unwrap().unwrap()).unwrap();
        assert_eq!(p.ntp_timestamp, ntp_from_unix_ns(1_700_000_000 * SEC + 250_000_000));
        assert_eq!(p.kind, ReferenceTimeKind::MoofFinalized);
        assert!(!out.iter().any(|o| matches!(o, CmafOutput::Notice(CmafNotice::NoWallClock { .. }))));
    }

    #[test]
    fn redundant_encoders_on_a_utc_grid_write_identical_bytes() {
        // Encoder A from the first fragment, B joining two fragments later, on the same clock.
        let utc = 1_700_000_000u64;
        let mut config = config();
        config.grid.mode = TimestampMode::Utc;
        let run = |first: u64| {
            let mut s = CmafStream::new(config.clone());
            s.set_target_offset(0);
            s.push(Bytes::from(av_stream(first, 5 - first, utc * TS))).unwrap();
            s.finish().unwrap();
            outputs(&mut s)
        };
        let (a, b) = (run(0), run(2));
        for id in [1, 2] {
            assert_eq!(header(&a, id), header(&b, id), "the same header");
            let (ca, cb) = (chunks(&a, id), chunks(&b, id));
            // Three segments and the last again with lmsg (the media ends on a boundary).
            assert_eq!(cb.len(), 4);
            assert_eq!(cb[0].sequence, (utc / 2 + 2 + 1) as u32);
            // Every segment both sent matches byte for byte, prft included.
            assert_eq!(ca.len() - 2, cb.len());
            for (x, y) in ca[2..].iter().zip(&cb) {
                assert_eq!(x.head, y.head);
                assert_eq!(x.payload.to_vec(), y.payload.to_vec());
            }
        }
    }

    #[test]
    fn in_utc_video_with_key_frames_between_the_boundaries_goes_off_the_grid_and_says_so() {
        // Every GOP starts 0.9 s after a boundary: no video segment can start on the grid.
        let mut config = config();
        config.grid.mode = TimestampMode::Utc;
        let mut s = CmafStream::new(config);
        s.set_target_offset(0);
        let origin = 1_700_000_000 * TS + 9 * TS / 10;
        s.push(Bytes::from(av_stream(0, 6, origin))).unwrap();
        s.finish().unwrap();
        let out = outputs(&mut s);
        let off_grid: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                CmafOutput::Notice(CmafNotice::Stream(Notice::KeyFramesOffGrid { track_id, time })) => {
                    Some((*track_id, *time))
                }
                _ => None,
            })
            .collect();
        // Two fragment durations after its first sample, video starts at its next key frame.
        let start = origin + 4 * TS;
        assert_eq!(off_grid, [(1, start)]);
        let video: Vec<u64> = chunks(&out, 1).iter().filter(|c| c.first).map(|c| c.decode_time).collect();
        assert_eq!(video[..2], [start, start + 2 * TS]);
        // Audio stays on the grid.
        assert!(chunks(&out, 2).iter().filter(|c| c.first).all(|c| c.decode_time % (2 * TS) == 0));
    }

    #[test]
    fn chunked_segments_give_the_same_samples_in_pieces() {
        // 2 s video GOPs delivered by the muxer in 0.4 s chunks (10 frames each).
        let payload = [7u8; 100];
        let mut frags = Vec::new();
        for k in 0..9u64 {
            let mut r = run(10, 400_000, 0, true);
            if k % 5 != 0 {
                r.samples[0].flags = SAMPLE_FLAGS_NON_SYNC;
            }
            frags.push(muxer_fragment(&[(1, k * 4 * TS / 10, vec![r])], &payload));
        }
        let stream = muxer_stream(&frags);
        let feed = |chunked: bool| {
            let mut s = CmafStream::new(CmafStreamConfig { chunked, ..config() });
            let mut out = Vec::new();
            let first = stream.windows(4).position(|w| w == b"moof").unwrap() - 4;
            s.push(Bytes::copy_from_slice(&stream[..first])).unwrap();
            for f in &frags {
                s.push(Bytes::copy_from_slice(f)).unwrap();
                out.extend(outputs(&mut s));
            }
            s.finish().unwrap();
            out.extend(outputs(&mut s));
            out
        };
        let (whole, chunked) = (feed(false), feed(true));
        let (w, c) = (chunks(&whole, 1), chunks(&chunked, 1));
        assert_eq!(w.len(), 2);
        // Each segment in five pieces: 9, 10, 10, 10 frames as they become final (the newest
        // waits for its successor), then the rest when the segment completes: 11 frames at the
        // boundary, 1 at the end of the stream (3.6 s).
        assert_eq!(c.iter().map(|c| c.sample_count).collect::<Vec<_>>(), [9, 10, 10, 10, 11, 9, 10, 10, 10, 1]);
        for (seg, pieces) in w.iter().zip(c.chunks(5)) {
            assert!(pieces[0].first && !pieces[0].last && pieces[4].last);
            assert!(pieces[..4].iter().all(|p| !p.last));
            assert!(pieces.iter().all(|p| p.sequence == seg.sequence), "one number per segment");
            assert_eq!(styp(pieces[0]).major_brand, codes::CMFS);
            assert!(pieces[1..].iter().all(|p| styp(p).major_brand == codes::CMFL));
            // Contiguous decode times, the same samples and bytes as the whole segment.
            assert_eq!(pieces[0].decode_time, seg.decode_time);
            for p in pieces.windows(2) {
                assert_eq!(p[0].decode_time + p[0].duration, p[1].decode_time);
            }
            assert_eq!(pieces.iter().map(|p| p.duration).sum::<u64>(), seg.duration);
            let bytes: Vec<u8> = pieces.iter().flat_map(|p| p.payload.to_vec()).collect();
            assert_eq!(bytes, seg.payload.to_vec());
        }
        // The last segment's last chunk says lmsg.
        assert!(c[9].lmsg && styp(c[9]).has(codes::LMSG) && styp(c[9]).has(codes::CMFL));
    }

    #[test]
    fn a_stream_ending_on_a_boundary_gives_its_last_segment_again_with_lmsg() {
        // Without the grid the muxer's fragments are the segments: the end is only known after.
        let mut s = CmafStream::new(CmafStreamConfig {
            grid: GridConfig { fragment_duration_ns: 0, ..config().grid },
            ..config()
        });
        s.push(Bytes::from(av_stream(0, 2, 0))).unwrap();
        s.finish().unwrap();
        let out = outputs(&mut s);
        let v = chunks(&out, 1);
        assert_eq!(v.iter().map(|c| (c.sequence, c.lmsg)).collect::<Vec<_>>(), [(1, false), (2, false), (2, true)]);
        assert_eq!(v[2].payload.to_vec(), v[1].payload.to_vec());
        assert_eq!(&v[2].head[28..], &v[1].head[24..], "the same but for the brand");
        assert!(
            out.iter()
                .any(|o| matches!(o, CmafOutput::Notice(CmafNotice::LastSegmentRepeated { track_id: 1, sequence: 2 })))
        );
    }

    #[test]
    fn the_metadata_track_follows_the_video_segments() {
        let mut config = config();
        config.metadata = Some(MetadataConfig::default());
        let mut s = CmafStream::new(config);
        s.push(Bytes::from(av_stream(0, 1, 0))).unwrap();
        let (id, ts) = s.metadata_track().unwrap();
        assert_eq!((id, ts), (3, TS as u32));
        let at = s.track_time(id, 3 * SEC).unwrap();
        assert!(s.add_event(TimedEvent {
            id: 9,
            announce: at,
            presentation_time: at + 10 * TS,
            duration: None,
            scheme_id_uri: crate::cmaf::boxes::SCTE35_BIN_SCHEME.into(),
            value: String::new(),
            message: Bytes::from_static(b"x"),
        }));
        s.push(Bytes::from(av_stream(0, 3, 0)[av_stream(0, 1, 0).len()..].to_vec())).unwrap();
        s.finish().unwrap();
        let mut out = outputs(&mut s);
        let m: Vec<CmafChunk> = chunks(&out, 3).into_iter().cloned().collect();
        let v: Vec<CmafChunk> = chunks(&out, 1).into_iter().cloned().collect();
        assert_eq!(header(&out, 3).name, "scte35");
        assert_eq!(header(&out, 3).kind(), CmafTrackKind::Metadata);
        assert_eq!(
            m.iter().map(|c| (c.sequence, c.decode_time, c.duration, c.lmsg)).collect::<Vec<_>>(),
            v.iter().map(|c| (c.sequence, c.decode_time, c.duration, c.lmsg)).collect::<Vec<_>>()
        );
        // Empty until 3 s, then the event: two samples in the second segment.
        assert_eq!((m[0].sample_count, m[1].sample_count, m[2].sample_count), (1, 2, 1));
        assert!(m[0].payload.is_empty() && !m[1].payload.is_empty());
        out.clear();
    }

    mod split_and_join {
        use super::*;
        use crate::splitter::BoxSplitter;
        use proptest::prelude::*;

        /// Per track: every sample's bytes in order and the sample count, read back from the
        /// track's header and chunks by the core's own reader, each segment once (a repeat
        /// with lmsg dropped), checking that the decode times run on without a gap.
        fn join(out: &[CmafOutput], track_id: u32) -> (Vec<u8>, usize) {
            let mut split = BoxSplitter::default();
            split.push(header(out, track_id).header.bytes.clone()).unwrap();
            let mut seen = Vec::new();
            let mut next_decode = None;
            let mut repeat = false;
            for c in chunks(out, track_id) {
                // A segment given again (with lmsg) is skipped whole, as a receiver would.
                if c.first {
                    repeat = seen.contains(&(c.sequence, c.decode_time));
                }
                if repeat {
                    continue;
                }
                seen.push((c.sequence, c.decode_time));
                if let Some(n) = next_decode {
                    assert_eq!(c.decode_time, n, "contiguous");
                }
                next_decode = Some(c.decode_time + c.duration);
                for b in c.wire_chunks() {
                    split.push(b.clone()).unwrap();
                }
            }
            let mut reader = None;
            let (mut bytes, mut count) = (Vec::new(), 0);
            while let Some(u) = split.next_unit() {
                match u {
                    Unit::Init(i) => reader = Some(FragmentReader::new(&parse_moov(&i.moov).unwrap())),
                    Unit::Fragment(f) => {
                        for tf in reader.as_mut().unwrap().read(&f).unwrap() {
                            assert_eq!(tf.track_id, track_id);
                            count += tf.samples.len();
                            bytes.extend(tf.data.to_vec());
                        }
                    }
                    Unit::Skipped { box_type, .. } => assert!([codes::STYP, codes::PRFT].contains(&box_type)),
                }
            }
            (bytes, count)
        }

        /// A real isofmp4mux recording (H.264 and AAC in one moof per fragment), whole and in
        /// chunks: each track comes out with every sample the file holds for it.
        #[test]
        fn a_real_isofmp4mux_recording_splits_into_two_whole_tracks() {
            const STREAM: &[u8] = include_bytes!("../../tests/data/isofmp4mux-av.mp4");
            let mut split = BoxSplitter::default();
            split.push(Bytes::from_static(STREAM)).unwrap();
            let mut reader = None;
            let mut expected: Vec<(u32, Vec<u8>, usize)> = Vec::new();
            while let Some(u) = split.next_unit() {
                match u {
                    Unit::Init(i) => reader = Some(FragmentReader::new(&parse_moov(&i.moov).unwrap())),
                    Unit::Fragment(f) => {
                        for tf in reader.as_mut().unwrap().read(&f).unwrap() {
                            match expected.iter_mut().find(|e| e.0 == tf.track_id) {
                                Some(e) => {
                                    e.1.extend(tf.data.to_vec());
                                    e.2 += tf.samples.len();
                                }
                                None => expected.push((tf.track_id, tf.data.to_vec(), tf.samples.len())),
                            }
                        }
                    }
                    Unit::Skipped { .. } => {}
                }
            }
            assert_eq!(expected.len(), 2);
            for chunked in [false, true] {
                let mut s = CmafStream::new(CmafStreamConfig { chunked, ..CmafStreamConfig::default() });
                let mut out = Vec::new();
                for piece in STREAM.chunks(4096) {
                    s.push(Bytes::copy_from_slice(piece)).unwrap();
                    out.extend(outputs(&mut s));
                }
                s.finish().unwrap();
                out.extend(outputs(&mut s));
                for (id, bytes, count) in &expected {
                    let (got, n) = join(&out, *id);
                    assert_eq!((n, got.len()), (*count, bytes.len()), "track {id}, chunked {chunked}");
                    assert!(&got == bytes);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
            /// Whatever the muxer's layout (both tracks in one moof or a moof each), the
            /// chunking of its bytes, and the mode (muxer fragments kept, re-cut on the grid,
            /// given in chunks), splitting per track and joining again gives every sample of
            /// every track, in order, byte for byte.
            #[test]
            fn splitting_per_track_and_joining_again_loses_no_sample(
                fragments in 1usize..7,
                video_per in 1u32..40,
                audio_per in 1u32..80,
                sizes in proptest::collection::vec(1u32..40, 1..32),
                gop in 1u32..60,
                mode in 0u8..3,
                together in any::<bool>(),
                push_size in 1usize..700,
            ) {
                let (mut k, mut decode) = (0u32, [0u64; 2]);
                let mut expected: [(Vec<u8>, usize); 2] = Default::default();
                let mut stream_frags = Vec::new();
                for _ in 0..fragments {
                    let mut trafs = Vec::new();
                    let mut payload = Vec::new();
                    for (t, (per, duration)) in [(video_per, 400_000u32), (audio_per, 213_333)].into_iter().enumerate() {
                        let start = payload.len();
                        let samples: Vec<Sample> = (0..per)
                            .map(|i| {
                                let size = sizes[(k + i) as usize % sizes.len()];
                                let sync = t == 1 || (k + i).is_multiple_of(gop);
                                Sample { duration, size, flags: if sync { SAMPLE_FLAGS_SYNC } else { SAMPLE_FLAGS_NON_SYNC }, cto: 0 }
                            })
                            .collect();
                        for (i, smp) in samples.iter().enumerate() {
                            let tag = (k + i as u32).to_be_bytes();
                            let bytes: Vec<u8> = (0..smp.size).map(|j| tag[j as usize % 4] ^ (t as u8 * 0x80)).collect();
                            expected[t].0.extend_from_slice(&bytes);
                            payload.extend_from_slice(&bytes);
                        }
                        expected[t].1 += samples.len();
                        trafs.push((t as u32 + 1, decode[t], vec![RunSpec { samples, payload_start: start - if together { 0 } else { start } }], start));
                        decode[t] += u64::from(per) * u64::from(duration);
                    }
                    k += video_per.max(audio_per);
                    if together {
                        let t: Vec<_> = trafs.into_iter().map(|(id, d, r, _)| (id, d, r)).collect();
                        stream_frags.push(muxer_fragment(&t, &payload));
                    } else {
                        let split_at = trafs[1].3;
                        let mut it = trafs.into_iter();
                        let (v, a) = (it.next().unwrap(), it.next().unwrap());
                        stream_frags.push(muxer_fragment(&[(v.0, v.1, v.2)], &payload[..split_at]));
                        stream_frags.push(muxer_fragment(&[(a.0, a.1, a.2)], &payload[split_at..]));
                    }
                }
                let bytes = muxer_stream(&stream_frags);
                let mut config = config();
                if mode == 0 {
                    config.grid.fragment_duration_ns = 0;
                }
                config.chunked = mode == 2;
                let mut s = CmafStream::new(config);
                let mut out = Vec::new();
                for piece in bytes.chunks(push_size) {
                    s.push(Bytes::copy_from_slice(piece)).unwrap();
                    out.extend(outputs(&mut s));
                }
                s.finish().unwrap();
                out.extend(outputs(&mut s));
                for (t, (bytes, samples)) in expected.iter().enumerate() {
                    let (got, count) = join(&out, t as u32 + 1);
                    prop_assert_eq!(count, *samples);
                    prop_assert!(&got == bytes, "track {}: the bytes differ", t + 1);
                    // The last segment, from its first chunk on, says lmsg, and is complete.
                    let all = chunks(&out, t as u32 + 1);
                    let from = all.iter().rposition(|c| c.first).unwrap();
                    prop_assert!(all[from..].iter().any(|c| c.lmsg) && all[all.len() - 1].last);
                }
            }
        }
    }
}
