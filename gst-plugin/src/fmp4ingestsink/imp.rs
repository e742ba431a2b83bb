// SPDX-License-Identifier: MPL-2.0
//! The element: properties, the streaming-thread side of the media path, EOS, messages, errors.
//!
//! `render()` hands each buffer, without copying it, to the core's [`IngestStream`]; what
//! comes out (the header, Smooth fragments) goes to the [`Uploader`], which never makes
//! `render()` wait on the network: while the server is away, fragments wait in the session's
//! bounded forward buffer. EOS ends the chunked body and waits for the server's final answer.
//!
//! With `protocol=cmaf` the element speaks DASH-IF CMAF ingest instead: the branches are here,
//! the path itself in [`cmaf_element`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use fmp4ingest_core::fragment::FragmentOptions;
use fmp4ingest_core::ingest_header::IngestTrack;
use fmp4ingest_core::ingest_stream::{IngestStream, Notice, StreamConfig, StreamOutput};
use fmp4ingest_core::ingest_url::IngestUrl;
use fmp4ingest_core::session::{Failure, SessionConfig, SessionEvent, StreamStats, TransportError};
use fmp4ingest_core::timeline::{self, GridConfig};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use tokio::sync::Notify;

use super::ad_events;
use super::ads::{AdSettings, Ads, Outcome};
use super::cmaf_settings::{CmafSettings, Protocol};
use super::http_settings::{self, Secret, TlsAndAuth};
use super::key_units::{Boundaries, KeyUnitScheduler, force_key_unit};
use super::reporting::{self, describe_failure};
use super::sparse_uploader::{SparseHttp, SparseReport};
use super::uploader::Uploader;
use super::utc;
use super::{SpliceMode, TimestampMode};
use crate::driver::WaitOutcome;
use crate::driver::{HttpConfig, Report};
use crate::http::Client;

#[path = "cmaf_element.rs"]
mod cmaf_element;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("fmp4ingestsink", gst::DebugColorFlags::empty(), Some("Fragmented MP4 live ingest sink"))
});

const SECOND: u64 = gst::ClockTime::SECOND.nseconds();
/// The session's defaults are the core's ([`SessionConfig::default`]): one place for them.
static SESSION_DEFAULTS: LazyLock<SessionConfig> = LazyLock::new(SessionConfig::default);
fn default_ns(d: fn(&SessionConfig) -> Duration) -> u64 {
    u64::try_from(d(&SESSION_DEFAULTS).as_nanos()).unwrap_or(u64::MAX)
}
/// The stream's defaults are the core's too ([`StreamConfig::default`]).
static STREAM_DEFAULTS: LazyLock<StreamConfig> = LazyLock::new(StreamConfig::default);
const DEFAULT_KEYFRAME_LEAD: u64 = SECOND;
const DEFAULT_SPARSE_TRACK_NAME: &str = "scte35";
/// Ad messages go out this long before their splice by default: the least the DASH-IF and
/// Azure texts ask for (docs/protocol.md §5.6), the core's minimum.
const DEFAULT_SPLICE_LEAD: u64 = fmp4ingest_core::ad_signals::MIN_LEAD_NS;
/// With `splice-mode=segment`, the fragments one grid interval of a track may be cut into (the
/// mfhd numbering leaves room for them; more cuts in one interval share the last number).
const SEGMENT_SPLICE_PARTS: u32 = 4;
static DEFAULT_USER_AGENT: LazyLock<String> = LazyLock::new(|| format!("fmp4ingestsink/{}", env!("CARGO_PKG_VERSION")));
const MAX_TIMEOUT: u64 = 3600 * SECOND;

#[derive(Debug, Clone)]
struct Settings {
    location: Option<String>,
    video_bitrate: u32,
    audio_bitrate: u32,
    connect_timeout: u64,
    final_response_timeout: u64,
    send_timeout: u64,
    max_retries: i32,
    retry_timeout: u64,
    retry_delay: u64,
    retry_delay_max: u64,
    reprobe: bool,
    forward_buffer_duration: u64,
    forward_buffer_size: u64,
    catch_up_rate: f64,
    eos_timeout: u64,
    send_buffer_size: u32,
    user_agent: String,
    tfdt: bool,
    timestamp_mode: TimestampMode,
    fragment_duration: u64,
    timestamp_offset: i64,
    tfxd_version: u32,
    keyframe_lead: u64,
    send_delay: u64,
    sparse_stream_id: Option<String>,
    sparse_track_name: String,
    sparse_scheme: String,
    sparse_parent_track: Option<String>,
    splice_mode: SpliceMode,
    splice_lead: u64,
    /// TLS, authentication and extra headers.
    auth: TlsAndAuth,
    follow_redirects: bool,
    /// `protocol` and the properties of CMAF ingest.
    cmaf: CmafSettings,
}

impl Default for Settings {
    fn default() -> Self {
        let d = &*SESSION_DEFAULTS;
        Settings {
            location: None,
            video_bitrate: 0,
            audio_bitrate: 0,
            // 0: the protocol's own (Smooth: 10 s and 10 s; CMAF: about a segment duration).
            connect_timeout: 0,
            final_response_timeout: 0,
            send_timeout: default_ns(|d| d.send_timeout.unwrap_or_default()),
            max_retries: d.max_retries.map_or(-1, |m| i32::try_from(m).unwrap_or(i32::MAX)),
            retry_timeout: default_ns(|d| d.retry_limit.unwrap_or_default()),
            retry_delay: default_ns(|d| d.retry_delay),
            retry_delay_max: default_ns(|d| d.retry_delay_max),
            reprobe: d.reprobe,
            forward_buffer_duration: default_ns(|d| d.forward_buffer_duration),
            forward_buffer_size: d.forward_buffer_bytes,
            catch_up_rate: d.catch_up_rate,
            eos_timeout: default_ns(|d| d.eos_timeout),
            send_buffer_size: 0,
            user_agent: DEFAULT_USER_AGENT.clone(),
            tfdt: STREAM_DEFAULTS.fragment.tfdt,
            timestamp_mode: TimestampMode::Pipeline,
            fragment_duration: STREAM_DEFAULTS.grid.fragment_duration_ns,
            timestamp_offset: 0,
            tfxd_version: u32::from(STREAM_DEFAULTS.fragment.tfxd_version),
            keyframe_lead: DEFAULT_KEYFRAME_LEAD,
            send_delay: 0,
            sparse_stream_id: None,
            sparse_track_name: DEFAULT_SPARSE_TRACK_NAME.into(),
            sparse_scheme: fmp4ingest_core::sparse::SCTE35_SCHEME.into(),
            sparse_parent_track: None,
            splice_mode: SpliceMode::default(),
            splice_lead: DEFAULT_SPLICE_LEAD,
            auth: TlsAndAuth::default(),
            follow_redirects: false,
            cmaf: CmafSettings::default(),
        }
    }
}

