// SPDX-License-Identifier: MPL-2.0
//! The GStreamer side of ad signalling: the events that carry splice requests, read into the
//! core's [`SpliceRequest`].
//!
//! Three event structures are understood, in custom downstream events (serialized or
//! out-of-band) that reach the sink pad, or given to the element with
//! `gst_element_send_event()`:
//!
//! - `fmp4ingest-splice`: `running-time` (guint64 ns, required), `id` (guint, required),
//!   `duration` (guint64 ns, 0 = unknown), `out-of-network` (boolean, default true), `cancel`
//!   (boolean, default false). The sink builds the splice_insert.
//! - `fmp4ingest-scte35`: `section` (GstBuffer, required: a whole splice_info_section, CRC
//!   included), `running-time` (guint64 ns, required), `id` (guint), `duration` (guint64 ns).
//! - `scte-sit`: what `tsdemux send-scte35-events=true` sends (GStreamer ≥ 1.20): `section`
//!   (a GstMpegtsSection), `running-time-map` (the splice times as running times) and
//!   `mpeg-pts-offset`.

use std::ffi::{CStr, c_void};
use std::sync::OnceLock;

use bytes::Bytes;
use fmp4ingest_core::ad_signals::{SignalSource, SpliceRequest};
use fmp4ingest_core::scte35::{self, PTS_HZ, PTS_MASK, SpliceCommand};
use gst::glib;
use gst::glib::translate::{FromGlibPtrFull, ToGlibPtr};

pub const SPLICE_EVENT: &str = "fmp4ingest-splice";
pub const SCTE35_EVENT: &str = "fmp4ingest-scte35";
/// The structure name of tsdemux's SCTE-35 events (gst-plugins-bad mpegts library).
pub const TSDEMUX_EVENT: &str = "scte-sit";

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdEvent {
    Request(SpliceRequest),
    /// A tsdemux section that carries no splice (splice_null heartbeats, bandwidth
    /// reservations): nothing to do.
    Ignored(&'static str),
    /// A section with no time of its own — a splice_insert with splice_immediate_flag, or a
    /// cancellation: it applies wherever the media is now.
    Now {
        section: Bytes,
        id: Option<u32>,
        duration_ns: Option<u64>,
    },
}

/// Whether `s` is one of the ad event structures.
pub fn is_ad_event(s: &gst::StructureRef) -> bool {
    matches!(s.name().as_str(), SPLICE_EVENT | SCTE35_EVENT | TSDEMUX_EVENT)
}

/// The ad event structure of `event`, if it is one: a custom downstream event (serialized,
/// out-of-band or both ways).
pub fn ad_structure(event: &gst::Event) -> Option<&gst::StructureRef> {
    let custom = matches!(
        event.type_(),
        gst::EventType::CustomDownstream | gst::EventType::CustomDownstreamOob | gst::EventType::CustomBoth
    );
    event.structure().filter(|s| custom && is_ad_event(s))
}

/// Reads an ad event structure. The error says which field is wrong and what it should be.
pub fn parse(s: &gst::StructureRef) -> Result<AdEvent, String> {
    match s.name().as_str() {
        SPLICE_EVENT => {
            let running_time_ns = required::<u64>(s, "running-time", "guint64 nanoseconds")?;
            let id = required::<u32>(s, "id", "guint")?;
            let duration = optional::<u64>(s, "duration", "guint64 nanoseconds")?.unwrap_or(0);
            let out_of_network = optional::<bool>(s, "out-of-network", "boolean")?.unwrap_or(true);
            let cancel = optional::<bool>(s, "cancel", "boolean")?.unwrap_or(false);
            Ok(AdEvent::Request(SpliceRequest {
                running_time_ns,
                id: Some(id),
                duration_ns: Some(duration),
                source: SignalSource::Insert { out_of_network, cancel },
            }))
        }
        SCTE35_EVENT => {
            let buffer = required::<gst::Buffer>(s, "section", "GstBuffer holding a splice_info_section")?;
            let map = buffer.map_readable().map_err(|_| "field 'section': the buffer cannot be read".to_string())?;
            let section = Bytes::copy_from_slice(map.as_slice());
            Ok(AdEvent::Request(SpliceRequest {
                running_time_ns: required::<u64>(s, "running-time", "guint64 nanoseconds")?,
                id: optional::<u32>(s, "id", "guint")?,
                duration_ns: optional::<u64>(s, "duration", "guint64 nanoseconds")?,
                source: SignalSource::Section(section),
            }))
        }
        TSDEMUX_EVENT => parse_tsdemux(s),
        other => Err(format!("'{other}' is not an ad event")),
    }
}

fn required<T: for<'a> glib::value::FromValue<'a> + 'static>(
    s: &gst::StructureRef,
    field: &str,
    what: &str,
) -> Result<T, String> {
    optional(s, field, what)?.ok_or_else(|| format!("{}: field '{field}' ({what}) is missing", s.name()))
}

