// SPDX-License-Identifier: MPL-2.0
//! SCTE-35 `splice_info_section()`: checking the sections an application or a demuxer hands
//! over, and building `splice_insert` sections for applications that have no SCTE-35 encoder
//! (docs/protocol.md §5.8; ANSI/SCTE 35 §9).
//!
//! A section goes on the wire as it came, CRC included: the sparse track carries it opaque.
//! Checking it here means a bad one is refused with a reason before it reaches a server that
//! would drop it silently, or a player that would act on garbage.

use alloc::vec::Vec;
use core::fmt;

use crate::bmff::writer::PutBytes;

/// `table_id` of every splice_info_section.
pub const TABLE_ID: u8 = 0xFC;
/// The largest `section_length` the standard allows.
const MAX_SECTION_LENGTH: usize = 4093;
/// SCTE-35 times are 33-bit counts of a 90 kHz clock.
pub const PTS_MASK: u64 = (1 << 33) - 1;
pub const PTS_HZ: u64 = 90_000;

/// splice_command_type values (SCTE 35 table 7).
pub mod command_type {
    pub const SPLICE_NULL: u8 = 0x00;
    pub const SPLICE_SCHEDULE: u8 = 0x04;
    pub const SPLICE_INSERT: u8 = 0x05;
    pub const TIME_SIGNAL: u8 = 0x06;
    pub const BANDWIDTH_RESERVATION: u8 = 0x07;
    pub const PRIVATE_COMMAND: u8 = 0xFF;
}

/// CRC-32/MPEG-2: polynomial 0x04C11DB7, initial value all ones, no reflection, no final XOR.
/// Over a whole section, CRC_32 included, it is 0.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

/// Why a section was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionError {
    /// Fewer bytes than the fixed header, or than `section_length` announces.
    Truncated { have: usize, need: usize },
    /// Bytes left over after the section.
    TrailingBytes { section: usize, have: usize },
    /// Not a splice_info_section.
    TableId(u8),
    /// `section_syntax_indicator` must be 0.
    SectionSyntax,
    /// `section_length` beyond 4093.
    SectionTooLong(usize),
    /// The CRC_32 does not match the bytes.
    Crc { stored: u32, computed: u32 },
    /// Only protocol_version 0 exists.
    ProtocolVersion(u8),
    /// A splice_command_type this standard does not define.
    UnknownCommand(u8),
    /// A field of the command or the descriptor loop runs past the section.
    Malformed(&'static str),
}

impl fmt::Display for SectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionError::Truncated { have, need } => {
                write!(f, "the splice_info_section is truncated: {have} bytes, at least {need} needed")
            }
            SectionError::TrailingBytes { section, have } => {
                write!(f, "{have} bytes given for a splice_info_section of {section} bytes")
            }
            SectionError::TableId(t) => write!(f, "table_id is 0x{t:02X}, not 0xFC: this is not a splice_info_section"),
            SectionError::SectionSyntax => write!(f, "section_syntax_indicator is 1; it must be 0"),
            SectionError::SectionTooLong(n) => write!(f, "section_length {n} exceeds 4093"),
            SectionError::Crc { stored, computed } => {
                write!(f, "CRC_32 mismatch: the section says 0x{stored:08X}, its bytes give 0x{computed:08X}")
            }
            SectionError::ProtocolVersion(v) => write!(f, "protocol_version is {v}; only 0 is defined"),
            SectionError::UnknownCommand(t) => write!(f, "splice_command_type 0x{t:02X} is not defined by SCTE 35"),
            SectionError::Malformed(what) => write!(f, "the splice_info_section is malformed: {what}"),
        }
    }
}

impl core::error::Error for SectionError {}

