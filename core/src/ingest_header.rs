// SPDX-License-Identifier: MPL-2.0
//! The header every ingest POST starts with: `ftyp`, Live Server Manifest, `moov`, in this
//! order, byte-identical on every connection (docs/protocol.md §2.1).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::Bytes;

use crate::manifest::{LiveServerManifest, ManifestTrack};
use crate::moov::{MoovTrack, write_moov};
use crate::movie::{Codec, TrackInfo, TrackKind};
use crate::smooth_boxes::write_ingest_ftyp;

/// mvhd timescale of audio/video streams (FFmpeg's choice; only scales a zero duration).
const MOVIE_TIMESCALE: u32 = 1000;

/// A track as the ingest stream declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestTrack {
    pub info: TrackInfo,
    /// `trackName` in the manifest.
    pub name: String,
    /// `systemBitrate` in the manifest, bits per second.
    pub bitrate: u32,
}

/// The built header and what it declares.
#[derive(Debug, Clone)]
pub struct IngestHeader {
    pub bytes: Bytes,
    pub manifest: LiveServerManifest,
    pub tracks: Vec<IngestTrack>,
}

impl IngestHeader {
    /// Builds ftyp + LSM + moov. `src` is the manifest's `src` attribute (the Streams() id).
    pub fn build(tracks: Vec<IngestTrack>, src: &str, creator: Option<&str>) -> IngestHeader {
        let hevc = tracks.iter().any(|t| t.info.codec == Codec::Hevc);
        let manifest = LiveServerManifest {
            creator: creator.map(ToString::to_string),
            tracks: tracks.iter().map(|t| ManifestTrack::for_track(&t.info, &t.name, src, t.bitrate)).collect(),
        };
        let mut out = Vec::new();
        write_ingest_ftyp(&mut out, hevc);
        manifest.write_box(&mut out);
        let moov_tracks: Vec<MoovTrack<'_>> = tracks.iter().map(|t| MoovTrack::from_info(&t.info)).collect();
        write_moov(&mut out, MOVIE_TIMESCALE, &moov_tracks);
        IngestHeader { bytes: Bytes::from(out), manifest, tracks }
    }

    pub fn track(&self, track_id: u32) -> Option<&IngestTrack> {
        self.tracks.iter().find(|t| t.info.track_id == track_id)
    }
}

/// Default track names: `video`/`audio` for the first of each kind; later ones get their
/// language (audio) or their position, so names stay unique within the stream (docs/protocol.md §2.4).
pub fn default_track_names(tracks: &[TrackInfo]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(tracks.len());
    for t in tracks {
        let base = t.kind.as_str();
        let mut name = String::from(base);
        if names.contains(&name) {
            name = format!("{base}_{}", t.language_str());
            if t.kind == TrackKind::Video || t.language == *b"und" || names.contains(&name) {
                let mut n = 2;
                loop {
                    name = format!("{base}_{n}");
                    if !names.contains(&name) {
                        break;
                    }
                    n += 1;
                }
            }
        }
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::Boxes;
    use crate::bmff::fourcc::codes;
    use crate::movie::parse_moov;
    use crate::test_support::{avc1_entry, mp4a_entry, spec_tracks};

    #[test]
    fn header_is_ftyp_manifest_moov_and_consistent() {
        let (mut video, mut audio) = spec_tracks();
        video.sample_entry = avc1_entry(1280, 720, &[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 1, 0x67, 1, 0, 1, 0x68]);
        video.codec_private_data = [0, 0, 0, 1, 0x67, 0, 0, 0, 1, 0x68].to_vec();
        audio.sample_entry = mp4a_entry();
        let tracks = alloc::vec![
            IngestTrack { info: video, name: "video".into(), bitrate: 3_000_000 },
            IngestTrack { info: audio, name: "audio".into(), bitrate: 128_000 },
        ];
        let h = IngestHeader::build(tracks.clone(), "s1", Some("fmp4ingestsink"));
        let boxes: Vec<_> = Boxes::new(&h.bytes).map(|b| b.unwrap()).collect();
        let types: Vec<_> = boxes.iter().map(|b| b.box_type()).collect();
        assert_eq!(types, [codes::FTYP, codes::UUID, codes::MOOV]);
        let lsm = LiveServerManifest::parse_box(boxes[1]).unwrap();
        let movie = parse_moov(boxes[2].bytes).unwrap();
        for (m, t) in lsm.tracks.iter().zip(&movie.tracks) {
            assert_eq!(m.param("trackID").unwrap(), t.track_id.to_string());
            assert_eq!(m.param("timescale").unwrap(), t.timescale.to_string());
            assert_eq!(m.param("FourCC").unwrap(), t.smooth_fourcc());
            assert_eq!(m.param("CodecPrivateData").unwrap(), crate::hex::to_upper_hex(&t.codec_private_data));
        }
        // Deterministic: the same input gives the same bytes.
        assert_eq!(IngestHeader::build(tracks, "s1", Some("fmp4ingestsink")).bytes, h.bytes);
    }

    #[test]
    fn names_are_unique() {
        let (video, audio) = spec_tracks();
        let mut audio_und = audio.clone();
        audio_und.language = *b"und";
        let names =
            default_track_names(&[video.clone(), audio.clone(), video, audio.clone(), audio_und.clone(), audio_und]);
        assert_eq!(names, ["video", "audio", "video_2", "audio_eng", "audio_2", "audio_3"]);
    }
}
