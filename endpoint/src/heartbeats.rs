// SPDX-License-Identifier: MPL-2.0
//! The heartbeats API (Azure Media Services REST API 2022-11-01, Live Events -
//! "List Get Track Ingest Heartbeats"): `POST .../liveEvents/{name}/getTrackIngestHeartbeats`
//! answers `{"value": [...]}` with one `TrackEvent/IngestHeartbeat` event per track and
//! 20-second window, the newest last, in exactly the shape of the service's: the same field
//! names, numbers as numbers, timestamps and the timescale as strings. A track is a track name
//! of the publishing point, whichever streams feed it.
//!
//! How each field is computed, from the arrivals of the window (the 20 s that end at
//! `eventTime`; the current window ends now):
//! - `bitrate`: the track's `systemBitrate` in the Live Server Manifest;
//! - `incomingBitrate`: bits of the fragments that arrived in the window, over 20 s (over the
//!   time elapsed since the first arrival, for a window that began before it);
//! - `lastTimestamp`: the newest fragment time received in the window, in the track's
//!   timescale (`timescale`), as a string;
//! - `overlapCount`, `discontinuityCount`, `nonincreasingCount`: fragments of the window that
//!   overlapped one already received (dropped), came after a gap, or had a time before the
//!   newest received (and filled a hole);
//! - `unexpectedBitrate`: `true` when the incoming bitrate is below half or above twice the
//!   declared one, else `null` (as the service writes it);
//! - `state`: `Running` when a fragment arrived in the window, else `Stopped`;
//! - `healthy`: `true` when running with no overlap, discontinuity or timestamp in the past in
//!   the window and no unexpected bitrate; `false` otherwise; `null` for a window without data;
//! - `lastFragmentArrivalTime`: UTC of the newest arrival;
//! - `ingestDriftValue`: over the last minute, how many seconds of media per minute arrived
//!   late: (wall time − media received) / wall time × 60, rounded, 0 when it kept up, `n/a`
//!   without data;
//! - `transcriptionState`, `transcriptionLanguage`: empty (no live transcription here).

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::clock::utc_centis;
use crate::media::meta::Kind;
use crate::store::{Arrival, Point, Track};

/// The window of one heartbeat.
pub const WINDOW: Duration = Duration::from_secs(20);

/// Windows reported per track, newest last: five minutes.
pub const WINDOWS: usize = 15;

fn heartbeat(t: &Track, end: Instant, end_wall: SystemTime) -> Value {
    let start = end.checked_sub(WINDOW).unwrap_or(end);
    let in_window: Vec<_> = t.arrivals.iter().filter(|a| a.at > start && a.at <= end).collect();
    let bits: u64 = in_window.iter().map(|a| a.bytes * 8).sum();
    let first_at = t.arrivals.front().map(|a| a.at);
    let span = match first_at {
        Some(f) if f > start => end.saturating_duration_since(f).max(Duration::from_secs(1)),
        _ => WINDOW,
    };
    let incoming = (bits as f64 / span.as_secs_f64()).round() as u64;
    let count = |how: Arrival| in_window.iter().filter(|a| a.how == how).count() as u64;
    let (overlaps, gaps, past) = (count(Arrival::Overlap), count(Arrival::Discontinuity), count(Arrival::Past));
    let last_timestamp = in_window.iter().map(|a| a.time).max();
    let running = !in_window.is_empty();
    let declared = t.meta.bitrate;
    let m = &t.meta;
    let unexpected = running && declared > 0 && (incoming * 2 < declared || incoming > declared * 2);
    let healthy = if running { Value::Bool(overlaps + gaps + past == 0 && !unexpected) } else { Value::Null };
    // The last minute before the window's end: media that arrived against wall time.
    let minute_start = end.checked_sub(Duration::from_secs(60)).unwrap_or(end);
    let last_minute: Vec<_> = t.arrivals.iter().filter(|a| a.at > minute_start && a.at <= end).collect();
    let drift = match (last_minute.first(), first_at) {
        (None, _) => "n/a".to_string(),
        (Some(_), Some(first)) => {
            let wall = end.saturating_duration_since(first.max(minute_start)).as_secs_f64();
            let ts = f64::from(t.meta.timescale.max(1));
            let media: f64 = last_minute
                .iter()
                .filter(|a| !matches!(a.how, Arrival::Duplicate | Arrival::Overlap | Arrival::Longer { .. }))
                .map(|a| a.duration as f64 / ts)
                .sum();
            // Media comes in whole fragments: up to one fragment's lead or lag is not drift.
            let fragment = last_minute.last().map_or(0.0, |a| a.duration as f64 / ts);
            if wall < 1.0 || media + fragment >= wall {
                "0".to_string()
            } else {
                format!("{:.0}", (wall - media - fragment) / wall * 60.0)
            }
        }
        _ => "n/a".to_string(),
    };
    let last_arrival = t.arrivals.iter().filter(|a| a.at <= end).map(|a| a.wall).max();
    json!({
        "eventType": "TrackEvent/IngestHeartbeat",
        "eventTime": utc_centis(end_wall),
        "data": {
            "trackName": m.name,
            "trackType": m.kind.as_str(),
            "bitrate": declared,
            "incomingBitrate": incoming,
            "lastTimestamp": last_timestamp.map(|v| v.to_string()).unwrap_or_else(|| "0".into()),
            "timescale": t.meta.timescale.to_string(),
            "overlapCount": overlaps,
            "discontinuityCount": gaps,
            "nonincreasingCount": past,
            "unexpectedBitrate": if unexpected { Value::Bool(true) } else { Value::Null },
            "state": if running { "Running" } else { "Stopped" },
            "healthy": healthy,
            "lastFragmentArrivalTime": last_arrival.map(utc_centis).unwrap_or_default(),
            "ingestDriftValue": drift,
            "transcriptionState": "",
            "transcriptionLanguage": "",
        }
    })
}

