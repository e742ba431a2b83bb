// SPDX-License-Identifier: MPL-2.0
//! The element's CMAF ingest path (docs/protocol.md §6): the muxer's bytes go to the core's
//! [`CmafStream`], which splits them per track into a CMAF header and segments on the fragment
//! grid; each track gets a [`TrackUploader`] of its own — its own connection and URL,
//! `<publishing point>/Streams(<name>.cmfv|cmfa|cmfm)` — opened as soon as the muxer's `moov`
//! names the track. Ad signals become events of the timed metadata track.
//!
//! Nothing here decides a byte or a protocol step: the core does. This is the plumbing between
//! the streaming thread, the core and the uploaders; what the application must hear comes back
//! as [`Note`]s for the element to post.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fmp4ingest_core::cmaf::header::{CmafHeader, CmafTrackKind};
use fmp4ingest_core::cmaf::metadata::TimedEvent;
use fmp4ingest_core::cmaf::naming::track_url;
use fmp4ingest_core::cmaf::stream::{CmafNotice, CmafOutput, CmafStream, CmafStreamConfig};
use fmp4ingest_core::ingest_url::UrlError;
use fmp4ingest_core::session::cmaf::{CmafEvent, CmafSessionConfig};
use fmp4ingest_core::session::{LatencySummary, StreamStats};

use super::ads::{AdRequests, AdSettings, Outcome, unplaced};
use super::cmaf_uploader::{TrackReportFn, TrackUploader, TrackWaiter};
use super::reporting::{self, DeclaredTrack};
use crate::driver::{HttpConfig, Report};
use crate::http::Client;

/// A track as the element names it in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackLabel {
    pub track_id: u32,
    /// `<name>.<extension>`: its Streams() id.
    pub name: String,
    pub kind: CmafTrackKind,
    /// Its URL without credentials.
    pub url: String,
}

/// Hands a track's reports to the element.
pub type PathReportFn = Arc<dyn Fn(&TrackLabel, Report<CmafEvent>) + Send + Sync>;

/// How the path is set up.
#[derive(Clone)]
pub struct PathConfig {
    /// The publishing point URL, as `location` gives it (credentials included).
    pub publishing_point: String,
    pub client: Client,
    pub follow_redirects: bool,
    /// Every track's session, but for its id and kind.
    pub session: CmafSessionConfig,
    pub stream: CmafStreamConfig,
    /// Ad signals into the metadata track, when there is one.
    pub ads: Option<AdSettings>,
}

/// What the element must tell the application, or do.
#[derive(Debug)]
pub enum Note {
    Notice(CmafNotice),
    /// A track's connection is being opened.
    TrackStarted(TrackLabel),
    /// A track's header is known.
    Header(TrackLabel, CmafHeader),
    /// A track whose name makes no URL: it is not sent.
    Unroutable {
        name: String,
        error: UrlError,
    },
    Ad(Outcome),
}

struct Track {
    label: TrackLabel,
    uploader: TrackUploader,
    header: Option<CmafHeader>,
}

/// The CMAF ingest of one element.
pub struct CmafPath {
    config: PathConfig,
    stream: CmafStream,
    tracks: Vec<Track>,
    report: PathReportFn,
    live: bool,
    ads: Option<AdRequests>,
    /// The running time the media reached: the latest end of a buffer.
    media_ns: Option<u64>,
    /// Tracks whose name makes no URL, reported once and never started.
    unroutable: Vec<u32>,
}

/// Why the publishing point URL cannot be used.
pub fn check_publishing_point(pp: &str) -> Result<String, UrlError> {
    track_url(pp, "video", CmafTrackKind::Video).map(|u| u.redacted().trim_end_matches("/Streams(video.cmfv)").into())
}