impl Settings {
    fn session_config(&self) -> SessionConfig {
        let ns = Duration::from_nanos;
        // Jitter must differ between encoders that fail together; it needs no quality.
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
                ^ (self as *const Settings as u64);
        let d = &*SESSION_DEFAULTS;
        SessionConfig {
            connect_timeout: if self.connect_timeout > 0 { ns(self.connect_timeout) } else { d.connect_timeout },
            send_timeout: (self.send_timeout > 0).then(|| ns(self.send_timeout)),
            fragment_duration: (self.fragment_duration > 0).then(|| ns(self.fragment_duration)),
            final_response_timeout: if self.final_response_timeout > 0 {
                ns(self.final_response_timeout)
            } else {
                d.final_response_timeout
            },
            max_retries: u32::try_from(self.max_retries).ok(),
            retry_limit: (self.retry_timeout > 0).then(|| ns(self.retry_timeout)),
            retry_delay: ns(self.retry_delay),
            retry_delay_max: ns(self.retry_delay_max),
            reprobe: self.reprobe,
            forward_buffer_duration: ns(self.forward_buffer_duration),
            forward_buffer_bytes: self.forward_buffer_size,
            catch_up_rate: self.catch_up_rate,
            eos_timeout: ns(self.eos_timeout),
            jitter_seed: seed,
            send_delay: ns(self.send_delay),
            ..SessionConfig::default()
        }
    }
}

/// What exists only while the element runs.
struct Started {
    url: IngestUrl,
    stream: IngestStream,
    uploader: Uploader,
    /// The tracks as the header declared them, for `stats`.
    tracks: Vec<IngestTrack>,
    /// How long EOS may wait for the session to finish.
    eos_wait: Duration,
    /// A video fragment without a sync sample was already reported.
    warned_no_sync: bool,
    /// Whether upstream is live, once asked (at the first buffer): a live pipeline never waits
    /// on the network, a non-live one waits for room instead of losing data.
    live: Option<bool>,
    /// The target timeline is placed (at the first buffer, once the clock runs).
    timeline_placed: bool,
    /// Requests key frames ahead of the boundaries while the element runs.
    key_units: Option<KeyUnitScheduler>,
    /// The sparse stream, when `sparse-stream-id` is set.
    ads: Option<Ads>,
    /// The running time the media reached: the latest end of a buffer.
    media_ns: Option<u64>,
}

#[derive(Default)]
enum State {
    #[default]
    Stopped,
    Started(Box<Started>),
    /// `protocol=cmaf`.
    Cmaf(Box<cmaf_element::CmafStarted>),
}

/// Cancels a wait of the streaming thread when the sink is flushed or stopped.
#[derive(Default)]
struct Canceller {
    flushing: AtomicBool,
    notify: Notify,
}

#[derive(Default)]
pub struct Fmp4IngestSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    canceller: Canceller,
    /// Set when the session gave up mid-stream; the error is already posted.
    failed: AtomicBool,
    /// A "forward buffer full" warning was posted since the last connection came up: one per
    /// outage is enough, the element messages count every drop.
    drop_warned: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for Fmp4IngestSink {
    const NAME: &'static str = "GstFmp4IngestSink";
    type Type = super::Fmp4IngestSink;
    type ParentType = gst_base::BaseSink;
}

