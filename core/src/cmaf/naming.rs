// SPDX-License-Identifier: MPL-2.0
//! Where each CMAF track goes: `<publishing point>/Streams(<name>.<extension>)`, the naming
//! DASH-IF Live Media Ingest keeps for ingest without an MPD ("General Protocol, Manifest and
//! Track Format Requirements" 2, 9) and that AWS MediaLive and Unified Origin use:
//! `.cmfv` for video, `.cmfa` for audio, `.cmfm` for timed metadata.

use alloc::format;

use crate::cmaf::header::CmafTrackKind;
use crate::ingest_url::{IngestUrl, UrlError};

/// The URL of a track under the publishing point URL (`https://host/channel1/channel1.isml`).
/// Every request of the track goes to it (DASH-IF "Failure Behaviors" 3b). A trailing `/` of
/// the publishing point is dropped; a name a server cannot route is refused.
pub fn track_url(publishing_point: &str, name: &str, kind: CmafTrackKind) -> Result<IngestUrl, UrlError> {
    let base = publishing_point.trim_end_matches('/');
    // A Smooth-style stream URL (the tracks' own names go under the publishing point), or a
    // query, which would end up before the track's path.
    if base.to_ascii_lowercase().contains("/streams(") || base.contains(['?', '#']) {
        return Err(UrlError::TrailingText);
    }
    IngestUrl::parse(&format!("{base}/Streams({name}.{})", kind.extension()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_track_has_its_own_path_under_the_publishing_point() {
        let pp = "https://host/channel1/channel1.isml";
        let v = track_url(pp, "video", CmafTrackKind::Video).unwrap();
        assert_eq!(v.as_str(), "https://host/channel1/channel1.isml/Streams(video.cmfv)");
        assert_eq!(v.stream_id(), "video.cmfv");
        let a = track_url(&format!("{pp}/"), "audio_eng", CmafTrackKind::Audio).unwrap();
        assert_eq!(a.as_str(), "https://host/channel1/channel1.isml/Streams(audio_eng.cmfa)");
        let m = track_url("http://127.0.0.1:8080/live.isml", "scte35", CmafTrackKind::Metadata).unwrap();
        assert_eq!(m.as_str(), "http://127.0.0.1:8080/live.isml/Streams(scte35.cmfm)");
        // Credentials stay out of what is shown.
        let c = track_url("https://u:secret@host/p.isml", "video", CmafTrackKind::Video).unwrap();
        assert_eq!(c.redacted(), "https://***@host/p.isml/Streams(video.cmfv)");
    }

    #[test]
    fn what_cannot_be_a_track_url_is_refused() {
        assert_eq!(track_url("rtmp://h/p.isml", "video", CmafTrackKind::Video), Err(UrlError::Scheme));
        assert_eq!(track_url("http://h/p.isml", "a b", CmafTrackKind::Video), Err(UrlError::BadStreamId));
        assert_eq!(track_url("http://h/p.isml?token=1", "video", CmafTrackKind::Video), Err(UrlError::TrailingText));
        assert_eq!(track_url("http://h/p.isml/Streams(x)", "video", CmafTrackKind::Video), Err(UrlError::TrailingText));
    }
}
