// SPDX-License-Identifier: MPL-2.0
//! The element in CMAF mode (`protocol=cmaf`, docs/protocol.md §6): its start, `render()`, the
//! end of the stream, ad events, and what the tracks' uploaders report. A child of the
//! element's module, so that it shares the element's state and its ways of posting; the path
//! itself is [`CmafPath`].
//!
//! As in Smooth mode, `render()` never waits on the network for a live source (segments wait
//! in each track's bounded forward buffer), waits for room for a source that is not live, and
//! EOS waits until every track delivered what it has (within `eos-timeout`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fmp4ingest_core::ad_signals::SpliceMode as CoreSpliceMode;
use fmp4ingest_core::cmaf::header::TrackDescription;
use fmp4ingest_core::cmaf::metadata::announce_lead_ns;
use fmp4ingest_core::cmaf::naming::track_url;
use fmp4ingest_core::cmaf::stream::{CmafNotice, CmafStreamConfig, MetadataConfig, ReferenceTimeSource};
use fmp4ingest_core::session::cmaf::{CmafEvent, CmafFailure, CmafSessionConfig, Framing, Method, ResumePolicy};

use super::super::cmaf_path::{CmafPath, Note, PathConfig, PathReportFn, TrackLabel, check_publishing_point};
use super::super::cmaf_reporting as cr;
use super::super::cmaf_settings::{HttpMethod, OutageResume, PrftClock, Transfer, roles};
use super::*;
use crate::driver::Report;

/// What exists only while the element runs in CMAF mode.
pub(super) struct CmafStarted {
    pub(super) path: CmafPath,
    /// The target timeline is placed (when the pipeline plays, or at the first buffer).
    pub(super) timeline_placed: bool,
    /// Whether upstream is live, once asked (at the first buffer).
    live: Option<bool>,
    key_units: Option<KeyUnitScheduler>,
    /// How long EOS may wait for the tracks to finish.
    eos_wait: Duration,
    warned_no_sync: bool,
}

/// The longest a connection takes when its timeout is automatic (about a segment duration,
/// 1 to 6 s), and an answer (twice that, 2 to 12 s).
const AUTO_CONNECT_MAX: Duration = Duration::from_secs(6);
const AUTO_RESPONSE_MAX: Duration = Duration::from_secs(12);

impl Settings {
    /// Every track's session, but for its id and kind.
    fn cmaf_session(&self) -> CmafSessionConfig {
        let ns = Duration::from_nanos;
        let smooth = self.session_config();
        let set = |v: u64| (v > 0).then(|| ns(v));
        CmafSessionConfig {
            method: match self.cmaf.http_method {
                HttpMethod::Post => Method::Post,
                HttpMethod::Put => Method::Put,
            },
            framing: match self.cmaf.transfer {
                Transfer::Auto => Framing::Auto,
                Transfer::Chunked => Framing::Chunked,
                Transfer::ContentLength => Framing::ContentLength,
            },
            probe: true,
            connect_timeout: set(self.connect_timeout),
            response_timeout: set(self.final_response_timeout),
            send_timeout: set(self.send_timeout),
            segment_duration: set(self.fragment_duration),
            retry_delay: smooth.retry_delay,
            retry_delay_max: smooth.retry_delay_max,
            jitter_seed: smooth.jitter_seed,
            forbidden_retries: self.cmaf.forbidden_retries,
            retry_limit: smooth.retry_limit,
            max_retries: smooth.max_retries,
            resume: match self.cmaf.outage_resume {
                OutageResume::LiveEdge => ResumePolicy::LiveEdge,
                OutageResume::Backlog => ResumePolicy::Backlog,
            },
            forward_buffer_duration: smooth.forward_buffer_duration,
            forward_buffer_bytes: smooth.forward_buffer_bytes,
            eos_timeout: smooth.eos_timeout,
            ..CmafSessionConfig::default()
        }
    }

