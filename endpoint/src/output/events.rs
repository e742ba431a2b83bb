// SPDX-License-Identifier: MPL-2.0
//! Ad breaks in the DASH and HLS outputs: the SCTE-35 messages of a point's sparse (text)
//! tracks, whichever ingest brought them — a Smooth sparse stream (Azure timed metadata
//! 2.2.3) or a CMAF timed metadata track (stored the same way, see [`crate::ingest::cmaf`]).
//! Each stored message is a sparse fragment whose `mdat` holds version 1, the message id, a
//! presentation time delta from the fragment's time and the binary splice_info_section (SCTE
//! 35 §9.6); its entry's duration is the event's (0 when unknown).
//!
//! - DASH (ISO/IEC 23009-1 §5.10.2; SCTE 214-1): a Period `EventStream` of scheme
//!   `urn:scte:scte35:2014:xml+bin` per sparse track, an `Event` per message with its
//!   presentation time (from the Period's start), duration and id, holding the section in
//!   base64 as `scte35:Signal/scte35:Binary`.
//! - HLS (RFC 8216 §4.3.2.7 and §4.3.2.7.1, "Mapping SCTE-35 into EXT-X-DATERANGE"; §4.4.5.1
//!   of its revision): a splice_insert out of the network opens a date range, `SCTE35-OUT`
//!   with the section as a hexadecimal-sequence and `PLANNED-DURATION` when the break's
//!   length is known; the splice_insert that returns to the network (same splice_event_id)
//!   closes it, `SCTE35-IN` with the same `ID` and the actual `DURATION`; any other section
//!   (time_signal, a cancellation, ...) is a date range of its own with `SCTE35-CMD`. The
//!   `START-DATE` is the splice's wall-clock time: the point's anchor plus its media time, as
//!   for `EXT-X-PROGRAM-DATE-TIME`.

use std::fmt::Write;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use fmp4ingest_core::scte35::{SpliceCommand, parse_section};

use super::ticks_to_duration;
use crate::clock::utc_millis;
use crate::media::meta::Kind;
use crate::store::{Listing, TrackListing};

/// One SCTE-35 message of a sparse track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdEvent {
    /// The message id.
    pub id: u32,
    /// The splice: the event's presentation time, in the track's timescale.
    pub time: u64,
    /// In the track's timescale; `None` when unknown.
    pub duration: Option<u64>,
    pub section: Bytes,
}

/// Whether a sparse track carries binary SCTE-35 (`urn:scte:scte35:2013:bin`, or the
/// `2013a` of the 2018 timed metadata text).
fn carries_scte35(t: &TrackListing) -> bool {
    t.meta.kind == Kind::Text
        && t.meta.param("Scheme").is_some_and(|s| s.starts_with("urn:scte:scte35:") && s.ends_with(":bin"))
}

/// The sparse tracks that carry SCTE-35, each with its messages in time order; a message that
/// is not a version 1 sparse payload holding a whole splice_info_section is left out.
pub fn scte35(l: &Listing) -> Vec<(&TrackListing, Vec<AdEvent>)> {
    let mut out = Vec::new();
    for t in l.tracks.iter().filter(|t| carries_scte35(t)) {
        let mut events: Vec<AdEvent> = t
            .entries
            .iter()
            .zip(&t.messages)
            .filter_map(|(&(time, duration), m)| {
                let word = |at: usize| m.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if word(0)? != 1 {
                    return None;
                }
                let section = m.slice(12..);
                parse_section(&section).ok()?;
                Some(AdEvent {
                    id: word(4)?,
                    time: time + u64::from(word(8)?),
                    duration: (duration > 0).then_some(duration),
                    section,
                })
            })
            .collect();
        events.sort_by_key(|e| e.time);
        if !events.is_empty() {
            out.push((t, events));
        }
    }
    out
}

/// The SCTE 35 XML namespace of `scte35:Signal` (SCTE 35 §10, the 2016 schema).
pub const SCTE35_XML_NS: &str = "http://www.scte.org/schemas/35/2016";

