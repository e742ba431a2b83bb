// SPDX-License-Identifier: MPL-2.0
//! What the element tells the application in CMAF mode (README "CMAF ingest", docs/protocol.md
//! §6.6): the element messages for the track sessions' events, and the words and error codes
//! of their failures.
//!
//! Messages (all with `url`, the track's URL without credentials):
//! - `fmp4ingestsink-connected`, `fmp4ingestsink-disconnected`, `fmp4ingestsink-reconnecting`,
//!   `fmp4ingestsink-redirected`: as in Smooth mode, per track (the `reason` of a disconnect is
//!   one of `connect-timeout`, `transport`, `status`, `response-timeout`, `send-timeout`,
//!   `refused`, `retry-limit`, `eos-timeout`);
//! - `fmp4ingestsink-cmaf-header-requested`: `sequence` (guint): the receiver answered 412 to
//!   this segment; the header goes again, then the segment;
//! - `fmp4ingestsink-cmaf-resent`: `count` (guint), `sequences` (array of guint), `outage`
//!   (guint64 ns): back within three segment durations, these segments go again, in order;
//! - `fmp4ingestsink-cmaf-skipped`: `count`, `sequences`, `media-time` (guint64 ns on the
//!   timeline, start of the first), `media-duration` (guint64 ns), `outage`: back after a
//!   longer outage at the live edge, these were skipped;
//! - `fmp4ingestsink-dropped`: `count`, `media-time`, `media-duration`, `track-ids`, `times`
//!   (tfdt), `sequences`: the forward buffer was full, or undeliverable at the end;
//! - `fmp4ingestsink-cmaf-rejected`: `sequence`, `status`: a segment answered 400 three times
//!   was given up.

use std::time::Duration;

use fmp4ingest_core::session::cmaf::{CmafFailure, LostSegment};
use fmp4ingest_core::session::{Failure, TlsRefusal, TransportError};

use super::reporting;

pub const HEADER_REQUESTED: &str = "fmp4ingestsink-cmaf-header-requested";
pub const RESENT: &str = "fmp4ingestsink-cmaf-resent";
pub const SKIPPED: &str = "fmp4ingestsink-cmaf-skipped";
pub const REJECTED: &str = "fmp4ingestsink-cmaf-rejected";

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A segment's start and duration in nanoseconds of the timeline.
fn span_ns(s: &LostSegment) -> (u64, u64) {
    let to_ns = |t: u64| u64::try_from(u128::from(t) * 1_000_000_000 / u128::from(s.timescale.max(1))).unwrap_or(0);
    (to_ns(s.decode_time), to_ns(s.duration))
}

/// The first segment's start and the segments' total duration, in ns.
pub fn media_span(segments: &[LostSegment]) -> (u64, u64) {
    let start = segments.iter().map(|s| span_ns(s).0).min().unwrap_or(0);
    (start, segments.iter().map(|s| span_ns(s).1).sum())
}

fn sequences(segments: &[LostSegment]) -> gst::Array {
    gst::Array::new(segments.iter().map(|s| s.sequence))
}

/// A short name of the failure, the HTTP status if any, and a sentence for people.
pub fn describe(f: &CmafFailure) -> (&'static str, u32, String) {
    match f {
        CmafFailure::ConnectTimeout => {
            ("connect-timeout", 0, "the connection was not up within the connect timeout".into())
        }
        CmafFailure::Transport(error) => {
            let (_, _, text) = reporting::describe_failure(&Failure::Transport { error: *error });
            ("transport", 0, text)
        }
        CmafFailure::Status(s) => {
            ("status", u32::from(*s), format!("the receiver answered HTTP {s} {}", reporting::reason(*s)))
        }
        CmafFailure::ResponseTimeout => ("response-timeout", 0, "no answer came within the response timeout".into()),
        CmafFailure::SendTimeout => ("send-timeout", 0, "nothing moved for the send-timeout while data waited".into()),
        CmafFailure::Permanent(s) => {
            ("refused", u32::from(*s), format!("the receiver refused the track: HTTP {s} {}", reporting::reason(*s)))
        }
        CmafFailure::RetryLimit => ("retry-limit", 0, "no connection worked within the retry-timeout".into()),
        CmafFailure::EosTimeout => ("eos-timeout", 0, "the rest could not be delivered within the eos-timeout".into()),
    }
}

/// The same failure as the Smooth path names it, for its advice.
fn as_smooth(f: &CmafFailure) -> Option<Failure> {
    match f {
        CmafFailure::Transport(error) => Some(Failure::Transport { error: *error }),
        CmafFailure::Status(status) | CmafFailure::Permanent(status) => Some(Failure::ProbeRefused { status: *status }),
        _ => None,
    }
}

/// What to do about a failure.
pub fn advice(f: &CmafFailure) -> &'static str {
    match f {
        CmafFailure::Permanent(404) | CmafFailure::Status(404 | 410) => {
            "Check the location (the publishing point URL, e.g. https://host/channel1/channel1.isml) and that the \
             publishing point exists and is running."
        }
        CmafFailure::Permanent(415) => {
            "The receiver does not take this media type: check the codecs and the content-type property."
        }
        _ => as_smooth(f).map_or("", |s| reporting::advice(&s)),
    }
}