impl Fmp4IngestSink {
    fn settings(&self) -> Settings {
        self.settings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn post_element_message(&self, s: gst::Structure) {
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    /// Called from the uploader's task with what the session did. It may come before
    /// `start()` has stored its state (a refused connection is reported at once), so it
    /// depends on nothing but its arguments.
    fn on_report(&self, url: &str, report: Report<SessionEvent>) {
        let (event, detail) = match report {
            Report::Session { event, detail } => (event, detail.unwrap_or_default()),
            Report::Redirected { from, to, status } => {
                gst::info!(
                    CAT,
                    imp = self,
                    "the probe of {from} was redirected ({status}) to {to}: the POST goes there"
                );
                self.post_element_message(reporting::redirected(&from, &to, status));
                return;
            }
        };
        match event {
            SessionEvent::ProbeAccepted { status } => gst::info!(CAT, imp = self, "probe of {url} answered {status}"),
            SessionEvent::Connected { connection } => {
                gst::info!(CAT, imp = self, "streaming to {url} (connection {connection})");
                self.drop_warned.store(false, Ordering::SeqCst);
                self.post_element_message(reporting::connected(url, connection));
            }
            SessionEvent::Resent { fragments } => {
                gst::info!(CAT, imp = self, "resending {} fragments", fragments.len());
                self.post_element_message(reporting::resent(url, &fragments));
            }
            SessionEvent::Disconnected { reason } => {
                let (_, _, text) = describe_failure(&reason);
                gst::warning!(CAT, imp = self, "{url}: {text} {detail}");
                self.post_element_message(reporting::disconnected(url, &reason, &detail));
            }
            SessionEvent::Reconnecting { attempt, delay } => {
                gst::info!(CAT, imp = self, "reconnecting to {url} in {delay:?} (attempt {attempt})");
                self.post_element_message(reporting::reconnecting(url, attempt, delay));
            }
            SessionEvent::Dropped { fragments } => {
                let media: u64 = fragments.iter().map(|f| f.duration_ns).sum();
                gst::warning!(CAT, imp = self, "dropped {} fragments ({media} ns of media)", fragments.len());
                self.post_element_message(reporting::dropped(url, &fragments));
                if self.drop_warned.swap(true, Ordering::SeqCst) {
                    return;
                }
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("The forward buffer is full: {} fragments dropped", fragments.len()),
                    [
                        "{url} has been unreachable or too slow for too long; {:.3} s of media is lost and the \
                         timeline has a gap. forward-buffer-duration and forward-buffer-size set how much may wait; \
                         fmp4ingestsink-dropped messages count every drop.",
                        media as f64 / 1e9
                    ]
                );
            }
            SessionEvent::Finished { status } => {
                gst::info!(CAT, imp = self, "{url} answered {status} to the end of the stream")
            }
            SessionEvent::FinishedWithoutResponse => gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ("No final response from the ingest server"),
                ["{url} did not answer within the final-response-timeout after the stream ended"]
            ),
            SessionEvent::GaveUp { reason: Failure::EosTimeout, undelivered, .. } => {
                let media: u64 = undelivered.iter().map(|f| f.duration_ns).sum();
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("{} fragments could not be delivered before the end of the stream", undelivered.len()),
                    [
                        "{url} could not be reached within the eos-timeout after EOS; {:.3} s of media was not \
                         delivered. Last failure: {detail}",
                        media as f64 / 1e9
                    ]
                );
                self.post_element_message(reporting::dropped(url, &undelivered));
            }
            SessionEvent::GaveUp { reason, undelivered, at_start } => {
                self.failed.store(true, Ordering::SeqCst);
                self.post_gave_up(url, &reason, &detail, undelivered.len(), at_start);
                // Wake a streaming thread waiting at EOS.
                self.canceller.notify.notify_waiters();
            }
        }
    }

    /// The session stopped for good: an error that names what, where and what to do, with the
    /// code that fits the cause.
    fn post_gave_up(&self, url: &str, failure: &Failure, detail: &str, undelivered: usize, at_start: bool) {
        let (_, _, text) = describe_failure(failure);
        let code = reporting::error_code(failure, at_start);
        let advice = reporting::advice(failure);
        let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
        let title = match failure {
            Failure::ProbeRefused { status } => {
                format!("The ingest server refused the stream: HTTP {status} {}", reporting::reason(*status))
            }
            Failure::Transport { error: TransportError::Tls(_) } => {
                "The TLS connection to the ingest server failed".into()
            }
            Failure::Transport { .. } | Failure::ProbeTimeout | Failure::ConnectTimeout => {
                "Could not connect to the ingest server".into()
            }
            _ => "The ingest server stopped taking the stream".to_string(),
        };
        let (why, lost) = if at_start {
            ("before any media was sent; retrying cannot mend this".to_string(), "Nothing was sent.".to_string())
        } else {
            (
                "gave up after the retry limit (max-retries, retry-timeout)".to_string(),
                format!("{undelivered} fragments were not delivered."),
            )
        };
        let tail = [advice, lost.as_str()].into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ");
        gst::element_imp_error!(self, code, ("{}", title), ["{url}: {text}{detail}; {why}. {tail}"]);
    }

    /// Moves what the core produced to the uploader, reporting notices.
    fn drain(&self, started: &mut Started) {
        while let Some(out) = started.stream.next_output() {
            match out {
                StreamOutput::Header(h) => {
                    for t in &h.tracks {
                        gst::info!(
                            CAT,
                            imp = self,
                            "track {} '{}': {} {} timescale {} bitrate {}",
                            t.info.track_id,
                            t.name,
                            t.info.kind.as_str(),
                            t.info.smooth_fourcc(),
                            t.info.timescale,
                            t.bitrate
                        );
                    }
                    started.tracks = h.tracks.clone();
                    started.uploader.set_header(h.bytes.clone());
                    if let Some(ads) = started.ads.as_mut() {
                        let outcomes = ads.on_media_header(&h);
                        let keys = self.apply(started, outcomes);
                        debug_assert!(keys.is_empty());
                    }
                }
                StreamOutput::Fragment(f) => {
                    gst::log!(
                        CAT,
                        imp = self,
                        "fragment {} of track {}: t={} d={} {} samples, {} bytes",
                        f.sequence,
                        f.track_id,
                        f.timing.time,
                        f.timing.duration,
                        f.sample_count,
                        f.wire_len()
                    );
                    started.uploader.push_fragment(f);
                }
                StreamOutput::Notice(n) => self.notice(&mut started.warned_no_sync, n),
            }
        }
    }

    fn notice(&self, warned_no_sync: &mut bool, notice: Notice) {
        match notice {
            Notice::IgnoredTracks(tracks) => {
                let list: Vec<String> = tracks.iter().map(|t| format!("{} ({})", t.track_id, t.handler)).collect();
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    ("Tracks that are not audio or video are not sent"),
                    ["Ignoring tracks {}", list.join(", ")]
                );
            }
            Notice::MeasuredBitrate { track_id, bitrate } => gst::info!(
                CAT,
                imp = self,
                "track {track_id} declares no bitrate; announcing {bitrate} b/s measured on its first fragment \
                 (set video-bitrate/audio-bitrate to choose)"
            ),
            Notice::NoSyncSampleAtStart { track_id, time } => {
                if !*warned_no_sync {
                    *warned_no_sync = true;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Format,
                        ("A video fragment does not start with a key frame"),
                        ["Track {track_id}, fragment at {time}: the encoder did not put a key frame at this \
                             fragment boundary. The sink asks upstream for one keyframe-lead before each boundary \
                             of its fragment-duration grid; an encoder that ignores force-key-unit events needs \
                             its key-frame interval set to the fragment-duration (x264enc key-int-max = fps x \
                             seconds)"]
                    );
                }
            }
            Notice::KeyFramesOffGrid { track_id, time } => gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                ("Video key frames are not on the fragment grid"),
                [
                    "Track {track_id}: no key frame came within a frame of a fragment-duration boundary for {} \
                  fragment durations, so its fragments start at its key frames from {time} on, off the grid \
                  (audio stays on it). Either upstream ignores the force-key-unit events the sink sends \
                  keyframe-lead before each boundary (set the encoder's key-frame interval to the \
                  fragment-duration), or the media's times were set on arrival (an appsrc with do-timestamp \
                  handing over whole fragments: use timestamp-mode=pipeline with timestamp-offset). \
                  Redundant encoders write identical fragments only with key frames on the grid.",
                    fmp4ingest_core::timeline::OFF_GRID_AFTER
                ]
            ),
            Notice::Discontinuity { track_id, expected, actual } => {
                gst::warning!(CAT, imp = self, "track {track_id}: fragment at {actual}, expected {expected}")
            }
            Notice::RepeatedHeader => gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                ("The muxer sent its header (ftyp, moov) again mid-stream"),
                ["It describes the same tracks, so the stream goes on unchanged; a muxer that restarts \
                  (a new segment, a flush) does this. A different set of tracks would end the stream."]
            ),
        }
    }

    /// A fault in the input: everything accepted before it is delivered (within `eos-timeout`,
    /// as at EOS), then the error names the fault. Called with the state locked; unlocks it to
    /// wait, so that the uploader's reports get through.
    fn input_error(&self, mut state: MutexGuard<'_, State>, error: fmp4ingest_core::Error) {
        let State::Started(started) = &mut *state else { return };
        self.drain(started);
        started.uploader.finish();
        let (waiter, wait, url) = (started.uploader.waiter(), started.eos_wait, started.url.redacted());
        drop(state);
        let cancelled = || self.canceller.flushing.load(Ordering::SeqCst);
        let delivered = match waiter.done(wait, &self.canceller.notify, cancelled) {
            WaitOutcome::Ready if !self.failed.load(Ordering::SeqCst) => {
                "every fragment accepted before it was delivered and the POST ended properly".to_string()
            }
            _ => format!("the fragments accepted before it could not all be delivered within {wait:?}"),
        };
        self.failed.store(true, Ordering::SeqCst);
        gst::element_imp_error!(
            self,
            gst::StreamError::Format,
            ("Invalid input from the muxer: {}", error),
            ["The stream to {url} stops here; {delivered}. fmp4ingestsink needs fragmented MP4 from \
                 mp4mux/ismlmux/qtmux (fragment-duration > 0, streamable=true), isofmp4mux or cmafmux."]
        );
    }

    /// The running time of a buffer's presentation time: through the segment when it is in
    /// time (isofmp4mux, cmafmux); the qtmux family sends a byte segment, with its input's
    /// running times on the sample buffers.
    fn running_time(&self, buffer: &gst::BufferRef) -> Option<u64> {
        let ts = buffer.pts().or(buffer.dts())?;
        let segment = self.obj().segment();
        match segment.downcast_ref::<gst::ClockTime>() {
            Some(s) => s.to_running_time(ts).map(gst::ClockTime::nseconds),
            None => Some(ts.nseconds()),
        }
    }

    /// Places the target timeline and starts requesting key frames: when the pipeline starts
    /// playing (the clock and base time are known), or at the first buffer of a non-live
    /// preroll.
    ///
    /// Pipeline mode: running time plus `timestamp-offset`. UTC mode: the UTC instant of the
    /// running time, from the pipeline clock — base time plus running time is clock time, which
    /// `utc` maps to UTC (fixed for realtime, TAI, PTP and NTP clocks, else measured once, here).
    /// Before the pipeline plays (a non-live preroll) the first buffer is taken as now.
    fn place_timeline(&self, started: &mut Started, first_running_time: Option<u64>, playing: bool) {
        let (target_offset, key_units) = self.timeline_origin(first_running_time, playing);
        started.stream.set_target_offset(target_offset);
        started.timeline_placed = true;
        if key_units.is_some() {
            started.key_units = key_units;
        }
    }

    /// Where running time 0 lies on the target timeline (see [`Fmp4IngestSink::place_timeline`]),
    /// and the key frame requests at the boundaries, started when the clock runs.
    fn timeline_origin(&self, first_running_time: Option<u64>, playing: bool) -> (i128, Option<KeyUnitScheduler>) {
        let s = self.settings();
        let obj = self.obj();
        let clock = obj.clock().filter(|_| playing);
        let base_time = obj.base_time();
        let offset = i128::from(s.timestamp_offset);
        let target_offset = match s.timestamp_mode {
            TimestampMode::Pipeline => offset,
            TimestampMode::Utc => {
                let utc_now = utc::utc_now();
                match (&clock, base_time) {
                    (Some(clock), Some(base)) => {
                        let (clock_to_utc, mapping) = utc::clock_to_utc(clock, utc_now);
                        gst::info!(
                            CAT,
                            imp = self,
                            "{} time to UTC: {mapping:?}, {clock_to_utc} ns",
                            clock.type_().name()
                        );
                        i128::from(base.nseconds()) + clock_to_utc + offset
                    }
                    _ => utc_now - i128::from(first_running_time.unwrap_or(0)) + offset,
                }
            }
        };
        gst::info!(CAT, imp = self, "running time 0 is {target_offset} ns on the {:?} timeline", s.timestamp_mode);
        let mut key_units = None;
        if s.fragment_duration > 0
            && s.keyframe_lead > 0
            && let (Some(clock), Some(base)) = (clock, base_time)
        {
            let b = Boundaries {
                fragment_duration_ns: s.fragment_duration,
                target_offset_ns: target_offset,
                lead_ns: s.keyframe_lead,
            };
            let scheduler = KeyUnitScheduler::start(obj.static_pad("sink").expect("sink pad"), clock, base, b);
            gst::debug!(
                CAT,
                imp = self,
                "requesting key frames at the boundaries once {} video encoder(s) upstream have started",
                scheduler.encoders()
            );
            key_units = Some(scheduler);
        }
        (target_offset, key_units)
    }

    fn stats(&self) -> gst::Structure {
        let base = self.obj().stats();
        match &*self.lock_state() {
            State::Started(s) => {
                let (stats, now) = s.uploader.stats();
                let declared: Vec<reporting::DeclaredTrack> = s.tracks.iter().map(Into::into).collect();
                reporting::stats_structure(s.url.stream_id(), &s.url.redacted(), &stats, now, &declared, Some(&base))
            }
            State::Cmaf(c) => c.path.stats(Some(&base)),
            State::Stopped => {
                let stopped = StreamStats { state: "Stopped", ..StreamStats::default() };
                reporting::stats_structure("", "", &stopped, Duration::ZERO, &[], Some(&base))
            }
        }
    }
}

