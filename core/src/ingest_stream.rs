// SPDX-License-Identifier: MPL-2.0
//! From muxer bytes to an ingest stream: the whole no-IO media path of one `Streams(<id>)`.
//!
//! Muxer chunks go into the [`BoxSplitter`]; the moov becomes the [`IngestHeader`] (ftyp,
//! manifest, moov); every muxer fragment is read per track and written as Smooth fragments with
//! the stream's mfhd sequence. The caller feeds bytes and takes [`StreamOutput`]s in order.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::error::Result;
use crate::fragment::{Fragment, FragmentOptions, FragmentTiming, write_fragment};
use crate::ingest_header::{IngestHeader, IngestTrack, default_track_names};
use crate::movie::{Codec, IgnoredTrack, MovieInfo, TrackKind};
use crate::muxer_input::{self, MuxerInput, MuxerStream};
use crate::sequence::{FragmentOrder, Numbering};
use crate::splitter::SplitterLimits;
use crate::timeline::{Grid, GridConfig, GridFragment, TimestampMode, ns_to_ticks};
use crate::track_fragment::TrackFragment;

/// How the stream is described and written.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The Streams() id; also the manifest's `src`.
    pub stream_id: String,
    /// `<meta name="creator">` of the manifest.
    pub creator: Option<String>,
    /// Declared bitrate of video tracks, overriding what the file says.
    pub video_bitrate: Option<u32>,
    /// Declared bitrate of audio tracks, overriding what the file says.
    pub audio_bitrate: Option<u32>,
    pub fragment: FragmentOptions,
    pub limits: SplitterLimits,
    /// First mfhd sequence_number (when the muxer's fragments are kept as they are).
    pub first_sequence: u32,
    /// On the grid, how many fragments a splice may cut out of one grid interval of a track
    /// (1 when nothing cuts fragments): part of the mfhd numbering (see [`crate::sequence`]).
    pub sequence_parts: u32,
    /// The fragment grid; a fragment duration of 0 keeps the muxer's fragments.
    pub grid: GridConfig,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            stream_id: String::from("stream"),
            creator: Some(String::from("fmp4ingestsink")),
            video_bitrate: None,
            audio_bitrate: None,
            fragment: FragmentOptions::default(),
            limits: SplitterLimits::default(),
            first_sequence: 1,
            sequence_parts: 1,
            grid: GridConfig {
                mode: TimestampMode::Pipeline,
                fragment_duration_ns: 2_000_000_000,
                target_offset_ns: 0,
            },
        }
    }
}

/// Things worth telling the application that do not stop the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The moov holds tracks this stream does not carry; their fragments are dropped.
    IgnoredTracks(Vec<IgnoredTrack>),
    /// The muxer sent its header again with the same tracks; nothing changes on the wire.
    RepeatedHeader,
    /// No bitrate was declared for a track; the manifest uses one measured on its first fragment.
    MeasuredBitrate { track_id: u32, bitrate: u32 },
    /// A video fragment does not start with a sync sample.
    NoSyncSampleAtStart { track_id: u32, time: u64 },
    /// In UTC mode a video track's key frames never came near a boundary of the grid: it
    /// starts at a key frame off the grid, and its fragments start at key frames (see
    /// [`crate::timeline::OFF_GRID_AFTER`]).
    KeyFramesOffGrid { track_id: u32, time: u64 },
    /// A fragment does not start where the previous one of its track ended.
    Discontinuity { track_id: u32, expected: u64, actual: u64 },
}

/// What the stream produces, in order.
#[derive(Debug, Clone)]
pub enum StreamOutput {
    /// The header boxes, once, before the first fragment.
    Header(IngestHeader),
    Fragment(Fragment),
    Notice(Notice),
}

/// Fragments held back while the header waits for a measured bitrate; beyond this the header
/// goes out with what is known.
const MAX_HELD_FRAGMENTS: usize = 16;

