//! From muxer bytes to an ingest stream: the whole no-IO media path of one `Streams(<id>)`.
//!
//! Muxer chunks go into the [`BoxSplitter`]; the moov becomes the [`IngestHeader`] (ftyp,
//! manifest, moov); every muxer fragment is read per track and written as Smooth fragments with
//! the stream's mfhd sequence. The caller feeds bytes and takes [`StreamOutput`]s in order.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::fragment::{Fragment, FragmentOptions, FragmentTiming, write_fragment};
use crate::ingest_header::{IngestHeader, IngestTrack, default_track_names};
use crate::movie::{Codec, IgnoredTrack, MovieInfo, TrackKind, parse_moov};
use crate::splitter::{BoxSplitter, SplitterLimits, Unit};
use crate::track_fragment::{FragmentReader, TrackFragment};

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
    /// First mfhd sequence_number.
    pub first_sequence: u32,
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
    splitter: BoxSplitter,
    movie: Option<MovieInfo>,
    reader: Option<FragmentReader>,
    header: Option<IngestHeader>,
    /// Fragments waiting for the header.
    held: Vec<TrackFragment>,
    /// Per track: where its next fragment should start (time, after its previous one).
    next_time: Vec<(u32, u64)>,
    sequence: u32,
    out: VecDeque<StreamOutput>,
    failed: bool,
}

impl IngestStream {
    pub fn new(config: StreamConfig) -> Self {
        let splitter = BoxSplitter::new(config.limits);
        let sequence = config.first_sequence;
        IngestStream {
            config,
            splitter,
            movie: None,
            reader: None,
            header: None,
            held: Vec::new(),
            next_time: Vec::new(),
            sequence,
            out: VecDeque::new(),
            failed: false,
        }
    }

    pub fn header(&self) -> Option<&IngestHeader> {
        self.header.as_ref()
    }

    /// Feeds muxer bytes. Outputs completed before an error stay available from
    /// [`IngestStream::next_output`]; after an error the stream takes no more input.
    pub fn push(&mut self, chunk: Bytes) -> Result<()> {
        if self.failed {
            return Err(Error::Poisoned);
        }
        let pushed = self.splitter.push(chunk);
        let processed = self.drain_units();
        let result = pushed.and(processed);
        self.failed = result.is_err();
        result
    }

    /// End of the muxer's output: flushes held fragments and reports a truncated last box.
    pub fn finish(&mut self) -> Result<()> {
        let finished = if self.failed { Ok(()) } else { self.splitter.finish() };
        if self.header.is_none() && self.movie.is_some() {
            self.emit_header()?;
        }
        finished
    }

    pub fn next_output(&mut self) -> Option<StreamOutput> {
        self.out.pop_front()
    }

    fn drain_units(&mut self) -> Result<()> {
        while let Some(unit) = self.splitter.next_unit() {
            match unit {
                Unit::Init(init) => self.on_moov(&init.moov)?,
                Unit::Fragment(raw) => {
                    let reader = self.reader.as_mut().ok_or(Error::UnexpectedBox {
                        box_type: crate::bmff::fourcc::codes::MOOF,
                        expected: "a moov before the first fragment",
                    })?;
                    for tf in reader.read(&raw)? {
                        if !tf.samples.is_empty() {
                            self.on_track_fragment(tf)?;
                        }
                    }
                }
                Unit::Skipped { .. } => {}
            }
        }
        Ok(())
    }

    fn on_moov(&mut self, moov: &[u8]) -> Result<()> {
        let movie = parse_moov(moov)?;
        if let Some(current) = &self.movie {
            if current.same_tracks(&movie) {
                self.out.push_back(StreamOutput::Notice(Notice::RepeatedHeader));
                return Ok(());
            }
            return Err(Error::TrackSetChanged);
        }
        if !movie.ignored.is_empty() {
            self.out.push_back(StreamOutput::Notice(Notice::IgnoredTracks(movie.ignored.clone())));
        }
        self.reader = Some(FragmentReader::new(&movie));
        self.movie = Some(movie);
        if self.missing_bitrates().is_empty() {
            self.emit_header()?;
        }
        Ok(())
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

    fn emit_fragment(&mut self, mut tf: TrackFragment) -> Result<()> {
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
            // the timeline stays exactly contiguous (ingest-spec §9.1).
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

#[cfg(test)]
mod tests {
    use super::*;
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

    fn outputs(stream: &mut IngestStream) -> Vec<StreamOutput> {
        core::iter::from_fn(|| stream.next_output()).collect()
    }

    #[test]
    fn header_then_one_fragment_per_track_with_a_stream_sequence() {
        let payload = [7u8; 100];
        let f1 = muxer_fragment(&[(1, 0, vec![run(5, 3000, 0)]), (2, 0, vec![run(5, 1024, 50)])], &payload);
        let f2 = muxer_fragment(&[(1, 15000, vec![run(5, 3000, 0)]), (2, 5120, vec![run(5, 1024, 50)])], &payload);
        let mut s = IngestStream::new(StreamConfig { stream_id: "s1".into(), ..StreamConfig::default() });
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
        let mut s = IngestStream::new(StreamConfig::default());
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
        let mut s = IngestStream::new(StreamConfig { video_bitrate: Some(1), ..StreamConfig::default() });
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
        let mut s = IngestStream::new(StreamConfig::default());
        let stream = muxer_stream(&[f1.clone()]);
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
        let mut s = IngestStream::new(StreamConfig { video_bitrate: Some(2_000_000), ..StreamConfig::default() });
        s.push(Bytes::from(muxer_stream(&[]))).unwrap();
        let out = outputs(&mut s);
        let StreamOutput::Header(h) = &out[0] else { panic!("{out:?}") };
        assert_eq!(h.tracks[0].bitrate, 2_000_000);
    }

    #[test]
    fn a_moov_with_other_tracks_mid_stream_is_refused_and_a_repeat_is_not() {
        let mut s = IngestStream::new(StreamConfig { video_bitrate: Some(1), ..StreamConfig::default() });
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
}
