// SPDX-License-Identifier: MPL-2.0
//! Fragments as ingested (moof + mdat), read and checked once when they arrive, and re-wrapped
//! for each output when served.
//!
//! Reading checks what serving relies on: one `traf` (Smooth ingest and CMAF both carry one
//! track per fragment), a `tfhd` without `base-data-offset` (an absolute offset into a file
//! means nothing in a stream), sample data that lies inside the mdat, and the fragment's time:
//! the `tfxd` of Smooth ingest (MS-SSTR 2.2.4.4) and/or the `tfdt` (ISO/IEC 14496-12 §8.8.12).
//!
//! Serving rewrites the moof only; the mdat goes out as the same bytes (a slice, no copy).
//! For DASH and HLS a `tfdt` with the fragment's time follows the `tfhd`, which says
//! `default-base-is-moof` (§8.8.7), and the Smooth-only `uuid` boxes go; for Smooth the `tfxd`
//! is written with the time and duration the timeline holds, followed, while live, by a `tfrf`
//! (MS-SSTR 2.2.4.5) naming the fragments after it, as an origin adds them. Each `trun`'s
//! data_offset moves by what the moof gained or lost.

use bytes::Bytes;
use fmp4ingest_core::bmff::fourcc::codes;
use fmp4ingest_core::bmff::writer::{PutBytes, write_box, write_full_box, write_uuid_box};
use fmp4ingest_core::bmff::{BoxRef, Boxes, FourCC};
use fmp4ingest_core::smooth_boxes::{TFRF_UUID, TFXD_UUID, Tfxd};

use super::init::SampleDefaults;

/// What a fragment says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    pub track_id: u32,
    /// (time, duration) from the tfxd.
    pub tfxd: Option<(u64, u64)>,
    /// The tfdt's baseMediaDecodeTime.
    pub tfdt: Option<u64>,
    pub samples: u32,
    /// The sum of the sample durations.
    pub duration: u64,
}

fn err(e: fmp4ingest_core::Error) -> String {
    format!("{e:?}")
}

/// Samples one fragment may hold: six seconds of 48 kHz PCM are 288,000.
pub const MAX_SAMPLES: u64 = 1 << 20;

/// tfhd flags (ISO/IEC 14496-12 §8.8.7).
const BASE_DATA_OFFSET: u32 = 0x1;
const SAMPLE_DESCRIPTION_INDEX: u32 = 0x2;
const DEFAULT_DURATION: u32 = 0x8;
const DEFAULT_SIZE: u32 = 0x10;
const DEFAULT_FLAGS: u32 = 0x20;
const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// trun flags (§8.8.8).
const DATA_OFFSET: u32 = 0x1;
const FIRST_SAMPLE_FLAGS: u32 = 0x4;
const SAMPLE_DURATION: u32 = 0x100;
const SAMPLE_SIZE: u32 = 0x200;
const SAMPLE_FLAGS: u32 = 0x400;
const SAMPLE_CTO: u32 = 0x800;

fn only_traf<'a>(moof: BoxRef<'a>) -> Result<BoxRef<'a>, String> {
    let mut trafs = Vec::new();
    for b in moof.children().map_err(err)? {
        let b = b.map_err(err)?;
        if b.box_type() == codes::TRAF {
            trafs.push(b);
        }
    }
    match trafs.as_slice() {
        [t] => Ok(*t),
        _ => Err(format!("a moof with {} trafs (one track per fragment)", trafs.len())),
    }
}

fn moof_of(bytes: &[u8], moof_len: usize) -> Result<BoxRef<'_>, String> {
    let moof = Boxes::new(bytes.get(..moof_len).ok_or("a moof longer than the fragment")?)
        .next()
        .ok_or("no moof")?
        .map_err(err)?;
    if moof.box_type() != codes::MOOF {
        return Err("the fragment does not start with a moof".into());
    }
    Ok(moof)
}

/// One sample of a fragment, every field resolved (ISO/IEC 14496-12 §8.8.8: the trun's, else
/// the tfhd's, else the trex's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRow {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// Composition time offset (signed in a version 1 trun).
    pub cto: i64,
    /// Where its bytes start in the fragment (moof + mdat).
    pub offset: u64,
}

/// Reads and checks a fragment: `bytes` is moof + mdat, the moof `moof_len` bytes long;
/// `defaults` gives a track's trex defaults (None for a track the stream did not declare).
pub fn read(
    bytes: &[u8],
    moof_len: usize,
    defaults: &dyn Fn(u32) -> Option<SampleDefaults>,
) -> Result<FragmentInfo, String> {
    walk(bytes, moof_len, defaults, &mut |_| {})
}