/// A `splice_insert()`, as read or as to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceInsert {
    pub event_id: u32,
    /// `splice_event_cancel_indicator`: withdraws an earlier event with the same id; nothing
    /// else is carried.
    pub cancel: bool,
    pub out_of_network: bool,
    /// `program_splice_flag`; component splices are read but not built.
    pub program_splice: bool,
    /// `splice_immediate_flag`.
    pub immediate: bool,
    /// `pts_time` of a program splice that is not immediate (90 kHz, 33 bits).
    pub pts_time: Option<u64>,
    /// `break_duration()`: auto_return and duration (90 kHz, 33 bits).
    pub break_duration: Option<(bool, u64)>,
    pub unique_program_id: u16,
    pub avail_num: u8,
    pub avails_expected: u8,
}

impl SpliceInsert {
    /// The cancellation of event `event_id`.
    pub fn cancel(event_id: u32) -> Self {
        SpliceInsert {
            event_id,
            cancel: true,
            out_of_network: false,
            program_splice: false,
            immediate: false,
            pts_time: None,
            break_duration: None,
            unique_program_id: 0,
            avail_num: 0,
            avails_expected: 0,
        }
    }

    /// A program splice at `pts_time` (`None` = immediate), with an auto-return break of
    /// `break_duration` (90 kHz) when given.
    pub fn program(event_id: u32, out_of_network: bool, pts_time: Option<u64>, break_duration: Option<u64>) -> Self {
        SpliceInsert {
            cancel: false,
            out_of_network,
            program_splice: true,
            immediate: pts_time.is_none(),
            pts_time,
            break_duration: break_duration.map(|d| (true, d)),
            ..SpliceInsert::cancel(event_id)
        }
    }
}

/// The splice command of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceCommand {
    Null,
    Schedule,
    Insert(SpliceInsert),
    /// `time_signal()`: the splice time, if specified (90 kHz).
    TimeSignal {
        pts_time: Option<u64>,
    },
    BandwidthReservation,
    Private {
        identifier: u32,
    },
    /// `encrypted_packet` is set: the command cannot be read, the section is passed as it is.
    Encrypted,
}

/// What a checked section says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceInfo {
    /// Added to every pts_time of the section (90 kHz, 33 bits, modulo 2^33).
    pub pts_adjustment: u64,
    pub tier: u16,
    pub command: SpliceCommand,
}

impl SpliceInfo {
    /// The splice_event_id of a splice_insert.
    pub fn event_id(&self) -> Option<u32> {
        match self.command {
            SpliceCommand::Insert(i) => Some(i.event_id),
            _ => None,
        }
    }

    /// The splice instant the section names, adjusted, on the 90 kHz clock (modulo 2^33).
    pub fn splice_pts(&self) -> Option<u64> {
        let t = match self.command {
            SpliceCommand::Insert(i) if !i.cancel => i.pts_time,
            SpliceCommand::TimeSignal { pts_time } => pts_time,
            _ => None,
        }?;
        Some((t + self.pts_adjustment) & PTS_MASK)
    }

    /// The break duration of a splice_insert (90 kHz).
    pub fn break_duration(&self) -> Option<u64> {
        match self.command {
            SpliceCommand::Insert(i) if !i.cancel => i.break_duration.map(|(_, d)| d),
            _ => None,
        }
    }

    /// Whether the section marks a splice point in the media, where a key frame (and maybe a
    /// fragment boundary) belongs: a splice_insert that is not a cancellation, or a time_signal.
    pub fn marks_a_splice(&self) -> bool {
        match self.command {
            SpliceCommand::Insert(i) => !i.cancel,
            SpliceCommand::TimeSignal { .. } => true,
            _ => false,
        }
    }
}

/// Reads big-endian fields from a section, with bounds.
struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SectionError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or(SectionError::Malformed(what))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, SectionError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, SectionError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, SectionError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A 33-bit time after 7 flag/reserved bits: 5 bytes.
    fn time33(&mut self, what: &'static str) -> Result<(u8, u64), SectionError> {
        let b = self.take(5, what)?;
        let t = (u64::from(b[0] & 1) << 32) | u64::from(u32::from_be_bytes([b[1], b[2], b[3], b[4]]));
        Ok((b[0], t))
    }
    /// `splice_time()`: 1 byte when no time is specified, 5 with one.
    fn splice_time(&mut self) -> Result<Option<u64>, SectionError> {
        let first = *self.data.get(self.pos).ok_or(SectionError::Malformed("splice_time"))?;
        if first & 0x80 != 0 {
            Ok(Some(self.time33("splice_time")?.1))
        } else {
            self.pos += 1;
            Ok(None)
        }
    }
}