fn optional<T: for<'a> glib::value::FromValue<'a> + 'static>(
    s: &gst::StructureRef,
    field: &str,
    what: &str,
) -> Result<Option<T>, String> {
    match s.value(field) {
        Err(_) => Ok(None),
        Ok(v) => v
            .get::<T>()
            .map(Some)
            .map_err(|_| format!("{}: field '{field}' must be a {what}, not a {}", s.name(), v.type_().name())),
    }
}

/// A tsdemux section: its bytes (through the mpegts library tsdemux itself loaded), and the
/// splice's running time from the map tsdemux computed, or from pts_time and
/// `mpeg-pts-offset` (running time at 90 kHz = pts_time + pts_adjustment + offset, modulo 2^33).
fn parse_tsdemux(s: &gst::StructureRef) -> Result<AdEvent, String> {
    let value = s.value("section").map_err(|_| "scte-sit: field 'section' is missing".to_string())?;
    let section = mpegts_section_bytes(value)?;
    let info = scte35::parse_section(&section).map_err(|e| format!("scte-sit: {e}"))?;
    let event_id = info.event_id();
    let duration_ns = info.break_duration().map(|d| d * 1_000_000_000 / PTS_HZ);
    match info.command {
        SpliceCommand::Null => return Ok(AdEvent::Ignored("splice_null")),
        SpliceCommand::BandwidthReservation => return Ok(AdEvent::Ignored("bandwidth_reservation")),
        SpliceCommand::Insert(i) if i.immediate || i.cancel => {
            return Ok(AdEvent::Now { section: Bytes::from(section), id: event_id, duration_ns });
        }
        _ => {}
    }
    let map = s.get::<gst::Structure>("running-time-map").ok();
    let mapped = map.as_ref().and_then(|m| {
        let key = match event_id {
            Some(id) => format!("event-{id}-splice-time"),
            None => "splice-time".to_string(),
        };
        m.get::<u64>(key.as_str()).ok()
    });
    let offset = s.get::<u64>("mpeg-pts-offset").ok().filter(|o| *o != 0);
    let running_time_ns = match (mapped, info.splice_pts(), offset) {
        (Some(rt), _, _) => rt,
        (None, Some(pts), Some(offset)) => ((pts + offset) & PTS_MASK) * 1_000_000_000 / PTS_HZ,
        _ => return Err("scte-sit: the section names no splice time that maps to running time".to_string()),
    };
    Ok(AdEvent::Request(SpliceRequest {
        running_time_ns,
        id: event_id,
        duration_ns,
        source: SignalSource::Section(Bytes::from(section)),
    }))
}

type GetData = unsafe extern "C" fn(*mut c_void) -> *mut glib::ffi::GBytes;

/// `gst_mpegts_section_get_data`, looked up in the mpegts library at run time: a process that
/// runs tsdemux has it loaded, and the sink does not need it otherwise.
fn get_data_fn() -> Option<GetData> {
    static FN: OnceLock<Option<usize>> = OnceLock::new();
    let addr = *FN.get_or_init(|| {
        let name: &CStr = c"libgstmpegts-1.0.so.0";
        let symbol: &CStr = c"gst_mpegts_section_get_data";
        // SAFETY: dlopen/dlsym with valid NUL-terminated names; the handle is kept for the
        // process's lifetime (never dlclosed), so the symbol stays valid.
        unsafe {
            let mut handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            if handle.is_null() {
                handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW);
            }
            if handle.is_null() {
                return None;
            }
            let f = libc::dlsym(handle, symbol.as_ptr());
            (!f.is_null()).then_some(f as usize)
        }
    });
    // SAFETY: the symbol has this signature (gstmpegtssection.h:
    // `GBytes *gst_mpegts_section_get_data (GstMpegtsSection *section)`).
    addr.map(|a| unsafe { std::mem::transmute::<usize, GetData>(a) })
}