/// The media path of one stream.
#[derive(Debug)]
pub struct IngestStream {
    config: StreamConfig,
    input: MuxerInput,
    movie: Option<MovieInfo>,
    header: Option<IngestHeader>,
    /// Fragments waiting for the header.
    held: Vec<TrackFragment>,
    /// Per track: where its next fragment should start (time, after its previous one).
    next_time: Vec<(u32, u64)>,
    /// Without the grid, per track: written ticks minus the ticks of the running time, from
    /// the last anchored fragment (how the muxer's timeline lies on the pipeline's).
    muxer_offsets: Vec<(u32, i128)>,
    sequence: u32,
    /// Output fragments on a fixed grid, unless the muxer's are kept.
    grid: Option<Grid>,
    /// On the grid: the fragments' mfhd numbers and the order they leave in (once the moov
    /// says how many tracks there are).
    order: Option<FragmentOrder>,
    out: VecDeque<StreamOutput>,
}

impl IngestStream {
    pub fn new(config: StreamConfig) -> Self {
        let input = MuxerInput::new(config.limits);
        let sequence = config.first_sequence;
        let grid = (config.grid.fragment_duration_ns > 0).then(|| Grid::new(config.grid));
        IngestStream {
            config,
            input,
            movie: None,
            header: None,
            held: Vec::new(),
            next_time: Vec::new(),
            muxer_offsets: Vec::new(),
            sequence,
            grid,
            order: None,
            out: VecDeque::new(),
        }
    }

    pub fn header(&self) -> Option<&IngestHeader> {
        self.header.as_ref()
    }

    /// Where running time 0 lies on the target timeline (ns): the UTC instant of running time
    /// 0 in UTC mode. Known only once the pipeline runs; set before the first fragment.
    pub fn set_target_offset(&mut self, ns: i128) {
        self.config.grid.target_offset_ns = ns;
        if self.grid.is_some() {
            self.grid = Some(Grid::new(self.config.grid));
        }
    }

    /// Where running time `running_ns` lies on a track's written timeline, in its ticks: the
    /// time a sparse message uses to point at the media (docs/protocol.md §5.6). On the grid that is
    /// the target timeline; with the muxer's fragments kept, the muxer's timeline as the last
    /// anchored fragment placed it. `None` before that is known, or before the epoch.
    pub fn track_time(&self, track_id: u32, running_ns: u64) -> Option<u64> {
        let timescale = self.movie.as_ref()?.track(track_id)?.timescale;
        let ticks = if self.grid.is_some() {
            ns_to_ticks(i128::from(running_ns) + self.config.grid.target_offset_ns, timescale)
        } else {
            let offset = self.muxer_offsets.iter().find(|(id, _)| *id == track_id)?.1;
            ns_to_ticks(i128::from(running_ns), timescale) + offset
        };
        u64::try_from(ticks).ok()
    }

    /// Starts a new fragment of every track at running time `running_ns` (a splice point),
    /// besides the grid's boundaries. False without the grid (the muxer's fragments are kept
    /// as they are) or when the media is already past that point.
    pub fn add_cut(&mut self, running_ns: u64) -> bool {
        let target = i128::from(running_ns) + self.config.grid.target_offset_ns;
        self.grid.as_mut().is_some_and(|g| g.add_cut(target))
    }

    /// Withdraws a cut that no fragment has used yet.
    pub fn remove_cut(&mut self, running_ns: u64) -> bool {
        let target = i128::from(running_ns) + self.config.grid.target_offset_ns;
        self.grid.as_mut().is_some_and(|g| g.remove_cut(target))
    }

    /// Feeds muxer bytes. Outputs completed before an error stay available from
    /// [`IngestStream::next_output`]; after an error the stream takes no more input.
    pub fn push(&mut self, chunk: Bytes) -> Result<()> {
        self.push_timed(chunk, None)
    }

    /// Feeds muxer bytes with the running time (ns) of the presentation of the sample they
    /// start, when known: it places the muxer's timeline on the pipeline's.
    pub fn push_timed(&mut self, chunk: Bytes, running_time: Option<u64>) -> Result<()> {
        muxer_input::push(self, chunk, running_time)
    }

