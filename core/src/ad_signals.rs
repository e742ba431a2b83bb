// SPDX-License-Identifier: MPL-2.0
//! Ad signals: splice requests in, sparse-track messages out, each at its time
//! (docs/protocol.md §5.1, §5.5–§5.9).
//!
//! A request names a splice instant on the pipeline's running time and either carries a
//! complete SCTE-35 section or asks for a `splice_insert` to be built. It is checked at once
//! (a malformed section or a splice already in the past is refused) and held until the media
//! reaches the splice minus the lead; then it becomes a message whose tfxd time is that
//! instant, exactly, on the parent track's timeline, and whose presentation_time_delta is the
//! lead. Being a function of the request alone, the message is the same in every redundant
//! encoder given the same request. A request with less lead than that goes out at once, with
//! the media's current time, and is reported.
//!
//! The splice mode says what the media does at the splice: nothing, a key frame, or a key frame
//! that also starts a fragment (MediaLive's SCTE_35_WITHOUT_SEGMENTATION and SCTE_35).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;

use crate::ingest_header::IngestHeader;
use crate::movie::TrackKind;
use crate::scte35::{self, PTS_HZ, PTS_MASK, SectionError, SpliceInsert};
use crate::sparse::{SparseMessage, SparseTrack, write_sparse_fragment};
use crate::timeline::ns_to_ticks;

/// Servers act on messages that arrive at least this long before their splice (docs/protocol.md §5.6).
pub const MIN_LEAD_NS: u64 = 4_000_000_000;

/// What the media does at a splice point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceMode {
    /// Nothing: the message alone.
    None,
    /// A key frame at the splice (SAP type 1/2).
    KeyFrame,
    /// A key frame that also starts a media fragment; only the fragment it splits breaks the
    /// constant duration.
    Segment,
}

/// How the sparse stream is declared and its messages timed.
#[derive(Debug, Clone)]
pub struct AdSignalConfig {
    /// The sparse stream's Streams() id (the manifest's `src`).
    pub stream_id: String,
    pub track_name: String,
    pub scheme: String,
    /// Name of the parent track; `None` = the first video track (else the first track).
    pub parent_track: Option<String>,
    pub creator: Option<String>,
    /// Messages go out this long before their splice.
    pub lead_ns: u64,
    pub splice_mode: SpliceMode,
}

/// Where a message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalSource {
    /// Build a program splice_insert at the splice instant.
    Insert { out_of_network: bool, cancel: bool },
    /// A complete splice_info_section, passed on as it is once checked.
    Section(Bytes),
}

/// One ad signal, as an application or a demuxer gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpliceRequest {
    /// The splice instant, on the pipeline's running time.
    pub running_time_ns: u64,
    /// The message id; for a section, `None` takes the splice_event_id of a splice_insert,
    /// else the next of a counter.
    pub id: Option<u32>,
    /// The event's duration; `None` = a section's break_duration, or unknown.
    pub duration_ns: Option<u64>,
    pub source: SignalSource,
}

/// Why a request or the sparse track was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalError {
    /// The section is not a valid splice_info_section.
    Section(SectionError),
    /// The splice instant is behind the media already sent.
    InThePast { splice_ns: u64, media_ns: u64 },
    /// A built splice_insert needs an id.
    MissingId,
    /// The named parent track is not in the media stream.
    NoParentTrack { name: String, available: Vec<String> },
    /// The splice lies before the parent timeline's origin, or the lead does not fit
    /// presentation_time_delta (32 bits of the parent's timescale).
    TimeOutOfRange { splice_ns: u64 },
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalError::Section(e) => write!(f, "{e}"),
            SignalError::InThePast { splice_ns, media_ns } => write!(
                f,
                "the splice at running time {} is in the past: the media already reached {}",
                Secs(*splice_ns),
                Secs(*media_ns)
            ),
            SignalError::MissingId => write!(f, "a splice needs an id"),
            SignalError::NoParentTrack { name, available } => {
                write!(f, "no track named '{name}' to be the sparse track's parent; the stream has {available:?}")
            }
            SignalError::TimeOutOfRange { splice_ns } => {
                write!(f, "the splice at running time {} cannot be placed on the parent's timeline", Secs(*splice_ns))
            }
        }
    }
}

