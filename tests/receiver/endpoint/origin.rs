//! The origin side (MS-SSTR): `GET /<name>.isml/Manifest`, a Smooth Streaming client manifest
//! built from the Live Server Manifest and the timelines, and `GET /<name>.isml/QualityLevels(
//! <bitrate>)/Fragments(<track>=<time>)`, the fragment as ingested.
//!
//! While the publishing point is live the manifest says `IsLive="TRUE"` with
//! `LookAheadFragmentCount="2"` and leaves out each track's two newest fragments; every
//! fragment served carries a `tfrf` box naming the (up to two) fragments that follow it, as an
//! origin adds them, so that a client (GStreamer's mssdemux) learns of new fragments from the
//! fragments themselves and plays the stream live. Once every stream ended, the manifest is a
//! complete on-demand one (`IsLive="FALSE"`, `Duration`). Sparse tracks are `text`
//! StreamIndexes; with `manifestOutput` their messages are in the manifest (`<f>`, base64).

use std::fmt::Write;

use super::store::{StoredFragment, Track};

/// The tfrf uuid (MS-SSTR 2.2.4.5).
const TFRF_UUID: [u8; 16] =
    [0xd4, 0x80, 0x7e, 0xf2, 0xca, 0x39, 0x46, 0x95, 0x8e, 0x54, 0x26, 0xcb, 0x9e, 0x46, 0xa7, 0x9f];

/// Fragments a live manifest holds back, and a served fragment announces.
pub const LOOKAHEAD: usize = 2;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], c.get(1).copied().unwrap_or(0), c.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// The fragments of a track a manifest lists.
fn listed(t: &Track, live: bool) -> Vec<&StoredFragment> {
    let all: Vec<&StoredFragment> = t.fragments.values().collect();
    // A sparse track's messages are announced at once: nothing follows them to look ahead to.
    let keep = if live && t.meta.kind != "text" { all.len().saturating_sub(LOOKAHEAD) } else { all.len() };
    all[..keep].to_vec()
}

/// The mdat payload of a stored fragment (for a sparse message in the manifest).
fn mdat_payload(f: &StoredFragment) -> &[u8] {
    let b = &f.bytes[..];
    let moof = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    b.get(moof + 8..).unwrap_or(&[])
}