impl CmafPath {
    pub fn new(config: PathConfig, report: PathReportFn) -> Result<CmafPath, UrlError> {
        check_publishing_point(&config.publishing_point)?;
        let ads = config.ads.clone().map(|a| {
            let name = config.stream.metadata.as_ref().map_or("scte35", |m| m.name.as_str());
            let url = track_url(&config.publishing_point, name, CmafTrackKind::Metadata)
                .map(|u| u.redacted())
                .unwrap_or_default();
            AdRequests::new(a, url)
        });
        Ok(CmafPath {
            stream: CmafStream::new(config.stream.clone()),
            config,
            tracks: Vec::new(),
            report,
            live: true,
            ads,
            media_ns: None,
            unroutable: Vec::new(),
        })
    }

    /// The publishing point without credentials.
    pub fn shown(&self) -> String {
        check_publishing_point(&self.config.publishing_point).unwrap_or_default()
    }

    /// Where running time 0 lies on the target timeline (see [`CmafStream::set_target_offset`]).
    pub fn set_target_offset(&mut self, ns: i128) {
        self.stream.set_target_offset(ns);
    }

    /// A live source (the default) or not (see [`TrackUploader::set_live`]).
    pub fn set_live(&mut self, live: bool) {
        self.live = live;
        for t in &self.tracks {
            t.uploader.set_live(live);
        }
    }

    /// Muxer bytes starting at `running_time`, ending at `end`; `wall_ns` is the wall clock now
    /// (ns since the Unix epoch), for the `prft` boxes that take it. Ad events due by then go
    /// into the metadata track first, so that the segment they fall in carries them.
    pub fn push(
        &mut self,
        bytes: Bytes,
        running_time: Option<u64>,
        end: Option<u64>,
        wall_ns: u64,
    ) -> (Result<(), fmp4ingest_core::Error>, Vec<Note>) {
        let mut notes = self.due_events(false);
        self.stream.set_wall_clock(wall_ns);
        let result = self.stream.push_timed(bytes, running_time);
        if let Some(end) = end {
            self.media_ns = Some(self.media_ns.map_or(end, |m| m.max(end)));
        }
        notes.extend(self.due_events(false));
        self.drain(&mut notes);
        (result, notes)
    }

    /// The end of the stream: every ad event still waiting, the last segment of every track
    /// (with `lmsg`), then each track's session finishes what is left.
    pub fn finish(&mut self) -> (Result<(), fmp4ingest_core::Error>, Vec<Note>) {
        let mut notes = self.due_events(true);
        let result = self.stream.finish();
        self.drain(&mut notes);
        for t in &self.tracks {
            t.uploader.finish();
        }
        (result, notes)
    }

    /// After a fault in the input: what was accepted before it goes, then the sessions end.
    pub fn finish_after_fault(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        self.drain(&mut notes);
        for t in &self.tracks {
            t.uploader.finish();
        }
        notes
    }

    /// Something to wait on per track, usable without holding the path.
    pub fn waiters(&self) -> Vec<(TrackLabel, TrackWaiter)> {
        self.tracks.iter().map(|t| (t.label.clone(), t.uploader.waiter())).collect()
    }

    /// An ad event; `None` without a metadata track. Cuts are made here; the key frames to ask
    /// for come back with the rest of the outcomes.
    pub fn ad_event(&mut self, s: &gst::StructureRef, seqnum: gst::Seqnum) -> Option<Vec<Outcome>> {
        let media_ns = self.media_ns;
        let outcomes = self.ads.as_mut()?.on_event(s, seqnum, media_ns);
        let mut out = Vec::new();
        for o in outcomes {
            match o {
                Outcome::Cut(rt) if !self.stream.add_cut(rt) => out.push(Outcome::Warn {
                    title: "No new segment at the splice".into(),
                    detail: format!(
                        "splice-mode=segment cannot start a segment at running time {rt} ns: {}",
                        if self.config.stream.grid.fragment_duration_ns == 0 {
                            "fragment-duration is 0 (the muxer's fragments are kept as they are)"
                        } else {
                            "the media is already past it"
                        }
                    ),
                }),
                Outcome::Cut(_) => {}
                Outcome::Uncut(rt) => {
                    self.stream.remove_cut(rt);
                }
                other => out.push(other),
            }
        }
        // A short lead is due at once.
        out.extend(self.due_events(false).into_iter().filter_map(|n| match n {
            Note::Ad(o) => Some(o),
            _ => None,
        }));
        Some(out)
    }

