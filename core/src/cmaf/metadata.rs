// SPDX-License-Identifier: MPL-2.0
//! The timed metadata track (`.cmfm`) of CMAF ingest: ad signals as `emsg` samples (DASH-IF
//! Live Media Ingest, "Requirements for Timed Metadata Tracks" and "Requirements for Signaling
//! and Conditioning Splice Points").
//!
//! The track's header is `hdlr` `meta`, `nmhd` and a `urim` sample entry holding
//! `urn:mpeg:dash:event:2012` ([`CmafHeader::for_metadata`]). Its segments mirror a media
//! track's, one for one: the same start, duration and `mfhd` sequence_number, so that they are
//! aligned with the media's and as identical across redundant encoders as the media's are.
//! Inside a segment the samples are contiguous: a sample boundary wherever the set of active
//! events changes (clause 8), each sample holding a version 1 `emsg` per active event (5a, 5d),
//! an empty sample where none is (CMAF tracks have no gaps, clause 3; the `emsg` scheme has no
//! filler box, so the filler is a sample of no bytes).
//!
//! An event is active from its announcement to its end (presentation time plus duration, or the
//! presentation time itself when the duration is unknown). Its `emsg` carries the splice as its
//! presentation_time (clause "Splice Points" 3), the track's timescale (5c), the SCTE-35 scheme
//! and the splice_info_section (5g). So that the receiver has it at least the lead before the
//! media segment holding the splice (clause "Splice Points" 2) although the metadata segment
//! holding the announcement is only complete at that segment's end, events are announced
//! [`announce_lead_ns`] ahead: the lead plus two segment durations.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::ad_signals::{DueEvent, MIN_LEAD_NS};
use crate::cmaf::boxes::{EventMessage, SCTE35_BIN_SCHEME, UNKNOWN_EVENT_DURATION};
use crate::cmaf::header::{CmafHeader, TrackDescription};
use crate::cmaf::segment::{ChunkSpec, CmafChunk, write_chunk};
use crate::payload::Payload;
use crate::track_fragment::{SAMPLE_FLAGS_SYNC, Sample};

/// How far ahead of its splice an event is announced on the metadata track: the lead (at
/// least 4 s) plus two segment durations. The metadata segment that announces it completes at
/// most one segment after the announcement, and the media segment holding the splice may
/// start up to one segment before it: so the event reaches the receiver at least the lead
/// before that media segment starts.
pub fn announce_lead_ns(lead_ns: u64, segment_ns: u64) -> u64 {
    lead_ns.max(MIN_LEAD_NS).saturating_add(segment_ns.saturating_mul(2))
}

/// One event on the metadata track's timeline, in its ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEvent {
    pub id: u32,
    /// When the track first carries it.
    pub announce: u64,
    /// The splice: the `emsg` presentation_time.
    pub presentation_time: u64,
    /// `None` when unknown.
    pub duration: Option<u64>,
    pub scheme_id_uri: String,
    pub value: String,
    pub message: Bytes,
}

impl TimedEvent {
    /// The event of an ad signal whose time came, placed by `to_ticks` (running time to the
    /// track's ticks). `None` when its times are not on the timeline.
    pub fn scte35(due: &DueEvent, to_ticks: impl Fn(u64) -> Option<u64>) -> Option<TimedEvent> {
        let presentation_time = to_ticks(due.splice_ns)?;
        let announce = to_ticks(due.send_at_ns)?.min(presentation_time);
        let duration = match due.duration_ns {
            0 => None,
            d => Some(to_ticks(due.splice_ns.saturating_add(d))?.saturating_sub(presentation_time)),
        };
        Some(TimedEvent {
            id: due.id,
            announce,
            presentation_time,
            duration,
            scheme_id_uri: SCTE35_BIN_SCHEME.into(),
            value: String::new(),
            message: due.section.clone(),
        })
    }

    /// Where the event stops being active.
    fn end(&self) -> u64 {
        self.presentation_time.saturating_add(self.duration.unwrap_or(0)).max(self.announce.saturating_add(1))
    }

