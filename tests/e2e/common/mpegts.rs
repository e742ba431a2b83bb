// SPDX-License-Identifier: MPL-2.0
//! The few functions of GStreamer's mpegts library (gst-plugins-bad) a test needs to make
//! mpegtsmux write an SCTE-35 splice_insert, looked up at run time.

use std::ffi::{CStr, c_void};

fn symbol(name: &CStr) -> *mut c_void {
    // SAFETY: valid NUL-terminated names; the library stays loaded for the process.
    unsafe {
        let lib = libc::dlopen(c"libgstmpegts-1.0.so.0".as_ptr(), libc::RTLD_NOW);
        assert!(!lib.is_null(), "libgstmpegts-1.0.so.0 (gstreamer1.0-plugins-bad) is needed");
        let f = libc::dlsym(lib, name.as_ptr());
        assert!(!f.is_null(), "{name:?} not found");
        f
    }
}

/// An event that makes mpegtsmux write a splice_insert (out of network) with this id at
/// running time `at`, lasting `duration` (both in ns of the muxer's running time).
pub fn splice_out_event(id: u32, at: u64, duration: u64, pid: u16) -> gst::Event {
    type Init = unsafe extern "C" fn();
    type SpliceOut = unsafe extern "C" fn(u32, u64, u64) -> *mut c_void;
    type FromSit = unsafe extern "C" fn(*mut c_void, u16) -> *mut c_void;
    type NewEvent = unsafe extern "C" fn(*mut c_void) -> *mut gst::ffi::GstEvent;
    // SAFETY: the signatures of gstmpegts 1.22 (gstmpegtssection.h, gst-scte-section.h);
    // the section is ours (transfer full) until unreffed, the event takes a ref of it.
    unsafe {
        let init: Init = std::mem::transmute(symbol(c"gst_mpegts_initialize"));
        let splice_out: SpliceOut = std::mem::transmute(symbol(c"gst_mpegts_scte_splice_out_new"));
        let from_sit: FromSit = std::mem::transmute(symbol(c"gst_mpegts_section_from_scte_sit"));
        let new_event: NewEvent = std::mem::transmute(symbol(c"gst_event_new_mpegts_section"));
        init();
        let section = from_sit(splice_out(id, at, duration), pid);
        let event = new_event(section);
        gst::ffi::gst_mini_object_unref(section as *mut gst::ffi::GstMiniObject);
        gst::Event::from_glib_full(event)
    }
}

/// Runs a pipeline whose `mpegtsmux name=ts scte-35-pid=500` feeds `tsdemux name=demux
/// send-scte35-events=true`, making mpegtsmux write splice_insert 7 (out of network at running
/// time 8 s, for 10 s) once data flows; returns the run and the splice's running time as
/// tsdemux mapped it in its `scte-sit` event.
pub fn run_with_a_splice(description: &str) -> (super::RunResult, Option<u64>) {
    use gst::prelude::*;
    const SEC: u64 = 1_000_000_000;
    super::init();
    let p = gst::parse::launch(description).unwrap().downcast::<gst::Pipeline>().unwrap();
    // What tsdemux says the splice's running time is.
    let mapped = std::sync::Arc::new(std::sync::Mutex::new(None::<u64>));
    let m = mapped.clone();
    p.by_name("demux").unwrap().connect_pad_added(move |_, pad| {
        let m = m.clone();
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data {
                let map = e
                    .structure()
                    .filter(|s| s.name() == "scte-sit")
                    .and_then(|s| s.get::<gst::Structure>("running-time-map").ok());
                if let Some(rt) = map.and_then(|map| map.get::<u64>("event-7-splice-time").ok()) {
                    *m.lock().unwrap() = Some(rt);
                }
            }
            gst::PadProbeReturn::Ok
        });
    });
    // mpegtsmux writes a section at its next buffer: give it one once data flows.
    let (tx, rx_flow) = std::sync::mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let mux_pad = p.by_name("ts").unwrap().sink_pads().first().unwrap().clone();
    let seen = std::sync::atomic::AtomicU32::new(0);
    mux_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 15
            && let Some(tx) = tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
        gst::PadProbeReturn::Ok
    });
    let r = super::run_with(&p, std::time::Duration::from_secs(60), move |p, _| {
        rx_flow.recv_timeout(std::time::Duration::from_secs(10)).expect("data through mpegtsmux");
        assert!(p.by_name("ts").unwrap().send_event(splice_out_event(7, 8 * SEC, 10 * SEC, 500)));
    });
    let rt = *mapped.lock().unwrap();
    (r, rt)
}
