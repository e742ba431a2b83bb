// SPDX-License-Identifier: MPL-2.0
//! The receiver's own reading of an ingest body: top-level boxes as they arrive, the header
//! (ftyp, Live Server Manifest, moov) and every fragment, checked against the protocol.
//!
//! Written independently of fmp4ingest-core on purpose: a bug in the core's parser must not
//! hide a bug in what the core writes.

use std::fmt::Write;

pub const LSM_UUID: [u8; 16] =
    [0xA5, 0xD4, 0x0B, 0x30, 0xE8, 0x14, 0x11, 0xDD, 0xBA, 0x2F, 0x08, 0x00, 0x20, 0x0C, 0x9A, 0x66];
pub const STREAM_MANIFEST_UUID: [u8; 16] =
    [0x3C, 0x2F, 0xE5, 0x1B, 0xEF, 0xEE, 0x40, 0xA3, 0xAE, 0x81, 0x53, 0x00, 0x19, 0x9D, 0xC3, 0x48];
pub const TFXD_UUID: [u8; 16] =
    [0x6D, 0x1D, 0x9B, 0x05, 0x42, 0xD5, 0x44, 0xE6, 0x80, 0xE2, 0x14, 0x1D, 0xAF, 0xF7, 0x57, 0xB2];

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_be_bytes(s.try_into().unwrap_or([0; 8])))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

/// One box inside a byte slice: (type, header length, whole box).
#[derive(Clone, Copy)]
pub struct RawBox<'a> {
    pub kind: [u8; 4],
    pub header: usize,
    pub bytes: &'a [u8],
}

impl<'a> RawBox<'a> {
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[self.header..]
    }
    pub fn is(&self, k: &[u8; 4]) -> bool {
        &self.kind == k
    }
    pub fn uuid(&self) -> Option<[u8; 16]> {
        if self.is(b"uuid") { self.body().get(..16).and_then(|u| u.try_into().ok()) } else { None }
    }
    pub fn kind_str(&self) -> String {
        String::from_utf8_lossy(&self.kind).into_owned()
    }
}

/// Boxes laid end to end in `data`; stops at anything malformed.
pub fn boxes(data: &[u8]) -> Vec<RawBox<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let Some(size32) = be32(data, pos) else { break };
        let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap_or([0; 4]);
        let (size, header) = match size32 {
            1 => match be64(data, pos + 8) {
                Some(s) => (s as usize, 16),
                None => break,
            },
            0 => break,
            n => (n as usize, 8),
        };
        if size < header || pos + size > data.len() {
            break;
        }
        out.push(RawBox { kind, header, bytes: &data[pos..pos + size] });
        pos += size;
    }
    out
}

fn find<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<RawBox<'a>> {
    boxes(data).into_iter().find(|b| b.is(kind))
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02X}");
        s
    })
}

/// A track as the moov describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoovTrack {
    pub track_id: u32,
    pub timescale: u32,
    pub handler: String,
    /// Sample entry name (avc1, mp4a, hev1, scte...).
    pub entry: String,
    /// CodecPrivateData as the manifest should carry it, uppercase hex.
    pub codec_private_data: String,
    pub trex_default_flags: u32,
}