impl core::error::Error for SignalError {}

/// Nanoseconds shown as seconds with milliseconds.
struct Secs(u64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} s", self.0 / 1_000_000_000, self.0 % 1_000_000_000 / 1_000_000)
    }
}

/// What to do about an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: u32,
    /// Running time when the message goes out.
    pub send_at_ns: u64,
    /// The lead given, when less than [`MIN_LEAD_NS`]: the message goes out at once.
    pub short_lead_ns: Option<u64>,
    /// Ask upstream for a key frame at this running time.
    pub key_unit_ns: Option<u64>,
    /// Start a media fragment at this running time.
    pub cut_ns: Option<u64>,
    /// A cancellation: withdraw the fragment start asked for at this running time.
    pub uncut_ns: Option<u64>,
    /// An earlier request with this id that had not gone out yet was replaced (or, for a
    /// cancellation, withdrawn: nothing goes out for either).
    pub replaced: bool,
}

/// A message ready to go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMessage {
    pub id: u32,
    pub splice_ns: u64,
    /// tfxd time and duration, and presentation_time_delta, in the parent's ticks.
    pub time: u64,
    pub duration: u64,
    pub delta: u32,
    /// The section carried.
    pub section: Bytes,
    /// moof + mdat.
    pub fragment: Bytes,
}

#[derive(Debug, Clone)]
struct Pending {
    id: u32,
    splice_ns: u64,
    send_at_ns: u64,
    duration_ns: u64,
    source: SignalSource,
}

/// The ad signals of one sparse stream.
#[derive(Debug)]
pub struct AdSignals {
    config: AdSignalConfig,
    track: Option<SparseTrack>,
    /// Ordered by send time, then arrival.
    pending: Vec<Pending>,
    next_counter: u32,
}

impl AdSignals {
    pub fn new(config: AdSignalConfig) -> Self {
        AdSignals { config, track: None, pending: Vec::new(), next_counter: 1 }
    }

    pub fn config(&self) -> &AdSignalConfig {
        &self.config
    }

    /// The sparse track, once the media stream's tracks are known.
    pub fn track(&self) -> Option<&SparseTrack> {
        self.track.as_ref()
    }

    /// Declares the sparse track against the media stream's header: its parent (by name, or
    /// the first video track), the parent's timescale, and a track_ID after the media's.
    /// Returns the sparse stream's header.
    pub fn set_media(&mut self, media: &IngestHeader) -> Result<Bytes, SignalError> {
        let parent = match &self.config.parent_track {
            Some(name) => media.tracks.iter().find(|t| &t.name == name),
            None => media.tracks.iter().find(|t| t.info.kind == TrackKind::Video).or(media.tracks.first()),
        };
        let Some(parent) = parent else {
            return Err(SignalError::NoParentTrack {
                name: self.config.parent_track.clone().unwrap_or_else(|| "video".to_string()),
                available: media.tracks.iter().map(|t| t.name.clone()).collect(),
            });
        };
        let track = SparseTrack {
            src: self.config.stream_id.clone(),
            track_id: media.tracks.iter().map(|t| t.info.track_id).max().unwrap_or(0).saturating_add(1),
            name: self.config.track_name.clone(),
            scheme: self.config.scheme.clone(),
            parent_name: parent.name.clone(),
            timescale: parent.info.timescale,
            creator: self.config.creator.clone(),
        };
        let header = track.header();
        self.track = Some(track);
        Ok(header)
    }

    /// The parent's track_ID, once known.
    pub fn parent_track_id(&self, media: &IngestHeader) -> Option<u32> {
        let name = &self.track.as_ref()?.parent_name;
        media.tracks.iter().find(|t| &t.name == name).map(|t| t.info.track_id)
    }

