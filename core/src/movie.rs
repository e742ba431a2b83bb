// SPDX-License-Identifier: MPL-2.0
//! Track information read from the muxer's `moov`.
//!
//! Everything the Live Server Manifest (docs/protocol.md §2.3) and our own moov (§2.5) need: track_ID,
//! handler, timescale, codec and its CodecPrivateData (§2.7), picture size, audio format,
//! language, a bitrate when the file declares one, and the `trex` defaults that fragment parsing
//! needs.

use alloc::string::String;
use alloc::vec::Vec;

use crate::bmff::fourcc::codes;
use crate::bmff::writer::{PutBytes, write_box};
use crate::bmff::{BoxRef, Boxes, FourCC, Reader};
use crate::error::{Error, Result};

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

impl TrackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
        }
    }
}

/// The codecs Smooth ingest can describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    H264,
    Hevc,
    /// AAC with its MPEG-4 audio object type (2 = LC, 5 = SBR/HE, 29 = PS/HEv2).
    Aac {
        object_type: u8,
    },
}

/// Defaults for fragment samples from the track's `trex` (ISO/IEC 14496-12 §8.8.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleDefaults {
    pub sample_description_index: u32,
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
}

/// One audio or video track of the muxer's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: u32,
    pub kind: TrackKind,
    pub handler: FourCC,
    pub timescale: u32,
    /// The sample entry name: avc1, avc3, hvc1, hev1 or mp4a.
    pub sample_entry_type: FourCC,
    pub codec: Codec,
    /// Raw CodecPrivateData bytes (Annex-B parameter sets, or the AudioSpecificConfig).
    pub codec_private_data: Vec<u8>,
    /// RFC 6381 codec string, for HEVC's `codecs` custom attribute.
    pub codecs: Option<String>,
    /// Coded size from the visual sample entry.
    pub width: u16,
    pub height: u16,
    /// Presentation size from tkhd (falls back to the coded size).
    pub display_width: u32,
    pub display_height: u32,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    /// ISO 639-2/T code, `und` when unknown.
    pub language: [u8; 3],
    /// Average bitrate declared in the file (btrt, else esds), bits per second.
    pub bitrate: Option<u32>,
    /// The sample entry box as our moov writes it.
    pub sample_entry: Vec<u8>,
    pub defaults: SampleDefaults,
}

impl TrackInfo {
    pub fn language_str(&self) -> &str {
        core::str::from_utf8(&self.language).unwrap_or("und")
    }

    /// The Smooth FourCC for the manifest (docs/protocol.md §2.3, §7).
    pub fn smooth_fourcc(&self) -> &'static str {
        match self.codec {
            Codec::H264 => "H264",
            Codec::Hevc if self.sample_entry_type == codes::HVC1 => "hvc1",
            Codec::Hevc => "hev1",
            Codec::Aac { object_type: 5 } => "AACH",
            Codec::Aac { object_type: 29 } => "AACP",
            Codec::Aac { .. } => "AACL",
        }
    }
}

/// A track the moov describes but this stream cannot carry (text, hint, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredTrack {
    pub track_id: u32,
    pub handler: FourCC,
}

/// What a moov says about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovieInfo {
    pub tracks: Vec<TrackInfo>,
    pub ignored: Vec<IgnoredTrack>,
}

impl MovieInfo {
    pub fn track(&self, track_id: u32) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.track_id == track_id)
    }

    /// Whether two moovs describe the same tracks, so that fragments may continue across them.
    pub fn same_tracks(&self, other: &MovieInfo) -> bool {
        self.tracks.len() == other.tracks.len()
            && self.tracks.iter().zip(&other.tracks).all(|(a, b)| {
                a.track_id == b.track_id
                    && a.kind == b.kind
                    && a.timescale == b.timescale
                    && a.codec == b.codec
                    && a.codec_private_data == b.codec_private_data
            })
    }
}

