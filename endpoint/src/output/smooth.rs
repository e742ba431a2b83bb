// SPDX-License-Identifier: MPL-2.0
//! The Smooth Streaming client manifest (MS-SSTR 2.2.2): `SmoothStreamingMedia` with a
//! `StreamIndex` per track, its `QualityLevel` from what the encoder declared (FourCC,
//! CodecPrivateData, sizes, audio format), and the fragment list as `<c>` elements: each
//! fragment's duration, and its time where it does not follow the one before (MS-SSTR
//! 2.2.2.6).
//!
//! While the point is live the manifest says `IsLive="TRUE"`, `LookAheadFragmentCount="2"` and
//! `DVRWindowLength` (the archive window), and lists every fragment kept; each fragment served
//! names the (up to two) fragments after it in its `tfrf` (see [`crate::media::fragment`]), so
//! a client learns of new fragments from the fragments themselves between manifest reloads. A
//! live manifest must not lag behind what the fragments announced: GStreamer's mssdemux, on
//! reloading a manifest that does not reach its position, starts over from the first
//! fragment. Once recorded it is an on-demand manifest (`Duration`). Sparse tracks are `text`
//! StreamIndexes; with `manifestOutput` each message is in the manifest (`<f>`, base64).

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{ListFormat, cached_list, xml_escape};
use crate::media::meta::Kind;
use crate::store::{Listing, TrackListing};

/// Fragments a served fragment announces (its tfrf entries).
pub const LOOKAHEAD: usize = 2;

/// The client manifest; `None` without tracks.
pub fn manifest(l: &Listing) -> Option<String> {
    if l.tracks.is_empty() {
        return None;
    }
    let mut s = String::with_capacity(1024 + l.tracks.iter().map(|t| t.entries.len() * 16).sum::<usize>());
    s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    s.push_str("<SmoothStreamingMedia MajorVersion=\"2\" MinorVersion=\"2\" TimeScale=\"10000000\"");
    if l.live {
        let window = (l.window.as_secs_f64() * 1e7) as u64;
        let _ = writeln!(
            s,
            " Duration=\"0\" IsLive=\"TRUE\" LookAheadFragmentCount=\"{LOOKAHEAD}\" DVRWindowLength=\"{window}\" \
             CanSeek=\"TRUE\" CanPause=\"TRUE\">"
        );
    } else {
        let seconds = l
            .tracks
            .iter()
            .filter(|t| t.meta.kind != Kind::Text)
            .filter_map(|t| {
                let (first, last) = (t.entries.first()?, t.entries.last()?);
                Some((last.0 + last.1 - first.0) as f64 / f64::from(t.meta.timescale.max(1)))
            })
            .fold(0.0, f64::max);
        let _ = writeln!(s, " Duration=\"{}\">", (seconds * 1e7).round() as u64);
    }
    for t in &l.tracks {
        stream_index(&mut s, t);
    }
    s.push_str("</SmoothStreamingMedia>\n");
    Some(s)
}

fn stream_index(s: &mut String, t: &TrackListing) {
    let m = &t.meta;
    let list = &t.entries[..];
    let name = xml_escape(&m.name);
    let url = xml_escape(&format!("QualityLevels({{bitrate}})/Fragments({}={{start time}})", m.name));
    let p = |n: &str, default: &str| xml_escape(m.param(n).unwrap_or(default));
    match m.kind {
        Kind::Video => {
            let (w, h) = (p("MaxWidth", &m.width.to_string()), p("MaxHeight", &m.height.to_string()));
            let _ = writeln!(
                s,
                "  <StreamIndex Type=\"video\" Name=\"{name}\" Chunks=\"{}\" QualityLevels=\"1\" TimeScale=\"{}\" \
                 Url=\"{url}\" MaxWidth=\"{w}\" MaxHeight=\"{h}\" DisplayWidth=\"{}\" DisplayHeight=\"{}\">",
                list.len(),
                m.timescale,
                p("DisplayWidth", &w),
                p("DisplayHeight", &h)
            );
            let _ = writeln!(
                s,
                "    <QualityLevel Index=\"0\" Bitrate=\"{}\" FourCC=\"{}\" MaxWidth=\"{w}\" MaxHeight=\"{h}\" \
                 CodecPrivateData=\"{}\"/>",
                m.bitrate,
                p("FourCC", ""),
                p("CodecPrivateData", "")
            );
        }
        Kind::Audio => {
            let _ = writeln!(
                s,
                "  <StreamIndex Type=\"audio\" Name=\"{name}\" Chunks=\"{}\" QualityLevels=\"1\" TimeScale=\"{}\" \
                 Url=\"{url}\" Language=\"{}\">",
                list.len(),
                m.timescale,
                p("systemLanguage", &m.language)
            );
            let _ = writeln!(
                s,
                "    <QualityLevel Index=\"0\" Bitrate=\"{}\" FourCC=\"{}\" SamplingRate=\"{}\" Channels=\"{}\" \
                 BitsPerSample=\"{}\" PacketSize=\"{}\" AudioTag=\"{}\" CodecPrivateData=\"{}\"/>",
                m.bitrate,
                p("FourCC", "AACL"),
                p("SamplingRate", &m.sample_rate.to_string()),
                p("Channels", &m.channels.to_string()),
                p("BitsPerSample", "16"),
                p("PacketSize", "4"),
                p("AudioTag", "255"),
                p("CodecPrivateData", "")
            );
        }
        Kind::Text => {
            let output = m.param("manifestOutput").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let _ = writeln!(
                s,
                "  <StreamIndex Type=\"text\" Name=\"{name}\" Subtype=\"{}\" Chunks=\"{}\" QualityLevels=\"1\" \
                 TimeScale=\"{}\" ParentStreamIndex=\"{}\" ManifestOutput=\"{}\" Url=\"{url}\">",
                p("Subtype", "DATA"),
                list.len(),
                m.timescale,
                p("parentTrackName", "video"),
                if output { "TRUE" } else { "FALSE" }
            );
            let _ = writeln!(s, "    <QualityLevel Index=\"0\" Bitrate=\"0\" FourCC=\"\"/>");
            for (i, (time, _)) in list.iter().enumerate() {
                match t.messages.get(i).filter(|_| output) {
                    Some(m) => {
                        let _ = writeln!(s, "    <c t=\"{time}\"><f>{}</f></c>", STANDARD.encode(m));
                    }
                    None => {
                        let _ = writeln!(s, "    <c t=\"{time}\"/>");
                    }
                }
            }
            s.push_str("  </StreamIndex>\n");
            return;
        }
    }
    // Each fragment's duration, and its time where it does not follow the one before (the
    // first of each cached bucket, after a gap). No `r` runs: GStreamer's mssdemux loses its
    // place in them when it reloads a live manifest.
    let render = |entries: &[(u64, u64)], s: &mut String| {
        let mut expected = None;
        for &(start, d) in entries {
            if expected == Some(start) {
                let _ = writeln!(s, "    <c d=\"{d}\"/>");
            } else {
                let _ = writeln!(s, "    <c t=\"{start}\" d=\"{d}\"/>");
            }
            expected = Some(start + d);
        }
    };
    s.push_str(&cached_list(&t.cache, ListFormat::Smooth, list, m.timescale, &render));
    s.push_str("  </StreamIndex>\n");
}