    /// End of the muxer's output: flushes held fragments and the grid's last ones, and
    /// reports a truncated last box.
    pub fn finish(&mut self) -> Result<()> {
        let finished = muxer_input::finish(self);
        if self.header.is_none() && self.movie.is_some() {
            self.emit_header()?;
        }
        if let Some(grid) = self.grid.as_mut() {
            for g in grid.flush() {
                self.emit_grid_fragment(g);
            }
        }
        if let Some(order) = self.order.as_mut() {
            self.out.extend(order.flush().into_iter().map(StreamOutput::Fragment));
        }
        finished
    }

    pub fn next_output(&mut self) -> Option<StreamOutput> {
        self.out.pop_front()
    }

    fn declared_bitrate(&self, kind: TrackKind, file: Option<u32>) -> Option<u32> {
        let configured = match kind {
            TrackKind::Video => self.config.video_bitrate,
            TrackKind::Audio => self.config.audio_bitrate,
        };
        configured.or(file).filter(|b| *b > 0)
    }

    /// Tracks whose bitrate is neither configured nor declared and not yet measurable.
    fn missing_bitrates(&self) -> Vec<u32> {
        let Some(movie) = &self.movie else {
            return Vec::new();
        };
        movie
            .tracks
            .iter()
            .filter(|t| self.declared_bitrate(t.kind, t.bitrate).is_none())
            .filter(|t| !self.held.iter().any(|f| f.track_id == t.track_id && f.duration() > 0))
            .map(|t| t.track_id)
            .collect()
    }

    fn emit_header(&mut self) -> Result<()> {
        let Some(movie) = &self.movie else {
            return Ok(());
        };
        let names = default_track_names(&movie.tracks);
        let mut tracks = Vec::with_capacity(movie.tracks.len());
        let mut notices = Vec::new();
        for (info, name) in movie.tracks.iter().zip(names) {
            let bitrate = match self.declared_bitrate(info.kind, info.bitrate) {
                Some(b) => b,
                None => {
                    let measured = measure_bitrate(&self.held, info.track_id, info.timescale);
                    notices.push(Notice::MeasuredBitrate { track_id: info.track_id, bitrate: measured });
                    measured
                }
            };
            tracks.push(IngestTrack { info: info.clone(), name, bitrate });
        }
        let header = IngestHeader::build(tracks, &self.config.stream_id, self.config.creator.as_deref());
        self.out.push_back(StreamOutput::Header(header.clone()));
        self.header = Some(header);
        for n in notices {
            self.out.push_back(StreamOutput::Notice(n));
        }
        for tf in core::mem::take(&mut self.held) {
            self.emit_fragment(tf)?;
        }
        Ok(())
    }

    fn emit_fragment(&mut self, tf: TrackFragment) -> Result<()> {
        let Some(grid) = self.grid.as_mut() else { return self.emit_muxer_fragment(tf) };
        let track = self.movie.as_ref().and_then(|m| m.track(tf.track_id));
        let timescale = track.map_or(1, |t| t.timescale);
        let video = track.is_some_and(|t| t.kind == TrackKind::Video);
        let anchor = tf.anchor;
        for g in grid.push(tf.track_id, timescale, video, tf, anchor) {
            self.emit_grid_fragment(g);
        }
        Ok(())
    }

    /// A fragment on the grid: its index is the tfxd v2 fragment_index and, with the track's
    /// position, gives the mfhd sequence (see [`crate::sequence`]).
    fn emit_grid_fragment(&mut self, g: GridFragment) {
        let tf = g.fragment;
        let track = self.movie.as_ref().and_then(|m| m.track(tf.track_id));
        let hevc = track.is_some_and(|t| t.codec == Codec::Hevc);
        let timescale = track.map_or(1, |t| t.timescale);
        if g.starts_without_sync {
            self.out
                .push_back(StreamOutput::Notice(Notice::NoSyncSampleAtStart { track_id: tf.track_id, time: g.time }));
        }
        if g.starts_off_grid {
            self.out.push_back(StreamOutput::Notice(Notice::KeyFramesOffGrid { track_id: tf.track_id, time: g.time }));
        }
        match self.next_time.iter_mut().find(|(id, _)| *id == tf.track_id) {
            Some((_, expected)) => {
                if *expected != g.time {
                    self.out.push_back(StreamOutput::Notice(Notice::Discontinuity {
                        track_id: tf.track_id,
                        expected: *expected,
                        actual: g.time,
                    }));
                }
                *expected = g.time + g.duration;
            }
            None => self.next_time.push((tf.track_id, g.time + g.duration)),
        }
        let mut opts = self.config.fragment;
        opts.default_base_is_moof |= hevc;
        let timing = FragmentTiming {
            time: g.time,
            duration: g.duration,
            decode_time: tf.decode_time,
            index: Some(g.index),
            timescale,
        };
        let position = self.movie.as_ref().and_then(|m| m.tracks.iter().position(|t| t.track_id == tf.track_id));
        // Only tracks of the moov reach the grid (the reader drops the others).
        let (Some(order), Some(position)) = (self.order.as_mut(), position) else { return };
        let Some(key) = order.next_key(position as u32, g.index) else { return };
        let frag = write_fragment(&tf, order.sequence(key), timing, opts);
        order.hold(key, frag);
        self.out.extend(order.release().into_iter().map(StreamOutput::Fragment));
    }

