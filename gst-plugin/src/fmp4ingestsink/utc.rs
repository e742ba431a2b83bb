// SPDX-License-Identifier: MPL-2.0
//! Where a pipeline clock's time lies on the UTC timeline (`timestamp-mode=utc`).
//!
//! Clock time is base time + running time. How it relates to UTC depends on the clock: the
//! system clock in `realtime` mode *is* UTC since the Unix epoch; in `tai` mode, and a PTP
//! clock (whose timescale is TAI), it runs 37 s ahead; an NTP clock counts from 1900. For any
//! other clock (the default monotonic system clock, a network client clock of some other
//! server, an audio clock) there is no fixed relation, so the offset is measured against the
//! host's UTC clock once.

use gst::prelude::*;

/// TAI runs 37 s ahead of UTC (since 2017; no leap second has been announced since).
const TAI_MINUS_UTC_NS: i128 = 37_000_000_000;
/// The NTP epoch (1900-01-01) is 2 208 988 800 s before the Unix epoch.
const NTP_MINUS_UNIX_NS: i128 = 2_208_988_800_000_000_000;

/// How a clock's time maps to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMapping {
    /// UTC = clock time + this (ns): a fixed relation, the same on every host.
    Fixed(i128),
    /// No fixed relation: measure the clock against the host's UTC.
    Measured,
}

/// The mapping for a clock, from its GType name and, for a system clock, its `clock-type`.
pub fn mapping(type_name: &str, system_clock_type: Option<gst::ClockType>) -> ClockMapping {
    match (type_name, system_clock_type) {
        (_, Some(gst::ClockType::Realtime)) => ClockMapping::Fixed(0),
        (_, Some(gst::ClockType::Tai)) | ("GstPtpClock", _) => ClockMapping::Fixed(-TAI_MINUS_UTC_NS),
        ("GstNtpClock", _) => ClockMapping::Fixed(-NTP_MINUS_UNIX_NS),
        _ => ClockMapping::Measured,
    }
}

/// UTC (ns since the Unix epoch) minus clock time, for this clock, `utc_now` being the host's
/// UTC at about the moment `clock` is read.
pub fn clock_to_utc(clock: &gst::Clock, utc_now: i128) -> (i128, ClockMapping) {
    let system_type = clock.downcast_ref::<gst::SystemClock>().map(|c| c.property::<gst::ClockType>("clock-type"));
    let m = mapping(clock.type_().name(), system_type);
    let offset = match m {
        ClockMapping::Fixed(o) => o,
        ClockMapping::Measured => utc_now - i128::from(clock.time().nseconds()),
    };
    (offset, m)
}

/// The host's UTC now, in ns since the Unix epoch.
pub fn utc_now() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_relations() {
        assert_eq!(mapping("GstSystemClock", Some(gst::ClockType::Realtime)), ClockMapping::Fixed(0));
        assert_eq!(mapping("GstSystemClock", Some(gst::ClockType::Tai)), ClockMapping::Fixed(-37_000_000_000));
        assert_eq!(mapping("GstPtpClock", None), ClockMapping::Fixed(-37_000_000_000));
        // 2208988800 s = 70 years of 365 days and 17 leap days.
        assert_eq!(mapping("GstNtpClock", None), ClockMapping::Fixed(-((70 * 365 + 17) * 86_400 * 1_000_000_000)));
    }

    #[test]
    fn others_are_measured() {
        assert_eq!(mapping("GstSystemClock", Some(gst::ClockType::Monotonic)), ClockMapping::Measured);
        assert_eq!(mapping("GstNetClientClock", None), ClockMapping::Measured);
        assert_eq!(mapping("GstAudioClock", None), ClockMapping::Measured);
    }

    #[test]
    fn realtime_system_clock_is_utc() {
        gst::init().unwrap();
        let clock = gst::SystemClock::obtain();
        let before = clock.property::<gst::ClockType>("clock-type");
        // A private realtime clock, so that the process-wide one keeps its type.
        let rt: gst::Clock = glib::Object::builder::<gst::SystemClock>()
            .property("clock-type", gst::ClockType::Realtime)
            .build()
            .upcast();
        let (offset, m) = clock_to_utc(&rt, utc_now());
        assert_eq!((offset, m), (0, ClockMapping::Fixed(0)));
        // The realtime clock's time is the host's UTC, to within scheduling.
        assert!((i128::from(rt.time().nseconds()) - utc_now()).abs() < 1_000_000_000);
        let mono: gst::Clock = glib::Object::builder::<gst::SystemClock>()
            .property("clock-type", gst::ClockType::Monotonic)
            .build()
            .upcast();
        let now = utc_now();
        let (offset, m) = clock_to_utc(&mono, now);
        assert_eq!(m, ClockMapping::Measured);
        assert!((offset + i128::from(mono.time().nseconds()) - now).abs() < 1_000_000_000);
        assert_eq!(clock.property::<gst::ClockType>("clock-type"), before);
    }
}