/// The `EventStream`s of a Period starting at media time `origin` (seconds): the events that
/// end at or after the start of the media listed, `from` (seconds).
pub fn dash_event_streams(l: &Listing, origin: f64, from: f64) -> String {
    let mut s = String::new();
    for (t, events) in scte35(l) {
        let ts = t.meta.timescale.max(1);
        let origin_ticks = (origin * f64::from(ts)).round() as u64;
        let from_ticks = (from * f64::from(ts)).floor() as u64;
        let kept: Vec<&AdEvent> = events
            .iter()
            .filter(|e| e.time.saturating_add(e.duration.unwrap_or(0)) >= from_ticks && e.time >= origin_ticks)
            .collect();
        if kept.is_empty() {
            continue;
        }
        let _ = writeln!(s, "    <EventStream schemeIdUri=\"urn:scte:scte35:2014:xml+bin\" timescale=\"{ts}\">");
        for e in kept {
            let _ = write!(s, "      <Event presentationTime=\"{}\"", e.time - origin_ticks);
            if let Some(d) = e.duration {
                let _ = write!(s, " duration=\"{d}\"");
            }
            let _ = writeln!(
                s,
                " id=\"{}\"><scte35:Signal><scte35:Binary>{}</scte35:Binary></scte35:Signal></Event>",
                e.id,
                STANDARD.encode(&e.section)
            );
        }
        s.push_str("    </EventStream>\n");
    }
    s
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for x in b {
        let _ = write!(s, "{x:02X}");
    }
    s
}

fn seconds(ticks: u64, timescale: u32) -> String {
    format!("{:.3}", ticks_to_duration(ticks, timescale).as_secs_f64())
}

