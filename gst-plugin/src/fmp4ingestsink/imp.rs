//! The element: properties, the streaming-thread side of the media path, EOS and errors.
//!
//! `render()` hands each buffer, unmapped-copy-free, to the core's [`IngestStream`]; what comes
//! out (the header, Smooth fragments) goes to the [`Uploader`], which never makes `render()`
//! wait on the network. EOS ends the chunked body and waits for the server's final answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fmp4ingest_core::fragment::FragmentOptions;
use fmp4ingest_core::ingest_stream::{IngestStream, Notice, StreamConfig, StreamOutput};
use fmp4ingest_core::ingest_url::IngestUrl;
use fmp4ingest_core::session::{Failure, SessionConfig, SessionEvent, TransportError};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use tokio::sync::Notify;

use super::uploader::{HttpConfig, Report, Uploader, WaitOutcome};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("fmp4ingestsink", gst::DebugColorFlags::empty(), Some("Fragmented MP4 live ingest sink"))
});

const DEFAULT_CONNECT_TIMEOUT: u64 = 10 * gst::ClockTime::SECOND.nseconds();
const DEFAULT_FINAL_RESPONSE_TIMEOUT: u64 = 10 * gst::ClockTime::SECOND.nseconds();
const DEFAULT_TFDT: bool = true;
static DEFAULT_USER_AGENT: LazyLock<String> = LazyLock::new(|| format!("fmp4ingestsink/{}", env!("CARGO_PKG_VERSION")));
const MIN_TIMEOUT: u64 = gst::ClockTime::MSECOND.nseconds();
const MAX_TIMEOUT: u64 = 3600 * gst::ClockTime::SECOND.nseconds();

#[derive(Debug, Clone)]
struct Settings {
    location: Option<String>,
    video_bitrate: u32,
    audio_bitrate: u32,
    connect_timeout: u64,
    final_response_timeout: u64,
    user_agent: String,
    tfdt: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            video_bitrate: 0,
            audio_bitrate: 0,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            final_response_timeout: DEFAULT_FINAL_RESPONSE_TIMEOUT,
            user_agent: DEFAULT_USER_AGENT.clone(),
            tfdt: DEFAULT_TFDT,
        }
    }
}

/// What exists only while the element runs.
struct Started {
    url: IngestUrl,
    stream: IngestStream,
    uploader: Uploader,
    /// How long EOS may wait for the session to finish.
    eos_wait: Duration,
    /// A video fragment without a sync sample was already reported.
    warned_no_sync: bool,
}

#[derive(Default)]
enum State {
    #[default]
    Stopped,
    Started(Box<Started>),
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
    /// Set by the uploader when the session failed; the error is already posted.
    failed: AtomicBool,
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