/// The client manifest of these tracks (by name). `window_ticks` is the DVR window in 10 MHz
/// ticks (the archive window) when live.
pub fn client_manifest(tracks: &[&Track], live: bool, window_ticks: u64) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let duration = tracks
        .iter()
        .filter(|t| t.meta.kind != "text")
        .filter_map(|t| {
            let first = t.fragments.values().next()?;
            Some((t.end()? - first.time) as f64 / f64::from(t.meta.timescale.max(1)))
        })
        .fold(0.0, f64::max);
    let _ = write!(s, "<SmoothStreamingMedia MajorVersion=\"2\" MinorVersion=\"2\" TimeScale=\"10000000\"");
    if live {
        let _ = writeln!(
            s,
            " Duration=\"0\" IsLive=\"TRUE\" LookAheadFragmentCount=\"{LOOKAHEAD}\" DVRWindowLength=\"{window_ticks}\" \
             CanSeek=\"TRUE\" CanPause=\"TRUE\">"
        );
    } else {
        let _ = writeln!(s, " Duration=\"{}\">", (duration * 1e7).round() as u64);
    }
    for t in tracks {
        let m = &t.meta;
        let list = listed(t, live);
        let url = format!("QualityLevels({{bitrate}})/Fragments({}={{start time}})", m.name);
        match m.kind.as_str() {
            "video" => {
                let (w, h) = (m.param("MaxWidth").unwrap_or("0"), m.param("MaxHeight").unwrap_or("0"));
                let _ = writeln!(
                    s,
                    "  <StreamIndex Type=\"video\" Name=\"{}\" Chunks=\"{}\" QualityLevels=\"1\" TimeScale=\"{}\" \
                     Url=\"{}\" MaxWidth=\"{w}\" MaxHeight=\"{h}\" DisplayWidth=\"{}\" DisplayHeight=\"{}\">",
                    escape(&m.name),
                    list.len(),
                    m.timescale,
                    escape(&url),
                    m.param("DisplayWidth").unwrap_or(w),
                    m.param("DisplayHeight").unwrap_or(h)
                );
                let _ = writeln!(
                    s,
                    "    <QualityLevel Index=\"0\" Bitrate=\"{}\" FourCC=\"{}\" MaxWidth=\"{w}\" MaxHeight=\"{h}\" \
                     CodecPrivateData=\"{}\"/>",
                    m.bitrate,
                    escape(m.param("FourCC").unwrap_or("")),
                    escape(m.param("CodecPrivateData").unwrap_or(""))
                );
            }
            "audio" => {
                let _ = writeln!(
                    s,
                    "  <StreamIndex Type=\"audio\" Name=\"{}\" Chunks=\"{}\" QualityLevels=\"1\" TimeScale=\"{}\" \
                     Url=\"{}\" Language=\"{}\">",
                    escape(&m.name),
                    list.len(),
                    m.timescale,
                    escape(&url),
                    escape(m.param("systemLanguage").unwrap_or("und"))
                );
                let _ = writeln!(
                    s,
                    "    <QualityLevel Index=\"0\" Bitrate=\"{}\" FourCC=\"{}\" SamplingRate=\"{}\" Channels=\"{}\" \
                     BitsPerSample=\"{}\" PacketSize=\"{}\" AudioTag=\"{}\" CodecPrivateData=\"{}\"/>",
                    m.bitrate,
                    escape(m.param("FourCC").unwrap_or("AACL")),
                    m.param("SamplingRate").unwrap_or("48000"),
                    m.param("Channels").unwrap_or("2"),
                    m.param("BitsPerSample").unwrap_or("16"),
                    m.param("PacketSize").unwrap_or("4"),
                    m.param("AudioTag").unwrap_or("255"),
                    escape(m.param("CodecPrivateData").unwrap_or(""))
                );
            }
            _ => {
                let output = m.param("manifestOutput").is_some_and(|v| v.eq_ignore_ascii_case("true"));
                let _ = writeln!(
                    s,
                    "  <StreamIndex Type=\"text\" Name=\"{}\" Subtype=\"{}\" Chunks=\"{}\" QualityLevels=\"1\" \
                     TimeScale=\"{}\" ParentStreamIndex=\"{}\" ManifestOutput=\"{}\" Url=\"{}\">",
                    escape(&m.name),
                    escape(m.param("Subtype").unwrap_or("DATA")),
                    list.len(),
                    m.timescale,
                    escape(m.param("parentTrackName").unwrap_or("video")),
                    if output { "TRUE" } else { "FALSE" },
                    escape(&url)
                );
                let _ = writeln!(s, "    <QualityLevel Index=\"0\" Bitrate=\"0\" FourCC=\"\"/>");
                for f in &list {
                    if output {
                        let _ = writeln!(s, "    <c t=\"{}\"><f>{}</f></c>", f.time, base64(mdat_payload(f)));
                    } else {
                        let _ = writeln!(s, "    <c t=\"{}\"/>", f.time);
                    }
                }
                let _ = writeln!(s, "  </StreamIndex>");
                continue;
            }
        }
        // Chunks: the first with its time, then durations (a time only after a gap).
        let mut expected = None;
        for f in &list {
            if expected == Some(f.time) {
                let _ = writeln!(s, "    <c d=\"{}\"/>", f.duration);
            } else {
                let _ = writeln!(s, "    <c t=\"{}\" d=\"{}\"/>", f.time, f.duration);
            }
            expected = Some(f.time + f.duration);
        }
        let _ = writeln!(s, "  </StreamIndex>");
    }
    s.push_str("</SmoothStreamingMedia>\n");
    s
}

/// The fragment of `track` at `time` as served: with a tfrf of the fragments after it when
/// the stream is live.
pub fn serve_fragment(t: &Track, time: u64, live: bool) -> Option<Vec<u8>> {
    let f = t.fragments.get(&time)?;
    if !live {
        return Some(f.bytes.to_vec());
    }
    let next: Vec<(u64, u64)> =
        t.fragments.range(time + 1..).take(LOOKAHEAD).map(|(_, n)| (n.time, n.duration)).collect();
    Some(with_tfrf(&f.bytes, &next).unwrap_or_else(|| f.bytes.to_vec()))
}