/// Reads the tracks of a moov box body.
pub fn parse_moov(moov_body: &[u8]) -> Result<Vec<MoovTrack>, String> {
    let mut tracks = Vec::new();
    let mut trex = Vec::new();
    if let Some(mvex) = find(moov_body, b"mvex") {
        for t in boxes(mvex.body()).into_iter().filter(|b| b.is(b"trex")) {
            let b = t.body();
            trex.push((be32(b, 4).unwrap_or(0), be32(b, 20).unwrap_or(0)));
        }
    }
    for trak in boxes(moov_body).into_iter().filter(|b| b.is(b"trak")) {
        let tkhd = find(trak.body(), b"tkhd").ok_or("trak without tkhd")?;
        let tb = tkhd.body();
        let track_id = if tb.first() == Some(&1) { be32(tb, 20) } else { be32(tb, 12) }.ok_or("short tkhd")?;
        let mdia = find(trak.body(), b"mdia").ok_or("trak without mdia")?;
        let mdhd = find(mdia.body(), b"mdhd").ok_or("mdia without mdhd")?;
        let mb = mdhd.body();
        let timescale = if mb.first() == Some(&1) { be32(mb, 20) } else { be32(mb, 12) }.ok_or("short mdhd")?;
        let hdlr = find(mdia.body(), b"hdlr").ok_or("mdia without hdlr")?;
        let handler = String::from_utf8_lossy(hdlr.body().get(8..12).ok_or("short hdlr")?).into_owned();
        let stsd = find(mdia.body(), b"minf")
            .and_then(|m| find(m.body(), b"stbl"))
            .and_then(|s| find(s.body(), b"stsd"))
            .ok_or("no stsd")?;
        let entry = boxes(stsd.body().get(8..).unwrap_or(&[])).into_iter().next().ok_or("empty stsd")?;
        let cpd = match &entry.kind {
            b"avc1" | b"avc3" => avcc_annexb(entry.body().get(78..).unwrap_or(&[])),
            b"hvc1" | b"hev1" => hvcc_annexb(entry.body().get(78..).unwrap_or(&[])),
            b"mp4a" => esds_asc(entry.body().get(28..).unwrap_or(&[])),
            _ => Some(String::new()),
        }
        .ok_or_else(|| format!("cannot read the codec configuration of {}", entry.kind_str()))?;
        let trex_default_flags = trex.iter().find(|(id, _)| *id == track_id).map_or(0, |(_, f)| *f);
        tracks.push(MoovTrack {
            track_id,
            timescale,
            handler,
            entry: entry.kind_str(),
            codec_private_data: cpd,
            trex_default_flags,
        });
    }
    Ok(tracks)
}

/// Reads a 16-bit length and that many bytes at `pos`; returns them and the position after.
fn nal_at(b: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let len = be16(b, pos)? as usize;
    Some((b.get(pos + 2..pos + 2 + len)?, pos + 2 + len))
}

fn push_annexb(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&[0, 0, 0, 1]);
    out.extend_from_slice(nal);
}

fn avcc_annexb(children: &[u8]) -> Option<String> {
    let avcc = find(children, b"avcC")?;
    let b = avcc.body();
    let mut out = Vec::new();
    let mut pos = 6;
    for _ in 0..(b.get(5)? & 0x1f) {
        let (nal, next) = nal_at(b, pos)?;
        push_annexb(&mut out, nal);
        pos = next;
    }
    let n_pps = *b.get(pos)?;
    pos += 1;
    for _ in 0..n_pps {
        let (nal, next) = nal_at(b, pos)?;
        push_annexb(&mut out, nal);
        pos = next;
    }
    Some(hex(&out))
}

fn hvcc_annexb(children: &[u8]) -> Option<String> {
    let hvcc = find(children, b"hvcC")?;
    let b = hvcc.body();
    let mut pos = 23;
    let mut out = Vec::new();
    for _ in 0..*b.get(22)? {
        let nal_type = b.get(pos)? & 0x3f;
        let n = be16(b, pos + 1)?;
        pos += 3;
        for _ in 0..n {
            let (nal, next) = nal_at(b, pos)?;
            // SPS (33) and PPS (34); the VPS stays in hvcC.
            if nal_type == 33 || nal_type == 34 {
                push_annexb(&mut out, nal);
            }
            pos = next;
        }
    }
    Some(hex(&out))
}

/// The DecoderSpecificInfo (AudioSpecificConfig) of an esds, by scanning its descriptors.
fn esds_asc(children: &[u8]) -> Option<String> {
    let esds = find(children, b"esds")?;
    let b = esds.body().get(4..)?;
    // Walk descriptors: tag, size (1-4 bytes), body; descend into 0x03 and 0x04.
    fn walk(b: &[u8]) -> Option<Vec<u8>> {
        let mut pos = 0;
        while pos < b.len() {
            let tag = b[pos];
            pos += 1;
            let mut size = 0usize;
            for _ in 0..4 {
                let c = *b.get(pos)?;
                pos += 1;
                size = (size << 7) | (c & 0x7f) as usize;
                if c & 0x80 == 0 {
                    break;
                }
            }
            let body = b.get(pos..pos + size)?;
            match tag {
                0x03 => {
                    let flags = *body.get(2)?;
                    let mut skip = 3;
                    if flags & 0x80 != 0 {
                        skip += 2;
                    }
                    if flags & 0x40 != 0 {
                        skip += 1 + *body.get(skip)? as usize;
                    }
                    if flags & 0x20 != 0 {
                        skip += 2;
                    }
                    return walk(body.get(skip..)?);
                }
                0x04 => return walk(body.get(13..)?),
                0x05 => return Some(body.to_vec()),
                _ => {}
            }
            pos += size;
        }
        None
    }
    walk(b).map(|v| hex(&v))
}

