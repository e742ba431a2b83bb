// SPDX-License-Identifier: MPL-2.0
//! The Live Server Manifest box: a SMIL 2.0 document describing the stream's tracks
//! ([MS-SSTR] 2.2.7.3, docs/protocol.md §2.3, sparse entries §5.2).
//!
//! The text is deterministic: the same tracks give the same bytes on every connection and in
//! every redundant encoder (docs/protocol.md §2.1). Layout follows the example of docs/protocol.md A.1.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::bmff::writer::write_uuid_box;
use crate::bmff::{BoxRef, Reader};
use crate::error::{Error, Result};
use crate::hex::to_upper_hex;
use crate::movie::{TrackInfo, TrackKind};
use crate::smooth_boxes::LIVE_SERVER_MANIFEST_UUID;

/// The SMIL element a track is declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackElement {
    Video,
    Audio,
    TextStream,
}

impl TrackElement {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackElement::Video => "video",
            TrackElement::Audio => "audio",
            TrackElement::TextStream => "textstream",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "video" => Some(TrackElement::Video),
            "audio" => Some(TrackElement::Audio),
            "textstream" => Some(TrackElement::TextStream),
            _ => None,
        }
    }
}

/// One `<video>`, `<audio>` or `<textstream>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestTrack {
    pub element: TrackElement,
    pub src: String,
    pub system_bitrate: u32,
    pub system_language: Option<String>,
    /// `<param name value valuetype="data"/>` children, in order.
    pub params: Vec<(String, String)>,
}

impl ManifestTrack {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The entry of an audio or video track.
    pub fn for_track(track: &TrackInfo, name: &str, src: &str, bitrate: u32) -> Self {
        let mut params: Vec<(String, String)> = Vec::new();
        let mut p = |n: &str, v: String| params.push((n.to_owned(), v));
        p("trackID", track.track_id.to_string());
        p("trackName", name.to_owned());
        p("timescale", track.timescale.to_string());
        p("FourCC", track.smooth_fourcc().to_owned());
        p("CodecPrivateData", to_upper_hex(&track.codec_private_data));
        let element = match track.kind {
            TrackKind::Video => {
                p("MaxWidth", track.width.to_string());
                p("MaxHeight", track.height.to_string());
                p("DisplayWidth", track.display_width.to_string());
                p("DisplayHeight", track.display_height.to_string());
                if let Some(codecs) = &track.codecs {
                    p("codecs", codecs.clone());
                }
                TrackElement::Video
            }
            TrackKind::Audio => {
                p("AudioTag", "255".to_owned()); // WAVE_FORMAT for AAC
                p("Channels", track.channels.to_string());
                p("SamplingRate", track.sample_rate.to_string());
                p("BitsPerSample", track.bits_per_sample.to_string());
                p("PacketSize", "4".to_owned());
                TrackElement::Audio
            }
        };
        p("Subtype", String::new());
        let system_language = (track.kind == TrackKind::Audio).then(|| track.language_str().to_owned());
        ManifestTrack { element, src: src.to_owned(), system_bitrate: bitrate, system_language, params }
    }
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveServerManifest {
    /// `<meta name="creator">`; `None` writes an empty head.
    pub creator: Option<String>,
    pub tracks: Vec<ManifestTrack>,
}

impl LiveServerManifest {
    /// The SMIL text.
    pub fn to_smil(&self) -> String {
        let mut s = String::new();
        s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        s.push_str("<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\">\n");
        s.push_str("  <head>\n");
        if let Some(c) = &self.creator {
            s.push_str(&format!("    <meta name=\"creator\" content=\"{}\" />\n", escape(c)));
        }
        s.push_str("  </head>\n  <body>\n    <switch>\n");
        for t in &self.tracks {
            s.push_str(&format!(
                "      <{} src=\"{}\" systemBitrate=\"{}\"",
                t.element.as_str(),
                escape(&t.src),
                t.system_bitrate
            ));
            if let Some(l) = &t.system_language {
                s.push_str(&format!(" systemLanguage=\"{}\"", escape(l)));
            }
            s.push_str(">\n");
            for (n, v) in &t.params {
                s.push_str(&format!(
                    "        <param name=\"{}\" value=\"{}\" valuetype=\"data\" />\n",
                    escape(n),
                    escape(v)
                ));
            }
            s.push_str(&format!("      </{}>\n", t.element.as_str()));
        }
        s.push_str("    </switch>\n  </body>\n</smil>\n");
        s
    }