    /// A muxer fragment kept as it is (no grid), with the stream's own sequence.
    fn emit_muxer_fragment(&mut self, mut tf: TrackFragment) -> Result<()> {
        let track = self.movie.as_ref().and_then(|m| m.track(tf.track_id));
        let hevc = track.is_some_and(|t| t.codec == Codec::Hevc);
        let is_video = track.is_some_and(|t| t.kind == TrackKind::Video);
        let timescale = track.map_or(1, |t| t.timescale);
        let mut time = tf.presentation_time()?;
        let expected = self.next_time.iter().find(|(id, _)| *id == tf.track_id).map(|(_, e)| *e);
        if let Some(expected) = expected {
            // Muxers round each sample's time to ticks, so a fragment may start a tick or two
            // off where the previous one ended. Within half a sample that is rounding, not a
            // gap: move the start onto the previous end (the first sample absorbs it), so that
            // the timeline stays exactly contiguous (docs/protocol.md §4.2).
            let delta = i128::from(expected) - i128::from(time);
            let tolerance = i128::from(tf.shortest_sample() / 2);
            if delta != 0 && delta.abs() <= tolerance && tf.shift_start(delta as i64) {
                time = tf.presentation_time()?;
            }
            if time != expected {
                self.out.push_back(StreamOutput::Notice(Notice::Discontinuity {
                    track_id: tf.track_id,
                    expected,
                    actual: time,
                }));
            }
        }
        if let Some((i, rt)) = tf.anchor {
            // The anchored sample's presentation ticks, as written, against its running time.
            let before: u64 = tf.samples.iter().take(i).map(|s| u64::from(s.duration)).sum();
            let cto = |k: usize| tf.samples.get(k).map_or(0, |s| i128::from(s.cto));
            let written = i128::from(time) + i128::from(before) + cto(i) - cto(0);
            let offset = written - ns_to_ticks(i128::from(rt), timescale);
            match self.muxer_offsets.iter_mut().find(|(id, _)| *id == tf.track_id) {
                Some((_, o)) => *o = offset,
                None => self.muxer_offsets.push((tf.track_id, offset)),
            }
        }
        let duration = tf.duration();
        if is_video && !tf.starts_with_sync() {
            self.out.push_back(StreamOutput::Notice(Notice::NoSyncSampleAtStart { track_id: tf.track_id, time }));
        }
        let end = time.saturating_add(duration);
        match self.next_time.iter_mut().find(|(id, _)| *id == tf.track_id) {
            Some((_, e)) => *e = end,
            None => self.next_time.push((tf.track_id, end)),
        }
        let mut opts = self.config.fragment;
        opts.default_base_is_moof |= hevc;
        let timing = FragmentTiming { time, duration, decode_time: tf.decode_time, index: None, timescale };
        let frag = write_fragment(&tf, self.sequence, timing, opts);
        self.sequence = self.sequence.wrapping_add(1);
        self.out.push_back(StreamOutput::Fragment(frag));
        Ok(())
    }
}