/// moof + mdat with a tfrf (version 1) at the end of the traf; sizes and the trun's
/// data_offset moved by its length. `None` when the moof is not one this endpoint stored.
pub fn with_tfrf(fragment: &[u8], next: &[(u64, u64)]) -> Option<Vec<u8>> {
    let be32 = |b: &[u8], at: usize| b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
    let moof_len = be32(fragment, 0)? as usize;
    if fragment.get(4..8)? != b"moof" || moof_len > fragment.len() {
        return None;
    }
    let mut tfrf = Vec::new();
    let len = 8 + 16 + 4 + 1 + 16 * next.len();
    tfrf.extend_from_slice(&(len as u32).to_be_bytes());
    tfrf.extend_from_slice(b"uuid");
    tfrf.extend_from_slice(&TFRF_UUID);
    tfrf.extend_from_slice(&[1, 0, 0, 0, next.len() as u8]);
    for (t, d) in next {
        tfrf.extend_from_slice(&t.to_be_bytes());
        tfrf.extend_from_slice(&d.to_be_bytes());
    }
    // The traf, and the trun in it.
    let mut pos = 8;
    let (mut traf_at, mut traf_len) = (None, 0);
    while pos + 8 <= moof_len {
        let size = be32(fragment, pos)? as usize;
        if size < 8 || pos + size > moof_len {
            return None;
        }
        if &fragment[pos + 4..pos + 8] == b"traf" {
            traf_at = Some(pos);
            traf_len = size;
        }
        pos += size;
    }
    let traf_at = traf_at?;
    let mut out = Vec::with_capacity(fragment.len() + len);
    out.extend_from_slice(&fragment[..traf_at + traf_len]);
    out.extend_from_slice(&tfrf);
    out.extend_from_slice(&fragment[traf_at + traf_len..]);
    out[0..4].copy_from_slice(&((moof_len + len) as u32).to_be_bytes());
    out[traf_at..traf_at + 4].copy_from_slice(&((traf_len + len) as u32).to_be_bytes());
    let mut p = traf_at + 8;
    while p + 8 <= traf_at + traf_len {
        let size = be32(&out, p)? as usize;
        if size < 8 {
            return None;
        }
        if &out[p + 4..p + 8] == b"trun" {
            let flags = be32(&out, p + 8)? & 0xff_ffff;
            if flags & 1 != 0 {
                let off = be32(&out, p + 16)? as i32 + len as i32;
                out[p + 16..p + 20].copy_from_slice(&off.to_be_bytes());
            }
        }
        p += size;
    }
    Some(out)
}

/// `QualityLevels(<bitrate>)/Fragments(<track>=<time>)` → (track name, time).
pub fn fragment_request(rest: &str) -> Option<(String, u64)> {
    let rest = rest.strip_prefix("QualityLevels(")?;
    let (_, rest) = rest.split_once(")/Fragments(")?;
    let inner = rest.strip_suffix(')')?;
    let (name, time) = inner.split_once('=')?;
    Some((name.to_string(), time.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_urls() {
        assert_eq!(fragment_request("QualityLevels(2000000)/Fragments(video=123)"), Some(("video".into(), 123)));
        assert_eq!(fragment_request("QualityLevels(0)/Fragments(scte35=0)"), Some(("scte35".into(), 0)));
        assert_eq!(fragment_request("QualityLevels(1)/Fragments(video=x)"), None);
        assert_eq!(fragment_request("Manifest"), None);
    }

    #[test]
    fn tfrf_goes_into_the_traf_and_moves_the_data() {
        // moof { mfhd, traf { tfhd, trun(data_offset) } } mdat
        let mut traf = Vec::new();
        traf.extend_from_slice(&[0, 0, 0, 16, b't', b'f', b'h', b'd', 0, 0, 0, 0, 0, 0, 0, 1]);
        traf.extend_from_slice(&[0, 0, 0, 24, b't', b'r', b'u', b'n', 0, 0, 2, 1, 0, 0, 0, 1]);
        let data_offset_at = 8 + 16 + 8 + traf.len();
        traf.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4]);
        let mut moof =
            vec![0, 0, 0, 0, b'm', b'o', b'o', b'f', 0, 0, 0, 16, b'm', b'f', b'h', b'd', 0, 0, 0, 0, 0, 0, 0, 1];
        moof.extend_from_slice(&((8 + traf.len()) as u32).to_be_bytes());
        moof.extend_from_slice(b"traf");
        moof.extend_from_slice(&traf);
        let n = moof.len() as u32;
        moof[0..4].copy_from_slice(&n.to_be_bytes());
        let offset = n + 8;
        moof[data_offset_at..data_offset_at + 4].copy_from_slice(&offset.to_be_bytes());
        let mut frag = moof.clone();
        frag.extend_from_slice(&[0, 0, 0, 12, b'm', b'd', b'a', b't', 9, 9, 9, 9]);
        let out = with_tfrf(&frag, &[(100, 20), (120, 20)]).unwrap();
        let added = 8 + 16 + 5 + 32;
        assert_eq!(out.len(), frag.len() + added);
        let moof_len = u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(moof_len, n as usize + added);
        // The payload is where the trun says it is.
        let at = data_offset_at;
        let off = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(&out[off..off + 4], &[9, 9, 9, 9]);
        assert_eq!(&out[moof_len + 4..moof_len + 8], b"mdat");
        assert!(out.windows(16).any(|w| w == TFRF_UUID));
    }

    #[test]
    fn base64_of_messages() {
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
    }
}
