// SPDX-License-Identifier: MPL-2.0
//! The element's ad signals: ad events in, sparse POSTs (Smooth) or timed metadata events
//! (CMAF) out.
//!
//! [`AdRequests`] reads each event and has the core's [`AdSignals`] check it and time it; for
//! Smooth, [`Ads`] POSTs each message with a [`SparseUploader`] to
//! `Streams(<sparse-stream-id>)` next to the media stream; for CMAF the element takes the due
//! events into the timed metadata track. What the media must do at a splice (a key frame, a
//! new fragment) and what the application must hear come back as [`Outcome`]s, which the
//! element carries out.

use std::collections::VecDeque;

use fmp4ingest_core::ad_signals::{AdSignalConfig, AdSignals, SignalSource, SpliceMode, SpliceRequest};
use fmp4ingest_core::ingest_header::IngestHeader;
use fmp4ingest_core::ingest_url::IngestUrl;
use fmp4ingest_core::session::sparse::SparseConfig;

use super::ad_events::{self, AdEvent};
use super::reporting;
use super::sparse_uploader::{SparseDrain, SparseHttp, SparseReportFn, SparseUploader};

/// What the element must do after an ad event or message.
#[derive(Debug)]
pub enum Outcome {
    /// Post an element warning.
    Warn { title: String, detail: String },
    /// Post an element message.
    Post(gst::Structure),
    /// Ask upstream for a key frame at this running time.
    KeyUnit(u64),
    /// Start a media fragment at this running time.
    Cut(u64),
    /// Withdraw the fragment start at this running time.
    Uncut(u64),
}

/// The sparse stream's settings.
#[derive(Debug, Clone)]
pub struct AdSettings {
    pub stream_id: String,
    pub track_name: String,
    pub scheme: String,
    pub parent_track: Option<String>,
    pub splice_mode: SpliceMode,
    pub lead_ns: u64,
}

/// How many tsdemux event seqnums are remembered: tsdemux pushes each section on every source
/// pad of the program, so a muxer passes it on once per stream.
const SEEN_SEQNUMS: usize = 64;

/// Ad events read, checked and held until their time.
pub struct AdRequests {
    signals: AdSignals,
    /// Where the messages go, without credentials, for messages and warnings.
    url: String,
    /// Why no message can be sent (no parent track), once known.
    unusable: Option<String>,
    seen: VecDeque<gst::Seqnum>,
}

pub struct Ads {
    requests: AdRequests,
    uploader: SparseUploader,
    parent_track_id: Option<u32>,
}

impl Ads {
    pub fn start(
        settings: AdSettings,
        media_url: &IngestUrl,
        http: SparseHttp,
        config: SparseConfig,
        report: SparseReportFn,
    ) -> Result<Ads, String> {
        let url = media_url
            .with_stream_id(&settings.stream_id)
            .map_err(|e| format!("sparse-stream-id '{}' makes no valid URL: {e}", settings.stream_id))?;
        let shown = url.redacted();
        let uploader = SparseUploader::start(SparseHttp { url, ..http }, config, report);
        Ok(Ads { requests: AdRequests::new(settings, shown), uploader, parent_track_id: None })
    }

    pub fn url(&self) -> &str {
        &self.requests.url
    }

    /// The media stream's header is known: declare the sparse track and register it.
    pub fn on_media_header(&mut self, header: &IngestHeader) -> Vec<Outcome> {
        match self.requests.signals.set_media(header) {
            Ok(bytes) => {
                self.parent_track_id = self.requests.signals.parent_track_id(header);
                self.uploader.set_header(bytes);
                Vec::new()
            }
            Err(e) => {
                let text = e.to_string();
                self.requests.unusable = Some(text.clone());
                vec![Outcome::Warn {
                    title: "The sparse track cannot be declared".into(),
                    detail: format!(
                        "{text}. Set sparse-parent-track to one of them; ad signals are refused until then."
                    ),
                }]
            }
        }
    }

    /// The parent track's id, when the sparse track is declared.
    pub fn parent_track_id(&self) -> Option<u32> {
        self.parent_track_id
    }

    /// An ad event. `media_ns` is the running time the media reached.
    pub fn on_event(&mut self, s: &gst::StructureRef, seqnum: gst::Seqnum, media_ns: Option<u64>) -> Vec<Outcome> {
        self.requests.on_event(s, seqnum, media_ns)
    }