/// Bits per second of a track over the fragments held so far.
fn measure_bitrate(held: &[TrackFragment], track_id: u32, timescale: u32) -> u32 {
    let (bytes, ticks) = held
        .iter()
        .filter(|f| f.track_id == track_id)
        .fold((0u64, 0u64), |(b, d), f| (b + f.data.len(), d + f.duration()));
    if ticks == 0 {
        return 0;
    }
    let bps = u128::from(bytes) * 8 * u128::from(timescale) / u128::from(ticks);
    u32::try_from(bps).unwrap_or(u32::MAX)
}

impl MuxerStream for IngestStream {
    fn input(&mut self) -> &mut MuxerInput {
        &mut self.input
    }

    fn movie(&self) -> Option<&MovieInfo> {
        self.movie.as_ref()
    }

    /// Fragments are numbered once the moov says how many tracks there are; the header goes
    /// out at once when every track's bitrate is known (else once it is measured).
    fn on_movie(&mut self, movie: MovieInfo) -> Result<()> {
        if self.grid.is_some() {
            let tracks = u32::try_from(movie.tracks.len()).unwrap_or(u32::MAX);
            self.order = Some(FragmentOrder::new(Numbering { tracks, parts: self.config.sequence_parts }));
        }
        self.movie = Some(movie);
        if self.missing_bitrates().is_empty() {
            self.emit_header()?;
        }
        Ok(())
    }

    fn on_notice(&mut self, notice: Notice) {
        self.out.push_back(StreamOutput::Notice(notice));
    }