/// [`read`], handing every sample to `each` on the way.
pub fn walk(
    bytes: &[u8],
    moof_len: usize,
    defaults: &dyn Fn(u32) -> Option<SampleDefaults>,
    each: &mut dyn FnMut(SampleRow),
) -> Result<FragmentInfo, String> {
    let moof = moof_of(bytes, moof_len)?;
    let mdat = Boxes::new(&bytes[moof_len..]).next().ok_or("no mdat after the moof")?.map_err(err)?;
    if mdat.box_type() != codes::MDAT || moof_len + mdat.bytes.len() != bytes.len() {
        return Err("the moof is not followed by exactly one mdat".into());
    }
    let payload = (moof_len + usize::from(mdat.header.header_len), bytes.len());
    let traf = only_traf(moof)?;
    let tfhd = traf.require(codes::TFHD).map_err(err)?;
    let mut r = tfhd.reader();
    let (_, flags) = r.full_box().map_err(err)?;
    let track_id = r.u32("track_ID").map_err(err)?;
    let trex =
        defaults(track_id).ok_or_else(|| format!("a fragment of track {track_id}, which the moov does not declare"))?;
    if flags & BASE_DATA_OFFSET != 0 {
        return Err(format!("track {track_id}: tfhd sets base-data-offset (a file offset, meaningless in a stream)"));
    }
    if flags & SAMPLE_DESCRIPTION_INDEX != 0 {
        r.skip(4, "sample_description_index").map_err(err)?;
    }
    let mut field = |flag: u32, name: &'static str, default: u32| -> Result<u32, String> {
        if flags & flag != 0 { r.u32(name).map_err(err) } else { Ok(default) }
    };
    let default_duration = field(DEFAULT_DURATION, "default_sample_duration", trex.duration)?;
    let default_size = field(DEFAULT_SIZE, "default_sample_size", trex.size)?;
    let default_flags = field(DEFAULT_FLAGS, "default_sample_flags", trex.flags)?;
    let mut info = FragmentInfo { track_id, tfxd: None, tfdt: None, samples: 0, duration: 0 };
    let mut next_data: Option<u64> = None;
    for b in traf.children().map_err(err)? {
        let b = b.map_err(err)?;
        match b.box_type() {
            codes::TFDT => {
                let mut r = b.reader();
                let (version, _) = r.full_box().map_err(err)?;
                info.tfdt = Some(
                    if version == 1 {
                        r.u64("baseMediaDecodeTime")
                    } else {
                        r.u32("baseMediaDecodeTime").map(u64::from)
                    }
                    .map_err(err)?,
                );
            }
            codes::UUID if b.header.usertype == Some(TFXD_UUID) => {
                let t = Tfxd::parse(b).map_err(err)?;
                info.tfxd = Some((t.fragment_absolute_time, t.fragment_duration));
            }
            codes::TRUN => {
                let mut r = b.reader();
                let (version, tflags) = r.full_box().map_err(err)?;
                let count = r.u32("sample_count").map_err(err)?;
                let start = if tflags & DATA_OFFSET != 0 {
                    // Relative to the moof: no base-data-offset, one traf (§8.8.7).
                    let off = r.i32("data_offset").map_err(err)?;
                    u64::try_from(off).map_err(|_| format!("track {track_id}: a negative trun data_offset"))?
                } else {
                    next_data.ok_or_else(|| format!("track {track_id}: the first trun has no data_offset"))?
                };
                let first_flags = if tflags & FIRST_SAMPLE_FLAGS != 0 {
                    Some(r.u32("first_sample_flags").map_err(err)?)
                } else {
                    None
                };
                let per_sample = [SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_CTO]
                    .iter()
                    .filter(|f| tflags & **f != 0)
                    .count();
                if (count as usize).saturating_mul(per_sample * 4) > r.remaining() {
                    return Err(format!("track {track_id}: a trun shorter than its {count} samples"));
                }
                // A trun of default-sized samples holds any count in no bytes.
                if u64::from(info.samples) + u64::from(count) > MAX_SAMPLES {
                    return Err(format!("track {track_id}: more than {MAX_SAMPLES} samples in one fragment"));
                }
                let mut at = start;
                for i in 0..count {
                    let mut field = |flag: u32, name: &'static str, default: u32| -> Result<u32, String> {
                        if tflags & flag != 0 { r.u32(name).map_err(err) } else { Ok(default) }
                    };
                    let duration = field(SAMPLE_DURATION, "sample_duration", default_duration)?;
                    let size = field(SAMPLE_SIZE, "sample_size", default_size)?;
                    let flags = field(SAMPLE_FLAGS, "sample_flags", default_flags)?;
                    let cto = field(SAMPLE_CTO, "sample_composition_time_offset", 0)?;
                    let flags = if i == 0 && tflags & SAMPLE_FLAGS == 0 { first_flags.unwrap_or(flags) } else { flags };
                    let cto = if version == 0 { i64::from(cto) } else { i64::from(cto as i32) };
                    each(SampleRow { duration, size, flags, cto, offset: at });
                    info.duration += u64::from(duration);
                    at += u64::from(size);
                }
                if start < payload.0 as u64 || at > payload.1 as u64 {
                    return Err(format!(
                        "track {track_id}: samples at bytes {start}..{at} of the fragment, outside its mdat payload ({}..{})",
                        payload.0, payload.1
                    ));
                }
                info.samples += count;
                next_data = Some(at);
            }
            _ => {}
        }
    }
    if info.samples == 0 {
        return Err(format!("track {track_id}: a fragment without samples"));
    }
    Ok(info)
}