/// The heartbeats of a publishing point's audio and video tracks: for each, the windows since
/// its first arrival (at most [`WINDOWS`]), ending at multiples of 20 s before now, the newest
/// ending now; ordered by event time.
pub fn heartbeats(pp: &Point, now: Instant, now_wall: SystemTime) -> Value {
    let mut events: Vec<(SystemTime, Value)> = Vec::new();
    for t in pp.tracks.values().filter(|t| t.meta.kind != Kind::Text) {
        let Some(first) = t.arrivals.front().map(|a| a.at) else { continue };
        for k in 0..WINDOWS as u32 {
            let back = WINDOW * k;
            let (Some(end), Some(end_wall)) = (now.checked_sub(back), now_wall.checked_sub(back)) else { break };
            if k > 0 && end < first {
                break;
            }
            events.push((end_wall, heartbeat(t, end, end_wall)));
        }
    }
    events.sort_by_key(|(t, _)| *t);
    json!({ "value": events.into_iter().map(|(_, v)| v).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::meta::TrackMeta;
    use crate::store::Track;

    fn point_with(arrivals: &[(u64, u64)], now: Instant, wall: SystemTime) -> Point {
        let meta = TrackMeta { bitrate: 400_000, ..TrackMeta::new("video", Kind::Video, 1000) };
        let mut t = Track::new(meta, None);
        // One 2 s fragment of 100 kB every 2 s, the last arriving now.
        let n = arrivals.len() as u32;
        for (i, (time, d)) in arrivals.iter().enumerate() {
            let back = Duration::from_secs(2) * (n - 1 - i as u32);
            t.add(*time, *d, Bytes::from(vec![0; 100_000]), 8, now - back, wall - back);
        }
        let mut p = Point::default();
        p.tracks.insert("video".into(), t);
        p
    }

    #[test]
    fn a_healthy_window_and_an_unhealthy_one() {
        let (now, wall) = (Instant::now() + Duration::from_secs(60), SystemTime::now());
        let frags: Vec<(u64, u64)> = (0..10).map(|i| (i * 2000, 2000)).collect();
        let v = heartbeats(&point_with(&frags, now, wall), now, wall);
        let events = v["value"].as_array().unwrap();
        let newest = &events.last().unwrap()["data"];
        assert_eq!(newest["state"], "Running");
        assert_eq!(newest["timescale"], "1000");
        assert_eq!(newest["lastTimestamp"], "18000");
        // Ten fragments of 800 kbit, the first 18 s ago: over the 18 s since it.
        assert_eq!(newest["incomingBitrate"], 8_000_000 / 18);
        assert_eq!(newest["healthy"], true);
        assert!(newest["unexpectedBitrate"].is_null());
        // A gap and an overlap make the window unhealthy and are counted.
        let mut frags = frags;
        frags.push((30_000, 2000));
        frags.push((31_000, 2000));
        let v = heartbeats(&point_with(&frags, now, wall), now, wall);
        let newest = &v["value"].as_array().unwrap().last().unwrap()["data"];
        assert_eq!((newest["discontinuityCount"].as_u64(), newest["overlapCount"].as_u64()), (Some(1), Some(1)));
        assert_eq!(newest["healthy"], false);
        assert_eq!(newest.as_object().unwrap().len(), 16);
    }
}