/// Parses a whole `moov` box.
pub fn parse_moov(moov: &[u8]) -> Result<MovieInfo> {
    let moov =
        Boxes::new(moov).next().ok_or(Error::MissingBox { parent: FourCC::new(b"file"), child: codes::MOOV })??;
    if moov.box_type() != codes::MOOV {
        return Err(Error::UnexpectedBox { box_type: moov.box_type(), expected: "moov" });
    }
    let mut trex = Vec::new();
    if let Some(mvex) = moov.child(codes::MVEX)? {
        for b in mvex.children()? {
            let b = b?;
            if b.box_type() == codes::TREX {
                let mut r = b.reader();
                r.full_box()?;
                let track_id = r.u32("track_ID")?;
                let d = SampleDefaults {
                    sample_description_index: r.u32("default_sample_description_index")?,
                    duration: r.u32("default_sample_duration")?,
                    size: r.u32("default_sample_size")?,
                    flags: r.u32("default_sample_flags")?,
                };
                trex.push((track_id, d));
            }
        }
    }
    let mut tracks: Vec<TrackInfo> = Vec::new();
    let mut ignored = Vec::new();
    for b in moov.children()? {
        let b = b?;
        if b.box_type() != codes::TRAK {
            continue;
        }
        match parse_trak(b)? {
            Parsed::Track(mut t) => {
                if tracks.iter().any(|o| o.track_id == t.track_id) {
                    return Err(Error::InvalidValue { in_box: codes::TKHD, field: "track_ID (duplicate)" });
                }
                if let Some((_, d)) = trex.iter().find(|(id, _)| *id == t.track_id) {
                    t.defaults = *d;
                }
                tracks.push(t);
            }
            Parsed::Ignored(i) => ignored.push(i),
        }
    }
    if tracks.is_empty() {
        return Err(Error::NoTracks);
    }
    Ok(MovieInfo { tracks, ignored })
}

enum Parsed {
    Track(TrackInfo),
    Ignored(IgnoredTrack),
}

fn parse_trak(trak: BoxRef<'_>) -> Result<Parsed> {
    let tkhd = trak.require(codes::TKHD)?;
    let mut r = tkhd.reader();
    let (version, _) = r.full_box()?;
    // creation/modification times are 64-bit in version 1
    r.skip(if version == 1 { 16 } else { 8 }, "creation/modification_time")?;
    let track_id = r.u32("track_ID")?;
    if track_id == 0 {
        return Err(r.invalid("track_ID"));
    }
    r.skip(4, "reserved")?;
    r.skip(if version == 1 { 8 } else { 4 }, "duration")?;
    r.skip(8 + 2 + 2 + 2 + 2 + 36, "layer/volume/matrix")?;
    let display_width = r.u32("width")? >> 16;
    let display_height = r.u32("height")? >> 16;

    let mdia = trak.require(codes::MDIA)?;
    let mdhd = mdia.require(codes::MDHD)?;
    let mut r = mdhd.reader();
    let (version, _) = r.full_box()?;
    r.skip(if version == 1 { 16 } else { 8 }, "creation/modification_time")?;
    let timescale = r.u32("timescale")?;
    if timescale == 0 {
        return Err(r.invalid("timescale"));
    }
    r.skip(if version == 1 { 8 } else { 4 }, "duration")?;
    let language = unpack_language(r.u16("language")?);

    let hdlr = mdia.require(codes::HDLR)?;
    let mut r = hdlr.reader();
    r.full_box()?;
    r.skip(4, "pre_defined")?;
    let handler = r.fourcc("handler_type")?;
    let kind = match handler {
        codes::VIDE => TrackKind::Video,
        codes::SOUN => TrackKind::Audio,
        _ => return Ok(Parsed::Ignored(IgnoredTrack { track_id, handler })),
    };

    let stsd = mdia.require(codes::MINF)?.require(codes::STBL)?.require(codes::STSD)?;
    let mut r = stsd.reader();
    r.full_box()?;
    if r.u32("entry_count")? == 0 {
        return Err(r.invalid("entry_count"));
    }
    // Sample entries follow the 8 bytes of version, flags and entry_count.
    let entry = stsd.children_after(8)?.next().ok_or(Error::Truncated { in_box: codes::STSD, field: "entry" })??;

    let mut t = TrackInfo {
        track_id,
        kind,
        handler,
        timescale,
        sample_entry_type: entry.box_type(),
        codec: Codec::H264,
        codec_private_data: Vec::new(),
        codecs: None,
        width: 0,
        height: 0,
        display_width,
        display_height,
        channels: 0,
        sample_rate: 0,
        bits_per_sample: 16,
        language,
        bitrate: None,
        sample_entry: Vec::new(),
        defaults: SampleDefaults::default(),
    };
    match (kind, entry.box_type()) {
        (TrackKind::Video, codes::AVC1 | codes::AVC3 | codes::HVC1 | codes::HEV1) => parse_visual_entry(entry, &mut t)?,
        (TrackKind::Audio, codes::MP4A) => parse_mp4a_entry(entry, &mut t)?,
        (_, sample_entry) => {
            return Err(Error::UnsupportedCodec { sample_entry, handler });
        }
    }
    Ok(Parsed::Track(t))
}