/// traf children that say something about its samples' bytes which a merged fragment could
/// not keep true: sample encryption and auxiliary information (ISO/IEC 23001-7; ISO/IEC
/// 14496-12 §8.7.8, §8.7.9).
const ENCRYPTION: [FourCC; 3] = [FourCC(*b"senc"), FourCC(*b"saiz"), FourCC(*b"saio")];

/// The CMAF chunks of one segment (ISO/IEC 23000-19 §7.3.2.3: several moof + mdat of one track,
/// one after the other) as one fragment: the first chunk's `mfhd` and `tfhd` (flags reduced to
/// default-base-is-moof and the sample description index), its `tfdt`, and one `trun` with
/// every sample's fields written out, over an `mdat` holding their bytes in order. Each chunk
/// is checked as [`read`] checks a fragment, and each must start where the one before ended.
/// The media bytes are copied once, here: the store keeps a fragment as one buffer.
pub fn merge(
    chunks: &[(Bytes, usize)],
    defaults: &dyn Fn(u32) -> Option<SampleDefaults>,
) -> Result<(Bytes, usize), String> {
    let mut rows: Vec<SampleRow> = Vec::new();
    let mut first: Option<(FragmentInfo, BoxRef<'_>)> = None;
    let mut end = 0u64;
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (i, (bytes, moof_len)) in chunks.iter().enumerate() {
        let from = rows.len();
        let info = walk(bytes, *moof_len, defaults, &mut |s| rows.push(s))?;
        let traf = only_traf(moof_of(bytes, *moof_len)?)?;
        for b in traf.children().map_err(err)? {
            let t = b.map_err(err)?.box_type();
            if ENCRYPTION.contains(&t) {
                return Err(format!("track {}: encrypted CMAF chunks ('{t}') cannot be joined", info.track_id));
            }
        }
        for s in &rows[from..] {
            ranges.push((i, s.offset as usize));
        }
        match &first {
            None => {
                let time = info.tfdt.ok_or_else(|| format!("track {}: a CMAF chunk without tfdt", info.track_id))?;
                end = time
                    .checked_add(info.duration)
                    .ok_or_else(|| format!("track {}: a CMAF chunk ends beyond 2^64 ticks", info.track_id))?;
                first = Some((info, traf));
            }
            Some((f, _)) => {
                if info.track_id != f.track_id {
                    return Err(format!("chunks of tracks {} and {} in one segment", f.track_id, info.track_id));
                }
                if let Some(t) = info.tfdt.filter(|t| *t != end) {
                    return Err(format!(
                        "track {}: chunk {} starts at {t}, the chunk before ended at {end}",
                        f.track_id,
                        i + 1
                    ));
                }
                end = end
                    .checked_add(info.duration)
                    .ok_or_else(|| format!("track {}: a CMAF chunk ends beyond 2^64 ticks", f.track_id))?;
            }
        }
    }
    let Some((info, traf)) = first else { return Err("a segment without a fragment".into()) };
    let mfhd = moof_of(&chunks[0].0, chunks[0].1)?.require(codes::MFHD).map_err(err)?;
    let mut r = traf.require(codes::TFHD).map_err(err)?.reader();
    let (_, tfhd_flags) = r.full_box().map_err(err)?;
    r.skip(4, "track_ID").map_err(err)?;
    let description = if tfhd_flags & SAMPLE_DESCRIPTION_INDEX != 0 {
        Some(r.u32("sample_description_index").map_err(err)?)
    } else {
        None
    };
    let signed = rows.iter().any(|s| s.cto < 0);
    if rows
        .iter()
        .any(|s| s.cto < i64::from(i32::MIN) || (signed && s.cto > i64::from(i32::MAX)) || s.cto > i64::from(u32::MAX))
    {
        return Err(format!("track {}: composition offsets that one trun cannot hold", info.track_id));
    }
    let total: u64 = rows.iter().map(|s| u64::from(s.size)).sum();
    let mut out = Vec::with_capacity(128 + rows.len() * 16 + total as usize);
    let mut data_offset_at = 0;
    write_box(&mut out, codes::MOOF, |o| {
        o.extend_from_slice(mfhd.bytes);
        write_box(o, codes::TRAF, |o| {
            let flags = DEFAULT_BASE_IS_MOOF | if description.is_some() { SAMPLE_DESCRIPTION_INDEX } else { 0 };
            write_full_box(o, codes::TFHD, 0, flags, |o| {
                o.put_u32(info.track_id);
                if let Some(d) = description {
                    o.put_u32(d);
                }
            });
            write_full_box(o, codes::TFDT, 1, 0, |o| o.put_u64(info.tfdt.unwrap_or_default()));
            let tflags = DATA_OFFSET | SAMPLE_DURATION | SAMPLE_SIZE | SAMPLE_FLAGS | SAMPLE_CTO;
            write_full_box(o, codes::TRUN, u8::from(signed), tflags, |o| {
                o.put_u32(rows.len() as u32);
                data_offset_at = o.len();
                o.put_i32(0);
                for s in &rows {
                    o.put_u32(s.duration);
                    o.put_u32(s.size);
                    o.put_u32(s.flags);
                    o.put_u32(s.cto as u32);
                }
            });
        });
    });
    let moof_len = out.len();
    let data_offset = i32::try_from(moof_len + 8).map_err(|_| "a moof too large".to_string())?;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    let mdat_size = u32::try_from(8 + total).map_err(|_| "chunks too large to join".to_string())?;
    out.put_u32(mdat_size);
    out.put_fourcc(codes::MDAT);
    for ((chunk, at), s) in ranges.iter().zip(&rows) {
        out.extend_from_slice(&chunks[*chunk].0[*at..*at + s.size as usize]);
    }
    Ok((Bytes::from(out), moof_len))
}

/// How a served fragment is wrapped.
#[derive(Debug, Clone, Copy)]
pub enum Wrap<'a> {
    /// DASH and HLS: tfdt, default-base-is-moof, no Smooth boxes.
    Cmaf,
    /// Smooth: tfxd, and a tfrf of the (time, duration) of the fragments that follow (up to
    /// two, none for the newest). The tfrf goes into recorded fragments too: a client that
    /// began while the point was live reads every fragment in its live mode, and GStreamer's
    /// mssdemux stops on a live fragment without one.
    Smooth { lookahead: &'a [(u64, u64)] },
}

/// The served fragment: a new moof followed by the ingested mdat's header, then the mdat's
/// payload (a slice of `bytes`, not a copy). The first part ends with the mdat header so that
/// a client reading the moof also reads where its media starts (mssdemux parses the moof in
/// live mode only once it has seen the mdat's header).
pub fn rewrap(
    bytes: &Bytes,
    moof_len: usize,
    time: u64,
    duration: u64,
    wrap: Wrap<'_>,
) -> Result<(Bytes, Bytes), String> {
    let moof = moof_of(bytes, moof_len)?;
    let mut out = Vec::with_capacity(moof_len + 128);
    // Where each trun's data_offset was written, to move it once the moof's length is known.
    let mut offsets: Vec<(usize, i32)> = Vec::new();
    let mut failure = None;
    write_box(&mut out, codes::MOOF, |o| {
        for b in moof.children().into_iter().flatten().flatten() {
            if b.box_type() != codes::TRAF {
                o.extend_from_slice(b.bytes);
                continue;
            }
            write_box(o, codes::TRAF, |o| {
                if let Err(e) = write_traf(o, b, time, duration, wrap, &mut offsets) {
                    failure = Some(e);
                }
            });
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let delta = out.len() as i64 - moof_len as i64;
    for (at, old) in offsets {
        let moved = i32::try_from(i64::from(old) + delta).map_err(|_| "a trun data_offset out of range".to_string())?;
        out[at..at + 4].copy_from_slice(&moved.to_be_bytes());
    }
    let mdat_header = match bytes.get(moof_len..moof_len + 4) {
        Some([0, 0, 0, 1]) => 16,
        _ => 8,
    };
    let payload_at = (moof_len + mdat_header).min(bytes.len());
    out.extend_from_slice(&bytes[moof_len..payload_at]);
    Ok((Bytes::from(out), bytes.slice(payload_at..)))
}

fn write_traf(
    o: &mut Vec<u8>,
    traf: BoxRef<'_>,
    time: u64,
    duration: u64,
    wrap: Wrap<'_>,
    offsets: &mut Vec<(usize, i32)>,
) -> Result<(), String> {
    for b in traf.children().map_err(err)? {
        let b = b.map_err(err)?;
        let smooth_box = b.header.usertype.is_some_and(|u| u == TFXD_UUID || u == TFRF_UUID);
        match (b.box_type(), wrap) {
            (codes::TFHD, Wrap::Cmaf) => {
                let at = o.len();
                o.extend_from_slice(b.bytes);
                // The flags are the low 24 bits after the version byte.
                let flags_at = at + usize::from(b.header.header_len);
                let flags =
                    u32::from_be_bytes([0, o[flags_at + 1], o[flags_at + 2], o[flags_at + 3]]) | DEFAULT_BASE_IS_MOOF;
                o[flags_at + 1..flags_at + 4].copy_from_slice(&flags.to_be_bytes()[1..]);
                write_full_box(o, codes::TFDT, 1, 0, |o| o.put_u64(time));
            }
            (codes::TFDT, Wrap::Cmaf) => {}
            (codes::UUID, _) if smooth_box => {}
            (codes::TRUN, _) => {
                let at = o.len();
                o.extend_from_slice(b.bytes);
                let mut r = b.reader();
                let (_, flags) = r.full_box().map_err(err)?;
                if flags & DATA_OFFSET != 0 {
                    r.u32("sample_count").map_err(err)?;
                    let field = at + usize::from(b.header.header_len) + 8;
                    offsets.push((field, r.i32("data_offset").map_err(err)?));
                }
            }
            _ => o.extend_from_slice(b.bytes),
        }
    }
    if let Wrap::Smooth { lookahead } = wrap {
        Tfxd::v1(time, duration).write(o);
        write_uuid_box(o, &TFRF_UUID, 1, 0, |o| {
            o.put_u8(lookahead.len() as u8);
            for (t, d) in lookahead {
                o.put_u64(*t);
                o.put_u64(*d);
            }
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Smooth ingest fragment of track `track_id`: moof { mfhd, traf { tfhd, trun (2 samples
    /// of 1000 ticks, 3 and 4 bytes, data_offset), tfxd(time, 2000) } } mdat.
    pub fn smooth_fragment(track_id: u32, time: u64) -> (Bytes, usize) {
        let mut moof = Vec::new();
        write_box(&mut moof, codes::MOOF, |o| {
            write_full_box(o, codes::MFHD, 0, 0, |o| o.put_u32(1));
            write_box(o, codes::TRAF, |o| {
                write_full_box(o, codes::TFHD, 0, 0, |o| o.put_u32(track_id));
                write_full_box(o, codes::TRUN, 0, DATA_OFFSET | SAMPLE_DURATION | SAMPLE_SIZE, |o| {
                    o.put_u32(2);
                    o.put_i32(0); // patched below
                    for (d, s) in [(1000, 3), (1000, 4)] {
                        o.put_u32(d);
                        o.put_u32(s);
                    }
                });
                Tfxd::v1(time, 2000).write(o);
            });
        });
        let moof_len = moof.len();
        let off_at = moof.windows(4).position(|w| w == b"trun").unwrap() + 4 + 8;
        moof[off_at..off_at + 4].copy_from_slice(&((moof_len + 8) as i32).to_be_bytes());
        moof.extend_from_slice(&[0, 0, 0, 15, b'm', b'd', b'a', b't', 1, 2, 3, 4, 5, 6, 7]);
        (Bytes::from(moof), moof_len)
    }

    fn defaults(id: u32) -> Option<SampleDefaults> {
        (id == 1).then_some(SampleDefaults::default())
    }

    #[test]
    fn a_smooth_fragment_is_read() {
        let (f, moof_len) = smooth_fragment(1, 5000);
        let info = read(&f, moof_len, &defaults).unwrap();
        assert_eq!(
            info,
            FragmentInfo { track_id: 1, tfxd: Some((5000, 2000)), tfdt: None, samples: 2, duration: 2000 }
        );
        let (f2, l2) = smooth_fragment(2, 0);
        assert!(read(&f2, l2, &defaults).unwrap_err().contains("does not declare"));
        // Sample data beyond the mdat.
        let mut short = f.to_vec();
        short.truncate(short.len() - 1);
        let n = short.len() - moof_len;
        short[moof_len..moof_len + 4].copy_from_slice(&(n as u32).to_be_bytes());
        assert!(read(&short, moof_len, &defaults).unwrap_err().contains("outside its mdat"));
    }

    /// The payload of a served fragment, where its trun says it is.
    fn payload_of(moof: &[u8], mdat: &[u8]) -> Vec<u8> {
        let all = [moof, mdat].concat();
        let at = moof.windows(4).position(|w| w == b"trun").unwrap() + 4 + 8;
        let off = i32::from_be_bytes(moof[at..at + 4].try_into().unwrap()) as usize;
        all[off..off + 7].to_vec()
    }

    #[test]
    fn a_count_without_bytes_is_bounded() {
        // A trun of 2^20 + 1 default-sized (0-byte) samples, no field per sample.
        let (f, moof_len) = smooth_fragment(1, 0);
        let mut f = f.to_vec();
        let at = f.windows(4).position(|w| w == b"trun").unwrap();
        f[at + 5..at + 8].copy_from_slice(&[0, 0, 1]);
        f[at + 8..at + 12].copy_from_slice(&((1u32 << 20) + 1).to_be_bytes());
        let e = read(&f, moof_len, &defaults).unwrap_err();
        assert!(e.contains("more than 1048576 samples"), "{e}");
    }

    #[test]
    fn rewrapped_for_dash_and_hls_with_tfdt() {
        let (f, moof_len) = smooth_fragment(1, 5000);
        let (head, payload) = rewrap(&f, moof_len, 5000, 2000, Wrap::Cmaf).unwrap();
        let moof = &head[..head.len() - 8];
        assert_eq!(payload_of(&head, &payload), [1, 2, 3, 4, 5, 6, 7]);
        let all = [&head[..], &payload[..]].concat();
        let info = read(&all, moof.len(), &defaults).unwrap();
        assert_eq!((info.tfdt, info.tfxd, info.samples), (Some(5000), None, 2));
        let tfhd = moof.windows(4).position(|w| w == b"tfhd").unwrap();
        assert_eq!(moof[tfhd + 5..tfhd + 8], [0x02, 0, 0], "default-base-is-moof");
        // The first part ends with the mdat header; the payload is the ingested bytes, not a copy.
        assert_eq!(&head[head.len() - 8..], &f[moof_len..moof_len + 8]);
        assert_eq!(payload.as_ptr(), f[moof_len + 8..].as_ptr());
    }

    #[test]
    fn rewrapped_for_smooth_with_tfrf() {
        let (f, moof_len) = smooth_fragment(1, 5000);
        let next = [(7000, 2000), (9000, 2000)];
        let (head, payload) = rewrap(&f, moof_len, 5000, 2000, Wrap::Smooth { lookahead: &next }).unwrap();
        assert_eq!(payload_of(&head, &payload), [1, 2, 3, 4, 5, 6, 7]);
        let tfrf = 8 + 16 + 4 + 1;
        assert_eq!(head.len(), moof_len + tfrf + 32 + 8);
        assert!(head.windows(16).any(|w| w == TFRF_UUID));
        let info = read(&[&head[..], &payload[..]].concat(), head.len() - 8, &defaults).unwrap();
        assert_eq!(info.tfxd, Some((5000, 2000)));
        // The newest fragment: a tfrf without entries; otherwise as ingested.
        let (newest, _) = rewrap(&f, moof_len, 5000, 2000, Wrap::Smooth { lookahead: &[] }).unwrap();
        assert_eq!(newest.len(), moof_len + tfrf + 8);
        let at = newest.windows(16).position(|w| w == TFRF_UUID).unwrap();
        assert_eq!(newest[at + 16..at + 21], [1, 0, 0, 0, 0], "version 1, no entries");
    }
}
