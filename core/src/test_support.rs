// SPDX-License-Identifier: MPL-2.0
//! Fixtures shared by the unit tests: the tracks of the manifest example (docs/protocol.md A.1) and sample
//! entries that the moov parser accepts.

use alloc::vec;
use alloc::vec::Vec;

use crate::bmff::fourcc::codes;
use crate::bmff::writer::{PutBytes, write_box, write_full_box};
use crate::hex::from_hex;
use crate::movie::{Codec, SampleDefaults, TrackInfo, TrackKind};

/// The video and audio tracks of docs/protocol.md A.1.
pub fn spec_tracks() -> (TrackInfo, TrackInfo) {
    let video = TrackInfo {
        track_id: 1,
        kind: TrackKind::Video,
        handler: codes::VIDE,
        timescale: 10_000_000,
        sample_entry_type: codes::AVC1,
        codec: Codec::H264,
        codec_private_data: from_hex("000000016764001FACD9405005BB0110000003001000000303C0F18319600000000168EBECB22C")
            .unwrap(),
        codecs: None,
        width: 1280,
        height: 720,
        display_width: 1280,
        display_height: 720,
        channels: 0,
        sample_rate: 0,
        bits_per_sample: 16,
        language: *b"und",
        bitrate: None,
        sample_entry: vec![],
        defaults: SampleDefaults::default(),
    };
    let audio = TrackInfo {
        track_id: 2,
        kind: TrackKind::Audio,
        handler: codes::SOUN,
        sample_entry_type: codes::MP4A,
        codec: Codec::Aac { object_type: 2 },
        codec_private_data: vec![0x11, 0x90],
        width: 0,
        height: 0,
        display_width: 0,
        display_height: 0,
        channels: 2,
        sample_rate: 48000,
        language: *b"eng",
        ..video.clone()
    };
    (video, audio)
}

/// A VisualSampleEntry with the given avcC body.
pub fn avc1_entry(width: u16, height: u16, avcc: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    write_box(&mut e, codes::AVC1, |o| {
        o.put_zeros(6);
        o.put_u16(1); // data_reference_index
        o.put_zeros(16);
        o.put_u16(width);
        o.put_u16(height);
        o.put_u32(0x0048_0000);
        o.put_u32(0x0048_0000);
        o.put_u32(0);
        o.put_u16(1); // frame_count
        o.put_zeros(32); // compressorname
        o.put_u16(0x18);
        o.put_u16(0xffff);
        write_box(o, codes::AVCC, |o| o.extend_from_slice(avcc));
    });
    e
}

/// An ISO AudioSampleEntry with an esds for AAC-LC 48 kHz stereo at 128 kb/s.
pub fn mp4a_entry() -> Vec<u8> {
    let mut esds = Vec::new();
    write_full_box(&mut esds, codes::ESDS, 0, 0, |o| {
        // ES_Descriptor > DecoderConfigDescriptor (AAC, max/avg 128000) > DecoderSpecificInfo 1190, SLConfig
        o.extend_from_slice(&[0x03, 0x19, 0, 2, 0, 0x04, 0x11, 0x40, 0x15, 0, 0, 0]);
        o.extend_from_slice(&[0, 1, 0xf4, 0, 0, 1, 0xf4, 0]);
        o.extend_from_slice(&[0x05, 0x02, 0x11, 0x90, 0x06, 0x01, 0x02]);
    });
    let mut mp4a = Vec::new();
    write_box(&mut mp4a, codes::MP4A, |o| {
        o.put_zeros(6);
        o.put_u16(1);
        o.put_zeros(8);
        o.put_u16(2);
        o.put_u16(16);
        o.put_u32(0);
        o.put_u32(48000 << 16);
        o.extend_from_slice(&esds);
    });
    mp4a
}

/// A trun as a muxer might write it: samples and where their data starts in the mdat payload.
pub struct RunSpec {
    pub samples: Vec<crate::track_fragment::Sample>,
    pub payload_start: usize,
}

/// A muxer-style moof+mdat: one traf per (track_id, decode_time, runs), trafs with
/// default-base-is-moof and per-sample everything, data offsets into a shared mdat.
pub fn muxer_fragment(trafs: &[(u32, u64, Vec<RunSpec>)], payload: &[u8]) -> Vec<u8> {
    let build = |data_base: i64| {
        let mut moof = Vec::new();
        write_box(&mut moof, codes::MOOF, |o| {
            write_full_box(o, codes::MFHD, 0, 0, |o| o.put_u32(1));
            for (track_id, decode_time, runs) in trafs {
                write_box(o, codes::TRAF, |o| {
                    write_full_box(o, codes::TFHD, 0, 0x02_0000, |o| o.put_u32(*track_id));
                    write_full_box(o, codes::TFDT, 1, 0, |o| o.put_u64(*decode_time));
                    for run in runs {
                        write_full_box(o, codes::TRUN, 1, 0xF01, |o| {
                            o.put_u32(run.samples.len() as u32);
                            o.put_i32((data_base + run.payload_start as i64) as i32);
                            for s in &run.samples {
                                o.put_u32(s.duration);
                                o.put_u32(s.size);
                                o.put_u32(s.flags);
                                o.put_i32(s.cto);
                            }
                        });
                    }
                });
            }
        });
        moof
    };
    // Data offsets depend on the moof size, which does not depend on their values.
    let size = build(0).len() as i64;
    let mut out = build(size + 8);
    out.put_u32(payload.len() as u32 + 8);
    out.put_fourcc(codes::MDAT);
    out.extend_from_slice(payload);
    out
}

/// A whole muxer stream: ftyp, moov with the example tracks (A.1), then the given fragments.
pub fn muxer_stream(fragments: &[Vec<u8>]) -> Vec<u8> {
    let (mut video, mut audio) = spec_tracks();
    video.sample_entry = avc1_entry(1280, 720, &from_hex("01 64 00 1F FF E1 00 02 67 64 01 00 02 68 EE").unwrap());
    audio.sample_entry = mp4a_entry();
    let mut out = Vec::new();
    write_box(&mut out, codes::FTYP, |o| {
        o.extend_from_slice(b"iso6\0\0\0\0iso6");
    });
    let tracks = [crate::moov::MoovTrack::from_info(&video), crate::moov::MoovTrack::from_info(&audio)];
    crate::moov::write_moov(&mut out, 1000, &tracks);
    for f in fragments {
        out.extend_from_slice(f);
    }
    out
}
