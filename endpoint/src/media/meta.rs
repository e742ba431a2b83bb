// SPDX-License-Identifier: MPL-2.0
//! What the endpoint knows of a track, whatever protocol declared it: its name in URLs and
//! manifests, its kind and timescale, the declared bitrate, what the Smooth client manifest
//! repeats of the encoder's declaration (MS-SSTR 2.2.2.5: FourCC, CodecPrivateData, sizes,
//! audio format) and what DASH and HLS need (the RFC 6381 `codecs` string, picture size,
//! sampling rate, channels, language).
//!
//! Smooth ingest declares tracks in its Live Server Manifest (`<video>`, `<audio>`,
//! `<textstream>` with `<param>`s, Azure fragmented MP4 live ingest §2.5) and describes them in
//! the moov; a CMAF header (DASH-IF ingest Interface-1) has only the moov. Both come down to a
//! [`TrackMeta`], which the archive keeps as JSON next to the track's fragments.

use fmp4ingest_core::movie::{Codec, TrackInfo, TrackKind};
use serde::{Deserialize, Serialize};

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Video,
    Audio,
    /// A sparse track (timed metadata such as SCTE-35): Smooth `text` StreamIndex.
    Text,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Video => "video",
            Kind::Audio => "audio",
            Kind::Text => "text",
        }
    }

    /// Video first, then audio, then text, as encoders and origins list them.
    pub fn order(self) -> u8 {
        match self {
            Kind::Video => 0,
            Kind::Audio => 1,
            Kind::Text => 2,
        }
    }
}

/// One track of a publishing point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackMeta {
    /// The track's name (Smooth `trackName`): unique in its publishing point; URLs and
    /// manifests use it, and redundant copies from other streams carry the same one.
    pub name: String,
    pub kind: Kind,
    pub timescale: u32,
    /// The declared bitrate (Smooth `systemBitrate`), bits per second; 0 when not declared.
    pub bitrate: u64,
    /// ISO 639-2/T language, `und` when unknown.
    pub language: String,
    /// The encoder's `<param>`s (FourCC, CodecPrivateData, MaxWidth, SamplingRate, Subtype,
    /// parentTrackName, manifestOutput, ...): the Smooth client manifest repeats them.
    pub params: Vec<(String, String)>,
    /// RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`, `hvc1.1.6.L93.90`); empty when the
    /// moov did not say, and then the track is served in Smooth only.
    pub codecs: String,
    pub width: u32,
    pub height: u32,
    pub sample_rate: u32,
    pub channels: u16,
}

impl TrackMeta {
    /// A track of this name, kind and timescale that declares nothing else (yet).
    pub fn new(name: &str, kind: Kind, timescale: u32) -> TrackMeta {
        TrackMeta {
            name: name.to_string(),
            kind,
            timescale,
            bitrate: 0,
            language: "und".into(),
            params: Vec::new(),
            codecs: String::new(),
            width: 0,
            height: 0,
            sample_rate: 0,
            channels: 0,
        }
    }

    /// A `<param>` value, by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether DASH and HLS can carry the track (audio or video of a known codec).
    pub fn packaged(&self) -> bool {
        self.kind != Kind::Text && !self.codecs.is_empty()
    }

    /// Fills what the moov says and the declaration did not: codecs, sizes, audio format, and
    /// the timescale when none was declared.
    pub fn describe_from(&mut self, t: &TrackInfo) {
        self.codecs = codecs_of(t).unwrap_or_default();
        if self.timescale == 0 {
            self.timescale = t.timescale;
        }
        match t.kind {
            TrackKind::Video => {
                self.width = t.display_width.max(u32::from(t.width));
                self.height = t.display_height.max(u32::from(t.height));
            }
            TrackKind::Audio => {
                self.sample_rate = t.sample_rate;
                self.channels = t.channels;
            }
        }
        if self.language.is_empty() || self.language == "und" {
            self.language = t.language_str().to_string();
        }
        if self.bitrate == 0 {
            self.bitrate = t.bitrate.map_or(0, u64::from);
        }
        // What the Smooth client manifest needs when the declaration did not give it.
        let mut add = |n: &str, v: String| {
            if self.params.iter().all(|(k, _)| !k.eq_ignore_ascii_case(n)) {
                self.params.push((n.to_string(), v));
            }
        };
        add("FourCC", t.smooth_fourcc().to_string());
        add("CodecPrivateData", fmp4ingest_core::hex::to_upper_hex(&t.codec_private_data));
        match t.kind {
            TrackKind::Video => {
                add("MaxWidth", t.width.to_string());
                add("MaxHeight", t.height.to_string());
            }
            TrackKind::Audio => {
                add("SamplingRate", t.sample_rate.to_string());
                add("Channels", t.channels.to_string());
                add("BitsPerSample", t.bits_per_sample.to_string());
            }
        }
    }
}

/// The RFC 6381 `codecs` value of a track: `avc1.PPCCLL` from the SPS (ISO/IEC 14496-15
/// Annex E), the HEVC string the moov parser builds, `mp4a.40.<object type>`.
pub fn codecs_of(t: &TrackInfo) -> Option<String> {
    let entry = t.sample_entry_type.as_str().unwrap_or("avc1");
    match t.codec {
        Codec::H264 => {
            let sps = annexb_nals(&t.codec_private_data).find(|n| n.first().is_some_and(|h| h & 0x1f == 7))?;
            let (profile, constraints, level) = (sps.get(1)?, sps.get(2)?, sps.get(3)?);
            Some(format!("{entry}.{profile:02x}{constraints:02x}{level:02x}"))
        }
        Codec::Hevc => t.codecs.clone(),
        Codec::Aac { object_type } => Some(format!("mp4a.40.{object_type}")),
    }
}

/// The NAL units of an Annex-B byte string (start codes of three or four bytes).
fn annexb_nals(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= b.len() {
        if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts.iter().skip(1).map(|s| s - 3).chain([b.len()]).collect();
    starts.into_iter().zip(ends).map(move |(s, e)| {
        // A four-byte start code leaves a zero at the end of the previous unit.
        let mut e = e;
        while e > s && b[e - 1] == 0 {
            e -= 1;
        }
        &b[s..e]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_codecs_come_from_the_sps() {
        let cpd = [0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80];
        let nals: Vec<&[u8]> = annexb_nals(&cpd).collect();
        assert_eq!(nals, [&[0x67, 0x64, 0x00, 0x1f, 0xac][..], &[0x68, 0xee, 0x3c, 0x80][..]]);
        let t = TrackInfo {
            track_id: 1,
            kind: TrackKind::Video,
            handler: fmp4ingest_core::bmff::fourcc::codes::VIDE,
            timescale: 90000,
            sample_entry_type: fmp4ingest_core::bmff::fourcc::codes::AVC1,
            codec: Codec::H264,
            codec_private_data: cpd.to_vec(),
            codecs: None,
            width: 320,
            height: 240,
            display_width: 320,
            display_height: 240,
            channels: 0,
            sample_rate: 0,
            bits_per_sample: 16,
            language: *b"und",
            bitrate: None,
            sample_entry: Vec::new(),
            defaults: Default::default(),
        };
        assert_eq!(codecs_of(&t).as_deref(), Some("avc1.64001f"));
        let aac = TrackInfo { kind: TrackKind::Audio, codec: Codec::Aac { object_type: 2 }, ..t.clone() };
        assert_eq!(codecs_of(&aac).as_deref(), Some("mp4a.40.2"));
        let no_sps = TrackInfo { codec_private_data: vec![0, 0, 1, 0x68, 1], ..t };
        assert_eq!(codecs_of(&no_sps), None);
    }
}