    /// Checks a request and schedules its message. `media_ns` is the running time the media
    /// has reached, when any arrived.
    pub fn submit(&mut self, req: SpliceRequest, media_ns: Option<u64>) -> Result<Accepted, SignalError> {
        let splice_ns = req.running_time_ns;
        let (id, duration_ns, marks_splice, cancel) = match &req.source {
            SignalSource::Insert { cancel, .. } => {
                (req.id.ok_or(SignalError::MissingId)?, req.duration_ns.unwrap_or(0), !cancel, *cancel)
            }
            SignalSource::Section(bytes) => {
                let info = scte35::parse_section(bytes).map_err(SignalError::Section)?;
                let id = match req.id.or(info.event_id()) {
                    Some(id) => id,
                    None => {
                        let id = self.next_counter;
                        self.next_counter = self.next_counter.wrapping_add(1).max(1);
                        id
                    }
                };
                let duration = req.duration_ns.or(info.break_duration().map(|d| d * 1_000_000_000 / PTS_HZ));
                let cancel = matches!(info.command, scte35::SpliceCommand::Insert(i) if i.cancel);
                (id, duration.unwrap_or(0), info.marks_a_splice(), cancel)
            }
        };
        if let Some(now) = media_ns
            && splice_ns < now
        {
            return Err(SignalError::InThePast { splice_ns, media_ns: now });
        }
        let lead = self.config.lead_ns.max(MIN_LEAD_NS);
        let now = media_ns.unwrap_or(0);
        let send_at_ns = splice_ns.saturating_sub(lead).max(now);
        let given = splice_ns - now.min(splice_ns);
        let short_lead_ns = (media_ns.is_some() && given < MIN_LEAD_NS).then_some(given);
        // The last request with an id wins while it has not gone out (docs/protocol.md §5.7); a cancellation
        // withdraws its id whatever time it names.
        let withdrawn = self.pending.iter().position(|p| p.id == id && (cancel || p.splice_ns == splice_ns));
        let withdrawn = withdrawn.map(|i| self.pending.remove(i));
        let media_action = marks_splice && self.config.splice_mode != SpliceMode::None;
        let segment = self.config.splice_mode == SpliceMode::Segment;
        let accepted = Accepted {
            id,
            send_at_ns,
            short_lead_ns,
            key_unit_ns: media_action.then_some(splice_ns),
            cut_ns: (media_action && segment).then_some(splice_ns),
            uncut_ns: (cancel && segment).then(|| withdrawn.as_ref().map_or(splice_ns, |w| w.splice_ns)),
            replaced: withdrawn.is_some(),
        };
        if cancel && withdrawn.is_some() {
            // The splice it cancels never went out: neither goes.
            return Ok(accepted);
        }
        let p = Pending { id, splice_ns, send_at_ns, duration_ns, source: req.source };
        let at = self.pending.partition_point(|q| q.send_at_ns <= send_at_ns);
        self.pending.insert(at, p);
        Ok(accepted)
    }

    /// Requests waiting for their time.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The messages whose time has come, now that the media reached `media_ns`. `to_ticks`
    /// places a running time on the parent's timeline. Without the sparse track nothing is
    /// due yet.
    pub fn poll_due(
        &mut self,
        media_ns: u64,
        to_ticks: impl Fn(u64) -> Option<u64>,
    ) -> Vec<Result<DueMessage, (u32, SignalError)>> {
        self.take_due(|p| p.send_at_ns <= media_ns, media_ns, to_ticks)
    }

    /// End of the stream: everything still waiting goes out now, at `media_ns`.
    pub fn flush(
        &mut self,
        media_ns: u64,
        to_ticks: impl Fn(u64) -> Option<u64>,
    ) -> Vec<Result<DueMessage, (u32, SignalError)>> {
        self.take_due(|_| true, media_ns, to_ticks)
    }

