//! Asks upstream for a key frame at each fragment boundary (ingest-spec §9.1), a little ahead
//! of time, so that every video fragment starts with a sync sample on the grid.
//!
//! The request is the standard upstream GstForceKeyUnit event (a custom upstream event named
//! `GstForceKeyUnit` with `running-time`, `all-headers` and `count`, as
//! `gst_video_event_new_upstream_force_key_unit` builds it); video encoders place the key frame
//! at the first frame at or after that running time. Requests are sent `lead` before their
//! boundary from clock callbacks: no thread of our own.

use std::sync::{Arc, Mutex};

use gst::glib;
use gst::prelude::*;

/// Where boundaries are: `k × fragment_duration` on the target timeline, which is running time
/// plus `target_offset`.
#[derive(Debug, Clone, Copy)]
pub struct Boundaries {
    pub fragment_duration_ns: u64,
    pub target_offset_ns: i128,
    pub lead_ns: u64,
}

impl Boundaries {
    /// Running time of boundary `k`, if it is not before running time 0.
    fn running_time(&self, k: u64) -> Option<u64> {
        let t = i128::from(k) * i128::from(self.fragment_duration_ns) - self.target_offset_ns;
        u64::try_from(t).ok()
    }

    /// The first boundary whose request time (`lead` ahead) is not before `running_now`.
    fn next_after(&self, running_now: u64) -> u64 {
        let target = i128::from(running_now) + i128::from(self.lead_ns) + self.target_offset_ns;
        let d = i128::from(self.fragment_duration_ns.max(1));
        u64::try_from((target + d - 1).div_euclid(d)).unwrap_or(0)
    }
}

#[derive(Default)]
struct Inner {
    pending: Option<gst::SingleShotClockId>,
    stopped: bool,
}

/// The chain of clock callbacks; stops when dropped.
pub struct KeyUnitScheduler {
    inner: Arc<Mutex<Inner>>,
}

impl KeyUnitScheduler {
    /// Starts requesting key frames on `pad` (the sink pad), on `clock` whose time is running
    /// time plus `base_time`.
    pub fn start(pad: gst::Pad, clock: gst::Clock, base_time: gst::ClockTime, b: Boundaries) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let running_now = clock.time().nseconds().saturating_sub(base_time.nseconds());
        schedule(inner.clone(), pad.downgrade(), clock, base_time, b, b.next_after(running_now));
        KeyUnitScheduler { inner }
    }
}

impl Drop for KeyUnitScheduler {
    fn drop(&mut self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.stopped = true;
        if let Some(id) = inner.pending.take() {
            id.unschedule();
        }
    }
}

/// The event that asks for a key frame at running time `rt`.
pub fn force_key_unit(rt: u64, count: u32) -> gst::Event {
    let s = gst::Structure::builder("GstForceKeyUnit")
        .field("running-time", rt)
        .field("all-headers", true)
        .field("count", count)
        .build();
    gst::event::CustomUpstream::new(s)
}

fn schedule(
    inner: Arc<Mutex<Inner>>,
    pad: glib::WeakRef<gst::Pad>,
    clock: gst::Clock,
    base_time: gst::ClockTime,
    b: Boundaries,
    k: u64,
) {
    let Some(rt) = b.running_time(k) else { return };
    let at = gst::ClockTime::from_nseconds(base_time.nseconds() + rt.saturating_sub(b.lead_ns));
    let id = clock.new_single_shot_id(at);
    let next = inner.clone();
    let scheduled = id.wait_async(move |clock, _, _| {
        if next.lock().unwrap_or_else(|e| e.into_inner()).stopped {
            return;
        }
        let Some(pad) = pad.upgrade() else { return };
        pad.push_event(force_key_unit(rt, k as u32));
        schedule(next, pad.downgrade(), clock.clone(), base_time, b, k + 1);
    });
    let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
    if scheduled.is_ok() && !guard.stopped {
        guard.pending = Some(id);
    } else {
        id.unschedule();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_map_between_the_target_timeline_and_running_time() {
        // UTC mode: running time 0 is 1 000 000 001.5 s UTC; 2 s fragments; 1 s lead.
        let b = Boundaries {
            fragment_duration_ns: 2_000_000_000,
            target_offset_ns: 1_000_000_001_500_000_000,
            lead_ns: 1_000_000_000,
        };
        // At running time 0 the next boundary with 1 s to spare is 1 000 000 004 s (k = 500 000 002).
        let k = b.next_after(0);
        assert_eq!(k, 500_000_002);
        assert_eq!(b.running_time(k), Some(2_500_000_000));
        // A boundary before running time 0 has no running time.
        assert_eq!(b.running_time(500_000_000), None);
    }

    #[test]
    fn the_event_is_gstreamers_force_key_unit() {
        gst::init().unwrap();
        let e = force_key_unit(42, 7);
        let s = e.structure().unwrap();
        assert_eq!(e.type_(), gst::EventType::CustomUpstream);
        assert_eq!(s.name(), "GstForceKeyUnit");
        assert_eq!(s.get::<u64>("running-time").unwrap(), 42);
        assert!(s.get::<bool>("all-headers").unwrap());
        assert_eq!(s.get::<u32>("count").unwrap(), 7);
    }
}