/// VisualSampleEntry: 6 reserved, data_reference_index, 16 bytes pre_defined/reserved,
/// width, height, then 50 more bytes of fields before the child boxes (78 in all).
pub(crate) const VISUAL_ENTRY_FIELDS: usize = 78;

fn parse_visual_entry(entry: BoxRef<'_>, t: &mut TrackInfo) -> Result<()> {
    let mut r = entry.reader();
    r.skip(24, "reserved/pre_defined")?;
    t.width = r.u16("width")?;
    t.height = r.u16("height")?;
    r.skip(VISUAL_ENTRY_FIELDS - 28, "visual fields")?;
    if t.display_width == 0 || t.display_height == 0 {
        t.display_width = u32::from(t.width);
        t.display_height = u32::from(t.height);
    }
    let mut config = None;
    for c in entry.children_after(VISUAL_ENTRY_FIELDS)? {
        let c = c?;
        match c.box_type() {
            codes::AVCC | codes::HVCC => config = Some(c),
            codes::BTRT => t.bitrate = parse_btrt(c)?.or(t.bitrate),
            _ => {}
        }
    }
    match entry.box_type() {
        codes::AVC1 | codes::AVC3 => {
            let avcc = config.filter(|c| c.box_type() == codes::AVCC);
            let avcc = avcc.ok_or(Error::MissingBox { parent: entry.box_type(), child: codes::AVCC })?;
            t.codec = Codec::H264;
            t.codec_private_data = avcc_to_annexb(avcc.body())?;
        }
        _ => {
            let hvcc = config.filter(|c| c.box_type() == codes::HVCC);
            let hvcc = hvcc.ok_or(Error::MissingBox { parent: entry.box_type(), child: codes::HVCC })?;
            t.codec = Codec::Hevc;
            let (cpd, codecs) = parse_hvcc(hvcc.body(), entry.box_type())?;
            t.codec_private_data = cpd;
            t.codecs = Some(codecs);
        }
    }
    t.sample_entry = entry.bytes.to_vec();
    Ok(())
}

fn parse_btrt(b: BoxRef<'_>) -> Result<Option<u32>> {
    let mut r = b.reader();
    r.skip(4, "bufferSizeDB")?;
    let max = r.u32("maxBitrate")?;
    let avg = r.u32("avgBitrate")?;
    Ok([avg, max].into_iter().find(|v| *v > 0))
}

/// The parameter sets of an `avcC` as Annex-B: `00000001 SPS ... 00000001 PPS ...` (docs/protocol.md §2.7).
fn avcc_to_annexb(body: &[u8]) -> Result<Vec<u8>> {
    let mut r = Reader::new(body, codes::AVCC);
    r.skip(5, "profile/level/lengthSize")?;
    let mut out = Vec::new();
    let num_sps = r.u8("numOfSequenceParameterSets")? & 0x1f;
    for _ in 0..num_sps {
        let len = r.u16("sequenceParameterSetLength")?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(r.bytes(usize::from(len), "sequenceParameterSetNALUnit")?);
    }
    let num_pps = r.u8("numOfPictureParameterSets")?;
    for _ in 0..num_pps {
        let len = r.u16("pictureParameterSetLength")?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(r.bytes(usize::from(len), "pictureParameterSetNALUnit")?);
    }
    if num_sps == 0 {
        return Err(r.invalid("numOfSequenceParameterSets"));
    }
    Ok(out)
}