    fn take_due(
        &mut self,
        due: impl Fn(&Pending) -> bool,
        media_ns: u64,
        to_ticks: impl Fn(u64) -> Option<u64>,
    ) -> Vec<Result<DueMessage, (u32, SignalError)>> {
        let Some(track) = self.track.clone() else {
            return Vec::new();
        };
        let n = self.pending.iter().take_while(|p| due(p)).count();
        let mut out = Vec::with_capacity(n);
        for p in self.pending.drain(..n) {
            // A held message is sent "at" its send time exactly, whatever moment the media went
            // past it; one flushed early (end of stream) at the media's end.
            let arrival_ns = p.send_at_ns.min(media_ns);
            out.push(message(&track, &p, arrival_ns, &to_ticks).map_err(|e| (p.id, e)));
        }
        out
    }

    /// For a CMAF timed metadata track (no sparse track needed): the requests whose time has
    /// come now that the media reached `media_ns`, as events with their section. A built
    /// splice_insert's pts_time is the splice on the timeline `to_ticks` maps running time to,
    /// in ticks of `timescale`, at 90 kHz.
    pub fn poll_due_events(
        &mut self,
        media_ns: u64,
        timescale: u32,
        to_ticks: impl Fn(u64) -> Option<u64>,
    ) -> Vec<Result<DueEvent, (u32, SignalError)>> {
        let n = self.pending.iter().take_while(|p| p.send_at_ns <= media_ns).count();
        self.pending.drain(..n).map(|p| event(&p, media_ns, timescale, &to_ticks).map_err(|e| (p.id, e))).collect()
    }

    /// End of the stream: every request still waiting, as events sent at `media_ns`.
    pub fn flush_events(
        &mut self,
        media_ns: u64,
        timescale: u32,
        to_ticks: impl Fn(u64) -> Option<u64>,
    ) -> Vec<Result<DueEvent, (u32, SignalError)>> {
        self.pending.drain(..).map(|p| event(&p, media_ns, timescale, &to_ticks).map_err(|e| (p.id, e))).collect()
    }
}

/// A request whose time has come, for a CMAF timed metadata track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEvent {
    pub id: u32,
    /// The splice instant, on the pipeline's running time.
    pub splice_ns: u64,
    /// When the event is announced: its send time, or the media's end when flushed early.
    pub send_at_ns: u64,
    /// The event's duration; 0 = unknown.
    pub duration_ns: u64,
    /// The splice_info_section.
    pub section: Bytes,
}

fn event(
    p: &Pending,
    media_ns: u64,
    timescale: u32,
    to_ticks: &impl Fn(u64) -> Option<u64>,
) -> Result<DueEvent, SignalError> {
    let splice = to_ticks(p.splice_ns).ok_or(SignalError::TimeOutOfRange { splice_ns: p.splice_ns })?;
    Ok(DueEvent {
        id: p.id,
        splice_ns: p.splice_ns,
        send_at_ns: p.send_at_ns.min(media_ns),
        duration_ns: p.duration_ns,
        section: section(p, splice, timescale),
    })
}

/// The section a request carries: as given, or a splice_insert built for it whose pts_time is
/// the splice (`splice` ticks of `timescale`) at 90 kHz, so that it says what the track's own
/// times say.
fn section(p: &Pending, splice: u64, timescale: u32) -> Bytes {
    match &p.source {
        SignalSource::Section(s) => s.clone(),
        SignalSource::Insert { out_of_network, cancel } => {
            let pts = (u128::from(splice) * u128::from(PTS_HZ) / u128::from(timescale.max(1))) as u64 & PTS_MASK;
            let duration_90k = (u128::from(p.duration_ns) * u128::from(PTS_HZ) / 1_000_000_000) as u64 & PTS_MASK;
            let insert = match cancel {
                true => SpliceInsert::cancel(p.id),
                false => {
                    SpliceInsert::program(p.id, *out_of_network, Some(pts), (p.duration_ns > 0).then_some(duration_90k))
                }
            };
            Bytes::from(scte35::build_splice_insert(&insert))
        }
    }
}

