// SPDX-License-Identifier: MPL-2.0
//! The DASH MPD (ISO/IEC 23009-1, ISO BMFF live profile `urn:mpeg:dash:profile:isoff-live:2011`)
//! of a publishing point: one Period, an AdaptationSet with one Representation per audio and
//! video track, each with a `SegmentTemplate` (`$Time$` addressing) and the `SegmentTimeline`
//! of its stored fragments (§5.3.9.6: `S@t` where a run starts, `@d`, `@r` the number of
//! repeats after the first).
//!
//! While live the MPD is `dynamic` (§5.4): `availabilityStartTime` is the wall-clock instant of
//! media time 0 (the point's anchor, from its first fragment's arrival), so that a segment's
//! media time is its distance from that instant; `timeShiftBufferDepth` is the archive window;
//! `minimumUpdatePeriod` about one fragment; `suggestedPresentationDelay` three. Once recorded
//! it is `static` with `mediaPresentationDuration`, and `presentationTimeOffset` puts the first
//! stored fragment at the start of the Period. The SCTE-35 messages of the point's sparse
//! tracks are the Period's `EventStream`s (see [`super::events`]).

use std::fmt::Write;
use std::time::Duration;

use super::{ListFormat, cached_list, events, runs, ticks_to_duration, url_part, xml_escape};
use crate::clock::{format_duration, utc_millis};
use crate::media::meta::Kind;
use crate::store::{Listing, TrackListing};