/// Checks a complete splice_info_section (exactly its bytes, CRC_32 included) and reads what
/// the sparse track needs from it.
pub fn parse_section(data: &[u8]) -> Result<SpliceInfo, SectionError> {
    if data.len() < 3 {
        return Err(SectionError::Truncated { have: data.len(), need: 3 });
    }
    if data[0] != TABLE_ID {
        return Err(SectionError::TableId(data[0]));
    }
    if data[1] & 0x80 != 0 {
        return Err(SectionError::SectionSyntax);
    }
    let section_length = usize::from(u16::from_be_bytes([data[1], data[2]]) & 0x0FFF);
    if section_length > MAX_SECTION_LENGTH {
        return Err(SectionError::SectionTooLong(section_length));
    }
    let total = 3 + section_length;
    // Fixed header (14 bytes), command type, descriptor_loop_length and CRC_32.
    let minimum = 14 + 2 + 4;
    if data.len() < total || total < minimum {
        return Err(SectionError::Truncated { have: data.len(), need: total.max(minimum) });
    }
    if data.len() > total {
        return Err(SectionError::TrailingBytes { section: total, have: data.len() });
    }
    let stored = u32::from_be_bytes([data[total - 4], data[total - 3], data[total - 2], data[total - 1]]);
    let computed = crc32_mpeg2(&data[..total - 4]);
    if stored != computed {
        return Err(SectionError::Crc { stored, computed });
    }
    let mut r = Fields { data: &data[..total - 4], pos: 3 };
    let protocol_version = r.u8("protocol_version")?;
    if protocol_version != 0 {
        return Err(SectionError::ProtocolVersion(protocol_version));
    }
    let (flags, pts_adjustment) = r.time33("pts_adjustment")?;
    let encrypted = flags & 0x80 != 0;
    let _cw_index = r.u8("cw_index")?;
    let b = r.take(3, "tier")?;
    let tier = (u16::from(b[0]) << 4) | u16::from(b[1] >> 4);
    let command_length = (usize::from(b[1] & 0x0F) << 8) | usize::from(b[2]);
    if encrypted {
        return Ok(SpliceInfo { pts_adjustment, tier, command: SpliceCommand::Encrypted });
    }
    let command_type = r.u8("splice_command_type")?;
    let start = r.pos;
    let command = match command_type {
        command_type::SPLICE_NULL => SpliceCommand::Null,
        command_type::SPLICE_SCHEDULE => {
            skip_schedule(&mut r)?;
            SpliceCommand::Schedule
        }
        command_type::SPLICE_INSERT => SpliceCommand::Insert(read_insert(&mut r)?),
        command_type::TIME_SIGNAL => SpliceCommand::TimeSignal { pts_time: r.splice_time()? },
        command_type::BANDWIDTH_RESERVATION => SpliceCommand::BandwidthReservation,
        command_type::PRIVATE_COMMAND => {
            let identifier = r.u32("private_command identifier")?;
            // The private bytes run to splice_command_length.
            if command_length == 0xFFF {
                return Err(SectionError::Malformed("private_command without splice_command_length"));
            }
            SpliceCommand::Private { identifier }
        }
        other => return Err(SectionError::UnknownCommand(other)),
    };
    // 0xFFF is the legacy "length not given"; otherwise the command must fill it exactly
    // (a private command's bytes are opaque and only need to fit).
    if command_length != 0xFFF {
        let read = r.pos - start;
        let is_private = matches!(command, SpliceCommand::Private { .. });
        if read > command_length || (!is_private && read != command_length) {
            return Err(SectionError::Malformed("splice_command_length does not match the command"));
        }
        r.pos = start;
        r.take(command_length, "splice_command")?;
    }
    let loop_length = usize::from(r.u16("descriptor_loop_length")?);
    r.take(loop_length, "descriptor loop")?;
    if r.pos != r.data.len() {
        return Err(SectionError::Malformed("bytes between the descriptor loop and CRC_32"));
    }
    Ok(SpliceInfo { pts_adjustment, tier, command })
}

