// SPDX-License-Identifier: MPL-2.0
//! The incremental box splitter for muxer output.
//!
//! Muxers hand a sink arbitrary byte chunks: qtmux/mp4mux/ismlmux send ftyp, moov and each moof as
//! buffers, then an 8-byte mdat header and one buffer per sample; isofmp4mux and cmafmux send
//! `styp+moof+mdat-header` in one buffer and the samples after it (gst-plugin-fmp4 0.14). The splitter
//! accepts any chunking and yields the init header (ftyp, moov) and complete fragments
//! (moof + mdat). Small boxes are buffered whole (bounded); mdat payload is kept as views of the
//! pushed chunks, never copied. styp, sidx, prft, emsg, free, skip, mfra and unknown boxes are
//! skipped without being buffered.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::bmff::fourcc::codes;
use crate::bmff::{BoxHeader, FourCC};
use crate::error::{Error, Result};
use crate::payload::Payload;

/// Limits that keep a broken or hostile input from exhausting memory.
#[derive(Debug, Clone, Copy)]
pub struct SplitterLimits {
    /// Largest ftyp, moov or moof held in memory.
    pub max_box_size: u64,
    /// Largest mdat of one fragment.
    pub max_mdat_size: u64,
}

impl Default for SplitterLimits {
    fn default() -> Self {
        SplitterLimits { max_box_size: 16 << 20, max_mdat_size: 512 << 20 }
    }
}

/// The init segment: what a client needs before any fragment.
#[derive(Debug, Clone)]
pub struct InitSegment {
    pub ftyp: Option<Bytes>,
    pub moov: Bytes,
}

/// A moof and its mdat as the muxer wrote them.
#[derive(Debug, Clone)]
pub struct RawFragment {
    /// The whole moof box.
    pub moof: Bytes,
    /// Offset of the moof's first byte from the start of the stream (for `base_data_offset`).
    pub moof_offset: u64,
    /// Offset of the first mdat payload byte from the start of the stream.
    pub payload_offset: u64,
    /// The mdat payload, as views of the pushed chunks.
    pub payload: Payload,
    /// Times given with pushed chunks whose first byte lies in this payload: (offset in the
    /// payload, time). Muxers send one buffer per sample, so these are samples' times.
    pub payload_times: Vec<(u64, u64)>,
}

/// What the splitter yields.
#[derive(Debug, Clone)]
pub enum Unit {
    Init(InitSegment),
    Fragment(RawFragment),
    /// A box that carries nothing the ingest stream needs.
    Skipped {
        box_type: FourCC,
        size: u64,
    },
}

#[derive(Debug)]
enum State {
    /// Collecting the bytes of a box header into `head`.
    Header,
    /// Buffering a whole box.
    Buffer {
        header: BoxHeader,
        start: u64,
        buf: Vec<u8>,
    },
    /// Discarding a box.
    Skip {
        header: BoxHeader,
        remaining: u64,
    },
    /// Collecting an mdat payload.
    Mdat {
        remaining: u64,
        payload_offset: u64,
        payload: Payload,
        times: Vec<(u64, u64)>,
    },
    Failed,
}

/// Splits a byte stream from an MP4 muxer into init segments and fragments.
#[derive(Debug)]
pub struct BoxSplitter {
    limits: SplitterLimits,
    state: State,
    /// Header bytes collected so far (at most 32).
    head: Vec<u8>,
    /// Stream offset of the next byte pushed.
    pos: u64,
    ftyp: Option<Bytes>,
    /// A moof waiting for its mdat, with its stream offset.
    pending_moof: Option<(Bytes, u64)>,
    seen_first_box: bool,
    /// The time given with the chunk being consumed, until its first byte is placed.
    chunk_time: Option<u64>,
    out: VecDeque<Unit>,
}

impl Default for BoxSplitter {
    fn default() -> Self {
        Self::new(SplitterLimits::default())
    }
}

impl BoxSplitter {
    pub fn new(limits: SplitterLimits) -> Self {
        BoxSplitter {
            limits,
            state: State::Header,
            head: Vec::with_capacity(32),
            pos: 0,
            ftyp: None,
            pending_moof: None,
            seen_first_box: false,
            chunk_time: None,
            out: VecDeque::new(),
        }
    }

