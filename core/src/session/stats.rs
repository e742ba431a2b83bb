// SPDX-License-Identifier: MPL-2.0
//! Health figures of a stream as the encoder sees them, named like the service's ingest
//! heartbeat (docs/protocol.md §8.1) so that both sides can be compared.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

/// The heartbeat window of the service: figures "in the last 20 s".
pub const WINDOW: Duration = Duration::from_secs(20);

/// One track.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackStats {
    pub track_id: u32,
    pub timescale: u32,
    /// Bits per second sent over the last [`WINDOW`].
    pub incoming_bitrate: u64,
    /// tfxd time of the last fragment fully written.
    pub last_timestamp: Option<u64>,
    /// When the last fragment was fully written (driver time).
    pub last_fragment_sent_at: Option<Duration>,
    /// Gaps in the timeline: the muxer's, and fragments dropped from the forward buffer.
    pub discontinuity_count: u64,
    /// Fragments that start before the previous one ended.
    pub overlap_count: u64,
    /// Fragments whose time does not increase.
    pub nonincreasing_count: u64,
    pub fragments_sent: u64,
}

/// The whole stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// `Connecting`, `Running`, `Reconnecting`, `Ending`, `Stopped`.
    pub state: &'static str,
    pub connected: bool,
    pub connections: u64,
    pub reconnects: u64,
    pub bytes_sent: u64,
    pub fragments_sent: u64,
    pub fragments_resent: u64,
    pub fragments_dropped: u64,
    /// Fragments, bytes and media nanoseconds waiting to be sent.
    pub queue_fragments: u64,
    pub queue_bytes: u64,
    pub queue_duration_ns: u64,
    /// Send latency of the last `LATENCY_WINDOW` fragments sent for the first time: from when a
    /// fragment could be sent (the muxer's last byte of it taken, plus any send delay) to its
    /// last byte handed to the connection.
    pub latency: LatencySummary,
    pub tracks: Vec<TrackStats>,
}

/// Percentiles of the send latency, in nanoseconds; all 0 before the first fragment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

/// Fragments the latency figures cover.
pub const LATENCY_WINDOW: usize = 4096;

impl StreamStats {
    /// The service's rule: healthy when nothing overlaps, jumps or goes back (and, on the
    /// sender's side, the stream is connected).
    pub fn healthy(&self, t: &TrackStats) -> bool {
        self.connected && t.discontinuity_count == 0 && t.overlap_count == 0 && t.nonincreasing_count == 0
    }
}

/// Keeps the counters as fragments come and go.
#[derive(Debug, Default)]
pub struct StatsKeeper {
    pub stream: StreamStats,
    latencies: VecDeque<u64>,
    latency_count: u64,
    /// Per track: where the next fragment should start, and the start of the last one.
    expected: Vec<(u32, u64, u64)>,
    /// Per track: (when written, bytes) within the window.
    sent: Vec<(u32, VecDeque<(Duration, u64)>)>,
}

