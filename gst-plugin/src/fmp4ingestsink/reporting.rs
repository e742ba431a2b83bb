// SPDX-License-Identifier: MPL-2.0
//! What the element tells the application: the element messages it posts for session events,
//! and the structure of its `stats` property. The README documents both.
//!
//! Messages (all with `url`, the ingest URL without credentials):
//! - `fmp4ingestsink-connected`: `connection` (guint64, 1 for the first POST);
//! - `fmp4ingestsink-disconnected`: `reason` (string), `status` (guint, HTTP status or 0),
//!   `detail` (string);
//! - `fmp4ingestsink-reconnecting`: `attempt` (guint), `delay` (guint64 ns);
//! - `fmp4ingestsink-resent`: `count` (guint), `track-ids` and `times` (arrays: the resent
//!   fragments' tracks and tfxd times);
//! - `fmp4ingestsink-dropped`: `count` (guint), `media-time` (guint64 ns, start of the first
//!   dropped fragment), `media-duration` (guint64 ns), `track-ids`, `times`;
//! - `fmp4ingestsink-redirected`: `to` (string), `status` (guint): the probe was redirected
//!   and the POST goes to `to` (`follow-redirects`).
//!
//! Ad signals (`url` is the sparse stream's):
//! - `fmp4ingestsink-signal-accepted`: `id` (guint), `running-time` (guint64 ns, the splice),
//!   `send-at` (guint64 ns, running time when the message goes out), `short-lead` (boolean),
//!   `key-unit` and `new-fragment` (booleans: what the media does at the splice), `replaced`
//!   (boolean: an earlier message with this id had not gone out; a cancellation withdrew it);
//! - `fmp4ingestsink-signal-refused`: `event` (string, the structure name), `running-time`
//!   (guint64 ns, when known), `reason` (string);
//! - `fmp4ingestsink-sparse-delivered`: `post` (`header` or `message`), `id` (guint), `time`
//!   (guint64, tfxd time on the parent's timeline), `status` (guint), `attempts` (guint);
//! - `fmp4ingestsink-sparse-retrying`: `post`, `id`, `time`, `status` (guint, 0 = no answer),
//!   `detail` (string), `attempt` (guint), `delay` (guint64 ns);
//! - `fmp4ingestsink-sparse-failed`: `post`, `id`, `time`, `attempts`: given up.

use std::time::{Duration, SystemTime};

use fmp4ingest_core::ad_signals::Accepted;
use fmp4ingest_core::ingest_header::IngestTrack;
use fmp4ingest_core::session::sparse::{SparseEvent, SparsePost};
use fmp4ingest_core::session::{DroppedFragment, Failure, ResentFragment, StreamStats, TlsRefusal, TransportError};
use gst::glib;
use gst::prelude::*;

pub const CONNECTED: &str = "fmp4ingestsink-connected";
pub const DISCONNECTED: &str = "fmp4ingestsink-disconnected";
pub const RECONNECTING: &str = "fmp4ingestsink-reconnecting";
pub const RESENT: &str = "fmp4ingestsink-resent";
pub const DROPPED: &str = "fmp4ingestsink-dropped";
pub const REDIRECTED: &str = "fmp4ingestsink-redirected";
pub const SIGNAL_ACCEPTED: &str = "fmp4ingestsink-signal-accepted";
pub const SIGNAL_REFUSED: &str = "fmp4ingestsink-signal-refused";
pub const SPARSE_DELIVERED: &str = "fmp4ingestsink-sparse-delivered";
pub const SPARSE_RETRYING: &str = "fmp4ingestsink-sparse-retrying";
pub const SPARSE_FAILED: &str = "fmp4ingestsink-sparse-failed";

