// SPDX-License-Identifier: MPL-2.0
//! The receiver's own reading of CMAF ingest bodies (DASH-IF Live Media Ingest v1.2,
//! Interface-1): a CMAF header (`ftyp`, `moov` with one track) and CMAF segments (`styp`,
//! `prft`, `moof` + `mdat`, possibly as several CMAF chunks), checked as a strict receiver
//! would.
//!
//! Written independently of fmp4ingest-core, like [`crate::mp4`]: a bug in the core's writers
//! must not be hidden by the same bug in a shared parser.

use crate::mp4::{self, MoovTrack, RawBox, boxes};

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_be_bytes(s.try_into().unwrap_or([0; 8])))
}

fn find<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<RawBox<'a>> {
    boxes(data).into_iter().find(|b| b.is(kind))
}

fn fourccs(b: &[u8]) -> Vec<String> {
    b.chunks_exact(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect()
}

/// A null-terminated string at `at`, and the position after its NUL.
fn cstring(b: &[u8], at: usize) -> Option<(String, usize)> {
    let rest = b.get(at..)?;
    let nul = rest.iter().position(|c| *c == 0)?;
    Some((String::from_utf8(rest[..nul].to_vec()).ok()?, at + nul + 1))
}

/// What a CMAF header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    /// `ftyp` major brand, then the compatible brands.
    pub brands: Vec<String>,
    pub track: MoovTrack,
    /// `mdhd` language (ISO 639-2/T).
    pub language: String,
    /// `elng`, if any.
    pub extended_language: Option<String>,
    /// `btrt` of the sample entry: (bufferSizeDB, maxBitrate, avgBitrate).
    pub btrt: Option<(u32, u32, u32)>,
    /// `kind` boxes in `udta`: (schemeURI, value).
    pub kinds: Vec<(String, String)>,
    /// The `uri ` of a `urim` sample entry.
    pub uri: Option<String>,
}

/// Reads a header request's body; adds what is wrong to `v`.
pub fn read_header(body: &[u8], v: &mut Vec<String>) -> Option<HeaderInfo> {
    let top = boxes(body);
    let kinds: Vec<String> = top.iter().map(RawBox::kind_str).collect();
    if kinds != ["ftyp", "moov"] {
        v.push(format!("a header request carries {kinds:?}, not exactly ftyp and moov"));
    }
    let ftyp = top.iter().find(|b| b.is(b"ftyp"))?;
    let fb = ftyp.body();
    let mut brands = fourccs(fb.get(..4).unwrap_or(&[]));
    brands.extend(fourccs(fb.get(8..).unwrap_or(&[])));
    if !brands.iter().any(|b| b == "cmfc" || b == "cmf2") {
        v.push(format!("ftyp brands {brands:?} name no CMAF track brand (cmfc)"));
    }
    let moov = top.iter().find(|b| b.is(b"moov"))?;
    let tracks = match mp4::parse_moov(moov.body()) {
        Ok(t) => t,
        Err(e) => {
            v.push(format!("moov: {e}"));
            return None;
        }
    };
    if tracks.len() != 1 {
        v.push(format!("a CMAF header with {} tracks", tracks.len()));
    }
    let track = tracks.into_iter().next()?;
    if find(moov.body(), b"mvex").and_then(|m| find(m.body(), b"trex")).is_none() {
        v.push("moov without mvex/trex".into());
    }
    let trak = find(moov.body(), b"trak")?;
    let mdia = find(trak.body(), b"mdia")?;
    let language = find(mdia.body(), b"mdhd")
        .and_then(|m| {
            let b = m.body();
            let at = if b.first() == Some(&1) { 32 } else { 20 };
            be16(b, at)
        })
        .map(|p| [(p >> 10) & 0x1f, (p >> 5) & 0x1f, p & 0x1f].iter().map(|c| char::from(*c as u8 + 0x60)).collect())
        .unwrap_or_default();
    let extended_language = find(mdia.body(), b"elng").and_then(|e| cstring(e.body(), 4)).map(|(s, _)| s);
    let kinds = find(trak.body(), b"udta")
        .map(|u| {
            boxes(u.body())
                .into_iter()
                .filter(|k| k.is(b"kind"))
                .filter_map(|k| {
                    let (scheme, at) = cstring(k.body(), 4)?;
                    let (value, _) = cstring(k.body(), at)?;
                    Some((scheme, value))
                })
                .collect()
        })
        .unwrap_or_default();
    let entry = find(mdia.body(), b"minf")
        .and_then(|m| find(m.body(), b"stbl"))
        .and_then(|s| find(s.body(), b"stsd"))
        .and_then(|s| boxes(s.body().get(8..).unwrap_or(&[])).into_iter().next());
    let (mut btrt, mut uri) = (None, None);
    if let Some(e) = entry {
        let fields = match track.handler.as_str() {
            "vide" => 78,
            "soun" => 28,
            _ => 8,
        };
        for c in boxes(e.body().get(fields..).unwrap_or(&[])) {
            let b = c.body();
            if c.is(b"btrt") {
                btrt = be32(b, 0).zip(be32(b, 4)).zip(be32(b, 8)).map(|((a, m), g)| (a, m, g));
            } else if c.is(b"uri ") {
                uri = cstring(b, 4).map(|(s, _)| s);
            }
        }
    }
    if track.handler != "meta" && btrt.is_none() {
        v.push("the sample entry has no btrt".into());
    }
    Some(HeaderInfo { brands, track, language, extended_language, btrt, kinds, uri })
}