    /// Ad events whose time came (all of them at the end) into the metadata track.
    fn due_events(&mut self, flush: bool) -> Vec<Note> {
        let (Some(ads), Some(media_ns)) = (self.ads.as_mut(), self.media_ns) else { return Vec::new() };
        let Some((meta_id, timescale)) = self.stream.metadata_track() else { return Vec::new() };
        let stream = &self.stream;
        let to_ticks = |ns: u64| stream.track_time(meta_id, ns);
        let due = match flush {
            true => ads.signals_mut().flush_events(media_ns, timescale, to_ticks),
            false => ads.signals_mut().poll_due_events(media_ns, timescale, to_ticks),
        };
        let mut notes = Vec::new();
        let mut events = Vec::new();
        for d in due {
            match d.map(|d| (d.id, d.splice_ns, TimedEvent::scte35(&d, to_ticks))) {
                Ok((_, _, Some(e))) => events.push(e),
                Ok((id, splice_ns, None)) => {
                    let e = fmp4ingest_core::ad_signals::SignalError::TimeOutOfRange { splice_ns };
                    notes.push(Note::Ad(unplaced(id, &e)));
                }
                Err((id, e)) => notes.push(Note::Ad(unplaced(id, &e))),
            }
        }
        for e in events {
            self.stream.add_event(e);
        }
        notes
    }

    /// Moves what the core produced to the tracks' uploaders, opening a track's connection as
    /// soon as the track is known.
    fn drain(&mut self, notes: &mut Vec<Note>) {
        let known: Vec<(u32, String, CmafTrackKind)> =
            self.stream.tracks().map(|(id, name, kind)| (id, name.to_string(), kind)).collect();
        for (id, name, kind) in known {
            self.track(id, &name, kind, notes);
        }
        while let Some(out) = self.stream.next_output() {
            match out {
                CmafOutput::Header(h) => {
                    let Some(i) = self.track(h.track_id(), &h.name, h.kind(), notes) else { continue };
                    let t = &mut self.tracks[i];
                    t.uploader.set_header(h.header.bytes.clone());
                    t.header = Some(h.header.clone());
                    notes.push(Note::Header(t.label.clone(), h.header));
                }
                CmafOutput::Chunk(c) => {
                    if let Some(t) = self.tracks.iter().find(|t| t.label.track_id == c.track_id) {
                        t.uploader.push_chunk(&c);
                    }
                }
                CmafOutput::Notice(n) => notes.push(Note::Notice(n)),
            }
        }
    }

    /// The index of track `id`, started now if it is new; `None` when its name makes no URL.
    fn track(&mut self, id: u32, name: &str, kind: CmafTrackKind, notes: &mut Vec<Note>) -> Option<usize> {
        if let Some(i) = self.tracks.iter().position(|t| t.label.track_id == id) {
            return Some(i);
        }
        if self.unroutable.contains(&id) {
            return None;
        }
        let url = match track_url(&self.config.publishing_point, name, kind) {
            Ok(u) => u,
            Err(error) => {
                self.unroutable.push(id);
                notes.push(Note::Unroutable { name: name.to_string(), error });
                return None;
            }
        };
        let label = TrackLabel { track_id: id, name: url.stream_id().to_string(), kind, url: url.redacted() };
        // Jitter differs between tracks that fail together.
        let jitter_seed = self.config.session.jitter_seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let session = CmafSessionConfig { track_id: id, kind, jitter_seed, ..self.config.session.clone() };
        let http = HttpConfig {
            url: url.without_credentials(),
            client: self.config.client.clone(),
            follow_redirects: self.config.follow_redirects,
        };
        let report = self.report.clone();
        let l = label.clone();
        let report: TrackReportFn = Arc::new(move |r| report(&l, r));
        let uploader = TrackUploader::start(http, session, self.live, report);
        notes.push(Note::TrackStarted(label.clone()));
        self.tracks.push(Track { label, uploader, header: None });
        Some(self.tracks.len() - 1)
    }

