// SPDX-License-Identifier: MPL-2.0
//! The Live Server Manifest of Smooth ingest (MS-SSTR 2.2.7.3; Azure fragmented MP4 live
//! ingest §2.5): a SMIL 2.0 document whose `<video>`, `<audio>` and `<textstream>` elements
//! declare the stream's tracks, each with `systemBitrate` and `<param name value>` children
//! (trackID, trackName, timescale, FourCC, CodecPrivateData, ...).
//!
//! Read as XML with roxmltree, so that any encoder's well-formed document is read the same
//! (comments, CDATA, entities, either quote) and a malformed one is refused with the parser's
//! reason and position, instead of being half-read.

/// One declared track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsmTrack {
    /// `video`, `audio` or `textstream`.
    pub element: String,
    pub system_bitrate: u64,
    pub system_language: Option<String>,
    pub params: Vec<(String, String)>,
}

impl LsmTrack {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `trackID` param: the track_ID of the moov's trak it declares.
    pub fn track_id(&self) -> Option<u32> {
        self.param("trackID")?.trim().parse().ok()
    }
}

/// The SMIL 2.0 namespace the document must use.
pub const SMIL_NS: &str = "http://www.w3.org/2001/SMIL20/Language";

/// The tracks of a Live Server Manifest's SMIL text.
pub fn parse(text: &str) -> Result<Vec<LsmTrack>, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("not well-formed XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "smil" || root.tag_name().namespace() != Some(SMIL_NS) {
        return Err(format!("the root element is not <smil xmlns=\"{SMIL_NS}\">"));
    }
    let mut tracks = Vec::new();
    for el in root.descendants().filter(|n| n.is_element() && n.tag_name().namespace() == Some(SMIL_NS)) {
        let element = el.tag_name().name();
        if !matches!(element, "video" | "audio" | "textstream") {
            continue;
        }
        let bitrate = el.attribute("systemBitrate").unwrap_or("0");
        let system_bitrate =
            bitrate.trim().parse().map_err(|_| format!("<{element}> has systemBitrate {bitrate:?}, not a number"))?;
        let mut params = Vec::new();
        for p in el.children().filter(|n| n.is_element() && n.tag_name().name() == "param") {
            let name = p.attribute("name").ok_or_else(|| format!("a <param> of <{element}> without a name"))?;
            params.push((name.to_string(), p.attribute("value").unwrap_or("").to_string()));
        }
        tracks.push(LsmTrack {
            element: element.to_string(),
            system_bitrate,
            system_language: el.attribute("systemLanguage").map(str::to_string),
            params,
        });
    }
    if tracks.is_empty() {
        return Err("no <video>, <audio> or <textstream> track".into());
    }
    Ok(tracks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<smil xmlns="http://www.w3.org/2001/SMIL20/Language">
  <head><meta name="creator" content="pushEncoder" /></head>
  <body><switch>
    <video src="video" systemBitrate="2000000">
      <param name="trackID" value="1" valuetype="data" />
      <param name="trackName" value='video' valuetype="data" />
      <!-- an encoder's comment -->
      <param name="CodecPrivateData" value="000000016764001F&amp;" valuetype="data" />
    </video>
    <audio src="audio" systemBitrate="128000" systemLanguage="eng">
      <param name="trackID" value="2" valuetype="data"/>
    </audio>
  </switch></body>
</smil>"#;

    #[test]
    fn tracks_and_params() {
        let t = parse(DOC).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].element.as_str(), t[0].system_bitrate, t[0].track_id()), ("video", 2_000_000, Some(1)));
        assert_eq!(t[0].param("trackName"), Some("video"));
        assert_eq!(t[0].param("CodecPrivateData"), Some("000000016764001F&"));
        assert_eq!(t[1].system_language.as_deref(), Some("eng"));
    }

    #[test]
    fn malformed_documents_are_refused() {
        for (text, why) in [
            (
                "<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\"><body><video systemBitrate=\"1\"></body></smil>",
                "well-formed",
            ),
            ("<smil><body><video systemBitrate=\"1\"/></body></smil>", "root element"),
            ("<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\"><body/></smil>", "no <video>"),
            (
                "<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\"><video systemBitrate=\"x\"/></smil>",
                "systemBitrate",
            ),
            (
                "<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\"><audio><param value=\"1\"/></audio></smil>",
                "without a name",
            ),
            ("not xml at all", "well-formed"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