/// A `prft`: reference_track_ID, the NTP time, the media time, its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prft {
    pub track_id: u32,
    pub ntp: u64,
    pub media_time: u64,
    pub flags: u32,
}

/// An `emsg` carried in a timed metadata sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emsg {
    pub version: u8,
    pub scheme: String,
    pub value: String,
    pub timescale: u32,
    /// Version 1: the presentation time; version 0: the delta.
    pub presentation_time: u64,
    pub duration: u32,
    pub id: u32,
    pub message: Vec<u8>,
    /// The decode time of the sample that carries it.
    pub sample_time: u64,
}

/// One segment as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Major and compatible brands of the segment's first `styp`, and of each later chunk's.
    pub brands: Vec<String>,
    pub chunk_brands: Vec<Vec<String>>,
    pub prft: Option<Prft>,
    pub track_id: u32,
    /// The first chunk's `mfhd` sequence_number and `tfdt`.
    pub sequence: u32,
    pub tfdt: u64,
    /// moof + mdat pairs.
    pub chunks: usize,
    pub sample_count: u32,
    pub durations: Vec<u32>,
    /// Each sample's composition offset (signed in a version 1 trun).
    pub ctos: Vec<i64>,
    pub duration: u64,
    pub first_sample_sync: bool,
    /// Decode times of the sync samples, from the segment's `tfdt`.
    pub sync_offsets: Vec<u64>,
    /// `lmsg` in any `styp` of the segment.
    pub lmsg: bool,
    /// FNV-1a of the moof and mdat bytes (the media, whatever the `styp`).
    pub media_hash: u64,
    pub events: Vec<Emsg>,
}

/// A `moof` read: sequence, track, tfhd flags, tfdt, the samples' (duration, size, flags).
struct Moof {
    sequence: u32,
    track_id: u32,
    tfhd_flags: u32,
    tfdt: Option<u64>,
    samples: Vec<(u32, u32, u32)>,
    ctos: Vec<i64>,
    data_offset: Option<i32>,
    trafs: usize,
    truns: usize,
}

fn read_moof(moof: &RawBox<'_>) -> Option<Moof> {
    let kids = boxes(moof.body());
    let sequence = be32(find(moof.body(), b"mfhd")?.body(), 4)?;
    let trafs: Vec<_> = kids.iter().filter(|b| b.is(b"traf")).collect();
    let traf = trafs.first()?;
    let tfhd = find(traf.body(), b"tfhd")?;
    let tb = tfhd.body();
    let tfhd_flags = be32(tb, 0)? & 0xff_ffff;
    let track_id = be32(tb, 4)?;
    let mut pos = 8;
    if tfhd_flags & 1 != 0 {
        pos += 8;
    }
    let mut defaults = [0u32; 3];
    for (i, f) in [0x8u32, 0x10, 0x20].into_iter().enumerate() {
        if tfhd_flags & 0x2 != 0 && i == 0 {
            pos += 4;
        }
        if tfhd_flags & f != 0 {
            defaults[i] = be32(tb, pos)?;
            pos += 4;
        }
    }
    let tfdt = find(traf.body(), b"tfdt").and_then(|t| {
        let b = t.body();
        if b.first() == Some(&1) { be64(b, 4) } else { be32(b, 4).map(u64::from) }
    });
    let truns: Vec<_> = boxes(traf.body()).into_iter().filter(|b| b.is(b"trun")).collect();
    let mut samples = Vec::new();
    let mut ctos = Vec::new();
    let mut data_offset = None;
    for trun in &truns {
        let b = trun.body();
        let version = b.first().copied()?;
        let flags = be32(b, 0)? & 0xff_ffff;
        let count = be32(b, 4)?;
        let mut p = 8;
        if flags & 1 != 0 {
            data_offset = data_offset.or(be32(b, p).map(|x| x as i32));
            p += 4;
        }
        let first_flags = if flags & 4 != 0 {
            p += 4;
            be32(b, p - 4)
        } else {
            None
        };
        for s in 0..count {
            let mut field = |present: bool, default: u32| -> Option<u32> {
                if present {
                    p += 4;
                    be32(b, p - 4)
                } else {
                    Some(default)
                }
            };
            let d = field(flags & 0x100 != 0, defaults[0])?;
            let z = field(flags & 0x200 != 0, defaults[1])?;
            let mut f = field(flags & 0x400 != 0, defaults[2])?;
            let cto = field(flags & 0x800 != 0, 0)?;
            ctos.push(if version == 0 { i64::from(cto) } else { i64::from(cto as i32) });
            if s == 0 && flags & 0x400 == 0 {
                f = first_flags.unwrap_or(f);
            }
            samples.push((d, z, f));
        }
    }
    Some(Moof {
        sequence,
        track_id,
        tfhd_flags,
        tfdt,
        samples,
        ctos,
        data_offset,
        trafs: trafs.len(),
        truns: truns.len(),
    })
}