    fn on_track_fragment(&mut self, tf: TrackFragment) -> Result<()> {
        if self.header.is_some() {
            return self.emit_fragment(tf);
        }
        self.held.push(tf);
        if self.missing_bitrates().is_empty() || self.held.len() >= MAX_HELD_FRAGMENTS {
            self.emit_header()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::test_support::{RunSpec, muxer_fragment, muxer_stream};
    use crate::track_fragment::{SAMPLE_FLAGS_NON_SYNC, SAMPLE_FLAGS_SYNC, Sample};
    use alloc::vec;

    fn run(n: u32, duration: u32, start: usize) -> RunSpec {
        let samples = (0..n)
            .map(|i| Sample {
                duration,
                size: 10,
                flags: if i == 0 { SAMPLE_FLAGS_SYNC } else { SAMPLE_FLAGS_NON_SYNC },
                cto: 0,
            })
            .collect();
        RunSpec { samples, payload_start: start }
    }

    /// The muxer's fragments as they are, no grid.
    fn passthrough() -> StreamConfig {
        let mut c = StreamConfig::default();
        c.grid.fragment_duration_ns = 0;
        c
    }

    fn outputs(stream: &mut IngestStream) -> Vec<StreamOutput> {
        core::iter::from_fn(|| stream.next_output()).collect()
    }

    /// Feeds `bytes` through the whole media path (splitter, moov parser, fragment reader,
    /// grid, rewriter), in chunks of `chunk` bytes, and drains every output.
    fn feed(bytes: &[u8], chunk: usize, config: StreamConfig) {
        let mut s = IngestStream::new(config);
        for c in bytes.chunks(chunk.max(1)) {
            if s.push(Bytes::copy_from_slice(c)).is_err() {
                break;
            }
            let _ = outputs(&mut s);
        }
        let _ = s.finish();
        let _ = outputs(&mut s);
    }

    #[test]
    fn no_truncation_or_corruption_of_the_input_panics() {
        let payload = [7u8; 100];
        let f1 = muxer_fragment(&[(1, 0, vec![run(5, 3000, 0)]), (2, 0, vec![run(5, 1024, 50)])], &payload);
        let f2 = muxer_fragment(&[(1, 15000, vec![run(5, 3000, 0)]), (2, 5120, vec![run(5, 1024, 50)])], &payload);
        let good = muxer_stream(&[f1, f2]);
        let configs = [passthrough(), StreamConfig::default()];
        for config in &configs {
            // Every truncation.
            for n in 0..good.len() {
                feed(&good[..n], 997, config.clone());
            }
            // Every byte changed, three ways; the sizes, counts and offsets in the headers and
            // tables are all hit.
            for i in 0..good.len() {
                for v in [0x00, 0xff, good[i] ^ 0x80] {
                    let mut bad = good.clone();
                    bad[i] = v;
                    feed(&bad, 61, config.clone());
                }
            }
        }
        // Bursts of pseudo-random bytes (a fixed LCG), spliced in at every box boundary.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut noise = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u8
        };
        for at in (0..good.len()).step_by(8) {
            let mut bad = good[..at].to_vec();
            bad.extend((0..64).map(|_| noise()));
            bad.extend_from_slice(&good[at..]);
            feed(&bad, 128, StreamConfig::default());
        }
    }

    #[test]
    fn header_then_one_fragment_per_track_with_a_stream_sequence() {
        let payload = [7u8; 100];
        let f1 = muxer_fragment(&[(1, 0, vec![run(5, 3000, 0)]), (2, 0, vec![run(5, 1024, 50)])], &payload);
        let f2 = muxer_fragment(&[(1, 15000, vec![run(5, 3000, 0)]), (2, 5120, vec![run(5, 1024, 50)])], &payload);
        let mut s = IngestStream::new(StreamConfig { stream_id: "s1".into(), ..passthrough() });
        // Byte by byte, as the worst muxer would.
        for b in muxer_stream(&[f1, f2]) {
            s.push(Bytes::copy_from_slice(&[b])).unwrap();
        }
        s.finish().unwrap();
        let out = outputs(&mut s);
        let StreamOutput::Header(h) = &out[0] else { panic!("{out:?}") };
        assert_eq!(h.tracks.len(), 2);
        assert_eq!(h.manifest.tracks[0].src, "s1");
        let frags: Vec<&Fragment> =
            out.iter().filter_map(|o| if let StreamOutput::Fragment(f) = o { Some(f) } else { None }).collect();
        let ids: Vec<_> = frags.iter().map(|f| (f.track_id, f.sequence, f.timing.time, f.timing.duration)).collect();
        assert_eq!(ids, [(1, 1, 0, 15000), (2, 2, 0, 5120), (1, 3, 15000, 15000), (2, 4, 5120, 5120)]);
        assert!(!out.iter().any(|o| matches!(o, StreamOutput::Notice(Notice::Discontinuity { .. }))));
    }

    #[test]
    fn a_gap_and_a_missing_sync_sample_are_noticed() {
        let payload = [7u8; 50];
        let f1 = muxer_fragment(&[(1, 0, vec![run(5, 3000, 0)])], &payload);
        let mut r = run(5, 3000, 0);
        r.samples[0].flags = SAMPLE_FLAGS_NON_SYNC;
        let f2 = muxer_fragment(&[(1, 20000, vec![r])], &payload);
        let mut s = IngestStream::new(passthrough());
        s.push(Bytes::from(muxer_stream(&[f1, f2]))).unwrap();
        let out = outputs(&mut s);
        assert!(out.iter().any(|o| matches!(
            o,
            StreamOutput::Notice(Notice::Discontinuity { track_id: 1, expected: 15000, actual: 20000 })
        )));
        assert!(
            out.iter()
                .any(|o| matches!(o, StreamOutput::Notice(Notice::NoSyncSampleAtStart { track_id: 1, time: 20000 })))
        );
    }

    #[test]
    fn rounding_jitter_is_absorbed_and_the_timeline_stays_contiguous() {
        let payload = [7u8; 100];
        // Audio fragments of 5 x 1024 ticks whose starts are a tick late, then a tick early.
        let f1 = muxer_fragment(&[(2, 0, vec![run(5, 1024, 0)])], &payload[..50]);
        let f2 = muxer_fragment(&[(2, 5121, vec![run(5, 1024, 0)])], &payload[..50]);
        let f3 = muxer_fragment(&[(2, 10239, vec![run(5, 1024, 0)])], &payload[..50]);
        let mut s = IngestStream::new(StreamConfig { video_bitrate: Some(1), ..passthrough() });
        s.push(Bytes::from(muxer_stream(&[f1, f2, f3]))).unwrap();
        let out = outputs(&mut s);
        let frags: Vec<(u64, u64)> = out
            .iter()
            .filter_map(
                |o| if let StreamOutput::Fragment(f) = o { Some((f.timing.time, f.timing.duration)) } else { None },
            )
            .collect();
        // Each starts where the previous ended; the first sample took the tick up or gave it.
        assert_eq!(frags, [(0, 5120), (5120, 5121), (10241, 5118)]);
        assert!(!out.iter().any(|o| matches!(o, StreamOutput::Notice(Notice::Discontinuity { .. }))));
    }

    #[test]
    fn undeclared_bitrate_is_measured_before_the_header_goes_out() {
        // The spec tracks' avc1 has no btrt: the video bitrate must be measured.
        let payload = [7u8; 100];
        let f1 = muxer_fragment(&[(2, 0, vec![run(5, 1024, 0)])], &payload);
        let f2 = muxer_fragment(&[(1, 0, vec![run(10, 3000, 0)])], &payload);
        let mut s = IngestStream::new(passthrough());
        let stream = muxer_stream(core::slice::from_ref(&f1));
        s.push(Bytes::from(stream)).unwrap();
        // The audio fragment is held: no header yet.
        assert!(outputs(&mut s).is_empty());
        s.push(Bytes::from(f2)).unwrap();
        let out = outputs(&mut s);
        let StreamOutput::Header(h) = &out[0] else { panic!("{out:?}") };
        // 100 bytes over 30000 ticks at 10 MHz = 266666 b/s; audio keeps the esds value.
        assert_eq!(h.tracks[0].bitrate, 266_666);
        assert_eq!(h.tracks[1].bitrate, 128_000);
        assert!(
            out.iter()
                .any(|o| matches!(o, StreamOutput::Notice(Notice::MeasuredBitrate { track_id: 1, bitrate: 266_666 })))
        );
        assert_eq!(out.iter().filter(|o| matches!(o, StreamOutput::Fragment(_))).count(), 2);
    }

    #[test]
    fn a_configured_bitrate_wins_and_sends_the_header_at_once() {
        let mut s = IngestStream::new(StreamConfig { video_bitrate: Some(2_000_000), ..passthrough() });
        s.push(Bytes::from(muxer_stream(&[]))).unwrap();
        let out = outputs(&mut s);
        let StreamOutput::Header(h) = &out[0] else { panic!("{out:?}") };
        assert_eq!(h.tracks[0].bitrate, 2_000_000);
    }

    #[test]
    fn a_moov_with_other_tracks_mid_stream_is_refused_and_a_repeat_is_not() {
        let mut s = IngestStream::new(StreamConfig { video_bitrate: Some(1), ..passthrough() });
        let stream = muxer_stream(&[]);
        s.push(Bytes::from(stream.clone())).unwrap();
        s.push(Bytes::from(stream)).unwrap();
        assert!(outputs(&mut s).iter().any(|o| matches!(o, StreamOutput::Notice(Notice::RepeatedHeader))));
        // A moov with only the first track: different track set.
        let mut one = Vec::new();
        let (mut video, _) = crate::test_support::spec_tracks();
        video.sample_entry = crate::test_support::avc1_entry(8, 8, &[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 1, 0x67, 0]);
        crate::moov::write_moov(&mut one, 1000, &[crate::moov::MoovTrack::from_info(&video)]);
        assert_eq!(s.push(Bytes::from(one)), Err(Error::TrackSetChanged));
    }

    #[test]
    fn on_the_grid_fragments_are_indexed_and_anchored_to_running_time() {
        // Video at timescale 10 MHz (the spec tracks), 2 s GOPs of 20 frames of 0.1 s, the muxer's
        // timeline starting at 0 while its first sample's buffer said running time 0.4 s.
        let payload = [7u8; 200];
        let mut frags = Vec::new();
        for g in 0..3u64 {
            frags.push(muxer_fragment(&[(1, g * 20_000_000, vec![run(20, 1_000_000, 0)])], &payload));
        }
        let mut config = StreamConfig { video_bitrate: Some(1), ..StreamConfig::default() };
        config.grid.mode = TimestampMode::Utc;
        let mut s = IngestStream::new(config);
        // Running time 0 is 1 699 999 999.6 s UTC, so the first sample (running time 0.4 s)
        // is at 1 700 000 000 s exactly: the GOPs fall on the grid.
        s.set_target_offset(1_700_000_000_000_000_000 - 400_000_000);
        let stream = muxer_stream(&frags);
        // Push the header boxes, then each moof (with the mdat header) and each sample's data
        // as its own chunk with its running time, the way the element feeds muxer buffers.
        let first_moof = stream.windows(4).position(|w| w == b"moof").unwrap() - 4;
        s.push(Bytes::copy_from_slice(&stream[..first_moof])).unwrap();
        let mut pos = first_moof;
        let mut sample_rt = 400_000_000u64;
        while pos < stream.len() {
            let moof_len = u32::from_be_bytes(stream[pos..pos + 4].try_into().unwrap()) as usize;
            s.push(Bytes::copy_from_slice(&stream[pos..pos + moof_len + 8])).unwrap();
            pos += moof_len + 8;
            for _ in 0..20 {
                s.push_timed(Bytes::copy_from_slice(&stream[pos..pos + 10]), Some(sample_rt)).unwrap();
                pos += 10;
                sample_rt += 100_000_000;
            }
        }
        s.finish().unwrap();
        let frags: Vec<(u32, u64, u64)> = outputs(&mut s)
            .into_iter()
            .filter_map(|o| {
                if let StreamOutput::Fragment(f) = o {
                    Some((f.sequence, f.timing.time, f.timing.duration))
                } else {
                    None
                }
            })
            .collect();
        // The muxer's timeline started at 0; placed through the anchor, fragment k starts at
        // k x 2 s since the epoch and its index is k; the moov has two tracks and video comes
        // first, so its mfhd sequence is 2k + 1.
        let first = 1_700_000_000u64 * 10_000_000;
        assert_eq!(
            frags,
            [
                (1_700_000_001, first, 20_000_000),
                (1_700_000_003, first + 20_000_000, 20_000_000),
                (1_700_000_005, first + 40_000_000, 20_000_000)
            ]
        );
    }
    /// The fragments' (track, mfhd sequence, index) in the order the stream gives them out.
    fn sequences(frags: &[Vec<u8>]) -> Vec<(u32, u32, u64)> {
        let mut config = StreamConfig { video_bitrate: Some(1), audio_bitrate: Some(1), ..StreamConfig::default() };
        config.fragment.tfxd_version = 2;
        let mut s = IngestStream::new(config);
        let mut out = Vec::new();
        for c in muxer_stream(frags).chunks(100) {
            s.push(Bytes::copy_from_slice(c)).unwrap();
            out.extend(outputs(&mut s));
        }
        s.finish().unwrap();
        out.extend(outputs(&mut s));
        out.into_iter()
            .filter_map(|o| match o {
                StreamOutput::Fragment(f) => Some((f.track_id, f.sequence, f.timing.index.unwrap())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mfhd_numbers_increase_in_the_order_fragments_leave_whatever_the_muxer_interleaving() {
        // Both tracks at 10 MHz: video 0.1 s frames, audio 20 ms frames; four 2 s intervals.
        let payload = [7u8; 4000];
        let video = |k: u64| (1, k * 20_000_000, vec![run(20, 1_000_000, 0)]);
        let audio = |k: u64| (2, k * 20_000_000, vec![run(100, 200_000, 200)]);
        // mp4mux style: one track per moof, audio of each interval first.
        let alternating: Vec<Vec<u8>> = (0..4)
            .flat_map(|k| [muxer_fragment(&[audio(k)], &payload), muxer_fragment(&[video(k)], &payload)])
            .collect();
        // isofmp4mux style: both tracks in one moof.
        let together: Vec<Vec<u8>> = (0..4).map(|k| muxer_fragment(&[video(k), audio(k)], &payload)).collect();
        let a = sequences(&alternating);
        let b = sequences(&together);
        assert_eq!(a.len(), 8, "{a:?}");
        // Video is the moov's first track (position 0), audio the second.
        let expected: Vec<(u32, u32, u64)> =
            (0..4u64).flat_map(|k| [(1, 2 * k as u32 + 1, k), (2, 2 * k as u32 + 2, k)]).collect();
        assert_eq!(a, expected);
        assert_eq!(b, expected);
    }
}