    /// The LiveServerManifestBox: `uuid` A5D40B30-..., version 0, flags 0, then the SMIL.
    pub fn write_box(&self, out: &mut Vec<u8>) {
        let smil = self.to_smil();
        write_uuid_box(out, &LIVE_SERVER_MANIFEST_UUID, 0, 0, |o| o.extend_from_slice(smil.as_bytes()));
    }

    /// Reads a LiveServerManifestBox.
    pub fn parse_box(b: BoxRef<'_>) -> Result<Self> {
        if b.header.usertype != Some(LIVE_SERVER_MANIFEST_UUID) {
            return Err(Error::UnexpectedBox { box_type: b.box_type(), expected: "Live Server Manifest uuid" });
        }
        let mut r: Reader<'_> = b.reader();
        r.full_box()?;
        let text = core::str::from_utf8(r.rest()).map_err(|_| r.invalid("LiveSMIL (not UTF-8)"))?;
        Self::parse_smil(text).ok_or(r.invalid("LiveSMIL"))
    }

    /// Reads the SMIL this module writes (and the usual variants of other encoders: any
    /// whitespace, either attribute quote, params with or without `valuetype`).
    pub fn parse_smil(text: &str) -> Option<Self> {
        let mut creator = None;
        let mut tracks: Vec<ManifestTrack> = Vec::new();
        let mut open: Option<ManifestTrack> = None;
        let mut saw_smil = false;
        for tag in (Tags { rest: text }) {
            let tag = tag?;
            match (tag.closing, tag.name) {
                (false, "smil") => saw_smil = true,
                (false, "meta") if tag.attr("name") == Some("creator") => {
                    creator = tag.attr("content").map(unescape);
                }
                (false, name) if TrackElement::from_name(name).is_some() => {
                    let t = ManifestTrack {
                        element: TrackElement::from_name(name)?,
                        src: tag.attr("src").map(unescape).unwrap_or_default(),
                        system_bitrate: tag.attr("systemBitrate")?.parse().ok()?,
                        system_language: tag.attr("systemLanguage").map(unescape),
                        params: Vec::new(),
                    };
                    if tag.self_closing {
                        tracks.push(t);
                    } else {
                        open = Some(t);
                    }
                }
                (false, "param") => {
                    let t = open.as_mut()?;
                    t.params.push((unescape(tag.attr("name")?), unescape(tag.attr("value")?)));
                }
                (true, name) if TrackElement::from_name(name).is_some() => tracks.push(open.take()?),
                _ => {}
            }
        }
        saw_smil.then_some(LiveServerManifest { creator, tracks })
    }
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// A start or end tag of the document.
struct Tag<'a> {
    name: &'a str,
    closing: bool,
    self_closing: bool,
    attrs: &'a str,
}

impl<'a> Tag<'a> {
    fn attr(&self, key: &str) -> Option<&'a str> {
        let mut rest = self.attrs;
        loop {
            rest = rest.trim_start();
            let eq = rest.find('=')?;
            let name = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start();
            let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let close = after[1..].find(quote)?;
            let value = &after[1..1 + close];
            if name == key {
                return Some(value);
            }
            rest = &after[close + 2..];
        }
    }
}