/// The message of a pending request sent at `arrival_ns`.
fn message(
    track: &SparseTrack,
    p: &Pending,
    arrival_ns: u64,
    to_ticks: &impl Fn(u64) -> Option<u64>,
) -> Result<DueMessage, SignalError> {
    let out_of_range = SignalError::TimeOutOfRange { splice_ns: p.splice_ns };
    let splice = to_ticks(p.splice_ns).ok_or(out_of_range.clone())?;
    let time = to_ticks(arrival_ns).ok_or(out_of_range.clone())?.min(splice);
    let end = to_ticks(p.splice_ns.saturating_add(p.duration_ns)).ok_or(out_of_range.clone())?;
    let delta = u32::try_from(splice - time).map_err(|_| out_of_range)?;
    // pts_time is the splice on the parent's timeline at 90 kHz, so that the section says
    // what the tfxd time and delta say.
    let section = section(p, splice, track.timescale);
    let m = SparseMessage { time, duration: end - splice, id: p.id, presentation_time_delta: delta, message: section };
    // Each message POST is a file of its own: header, then this fragment, sequence 1.
    let fragment = Bytes::from(write_sparse_fragment(track.track_id, 1, &m));
    Ok(DueMessage { id: p.id, splice_ns: p.splice_ns, time, duration: m.duration, delta, section: m.message, fragment })
}