    /// Called from the uploader's task with what the session did. It may come before
    /// `start()` has stored its state (a refused connection is reported at once), so it
    /// depends on nothing but its arguments.
    fn on_report(&self, url: &str, report: Report) {
        match report.event {
            SessionEvent::ProbeAccepted { status } => {
                gst::info!(CAT, imp = self, "probe of {url} answered {status}");
            }
            SessionEvent::Connected => {
                gst::info!(CAT, imp = self, "streaming to {url}");
            }
            SessionEvent::Finished { status } => {
                gst::info!(CAT, imp = self, "{url} answered {status} to the end of the stream");
            }
            SessionEvent::FinishedWithoutResponse => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("No final response from the ingest server"),
                    ["{url} did not answer within the final-response-timeout after the stream ended"]
                );
            }
            SessionEvent::Failed(failure) => {
                self.failed.store(true, Ordering::SeqCst);
                let detail = report.detail.unwrap_or_default();
                self.post_failure(url, &failure, &detail);
                // Wake a streaming thread waiting at EOS.
                self.canceller.notify.notify_waiters();
            }
        }
    }

    fn post_failure(&self, url: &str, failure: &Failure, detail: &str) {
        match failure {
            Failure::ProbeRefused { status } => gst::element_imp_error!(
                self,
                gst::ResourceError::OpenWrite,
                ("The ingest server refused the stream: HTTP {} {}", status, reason(*status)),
                ["The probe POST to {url} was answered with HTTP {status}. Check the URL (publishing point and \
                     Streams() id), that the channel is running, and the credentials."]
            ),
            Failure::ProbeTimeout => gst::element_imp_error!(
                self,
                gst::ResourceError::OpenWrite,
                ("The ingest server did not answer the probe"),
                ["No answer from {url} within the connect-timeout. Check that the server is reachable."]
            ),
            Failure::Transport { error: TransportError::Connect | TransportError::Timeout } => gst::element_imp_error!(
                self,
                gst::ResourceError::OpenWrite,
                ("Could not connect to the ingest server"),
                ["{url}: {detail}. Check that the server is running and that the URL's host and port are right."]
            ),
            Failure::Transport { error } => gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                ("The connection to the ingest server failed"),
                ["{url}: {error:?} {detail}"]
            ),
            Failure::ServerAbort { status } => gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                ("The ingest server ended the stream: HTTP {} {}", status, reason(*status)),
                ["{url} answered HTTP {status} before the stream ended."]
            ),
        }
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
                    started.uploader.set_header(h.bytes.clone());
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
                StreamOutput::Notice(n) => self.notice(started, n),
            }
        }
    }

    fn notice(&self, started: &mut Started, notice: Notice) {
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
            Notice::MeasuredBitrate { track_id, bitrate } => {
                gst::info!(
                    CAT,
                    imp = self,
                    "track {track_id} declares no bitrate; announcing {bitrate} b/s measured on its first fragment \
                     (set video-bitrate/audio-bitrate to choose)"
                );
            }
            Notice::NoSyncSampleAtStart { track_id, time } => {
                if !started.warned_no_sync {
                    started.warned_no_sync = true;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Format,
                        ("A video fragment does not start with a key frame"),
                        ["Track {track_id}, fragment at {time}: set the encoder's key-frame interval to the \
                             muxer's fragment duration (x264enc key-int-max = fps x seconds)"]
                    );
                }
            }
            Notice::Discontinuity { track_id, expected, actual } => {
                gst::warning!(CAT, imp = self, "track {track_id}: fragment at {actual}, expected {expected}");
            }
            Notice::RepeatedHeader => gst::debug!(CAT, imp = self, "muxer repeated its header"),
        }
    }

    /// A fault in the input: deliver what was accepted, then report.
    fn input_error(&self, started: &mut Started, error: fmp4ingest_core::Error) {
        self.drain(started);
        started.uploader.finish();
        gst::element_imp_error!(
            self,
            gst::StreamError::Format,
            ("Invalid input from the muxer: {}", error),
            [
                "The stream to {} stops here; fragments accepted before this point are still delivered. \
                 fmp4ingestsink needs fragmented MP4 from mp4mux/ismlmux/qtmux (fragment-duration > 0), \
                 isofmp4mux or cmafmux.",
                started.url
            ]
        );
    }
}

/// Reason phrase of common statuses, for error texts.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