fn read_insert(r: &mut Fields<'_>) -> Result<SpliceInsert, SectionError> {
    let event_id = r.u32("splice_event_id")?;
    let cancel = r.u8("splice_event_cancel_indicator")? & 0x80 != 0;
    let mut insert = SpliceInsert { cancel, ..SpliceInsert::cancel(event_id) };
    if cancel {
        return Ok(insert);
    }
    let flags = r.u8("splice_insert flags")?;
    insert.out_of_network = flags & 0x80 != 0;
    insert.program_splice = flags & 0x40 != 0;
    let duration_flag = flags & 0x20 != 0;
    insert.immediate = flags & 0x10 != 0;
    if insert.program_splice && !insert.immediate {
        insert.pts_time = r.splice_time()?;
    }
    if !insert.program_splice {
        let count = r.u8("component_count")?;
        for _ in 0..count {
            r.u8("component_tag")?;
            if !insert.immediate {
                r.splice_time()?;
            }
        }
    }
    if duration_flag {
        let (first, d) = r.time33("break_duration")?;
        insert.break_duration = Some((first & 0x80 != 0, d));
    }
    insert.unique_program_id = r.u16("unique_program_id")?;
    insert.avail_num = r.u8("avail_num")?;
    insert.avails_expected = r.u8("avails_expected")?;
    Ok(insert)
}

fn skip_schedule(r: &mut Fields<'_>) -> Result<(), SectionError> {
    let count = r.u8("splice_count")?;
    for _ in 0..count {
        r.u32("splice_event_id")?;
        let cancel = r.u8("splice_event_cancel_indicator")? & 0x80 != 0;
        if cancel {
            continue;
        }
        let flags = r.u8("splice_schedule flags")?;
        let program = flags & 0x40 != 0;
        let duration = flags & 0x20 != 0;
        if program {
            r.u32("utc_splice_time")?;
        } else {
            let n = r.u8("component_count")?;
            r.take(usize::from(n) * 5, "components")?;
        }
        if duration {
            r.take(5, "break_duration")?;
        }
        r.take(4, "unique_program_id, avail_num, avails_expected")?;
    }
    Ok(())
}