/// The bytes of a GstMpegtsSection in a GValue: table_id to CRC_32.
fn mpegts_section_bytes(value: &glib::SendValue) -> Result<Vec<u8>, String> {
    if value.type_().name() != "GstMpegtsSection" {
        return Err(format!("scte-sit: field 'section' is a {}, not a GstMpegtsSection", value.type_().name()));
    }
    let get_data = get_data_fn().ok_or("scte-sit: the GStreamer mpegts library (libgstmpegts-1.0) is not available")?;
    // SAFETY: the value holds a GstMpegtsSection (checked above); g_value_get_boxed borrows it
    // for as long as the value lives, and get_data returns a new GBytes we own.
    let bytes = unsafe {
        let section = glib::gobject_ffi::g_value_get_boxed(value.to_glib_none().0);
        if section.is_null() {
            return Err("scte-sit: field 'section' is empty".to_string());
        }
        let b = get_data(section);
        if b.is_null() {
            return Err("scte-sit: the section has no data".to_string());
        }
        glib::Bytes::from_glib_full(b)
    };
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> Vec<u8> {
        scte35::build_splice_insert(&scte35::SpliceInsert::program(42, true, Some(90_000), Some(90_000 * 30)))
    }

    #[test]
    fn splice_events_with_defaults() {
        gst::init().unwrap();
        let s = gst::Structure::builder(SPLICE_EVENT).field("running-time", 5_000_000_000u64).field("id", 7u32).build();
        let AdEvent::Request(r) = parse(&s).unwrap() else { panic!() };
        assert_eq!((r.running_time_ns, r.id, r.duration_ns), (5_000_000_000, Some(7), Some(0)));
        assert_eq!(r.source, SignalSource::Insert { out_of_network: true, cancel: false });
        let s = gst::Structure::builder(SPLICE_EVENT)
            .field("running-time", 1u64)
            .field("id", 1u32)
            .field("out-of-network", false)
            .field("cancel", true)
            .field("duration", 9u64)
            .build();
        let AdEvent::Request(r) = parse(&s).unwrap() else { panic!() };
        assert_eq!(r.source, SignalSource::Insert { out_of_network: false, cancel: true });
        assert_eq!(r.duration_ns, Some(9));
    }

    #[test]
    fn scte35_events_carry_the_section_bytes() {
        gst::init().unwrap();
        let bytes = section();
        let s = gst::Structure::builder(SCTE35_EVENT)
            .field("section", gst::Buffer::from_slice(bytes.clone()))
            .field("running-time", 9u64)
            .build();
        let AdEvent::Request(r) = parse(&s).unwrap() else { panic!() };
        assert_eq!(r.source, SignalSource::Section(Bytes::from(bytes)));
        assert_eq!((r.id, r.duration_ns), (None, None));
    }

    #[test]
    fn wrong_or_missing_fields_are_named() {
        gst::init().unwrap();
        let s = gst::Structure::builder(SPLICE_EVENT).field("id", 7u32).build();
        let e = parse(&s).unwrap_err();
        assert!(e.contains("'running-time'") && e.contains("missing"), "{e}");
        let s = gst::Structure::builder(SPLICE_EVENT).field("running-time", 5i32).field("id", 7u32).build();
        let e = parse(&s).unwrap_err();
        assert!(e.contains("must be a guint64") && e.contains("gint"), "{e}");
        let s =
            gst::Structure::builder(SCTE35_EVENT).field("section", "not a buffer").field("running-time", 1u64).build();
        assert!(parse(&s).unwrap_err().contains("'section'"));
        let s = gst::Structure::builder(TSDEMUX_EVENT).field("section", 3u32).build();
        assert!(parse(&s).unwrap_err().contains("GstMpegtsSection"));
    }

    #[test]
    fn only_custom_downstream_events_count() {
        gst::init().unwrap();
        let s = || gst::Structure::builder(SPLICE_EVENT).field("running-time", 1u64).field("id", 1u32).build();
        assert!(ad_structure(&gst::event::CustomDownstream::new(s())).is_some());
        assert!(ad_structure(&gst::event::CustomDownstreamOob::new(s())).is_some());
        assert!(ad_structure(&gst::event::CustomUpstream::new(s())).is_none());
        let other = gst::Structure::builder("something-else").build();
        assert!(ad_structure(&gst::event::CustomDownstream::new(other)).is_none());
    }
}