impl ObjectImpl for Fmp4IngestSink {
    fn constructed(&self) {
        self.parent_constructed();
        // A network sink sends as soon as data is there; live sources pace themselves.
        self.obj().set_sync(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
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
                glib::ParamSpecUInt64::builder("connect-timeout")
                    .nick("Connect timeout")
                    .blurb("Time (ns) allowed to establish a connection and to answer the probe")
                    .minimum(MIN_TIMEOUT)
                    .maximum(MAX_TIMEOUT)
                    .default_value(DEFAULT_CONNECT_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("final-response-timeout")
                    .nick("Final response timeout")
                    .blurb("Time (ns) to wait for the server's response after the last chunk at end of stream")
                    .minimum(MIN_TIMEOUT)
                    .maximum(MAX_TIMEOUT)
                    .default_value(DEFAULT_FINAL_RESPONSE_TIMEOUT)
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
                    .default_value(DEFAULT_TFDT)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        match pspec.name() {
            "location" => s.location = value.get().expect("type checked upstream"),
            "video-bitrate" => s.video_bitrate = value.get().expect("type checked upstream"),
            "audio-bitrate" => s.audio_bitrate = value.get().expect("type checked upstream"),
            "connect-timeout" => s.connect_timeout = value.get().expect("type checked upstream"),
            "final-response-timeout" => s.final_response_timeout = value.get().expect("type checked upstream"),
            "user-agent" => {
                s.user_agent = value.get::<Option<String>>().expect("type checked upstream").unwrap_or_default()
            }
            "tfdt" => s.tfdt = value.get().expect("type checked upstream"),
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        match pspec.name() {
            "location" => s.location.to_value(),
            "video-bitrate" => s.video_bitrate.to_value(),
            "audio-bitrate" => s.audio_bitrate.to_value(),
            "connect-timeout" => s.connect_timeout.to_value(),
            "final-response-timeout" => s.final_response_timeout.to_value(),
            "user-agent" => s.user_agent.to_value(),
            "tfdt" => s.tfdt.to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for Fmp4IngestSink {}

impl ElementImpl for Fmp4IngestSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Fragmented MP4 live ingest sink",
                "Sink/Network",
                "Pushes fragmented MP4 to a Smooth Streaming / Azure-style live ingest endpoint (.../Streams(<id>))",
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
                ["Set location to the ingest URL, e.g. http://host/live.isml/Streams(video)"]
            )
        })?;
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
            fragment: FragmentOptions { tfdt: s.tfdt, ..FragmentOptions::default() },
            ..StreamConfig::default()
        });
        let connect_timeout = Duration::from_nanos(s.connect_timeout);
        let final_timeout = Duration::from_nanos(s.final_response_timeout);
        let session = SessionConfig { probe_timeout: connect_timeout, final_response_timeout: final_timeout };
        let http = HttpConfig { url: url.clone(), connect_timeout, user_agent: s.user_agent.clone() };
        let weak = self.obj().downgrade();
        let shown_url = url.redacted();
        let report = std::sync::Arc::new(move |r: Report| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().on_report(&shown_url, r);
            }
        });
        self.failed.store(false, Ordering::SeqCst);
        let uploader = Uploader::start(http, session, report)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{}", e), ["{}", url]))?;
        gst::info!(CAT, imp = self, "started, probing {url}");
        *self.lock_state() = State::Started(Box::new(Started {
            url,
            stream,
            uploader,
            // Enough for the probe or a connection, the final response, and a margin to send
            // what is queued.
            eos_wait: connect_timeout + final_timeout + Duration::from_secs(10),
            warned_no_sync: false,
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
        let mut state = self.lock_state();
        let State::Started(started) = &mut *state else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ["Not started"]);
            return Err(gst::FlowError::Error);
        };
        match started.stream.push(bytes) {
            Ok(()) => {
                self.drain(started);
                Ok(gst::FlowSuccess::Ok)
            }
            Err(e) => {
                self.input_error(started, e);
                Err(gst::FlowError::Error)
            }
        }
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            if !self.finish_stream() {
                return false;
            }
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
        started.uploader.finish();
        let wait = started.eos_wait;
        let waiter = started.uploader.waiter();
        let url = started.url.redacted();
        // Wait without holding the state lock, so that reports from the uploader get through.
        drop(state);
        let cancelled = || self.canceller.flushing.load(Ordering::SeqCst) || self.failed.load(Ordering::SeqCst);
        match waiter.wait(wait, &self.canceller.notify, cancelled) {
            WaitOutcome::Done => !self.failed.load(Ordering::SeqCst),
            WaitOutcome::Cancelled => !self.failed.load(Ordering::SeqCst),
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
}