/// The `emsg` boxes of one metadata sample.
fn read_emsgs(sample: &[u8], sample_time: u64, v: &mut Vec<String>) -> Vec<Emsg> {
    let mut out = Vec::new();
    for b in boxes(sample) {
        if !b.is(b"emsg") {
            v.push(format!("a metadata sample holds a '{}' box, not emsg", b.kind_str()));
            continue;
        }
        let body = b.body();
        let version = body.first().copied().unwrap_or(0);
        let parsed = if version == 1 {
            (|| {
                let (scheme, at) = cstring(body, 24)?;
                let (value, at) = cstring(body, at)?;
                Some(Emsg {
                    version,
                    scheme,
                    value,
                    timescale: be32(body, 4)?,
                    presentation_time: be64(body, 8)?,
                    duration: be32(body, 16)?,
                    id: be32(body, 20)?,
                    message: body.get(at..)?.to_vec(),
                    sample_time,
                })
            })()
        } else {
            (|| {
                let (scheme, at) = cstring(body, 4)?;
                let (value, at) = cstring(body, at)?;
                Some(Emsg {
                    version,
                    scheme,
                    value,
                    timescale: be32(body, at)?,
                    presentation_time: u64::from(be32(body, at + 4)?),
                    duration: be32(body, at + 8)?,
                    id: be32(body, at + 12)?,
                    message: body.get(at + 16..)?.to_vec(),
                    sample_time,
                })
            })()
        };
        match parsed {
            Some(e) => {
                if e.scheme.starts_with("urn:scte:scte35") && !mp4::is_valid_splice_info_section(&e.message) {
                    v.push(format!("emsg {} is not a whole splice_info_section with a valid CRC", e.id));
                }
                out.push(e);
            }
            None => v.push("a truncated emsg".into()),
        }
    }
    out
}