/// Builds a splice_info_section holding one program `splice_insert` (no descriptors, not
/// encrypted, tier 0xFFF, `pts_adjustment` 0), CRC_32 included.
pub fn build_splice_insert(insert: &SpliceInsert) -> Vec<u8> {
    let mut cmd = Vec::new();
    cmd.put_u32(insert.event_id);
    // splice_event_cancel_indicator, then 7 reserved bits (ones).
    cmd.put_u8(if insert.cancel { 0xFF } else { 0x7F });
    if !insert.cancel {
        let duration_flag = insert.break_duration.is_some();
        let immediate = insert.immediate || insert.pts_time.is_none();
        // out_of_network, program_splice (1), duration, splice_immediate,
        // event_id_compliance_flag (1) and 3 reserved bits (ones).
        cmd.put_u8(
            (u8::from(insert.out_of_network) << 7)
                | 0x40
                | (u8::from(duration_flag) << 5)
                | (u8::from(immediate) << 4)
                | 0x0F,
        );
        if !immediate {
            put_time33(&mut cmd, 0xFE, insert.pts_time.unwrap_or(0));
        }
        if let Some((auto_return, d)) = insert.break_duration {
            put_time33(&mut cmd, (u8::from(auto_return) << 7) | 0x7E, d);
        }
        cmd.put_u16(insert.unique_program_id);
        cmd.put_u8(insert.avail_num);
        cmd.put_u8(insert.avails_expected);
    }
    let mut s = Vec::with_capacity(20 + cmd.len());
    s.put_u8(TABLE_ID);
    // section_syntax_indicator 0, private_indicator 0, sap_type 3 (not specified); the
    // length is patched below.
    s.put_u16(0x3000);
    s.put_u8(0); // protocol_version
    put_time33(&mut s, 0x00, 0); // encrypted_packet 0, encryption_algorithm 0, pts_adjustment 0
    s.put_u8(0); // cw_index
    // tier 0xFFF, splice_command_length
    let len = cmd.len() as u32;
    s.put_u8(0xFF);
    s.put_u8(0xF0 | ((len >> 8) as u8 & 0x0F));
    s.put_u8(len as u8);
    s.put_u8(command_type::SPLICE_INSERT);
    s.extend_from_slice(&cmd);
    s.put_u16(0); // descriptor_loop_length
    let section_length = (s.len() + 4 - 3) as u16;
    s[1] = 0x30 | ((section_length >> 8) as u8 & 0x0F);
    s[2] = section_length as u8;
    let crc = crc32_mpeg2(&s);
    s.put_u32(crc);
    s
}