impl StatsKeeper {
    /// A fragment's last byte went to the connection `waited` after it could be sent.
    pub fn sent_after(&mut self, waited: Duration) {
        if self.latencies.len() == LATENCY_WINDOW {
            self.latencies.pop_front();
        }
        self.latencies.push_back(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
        self.latency_count += 1;
    }

    /// The latency figures, computed when asked for.
    pub fn latency(&self) -> LatencySummary {
        let mut v: Vec<u64> = self.latencies.iter().copied().collect();
        if v.is_empty() {
            return LatencySummary::default();
        }
        v.sort_unstable();
        let at = |p: usize| v[((v.len() - 1) * p).div_ceil(100)];
        LatencySummary { count: self.latency_count, p50_ns: at(50), p99_ns: at(99), max_ns: v[v.len() - 1] }
    }

    fn track(&mut self, track_id: u32, timescale: u32) -> &mut TrackStats {
        if let Some(i) = self.stream.tracks.iter().position(|t| t.track_id == track_id) {
            return &mut self.stream.tracks[i];
        }
        self.stream.tracks.push(TrackStats { track_id, timescale, ..TrackStats::default() });
        self.stream.tracks.sort_by_key(|t| t.track_id);
        let i = self.stream.tracks.iter().position(|t| t.track_id == track_id).unwrap_or(0);
        &mut self.stream.tracks[i]
    }

    /// A fragment entered the session: check its place on the track's timeline.
    pub fn produced(&mut self, track_id: u32, timescale: u32, time: u64, duration: u64) {
        let prev = self.expected.iter().position(|(t, _, _)| *t == track_id);
        let (counter, entry) = match prev {
            Some(i) => {
                let (_, expected, last_start) = self.expected[i];
                let c = if time <= last_start {
                    Some(2)
                } else if time < expected {
                    Some(1)
                } else if time > expected {
                    Some(0)
                } else {
                    None
                };
                (c, Some(i))
            }
            None => (None, None),
        };
        let end = time.saturating_add(duration);
        match entry {
            Some(i) => self.expected[i] = (track_id, end, time),
            None => self.expected.push((track_id, end, time)),
        }
        let t = self.track(track_id, timescale);
        match counter {
            Some(0) => t.discontinuity_count += 1,
            Some(1) => t.overlap_count += 1,
            Some(2) => t.nonincreasing_count += 1,
            _ => {}
        }
    }

    /// A fragment was given up: a hole in the timeline.
    pub fn dropped(&mut self, track_id: u32, timescale: u32) {
        self.stream.fragments_dropped += 1;
        self.track(track_id, timescale).discontinuity_count += 1;
    }

    /// Bytes of a fragment taken by the transport; `complete` on its last chunk.
    pub fn written(&mut self, track_id: u32, timescale: u32, time: u64, bytes: u64, complete: bool, now: Duration) {
        self.stream.bytes_sent += bytes;
        let window = match self.sent.iter_mut().find(|(t, _)| *t == track_id) {
            Some((_, w)) => w,
            None => {
                self.sent.push((track_id, VecDeque::new()));
                &mut self.sent.last_mut().expect("just pushed").1
            }
        };
        // Merge bytes that come within the same millisecond, and forget what left the window,
        // so that the window stays small whether or not anybody reads the figures.
        match window.back_mut() {
            Some((at, b)) if now.saturating_sub(*at) < Duration::from_millis(1) => *b += bytes,
            _ => window.push_back((now, bytes)),
        }
        let from = now.saturating_sub(WINDOW);
        while window.front().is_some_and(|(at, _)| *at < from) {
            window.pop_front();
        }
        if complete {
            self.stream.fragments_sent += 1;
            let t = self.track(track_id, timescale);
            t.fragments_sent += 1;
            t.last_timestamp = Some(time);
            t.last_fragment_sent_at = Some(now);
        }
    }

    /// Updates the windowed bitrates for `now`.
    pub fn refresh(&mut self, now: Duration) {
        let from = now.saturating_sub(WINDOW);
        for (track_id, w) in self.sent.iter_mut() {
            while w.front().is_some_and(|(at, _)| *at < from) {
                w.pop_front();
            }
            let bytes: u64 = w.iter().map(|(_, b)| *b).sum();
            let span = match w.front() {
                Some((first, _)) => (now.saturating_sub(*first)).max(Duration::from_secs(1)).min(WINDOW),
                None => WINDOW,
            };
            let bps = u128::from(bytes) * 8 * 1000 / span.as_millis().max(1);
            let rate = u64::try_from(bps).unwrap_or(u64::MAX);
            if let Some(t) = self.stream.tracks.iter_mut().find(|t| t.track_id == *track_id) {
                t.incoming_bitrate = rate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_faults_are_counted_like_the_service_does() {
        let mut k = StatsKeeper::default();
        k.produced(1, 1000, 0, 2000);
        k.produced(1, 1000, 2000, 2000); // contiguous
        k.produced(1, 1000, 5000, 2000); // gap
        k.produced(1, 1000, 6000, 2000); // overlap (starts before 7000)
        k.produced(1, 1000, 6000, 2000); // same time again: non-increasing
        let t = &k.stream.tracks[0];
        assert_eq!((t.discontinuity_count, t.overlap_count, t.nonincreasing_count), (1, 1, 1));
    }

    #[test]
    fn the_window_stays_bounded_when_nobody_reads_it() {
        let mut k = StatsKeeper::default();
        for ms in 0..600_000u64 {
            k.written(1, 1000, 0, 10, false, Duration::from_millis(ms));
        }
        assert!(k.sent[0].1.len() <= 20_001, "{}", k.sent[0].1.len());
    }

    #[test]
    fn bitrate_is_measured_over_the_window() {
        let mut k = StatsKeeper::default();
        for s in 0..30u64 {
            k.written(2, 48000, s, 16_000, true, Duration::from_secs(s));
        }
        k.refresh(Duration::from_secs(30));
        // 20 s of 16 kB/s in the window (t = 10..29 s): 128 kb/s, measured over 20 s.
        assert_eq!(k.stream.tracks[0].incoming_bitrate, 128_000);
        assert_eq!(k.stream.tracks[0].fragments_sent, 30);
    }
}