/// Reads a segment request's body; `media` for audio and video (a `prft` is required),
/// `metadata` for a timed metadata track (samples of `emsg`). Adds what is wrong to `v`.
pub fn read_segment(body: &[u8], media: bool, metadata: bool, v: &mut Vec<String>) -> Option<Segment> {
    let top = boxes(body);
    let consumed: usize = top.iter().map(|b| b.bytes.len()).sum();
    if consumed != body.len() {
        v.push(format!("the body ends inside a box ({} bytes left)", body.len() - consumed));
    }
    let mut seg: Option<Segment> = None;
    let mut styp: Option<Vec<String>> = None;
    let mut prft = None;
    let mut pending: Option<(Moof, &RawBox<'_>)> = None;
    let mut next_tfdt = 0u64;
    let mut lmsg = false;
    let mut hash_parts: Vec<&[u8]> = Vec::new();
    for b in &top {
        match &b.kind {
            b"styp" => {
                let mut brands = fourccs(b.body().get(..4).unwrap_or(&[]));
                brands.extend(fourccs(b.body().get(8..).unwrap_or(&[])));
                lmsg |= brands.iter().any(|x| x == "lmsg");
                styp = Some(brands);
            }
            b"prft" => {
                let p = b.body();
                let version = p.first().copied().unwrap_or(0);
                prft = Some(Prft {
                    track_id: be32(p, 4).unwrap_or(0),
                    ntp: be64(p, 8).unwrap_or(0),
                    media_time: if version == 1 { be64(p, 16) } else { be32(p, 16).map(u64::from) }.unwrap_or(0),
                    flags: be32(p, 0).unwrap_or(0) & 0xff_ffff,
                });
            }
            b"moof" => {
                if pending.is_some() {
                    v.push("a moof followed by another moof".into());
                }
                let Some(m) = read_moof(b) else {
                    v.push("a moof that cannot be read".into());
                    return None;
                };
                if m.trafs != 1 || m.truns != 1 {
                    v.push(format!("a CMAF chunk with {} trafs and {} truns (one each)", m.trafs, m.truns));
                }
                if m.tfhd_flags & 0x02_0000 == 0 || m.tfhd_flags & 1 != 0 {
                    v.push(format!("tfhd flags {:#x}: CMAF wants default-base-is-moof, no base offset", m.tfhd_flags));
                }
                if m.tfdt.is_none() {
                    v.push("a moof without tfdt".into());
                }
                pending = Some((m, b));
            }
            b"mdat" => {
                let Some((m, moof)) = pending.take() else {
                    v.push("an mdat without a moof".into());
                    continue;
                };
                hash_parts.push(moof.bytes);
                hash_parts.push(b.bytes);
                let want = (moof.bytes.len() + b.header) as i32;
                if m.data_offset != Some(want) {
                    v.push(format!("trun data_offset {:?}, the payload starts at {want}", m.data_offset));
                }
                let payload = b.body();
                let sizes: u64 = m.samples.iter().map(|s| u64::from(s.1)).sum();
                if sizes != payload.len() as u64 {
                    v.push(format!("samples total {sizes} bytes, the mdat holds {}", payload.len()));
                }
                let tfdt = m.tfdt.unwrap_or(next_tfdt);
                let mut events = Vec::new();
                if metadata {
                    let (mut at, mut t) = (0usize, tfdt);
                    for (d, z, _) in &m.samples {
                        let end = (at + *z as usize).min(payload.len());
                        events.extend(read_emsgs(&payload[at..end], t, v));
                        at = end;
                        t += u64::from(*d);
                    }
                }
                let duration: u64 = m.samples.iter().map(|s| u64::from(s.0)).sum();
                let base = seg.as_ref().map_or(0, |s| s.duration);
                let mut at = base;
                let mut syncs = Vec::new();
                for (d, _, f) in &m.samples {
                    if f & 0x0001_0000 == 0 {
                        syncs.push(at);
                    }
                    at += u64::from(*d);
                }
                match seg.as_mut() {
                    None => {
                        seg = Some(Segment {
                            brands: styp.take().unwrap_or_default(),
                            chunk_brands: Vec::new(),
                            prft: prft.take(),
                            track_id: m.track_id,
                            sequence: m.sequence,
                            tfdt,
                            chunks: 1,
                            sample_count: m.samples.len() as u32,
                            durations: m.samples.iter().map(|s| s.0).collect(),
                            ctos: m.ctos.clone(),
                            duration,
                            first_sample_sync: m.samples.first().is_some_and(|s| s.2 & 0x0001_0000 == 0),
                            sync_offsets: syncs,
                            lmsg: false,
                            media_hash: 0,
                            events,
                        });
                    }
                    Some(s) => {
                        let brands = styp.take().unwrap_or_default();
                        let chunk = brands.iter().any(|b| b == "cmfl") || m.sequence == s.sequence;
                        if !chunk {
                            v.push(format!(
                                "more than one segment in a request: mfhd {} after {} without a cmfl styp",
                                m.sequence, s.sequence
                            ));
                        }
                        if tfdt != next_tfdt {
                            v.push(format!("a chunk's tfdt {tfdt}, the chunk before ended at {next_tfdt}"));
                        }
                        if m.track_id != s.track_id {
                            v.push(format!("chunks of tracks {} and {} in one request", s.track_id, m.track_id));
                        }
                        s.chunk_brands.push(brands);
                        s.chunks += 1;
                        s.sample_count += m.samples.len() as u32;
                        s.durations.extend(m.samples.iter().map(|x| x.0));
                        s.ctos.extend(&m.ctos);
                        s.duration += duration;
                        s.sync_offsets.extend(syncs);
                        s.events.extend(events);
                    }
                }
                next_tfdt = tfdt + duration;
            }
            b"emsg" | b"free" | b"skip" | b"sidx" => {}
            other => v.push(format!("a '{}' box in a segment", String::from_utf8_lossy(other))),
        }
    }
    if pending.is_some() {
        v.push("the body ends with a moof without its mdat".into());
    }
    let Some(mut s) = seg else {
        v.push("a segment request without a moof and mdat".into());
        return None;
    };
    if media && s.prft.is_none() {
        v.push(format!("segment {} has no prft", s.sequence));
    }
    if let Some(p) = s.prft.filter(|p| p.track_id != s.track_id) {
        v.push(format!("prft names track {}, the segment is track {}", p.track_id, s.track_id));
    }
    if !s.brands.is_empty() && !s.brands.iter().any(|b| b == "cmfs" || b == "msdh" || b == "cmff") {
        v.push(format!("segment {} styp {:?} names no segment brand", s.sequence, s.brands));
    }
    s.lmsg = lmsg;
    s.media_hash = mp4::fnv1a(&hash_parts);
    Some(s)
}