    /// The media path: the grid as in Smooth mode, the tracks' descriptions, chunks for low
    /// latency, the prft clock and the metadata track.
    fn cmaf_stream(&self) -> CmafStreamConfig {
        let bitrate = |b: u32| (b > 0).then_some(b);
        CmafStreamConfig {
            grid: timeline::GridConfig {
                mode: match self.timestamp_mode {
                    TimestampMode::Pipeline => timeline::TimestampMode::Pipeline,
                    TimestampMode::Utc => timeline::TimestampMode::Utc,
                },
                fragment_duration_ns: self.fragment_duration,
                target_offset_ns: i128::from(self.timestamp_offset),
            },
            video: TrackDescription {
                bitrate: bitrate(self.video_bitrate),
                roles: roles(self.cmaf.video_role.as_deref()),
                ..TrackDescription::default()
            },
            audio: TrackDescription {
                bitrate: bitrate(self.audio_bitrate),
                language: self.cmaf.audio_language.clone(),
                roles: roles(self.cmaf.audio_role.as_deref()),
                ..TrackDescription::default()
            },
            chunked: self.cmaf.low_latency,
            reference_time: match self.cmaf.prft_clock {
                PrftClock::Auto => ReferenceTimeSource::Auto,
                PrftClock::Timeline => ReferenceTimeSource::Timeline,
                PrftClock::WallClock => ReferenceTimeSource::WallClock,
            },
            metadata: self.cmaf.metadata_track.clone().map(|name| MetadataConfig { name, ..MetadataConfig::default() }),
            ..CmafStreamConfig::default()
        }
    }

    /// Ad signals into the metadata track: announced early enough that the segment carrying
    /// an event reaches the receiver `splice-lead` before the media segment of its splice.
    fn cmaf_ads(&self) -> Option<AdSettings> {
        let name = self.cmaf.metadata_track.clone()?;
        Some(AdSettings {
            stream_id: name.clone(),
            track_name: name,
            scheme: fmp4ingest_core::cmaf::boxes::SCTE35_BIN_SCHEME.into(),
            parent_track: None,
            splice_mode: match self.splice_mode {
                SpliceMode::None => CoreSpliceMode::None,
                SpliceMode::KeyFrame => CoreSpliceMode::KeyFrame,
                SpliceMode::Segment => CoreSpliceMode::Segment,
            },
            lead_ns: announce_lead_ns(self.splice_lead, self.fragment_duration),
        })
    }
}

