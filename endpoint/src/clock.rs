// SPDX-License-Identifier: MPL-2.0
//! Time as the endpoint's APIs and manifests write it, through jiff: UTC instants in ISO 8601
//! (the heartbeats' `eventTime` with hundredths, the Program entity's `Created` with 100 ns
//! ticks, the DASH MPD's `availabilityStartTime` and HLS's `EXT-X-PROGRAM-DATE-TIME` with
//! milliseconds), ISO 8601 durations (`ArchiveWindowLength`, `--archive-window`, the MPD's
//! durations) and the ids of new programs.
//!
//! Durations are read strictly: an ISO 8601 duration of hours, minutes and seconds (`PT30M`,
//! `PT1H30M`, `PT25H`, `PT0.5S`), upper-case designators, not negative. Years, months, weeks
//! and days have no fixed length in ISO 8601 and are refused, as is a fraction without its
//! integer part (`PT.5S`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::fmt::temporal::SpanParser;

fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `2022-10-19T22:14:52.33Z`: UTC with hundredths, as the heartbeats API writes `eventTime`.
pub fn utc_centis(t: SystemTime) -> String {
    timestamp(t).strftime("%Y-%m-%dT%H:%M:%S%.2fZ").to_string()
}

/// `2014-08-11T18:12:27.8381256Z`: UTC with 100 ns ticks, as the Program entity writes times.
pub fn utc_ticks(t: SystemTime) -> String {
    timestamp(t).strftime("%Y-%m-%dT%H:%M:%S%.7fZ").to_string()
}

/// `2024-05-01T10:00:02.000Z`: UTC with milliseconds (xs:dateTime for the MPD, the date-time
/// of RFC 8216 §4.3.2.6 for HLS).
pub fn utc_millis(t: SystemTime) -> String {
    timestamp(t).strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses an ISO 8601 duration of hours, minutes and seconds, strictly (see the module doc);
/// the error says what is wrong in a sentence.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const PARSER: SpanParser = SpanParser::new();
    let shape = "an ISO 8601 duration of hours, minutes and seconds such as PT30M, PT1H30M or PT25H";
    if !text.starts_with('P') || text.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!("{text:?} is not {shape} (upper-case P, T, H, M, S)"));
    }
    if text.contains(['Y', 'W', 'D']) || text.split('T').next().is_some_and(|date| date.contains('M')) {
        return Err(format!("{text:?}: years, months, weeks and days have no fixed length; give {shape}"));
    }
    PARSER.parse_unsigned_duration(text).map_err(|e| format!("{text:?} is not {shape} ({e})"))
}

/// The ISO 8601 text of a duration in whole seconds and milliseconds: `PT1H30M`, `PT25H`,
/// `PT5M`, `PT2.005S`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec, ms) = (s / 3600, s / 60 % 60, s % 60, d.subsec_millis());
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if ms > 0 {
        out.push_str(&format!("{sec}.{ms:03}S"));
    } else if sec > 0 || (h == 0 && m == 0) {
        out.push_str(&format!("{sec}S"));
    }
    out
}

/// A random UUID (version 4) from the process's hasher seed and the time: ids need only be
/// unique, not secret.
pub fn uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    let a = h.finish();
    h.write_u64(a);
    let b = h.finish();
    let v = (u128::from(a) << 64 | u128::from(b)) & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let x = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_texts() {
        let t = UNIX_EPOCH + Duration::from_millis(1_666_217_692_330);
        assert_eq!(utc_centis(t), "2022-10-19T22:14:52.33Z");
        let t = UNIX_EPOCH + Duration::from_nanos(1_407_780_747_838_125_600);
        assert_eq!(utc_ticks(t), "2014-08-11T18:12:27.8381256Z");
        assert_eq!(utc_centis(UNIX_EPOCH), "1970-01-01T00:00:00.00Z");
        assert_eq!(utc_millis(UNIX_EPOCH + Duration::from_millis(2_005)), "1970-01-01T00:00:02.005Z");
        // A leap day.
        assert_eq!(utc_centis(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.00Z");
    }

    #[test]
    fn durations_are_read_strictly() {
        assert_eq!(parse_duration("PT5M"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("PT25H"), Ok(Duration::from_secs(90_000)));
        assert_eq!(parse_duration("PT1H30M15S"), Ok(Duration::from_secs(5415)));
        assert_eq!(parse_duration("PT0.5S"), Ok(Duration::from_millis(500)));
        for bad in ["", "P", "PT", "5M", "PT5X", "PT5M5H", "PT1H1H", "PTM", "pt5m", "PT.5S", "-PT5M", "PT5M "] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for calendar in ["P1Y", "P1M", "P1W", "P1D", "P1DT1H"] {
            let e = parse_duration(calendar).unwrap_err();
            assert!(e.contains("no fixed length"), "{calendar}: {e}");
        }
        assert!(parse_duration("PT.5S").unwrap_err().contains("PT30M"));
    }

    #[test]
    fn durations_are_written_back() {
        assert_eq!(format_duration(Duration::from_secs(90_000)), "PT25H");
        assert_eq!(format_duration(Duration::from_secs(5415)), "PT1H30M15S");
        assert_eq!(format_duration(Duration::from_secs(300)), "PT5M");
        assert_eq!(format_duration(Duration::ZERO), "PT0S");
        assert_eq!(format_duration(Duration::from_millis(2005)), "PT2.005S");
        for d in [Duration::from_secs(300), Duration::from_millis(2005), Duration::from_secs(90_000)] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn uuids_are_version_4_and_differ() {
        let (a, b) = (uuid(), uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