    /// Feeds a chunk. Units completed by it are queued for [`BoxSplitter::next_unit`] even when
    /// the chunk also holds an error, so that nothing accepted before a fault is lost. After an
    /// error the splitter refuses further input.
    pub fn push(&mut self, data: Bytes) -> Result<()> {
        self.push_timed(data, None)
    }

    /// Like [`BoxSplitter::push`], with the time of the chunk's first byte (the running time of
    /// the sample a muxer's buffer holds), recorded when that byte is mdat payload.
    pub fn push_timed(&mut self, mut data: Bytes, time: Option<u64>) -> Result<()> {
        if matches!(self.state, State::Failed) {
            return Err(Error::Poisoned);
        }
        self.chunk_time = time;
        while !data.is_empty() {
            if let Err(e) = self.step(&mut data) {
                self.state = State::Failed;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The next complete unit, in stream order.
    pub fn next_unit(&mut self) -> Option<Unit> {
        self.out.pop_front()
    }

    /// Declares the end of the stream; an unfinished box is an error.
    pub fn finish(&mut self) -> Result<()> {
        let result = match &self.state {
            State::Failed => Err(Error::Poisoned),
            State::Header if self.head.is_empty() => match &self.pending_moof {
                Some(_) => Err(Error::MoofWithoutMdat { next: FourCC::new(b"EOS ") }),
                None => Ok(()),
            },
            State::Header => Err(Error::Truncated { in_box: FourCC::new(b"file"), field: "box header" }),
            State::Buffer { header, .. } | State::Skip { header, .. } => {
                Err(Error::Truncated { in_box: header.box_type, field: "box body" })
            }
            State::Mdat { .. } => Err(Error::Truncated { in_box: codes::MDAT, field: "payload" }),
        };
        self.state = State::Header;
        self.head.clear();
        self.pending_moof = None;
        result
    }

    fn consume(&mut self, data: &mut Bytes, n: usize) -> Bytes {
        self.pos += n as u64;
        data.split_to(n)
    }

    /// The chunk's time, if the byte about to be consumed is its first.
    fn take_time(&mut self) -> Option<u64> {
        self.chunk_time.take()
    }

    fn step(&mut self, data: &mut Bytes) -> Result<()> {
        match &mut self.state {
            State::Header => {
                self.chunk_time = None;
                // A box that starts in this chunk may lie in it whole: then it is a view of it.
                let origin = self.head.is_empty().then(|| data.clone());
                let need = header_bytes_needed(&self.head);
                let take = (need - self.head.len()).min(data.len());
                let taken = self.consume(data, take);
                self.head.extend_from_slice(&taken);
                // The first 8 bytes may reveal a largesize or a uuid, which need more.
                if self.head.len() == header_bytes_needed(&self.head) {
                    // header_bytes_needed() asks for exactly what BoxHeader::parse() needs,
                    // so a complete header never comes back as "need more".
                    let header = BoxHeader::parse(&self.head)?
                        .ok_or(Error::Truncated { in_box: FourCC::new(b"file"), field: "box header" })?;
                    self.begin_box(header, origin, data)?;
                }
            }
            State::Buffer { buf, header, .. } => {
                self.chunk_time = None;
                let remaining = header.size as usize - buf.len();
                let take = remaining.min(data.len());
                buf.extend_from_slice(&data[..take]);
                self.pos += take as u64;
                let _ = data.split_to(take);
                if take == remaining {
                    let State::Buffer { header, start, buf } = core::mem::replace(&mut self.state, State::Header)
                    else {
                        return Ok(());
                    };
                    self.finish_box(header, start, Bytes::from(buf))?;
                }
            }
            State::Skip { remaining, header } => {
                self.chunk_time = None;
                let take = (*remaining).min(data.len() as u64) as usize;
                *remaining -= take as u64;
                let done = *remaining == 0;
                let header = *header;
                self.consume(data, take);
                if done {
                    self.state = State::Header;
                    self.out.push_back(Unit::Skipped { box_type: header.box_type, size: header.size });
                }
            }
            State::Mdat { remaining, .. } => {
                let take = (*remaining).min(data.len() as u64) as usize;
                let time = self.take_time();
                let chunk = self.consume(data, take);
                if let State::Mdat { remaining, payload, times, .. } = &mut self.state {
                    *remaining -= take as u64;
                    if let Some(t) = time {
                        times.push((payload.len(), t));
                    }
                    payload.push(chunk);
                    if *remaining == 0 {
                        self.finish_mdat()?;
                    }
                }
            }
            State::Failed => return Err(Error::Poisoned),
        }
        Ok(())
    }

    /// A box header was read. `origin` is the chunk the header started in, from the header's
    /// first byte; `data` what is left of the current chunk.
    fn begin_box(&mut self, header: BoxHeader, origin: Option<Bytes>, data: &mut Bytes) -> Result<()> {
        let start = self.pos - self.head.len() as u64;
        let box_type = header.box_type;
        if !self.seen_first_box {
            self.seen_first_box = true;
            if !is_plausible_first_box(box_type) {
                return Err(Error::NotMp4 { first_box: box_type });
            }
        } else if !box_type.0.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ') {
            // Top-level boxes of every muxer have printable names; anything else means the byte
            // stream lost its framing, and its size field cannot be trusted to skip over it.
            return Err(Error::UnexpectedBox { box_type, expected: "an ISO BMFF top-level box" });
        }
        if let Some((_, _)) = &self.pending_moof
            && box_type != codes::MDAT
        {
            return Err(Error::MoofWithoutMdat { next: box_type });
        }
        let header_len = self.head.len() as u64;
        let body = header.size - header_len;
        if box_type == codes::MDAT {
            if self.pending_moof.is_none() {
                return Err(Error::UnexpectedBox {
                    box_type,
                    expected: "a moof before each mdat (set the muxer's fragment-duration for fragmented output)",
                });
            }
            if body > self.limits.max_mdat_size {
                return Err(Error::BoxTooLarge { box_type, size: header.size, limit: self.limits.max_mdat_size });
            }
            self.head.clear();
            self.state = State::Mdat {
                remaining: body,
                payload_offset: start + header_len,
                payload: Payload::new(),
                times: Vec::new(),
            };
            if body == 0 {
                self.finish_mdat()?;
            }
            return Ok(());
        }
        let buffered = [codes::FTYP, codes::MOOV, codes::MOOF].contains(&box_type);
        if buffered {
            if header.size > self.limits.max_box_size {
                return Err(Error::BoxTooLarge { box_type, size: header.size, limit: self.limits.max_box_size });
            }
            // The whole box in the chunk it started in (a muxer's usual buffer): a view, no copy.
            if let Some(whole) = origin.filter(|o| o.len() as u64 >= header.size) {
                let rest = (header.size - header_len) as usize;
                self.consume(data, rest);
                self.head.clear();
                self.state = State::Header;
                return self.finish_box(header, start, whole.slice(..header.size as usize));
            }
            let mut buf = Vec::with_capacity(header.size as usize);
            buf.extend_from_slice(&self.head);
            self.head.clear();
            if buf.len() as u64 == header.size {
                self.state = State::Header;
                return self.finish_box(header, start, Bytes::from(buf));
            }
            self.state = State::Buffer { header, start, buf };
        } else {
            self.head.clear();
            if body == 0 {
                self.state = State::Header;
                self.out.push_back(Unit::Skipped { box_type, size: header.size });
            } else {
                self.state = State::Skip { header, remaining: body };
            }
        }
        Ok(())
    }

    fn finish_box(&mut self, header: BoxHeader, start: u64, bytes: Bytes) -> Result<()> {
        match header.box_type {
            codes::FTYP => self.ftyp = Some(bytes),
            codes::MOOV => self.out.push_back(Unit::Init(InitSegment { ftyp: self.ftyp.clone(), moov: bytes })),
            codes::MOOF => self.pending_moof = Some((bytes, start)),
            other => self.out.push_back(Unit::Skipped { box_type: other, size: header.size }),
        }
        Ok(())
    }

    fn finish_mdat(&mut self) -> Result<()> {
        let State::Mdat { payload_offset, payload, times, .. } = core::mem::replace(&mut self.state, State::Header)
        else {
            return Ok(());
        };
        if let Some((moof, moof_offset)) = self.pending_moof.take() {
            self.out.push_back(Unit::Fragment(RawFragment {
                moof,
                moof_offset,
                payload_offset,
                payload,
                payload_times: times,
            }));
        }
        Ok(())
    }
}

/// How many header bytes are needed to parse the header collected so far.
fn header_bytes_needed(head: &[u8]) -> usize {
    if head.len() < 8 {
        return 8;
    }
    let mut need = if head[..4] == [0, 0, 0, 1] { 16 } else { 8 };
    if head[4..8] == *b"uuid" {
        need += 16;
    }
    need
}

fn is_plausible_first_box(t: FourCC) -> bool {
    [
        codes::FTYP,
        codes::STYP,
        codes::MOOV,
        codes::MOOF,
        codes::FREE,
        codes::SKIP,
        codes::SIDX,
        codes::PRFT,
        codes::EMSG,
        codes::UUID,
        FourCC::new(b"wide"),
        FourCC::new(b"pdin"),
        codes::MDAT,
    ]
    .contains(&t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::writer::{PutBytes, write_box};
    use alloc::vec;

    fn raw_box(t: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_box(&mut v, FourCC::new(t), |o| o.extend_from_slice(body));
        v
    }

    fn stream() -> (Vec<u8>, Vec<u8>) {
        let mut s = Vec::new();
        s.extend(raw_box(b"ftyp", b"isml\0\0\0\x01piffiso2"));
        s.extend(raw_box(b"moov", &[1; 20]));
        s.extend(raw_box(b"styp", b"msdh"));
        s.extend(raw_box(b"moof", &[2; 12]));
        let payload: Vec<u8> = (0..50u8).collect();
        s.extend(raw_box(b"mdat", &payload));
        s.extend(raw_box(b"free", &[0; 3]));
        s.extend(raw_box(b"moof", &[3; 4]));
        s.extend(raw_box(b"mdat", &payload[..7]));
        s.extend(raw_box(b"mfra", &[]));
        (s, payload)
    }

    fn collect(split: &mut BoxSplitter) -> Vec<Unit> {
        core::iter::from_fn(|| split.next_unit()).collect()
    }

    fn check(units: &[Unit], payload: &[u8]) {
        assert_eq!(units.len(), 6, "{units:?}");
        match &units[0] {
            Unit::Init(i) => {
                assert_eq!(i.ftyp.as_ref().unwrap().len(), 24);
                assert_eq!(i.moov.len(), 28);
            }
            u => panic!("{u:?}"),
        }
        assert!(matches!(units[1], Unit::Skipped { box_type: codes::STYP, size: 12 }));
        match &units[2] {
            Unit::Fragment(f) => {
                assert_eq!(f.moof.len(), 20);
                assert_eq!(f.moof_offset, 24 + 28 + 12);
                assert_eq!(f.payload_offset, 24 + 28 + 12 + 20 + 8);
                assert_eq!(f.payload.to_vec(), payload);
            }
            u => panic!("{u:?}"),
        }
        assert!(matches!(units[3], Unit::Skipped { box_type: codes::FREE, .. }));
        match &units[4] {
            Unit::Fragment(f) => assert_eq!(f.payload.to_vec(), &payload[..7]),
            u => panic!("{u:?}"),
        }
        assert!(matches!(units[5], Unit::Skipped { box_type: codes::MFRA, size: 8 }));
    }

    #[test]
    fn any_chunking_gives_the_same_units() {
        let (s, payload) = stream();
        for chunk in [1usize, 2, 3, 7, 8, 9, 16, 33, s.len()] {
            let mut split = BoxSplitter::default();
            for c in s.chunks(chunk) {
                split.push(Bytes::copy_from_slice(c)).unwrap();
            }
            split.finish().unwrap();
            check(&collect(&mut split), &payload);
        }
    }

    #[test]
    fn qtmux_style_mdat_header_then_one_buffer_per_sample() {
        let mut split = BoxSplitter::default();
        split.push(Bytes::from(raw_box(b"ftyp", b"qt  \0\0\0\0"))).unwrap();
        split.push(Bytes::from(raw_box(b"moov", &[0; 8]))).unwrap();
        split.push(Bytes::from(raw_box(b"moof", &[0; 8]))).unwrap();
        let samples: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![i; 10 + i as usize])).collect();
        let total: usize = samples.iter().map(|s| s.len()).sum();
        let mut hdr = Vec::new();
        hdr.put_u32(total as u32 + 8);
        hdr.put_fourcc(codes::MDAT);
        split.push(Bytes::from(hdr)).unwrap();
        for s in &samples {
            split.push(s.clone()).unwrap();
        }
        let units = collect(&mut split);
        let Unit::Fragment(f) = &units[1] else { panic!("{units:?}") };
        // The sample buffers themselves are the payload: no copy was made.
        assert_eq!(f.payload.chunk_count(), 5);
        for (c, s) in f.payload.chunks().zip(&samples) {
            assert_eq!(c.as_ptr(), s.as_ptr());
        }
    }

    #[test]
    fn largesize_mdat_is_accepted() {
        let mut s = Vec::new();
        s.extend(raw_box(b"ftyp", b"iso6\0\0\0\0"));
        s.extend(raw_box(b"moov", &[]));
        s.extend(raw_box(b"moof", &[]));
        s.put_u32(1);
        s.put_fourcc(codes::MDAT);
        s.put_u64(16 + 4);
        s.extend_from_slice(&[9, 9, 9, 9]);
        let mut split = BoxSplitter::default();
        split.push(Bytes::from(s)).unwrap();
        let units = collect(&mut split);
        let Unit::Fragment(f) = &units[1] else { panic!() };
        assert_eq!(f.payload.to_vec(), [9, 9, 9, 9]);
        assert_eq!(f.payload_offset, 16 + 8 + 8 + 16);
    }

    #[test]
    fn garbage_is_not_mp4() {
        let mut split = BoxSplitter::default();
        let err = split.push(Bytes::from_static(b"\x47\x40\x00\x10 this is MPEG-TS, not MP4")).unwrap_err();
        assert!(matches!(err, Error::NotMp4 { .. }), "{err:?}");
        assert_eq!(split.push(Bytes::from_static(b"more")), Err(Error::Poisoned));
    }

    #[test]
    fn moof_must_be_followed_by_mdat_and_units_before_the_fault_survive() {
        let mut s = Vec::new();
        s.extend(raw_box(b"ftyp", b"iso6\0\0\0\0"));
        s.extend(raw_box(b"moov", &[]));
        s.extend(raw_box(b"moof", &[]));
        s.extend(raw_box(b"moof", &[]));
        let mut split = BoxSplitter::default();
        let err = split.push(Bytes::from(s)).unwrap_err();
        assert_eq!(err, Error::MoofWithoutMdat { next: codes::MOOF });
        assert!(matches!(split.next_unit(), Some(Unit::Init(_))));
    }

    #[test]
    fn truncated_stream_is_reported_at_finish() {
        let (s, _) = stream();
        let mut split = BoxSplitter::default();
        split.push(Bytes::copy_from_slice(&s[..s.len() - 30])).unwrap();
        assert!(matches!(split.finish(), Err(Error::Truncated { .. })));
    }

    #[test]
    fn oversized_moov_is_refused_before_buffering() {
        let mut split = BoxSplitter::new(SplitterLimits { max_box_size: 1000, max_mdat_size: 1000 });
        let mut s = raw_box(b"ftyp", b"iso6\0\0\0\0");
        s.put_u32(1_000_000);
        s.put_fourcc(codes::MOOV);
        assert!(matches!(split.push(Bytes::from(s)), Err(Error::BoxTooLarge { box_type: codes::MOOV, .. })));
    }

    #[test]
    fn size_zero_box_is_refused() {
        let mut split = BoxSplitter::default();
        let mut s = raw_box(b"ftyp", b"mp42\0\0\0\0");
        s.extend_from_slice(&[0, 0, 0, 0, b'm', b'd', b'a', b't']);
        assert_eq!(split.push(Bytes::from(s)), Err(Error::SizeZeroBox { box_type: codes::MDAT }));
    }
}