/// The error code that fits a failure that stopped a track: refused credentials and
/// certificates are `NotAuthorized`, a missing publishing point `NotFound`, the rest
/// `OpenWrite` (before the track ran) or `Write`.
pub fn error_code(f: &CmafFailure, at_start: bool) -> gst::ResourceError {
    match f {
        CmafFailure::Status(401 | 403) | CmafFailure::Permanent(401 | 403) => gst::ResourceError::NotAuthorized,
        CmafFailure::Transport(TransportError::Tls(r)) if *r != TlsRefusal::Handshake => {
            gst::ResourceError::NotAuthorized
        }
        CmafFailure::Status(404 | 410) | CmafFailure::Permanent(404 | 410) => gst::ResourceError::NotFound,
        _ if at_start => gst::ResourceError::OpenWrite,
        _ => gst::ResourceError::Write,
    }
}

/// The title of the error for a failure that stopped a track.
pub fn title(f: &CmafFailure, track: &str) -> String {
    match f {
        CmafFailure::Status(s) | CmafFailure::Permanent(s) => {
            format!("The ingest server refused the track {track}: HTTP {s} {}", reporting::reason(*s))
        }
        CmafFailure::Transport(TransportError::Tls(_)) => "The TLS connection to the ingest server failed".into(),
        CmafFailure::Transport(_) | CmafFailure::ConnectTimeout => "Could not connect to the ingest server".into(),
        _ => format!("The ingest server stopped taking the track {track}"),
    }
}

pub fn header_requested(url: &str, sequence: u32) -> gst::Structure {
    gst::Structure::builder(HEADER_REQUESTED).field("url", url).field("sequence", sequence).build()
}

pub fn resent(url: &str, seqs: &[u32], outage: Duration) -> gst::Structure {
    gst::Structure::builder(RESENT)
        .field("url", url)
        .field("count", seqs.len() as u32)
        .field("sequences", gst::Array::new(seqs.iter().copied()))
        .field("outage", ns(outage))
        .build()
}

pub fn skipped(url: &str, segments: &[LostSegment], outage: Duration) -> gst::Structure {
    let (start, duration) = media_span(segments);
    gst::Structure::builder(SKIPPED)
        .field("url", url)
        .field("count", segments.len() as u32)
        .field("sequences", sequences(segments))
        .field("media-time", start)
        .field("media-duration", duration)
        .field("outage", ns(outage))
        .build()
}

pub fn dropped(url: &str, track_id: u32, segments: &[LostSegment]) -> gst::Structure {
    let (start, duration) = media_span(segments);
    gst::Structure::builder(reporting::DROPPED)
        .field("url", url)
        .field("count", segments.len() as u32)
        .field("media-time", start)
        .field("media-duration", duration)
        .field("track-ids", gst::Array::new(segments.iter().map(|_| track_id)))
        .field("times", gst::Array::new(segments.iter().map(|s| s.decode_time)))
        .field("sequences", sequences(segments))
        .build()
}

pub fn rejected(url: &str, sequence: u32, status: u16) -> gst::Structure {
    gst::Structure::builder(REJECTED)
        .field("url", url)
        .field("sequence", sequence)
        .field("status", u32::from(status))
        .build()
}

pub fn disconnected(url: &str, f: &CmafFailure, detail: &str) -> gst::Structure {
    let (reason, status, _) = describe(f);
    gst::Structure::builder(reporting::DISCONNECTED)
        .field("url", url)
        .field("reason", reason)
        .field("status", status)
        .field("detail", detail)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_have_codes_words_and_advice() {
        gst::init().unwrap();
        let tls = CmafFailure::Transport(TransportError::Tls(TlsRefusal::UntrustedCertificate));
        assert_eq!(error_code(&tls, true), gst::ResourceError::NotAuthorized);
        assert!(advice(&tls).contains("ca-file"));
        assert_eq!(error_code(&CmafFailure::Status(403), true), gst::ResourceError::NotAuthorized);
        assert_eq!(error_code(&CmafFailure::Permanent(404), false), gst::ResourceError::NotFound);
        assert_eq!(error_code(&CmafFailure::Permanent(415), true), gst::ResourceError::OpenWrite);
        assert_eq!(error_code(&CmafFailure::Permanent(415), false), gst::ResourceError::Write);
        assert!(advice(&CmafFailure::Permanent(404)).contains("publishing point"));
        assert!(advice(&CmafFailure::Status(401)).contains("credentials"));
        assert_eq!(
            title(&CmafFailure::Permanent(404), "video.cmfv"),
            "The ingest server refused the track video.cmfv: HTTP 404 Not Found"
        );
        assert_eq!(describe(&CmafFailure::Status(503)).0, "status");
        let lost = [
            LostSegment { sequence: 5, decode_time: 8000, timescale: 1000, duration: 2000 },
            LostSegment { sequence: 6, decode_time: 10_000, timescale: 1000, duration: 2000 },
        ];
        assert_eq!(media_span(&lost), (8_000_000_000, 4_000_000_000));
        let m = skipped("u", &lost, Duration::from_secs(9));
        assert_eq!(m.get::<u32>("count").unwrap(), 2);
        assert_eq!(m.get::<u64>("outage").unwrap(), 9_000_000_000);
    }
}