    fn message_box(&self, timescale: u32) -> EventMessage {
        EventMessage {
            scheme_id_uri: self.scheme_id_uri.clone(),
            value: self.value.clone(),
            timescale,
            presentation_time: self.presentation_time,
            event_duration: self.duration.map_or(UNKNOWN_EVENT_DURATION, |d| {
                u32::try_from(d).unwrap_or(UNKNOWN_EVENT_DURATION - 1).min(UNKNOWN_EVENT_DURATION - 1)
            }),
            id: self.id,
            message_data: self.message.clone(),
            version: 1,
        }
    }
}

/// The timed metadata track.
#[derive(Debug, Clone)]
pub struct MetadataTrack {
    header: CmafHeader,
    /// Active and future events, by announcement.
    events: Vec<TimedEvent>,
    /// Where the next segment starts, once one was written: an event announced before it is
    /// carried from there.
    next: Option<u64>,
}

impl MetadataTrack {
    pub fn new(track_id: u32, timescale: u32, desc: &TrackDescription) -> MetadataTrack {
        MetadataTrack { header: CmafHeader::for_metadata(track_id, timescale, desc), events: Vec::new(), next: None }
    }

    pub fn header(&self) -> &CmafHeader {
        &self.header
    }

    pub fn timescale(&self) -> u32 {
        self.header.timescale
    }

    /// Events not yet over.
    pub fn events(&self) -> &[TimedEvent] {
        &self.events
    }

    /// Adds an event. One announced before the next segment (it came late) is carried from
    /// that segment's start. An event with the id and presentation time of one already held
    /// replaces it.
    pub fn add_event(&mut self, mut event: TimedEvent) {
        if let Some(next) = self.next {
            event.announce = event.announce.max(next);
        }
        self.events.retain(|e| !(e.id == event.id && e.presentation_time == event.presentation_time));
        let at = self.events.partition_point(|e| e.announce <= event.announce);
        self.events.insert(at, event);
    }