/// The `EXT-X-DATERANGE` tags of the events that end at or after media time `from` (seconds),
/// with `anchor` the wall-clock instant of media time 0.
pub fn hls_date_ranges(l: &Listing, anchor: SystemTime, from: f64) -> String {
    let mut s = String::new();
    for (t, events) in scte35(l) {
        let ts = t.meta.timescale.max(1);
        let date = |ticks: u64| utc_millis(anchor + ticks_to_duration(ticks, ts));
        let from_ticks = (from * f64::from(ts)).floor() as u64;
        // Splices out of the network still open: splice_event_id → (ID, start).
        let mut open: Vec<(u32, String, u64)> = Vec::new();
        for e in &events {
            let Ok(info) = parse_section(&e.section) else { continue };
            let shown = e.time.saturating_add(e.duration.unwrap_or(0)) >= from_ticks;
            match info.command {
                SpliceCommand::Insert(i) if !i.cancel && i.out_of_network => {
                    let id = format!("splice-{:X}-{}", i.event_id, e.time);
                    if shown {
                        let _ = write!(s, "#EXT-X-DATERANGE:ID=\"{id}\",START-DATE=\"{}\"", date(e.time));
                        let planned = e
                            .duration
                            .or(info.break_duration().map(|d| d.saturating_mul(u64::from(ts)) / 90_000))
                            .filter(|d| *d > 0);
                        if let Some(d) = planned {
                            let _ = write!(s, ",PLANNED-DURATION={}", seconds(d, ts));
                        }
                        let _ = writeln!(s, ",SCTE35-OUT={}", hex(&e.section));
                    }
                    open.retain(|(ev, _, _)| *ev != i.event_id);
                    open.push((i.event_id, id, e.time));
                }
                SpliceCommand::Insert(i) if !i.cancel && open.iter().any(|(ev, _, _)| *ev == i.event_id) => {
                    let at = open.iter().position(|(ev, _, _)| *ev == i.event_id).expect("found");
                    let (_, id, start) = open.remove(at);
                    if shown {
                        let _ = writeln!(
                            s,
                            "#EXT-X-DATERANGE:ID=\"{id}\",START-DATE=\"{}\",DURATION={},SCTE35-IN={}",
                            date(start),
                            seconds(e.time.saturating_sub(start), ts),
                            hex(&e.section)
                        );
                    }
                }
                _ if shown => {
                    let _ = writeln!(
                        s,
                        "#EXT-X-DATERANGE:ID=\"scte35-{}-{}\",START-DATE=\"{}\",SCTE35-CMD={}",
                        e.id,
                        e.time,
                        date(e.time),
                        hex(&e.section)
                    );
                }
                _ => {}
            }
        }
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use fmp4ingest_core::scte35::{SpliceInsert, build_splice_insert};

    use super::*;
    use crate::media::meta::TrackMeta;
    use crate::output::SharedCache;

    /// A sparse SCTE-35 track of these (time, duration, message payload) entries, 90 kHz.
    pub fn scte35_track(entries: &[(u64, u64, Vec<u8>)]) -> TrackListing {
        TrackListing {
            meta: Arc::new(TrackMeta {
                params: vec![("Scheme".into(), "urn:scte:scte35:2013:bin".into())],
                ..TrackMeta::new("scte35", Kind::Text, 90_000)
            }),
            entries: entries.iter().map(|(t, d, _)| (*t, *d)).collect(),
            first_sequence: 0,
            messages: entries.iter().map(|(_, _, m)| Bytes::from(m.clone())).collect(),
            cache: SharedCache::default(),
        }
    }

    /// A sparse payload: version 1, id, delta, section.
    pub fn payload(id: u32, delta: u32, section: &[u8]) -> Vec<u8> {
        [&1u32.to_be_bytes()[..], &id.to_be_bytes(), &delta.to_be_bytes(), section].concat()
    }

    pub fn out_and_in() -> (Vec<u8>, Vec<u8>) {
        (
            build_splice_insert(&SpliceInsert::program(0x6FFF_FFF0, true, Some(900_000), Some(5_400_000))),
            build_splice_insert(&SpliceInsert::program(0x6FFF_FFF0, false, Some(6_300_000), None)),
        )
    }

    fn listing() -> Listing {
        let (out, back) = out_and_in();
        let cmd = build_splice_insert(&SpliceInsert::cancel(9));
        Listing {
            live: true,
            window: Duration::from_secs(60),
            anchor: UNIX_EPOCH,
            published: UNIX_EPOCH,
            tracks: vec![scte35_track(&[
                // An OUT at 10 s announced 4 s before (Smooth: time = arrival, delta = lead),
                // 60 s long; its IN at 70 s; a cancellation at 80 s; a broken message.
                (540_000, 5_400_000, payload(1, 360_000, &out)),
                (6_300_000, 0, payload(2, 0, &back)),
                (7_200_000, 0, payload(3, 0, &cmd)),
                (7_300_000, 0, payload(4, 0, &out[..10])),
            ])],
        }
    }

    #[test]
    fn messages_read_back_as_events() {
        let l = listing();
        let evs = scte35(&l);
        assert_eq!(evs.len(), 1);
        let times: Vec<(u32, u64, Option<u64>)> = evs[0].1.iter().map(|e| (e.id, e.time, e.duration)).collect();
        assert_eq!(times, [(1, 900_000, Some(5_400_000)), (2, 6_300_000, None), (3, 7_200_000, None)]);
    }

    #[test]
    fn dash_event_streams_from_the_period_start() {
        let s = dash_event_streams(&listing(), 0.0, 0.0);
        assert!(
            s.starts_with("    <EventStream schemeIdUri=\"urn:scte:scte35:2014:xml+bin\" timescale=\"90000\">"),
            "{s}"
        );
        let (out, _) = out_and_in();
        assert!(
            s.contains(&format!(
                "<Event presentationTime=\"900000\" duration=\"5400000\" id=\"1\"><scte35:Signal><scte35:Binary>{}</scte35:Binary>",
                STANDARD.encode(&out)
            )),
            "{s}"
        );
        assert_eq!(s.matches("<Event ").count(), 3);
        // Recorded from 30 s: the OUT still covers it; times from the Period's start.
        let s = dash_event_streams(&listing(), 5.0, 30.0);
        assert!(s.contains("presentationTime=\"450000\" duration=\"5400000\""), "{s}");
        // From 75 s: the cancellation alone.
        assert_eq!(dash_event_streams(&listing(), 0.0, 75.0).matches("<Event ").count(), 1);
    }

    #[test]
    fn hls_date_ranges_out_in_and_cmd() {
        let s = hls_date_ranges(&listing(), UNIX_EPOCH + Duration::from_secs(1000), 0.0);
        let (out, back) = out_and_in();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert_eq!(
            lines[0],
            format!(
                "#EXT-X-DATERANGE:ID=\"splice-6FFFFFF0-900000\",START-DATE=\"1970-01-01T00:16:50.000Z\",\
                 PLANNED-DURATION=60.000,SCTE35-OUT={}",
                hex(&out)
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "#EXT-X-DATERANGE:ID=\"splice-6FFFFFF0-900000\",START-DATE=\"1970-01-01T00:16:50.000Z\",\
                 DURATION=60.000,SCTE35-IN={}",
                hex(&back)
            )
        );
        assert!(lines[2].starts_with(
            "#EXT-X-DATERANGE:ID=\"scte35-3-7200000\",START-DATE=\"1970-01-01T00:18:00.000Z\",SCTE35-CMD=0xFC"
        ));
        assert!(hex(&[0xfc, 0x30, 1]) == "0xFC3001");
    }
}