impl Fmp4IngestSink {
    /// Starts CMAF ingest to the publishing point `location`. Nothing connects yet: each track
    /// does once the muxer's `moov` names it.
    pub(super) fn start_cmaf(&self, s: &Settings, location: &str) -> Result<(), gst::ErrorMessage> {
        let shown = check_publishing_point(location).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid location for protocol=cmaf: {}", e),
                [
                    "location = {}; with protocol=cmaf it is the publishing point URL (e.g. \
                     https://host/channel1/channel1.isml), each track going to <location>/Streams(<name>.cmfv|cmfa|cmfm)",
                    fmp4ingest_core::ingest_url::redact_url(location)
                ]
            )
        })?;
        if s.sparse_stream_id.as_deref().is_some_and(|id| !id.is_empty()) {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
                ("sparse-stream-id is not used with protocol=cmaf"),
                ["Ad signals go in a timed metadata track in CMAF ingest: set metadata-track (e.g. scte35) instead"]
            );
        }
        let session = s.cmaf_session();
        // Credentials in the location, when the properties give none, as in Smooth mode.
        let any_track = track_url(location, "video", fmp4ingest_core::cmaf::header::CmafTrackKind::Video)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("Invalid location: {}", e), ["{}", shown]))?;
        let connect = session.connect_timeout.unwrap_or(AUTO_CONNECT_MAX);
        let client = self.client(s, &any_track, connect)?;
        let weak = self.obj().downgrade();
        let report: PathReportFn = Arc::new(move |track: &TrackLabel, r: Report<CmafEvent>| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().on_track_report(track, r);
            }
        });
        let eos_wait = session.eos_timeout
            + connect
            + session.response_timeout.unwrap_or(AUTO_RESPONSE_MAX)
            + Duration::from_secs(5);
        let config = PathConfig {
            publishing_point: location.to_string(),
            client,
            follow_redirects: s.follow_redirects,
            session,
            stream: s.cmaf_stream(),
            ads: s.cmaf_ads(),
        };
        let path = CmafPath::new(config, report)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("Invalid location: {}", e), ["{}", shown]))?;
        self.failed.store(false, Ordering::SeqCst);
        self.drop_warned.store(false, Ordering::SeqCst);
        gst::info!(CAT, imp = self, "started, CMAF ingest to the publishing point {shown}");
        *self.lock_state() = State::Cmaf(Box::new(CmafStarted {
            path,
            timeline_placed: false,
            live: None,
            key_units: None,
            eos_wait,
            warned_no_sync: false,
        }));
        Ok(())
    }

    /// Places the target timeline, as in Smooth mode (see `place_timeline`).
    pub(super) fn place_cmaf_timeline(&self, c: &mut CmafStarted, first_running_time: Option<u64>, playing: bool) {
        let (target_offset, key_units) = self.timeline_origin(first_running_time, playing);
        c.path.set_target_offset(target_offset);
        c.timeline_placed = true;
        if key_units.is_some() {
            c.key_units = key_units;
        }
    }

    /// `render()` in CMAF mode, with the state locked.
    pub(super) fn cmaf_render(
        &self,
        mut state: MutexGuard<'_, State>,
        bytes: Bytes,
        running_time: Option<u64>,
        end: Option<u64>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let State::Cmaf(c) = &mut *state else { return Err(gst::FlowError::Error) };
        if c.live.is_none() {
            // Unknown (the query failed) counts as live: never block.
            let live = self.obj().query_latency().map_or(true, |(live, upstream_live, _, _)| live || upstream_live);
            gst::info!(CAT, imp = self, "upstream is {}", if live { "live" } else { "not live: waiting for room" });
            c.path.set_live(live);
            c.live = Some(live);
        }
        if !c.timeline_placed {
            let playing = self.obj().current_state() == gst::State::Playing;
            self.place_cmaf_timeline(c, running_time, playing);
        }
        let wall = u64::try_from(utc::utc_now()).unwrap_or(0);
        let (result, notes) = c.path.push(bytes, running_time, end, wall);
        self.cmaf_notes(c, notes);
        if let Err(e) = result {
            return Err(self.cmaf_input_error(state, e));
        }
        if c.live == Some(false) {
            let waiters = c.path.waiters();
            drop(state);
            let cancelled = || self.canceller.flushing.load(Ordering::SeqCst) || self.failed.load(Ordering::SeqCst);
            for (_, w) in waiters {
                w.room(&self.canceller.notify, cancelled);
            }
            if self.canceller.flushing.load(Ordering::SeqCst) {
                return Err(gst::FlowError::Flushing);
            }
            if self.failed.load(Ordering::SeqCst) {
                return Err(gst::FlowError::Error);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// EOS in CMAF mode: the last segments (with `lmsg`), then every track delivers what it has.
    /// False when the stream could not be finished (the error is already posted).
    pub(super) fn cmaf_finish(&self, mut state: MutexGuard<'_, State>) -> bool {
        let State::Cmaf(c) = &mut *state else { return true };
        let (result, notes) = c.path.finish();
        if let Err(e) = result {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                ("The muxer's output ended in the middle of a box: {}", e),
                ["Everything before it was sent to {}", c.path.shown()]
            );
        }
        self.cmaf_notes(c, notes);
        let (waiters, wait, shown) = (c.path.waiters(), c.eos_wait, c.path.shown());
        // Wait without holding the state lock, so that the tracks' reports get through.
        drop(state);
        let cancelled = || self.canceller.flushing.load(Ordering::SeqCst) || self.failed.load(Ordering::SeqCst);
        let started = Instant::now();
        let late: Vec<String> = waiters
            .into_iter()
            .filter(|(_, w)| {
                w.done(wait.saturating_sub(started.elapsed()), &self.canceller.notify, cancelled)
                    == WaitOutcome::TimedOut
            })
            .map(|(l, _)| l.name)
            .collect();
        if !late.is_empty() {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ("The stream did not finish in time"),
                ["Tracks {} of {shown} did not complete within {wait:?} after end of stream", late.join(", ")]
            );
        }
        !self.failed.load(Ordering::SeqCst)
    }

    /// A fault in the muxer's output: what was accepted before it is delivered (within the
    /// EOS wait), then the error names the fault.
    fn cmaf_input_error(&self, mut state: MutexGuard<'_, State>, error: fmp4ingest_core::Error) -> gst::FlowError {
        let State::Cmaf(c) = &mut *state else { return gst::FlowError::Error };
        let notes = c.path.finish_after_fault();
        self.cmaf_notes(c, notes);
        let (waiters, wait, shown) = (c.path.waiters(), c.eos_wait, c.path.shown());
        drop(state);
        let cancelled = || self.canceller.flushing.load(Ordering::SeqCst);
        let started = Instant::now();
        let all = waiters.into_iter().all(|(_, w)| {
            w.done(wait.saturating_sub(started.elapsed()), &self.canceller.notify, cancelled) == WaitOutcome::Ready
        });
        let delivered = if all && !self.failed.load(Ordering::SeqCst) {
            "every segment accepted before it was delivered".to_string()
        } else {
            format!("the segments accepted before it could not all be delivered within {wait:?}")
        };
        self.failed.store(true, Ordering::SeqCst);
        gst::element_imp_error!(
            self,
            gst::StreamError::Format,
            ("Invalid input from the muxer: {}", error),
            ["The stream to {shown} stops here; {delivered}. fmp4ingestsink needs fragmented MP4 from \
              mp4mux/ismlmux/qtmux (fragment-duration > 0, streamable=true), isofmp4mux or cmafmux."]
        );
        gst::FlowError::Error
    }

    /// An ad event in CMAF mode. True when it was taken.
    pub(super) fn cmaf_ad_event(
        &self,
        mut state: MutexGuard<'_, State>,
        s: &gst::StructureRef,
        seqnum: gst::Seqnum,
    ) -> bool {
        let State::Cmaf(c) = &mut *state else { return false };
        let Some(outcomes) = c.path.ad_event(s, seqnum) else {
            drop(state);
            self.carry_out(vec![Outcome::Warn {
                title: format!("Ad signal ignored ({})", s.name()),
                detail: "There is no metadata track: set metadata-track (e.g. scte35) for a timed metadata track \
                         <location>/Streams(<name>.cmfm)."
                    .into(),
            }]);
            return false;
        };
        let accepted = !outcomes.iter().any(|o| matches!(o, Outcome::Post(p) if p.name() == reporting::SIGNAL_REFUSED));
        let (keys, rest): (Vec<Outcome>, Vec<Outcome>) =
            outcomes.into_iter().partition(|o| matches!(o, Outcome::KeyUnit(_)));
        self.carry_out(rest);
        let keys: Vec<u64> = keys
            .into_iter()
            .filter_map(|o| if let Outcome::KeyUnit(rt) = o { Some(rt) } else { None })
            // Until the encoders upstream have started, the scheduler holds them (see key_units).
            .filter(|rt| c.key_units.as_ref().is_none_or(|k| !k.hold_unless_open(*rt)))
            .collect();
        drop(state);
        self.push_key_units(keys);
        accepted
    }

    /// What the path noted: logged, posted, warned about.
    fn cmaf_notes(&self, c: &mut CmafStarted, notes: Vec<Note>) {
        let mut outcomes = Vec::new();
        for n in notes {
            match n {
                Note::Notice(CmafNotice::Stream(n)) => self.notice(&mut c.warned_no_sync, n),
                Note::Notice(CmafNotice::NoWallClock { track_id }) => {
                    gst::debug!(CAT, imp = self, "track {track_id}: no wall clock yet, its prft takes the timeline")
                }
                Note::Notice(CmafNotice::LastSegmentRepeated { track_id, sequence }) => gst::info!(
                    CAT,
                    imp = self,
                    "track {track_id}: segment {sequence} was sent before the end was known; it goes again with lmsg"
                ),
                Note::TrackStarted(l) => gst::info!(CAT, imp = self, "track {} ({:?}): {}", l.track_id, l.kind, l.url),
                Note::Header(l, h) => gst::info!(
                    CAT,
                    imp = self,
                    "track {} {}: header of {} bytes, timescale {}, bitrate {:?}",
                    l.track_id,
                    l.name,
                    h.bytes.len(),
                    h.timescale,
                    h.bitrate.map(|b| b.avg_bitrate)
                ),
                Note::Unroutable { name, error } => gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    ("Track '{}' is not sent: its name makes no URL", name),
                    ["{error}"]
                ),
                Note::Ad(o) => outcomes.push(o),
            }
        }
        self.carry_out(outcomes);
    }

    /// Called from a track's uploader with what its session did. It depends on nothing but its
    /// arguments (a report may come before `start()` stored its state).
    fn on_track_report(&self, track: &TrackLabel, report: Report<CmafEvent>) {
        let url = track.url.as_str();
        let (event, detail) = match report {
            Report::Session { event, detail } => (event, detail.unwrap_or_default()),
            Report::Redirected { from, to, status } => {
                gst::info!(CAT, imp = self, "the probe of {from} was redirected ({status}) to {to}");
                self.post_element_message(reporting::redirected(&from, &to, status));
                return;
            }
        };
        match event {
            CmafEvent::Connected { connection } => {
                gst::info!(CAT, imp = self, "{url}: connection {connection} up");
                self.drop_warned.store(false, Ordering::SeqCst);
                self.post_element_message(reporting::connected(url, connection));
            }
            CmafEvent::ProbeAccepted { status } | CmafEvent::HeaderAccepted { status } => {
                gst::debug!(CAT, imp = self, "{url}: {event:?} ({status})")
            }
            CmafEvent::Delivered { sequence, status } => {
                gst::log!(CAT, imp = self, "{url}: segment {sequence} answered {status}")
            }
            CmafEvent::HeaderRequested { sequence } => {
                gst::info!(CAT, imp = self, "{url}: 412 to segment {sequence}: the header goes again, then it");
                self.post_element_message(cr::header_requested(url, sequence));
            }
            CmafEvent::Disconnected { reason } => {
                let (_, _, text) = cr::describe(&reason);
                gst::warning!(CAT, imp = self, "{url}: {text} {detail}");
                self.post_element_message(cr::disconnected(url, &reason, &detail));
            }
            CmafEvent::Reconnecting { attempt, delay } => {
                gst::info!(CAT, imp = self, "{url}: reconnecting in {delay:?} (attempt {attempt})");
                self.post_element_message(reporting::reconnecting(url, attempt, delay));
            }
            CmafEvent::Resending { sequences, outage } => {
                gst::info!(CAT, imp = self, "{url}: back after {outage:?}, resending segments {sequences:?}");
                self.post_element_message(cr::resent(url, &sequences, outage));
            }
            CmafEvent::Skipped { segments, outage } => {
                let (_, media) = cr::media_span(&segments);
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("Track {} resumed at the live edge: {} segments skipped", track.name, segments.len()),
                    [
                        "{url} was away for {:.3} s, longer than three segment durations; {:.3} s of media is not \
                         sent and the track's timeline has a gap (outage-resume=backlog sends it all instead).",
                        outage.as_secs_f64(),
                        media as f64 / 1e9
                    ]
                );
                self.post_element_message(cr::skipped(url, &segments, outage));
            }
            CmafEvent::Dropped { segments } => {
                let (_, media) = cr::media_span(&segments);
                gst::warning!(CAT, imp = self, "{url}: dropped {} segments", segments.len());
                self.post_element_message(cr::dropped(url, track.track_id, &segments));
                if !self.drop_warned.swap(true, Ordering::SeqCst) {
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Write,
                        ("The forward buffer is full: {} segments of {} dropped", segments.len(), track.name),
                        [
                            "{url} has been unreachable or too slow for too long; {:.3} s of media is lost and the \
                             timeline has a gap. forward-buffer-duration and forward-buffer-size set how much may \
                             wait; fmp4ingestsink-dropped messages count every drop.",
                            media as f64 / 1e9
                        ]
                    );
                }
            }
            CmafEvent::Rejected { sequence, status } => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("The ingest server rejected segment {} of {}: HTTP {}", sequence, track.name, status),
                    [
                        "{url} answered HTTP {status} {} to it three times; it is given up and the track goes on",
                        reporting::reason(status)
                    ]
                );
                self.post_element_message(cr::rejected(url, sequence, status));
            }
            CmafEvent::Finished => gst::info!(CAT, imp = self, "{url}: every segment delivered"),
            CmafEvent::GaveUp { reason: CmafFailure::EosTimeout, undelivered, .. } => {
                if !undelivered.is_empty() {
                    let (_, media) = cr::media_span(&undelivered);
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Write,
                        (
                            "{} segments of {} could not be delivered before the end of the stream",
                            undelivered.len(),
                            track.name
                        ),
                        [
                            "{url} could not be reached within the eos-timeout after EOS; {:.3} s of media was not \
                             delivered. Last failure: {detail}",
                            media as f64 / 1e9
                        ]
                    );
                    self.post_element_message(cr::dropped(url, track.track_id, &undelivered));
                }
            }
            CmafEvent::GaveUp { reason, undelivered, at_start } => {
                self.failed.store(true, Ordering::SeqCst);
                let (_, _, text) = cr::describe(&reason);
                let code = cr::error_code(&reason, at_start);
                let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
                let why = match (reason, at_start) {
                    (CmafFailure::Permanent(_), _) => "a refusal retrying cannot mend",
                    (_, true) => "before the track ever ran; retrying cannot mend this",
                    _ => "gave up after the retry limit (max-retries, retry-timeout, forbidden-retries)",
                };
                let lost = match (at_start, undelivered.len()) {
                    (true, _) => "Nothing was sent.".to_string(),
                    (false, n) => format!("{n} segments were not delivered."),
                };
                let tail =
                    [cr::advice(&reason), lost.as_str()].into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>();
                gst::element_imp_error!(
                    self,
                    code,
                    ("{}", cr::title(&reason, &track.name)),
                    ["{url}: {text}{detail}; {why}. {}", tail.join(" ")]
                );
                // Wake a streaming thread waiting for room or for the end.
                self.canceller.notify.notify_waiters();
            }
        }
    }
}