    /// The segment `[time, time + duration)`, one chunk, with the media segment's `sequence`:
    /// contiguous samples, split where the set of active events changes.
    pub fn segment(&mut self, time: u64, duration: u64, sequence: u32, lmsg: bool) -> CmafChunk {
        let end = time.saturating_add(duration);
        let mut edges: Vec<u64> = alloc::vec![time, end];
        for e in &self.events {
            for t in [e.announce, e.end()] {
                if t > time && t < end {
                    edges.push(t);
                }
            }
        }
        edges.sort_unstable();
        edges.dedup();
        let timescale = self.timescale();
        let mut samples = Vec::with_capacity(edges.len());
        let mut bytes = Vec::new();
        for w in edges.windows(2) {
            let (from, to) = (w[0], w[1]);
            let before = bytes.len();
            let mut active: Vec<&TimedEvent> =
                self.events.iter().filter(|e| e.announce <= from && e.end() >= to).collect();
            active.sort_by_key(|e| (e.presentation_time, e.id));
            for e in active {
                e.message_box(timescale).write(&mut bytes);
            }
            samples.push(Sample {
                duration: u32::try_from(to - from).unwrap_or(u32::MAX),
                size: (bytes.len() - before) as u32,
                flags: SAMPLE_FLAGS_SYNC,
                cto: 0,
            });
        }
        self.events.retain(|e| e.end() > end);
        self.next = Some(end);
        let mut data = Payload::new();
        data.push(Bytes::from(bytes));
        write_chunk(&ChunkSpec {
            track_id: self.header.track_id,
            timescale,
            sequence,
            decode_time: time,
            samples: &samples,
            data: &data,
            first: true,
            last: true,
            lmsg,
            reference: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ad_signals::{AdSignalConfig, AdSignals, SignalSource, SpliceMode, SpliceRequest, running_to_ticks};
    use crate::bmff::Boxes;
    use crate::bmff::fourcc::codes;
    use crate::scte35::{SpliceCommand, parse_section};
    use crate::track_fragment::TrackFragment;
    use alloc::vec;

    const SEC: u64 = 1_000_000_000;

    fn event(id: u32, announce: u64, at: u64, duration: Option<u64>) -> TimedEvent {
        TimedEvent {
            id,
            announce,
            presentation_time: at,
            duration,
            scheme_id_uri: SCTE35_BIN_SCHEME.into(),
            value: String::new(),
            message: Bytes::from(vec![id as u8; 3]),
        }
    }

    /// The samples of a metadata segment as a receiver reads them, with the `emsg` boxes of
    /// each.
    fn read(chunk: &CmafChunk) -> (TrackFragment, Vec<Vec<EventMessage>>) {
        let wire: Vec<u8> = chunk.wire_chunks().flat_map(|b| b.iter().copied()).collect();
        let boxes: Vec<_> = Boxes::new(&wire).map(|b| b.unwrap()).collect();
        assert_eq!(boxes.iter().map(|b| b.box_type()).collect::<Vec<_>>(), [codes::STYP, codes::MOOF, codes::MDAT]);
        let traf = boxes[1].require(codes::TRAF).unwrap();
        let mut r = traf.require(codes::TFDT).unwrap().reader();
        r.full_box().unwrap();
        let decode_time = r.u64("baseMediaDecodeTime").unwrap();
        let mut r = traf.require(codes::TRUN).unwrap().reader();
        let (_, flags) = r.full_box().unwrap();
        assert_eq!(flags & 0x300, 0x300, "durations and sizes per sample");
        let n = r.u32("sample_count").unwrap();
        r.u32("data_offset").unwrap();
        let payload = boxes[2].body();
        let (mut samples, mut messages, mut at) = (Vec::new(), Vec::new(), 0usize);
        for _ in 0..n {
            let duration = r.u32("sample_duration").unwrap();
            let size = r.u32("sample_size").unwrap();
            samples.push(Sample { duration, size, flags: SAMPLE_FLAGS_SYNC, cto: 0 });
            let bytes = &payload[at..at + size as usize];
            messages.push(Boxes::new(bytes).map(|b| EventMessage::parse(b.unwrap()).unwrap()).collect());
            at += size as usize;
        }
        assert_eq!(at, payload.len(), "the samples take the whole mdat");
        (TrackFragment { track_id: 3, decode_time, samples, data: chunk.payload.clone(), anchor: None }, messages)
    }

    #[test]
    fn segments_without_events_are_one_empty_sample() {
        let mut t = MetadataTrack::new(3, 90_000, &TrackDescription::default());
        let c = t.segment(180_000, 180_000, 2, false);
        let (f, m) = read(&c);
        assert_eq!(f.decode_time, 180_000);
        assert_eq!(f.samples, [Sample { duration: 180_000, size: 0, flags: SAMPLE_FLAGS_SYNC, cto: 0 }]);
        assert_eq!(m, [Vec::<EventMessage>::new()]);
        assert_eq!((c.sequence, c.first, c.last, c.lmsg), (2, true, true, false));
        // No prft in a metadata segment: styp, then moof.
        let kinds: Vec<_> = Boxes::new(&c.head).take(2).map(|b| b.unwrap().box_type()).collect();
        assert_eq!(kinds, [codes::STYP, codes::MOOF]);
    }

    #[test]
    fn samples_split_where_the_active_events_change_and_stay_contiguous() {
        let mut t = MetadataTrack::new(3, 1000, &TrackDescription::default());
        // Announced at 1.5 s for a splice at 6 s lasting 1 s: active 1.5 s .. 7 s.
        t.add_event(event(7, 1500, 6000, Some(1000)));
        // A second one, announced at 5 s, at 6.5 s with an unknown duration: active until 6.5 s.
        t.add_event(event(8, 5000, 6500, None));
        let mut all = Vec::new();
        for k in 0..4u64 {
            let c = t.segment(k * 2000, 2000, k as u32 + 1, k == 3);
            let (f, m) = read(&c);
            assert_eq!(f.decode_time, k * 2000);
            assert_eq!(f.samples.iter().map(|s| u64::from(s.duration)).sum::<u64>(), 2000, "contiguous");
            all.push((f.samples.iter().map(|s| s.duration).collect::<Vec<_>>(), m));
        }
        let ids = |m: &Vec<EventMessage>| m.iter().map(|e| e.id).collect::<Vec<_>>();
        // 0..2 s: empty until 1.5 s, then event 7.
        assert_eq!(all[0].0, [1500, 500]);
        assert_eq!(all[0].1.iter().map(ids).collect::<Vec<_>>(), [vec![], vec![7]]);
        // 2..4 s: event 7 throughout (repeated).
        assert_eq!(all[1].1.iter().map(ids).collect::<Vec<_>>(), [vec![7]]);
        // 4..6 s: 7, then 7 and 8 from 5 s.
        assert_eq!(all[2].0, [1000, 1000]);
        assert_eq!(all[2].1.iter().map(ids).collect::<Vec<_>>(), [vec![7], vec![7, 8]]);
        // 6..8 s: 7 and 8 until 6.5 s, 7 until 7 s, then nothing.
        assert_eq!(all[3].0, [500, 500, 1000]);
        assert_eq!(all[3].1.iter().map(ids).collect::<Vec<_>>(), [vec![7, 8], vec![7], vec![]]);
        let e7 = &all[1].1[0][0];
        assert_eq!((e7.timescale, e7.presentation_time, e7.event_duration), (1000, 6000, 1000));
        assert_eq!(e7.scheme_id_uri, SCTE35_BIN_SCHEME);
        assert_eq!(all[3].1[0][1].event_duration, UNKNOWN_EVENT_DURATION);
        assert!(t.events().is_empty(), "events over are forgotten");
    }

    #[test]
    fn an_event_that_comes_late_starts_at_the_next_segment() {
        let mut t = MetadataTrack::new(3, 1000, &TrackDescription::default());
        t.segment(0, 2000, 1, false);
        t.add_event(event(1, 500, 3000, Some(500)));
        let c = t.segment(2000, 2000, 2, false);
        let (f, m) = read(&c);
        assert_eq!(f.samples.iter().map(|s| s.duration).collect::<Vec<_>>(), [1500, 500]);
        assert_eq!(m[0][0].id, 1);
        assert!(m[1].is_empty());
    }

    #[test]
    fn ad_signals_become_scte35_events_announced_early_enough() {
        let config = AdSignalConfig {
            stream_id: String::new(),
            track_name: "scte35".into(),
            scheme: SCTE35_BIN_SCHEME.into(),
            parent_track: None,
            creator: None,
            lead_ns: announce_lead_ns(4 * SEC, 2 * SEC),
            splice_mode: SpliceMode::KeyFrame,
        };
        assert_eq!(config.lead_ns, 8 * SEC);
        let mut ads = AdSignals::new(config);
        let req = SpliceRequest {
            running_time_ns: 30 * SEC,
            id: Some(5),
            duration_ns: Some(15 * SEC),
            source: SignalSource::Insert { out_of_network: true, cancel: false },
        };
        let acc = ads.submit(req, Some(10 * SEC)).unwrap();
        assert_eq!((acc.send_at_ns, acc.key_unit_ns), (22 * SEC, Some(30 * SEC)));
        // UTC timeline at 90 kHz.
        let offset = 1_700_000_000 * SEC as i128;
        let to_ticks = |ns| running_to_ticks(ns, offset, 90_000);
        assert!(ads.poll_due_events(21 * SEC, 90_000, to_ticks).is_empty());
        let due = ads.poll_due_events(23 * SEC, 90_000, to_ticks).pop().unwrap().unwrap();
        let ev = TimedEvent::scte35(&due, to_ticks).unwrap();
        let base = 1_700_000_000 * 90_000;
        assert_eq!(
            (ev.announce, ev.presentation_time, ev.duration),
            (base + 22 * 90_000, base + 30 * 90_000, Some(15 * 90_000))
        );
        let info = parse_section(&ev.message).unwrap();
        let SpliceCommand::Insert(i) = info.command else { panic!() };
        assert_eq!(i.pts_time, Some((base + 30 * 90_000) & crate::scte35::PTS_MASK));
        // On the track: the segment holding 22 s carries it from there.
        let mut t = MetadataTrack::new(3, 90_000, &TrackDescription::default());
        t.add_event(ev);
        let c = t.segment(base + 22 * 90_000, 180_000, 1, false);
        let (_, m) = read(&c);
        assert_eq!(m[0][0].message_data, due.section);
    }
}
