// SPDX-License-Identifier: MPL-2.0
//! An MPD posted to a publishing point by a CMAF ingest encoder (DASH-IF Live Media Ingest,
//! Interface-1: an encoder "SHOULD post a DASH MPD" before the CMAF headers, and where it
//! names tracks by the MPD's templates the receiver needs it). The endpoint checks that it is
//! an MPD, keeps the newest copy of each file name and serves it back as it came; the point's
//! timelines do not depend on it (the tracks are named by their `Streams(...)` paths).

/// The namespace of an MPD (ISO/IEC 23009-1 §5.3.1).
const MPD_NS: &str = "urn:mpeg:dash:schema:mpd:2011";

/// Files a point keeps: an encoder posts one, a redundant pair two.
pub const MAX_MPDS: usize = 16;

/// What a posted MPD says, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpdSummary {
    /// `dynamic` or `static` (`static` when absent, as ISO/IEC 23009-1 defaults it).
    pub kind: String,
    pub representations: usize,
}

/// Checks a posted body: UTF-8 XML whose root is `<MPD>` in the MPD namespace. The reason of
/// a refusal fits one line.
pub fn check(body: &[u8]) -> Result<MpdSummary, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the MPD is not UTF-8".to_string())?;
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("the MPD is not well-formed XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "MPD" || root.tag_name().namespace() != Some(MPD_NS) {
        return Err(format!("the root element is not <MPD xmlns=\"{MPD_NS}\">"));
    }
    Ok(MpdSummary {
        kind: root.attribute("type").unwrap_or("static").to_string(),
        representations: root.descendants().filter(|n| n.has_tag_name((MPD_NS, "Representation"))).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mpd_is_taken_and_anything_else_refused() {
        let mpd = format!(
            r#"<?xml version="1.0"?><MPD xmlns="{MPD_NS}" type="dynamic" availabilityStartTime="1970-01-01T00:00:00Z">
<Period start="PT0S"><AdaptationSet><Representation id="video"/></AdaptationSet>
<AdaptationSet><Representation id="audio"/></AdaptationSet></Period></MPD>"#
        );
        assert_eq!(check(mpd.as_bytes()), Ok(MpdSummary { kind: "dynamic".into(), representations: 2 }));
        for (body, why) in [
            (&b"\xff\xfe"[..], "not UTF-8"),
            (b"<MPD", "not well-formed XML"),
            (b"<MPD/>", "root element is not"),
            (b"<smil xmlns=\"urn:mpeg:dash:schema:mpd:2011\"/>", "root element is not"),
        ] {
            let e = check(body).unwrap_err();
            assert!(e.contains(why) && !e.contains('\n'), "{e}");
        }
    }
}