/// A `<video>`, `<audio>` or `<textstream>` of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmilTrack {
    pub element: String,
    pub attrs: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
}

impl SmilTrack {
    pub fn attr(&self, n: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str())
    }
    pub fn param(&self, n: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str())
    }
}

/// The SMIL 2.0 namespace a Live Server Manifest uses (MS-SSTR 2.2.7.3).
pub const SMIL_NS: &str = "http://www.w3.org/2001/SMIL20/Language";

/// Reads the tracks of a LiveSMIL document with a real XML parser: a document that is not
/// well-formed XML, or whose root is not SMIL 2.0's `<smil>`, is refused with the parser's
/// reason.
pub fn parse_smil(text: &str) -> Result<Vec<SmilTrack>, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("not well-formed XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "smil" || root.tag_name().namespace() != Some(SMIL_NS) {
        return Err("not a SMIL 2.0 document".into());
    }
    let mut tracks = Vec::new();
    for el in root.descendants().filter(|n| n.is_element()) {
        let name = el.tag_name().name();
        if !matches!(name, "video" | "audio" | "textstream") {
            continue;
        }
        let attrs = el.attributes().map(|a| (a.name().to_string(), a.value().to_string())).collect();
        let mut params = Vec::new();
        for p in el.children().filter(|c| c.is_element() && c.tag_name().name() == "param") {
            let n = p.attribute("name").ok_or("param without name")?;
            params.push((n.to_string(), p.attribute("value").unwrap_or_default().to_string()));
        }
        tracks.push(SmilTrack { element: name.to_string(), attrs, params });
    }
    Ok(tracks)
}

#[cfg(test)]
mod smil_tests {
    use super::parse_smil;

    #[test]
    fn the_manifest_is_read_as_xml() {
        let doc = r#"<?xml version="1.0"?><smil xmlns="http://www.w3.org/2001/SMIL20/Language"><body><switch>
            <video systemBitrate="100"><param name="trackID" value="1" valuetype="data"/><!-- c --></video>
            <textstream systemBitrate="0"><param name="Scheme" value="urn:scte:scte35:2013:bin &amp; more"/></textstream>
            </switch></body></smil>"#;
        let t = parse_smil(doc).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].attr("systemBitrate"), t[0].param("trackID")), (Some("100"), Some("1")));
        assert_eq!(t[1].param("Scheme"), Some("urn:scte:scte35:2013:bin & more"));
        for bad in [
            "<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\"><video></smil>",
            "<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\"><video a=\"1\" a=\"2\"/></smil>",
            "<smil><video/></smil>",
            "<html/>",
        ] {
            assert!(parse_smil(bad).is_err(), "{bad}");
        }
    }
}

/// One fragment as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentInfo {
    pub track_id: u32,
    pub sequence: u32,
    pub traf_count: usize,
    pub trun_count: usize,
    /// tfxd (version, time, duration), if present.
    pub tfxd: Option<(u8, u64, u64)>,
    /// tfxd v2's fragment_index (64 bits after the v1 fields).
    pub tfxd_index: Option<u64>,
    pub tfdt: Option<u64>,
    pub sample_count: u32,
    pub duration_sum: u64,
    pub first_sample_sync: bool,
    /// Where each sync sample starts, in ticks after the fragment's first sample (by the
    /// sample durations before it).
    pub sync_offsets: Vec<u64>,
    /// Some sample has a non-zero composition time offset (B-frames).
    pub has_cto: bool,
    /// Each sample's presentation time in ticks after the fragment's first sample's decode
    /// time (the durations before it plus its composition offset), in decode order.
    pub sample_offsets: Vec<i64>,
    /// moof + mdat bytes.
    pub size: u64,
    /// FNV-1a of the moof + mdat bytes, to compare resent fragments.
    pub hash: u64,
    /// When its last byte arrived.
    pub arrived: Option<std::time::Instant>,
    /// On a sparse (`meta`) track: the message the mdat carries.
    pub sparse: Option<SparsePayload>,
}

