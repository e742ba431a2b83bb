// SPDX-License-Identifier: MPL-2.0
//! Recorded muxer output: the buffers a muxer pushed, with their timestamps and flags, so that
//! element tests (`gst_check::Harness`) can replay exactly what a live pipeline gave the sink,
//! without an encoder, in a fraction of the time.
//!
//! The file: a line `fmp4ingest-recording 1`, a line with the caps, then per buffer PTS, DTS
//! and duration (u64 big-endian nanoseconds, `u64::MAX` = none), the buffer flags (u32) and the
//! length (u32), then the bytes. `tests/tools/record.rs` makes one from a pipeline.

use std::io::{self, Read, Write};

const MAGIC: &str = "fmp4ingest-recording 1";
const NONE: u64 = u64::MAX;

/// One buffer the muxer pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedBuffer {
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    pub duration: Option<u64>,
    pub flags: u32,
    pub data: Vec<u8>,
}

/// A recording: the caps and the buffers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub caps: String,
    pub buffers: Vec<RecordedBuffer>,
}

impl Recording {
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "{MAGIC}")?;
        writeln!(w, "{}", self.caps)?;
        for b in &self.buffers {
            for t in [b.pts, b.dts, b.duration] {
                w.write_all(&t.unwrap_or(NONE).to_be_bytes())?;
            }
            w.write_all(&b.flags.to_be_bytes())?;
            let len = u32::try_from(b.data.len()).map_err(|_| io::Error::other("buffer over 4 GiB"))?;
            w.write_all(&len.to_be_bytes())?;
            w.write_all(&b.data)?;
        }
        Ok(())
    }

    pub fn read(bytes: &[u8]) -> io::Result<Recording> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("recording: {what}"));
        let mut lines = bytes.splitn(3, |b| *b == b'\n');
        if lines.next() != Some(MAGIC.as_bytes()) {
            return Err(bad("not a recording"));
        }
        let caps = String::from_utf8(lines.next().ok_or_else(|| bad("no caps"))?.to_vec()).map_err(|_| bad("caps"))?;
        let mut rest = lines.next().unwrap_or_default();
        let mut buffers = Vec::new();
        while !rest.is_empty() {
            let mut head = [0u8; 32];
            rest.read_exact(&mut head).map_err(|_| bad("truncated record head"))?;
            let u64_at = |i: usize| u64::from_be_bytes(head[i..i + 8].try_into().unwrap_or_default());
            let time = |v: u64| (v != NONE).then_some(v);
            let flags = u32::from_be_bytes(head[24..28].try_into().unwrap_or_default());
            let len = u32::from_be_bytes(head[28..32].try_into().unwrap_or_default()) as usize;
            if rest.len() < len {
                return Err(bad("truncated buffer"));
            }
            let (data, tail) = rest.split_at(len);
            buffers.push(RecordedBuffer {
                pts: time(u64_at(0)),
                dts: time(u64_at(8)),
                duration: time(u64_at(16)),
                flags,
                data: data.to_vec(),
            });
            rest = tail;
        }
        Ok(Recording { caps, buffers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let r = Recording {
            caps: "video/quicktime, variant=(string)iso-fragmented".into(),
            buffers: vec![
                RecordedBuffer { pts: Some(0), dts: None, duration: Some(5), flags: 0x40, data: vec![1, 2, 3] },
                RecordedBuffer { pts: None, dts: Some(9), duration: None, flags: 0, data: vec![] },
            ],
        };
        let mut bytes = Vec::new();
        r.write(&mut bytes).unwrap();
        assert_eq!(Recording::read(&bytes).unwrap(), r);
        assert!(Recording::read(&bytes[..bytes.len() - 1]).is_err());
        assert!(Recording::read(b"nope\n").is_err());
    }
}
