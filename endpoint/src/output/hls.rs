// SPDX-License-Identifier: MPL-2.0
//! HLS with fMP4 segments (RFC 8216): a multivariant playlist at `.m3u8` — a variant per
//! video track, the audio tracks as `EXT-X-MEDIA` renditions of one group (§4.3.4.1) — and a
//! media playlist per track at `<track>.m3u8`, whose `EXT-X-MAP` is the track's init segment
//! (§4.3.2.5) and whose segments are the stored fragments with a tfdt, the same ones DASH uses.
//!
//! A segment's media sequence number is its position in the timeline plus the fragments the
//! window removed before it (§4.3.3.2), so numbers stay with their segments as the window
//! slides. `EXT-X-PROGRAM-DATE-TIME` (§4.3.2.6) gives the wall-clock time of the first
//! segment and of each one after a gap, from the point's anchor. While live the playlists have
//! no end; once recorded they are `VOD` with `EXT-X-ENDLIST`. The SCTE-35 messages of the
//! point's sparse tracks are `EXT-X-DATERANGE` tags of every media playlist, before its
//! segments (see [`super::events`]).

use std::fmt::Write;

use super::{ListFormat, cached_list, events, ticks_to_duration, url_part};
use crate::clock::utc_millis;
use crate::media::meta::Kind;
use crate::store::{Listing, TrackListing};

fn packaged(l: &Listing) -> impl Iterator<Item = &TrackListing> {
    l.tracks.iter().filter(|t| t.meta.packaged() && !t.entries.is_empty())
}

/// A quoted-string attribute value (§4.2): no double quote, CR or LF.
fn quoted(s: &str) -> String {
    s.replace(['"', '\r', '\n'], "_")
}

/// The multivariant playlist; `None` without a track HLS can carry.
pub fn multivariant(l: &Listing) -> Option<String> {
    let videos: Vec<&TrackListing> = packaged(l).filter(|t| t.meta.kind == Kind::Video).collect();
    let audios: Vec<&TrackListing> = packaged(l).filter(|t| t.meta.kind == Kind::Audio).collect();
    if videos.is_empty() && audios.is_empty() {
        return None;
    }
    let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if videos.is_empty() {
        for a in &audios {
            let _ = writeln!(
                s,
                "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"\n{}.m3u8",
                a.meta.bitrate.max(1),
                quoted(&a.meta.codecs),
                url_part(&a.meta.name)
            );
        }
        return Some(s);
    }
    for (i, a) in audios.iter().enumerate() {
        let _ = writeln!(
            s,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{}\",LANGUAGE=\"{}\",DEFAULT={},AUTOSELECT=YES,\
             CHANNELS=\"{}\",URI=\"{}.m3u8\"",
            quoted(&a.meta.name),
            quoted(&a.meta.language),
            if i == 0 { "YES" } else { "NO" },
            a.meta.channels,
            url_part(&a.meta.name)
        );
    }
    let audio = audios.first();
    for v in &videos {
        let bandwidth = v.meta.bitrate.max(1) + audio.map_or(0, |a| a.meta.bitrate);
        let codecs = match audio {
            Some(a) => format!("{},{}", v.meta.codecs, a.meta.codecs),
            None => v.meta.codecs.clone(),
        };
        let _ = write!(s, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"", quoted(&codecs));
        if v.meta.width > 0 && v.meta.height > 0 {
            let _ = write!(s, ",RESOLUTION={}x{}", v.meta.width, v.meta.height);
        }
        if audio.is_some() {
            s.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(s, "\n{}.m3u8", url_part(&v.meta.name));
    }
    Some(s)
}

/// The media playlist of track `name`; `None` when the listing has no such packaged track.
pub fn media(l: &Listing, name: &str) -> Option<String> {
    let t = packaged(l).find(|t| t.meta.name == name)?;
    let ts = t.meta.timescale;
    // EXTINF rounded to the nearest integer must not exceed the target duration (§4.3.3.1).
    let target =
        t.entries.iter().map(|(_, d)| ticks_to_duration(*d, ts).as_secs_f64().round() as u64).max().unwrap_or(1).max(1);
    let path = url_part(&t.meta.name);
    let mut s = String::with_capacity(256 + t.entries.len() * (40 + path.len()));
    let _ = writeln!(
        s,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}",
        t.first_sequence
    );
    if !l.live {
        s.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    let _ = writeln!(s, "#EXT-X-MAP:URI=\"cmaf/{path}/init.mp4\"");
    let first = t.entries.first().map_or(0.0, |(start, _)| ticks_to_duration(*start, ts).as_secs_f64());
    s.push_str(&events::hls_date_ranges(l, l.anchor, first));
    let segment = format!("cmaf/{path}/");
    let anchor = l.anchor.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let render = |entries: &[(u64, u64)], s: &mut String| {
        let mut expected = None;
        for &(start, d) in entries {
            // The date-time of the first segment (of each cached bucket) and after a gap.
            if expected != Some(start) {
                let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", utc_millis(l.anchor + ticks_to_duration(start, ts)));
            }
            // Milliseconds as integers: the playlist of a 25 h window has 45,000 of these lines.
            let ms = (u128::from(d) * 1000 + u128::from(ts) / 2) / u128::from(ts.max(1));
            let _ = writeln!(s, "#EXTINF:{}.{:03},\n{segment}{start}.m4s", ms / 1000, ms % 1000);
            expected = Some(start + d);
        }
    };
    s.push_str(&cached_list(&t.cache, ListFormat::Hls(anchor.as_millis() as u64), &t.entries, ts, &render));
    if !l.live {
        s.push_str("#EXT-X-ENDLIST\n");
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::output::tests::track;

    fn listing(live: bool) -> Listing {
        Listing {
            live,
            window: Duration::from_secs(1800),
            anchor: UNIX_EPOCH,
            published: UNIX_EPOCH,
            tracks: vec![
                track("video", Kind::Video, 3000, vec![(6000, 6000), (12000, 6000), (24000, 6000)], 7),
                track("audio eng", Kind::Audio, 48000, vec![(96000, 96256)], 7),
            ],
        }
    }

    #[test]
    fn multivariant_with_an_audio_group() {
        let m = multivariant(&listing(true)).unwrap();
        assert!(
            m.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio eng\",LANGUAGE=\"eng\",DEFAULT=YES"),
            "{m}"
        );
        assert!(m.contains("URI=\"audio%20eng.m3u8\""), "{m}");
        assert!(m.contains("#EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=320x240,AUDIO=\"audio\"\nvideo.m3u8"), "{m}");
    }

    #[test]
    fn media_playlists_live_and_recorded() {
        let m = media(&listing(true), "video").unwrap();
        assert!(
            m.contains("#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-MAP:URI=\"cmaf/video/init.mp4\""),
            "{m}"
        );
        assert!(
            m.contains("#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:02.000Z\n#EXTINF:2.000,\ncmaf/video/6000.m4s"),
            "{m}"
        );
        // After the gap at 18000 ticks (6 s), a date-time again.
        assert!(
            m.contains("#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:08.000Z\n#EXTINF:2.000,\ncmaf/video/24000.m4s"),
            "{m}"
        );
        assert!(!m.contains("ENDLIST"));
        let r = media(&listing(false), "audio eng").unwrap();
        assert!(r.contains("#EXT-X-PLAYLIST-TYPE:VOD") && r.ends_with("#EXT-X-ENDLIST\n"), "{r}");
        assert!(r.contains("#EXTINF:2.005,\ncmaf/audio%20eng/96000.m4s"), "{r}");
        assert!(media(&listing(false), "nope").is_none());
    }
}