/// The longest fragment of the packaged tracks (at least one second).
fn longest(tracks: &[&TrackListing]) -> Duration {
    tracks
        .iter()
        .flat_map(|t| t.entries.iter().map(|(_, d)| ticks_to_duration(*d, t.meta.timescale)))
        .max()
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

/// The MPD; `None` without an audio or video track that DASH can carry.
pub fn mpd(l: &Listing) -> Option<String> {
    let tracks: Vec<&TrackListing> = l.tracks.iter().filter(|t| t.meta.packaged() && !t.entries.is_empty()).collect();
    if tracks.is_empty() {
        return None;
    }
    let longest = longest(&tracks);
    let mut s = String::with_capacity(2048 + tracks.iter().map(|t| t.entries.len() * 24).sum::<usize>());
    // The media time the Period starts at: 0 while live (the anchor is media time 0); the first
    // stored fragment once recorded.
    let first = tracks.iter().map(|t| ticks_to_duration(t.entries[0].0, t.meta.timescale)).min().unwrap_or_default();
    let origin = if l.live { Duration::ZERO } else { first };
    let events = events::dash_event_streams(l, origin.as_secs_f64(), first.as_secs_f64());
    s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    s.push_str("<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" ");
    if !events.is_empty() {
        let _ = write!(s, "xmlns:scte35=\"{}\" ", events::SCTE35_XML_NS);
    }
    s.push_str("profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" ");
    if l.live {
        let _ = writeln!(
            s,
            "type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" \
             timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\" maxSegmentDuration=\"{}\" minBufferTime=\"{}\">",
            utc_millis(l.anchor),
            utc_millis(l.published),
            format_duration(longest),
            format_duration(l.window),
            format_duration(longest * 3),
            format_duration(longest),
            format_duration(longest),
        );
    } else {
        let end = tracks
            .iter()
            .filter_map(|t| t.entries.last().map(|(s, d)| ticks_to_duration(s + d, t.meta.timescale)))
            .max()
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "type=\"static\" mediaPresentationDuration=\"{}\" maxSegmentDuration=\"{}\" minBufferTime=\"{}\">",
            format_duration(end.saturating_sub(origin)),
            format_duration(longest),
            format_duration(longest),
        );
    }
    s.push_str("  <Period id=\"0\" start=\"PT0S\">\n");
    s.push_str(&events);
    for (i, t) in tracks.iter().enumerate() {
        adaptation_set(&mut s, i + 1, t, origin);
    }
    s.push_str("  </Period>\n</MPD>\n");
    Some(s)
}

fn adaptation_set(s: &mut String, id: usize, t: &TrackListing, origin: Duration) {
    let m = &t.meta;
    let path = url_part(&m.name);
    let (content, mime) = if m.kind == Kind::Video { ("video", "video/mp4") } else { ("audio", "audio/mp4") };
    let _ = write!(
        s,
        "    <AdaptationSet id=\"{id}\" contentType=\"{content}\" mimeType=\"{mime}\" segmentAlignment=\"true\" \
         startWithSAP=\"1\""
    );
    if m.kind == Kind::Audio {
        let _ = write!(s, " lang=\"{}\"", xml_escape(&m.language));
    }
    s.push_str(">\n");
    let _ = write!(
        s,
        "      <Representation id=\"{path}\" bandwidth=\"{}\" codecs=\"{}\"",
        m.bitrate.max(1),
        xml_escape(&m.codecs)
    );
    if m.kind == Kind::Video {
        let _ = write!(s, " width=\"{}\" height=\"{}\" sar=\"1:1\"", m.width, m.height);
    } else {
        let _ = write!(s, " audioSamplingRate=\"{}\"", m.sample_rate);
    }
    s.push_str(">\n");
    if m.kind == Kind::Audio {
        let _ = writeln!(
            s,
            "        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" \
             value=\"{}\"/>",
            m.channels
        );
    }
    let pto = (origin.as_secs_f64() * f64::from(m.timescale)).round() as u64;
    let _ = writeln!(
        s,
        "        <SegmentTemplate timescale=\"{}\" presentationTimeOffset=\"{pto}\" \
         initialization=\"cmaf/{path}/init.mp4\" media=\"cmaf/{path}/$Time$.m4s\">",
        m.timescale
    );
    s.push_str("          <SegmentTimeline>\n");
    let render = |entries: &[(u64, u64)], s: &mut String| {
        for (start, d, n) in runs(entries) {
            if n > 1 {
                let _ = writeln!(s, "            <S t=\"{start}\" d=\"{d}\" r=\"{}\"/>", n - 1);
            } else {
                let _ = writeln!(s, "            <S t=\"{start}\" d=\"{d}\"/>");
            }
        }
    };
    s.push_str(&cached_list(&t.cache, ListFormat::Dash, &t.entries, m.timescale, &render));
    s.push_str(
        "          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n    </AdaptationSet>\n",
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::output::tests::track;

    fn listing(live: bool) -> Listing {
        Listing {
            live,
            window: Duration::from_secs(1800),
            anchor: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            published: UNIX_EPOCH + Duration::from_secs(1_700_000_100),
            tracks: vec![
                track("video", Kind::Video, 3000, vec![(6000, 6000), (12000, 6000), (18000, 6000)], 0),
                track("audio", Kind::Audio, 48000, vec![(96000, 96256), (192256, 95232)], 0),
                track("scte35", Kind::Text, 1000, vec![(0, 0)], 0),
            ],
        }
    }

    #[test]
    fn dynamic_while_live() {
        let m = mpd(&listing(true)).unwrap();
        roxmltree::Document::parse(&m).unwrap();
        assert!(m.contains("type=\"dynamic\" availabilityStartTime=\"2023-11-14T22:13:20.000Z\""), "{m}");
        assert!(m.contains("timeShiftBufferDepth=\"PT30M\""), "{m}");
        assert!(m.contains("<S t=\"6000\" d=\"6000\" r=\"2\"/>"), "{m}");
        assert!(m.contains("<S t=\"96000\" d=\"96256\"/>\n            <S t=\"192256\" d=\"95232\"/>"), "{m}");
        assert!(m.contains("media=\"cmaf/video/$Time$.m4s\"") && m.contains("presentationTimeOffset=\"0\""), "{m}");
        assert!(!m.contains("scte35"), "text tracks are not in the MPD: {m}");
        assert_eq!(m.matches("<AdaptationSet").count(), 2);
    }

    #[test]
    fn static_once_recorded() {
        let m = mpd(&listing(false)).unwrap();
        roxmltree::Document::parse(&m).unwrap();
        // From 2 s (the first fragments) to 8 s (the end of the video).
        assert!(m.contains("type=\"static\" mediaPresentationDuration=\"PT6S\""), "{m}");
        assert!(m.contains("timescale=\"3000\" presentationTimeOffset=\"6000\""), "{m}");
        assert!(m.contains("timescale=\"48000\" presentationTimeOffset=\"96000\""), "{m}");
        let _ = SystemTime::now();
    }
}