fn ns_property(name: &str, nick: &str, blurb: &str, min: u64, default: u64) -> glib::ParamSpec {
    glib::ParamSpecUInt64::builder(name)
        .nick(nick)
        .blurb(blurb)
        .minimum(min)
        .maximum(MAX_TIMEOUT)
        .default_value(default)
        .mutable_ready()
        .build()
}

impl ObjectImpl for Fmp4IngestSink {
    fn constructed(&self) {
        self.parent_constructed();
        // A network sink sends as soon as data is there; live sources pace themselves. Nothing
        // to preroll either: PLAYING comes with the pipeline, not with the first buffer (which the
        // muxer holds for a fragment), so that key frames are requested from the first boundary.
        self.obj().set_sync(false);
        self.obj().set_async(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            let mut properties = vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("Ingest URL ending in /Streams(<id>), http:// or https://")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("video-bitrate")
                    .nick("Video bitrate")
                    .blurb("Bitrate (bits/s) announced for video tracks; 0 = as the stream declares it (btrt), else measured")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("audio-bitrate")
                    .nick("Audio bitrate")
                    .blurb("Bitrate (bits/s) announced for audio tracks; 0 = as the stream declares it (esds, btrt), else measured")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                ns_property(
                    "connect-timeout",
                    "Connect timeout",
                    "Time (ns) allowed to connect and for the probe to be answered; 0 = the protocol's: 10 s for \
                     smooth, about one segment duration (1 to 6 s) for cmaf",
                    0,
                    d.connect_timeout,
                ),
                ns_property(
                    "send-timeout",
                    "Send timeout",
                    "Time (ns) without progress while data waits before the connection is abandoned and reopened; \
                     0 = 1.5 x the fragment duration",
                    0,
                    d.send_timeout,
                ),
                ns_property(
                    "final-response-timeout",
                    "Final response timeout",
                    "Time (ns) to wait for the server's response once a body ended (smooth: the end of the stream; \
                     cmaf: every request); 0 = the protocol's: 10 s for smooth, twice the segment duration (2 to \
                     12 s) for cmaf",
                    0,
                    d.final_response_timeout,
                ),
                glib::ParamSpecInt::builder("max-retries")
                    .nick("Maximum retries")
                    .blurb("Consecutive failed attempts before giving up with an error; -1 = retry forever")
                    .minimum(-1)
                    .default_value(d.max_retries)
                    .mutable_ready()
                    .build(),
                ns_property(
                    "retry-timeout",
                    "Retry timeout",
                    "Time (ns) without a working connection before giving up with an error; 0 = never give up",
                    0,
                    d.retry_timeout,
                ),
                ns_property(
                    "retry-delay",
                    "Retry delay",
                    "Backoff (ns) before the second retry, doubling after each failure up to retry-delay-max, \
                     with +-25% jitter; the first retry is at once",
                    0,
                    d.retry_delay,
                ),
                ns_property(
                    "retry-delay-max",
                    "Maximum retry delay",
                    "Cap (ns) of the backoff between retries",
                    0,
                    d.retry_delay_max,
                ),
                glib::ParamSpecBoolean::builder("reprobe")
                    .nick("Probe on reconnect")
                    .blurb("Send the empty probe POST again before every reconnect")
                    .default_value(d.reprobe)
                    .mutable_ready()
                    .build(),
                ns_property(
                    "forward-buffer-duration",
                    "Forward buffer duration",
                    "Media time (ns) that may wait while the server is unreachable; beyond it the oldest fragments \
                     are dropped",
                    0,
                    d.forward_buffer_duration,
                ),
                glib::ParamSpecUInt64::builder("forward-buffer-size")
                    .nick("Forward buffer size")
                    .blurb("Bytes that may wait while the server is unreachable; beyond it the oldest fragments are dropped")
                    .minimum(0)
                    .default_value(d.forward_buffer_size)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("catch-up-rate")
                    .nick("Catch-up rate")
                    .blurb("After an outage the backlog goes out at most this many times faster than real time; 0 = unpaced")
                    .minimum(0.0)
                    .maximum(100.0)
                    .default_value(d.catch_up_rate)
                    .mutable_ready()
                    .build(),
                ns_property(
                    "eos-timeout",
                    "EOS timeout",
                    "At end of stream, time (ns) to keep trying to deliver what is left before giving up with a warning",
                    0,
                    d.eos_timeout,
                ),
                glib::ParamSpecUInt::builder("send-buffer-size")
                    .nick("Send buffer size")
                    .blurb(
                        "Kernel send buffer (SO_SNDBUF, bytes) of the POST connection; 0 = the kernel's autotuning. \
                         Smaller means less data at risk and stalls seen sooner, but must hold the link's \
                         bandwidth x delay",
                    )
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("user-agent")
                    .nick("User agent")
                    .blurb("User-Agent header of every request")
                    .default_value(Some(DEFAULT_USER_AGENT.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("tfdt")
                    .nick("Write tfdt")
                    .blurb("Write a tfdt (decode time) box next to tfxd in every fragment")
                    .default_value(d.tfdt)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("timestamp-mode", TimestampMode::Pipeline)
                    .nick("Timestamp mode")
                    .blurb(
                        "Where times come from: the pipeline's running time, or UTC since the Unix epoch from \
                         the pipeline clock (the same in redundant encoders and across restarts)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("fragment-duration")
                    .nick("Fragment duration")
                    .blurb(
                        "Output fragments start at the first sample at or after each multiple of this (ns) on the \
                         timeline, and their times are those multiples; 0 = send the muxer's fragments as they are",
                    )
                    .maximum(MAX_TIMEOUT)
                    .default_value(d.fragment_duration)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt64::builder("timestamp-offset")
                    .nick("Timestamp offset")
                    .blurb("Added to every time (ns), like a configured timestamp offset")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("tfxd-version")
                    .nick("tfxd version")
                    .blurb(
                        "1, or 2: tfxd v1 fields followed by a 64-bit fragment_index (a layout inferred, not \
                         published: docs/protocol.md §4.4)",
                    )
                    .minimum(1)
                    .maximum(2)
                    .default_value(d.tfxd_version)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("keyframe-lead")
                    .nick("Key frame lead")
                    .blurb(
                        "How long (ns) before each fragment boundary a key frame is requested upstream \
                         (GstForceKeyUnit); 0 = do not request",
                    )
                    .maximum(MAX_TIMEOUT)
                    .default_value(d.keyframe_lead)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("send-delay")
                    .nick("Send delay")
                    .blurb("Every fragment waits this long (ns) before it is sent: the second encoder of a redundant pair")
                    .maximum(10 * SECOND)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sparse-stream-id")
                    .nick("Sparse stream id")
                    .blurb(
                        "Streams() id of the sparse (SCTE-35) stream, POSTed next to the media stream; empty = no \
                         sparse track, ad events are ignored with a warning",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sparse-track-name")
                    .nick("Sparse track name")
                    .blurb("trackName of the sparse track in its manifest")
                    .default_value(Some(DEFAULT_SPARSE_TRACK_NAME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sparse-scheme")
                    .nick("Sparse scheme")
                    .blurb("Scheme of the sparse track's messages")
                    .default_value(Some(fmp4ingest_core::sparse::SCTE35_SCHEME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sparse-parent-track")
                    .nick("Sparse parent track")
                    .blurb("trackName of the track whose timeline the sparse track uses; empty = the first video track")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("splice-mode", SpliceMode::default())
                    .nick("Splice mode")
                    .blurb(
                        "What the media does at an ad splice: nothing, a key frame, or a key frame that also starts \
                         a new fragment",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("splice-lead")
                    .nick("Splice lead")
                    .blurb(
                        "Ad messages go out this long (ns) before their splice, at that instant exactly on the \
                         parent's timeline (at least 4 s)",
                    )
                    .minimum(fmp4ingest_core::ad_signals::MIN_LEAD_NS)
                    .maximum(300 * SECOND)
                    .default_value(d.splice_lead)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ca-file")
                    .nick("CA file")
                    .blurb("PEM file of extra root certificates to trust, besides the system's")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("tls-verify")
                    .nick("Verify TLS")
                    .blurb("Verify the server's certificate; false accepts any certificate (self-signed), with a warning")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("client-cert")
                    .nick("Client certificate")
                    .blurb("PEM file of the client certificate (chain) for mutual TLS; with client-key")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("client-key")
                    .nick("Client key")
                    .blurb("PEM file of the client certificate's private key")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("user-id")
                    .nick("User id")
                    .blurb("User for HTTP Basic authentication (wins over user:password@ in the location)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("user-pw")
                    .nick("User password")
                    .blurb("Password for HTTP Basic authentication; write-only, never shown")
                    .write_only()
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("extra-headers")
                    .nick("Extra headers")
                    .blurb(
                        "Headers sent with every request: field name = header name, value = header value (e.g. \
                         Authorization=\"Bearer ...\"); values read back as ***",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("content-type")
                    .nick("Content type")
                    .blurb("Content-Type of the POSTs; none by default")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("proxy")
                    .nick("Proxy")
                    .blurb(
                        "HTTP proxy for every request, http://host:port (port 8080 by default); every request goes \
                         through a CONNECT tunnel. The environment's http_proxy/https_proxy are not used",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("proxy-id")
                    .nick("Proxy user id")
                    .blurb("User for the proxy's Basic authentication (wins over user:password@ in proxy)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("proxy-pw")
                    .nick("Proxy password")
                    .blurb("Password for the proxy's Basic authentication; write-only, never shown")
                    .write_only()
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("follow-redirects")
                    .nick("Follow redirects")
                    .blurb(
                        "Follow a redirect of the probe; the POST then goes to the new URL (never to another origin \
                         with credentials, never from HTTPS to HTTP). The POST itself never follows one",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                // BaseSink has a `stats` property already; ours adds the stream's and the tracks'.
                glib::ParamSpecOverride::for_class::<gst_base::BaseSink>("stats"),
            ];
            properties.extend(CmafSettings::properties());
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        let v = value;
        match pspec.name() {
            "location" => s.location = v.get().expect("type checked upstream"),
            "video-bitrate" => s.video_bitrate = v.get().expect("type checked upstream"),
            "audio-bitrate" => s.audio_bitrate = v.get().expect("type checked upstream"),
            "connect-timeout" => s.connect_timeout = v.get().expect("type checked upstream"),
            "send-timeout" => s.send_timeout = v.get().expect("type checked upstream"),
            "final-response-timeout" => s.final_response_timeout = v.get().expect("type checked upstream"),
            "max-retries" => s.max_retries = v.get().expect("type checked upstream"),
            "retry-timeout" => s.retry_timeout = v.get().expect("type checked upstream"),
            "retry-delay" => s.retry_delay = v.get().expect("type checked upstream"),
            "retry-delay-max" => s.retry_delay_max = v.get().expect("type checked upstream"),
            "reprobe" => s.reprobe = v.get().expect("type checked upstream"),
            "forward-buffer-duration" => s.forward_buffer_duration = v.get().expect("type checked upstream"),
            "forward-buffer-size" => s.forward_buffer_size = v.get().expect("type checked upstream"),
            "catch-up-rate" => s.catch_up_rate = v.get().expect("type checked upstream"),
            "eos-timeout" => s.eos_timeout = v.get().expect("type checked upstream"),
            "send-buffer-size" => s.send_buffer_size = v.get().expect("type checked upstream"),
            "user-agent" => {
                s.user_agent = v.get::<Option<String>>().expect("type checked upstream").unwrap_or_default()
            }
            "tfdt" => s.tfdt = v.get().expect("type checked upstream"),
            "timestamp-mode" => s.timestamp_mode = v.get().expect("type checked upstream"),
            "fragment-duration" => s.fragment_duration = v.get().expect("type checked upstream"),
            "timestamp-offset" => s.timestamp_offset = v.get().expect("type checked upstream"),
            "tfxd-version" => s.tfxd_version = v.get().expect("type checked upstream"),
            "keyframe-lead" => s.keyframe_lead = v.get().expect("type checked upstream"),
            "send-delay" => s.send_delay = v.get().expect("type checked upstream"),
            "sparse-stream-id" => s.sparse_stream_id = v.get().expect("type checked upstream"),
            "sparse-track-name" => {
                s.sparse_track_name = v.get::<Option<String>>().expect("type checked upstream").unwrap_or_default()
            }
            "sparse-scheme" => {
                s.sparse_scheme = v.get::<Option<String>>().expect("type checked upstream").unwrap_or_default()
            }
            "sparse-parent-track" => s.sparse_parent_track = v.get().expect("type checked upstream"),
            "splice-mode" => s.splice_mode = v.get().expect("type checked upstream"),
            "splice-lead" => s.splice_lead = v.get().expect("type checked upstream"),
            "ca-file" => s.auth.ca_file = v.get().expect("type checked upstream"),
            "tls-verify" => s.auth.tls_verify = v.get().expect("type checked upstream"),
            "client-cert" => s.auth.client_cert = v.get().expect("type checked upstream"),
            "client-key" => s.auth.client_key = v.get().expect("type checked upstream"),
            "user-id" => s.auth.user_id = v.get().expect("type checked upstream"),
            "user-pw" => s.auth.user_pw = v.get::<Option<String>>().expect("type checked upstream").map(Secret),
            "extra-headers" => {
                let h = v.get::<Option<gst::Structure>>().expect("type checked upstream");
                s.auth.extra_headers = h.map(|h| http_settings::headers_from_structure(&h)).unwrap_or_default();
            }
            "content-type" => s.auth.content_type = v.get().expect("type checked upstream"),
            "follow-redirects" => s.follow_redirects = v.get().expect("type checked upstream"),
            "proxy" => s.auth.proxy = v.get().expect("type checked upstream"),
            "proxy-id" => s.auth.proxy_id = v.get().expect("type checked upstream"),
            "proxy-pw" => s.auth.proxy_pw = v.get::<Option<String>>().expect("type checked upstream").map(Secret),
            other => {
                if !s.cmaf.set(other, v) {
                    gst::warning!(CAT, imp = self, "unknown property {other}")
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.stats().to_value();
        }
        let s = self.settings();
        match pspec.name() {
            "location" => s.location.to_value(),
            "video-bitrate" => s.video_bitrate.to_value(),
            "audio-bitrate" => s.audio_bitrate.to_value(),
            "connect-timeout" => s.connect_timeout.to_value(),
            "send-timeout" => s.send_timeout.to_value(),
            "final-response-timeout" => s.final_response_timeout.to_value(),
            "max-retries" => s.max_retries.to_value(),
            "retry-timeout" => s.retry_timeout.to_value(),
            "retry-delay" => s.retry_delay.to_value(),
            "retry-delay-max" => s.retry_delay_max.to_value(),
            "reprobe" => s.reprobe.to_value(),
            "forward-buffer-duration" => s.forward_buffer_duration.to_value(),
            "forward-buffer-size" => s.forward_buffer_size.to_value(),
            "catch-up-rate" => s.catch_up_rate.to_value(),
            "eos-timeout" => s.eos_timeout.to_value(),
            "send-buffer-size" => s.send_buffer_size.to_value(),
            "user-agent" => s.user_agent.to_value(),
            "tfdt" => s.tfdt.to_value(),
            "timestamp-mode" => s.timestamp_mode.to_value(),
            "fragment-duration" => s.fragment_duration.to_value(),
            "timestamp-offset" => s.timestamp_offset.to_value(),
            "tfxd-version" => s.tfxd_version.to_value(),
            "keyframe-lead" => s.keyframe_lead.to_value(),
            "send-delay" => s.send_delay.to_value(),
            "sparse-stream-id" => s.sparse_stream_id.to_value(),
            "sparse-track-name" => s.sparse_track_name.to_value(),
            "sparse-scheme" => s.sparse_scheme.to_value(),
            "sparse-parent-track" => s.sparse_parent_track.to_value(),
            "splice-mode" => s.splice_mode.to_value(),
            "splice-lead" => s.splice_lead.to_value(),
            "ca-file" => s.auth.ca_file.to_value(),
            "tls-verify" => s.auth.tls_verify.to_value(),
            "client-cert" => s.auth.client_cert.to_value(),
            "client-key" => s.auth.client_key.to_value(),
            "user-id" => s.auth.user_id.to_value(),
            "extra-headers" => (!s.auth.extra_headers.is_empty())
                .then(|| http_settings::redacted_headers_structure(&s.auth.extra_headers))
                .to_value(),
            "content-type" => s.auth.content_type.to_value(),
            "follow-redirects" => s.follow_redirects.to_value(),
            "proxy" => s.auth.proxy.as_deref().map(crate::http::proxy::redact).to_value(),
            "proxy-id" => s.auth.proxy_id.to_value(),
            other => s.cmaf.get(other).unwrap_or_else(|| glib::Value::from_type(pspec.value_type())),
        }
    }
}

impl GstObjectImpl for Fmp4IngestSink {}

impl ElementImpl for Fmp4IngestSink {
    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToPlaying {
            // Key frames must be requested from the first boundary on, long before the muxer
            // hands over its first fragment.
            let mut state = self.lock_state();
            if let State::Started(started) = &mut *state
                && !started.timeline_placed
            {
                // The state still reads PAUSED until this returns.
                self.place_timeline(started, None, true);
            }
            if let State::Cmaf(c) = &mut *state
                && !c.timeline_placed
            {
                self.place_cmaf_timeline(c, None, true);
            }
        }
        Ok(result)
    }

    /// Ad events given straight to the element (`gst_element_send_event()`); anything else
    /// goes the usual way.
    fn send_event(&self, event: gst::Event) -> bool {
        if ad_events::ad_structure(&event).is_some() {
            return self.ad_event(&event);
        }
        self.parent_send_event(event)
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Fragmented MP4 live ingest sink",
                "Sink/Network",
                "Pushes fragmented MP4 to a Smooth Streaming / Azure-style live ingest endpoint (.../Streams(<id>)), \
                 with a sparse SCTE-35 track fed by fmp4ingest-splice / fmp4ingest-scte35 / tsdemux scte-sit events; \
                 or, with protocol=cmaf, to a DASH-IF Live Media Ingest (CMAF ingest) publishing point, with ad \
                 signals in a timed metadata track",
                "fmp4ingest developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("video/quicktime")
                .field("variant", gst::List::new(["iso", "iso-fragmented", "cmaf", "apple"]))
                .build();
            vec![
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps)
                    .expect("valid pad template"),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for Fmp4IngestSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings();
        let location = s.location.clone().ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("No location set"),
                ["Set location to the ingest URL, e.g. http://host/live.isml/Streams(video) (protocol=cmaf: the \
                  publishing point, e.g. http://host/live.isml)"]
            )
        })?;
        if s.cmaf.protocol == Protocol::Cmaf {
            return self.start_cmaf(&s, &location);
        }
        let url = IngestUrl::parse(&location).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid location: {}", e),
                ["location = {}", fmp4ingest_core::ingest_url::redact_url(&location)]
            )
        })?;
        let stream = IngestStream::new(StreamConfig {
            stream_id: url.stream_id().to_string(),
            video_bitrate: (s.video_bitrate > 0).then_some(s.video_bitrate),
            audio_bitrate: (s.audio_bitrate > 0).then_some(s.audio_bitrate),
            fragment: FragmentOptions {
                tfdt: s.tfdt,
                tfxd_version: s.tfxd_version as u8,
                ..FragmentOptions::default()
            },
            grid: GridConfig {
                mode: match s.timestamp_mode {
                    TimestampMode::Pipeline => timeline::TimestampMode::Pipeline,
                    TimestampMode::Utc => timeline::TimestampMode::Utc,
                },
                fragment_duration_ns: s.fragment_duration,
                target_offset_ns: i128::from(s.timestamp_offset),
            },
            // A splice may cut a grid interval of each track into parts, each numbered.
            sequence_parts: if s.splice_mode == SpliceMode::Segment { SEGMENT_SPLICE_PARTS } else { 1 },
            ..StreamConfig::default()
        });
        let session = s.session_config();
        let client = self.client(&s, &url, session.connect_timeout)?;
        // The credentials go in the Authorization header, never in the request line.
        let request_url = url.without_credentials();
        let http = HttpConfig { url: request_url, client: client.clone(), follow_redirects: s.follow_redirects };
        // Enough for a last outage (eos-timeout), a connection and the final response.
        let eos_wait =
            session.eos_timeout + session.connect_timeout + session.final_response_timeout + Duration::from_secs(5);
        let weak = self.obj().downgrade();
        let shown_url = url.redacted();
        let report = std::sync::Arc::new(move |r: Report<SessionEvent>| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().on_report(&shown_url, r);
            }
        });
        self.failed.store(false, Ordering::SeqCst);
        let ads = self.start_ads(&s, &http.url, &session, &client)?;
        let uploader = Uploader::start(http, session, report);
        gst::info!(CAT, imp = self, "started, probing {url}");
        *self.lock_state() = State::Started(Box::new(Started {
            url,
            stream,
            uploader,
            tracks: Vec::new(),
            eos_wait,
            warned_no_sync: false,
            live: None,
            timeline_placed: false,
            key_units: None,
            ads,
            media_ns: None,
        }));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the uploader closes its connections.
        *self.lock_state() = State::Stopped;
        gst::info!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(gst::FlowError::Error);
        }
        // A view of the buffer's memory: the mdat payload travels to the socket without a copy.
        let mapped = buffer.clone().into_mapped_buffer_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::ResourceError::Read, ["Failed to map buffer"]);
            gst::FlowError::Error
        })?;
        let bytes = Bytes::from_owner(mapped);
        let running_time = self.running_time(buffer);
        let end = running_time.map(|rt| rt + buffer.duration().map_or(0, gst::ClockTime::nseconds));
        let mut state = self.lock_state();
        if let State::Cmaf(_) = &*state {
            return self.cmaf_render(state, bytes, running_time, end);
        }
        let State::Started(started) = &mut *state else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ["Not started"]);
            return Err(gst::FlowError::Error);
        };
        if started.live.is_none() {
            // Unknown (the query failed) counts as live: never block.
            let live = self.obj().query_latency().map_or(true, |(live, upstream_live, _, _)| live || upstream_live);
            gst::info!(CAT, imp = self, "upstream is {}", if live { "live" } else { "not live: waiting for room" });
            started.uploader.set_drop_oldest(live);
            started.live = Some(live);
        }
        if !started.timeline_placed {
            let playing = self.obj().current_state() == gst::State::Playing;
            self.place_timeline(started, running_time, playing);
        }
        if let Err(e) = started.stream.push_timed(bytes, running_time) {
            self.input_error(state, e);
            return Err(gst::FlowError::Error);
        }
        self.drain(started);
        if let Some(end) = end {
            started.media_ns = Some(started.media_ns.map_or(end, |m| m.max(end)));
            self.send_due_signals(started, false);
        }
        if started.live == Some(false) {
            let waiter = started.uploader.waiter();
            drop(state);
            waiter.room(&self.canceller.notify, || self.canceller.flushing.load(Ordering::SeqCst));
            if self.canceller.flushing.load(Ordering::SeqCst) {
                return Err(gst::FlowError::Flushing);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if ad_events::ad_structure(&event).is_some() {
            return self.ad_event(&event);
        }
        if let gst::EventView::Eos(_) = event.view()
            && !self.finish_stream()
        {
            return false;
        }
        self.parent_event(event)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.canceller.flushing.store(true, Ordering::SeqCst);
        self.canceller.notify.notify_waiters();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.canceller.flushing.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Fmp4IngestSink {
    /// EOS: flush the core, end the body, wait for the final response. Returns false when the
    /// stream could not be finished (the error is already posted).
    fn finish_stream(&self) -> bool {
        let mut state = self.lock_state();
        if let State::Cmaf(_) = &*state {
            return self.cmaf_finish(state);
        }
        let State::Started(started) = &mut *state else { return true };
        if let Err(e) = started.stream.finish() {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                ("The muxer's output ended in the middle of a box: {}", e),
                ["Everything before it was sent to {}", started.url]
            );
        }
        self.drain(started);
        self.send_due_signals(started, true);
        started.uploader.finish();
        let wait = started.eos_wait;
        let waiter = started.uploader.waiter();
        let sparse = started.ads.as_ref().map(|a| (a.drain_handle(), a.url().to_string()));
        let url = started.url.redacted();
        // Wait without holding the state lock, so that reports from the uploader get through.
        drop(state);
        let cancelled = || self.canceller.flushing.load(Ordering::SeqCst) || self.failed.load(Ordering::SeqCst);
        let started_at = std::time::Instant::now();
        let outcome = waiter.done(wait, &self.canceller.notify, cancelled);
        if let Some((drain, sparse_url)) = sparse {
            let left = drain.drain(wait.saturating_sub(started_at.elapsed()).max(Duration::from_secs(1)));
            if left > 0 {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("{} sparse POSTs could not be delivered before the end of the stream", left),
                    ["{sparse_url} did not accept them in time; fmp4ingestsink-sparse-failed messages name them"]
                );
            }
        }
        match outcome {
            WaitOutcome::Ready | WaitOutcome::Cancelled => !self.failed.load(Ordering::SeqCst),
            WaitOutcome::TimedOut => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("The stream did not finish in time"),
                    ["{} did not complete within {:?} after end of stream", url, wait]
                );
                true
            }
        }
    }

    /// The sparse stream, when `sparse-stream-id` is set: its own URL next to the media's, the
    /// same timeouts and retry delays.
    fn start_ads(
        &self,
        s: &Settings,
        url: &IngestUrl,
        session: &SessionConfig,
        client: &Client,
    ) -> Result<Option<Ads>, gst::ErrorMessage> {
        let Some(stream_id) = s.sparse_stream_id.clone().filter(|id| !id.is_empty()) else { return Ok(None) };
        let settings = AdSettings {
            stream_id,
            track_name: s.sparse_track_name.clone(),
            scheme: s.sparse_scheme.clone(),
            parent_track: s.sparse_parent_track.clone().filter(|p| !p.is_empty()),
            splice_mode: match s.splice_mode {
                SpliceMode::None => fmp4ingest_core::ad_signals::SpliceMode::None,
                SpliceMode::KeyFrame => fmp4ingest_core::ad_signals::SpliceMode::KeyFrame,
                SpliceMode::Segment => fmp4ingest_core::ad_signals::SpliceMode::Segment,
            },
            lead_ns: s.splice_lead,
        };
        let http = SparseHttp {
            url: url.clone(),
            client: client.clone(),
            request_timeout: session.connect_timeout + session.final_response_timeout,
        };
        let config = fmp4ingest_core::session::sparse::SparseConfig {
            retry_delay: session.retry_delay,
            retry_delay_max: session.retry_delay_max,
            max_attempts: session.max_retries.map(|r| r.saturating_add(1)),
            jitter_seed: session.jitter_seed.rotate_left(17),
        };
        let weak = self.obj().downgrade();
        let report = std::sync::Arc::new(move |r: SparseReport| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().on_sparse_report(r);
            }
        });
        let ads = Ads::start(settings, url, http, config, report)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{}", e), ["{}", url]))?;
        gst::info!(CAT, imp = self, "sparse stream at {}", ads.url());
        Ok(Some(ads))
    }

    /// The HTTP client: the files named by the properties are read here, and anything wrong
    /// with them stops the start with an error that names the property.
    fn client(&self, s: &Settings, url: &IngestUrl, connect_timeout: Duration) -> Result<Client, gst::ErrorMessage> {
        let send_buffer = (s.send_buffer_size > 0).then_some(s.send_buffer_size);
        let mut settings = s.auth.client_settings(connect_timeout, &s.user_agent, send_buffer).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid TLS, authentication or proxy settings: {}", e),
                ["Check ca-file, client-cert, client-key, user-id/user-pw, extra-headers and proxy"]
            )
        })?;
        // Credentials in the location, when the properties give none.
        if settings.basic.is_none() {
            settings.basic = crate::http::url_credentials(url.as_str());
        }
        let verify = settings.tls.verify;
        let client = Client::new(settings).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid TLS or authentication settings: {}", e),
                ["Check ca-file (PEM certificates), client-cert and client-key (PEM), user-agent and extra-headers"]
            )
        })?;
        if !verify {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
                ("TLS certificate verification is off (tls-verify=false)"),
                ["Any certificate is accepted, so anyone on the path can read and change the stream; use ca-file \
                  to trust a private CA instead"]
            );
        }
        Ok(client)
    }

    /// What the sparse stream's POSTs did.
    fn on_sparse_report(&self, r: SparseReport) {
        let url = match &*self.lock_state() {
            State::Started(s) => s.ads.as_ref().map(|a| a.url().to_string()).unwrap_or_default(),
            State::Stopped | State::Cmaf(_) => String::new(),
        };
        let detail = r.detail.unwrap_or_default();
        gst::info!(CAT, imp = self, "sparse stream: {:?} {detail}", r.event);
        if let fmp4ingest_core::session::sparse::SparseEvent::GaveUp { post, attempts } = &r.event {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ("A sparse POST was given up after {} attempts", attempts),
                ["{url} did not accept {post:?}. Last failure: {detail}"]
            );
        }
        self.post_element_message(reporting::sparse_event(&url, &r.event, &detail));
    }

    /// An ad event, from the sink pad or `send_event()`. True when it was taken.
    fn ad_event(&self, event: &gst::Event) -> bool {
        let Some(s) = ad_events::ad_structure(event) else { return false };
        let mut state = self.lock_state();
        if let State::Cmaf(_) = &*state {
            return self.cmaf_ad_event(state, s, event.seqnum());
        }
        let State::Started(started) = &mut *state else {
            drop(state);
            self.carry_out(vec![Outcome::Warn {
                title: "Ad signal ignored".into(),
                detail: "The element is not running; ad events are taken from READY to PAUSED on.".into(),
            }]);
            return false;
        };
        let Some(ads) = started.ads.as_mut() else {
            drop(state);
            self.carry_out(vec![Outcome::Warn {
                title: format!("Ad signal ignored ({})", s.name()),
                detail: "There is no sparse track: set sparse-stream-id to the Streams() id of the sparse stream."
                    .into(),
            }]);
            return false;
        };
        let outcomes = ads.on_event(s, event.seqnum(), started.media_ns);
        let accepted = !outcomes.iter().any(|o| matches!(o, Outcome::Post(p) if p.name() == reporting::SIGNAL_REFUSED));
        let keys = self.apply(started, outcomes);
        // A short lead is due at once.
        self.send_due_signals(started, false);
        for rt in &keys {
            gst::debug!(CAT, imp = self, "asking for a key frame at running time {rt} (splice)");
        }
        // Until the encoders upstream have started, the scheduler holds them (see key_units).
        let keys = match &started.key_units {
            Some(scheduler) => keys.into_iter().filter(|rt| !scheduler.hold_unless_open(*rt)).collect(),
            None => keys,
        };
        drop(state);
        self.push_key_units(keys);
        accepted
    }

    /// Sends the messages whose time came; at EOS (`flush`), all of them.
    fn send_due_signals(&self, started: &mut Started, flush: bool) {
        let (Some(ads), Some(media_ns)) = (started.ads.as_mut(), started.media_ns) else { return };
        let Some(parent) = ads.parent_track_id() else { return };
        let stream = &started.stream;
        let to_ticks = |ns: u64| stream.track_time(parent, ns);
        let outcomes = if flush { ads.flush(media_ns, to_ticks) } else { ads.due(media_ns, to_ticks) };
        let keys = self.apply(started, outcomes);
        debug_assert!(keys.is_empty());
    }

    /// Carries out what needs the state (fragment cuts); returns the key frames to ask for once
    /// the state is unlocked, and posts the rest.
    fn apply(&self, started: &mut Started, outcomes: Vec<Outcome>) -> Vec<u64> {
        let mut keys = Vec::new();
        let mut rest = Vec::new();
        for o in outcomes {
            match o {
                Outcome::KeyUnit(rt) => keys.push(rt),
                Outcome::Cut(rt) => {
                    if !started.stream.add_cut(rt) {
                        rest.push(Outcome::Warn {
                            title: "No new fragment at the splice".into(),
                            detail: format!(
                                "splice-mode=segment cannot start a fragment at running time {rt} ns: {}",
                                if self.settings().fragment_duration == 0 {
                                    "fragment-duration is 0 (the muxer's fragments are kept as they are)"
                                } else {
                                    "the media is already past it"
                                }
                            ),
                        });
                    }
                }
                Outcome::Uncut(rt) => {
                    started.stream.remove_cut(rt);
                }
                other => rest.push(other),
            }
        }
        self.carry_out(rest);
        keys
    }

    fn carry_out(&self, outcomes: Vec<Outcome>) {
        for o in outcomes {
            match o {
                Outcome::Warn { title, detail } => {
                    gst::element_imp_warning!(self, gst::StreamError::Failed, ("{}", title), ["{}", detail])
                }
                Outcome::Post(s) => self.post_element_message(s),
                Outcome::KeyUnit(_) | Outcome::Cut(_) | Outcome::Uncut(_) => {}
            }
        }
    }

    /// Asks upstream for key frames at these running times (splice points).
    fn push_key_units(&self, running_times: Vec<u64>) {
        let pad = self.obj().static_pad("sink").expect("sink pad");
        for rt in running_times {
            pad.push_event(force_key_unit(rt, 0));
        }
    }
}