/// The mdat payload of a sparse fragment (docs/protocol.md §5.5): version, id,
/// presentation_time_delta, then the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparsePayload {
    pub version: u32,
    pub id: u32,
    pub delta: u32,
    pub message: Vec<u8>,
}

impl SparsePayload {
    pub fn parse(mdat_payload: &[u8]) -> Option<SparsePayload> {
        Some(SparsePayload {
            version: be32(mdat_payload, 0)?,
            id: be32(mdat_payload, 4)?,
            delta: be32(mdat_payload, 8)?,
            message: mdat_payload.get(12..)?.to_vec(),
        })
    }
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, MSB first, initial all ones, no final XOR). Over an
/// MPEG-2 section with its CRC_32 it gives 0.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(u32::MAX, |mut crc, b| {
        crc ^= u32::from(*b) << 24;
        for _ in 0..8 {
            crc = if crc & (1 << 31) != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
        crc
    })
}

/// Whether `b` is one whole SCTE-35 splice_info_section with a correct CRC_32.
pub fn is_valid_splice_info_section(b: &[u8]) -> bool {
    b.len() >= 20 && b[0] == 0xFC && usize::from(be16(b, 1).unwrap_or(0) & 0x0FFF) + 3 == b.len() && crc32_mpeg2(b) == 0
}

impl FragmentInfo {
    pub fn time(&self) -> Option<u64> {
        self.tfxd.map(|t| t.1)
    }
    pub fn duration(&self) -> Option<u64> {
        self.tfxd.map(|t| t.2)
    }
}

