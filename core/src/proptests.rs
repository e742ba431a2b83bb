// SPDX-License-Identifier: MPL-2.0
//! Property tests: every box and section this crate writes parses back to what was written,
//! for any field values. Byte-exact vectors live next to each writer; these cover
//! the value space around them.

use alloc::string::String;
use alloc::vec::Vec;

use proptest::prelude::*;

use crate::bmff::Boxes;
use crate::manifest::{LiveServerManifest, ManifestTrack, TrackElement};
use crate::moov::{MoovTrack, write_moov};
use crate::movie::parse_moov;
use crate::scte35::{SpliceCommand, SpliceInsert, build_splice_insert, parse_section};
use crate::smooth_boxes::Tfxd;
use crate::test_support::{avc1_entry, mp4a_entry, spec_tracks};

/// Text as it may reach the manifest: names, URLs, anything with XML's special characters.
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 _.:/&<>\"'=é€-]{0,24}").unwrap()
}

fn element() -> impl Strategy<Value = TrackElement> {
    prop_oneof![Just(TrackElement::Video), Just(TrackElement::Audio), Just(TrackElement::TextStream)]
}

fn track() -> impl Strategy<Value = ManifestTrack> {
    (element(), text(), any::<u32>(), proptest::option::of(text()), proptest::collection::vec((text(), text()), 0..6))
        .prop_map(|(element, src, system_bitrate, system_language, params)| ManifestTrack {
            element,
            src,
            system_bitrate,
            system_language,
            params,
        })
}

proptest! {
    #[test]
    fn tfxd_round_trips(version in 0u8..=2, time: u64, duration: u64, index: u64) {
        let (time, duration) = if version == 0 { (time & 0xffff_ffff, duration & 0xffff_ffff) } else { (time, duration) };
        let t = Tfxd {
            version,
            fragment_absolute_time: time,
            fragment_duration: duration,
            fragment_index: (version == 2).then_some(index),
        };
        let mut out = Vec::new();
        t.write(&mut out);
        let b = Boxes::new(&out).next().unwrap().unwrap();
        prop_assert_eq!(Tfxd::parse(b).unwrap(), t);
    }

    #[test]
    fn the_live_server_manifest_round_trips(creator in proptest::option::of(text()), tracks in proptest::collection::vec(track(), 0..5)) {
        let m = LiveServerManifest { creator, tracks };
        let mut out = Vec::new();
        m.write_box(&mut out);
        let b = Boxes::new(&out).next().unwrap().unwrap();
        prop_assert_eq!(LiveServerManifest::parse_box(b).unwrap(), m);
    }

    #[test]
    fn splice_insert_round_trips(
        event_id: u32,
        cancel: bool,
        out_of_network: bool,
        immediate: bool,
        pts in 0u64..(1 << 33),
        duration in proptest::option::of((any::<bool>(), 0u64..(1 << 33))),
        unique_program_id: u16,
        avail_num: u8,
        avails_expected: u8,
    ) {
        let insert = if cancel {
            SpliceInsert::cancel(event_id)
        } else {
            SpliceInsert {
                event_id,
                cancel,
                out_of_network,
                program_splice: true,
                immediate,
                pts_time: (!immediate).then_some(pts),
                break_duration: duration,
                unique_program_id,
                avail_num,
                avails_expected,
            }
        };
        let section = build_splice_insert(&insert);
        let info = parse_section(&section).unwrap();
        prop_assert_eq!(info.command, SpliceCommand::Insert(insert));
    }

    #[test]
    fn a_written_moov_parses_back(
        video_id in 1u32..1000,
        timescale in 1u32..=90_000_000,
        width in 16u16..4096,
        height in 16u16..2160,
        audio_rate in prop_oneof![Just(44_100u32), Just(48_000u32)],
        movie_timescale in 1u32..=10_000_000,
    ) {
        let (mut video, mut audio) = spec_tracks();
        video.track_id = video_id;
        video.timescale = timescale;
        video.sample_entry = avc1_entry(width, height, &crate::hex::from_hex("0164001FFFE100026764010002 68EE".replace(' ', "").as_str()).unwrap());
        audio.track_id = video_id + 1;
        audio.timescale = audio_rate;
        audio.sample_entry = mp4a_entry();
        let mut out = Vec::new();
        write_moov(&mut out, movie_timescale, &[MoovTrack::from_info(&video), MoovTrack::from_info(&audio)]);
        let movie = parse_moov(&out).unwrap();
        prop_assert_eq!(movie.tracks.len(), 2);
        let (v, a) = (&movie.tracks[0], &movie.tracks[1]);
        prop_assert_eq!((v.track_id, v.timescale, v.width, v.height), (video_id, timescale, width, height));
        prop_assert_eq!(&v.sample_entry, &video.sample_entry);
        prop_assert_eq!((a.track_id, a.timescale), (video_id + 1, audio_rate));
        prop_assert_eq!(&a.sample_entry, &audio.sample_entry);
    }
}
