//! Time as the endpoint's APIs write it: UTC instants in ISO 8601 (the heartbeats' `eventTime`
//! and `lastFragmentArrivalTime`, the programs' `Created`), ISO 8601 durations (the programs'
//! `ArchiveWindowLength`, seed 003: PT5M to PT25H) and the ids of new programs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2022-10-19T22:14:52.33Z`: UTC with hundredths, as seed 001's heartbeats.
pub fn utc_centis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, hms) = civil(d.as_secs());
    format!("{date}T{hms}.{:02}Z", d.subsec_millis() / 10)
}

/// `2014-08-11T18:12:27.8381256Z`: UTC with 100 ns ticks, as seed 003's entities.
pub fn utc_ticks(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, hms) = civil(d.as_secs());
    format!("{date}T{hms}.{:07}Z", d.subsec_nanos() / 100)
}

/// ("YYYY-MM-DD", "hh:mm:ss") of a Unix time (days from civil, H. Hinnant's algorithm).
fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (format!("{y:04}-{m:02}-{d:02}"), format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60))
}

/// Parses an ISO 8601 duration of days and time (`P1D`, `PT1H30M`, `PT5M`, `PT0.5S`); years,
/// months and weeks are refused (their length is not fixed).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, t),
        Some(_) => return None,
        None => (rest, ""),
    };
    let mut total = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            // Units in order, each at most once.
            let (_, secs) = allowed.by_ref().find(|(u, _)| *u == c)?;
            let v: f64 = num.parse().ok()?;
            total += v * secs;
            any = true;
            num.clear();
        }
        num.is_empty().then_some(())
    };
    take(date, &[('D', 86_400.0)])?;
    take(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    (any && total.is_finite()).then(|| Duration::from_secs_f64(total))
}

/// The ISO 8601 text of a whole number of seconds: `PT1H30M`, `PT25H`, `PT5M`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if sec > 0 || (h == 0 && m == 0) {
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
        // A leap day.
        assert_eq!(utc_centis(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.00Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT5M"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("PT25H"), Some(Duration::from_secs(90_000)));
        assert_eq!(parse_duration("PT1H30M15S"), Some(Duration::from_secs(5415)));
        assert_eq!(parse_duration("P1DT1H"), Some(Duration::from_secs(90_000)));
        assert_eq!(parse_duration("PT0.5S"), Some(Duration::from_millis(500)));
        for bad in ["", "P", "PT", "5M", "PT5X", "P1M", "PT5M5H", "PT1H1H", "PTM", "P1Y"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(90_000)), "PT25H");
        assert_eq!(format_duration(Duration::from_secs(5415)), "PT1H30M15S");
        assert_eq!(format_duration(Duration::from_secs(300)), "PT5M");
        assert_eq!(format_duration(Duration::ZERO), "PT0S");
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