/// CodecPrivateData (SPS and PPS as Annex-B, HEVC amendment 2.2.2.5) and the RFC 6381 codec string of an `hvcC`.
fn parse_hvcc(body: &[u8], entry: FourCC) -> Result<(Vec<u8>, String)> {
    let mut r = Reader::new(body, codes::HVCC);
    r.u8("configurationVersion")?;
    let b = r.u8("general_profile_space/tier/idc")?;
    let profile_space = b >> 6;
    let tier = (b >> 5) & 1;
    let profile_idc = b & 0x1f;
    let compat = r.u32("general_profile_compatibility_flags")?;
    let constraints = r.bytes(6, "general_constraint_indicator_flags")?;
    let level = r.u8("general_level_idc")?;
    r.skip(22 - 13, "hvcC fields")?;
    let num_arrays = r.u8("numOfArrays")?;
    let mut out = Vec::new();
    for _ in 0..num_arrays {
        let nal_type = r.u8("NAL_unit_type")? & 0x3f;
        let n = r.u16("numNalus")?;
        for _ in 0..n {
            let len = r.u16("nalUnitLength")?;
            let nal = r.bytes(usize::from(len), "nalUnit")?;
            // 33 = SPS, 34 = PPS; the VPS stays in hvcC.
            if nal_type == 33 || nal_type == 34 {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
        }
    }
    if out.is_empty() {
        return Err(r.invalid("numOfArrays (no SPS/PPS)"));
    }
    // RFC 6381 / ISO/IEC 14496-15 Annex E: <entry>.<space><idc>.<compat reversed>.<tier><level>.<constraints>
    let mut s = String::new();
    let space = ["", "A", "B", "C"][usize::from(profile_space)];
    use core::fmt::Write;
    let _ = write!(
        s,
        "{}.{}{}.{:X}.{}{}",
        entry,
        space,
        profile_idc,
        compat.reverse_bits(),
        if tier == 1 { 'H' } else { 'L' },
        level
    );
    let last = constraints.iter().rposition(|b| *b != 0);
    if let Some(last) = last {
        for c in &constraints[..=last] {
            let _ = write!(s, ".{c:X}");
        }
    }
    Ok((out, s))
}

/// AudioSampleEntry fields before the children (ISO v0): 6 reserved, data_reference_index,
/// 8 reserved (QuickTime: version, revision, vendor), channelcount, samplesize, pre_defined,
/// reserved, samplerate 16.16.
pub(crate) const AUDIO_ENTRY_FIELDS: usize = 28;

fn parse_mp4a_entry(entry: BoxRef<'_>, t: &mut TrackInfo) -> Result<()> {
    let mut r = entry.reader();
    r.skip(8, "reserved/data_reference_index")?;
    let qt_version = r.u16("version")?;
    r.skip(6, "revision/vendor")?;
    t.channels = r.u16("channelcount")?;
    t.bits_per_sample = r.u16("samplesize")?;
    r.skip(4, "pre_defined/reserved")?;
    t.sample_rate = r.u32("samplerate")? >> 16;
    // QuickTime sound descriptions (qtmux) append 16 (v1) or 36 (v2) bytes before the children.
    let extra = match qt_version {
        1 => 16,
        2 => 36,
        _ => 0,
    };
    let mut esds = None;
    for c in entry.children_after(AUDIO_ENTRY_FIELDS + extra)? {
        let c = c?;
        match c.box_type() {
            codes::ESDS => esds = Some(c),
            codes::BTRT => t.bitrate = parse_btrt(c)?.or(t.bitrate),
            // qtmux wraps esds in a 'wave' atom.
            codes::WAVE => {
                if let Some(e) = c.child(codes::ESDS)? {
                    esds = Some(e);
                }
            }
            _ => {}
        }
    }
    let esds = esds.ok_or(Error::MissingBox { parent: codes::MP4A, child: codes::ESDS })?;
    let es = parse_esds(esds)?;
    if es.object_type_indication != 0x40 {
        // 0x40 = MPEG-4 Audio; anything else (MP3 0x6B, ...) is not AAC.
        return Err(Error::UnsupportedCodec { sample_entry: codes::MP4A, handler: t.handler });
    }
    let asc = parse_audio_specific_config(&es.decoder_specific_info)?;
    t.codec = Codec::Aac { object_type: asc.object_type };
    if asc.sample_rate > 0 {
        t.sample_rate = asc.sample_rate;
    }
    if asc.channels > 0 {
        t.channels = asc.channels;
    }
    if t.bits_per_sample == 0 {
        t.bits_per_sample = 16;
    }
    t.codec_private_data = es.decoder_specific_info;
    t.bitrate = t.bitrate.or([es.avg_bitrate, es.max_bitrate].into_iter().find(|b| *b > 0));
    // A clean ISO AudioSampleEntry v0 with the esds, whatever sound description the muxer wrote.
    let mut e = Vec::new();
    write_box(&mut e, codes::MP4A, |o| {
        o.put_zeros(6);
        o.put_u16(1); // data_reference_index
        o.put_zeros(8);
        o.put_u16(t.channels);
        o.put_u16(16);
        o.put_u32(0);
        o.put_u32(t.sample_rate.min(0xffff) << 16);
        o.extend_from_slice(esds.bytes);
    });
    t.sample_entry = e;
    Ok(())
}

struct EsInfo {
    object_type_indication: u8,
    max_bitrate: u32,
    avg_bitrate: u32,
    decoder_specific_info: Vec<u8>,
}

/// Reads an MPEG-4 descriptor header (tag + 1..4 byte size).
fn descriptor<'a>(r: &mut Reader<'a>) -> Result<(u8, Reader<'a>)> {
    let tag = r.u8("descriptor tag")?;
    let mut len: usize = 0;
    for _ in 0..4 {
        let b = r.u8("descriptor size")?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok((tag, Reader::new(r.bytes(len, "descriptor body")?, codes::ESDS)))
}

fn parse_esds(esds: BoxRef<'_>) -> Result<EsInfo> {
    let mut r = esds.reader();
    r.full_box()?;
    let (tag, mut es) = descriptor(&mut r)?;
    if tag != 0x03 {
        return Err(r.invalid("ES_Descriptor tag"));
    }
    es.skip(2, "ES_ID")?;
    let flags = es.u8("ES flags")?;
    if flags & 0x80 != 0 {
        es.skip(2, "dependsOn_ES_ID")?;
    }
    if flags & 0x40 != 0 {
        let n = es.u8("URLlength")?;
        es.skip(usize::from(n), "URLstring")?;
    }
    if flags & 0x20 != 0 {
        es.skip(2, "OCR_ES_Id")?;
    }
    let (tag, mut dc) = descriptor(&mut es)?;
    if tag != 0x04 {
        return Err(es.invalid("DecoderConfigDescriptor tag"));
    }
    let object_type_indication = dc.u8("objectTypeIndication")?;
    dc.skip(4, "streamType/bufferSizeDB")?;
    let max_bitrate = dc.u32("maxBitrate")?;
    let avg_bitrate = dc.u32("avgBitrate")?;
    let mut decoder_specific_info = Vec::new();
    while dc.remaining() > 0 {
        let (tag, d) = descriptor(&mut dc)?;
        if tag == 0x05 {
            decoder_specific_info = d.rest().to_vec();
            break;
        }
    }
    Ok(EsInfo { object_type_indication, max_bitrate, avg_bitrate, decoder_specific_info })
}

/// The fields of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) that the manifest needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u16,
}