/// A short name of the reason, the HTTP status if any, and a sentence for humans.
pub fn describe_failure(f: &Failure) -> (&'static str, u32, String) {
    match f {
        Failure::ProbeRefused { status } => {
            ("probe-refused", u32::from(*status), format!("the probe was answered HTTP {status} {}", reason(*status)))
        }
        Failure::ProbeTimeout => ("probe-timeout", 0, "the probe got no answer within the connect-timeout".into()),
        Failure::ConnectTimeout => ("connect-timeout", 0, "the POST did not connect within the connect-timeout".into()),
        Failure::Transport { error } => {
            let what = match error {
                TransportError::Connect => "could not connect",
                TransportError::Timeout => "connecting timed out",
                TransportError::Write => "writing failed",
                TransportError::Closed => "the server closed the connection",
                TransportError::Tls(TlsRefusal::UntrustedCertificate) => "the server's certificate is not trusted",
                TransportError::Tls(TlsRefusal::ExpiredCertificate) => {
                    "the server's certificate has expired or is not valid yet"
                }
                TransportError::Tls(TlsRefusal::WrongName) => "the server's certificate is for another host name",
                TransportError::Tls(TlsRefusal::ClientCertificateRequired) => {
                    "the server refused the connection without a client certificate it accepts"
                }
                TransportError::Tls(TlsRefusal::Handshake) => "the TLS handshake failed",
                TransportError::Other => "the connection failed",
            };
            ("transport", 0, what.into())
        }
        Failure::ServerAbort { status } => (
            "server-abort",
            u32::from(*status),
            format!("the server answered HTTP {status} {} before the stream ended", reason(*status)),
        ),
        Failure::SendTimeout => ("send-timeout", 0, "nothing moved for the send-timeout while data waited".into()),
        Failure::EosTimeout => ("eos-timeout", 0, "the rest could not be delivered within the eos-timeout".into()),
    }
}

/// What to do about a failure.
pub fn advice(f: &Failure) -> &'static str {
    let status = match f {
        Failure::ProbeRefused { status } | Failure::ServerAbort { status } => *status,
        Failure::Transport { error: TransportError::Tls(r) } => {
            return match r {
                TlsRefusal::UntrustedCertificate => {
                    "Add the CA that issued the server's certificate with ca-file (PEM), or set tls-verify=false \
                     to accept any certificate (not for production)."
                }
                TlsRefusal::ExpiredCertificate => {
                    "Renew the server's certificate, or check this machine's clock; tls-verify=false accepts it \
                     anyway (not for production)."
                }
                TlsRefusal::WrongName => {
                    "Use the host name the server's certificate is issued for in the location, or fix the \
                     certificate."
                }
                TlsRefusal::ClientCertificateRequired => {
                    "The server wants a client certificate it trusts: set client-cert and client-key (mutual TLS)."
                }
                TlsRefusal::Handshake => "Check that the server speaks TLS 1.2 or 1.3 on this port.",
            };
        }
        _ => return "",
    };
    match status {
        401 | 407 => "Check the credentials: user-id/user-pw, user:password@ in the location, or extra-headers.",
        403 => "The server forbids this stream: check the credentials and the channel's access rules.",
        404 | 410 => {
            "Check the location (publishing point and Streams() id) and that the channel exists and is running."
        }
        400 | 405 | 415 => "The server does not take this request: check the location and content-type.",
        300..=399 => "Redirects of the probe are followed only with follow-redirects=true.",
        _ => "",
    }
}

/// The reason phrase of a status (RFC 9110), for texts.
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
}

/// The error domain and code that fit a failure that ended the stream: refused credentials and
/// certificates are `NotAuthorized`, a missing publishing point `NotFound`, the rest
/// `OpenWrite` (nothing could be sent) or `Write` (the stream stopped).
pub fn error_code(f: &Failure, at_start: bool) -> gst::ResourceError {
    match f {
        Failure::ProbeRefused { status: 401 | 403 } | Failure::ServerAbort { status: 401 | 403 } => {
            gst::ResourceError::NotAuthorized
        }
        Failure::Transport { error: TransportError::Tls(r) } if *r != TlsRefusal::Handshake => {
            gst::ResourceError::NotAuthorized
        }
        Failure::ProbeRefused { status: 404 | 410 } => gst::ResourceError::NotFound,
        Failure::ProbeRefused { .. } | Failure::Transport { .. } | Failure::ProbeTimeout | Failure::ConnectTimeout => {
            gst::ResourceError::OpenWrite
        }
        _ if at_start => gst::ResourceError::OpenWrite,
        _ => gst::ResourceError::Write,
    }
}