/// Flag bits in the top 7 bits of the first byte, then a 33-bit time.
fn put_time33(out: &mut Vec<u8>, flags: u8, t: u64) {
    out.put_u8((flags & 0xFE) | ((t >> 32) & 1) as u8);
    out.put_u32(t as u32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::parse_hex;

    /// The splice_insert of docs/protocol.md A.4 (Azure's RTMP example, base64
    /// `/DAlAAAAAAXdAP/wFAUAAAPqf+/+AWRhuP4AUmNjAAEBAQAA8g1eNw==`).
    const SPEC_SECTION: &str =
        "FC302500 00000005 DD00FFF0 14050000 03EA7FEF FE016461 B8FE0052 63630001 01010000 F20D5E37";

    #[test]
    fn crc32_mpeg2_check_value() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        // Over a section with its CRC the remainder is 0.
        assert_eq!(crc32_mpeg2(&parse_hex(SPEC_SECTION)), 0);
    }

    #[test]
    fn reads_the_spec_splice_insert() {
        let info = parse_section(&parse_hex(SPEC_SECTION)).unwrap();
        assert_eq!(info.pts_adjustment, 0x5DD);
        assert_eq!(info.tier, 0xFFF);
        let SpliceCommand::Insert(i) = info.command else { panic!("{info:?}") };
        assert_eq!(i.event_id, 1002);
        assert!(i.out_of_network && i.program_splice && !i.immediate && !i.cancel);
        assert_eq!(i.pts_time, Some(0x0164_61B8));
        assert_eq!(i.break_duration, Some((true, 0x0052_6363)));
        assert_eq!((i.unique_program_id, i.avail_num, i.avails_expected), (1, 1, 1));
        assert_eq!(info.splice_pts(), Some(0x0164_61B8 + 0x5DD));
        assert_eq!(info.event_id(), Some(1002));
        assert!(info.marks_a_splice());
    }

    #[test]
    fn builds_the_spec_section_but_for_pts_adjustment() {
        let spec = parse_section(&parse_hex(SPEC_SECTION)).unwrap();
        let SpliceCommand::Insert(insert) = spec.command else { unreachable!() };
        let built = build_splice_insert(&insert);
        // The example (docs/protocol.md A.4) has pts_adjustment 0x5DD; ours is 0. Patch it in,
        // redo the CRC, and the bytes are the example's.
        let mut patched = built.clone();
        patched[7] = 0x05;
        patched[8] = 0xDD;
        let n = patched.len();
        let crc = crc32_mpeg2(&patched[..n - 4]);
        patched[n - 4..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(patched, parse_hex(SPEC_SECTION));
        let back = parse_section(&built).unwrap();
        assert_eq!(back.command, SpliceCommand::Insert(insert));
        assert_eq!(back.pts_adjustment, 0);
    }

    #[test]
    fn builds_cancels_and_immediate_splices() {
        let cancel = SpliceInsert::cancel(7);
        let s = build_splice_insert(&cancel);
        assert_eq!(s.len(), 3 + 11 + 5 + 2 + 4);
        let info = parse_section(&s).unwrap();
        assert_eq!(info.event_id(), Some(7));
        assert!(!info.marks_a_splice());
        assert_eq!(info.splice_pts(), None);
        let immediate = SpliceInsert::program(7, true, None, None);
        let info = parse_section(&build_splice_insert(&immediate)).unwrap();
        let SpliceCommand::Insert(i) = info.command else { unreachable!() };
        assert!(i.immediate && i.pts_time.is_none() && i.out_of_network);
    }

    #[test]
    fn reads_time_signal_and_null() {
        // time_signal at 0x1_0000_0000 (the 33rd bit set), a 6-byte descriptor loop.
        let mut s = parse_hex("FC 30 00 00 00 00 00 00 00 00 FF F0 05 06 FF 00 00 00 00 00 06 02 04 43 55 45 49");
        let len = (s.len() + 4 - 3) as u8;
        s[2] = len;
        let crc = crc32_mpeg2(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        let info = parse_section(&s).unwrap();
        assert_eq!(info.command, SpliceCommand::TimeSignal { pts_time: Some(1 << 32) });
        assert_eq!(info.splice_pts(), Some(1 << 32));
        assert!(info.marks_a_splice());
        let mut null = parse_hex("FC 30 11 00 00 00 00 00 00 00 FF F0 00 00 00 00");
        let crc = crc32_mpeg2(&null);
        null.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(parse_section(&null).unwrap().command, SpliceCommand::Null);
    }

    #[test]
    fn refuses_bad_sections() {
        let good = parse_hex(SPEC_SECTION);
        let mut bad_crc = good.clone();
        bad_crc[39] ^= 1;
        assert!(matches!(parse_section(&bad_crc), Err(SectionError::Crc { .. })));
        assert_eq!(parse_section(&good[..30]), Err(SectionError::Truncated { have: 30, need: 40 }));
        assert_eq!(parse_section(&good[..2]), Err(SectionError::Truncated { have: 2, need: 3 }));
        let mut longer = good.clone();
        longer.push(0xFF);
        assert_eq!(parse_section(&longer), Err(SectionError::TrailingBytes { section: 40, have: 41 }));
        let mut pat = good.clone();
        pat[0] = 0x00;
        assert_eq!(parse_section(&pat), Err(SectionError::TableId(0)));
        // An unknown command type, with a valid CRC.
        let mut unknown = good.clone();
        unknown[13] = 0x42;
        let crc = crc32_mpeg2(&unknown[..36]);
        unknown[36..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(parse_section(&unknown), Err(SectionError::UnknownCommand(0x42)));
        // A command length that does not match the splice_insert.
        let mut wrong_len = good.clone();
        wrong_len[12] = 0x13;
        let crc = crc32_mpeg2(&wrong_len[..36]);
        wrong_len[36..].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(parse_section(&wrong_len), Err(SectionError::Malformed(_))));
        assert!(parse_section(&[]).is_err());
    }

    #[test]
    fn no_input_panics() {
        // Every prefix and every single-byte corruption of a valid section is refused or read,
        // never a panic.
        let good = parse_hex(SPEC_SECTION);
        for n in 0..good.len() {
            let _ = parse_section(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0x00, 0xFF, 0x80, 0x7F] {
                let mut s = good.clone();
                s[i] = v;
                let n = s.len();
                let crc = crc32_mpeg2(&s[..n - 4]);
                s[n - 4..].copy_from_slice(&crc.to_be_bytes());
                let _ = parse_section(&s);
            }
        }
    }
}