    /// The `stats` structure: the figures of all tracks together (the latency figures are the
    /// worst track's), and one structure per track.
    pub fn stats(&self, base: Option<&gst::StructureRef>) -> gst::Structure {
        let per: Vec<(StreamStats, Duration)> = self.tracks.iter().map(|t| t.uploader.stats()).collect();
        let now = per.iter().map(|(_, n)| *n).max().unwrap_or_default();
        let mut all = StreamStats::default();
        let mut latency = LatencySummary::default();
        for (s, n) in &per {
            all.connections += s.connections;
            all.reconnects += s.reconnects;
            all.bytes_sent += s.bytes_sent;
            all.fragments_sent += s.fragments_sent;
            all.fragments_resent += s.fragments_resent;
            all.fragments_dropped += s.fragments_dropped;
            all.queue_fragments += s.queue_fragments;
            all.queue_bytes += s.queue_bytes;
            all.queue_duration_ns = all.queue_duration_ns.max(s.queue_duration_ns);
            latency.count += s.latency.count;
            latency.p50_ns = latency.p50_ns.max(s.latency.p50_ns);
            latency.p99_ns = latency.p99_ns.max(s.latency.p99_ns);
            latency.max_ns = latency.max_ns.max(s.latency.max_ns);
            // Each session counts time from its own start: onto the latest clock.
            all.tracks.extend(s.tracks.iter().cloned().map(|mut t| {
                t.last_fragment_sent_at = t.last_fragment_sent_at.map(|at| at + (now - *n));
                t
            }));
        }
        all.latency = latency;
        all.connected = !per.is_empty() && per.iter().all(|(s, _)| s.connected);
        all.state = combined_state(per.iter().map(|(s, _)| s.state));
        let declared: Vec<DeclaredTrack> = self
            .tracks
            .iter()
            .map(|t| DeclaredTrack {
                track_id: t.label.track_id,
                name: t.label.name.clone(),
                kind: match t.label.kind {
                    CmafTrackKind::Video => "video",
                    CmafTrackKind::Audio => "audio",
                    CmafTrackKind::Metadata => "metadata",
                },
                bitrate: t.header.as_ref().and_then(|h| h.bitrate).map_or(0, |b| b.avg_bitrate),
                url: Some(t.label.url.clone()),
            })
            .collect();
        reporting::stats_structure("", &self.shown(), &all, now, &declared, base)
    }
}

/// The state of the tracks together: the one they share, else the most troubled.
fn combined_state<'a>(states: impl Iterator<Item = &'a str>) -> &'static str {
    let states: Vec<&str> = states.collect();
    for s in ["Reconnecting", "Connecting", "Ending", "Running", "Stopped"] {
        if states.contains(&s) {
            return s;
        }
    }
    "Connecting"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracks_state_is_the_most_troubled() {
        assert_eq!(combined_state(["Running", "Reconnecting"].into_iter()), "Reconnecting");
        assert_eq!(combined_state(["Running", "Running"].into_iter()), "Running");
        assert_eq!(combined_state(["Stopped", "Stopped"].into_iter()), "Stopped");
        assert_eq!(combined_state(["Stopped", "Ending"].into_iter()), "Ending");
        assert_eq!(combined_state([].into_iter()), "Connecting");
    }

    #[test]
    fn the_publishing_point_is_checked_and_shown_without_credentials() {
        assert_eq!(check_publishing_point("https://u:pw@host/ch1/ch1.isml/").unwrap(), "https://***@host/ch1/ch1.isml");
        assert_eq!(check_publishing_point("http://host/live.isml/Streams(video)"), Err(UrlError::TrailingText));
        assert_eq!(check_publishing_point("rtmp://host/live"), Err(UrlError::Scheme));
    }
}
