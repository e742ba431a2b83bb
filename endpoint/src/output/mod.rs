// SPDX-License-Identifier: MPL-2.0
//! The outputs of a publishing point, all from the same stored fragments: a Smooth Streaming
//! client manifest ([`smooth`], MS-SSTR), a DASH MPD ([`dash`], ISO/IEC 23009-1) and HLS
//! playlists ([`hls`], RFC 8216, fMP4 segments). Each renders from a [`Listing`], a snapshot
//! taken under the point's lock, so that a large manifest is written without holding it.
//!
//! URLs, relative to `/<name>.isml/` (or `/<name>.ism/` for a program):
//! - `Manifest`, `QualityLevels(<bitrate>)/Fragments(<track>=<time>)`: Smooth;
//! - `.mpd`: DASH; `.m3u8` and `<track>.m3u8`: HLS;
//! - `cmaf/<track>/init.mp4`, `cmaf/<track>/<time>.m4s`: the init segments and the media
//!   segments both DASH and HLS point to.
//!
//! Track names appear in URLs percent-encoded (every byte but RFC 3986's unreserved ones).

pub mod dash;
pub mod events;
pub mod hls;
pub mod smooth;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::store::{Listing, Output};

/// Everything but RFC 3986 §2.3's unreserved characters is encoded.
const PATH_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A name as one URL path segment.
pub fn url_part(name: &str) -> String {
    utf8_percent_encode(name, PATH_PART).to_string()
}

/// Text for an XML attribute value.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Ticks of a timescale as a duration.
pub fn ticks_to_duration(ticks: u64, timescale: u32) -> Duration {
    let ts = u64::from(timescale.max(1));
    Duration::new(ticks / ts, ((ticks % ts) * 1_000_000_000 / ts) as u32)
}

/// The content type of an output.
pub fn content_type(output: &Output) -> &'static str {
    match output {
        Output::Smooth => "text/xml; charset=utf-8",
        Output::Mpd => "application/dash+xml",
        Output::HlsMain | Output::HlsMedia(_) => "application/vnd.apple.mpegurl",
    }
}

/// The content type and text of an output; `None` when the listing has nothing for it.
pub fn render(output: &Output, listing: &Listing) -> Option<(&'static str, String)> {
    let text = match output {
        Output::Smooth => smooth::manifest(listing),
        Output::Mpd => dash::mpd(listing),
        Output::HlsMain => hls::multivariant(listing),
        Output::HlsMedia(track) => hls::media(listing, track),
    };
    text.map(|t| (content_type(output), t))
}

/// What part of an output a fragment list is rendered for (a cached bucket is valid for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListFormat {
    Smooth,
    Dash,
    /// HLS, with the anchor (ms since 1970) its date-times are written from.
    Hls(u64),
}

/// The rendered fragment lists of a track, per format and time bucket. The list of a 25 h
/// window has 45,000 entries: rendering it whole on every change would cost milliseconds per
/// manifest, so each bucket (2048 s of media) is rendered once and kept while its entries stay
/// the same; a new fragment re-renders only the newest bucket. Each bucket's text stands alone
/// (it starts with the time of its first fragment), so the buckets concatenate into the list.
#[derive(Debug, Default)]
pub struct BucketCache {
    buckets: HashMap<(ListFormat, u64), (BucketKey, Arc<str>)>,
}

/// What a bucket's text was rendered from: its first time, last time and entry count.
type BucketKey = (u64, u64, usize);

/// Writes the text of some (time, duration) entries.
pub type RenderList<'a> = dyn Fn(&[(u64, u64)], &mut String) + 'a;

/// A track's bucket cache, shared by its listings.
pub type SharedCache = Arc<Mutex<BucketCache>>;

/// Seconds of media per bucket.
const BUCKET_SECONDS: u64 = 2048;

/// The text of a fragment list: each bucket's from the cache, or rendered by `render`.
pub fn cached_list(
    cache: &SharedCache,
    format: ListFormat,
    entries: &[(u64, u64)],
    timescale: u32,
    render: &RenderList<'_>,
) -> String {
    let span = BUCKET_SECONDS * u64::from(timescale.max(1));
    let mut out = String::with_capacity(entries.len() * 24);
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    let mut rest = entries;
    let mut kept = Vec::new();
    while let Some(&(first, _)) = rest.first() {
        let bucket = first / span;
        let n = rest.iter().position(|(t, _)| t / span != bucket).unwrap_or(rest.len());
        let (part, tail) = rest.split_at(n);
        let key = (first, part[n - 1].0, n);
        let text = match c.buckets.get(&(format, bucket)) {
            Some((k, text)) if *k == key => text.clone(),
            _ => {
                let mut s = String::with_capacity(n * 24);
                render(part, &mut s);
                let text: Arc<str> = Arc::from(s);
                c.buckets.insert((format, bucket), (key, text.clone()));
                text
            }
        };
        out.push_str(&text);
        kept.push(bucket);
        rest = tail;
    }
    // Buckets the window left go.
    if let Some(first) = kept.first() {
        c.buckets.retain(|(f, b), _| *f != format || *b >= *first);
    }
    out
}

/// Runs of equal durations over contiguous fragments: (start, duration, count), a new run
/// after a gap: DASH's `SegmentTimeline` is written from them.
pub fn runs(entries: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
    let mut out: Vec<(u64, u64, u64)> = Vec::new();
    for &(t, d) in entries {
        match out.last_mut() {
            Some((start, dur, n)) if *dur == d && *start + *dur * *n == t => *n += 1,
            _ => out.push((t, d, 1)),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::media::meta::{Kind, TrackMeta};
    use crate::store::TrackListing;

    /// A packaged track of these fragments, for the outputs' tests.
    pub fn track(
        name: &str,
        kind: Kind,
        timescale: u32,
        entries: Vec<(u64, u64)>,
        first_sequence: u64,
    ) -> TrackListing {
        TrackListing {
            meta: Arc::new(TrackMeta {
                name: name.into(),
                kind,
                timescale,
                bitrate: 500_000,
                language: "eng".into(),
                params: Vec::new(),
                codecs: if kind == Kind::Video { "avc1.64001f" } else { "mp4a.40.2" }.into(),
                width: 320,
                height: 240,
                sample_rate: 48000,
                channels: 2,
            }),
            entries,
            first_sequence,
            messages: Vec::new(),
            cache: SharedCache::default(),
        }
    }

    #[test]
    fn names_in_urls() {
        assert_eq!(url_part("video"), "video");
        assert_eq!(url_part("audio_eng-2.1~"), "audio_eng-2.1~");
        assert_eq!(url_part("a b/c$d"), "a%20b%2Fc%24d");
        assert_eq!(url_part("é"), "%C3%A9");
    }

    #[test]
    fn runs_of_durations() {
        let e = [(0, 2, 0), (2, 2, 0), (4, 3, 0), (7, 3, 0), (12, 3, 0)].map(|(t, d, _)| (t, d));
        assert_eq!(runs(&e), [(0, 2, 2), (4, 3, 2), (12, 3, 1)]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn ticks() {
        assert_eq!(ticks_to_duration(96256, 48000), Duration::from_nanos(2_005_333_333));
        assert_eq!(xml_escape("a<\"&'>"), "a&lt;&quot;&amp;&apos;&gt;");
    }
}
