// SPDX-License-Identifier: MPL-2.0
//! Asks upstream for a key frame at each fragment boundary (docs/protocol.md §4.5), a little ahead
//! of time, so that every video fragment starts with a sync sample on the grid.
//!
//! The request is the standard upstream GstForceKeyUnit event (a custom upstream event named
//! `GstForceKeyUnit` with `running-time`, `all-headers` and `count`, as
//! `gst_video_event_new_upstream_force_key_unit` builds it); video encoders place the key frame
//! at the first frame at or after that running time. Requests are sent `lead` before their
//! boundary from clock callbacks: no thread of our own.
//!
//! No request goes out before every video encoder upstream has pushed its first frame. In
//! GStreamer 1.22, GstVideoEncoder computes a frame's running time against its output segment
//! shifted by the encoder's minimum PTS (x264enc's is 1000 hours) — but that segment is only
//! adjusted once the first encoded frame leaves. A request that meets one of the first frames
//! is matched at a running time 1000 hours ahead, and the encoder then ignores every later
//! request as "before the last one". The encoder's source pad has its SEGMENT event (sticky)
//! from the moment the first frame went out, so [`EncoderGate`] waits for that.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// How often a closed gate is looked at again.
const GATE_POLL_NS: u64 = 20_000_000;

/// Whether the video encoders upstream have pushed their first frame (see the module's doc).
pub struct EncoderGate {
    /// The source pads of the GstVideoEncoders found upstream when the element started playing.
    encoders: Vec<gst::Pad>,
    open: AtomicBool,
}

impl EncoderGate {
    /// Finds the video encoders upstream of `sink_pad`, through queues, parsers, tees, muxers and
    /// bins. With none (pre-encoded input, or no GstVideoEncoder class loaded), the gate is open.
    pub fn find(sink_pad: &gst::Pad) -> Self {
        let encoders = match glib::Type::from_name("GstVideoEncoder") {
            Some(encoder_type) => upstream_pads_of(sink_pad, encoder_type),
            None => Vec::new(),
        };
        EncoderGate { open: AtomicBool::new(encoders.is_empty()), encoders }
    }

    /// How many encoders the gate waits for.
    pub fn encoders(&self) -> usize {
        self.encoders.len()
    }

    /// Open once every encoder's source pad carries a SEGMENT: its first frame went out. Stays
    /// open.
    pub fn is_open(&self) -> bool {
        if self.open.load(Ordering::Acquire) {
            return true;
        }
        let open = self.encoders.iter().all(|p| p.sticky_event::<gst::event::Segment>(0).is_some());
        if open {
            self.open.store(true, Ordering::Release);
        }
        open
    }
}

/// The source pads of the elements of type `wanted` upstream of `sink_pad`; the walk stops at
/// them. Bounded, so that a looped graph cannot hold it.
fn upstream_pads_of(sink_pad: &gst::Pad, wanted: glib::Type) -> Vec<gst::Pad> {
    let mut found = Vec::new();
    let mut to_visit = vec![sink_pad.clone()];
    let mut visited = 0;
    while let Some(pad) = to_visit.pop() {
        visited += 1;
        if visited > 1024 {
            break;
        }
        let Some(mut src) = pad.peer() else { continue };
        // Into a bin: its ghost source pad leads to the pad inside.
        while let Some(target) = src.downcast_ref::<gst::GhostPad>().and_then(|g| g.target()) {
            src = target;
        }
        let Some(element) = src.parent_element() else {
            // Out of a bin: the pad inside a ghost sink pad stands for what feeds the ghost.
            if let Some(ghost) = src.parent().and_then(|p| p.downcast::<gst::Pad>().ok()) {
                to_visit.push(ghost);
            }
            continue;
        };
        if element.type_().is_a(wanted) {
            if !found.contains(&src) {
                found.push(src);
            }
            continue;
        }
        to_visit.extend(element.sink_pads());
    }
    found
}

#[derive(Default)]
struct Inner {
    pending: Option<gst::SingleShotClockId>,
    stopped: bool,
    /// Splice key frames asked for while the gate was closed.
    held: Vec<u64>,
}

/// The chain of clock callbacks; stops when dropped.
pub struct KeyUnitScheduler {
    inner: Arc<Mutex<Inner>>,
    gate: Arc<EncoderGate>,
}

impl KeyUnitScheduler {
    /// Starts requesting key frames on `pad` (the sink pad), on `clock` whose time is running
    /// time plus `base_time`.
    pub fn start(pad: gst::Pad, clock: gst::Clock, base_time: gst::ClockTime, b: Boundaries) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let gate = Arc::new(EncoderGate::find(&pad));
        let running_now = clock.time().nseconds().saturating_sub(base_time.nseconds());
        let chain = Chain { inner: inner.clone(), gate: gate.clone(), pad: pad.downgrade(), clock, base_time, b };
        chain.schedule(b.next_after(running_now), None);
        KeyUnitScheduler { inner, gate }
    }

    /// How many video encoders upstream the first request waits for.
    pub fn encoders(&self) -> usize {
        self.gate.encoders()
    }

    /// A key frame wanted at running time `rt` (a splice): true when the gate is closed and the
    /// scheduler keeps the request until it opens; false when the caller may push it now.
    pub fn hold_unless_open(&self, rt: u64) -> bool {
        if self.gate.is_open() {
            return false;
        }
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).held.push(rt);
        true
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

/// What every callback of the chain needs.
#[derive(Clone)]
struct Chain {
    inner: Arc<Mutex<Inner>>,
    gate: Arc<EncoderGate>,
    pad: glib::WeakRef<gst::Pad>,
    clock: gst::Clock,
    base_time: gst::ClockTime,
    b: Boundaries,
}

impl Chain {
    /// Waits for the request time of boundary `k` (or, while the gate is closed, for the clock
    /// time `retry_at`).
    fn schedule(self, k: u64, retry_at: Option<u64>) {
        let Some(rt) = self.b.running_time(k) else { return };
        let at = retry_at.unwrap_or(self.base_time.nseconds() + rt.saturating_sub(self.b.lead_ns));
        let id = self.clock.new_single_shot_id(gst::ClockTime::from_nseconds(at));
        let next = self.clone();
        let scheduled = id.wait_async(move |clock, _, _| next.fire(k, rt, clock.time().nseconds()));
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if scheduled.is_ok() && !guard.stopped {
            guard.pending = Some(id);
        } else {
            id.unschedule();
        }
    }

    fn fire(self, k: u64, rt: u64, now: u64) {
        let open = self.gate.is_open();
        let held = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if inner.stopped {
                return;
            }
            if open { std::mem::take(&mut inner.held) } else { Vec::new() }
        };
        let Some(pad) = self.pad.upgrade() else { return };
        if !open {
            // Try again shortly while the boundary is still ahead; else the next boundary.
            let retry = now + GATE_POLL_NS;
            if retry < self.base_time.nseconds() + rt {
                self.schedule(k, Some(retry));
            } else {
                self.schedule(k + 1, None);
            }
            return;
        }
        for splice in held {
            pad.push_event(force_key_unit(splice, 0));
        }
        pad.push_event(force_key_unit(rt, k as u32));
        self.schedule(k + 1, None);
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