fn track_arrays(items: impl Iterator<Item = (u32, u64)>) -> (gst::Array, gst::Array) {
    let (ids, times): (Vec<u32>, Vec<u64>) = items.unzip();
    (gst::Array::new(ids), gst::Array::new(times))
}

pub fn connected(url: &str, connection: u64) -> gst::Structure {
    gst::Structure::builder(CONNECTED).field("url", url).field("connection", connection).build()
}

pub fn disconnected(url: &str, failure: &Failure, detail: &str) -> gst::Structure {
    let (reason, status, _) = describe_failure(failure);
    gst::Structure::builder(DISCONNECTED)
        .field("url", url)
        .field("reason", reason)
        .field("status", status)
        .field("detail", detail)
        .build()
}

pub fn reconnecting(url: &str, attempt: u32, delay: Duration) -> gst::Structure {
    gst::Structure::builder(RECONNECTING)
        .field("url", url)
        .field("attempt", attempt)
        .field("delay", u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX))
        .build()
}

pub fn resent(url: &str, fragments: &[ResentFragment]) -> gst::Structure {
    let (ids, times) = track_arrays(fragments.iter().map(|f| (f.track_id, f.time)));
    gst::Structure::builder(RESENT)
        .field("url", url)
        .field("count", fragments.len() as u32)
        .field("track-ids", ids)
        .field("times", times)
        .build()
}

pub fn dropped(url: &str, fragments: &[DroppedFragment]) -> gst::Structure {
    let (ids, times) = track_arrays(fragments.iter().map(|f| (f.track_id, f.time)));
    gst::Structure::builder(DROPPED)
        .field("url", url)
        .field("count", fragments.len() as u32)
        .field("media-time", fragments.iter().map(|f| f.start_ns).min().unwrap_or(0))
        .field("media-duration", fragments.iter().map(|f| f.duration_ns).sum::<u64>())
        .field("track-ids", ids)
        .field("times", times)
        .build()
}

pub fn redirected(from: &str, to: &str, status: u16) -> gst::Structure {
    gst::Structure::builder(REDIRECTED).field("url", from).field("to", to).field("status", u32::from(status)).build()
}

pub fn signal_accepted(url: &str, a: &Accepted, running_time: u64) -> gst::Structure {
    gst::Structure::builder(SIGNAL_ACCEPTED)
        .field("url", url)
        .field("id", a.id)
        .field("running-time", running_time)
        .field("send-at", a.send_at_ns)
        .field("short-lead", a.short_lead_ns.is_some())
        .field("key-unit", a.key_unit_ns.is_some())
        .field("new-fragment", a.cut_ns.is_some())
        .field("replaced", a.replaced)
        .build()
}

pub fn signal_refused(event: &str, running_time: Option<u64>, reason: &str) -> gst::Structure {
    gst::Structure::builder(SIGNAL_REFUSED)
        .field("event", event)
        .field_if_some("running-time", running_time)
        .field("reason", reason)
        .build()
}

/// The message for a sparse session event, and a sentence for logs.
pub fn sparse_event(url: &str, event: &SparseEvent, detail: &str) -> gst::Structure {
    let post = |b: gst::structure::Builder, p: &SparsePost| match p {
        SparsePost::Header => b.field("post", "header").field("id", 0u32).field("time", 0u64),
        SparsePost::Message { id, time } => b.field("post", "message").field("id", *id).field("time", *time),
    };
    match event {
        SparseEvent::Delivered { post: p, status, attempts } => {
            post(gst::Structure::builder(SPARSE_DELIVERED).field("url", url), p)
                .field("status", u32::from(*status))
                .field("attempts", *attempts)
                .build()
        }
        SparseEvent::Retrying { post: p, status, attempt, delay, .. } => {
            post(gst::Structure::builder(SPARSE_RETRYING).field("url", url), p)
                .field("status", u32::from(*status))
                .field("detail", detail)
                .field("attempt", *attempt)
                .field("delay", u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX))
                .build()
        }
        SparseEvent::GaveUp { post: p, attempts } => {
            post(gst::Structure::builder(SPARSE_FAILED).field("url", url), p).field("attempts", *attempts).build()
        }
    }
}