/// Iterates the tags of an XML text, skipping the declaration and comments. Yields `None` on
/// a malformed tag, which makes the caller give up.
struct Tags<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Tags<'a> {
    type Item = Option<Tag<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let start = self.rest.find('<')?;
            let after = &self.rest[start + 1..];
            if let Some(c) = after.strip_prefix("!--") {
                let end = c.find("-->")?;
                self.rest = &c[end + 3..];
                continue;
            }
            let Some(end) = after.find('>') else {
                self.rest = "";
                return Some(None);
            };
            let inner = &after[..end];
            self.rest = &after[end + 1..];
            if inner.starts_with('?') || inner.starts_with('!') {
                continue;
            }
            let closing = inner.starts_with('/');
            let inner = inner.trim_start_matches('/');
            let self_closing = inner.ends_with('/');
            let inner = inner.trim_end_matches('/').trim();
            let (name, attrs) = match inner.find(char::is_whitespace) {
                Some(i) => (&inner[..i], &inner[i..]),
                None => (inner, ""),
            };
            return Some(Some(Tag { name, closing, self_closing, attrs }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::Boxes;
    use crate::hex::from_hex;
    use crate::test_support::spec_tracks;
    use alloc::vec;

    /// The example of docs/protocol.md A.1, reproduced from track descriptions.
    const SPEC_EXAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<smil xmlns="http://www.w3.org/2001/SMIL20/Language">
  <head>
    <meta name="creator" content="fmp4ingestsink" />
  </head>
  <body>
    <switch>
      <video src="video_720p" systemBitrate="3000000">
        <param name="trackID" value="1" valuetype="data" />
        <param name="trackName" value="video" valuetype="data" />
        <param name="timescale" value="10000000" valuetype="data" />
        <param name="FourCC" value="H264" valuetype="data" />
        <param name="CodecPrivateData" value="000000016764001FACD9405005BB0110000003001000000303C0F18319600000000168EBECB22C" valuetype="data" />
        <param name="MaxWidth" value="1280" valuetype="data" />
        <param name="MaxHeight" value="720" valuetype="data" />
        <param name="DisplayWidth" value="1280" valuetype="data" />
        <param name="DisplayHeight" value="720" valuetype="data" />
        <param name="Subtype" value="" valuetype="data" />
      </video>
      <audio src="video_720p" systemBitrate="128000" systemLanguage="eng">
        <param name="trackID" value="2" valuetype="data" />
        <param name="trackName" value="audio" valuetype="data" />
        <param name="timescale" value="10000000" valuetype="data" />
        <param name="FourCC" value="AACL" valuetype="data" />
        <param name="CodecPrivateData" value="1190" valuetype="data" />
        <param name="AudioTag" value="255" valuetype="data" />
        <param name="Channels" value="2" valuetype="data" />
        <param name="SamplingRate" value="48000" valuetype="data" />
        <param name="BitsPerSample" value="16" valuetype="data" />
        <param name="PacketSize" value="4" valuetype="data" />
        <param name="Subtype" value="" valuetype="data" />
      </audio>
    </switch>
  </body>
</smil>
"#;

    fn spec_manifest() -> LiveServerManifest {
        let (video, audio) = spec_tracks();
        LiveServerManifest {
            creator: Some("fmp4ingestsink".into()),
            tracks: vec![
                ManifestTrack::for_track(&video, "video", "video_720p", 3_000_000),
                ManifestTrack::for_track(&audio, "audio", "video_720p", 128_000),
            ],
        }
    }

    #[test]
    fn reproduces_the_spec_example_byte_for_byte() {
        assert_eq!(spec_manifest().to_smil(), SPEC_EXAMPLE);
    }

    #[test]
    fn box_header_matches_the_spec_prefix_and_round_trips() {
        let m = spec_manifest();
        let mut out = Vec::new();
        m.write_box(&mut out);
        assert_eq!(out.len(), 28 + SPEC_EXAMPLE.len());
        assert_eq!(&out[..4], &(out.len() as u32).to_be_bytes());
        // docs/protocol.md A.1: uuid, usertype, version/flags 0, then "<?xml"
        assert_eq!(
            &out[4..33],
            from_hex("75 75 69 64 A5 D4 0B 30 E8 14 11 DD BA 2F 08 00 20 0C 9A 66 00 00 00 00 3C 3F 78 6D 6C").unwrap()
        );
        let parsed = LiveServerManifest::parse_box(Boxes::new(&out).next().unwrap().unwrap()).unwrap();
        assert_eq!(parsed, m);
    }

    #[test]
    fn values_are_escaped_and_restored() {
        let mut m = spec_manifest();
        m.tracks[0].params[1].1 = "a&b<\"c\">'".into();
        m.creator = Some("x\"y".into());
        let text = m.to_smil();
        assert!(text.contains("a&amp;b&lt;&quot;c&quot;&gt;&apos;"));
        assert_eq!(LiveServerManifest::parse_smil(&text).unwrap(), m);
    }

    #[test]
    fn reads_ffmpeg_style_smil() {
        // FFmpeg 5.1's `-f ismv -movflags isml` manifest, abridged: no src, params without spaces before "/>"
        let text = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\">\n<head>\n<meta name=\"creator\" content=\"Lavf59.27.100\" />\n</head>\n<body>\n<switch>\n<audio systemBitrate=\"128000\">\n<param name=\"trackID\" value=\"2\" valuetype=\"data\"/>\n<param name=\"FourCC\" value=\"AACL\" valuetype=\"data\"/>\n</audio>\n</switch>\n</body>\n</smil>\n";
        let m = LiveServerManifest::parse_smil(text).unwrap();
        assert_eq!(m.creator.as_deref(), Some("Lavf59.27.100"));
        assert_eq!(m.tracks.len(), 1);
        assert_eq!(m.tracks[0].param("FourCC"), Some("AACL"));
        assert_eq!(m.tracks[0].system_bitrate, 128_000);
    }

    #[test]
    fn malformed_text_is_refused_without_panicking() {
        for bad in
            ["", "<smil", "<video systemBitrate=\"x\">", "<smil><param name=\"a\" value=\"b\"/>", "<smil><video>"]
        {
            assert!(LiveServerManifest::parse_smil(bad).is_none(), "{bad}");
        }
    }
}