pub fn parse_audio_specific_config(asc: &[u8]) -> Result<AudioSpecificConfig> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let mut bits = BitReader { data: asc, pos: 0 };
    let err = Error::InvalidValue { in_box: codes::ESDS, field: "AudioSpecificConfig" };
    let mut object_type = bits.read(5).ok_or(err.clone())? as u8;
    if object_type == 31 {
        object_type = 32 + bits.read(6).ok_or(err.clone())? as u8;
    }
    let index = bits.read(4).ok_or(err.clone())?;
    let sample_rate =
        if index == 15 { bits.read(24).ok_or(err.clone())? } else { RATES.get(index as usize).copied().unwrap_or(0) };
    let channels = match bits.read(4).ok_or(err)? {
        7 => 8,
        c @ 0..=6 => c as u16,
        _ => 0,
    };
    Ok(AudioSpecificConfig { object_type, sample_rate, channels })
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

/// ISO 639-2/T from mdhd's packed form; `und` when absent or invalid.
fn unpack_language(packed: u16) -> [u8; 3] {
    let c = [(packed >> 10) & 0x1f, (packed >> 5) & 0x1f, packed & 0x1f];
    if c.iter().all(|v| (1..=26).contains(v)) {
        [c[0] as u8 + 0x60, c[1] as u8 + 0x60, c[2] as u8 + 0x60]
    } else {
        *b"und"
    }
}

