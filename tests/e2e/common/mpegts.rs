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