    /// Messages whose time came now that the media reached `media_ns`; `to_ticks` places a
    /// running time on the parent's timeline.
    pub fn due(&mut self, media_ns: u64, to_ticks: impl Fn(u64) -> Option<u64>) -> Vec<Outcome> {
        let due = self.requests.signals.poll_due(media_ns, to_ticks);
        self.queue(due)
    }

    /// End of stream: every message still waiting goes now.
    pub fn flush(&mut self, media_ns: u64, to_ticks: impl Fn(u64) -> Option<u64>) -> Vec<Outcome> {
        let due = self.requests.signals.flush(media_ns, to_ticks);
        self.queue(due)
    }

    fn queue(
        &mut self,
        due: Vec<Result<fmp4ingest_core::ad_signals::DueMessage, (u32, fmp4ingest_core::ad_signals::SignalError)>>,
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        for m in due {
            match m {
                Ok(m) => self.uploader.push_message(m.id, m.time, &m.fragment),
                Err((id, e)) => out.push(unplaced(id, &e)),
            }
        }
        out
    }

    pub fn drain_handle(&self) -> SparseDrain {
        self.uploader.drain_handle()
    }
}

/// A warning for a message whose time cannot be placed on the timeline.
pub fn unplaced(id: u32, e: &fmp4ingest_core::ad_signals::SignalError) -> Outcome {
    Outcome::Warn {
        title: format!("Ad signal {id} could not be placed on the timeline"),
        detail: format!("{e}; it is not sent"),
    }
}

impl AdRequests {
    /// `url` (without credentials) is where the messages go, for messages and warnings.
    pub fn new(settings: AdSettings, url: String) -> AdRequests {
        let signals = AdSignals::new(AdSignalConfig {
            stream_id: settings.stream_id,
            track_name: settings.track_name,
            scheme: settings.scheme,
            parent_track: settings.parent_track,
            creator: Some("fmp4ingestsink".into()),
            lead_ns: settings.lead_ns,
            splice_mode: settings.splice_mode,
        });
        AdRequests { signals, url, unusable: None, seen: VecDeque::new() }
    }

    pub fn signals_mut(&mut self) -> &mut AdSignals {
        &mut self.signals
    }

    /// An ad event. `media_ns` is the running time the media reached.
    pub fn on_event(&mut self, s: &gst::StructureRef, seqnum: gst::Seqnum, media_ns: Option<u64>) -> Vec<Outcome> {
        let name = s.name().to_string();
        if name == ad_events::TSDEMUX_EVENT {
            if self.seen.contains(&seqnum) {
                return Vec::new();
            }
            if self.seen.len() == SEEN_SEQNUMS {
                self.seen.pop_front();
            }
            self.seen.push_back(seqnum);
        }
        if let Some(why) = &self.unusable {
            return refuse(&name, None, why);
        }
        let request = match ad_events::parse(s) {
            Ok(AdEvent::Request(r)) => r,
            Ok(AdEvent::Ignored(_)) => return Vec::new(),
            Ok(AdEvent::Now { section, id, duration_ns }) => match media_ns {
                Some(now) => {
                    SpliceRequest { running_time_ns: now, id, duration_ns, source: SignalSource::Section(section) }
                }
                None => return refuse(&name, None, "it applies \"now\", and no media has arrived yet"),
            },
            Err(e) => return refuse(&name, None, &e),
        };
        let at = request.running_time_ns;
        match self.signals.submit(request, media_ns) {
            Ok(a) => {
                let mut out = vec![Outcome::Post(reporting::signal_accepted(&self.url, &a, at))];
                if let Some(lead) = a.short_lead_ns {
                    out.push(Outcome::Warn {
                        title: format!("Ad signal {} has less than 4 s of lead", a.id),
                        detail: format!(
                            "The splice at running time {at} ns is {:.3} s ahead of the media; servers act on \
                             messages that arrive at least 4 s early. It was sent at once.",
                            lead as f64 / 1e9
                        ),
                    });
                }
                out.extend(a.key_unit_ns.map(Outcome::KeyUnit));
                out.extend(a.cut_ns.map(Outcome::Cut));
                out.extend(a.uncut_ns.map(Outcome::Uncut));
                out
            }
            Err(e) => refuse(&name, Some(at), &e.to_string()),
        }
    }
}

fn refuse(event: &str, running_time: Option<u64>, why: &str) -> Vec<Outcome> {
    vec![
        Outcome::Warn {
            title: format!("Ad signal refused ({event})"),
            detail: format!("{why}. The media stream is not affected."),
        },
        Outcome::Post(reporting::signal_refused(event, running_time, why)),
    ]
}