/// ISO 8601 UTC with milliseconds, as the service writes `lastFragmentArrivalTime`.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    // glib's calendar; the milliseconds by hand (its %f gives microseconds).
    glib::DateTime::from_unix_utc(secs)
        .and_then(|dt| dt.format("%Y-%m-%dT%H:%M:%S"))
        .map(|s| format!("{s}.{:03}Z", d.subsec_millis()))
        .unwrap_or_default()
}

/// A track as its header declares it, for `stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTrack {
    pub track_id: u32,
    pub name: String,
    /// `video`, `audio` (or `metadata`, CMAF).
    pub kind: &'static str,
    /// The declared bitrate (the manifest's systemBitrate, or `btrt`).
    pub bitrate: u32,
    /// The track's own URL (CMAF), without credentials.
    pub url: Option<String>,
}

impl From<&IngestTrack> for DeclaredTrack {
    fn from(t: &IngestTrack) -> Self {
        DeclaredTrack {
            track_id: t.info.track_id,
            name: t.name.clone(),
            kind: t.info.kind.as_str(),
            bitrate: t.bitrate,
            url: None,
        }
    }
}

/// The `stats` property: the stream's figures, BaseSink's own, and one structure per track
/// with the field names of the service's ingest heartbeat.
pub fn stats_structure(
    stream_id: &str,
    url: &str,
    s: &StreamStats,
    now: Duration,
    tracks: &[DeclaredTrack],
    base: Option<&gst::StructureRef>,
) -> gst::Structure {
    let wall_now = SystemTime::now();
    let mut per_track = Vec::new();
    for t in &s.tracks {
        let declared = tracks.iter().find(|i| i.track_id == t.track_id);
        let arrival = t
            .last_fragment_sent_at
            .map(|at| iso8601(wall_now.checked_sub(now.saturating_sub(at)).unwrap_or(wall_now)))
            .unwrap_or_default();
        per_track.push(
            gst::Structure::builder("track")
                .field("trackId", t.track_id)
                .field("trackName", declared.map(|d| d.name.as_str()).unwrap_or(""))
                .field("trackType", declared.map(|d| d.kind).unwrap_or(""))
                .field("bitrate", u64::from(declared.map_or(0, |d| d.bitrate)))
                .field("incomingBitrate", t.incoming_bitrate)
                .field("lastTimestamp", t.last_timestamp.unwrap_or(0))
                .field("timescale", t.timescale)
                .field("lastFragmentArrivalTime", arrival)
                .field("discontinuityCount", t.discontinuity_count)
                .field("overlapCount", t.overlap_count)
                .field("nonincreasingCount", t.nonincreasing_count)
                .field("state", s.state)
                .field("healthy", s.healthy(t))
                .field_if_some("url", declared.and_then(|d| d.url.clone()))
                .build()
                .to_send_value(),
        );
    }
    let mut b = gst::Structure::builder("application/x-fmp4ingest-stats")
        .field("stream-id", stream_id)
        .field("url", url)
        .field("state", s.state)
        .field("connected", s.connected)
        .field("connections", s.connections)
        .field("reconnects", s.reconnects)
        .field("bytes-sent", s.bytes_sent)
        .field("fragments-sent", s.fragments_sent)
        .field("fragments-resent", s.fragments_resent)
        .field("fragments-dropped", s.fragments_dropped)
        .field("queue-fragments", s.queue_fragments)
        .field("queue-bytes", s.queue_bytes)
        .field("queue-duration", s.queue_duration_ns)
        .field("latency-count", s.latency.count)
        .field("latency-p50", s.latency.p50_ns)
        .field("latency-p99", s.latency.p99_ns)
        .field("latency-max", s.latency.max_ns)
        .field("tracks", gst::Array::from_values(per_track));
    if let Some(base) = base {
        for (name, value) in base.iter() {
            b = b.field(name, value.clone());
        }
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_iso8601_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(iso8601(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }
}