pub fn fnv1a(data: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in data {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Reads a moof and the mdat after it; adds protocol violations to `v`.
pub fn parse_fragment(
    moof: RawBox<'_>,
    mdat: RawBox<'_>,
    trex_flags: &dyn Fn(u32) -> u32,
    v: &mut Vec<String>,
) -> FragmentInfo {
    let mut info = FragmentInfo {
        track_id: 0,
        sequence: 0,
        traf_count: 0,
        trun_count: 0,
        tfxd: None,
        tfxd_index: None,
        tfdt: None,
        sample_count: 0,
        duration_sum: 0,
        first_sample_sync: false,
        sync_offsets: Vec::new(),
        has_cto: false,
        sample_offsets: Vec::new(),
        size: (moof.bytes.len() + mdat.bytes.len()) as u64,
        hash: fnv1a(&[moof.bytes, mdat.bytes]),
        arrived: Some(std::time::Instant::now()),
        sparse: None,
    };
    let kids = boxes(moof.body());
    if let Some(mfhd) = kids.iter().find(|b| b.is(b"mfhd")) {
        info.sequence = be32(mfhd.body(), 4).unwrap_or(0);
    } else {
        v.push("moof without mfhd".into());
    }
    let trafs: Vec<_> = kids.iter().filter(|b| b.is(b"traf")).collect();
    info.traf_count = trafs.len();
    if trafs.len() != 1 {
        v.push(format!("moof with {} trafs (Smooth ingest: exactly one)", trafs.len()));
    }
    let Some(traf) = trafs.first() else { return info };
    let tk = boxes(traf.body());
    let Some(tfhd) = tk.iter().find(|b| b.is(b"tfhd")) else {
        v.push("traf without tfhd".into());
        return info;
    };
    let tb = tfhd.body();
    let tflags = be32(tb, 0).unwrap_or(0) & 0xff_ffff;
    info.track_id = be32(tb, 4).unwrap_or(0);
    if tflags & 1 != 0 {
        v.push(format!("track {}: tfhd sets base-data-offset", info.track_id));
    }
    let mut pos = 8;
    if tflags & 1 != 0 {
        pos += 8;
    }
    for f in [0x2u32, 0x8, 0x10] {
        if tflags & f != 0 {
            pos += 4;
        }
    }
    let tfhd_default_flags = if tflags & 0x20 != 0 { be32(tb, pos) } else { None };
    if let Some(tfdt) = tk.iter().find(|b| b.is(b"tfdt")) {
        let b = tfdt.body();
        info.tfdt = if b.first() == Some(&1) { be64(b, 4) } else { be32(b, 4).map(u64::from) };
    }
    for u in tk.iter().filter(|b| b.uuid() == Some(TFXD_UUID)) {
        let b = &u.body()[16..];
        let version = b.first().copied().unwrap_or(0);
        info.tfxd = match version {
            0 => be32(b, 4).zip(be32(b, 8)).map(|(t, d)| (0, u64::from(t), u64::from(d))),
            _ => be64(b, 4).zip(be64(b, 12)).map(|(t, d)| (version, t, d)),
        };
        if version == 2 {
            info.tfxd_index = be64(b, 20);
            if info.tfxd_index.is_none() {
                v.push(format!("track {}: tfxd v2 without its fragment_index", info.track_id));
            }
        }
    }
    if info.tfxd.is_none() {
        v.push(format!("track {} fragment {}: no tfxd", info.track_id, info.sequence));
    }
    let truns: Vec<_> = tk.iter().filter(|b| b.is(b"trun")).collect();
    info.trun_count = truns.len();
    let mdat_payload = (mdat.bytes.len() - mdat.header) as u64;
    let mut size_sum = 0u64;
    for (i, trun) in truns.iter().enumerate() {
        let b = trun.body();
        let flags = be32(b, 0).unwrap_or(0) & 0xff_ffff;
        let count = be32(b, 4).unwrap_or(0);
        let mut p = 8;
        let data_offset = if flags & 1 != 0 {
            p += 4;
            be32(b, 8).map(|x| x as i32)
        } else {
            None
        };
        if i == 0 {
            let want = (moof.bytes.len() + mdat.header) as i32;
            if data_offset != Some(want) {
                v.push(format!(
                    "track {}: trun data_offset {:?}, the mdat payload starts at {}",
                    info.track_id, data_offset, want
                ));
            }
        }
        let first_flags = if flags & 4 != 0 {
            let f = be32(b, p);
            p += 4;
            f
        } else {
            None
        };
        for s in 0..count {
            let mut sample_flags = None;
            let starts_at = info.duration_sum;
            if flags & 0x100 != 0 {
                info.duration_sum += u64::from(be32(b, p).unwrap_or(0));
                p += 4;
            }
            if flags & 0x200 != 0 {
                size_sum += u64::from(be32(b, p).unwrap_or(0));
                p += 4;
            }
            if flags & 0x400 != 0 {
                sample_flags = be32(b, p);
                p += 4;
            }
            let mut cto = 0i64;
            if flags & 0x800 != 0 {
                let raw = be32(b, p).unwrap_or(0);
                // Version 1 offsets are signed (ISO/IEC 14496-12 §8.8.8).
                cto = if b.first() == Some(&1) { i64::from(raw as i32) } else { i64::from(raw) };
                info.has_cto |= raw != 0;
                p += 4;
            }
            info.sample_offsets.push(starts_at as i64 + cto);
            let first = if s == 0 { first_flags } else { None };
            let f = first.or(sample_flags).or(tfhd_default_flags).unwrap_or_else(|| trex_flags(info.track_id));
            let sync = f & 0x0001_0000 == 0;
            if i == 0 && s == 0 {
                info.first_sample_sync = sync;
            }
            if sync {
                info.sync_offsets.push(starts_at);
            }
        }
        if p > b.len() {
            v.push(format!("track {}: trun shorter than its sample table", info.track_id));
        }
        info.sample_count += count;
    }
    if size_sum != mdat_payload {
        v.push(format!("track {}: samples total {} bytes, mdat holds {}", info.track_id, size_sum, mdat_payload));
    }
    if let Some((_, _, d)) = info.tfxd
        && d != info.duration_sum
    {
        v.push(format!(
            "track {} fragment {}: tfxd duration {} differs from the sample durations' sum {}",
            info.track_id, info.sequence, d, info.duration_sum
        ));
    }
    info
}