/// mdhd's packed form of an ISO 639-2/T code.
pub fn pack_language(lang: &[u8; 3]) -> u16 {
    if lang.iter().all(|c| c.is_ascii_lowercase()) {
        lang.iter().fold(0u16, |acc, c| (acc << 5) | u16::from(c - 0x60))
    } else {
        pack_language(b"und")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_round_trips() {
        assert_eq!(pack_language(b"und"), 0x55C4);
        assert_eq!(unpack_language(0x55C4), *b"und");
        assert_eq!(unpack_language(pack_language(b"eng")), *b"eng");
        assert_eq!(unpack_language(0), *b"und");
    }

    #[test]
    fn audio_specific_config_of_lc_and_he() {
        assert_eq!(
            parse_audio_specific_config(&[0x11, 0x90]).unwrap(),
            AudioSpecificConfig { object_type: 2, sample_rate: 48000, channels: 2 }
        );
        assert_eq!(
            parse_audio_specific_config(&[0x12, 0x10]).unwrap(),
            AudioSpecificConfig { object_type: 2, sample_rate: 44100, channels: 2 }
        );
        // FFmpeg's mono 48 kHz example from the capture: 1188 56E500 (LC with SBR extension signalling)
        assert_eq!(parse_audio_specific_config(&[0x11, 0x88, 0x56, 0xE5, 0x00]).unwrap().channels, 1);
        assert!(parse_audio_specific_config(&[0x11]).is_err());
    }

    /// qtmux's sound description v1 with esds inside a 'wave' atom and zero terminators,
    /// captured from `qtmux fragment-duration=2000` with avenc_aac (stereo 48 kHz).
    #[test]
    fn quicktime_sound_description_v1_is_normalised() {
        use crate::bmff::Boxes;
        let entry = crate::hex::from_hex(
            "000000866d7034610000000000000001000100000000000000020010fffe0000bb800000000000000000000000000000\
             0000000000000052776176650000000c66726d616d7034610000000c6d703461000000000000002a65736473000000\
             00031c0002000414401500000000025a0d0001f0fe0505119056e5000601020000000800000000",
        )
        .unwrap();
        let b = Boxes::new(&entry).next().unwrap().unwrap();
        let mut t = crate::test_support::spec_tracks().1;
        t.codec_private_data.clear();
        t.bitrate = None;
        parse_mp4a_entry(b, &mut t).unwrap();
        assert_eq!((t.channels, t.sample_rate, t.bitrate), (2, 48000, Some(127_230)));
        assert_eq!(t.codec_private_data, [0x11, 0x90, 0x56, 0xE5, 0x00]);
        // Rewritten as a plain ISO AudioSampleEntry v0 holding the same esds.
        let rewritten = Boxes::new(&t.sample_entry).next().unwrap().unwrap();
        assert_eq!(rewritten.body()[8..10], [0, 0]);
        assert!(rewritten.children_after(AUDIO_ENTRY_FIELDS).unwrap().any(|c| c.unwrap().box_type() == codes::ESDS));
    }

    #[test]
    fn hvcc_gives_sps_and_pps_in_annex_b_and_the_codecs_string() {
        // Main profile (1), compatibility flags 0x60000000, progressive + frame-only constraint
        // flags (0x90), level 3.1 (93), then VPS, SPS and PPS arrays.
        let mut hvcc = alloc::vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        hvcc.extend_from_slice(&[0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f]);
        hvcc.push(3);
        for (nal_type, nal) in [(32u8, &[0x40, 0x01, 0x0c][..]), (33, &[0x42, 0x01, 0x01]), (34, &[0x44, 0x01])] {
            hvcc.push(0x80 | nal_type);
            hvcc.extend_from_slice(&1u16.to_be_bytes());
            hvcc.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            hvcc.extend_from_slice(nal);
        }
        let (cpd, codecs) = parse_hvcc(&hvcc, codes::HEV1).unwrap();
        // The VPS stays in hvcC (AZ-HEVC): SPS and PPS only.
        assert_eq!(cpd, [0, 0, 0, 1, 0x42, 0x01, 0x01, 0, 0, 0, 1, 0x44, 0x01]);
        assert_eq!(codecs, "hev1.1.6.L93.90");
        let (_, codecs) = parse_hvcc(&hvcc, codes::HVC1).unwrap();
        assert_eq!(codecs, "hvc1.1.6.L93.90");
        // High tier, main 10, no constraint flags.
        let mut high = hvcc.clone();
        high[1] = 0x22;
        high[6] = 0;
        assert_eq!(parse_hvcc(&high, codes::HEV1).unwrap().1, "hev1.2.6.H93");
        // Every truncation is an error, none a panic; without SPS/PPS there is nothing to say.
        for n in 0..hvcc.len() {
            assert!(parse_hvcc(&hvcc[..n], codes::HEV1).is_err(), "{n} bytes");
        }
        let only_vps = [&hvcc[..22], &[1, 0xa0, 0, 1, 0, 1, 0x40]].concat();
        assert!(parse_hvcc(&only_vps, codes::HEV1).is_err());
    }

    #[test]
    fn avcc_parameter_sets_become_annex_b() {
        let avcc = [1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 0x64, 0x1f, 1, 0, 2, 0x68, 0xeb];
        assert_eq!(avcc_to_annexb(&avcc).unwrap(), [0, 0, 0, 1, 0x67, 0x64, 0x1f, 0, 0, 0, 1, 0x68, 0xeb]);
        assert!(avcc_to_annexb(&avcc[..9]).is_err());
    }
}