/// `QualityLevels(<bitrate>)/Fragments(<track>=<time>)` → (track name, time); the name as
/// written in the URL (already percent-decoded by the router).
pub fn fragment_request(rest: &str) -> Option<(&str, u64)> {
    let rest = rest.strip_prefix("QualityLevels(")?;
    let (_, rest) = rest.split_once(")/Fragments(")?;
    let (name, time) = rest.strip_suffix(')')?.rsplit_once('=')?;
    Some((name, time.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::media::meta::TrackMeta;

    pub fn meta(name: &str, kind: Kind, timescale: u32) -> Arc<TrackMeta> {
        Arc::new(TrackMeta {
            name: name.into(),
            kind,
            timescale,
            bitrate: 1000,
            language: "eng".into(),
            params: vec![("FourCC".into(), "H264".into()), ("manifestOutput".into(), "true".into())],
            codecs: "avc1.64001f".into(),
            width: 320,
            height: 240,
            sample_rate: 48000,
            channels: 2,
        })
    }

    fn listing(live: bool) -> Listing {
        let video = TrackListing {
            meta: meta("video", Kind::Video, 1000),
            entries: vec![(0, 2000), (2000, 2000), (4000, 2000), (8000, 2000), (10000, 2000)],
            first_sequence: 0,
            messages: Vec::new(),
            cache: Default::default(),
        };
        let text = TrackListing {
            meta: meta("scte35", Kind::Text, 1000),
            entries: vec![(3000, 0)],
            first_sequence: 0,
            messages: vec![bytes::Bytes::from_static(b"fo")],
            cache: Default::default(),
        };
        Listing {
            live,
            window: Duration::from_secs(60),
            anchor: SystemTime::UNIX_EPOCH,
            published: SystemTime::UNIX_EPOCH,
            tracks: vec![video, text],
        }
    }

    #[test]
    fn recorded_manifest_lists_every_fragment() {
        let m = manifest(&listing(false)).unwrap();
        assert!(m.contains("Duration=\"120000000\">"), "{m}");
        assert!(
            m.contains(
                "<c t=\"0\" d=\"2000\"/>\n    <c d=\"2000\"/>\n    <c d=\"2000\"/>\n    <c t=\"8000\" d=\"2000\"/>"
            ),
            "{m}"
        );
        assert!(m.contains("Chunks=\"5\""), "{m}");
        assert!(m.contains("<c t=\"3000\"><f>Zm8=</f></c>"), "{m}");
        roxmltree::Document::parse(&m).unwrap();
    }

    #[test]
    fn live_manifest_lists_every_fragment() {
        let m = manifest(&listing(true)).unwrap();
        assert!(m.contains("IsLive=\"TRUE\" LookAheadFragmentCount=\"2\" DVRWindowLength=\"600000000\""), "{m}");
        assert!(m.contains("Chunks=\"5\"") && m.contains("<c t=\"8000\" d=\"2000\"/>\n    <c d=\"2000\"/>"), "{m}");
        roxmltree::Document::parse(&m).unwrap();
    }

    #[test]
    fn fragment_urls() {
        assert_eq!(fragment_request("QualityLevels(2000000)/Fragments(video=123)"), Some(("video", 123)));
        assert_eq!(fragment_request("QualityLevels(0)/Fragments(a=b=0)"), Some(("a=b", 0)));
        assert_eq!(fragment_request("QualityLevels(1)/Fragments(video=x)"), None);
        assert_eq!(fragment_request("Manifest"), None);
    }
}