/// Ticks of `ns` at `timescale` on a timeline whose origin is `offset_ns`: the mapping of the
/// grid (running time + offset), for callers that have it at hand.
pub fn running_to_ticks(running_ns: u64, offset_ns: i128, timescale: u32) -> Option<u64> {
    u64::try_from(ns_to_ticks(i128::from(running_ns) + offset_ns, timescale)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest_header::IngestTrack;
    use crate::scte35::{SpliceCommand, parse_section};
    use crate::test_support::spec_tracks;

    const SEC: u64 = 1_000_000_000;

    fn media() -> IngestHeader {
        let (video, audio) = spec_tracks();
        IngestHeader::build(
            alloc::vec![
                IngestTrack { info: audio, name: "audio".into(), bitrate: 128_000 },
                IngestTrack { info: video, name: "video".into(), bitrate: 3_000_000 },
            ],
            "av",
            None,
        )
    }

    fn config(mode: SpliceMode) -> AdSignalConfig {
        AdSignalConfig {
            stream_id: "ads".into(),
            track_name: "scte35".into(),
            scheme: crate::sparse::SCTE35_SCHEME.into(),
            parent_track: None,
            creator: None,
            lead_ns: 4 * SEC,
            splice_mode: mode,
        }
    }

    fn insert(at: u64, id: u32) -> SpliceRequest {
        SpliceRequest {
            running_time_ns: at,
            id: Some(id),
            duration_ns: Some(30 * SEC),
            source: SignalSource::Insert { out_of_network: true, cancel: false },
        }
    }

    /// UTC-like mapping: running time 0 is 1.7e9 s after the epoch; 10 MHz.
    fn utc(ns: u64) -> Option<u64> {
        running_to_ticks(ns, 1_700_000_000 * SEC as i128, 10_000_000)
    }

    #[test]
    fn the_parent_is_the_first_video_track_and_the_track_id_follows_the_media() {
        let mut a = AdSignals::new(config(SpliceMode::None));
        a.set_media(&media()).unwrap();
        let t = a.track().unwrap();
        assert_eq!((t.parent_name.as_str(), t.timescale, t.track_id), ("video", 10_000_000, 3));
        let mut named = config(SpliceMode::None);
        named.parent_track = Some("audio".into());
        let mut b = AdSignals::new(named);
        b.set_media(&media()).unwrap();
        assert_eq!(b.track().unwrap().parent_name, "audio");
        named = config(SpliceMode::None);
        named.parent_track = Some("subtitles".into());
        let err = AdSignals::new(named).set_media(&media()).unwrap_err();
        assert!(matches!(err, SignalError::NoParentTrack { .. }), "{err}");
    }

    #[test]
    fn a_message_is_held_until_the_lead_and_then_timed_exactly() {
        let mut a = AdSignals::new(config(SpliceMode::KeyFrame));
        a.set_media(&media()).unwrap();
        let acc = a.submit(insert(20 * SEC, 7), Some(3 * SEC)).unwrap();
        assert_eq!(acc.send_at_ns, 16 * SEC);
        assert_eq!(acc.short_lead_ns, None);
        assert_eq!((acc.key_unit_ns, acc.cut_ns), (Some(20 * SEC), None));
        assert!(a.poll_due(15 * SEC, utc).is_empty());
        let due = a.poll_due(17 * SEC + 123, utc);
        assert_eq!(due.len(), 1);
        let m = due[0].as_ref().unwrap();
        // Sent "at" 16 s whatever moment the media reached past it.
        assert_eq!(m.time, (1_700_000_000 + 16) * 10_000_000);
        assert_eq!(m.delta, 40_000_000);
        assert_eq!(m.duration, 300_000_000);
        let info = parse_section(&m.section).unwrap();
        let SpliceCommand::Insert(i) = info.command else { panic!() };
        assert_eq!(i.event_id, 7);
        assert!(i.out_of_network);
        // pts_time: the splice on the parent's timeline at 90 kHz, modulo 2^33.
        let splice_ticks = (1_700_000_000u64 + 20) * 10_000_000;
        assert_eq!(i.pts_time, Some((splice_ticks * 9 / 1000) & PTS_MASK));
        assert_eq!(i.break_duration, Some((true, 30 * 90_000)));
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn redundant_encoders_given_the_same_request_send_the_same_bytes() {
        // Two encoders whose running times differ by 3.3 s for the same instant, both in UTC.
        let offset_a = 1_700_000_000 * SEC as i128;
        let offset_b = offset_a - 3_300_000_000;
        let mut a = AdSignals::new(config(SpliceMode::None));
        let mut b = AdSignals::new(config(SpliceMode::None));
        a.set_media(&media()).unwrap();
        b.set_media(&media()).unwrap();
        a.submit(insert(60 * SEC, 1), Some(40 * SEC)).unwrap();
        b.submit(insert(63_300_000_000, 1), Some(43_350_000_000)).unwrap();
        let ma = a.poll_due(57 * SEC, |ns| running_to_ticks(ns, offset_a, 10_000_000)).pop().unwrap().unwrap();
        let mb = b.poll_due(60_400_000_000, |ns| running_to_ticks(ns, offset_b, 10_000_000)).pop().unwrap().unwrap();
        assert_eq!(ma.fragment, mb.fragment);
    }

    #[test]
    fn short_lead_goes_at_once_and_is_reported() {
        let mut a = AdSignals::new(config(SpliceMode::Segment));
        a.set_media(&media()).unwrap();
        let acc = a.submit(insert(10 * SEC, 9), Some(8_500_000_000)).unwrap();
        assert_eq!(acc.short_lead_ns, Some(1_500_000_000));
        assert_eq!(acc.send_at_ns, 8_500_000_000);
        assert_eq!(acc.cut_ns, Some(10 * SEC));
        let m = a.poll_due(8_500_000_000, utc).pop().unwrap().unwrap();
        assert_eq!(m.delta, 15_000_000);
    }

    #[test]
    fn bad_requests_are_refused_and_change_nothing() {
        let mut a = AdSignals::new(config(SpliceMode::Segment));
        a.set_media(&media()).unwrap();
        let past = a.submit(insert(5 * SEC, 1), Some(6 * SEC)).unwrap_err();
        assert_eq!(past, SignalError::InThePast { splice_ns: 5 * SEC, media_ns: 6 * SEC });
        assert!(past.to_string().contains("5.000 s"));
        let mut section = scte35::build_splice_insert(&SpliceInsert::program(3, true, None, None));
        let n = section.len();
        section[n - 1] ^= 0xFF;
        let req = SpliceRequest {
            running_time_ns: 20 * SEC,
            id: None,
            duration_ns: None,
            source: SignalSource::Section(Bytes::from(section)),
        };
        assert!(matches!(a.submit(req, Some(6 * SEC)), Err(SignalError::Section(SectionError::Crc { .. }))));
        let no_id = SpliceRequest { id: None, ..insert(20 * SEC, 0) };
        assert_eq!(a.submit(no_id, None), Err(SignalError::MissingId));
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn sections_keep_their_bytes_and_lend_their_id_and_duration() {
        let mut a = AdSignals::new(config(SpliceMode::KeyFrame));
        a.set_media(&media()).unwrap();
        let section = crate::hex::parse_hex(
            "FC302500 00000005 DD00FFF0 14050000 03EA7FEF FE016461 B8FE0052 63630001 01010000 F20D5E37",
        );
        let req = SpliceRequest {
            running_time_ns: 30 * SEC,
            id: None,
            duration_ns: None,
            source: SignalSource::Section(Bytes::from(section.clone())),
        };
        let acc = a.submit(req, Some(20 * SEC)).unwrap();
        assert_eq!(acc.id, 1002);
        assert_eq!(acc.key_unit_ns, Some(30 * SEC));
        let m = a.poll_due(26 * SEC, utc).pop().unwrap().unwrap();
        assert_eq!(m.section.as_ref(), section.as_slice());
        // break_duration 0x526363 at 90 kHz = 60.06 s.
        assert_eq!(m.duration, 0x52_6363 * 10_000_000 / 90_000);
        // A time_signal with no id takes the counter.
        let mut ts = crate::hex::parse_hex("FC 30 00 00 00 00 00 00 00 00 FF F0 05 06 FE 00 00 00 10 00 00");
        ts[2] = (ts.len() + 4 - 3) as u8;
        let crc = scte35::crc32_mpeg2(&ts);
        ts.extend_from_slice(&crc.to_be_bytes());
        let req = SpliceRequest {
            running_time_ns: 40 * SEC,
            id: None,
            duration_ns: Some(SEC),
            source: SignalSource::Section(Bytes::from(ts)),
        };
        assert_eq!(a.submit(req, Some(26 * SEC)).unwrap().id, 1);
    }

    #[test]
    fn a_cancel_before_the_splice_went_out_withdraws_it() {
        let mut a = AdSignals::new(config(SpliceMode::Segment));
        a.set_media(&media()).unwrap();
        a.submit(insert(30 * SEC, 5), Some(10 * SEC)).unwrap();
        let cancel = SpliceRequest {
            source: SignalSource::Insert { out_of_network: true, cancel: true },
            ..insert(30 * SEC, 5)
        };
        // A cancellation that names another time (a demuxer's, "now") withdraws the id too.
        let now_cancel = SpliceRequest { running_time_ns: 12 * SEC, ..cancel.clone() };
        let acc = a.submit(now_cancel, Some(12 * SEC)).unwrap();
        assert!(acc.replaced);
        assert_eq!((acc.key_unit_ns, acc.cut_ns, acc.uncut_ns), (None, None, Some(30 * SEC)));
        assert_eq!(a.pending(), 0);
        // After the splice went out, the cancel is a message of its own.
        a.submit(insert(30 * SEC, 5), Some(12 * SEC)).unwrap();
        assert_eq!(a.poll_due(26 * SEC, utc).len(), 1);
        let acc = a.submit(cancel, Some(27 * SEC)).unwrap();
        assert!(!acc.replaced);
        let m = a.poll_due(27 * SEC, utc).pop().unwrap().unwrap();
        let info = parse_section(&m.section).unwrap();
        assert!(matches!(info.command, SpliceCommand::Insert(i) if i.cancel && i.event_id == 5));
    }

    #[test]
    fn nothing_is_due_before_the_media_is_known_and_eos_flushes() {
        let mut a = AdSignals::new(config(SpliceMode::None));
        a.submit(insert(30 * SEC, 5), None).unwrap();
        assert!(a.poll_due(40 * SEC, utc).is_empty());
        a.set_media(&media()).unwrap();
        let m = a.flush(12 * SEC, utc).pop().unwrap().unwrap();
        assert_eq!(m.time, (1_700_000_000 + 12) * 10_000_000);
        assert_eq!(m.delta, 18 * 10_000_000);
    }
}
