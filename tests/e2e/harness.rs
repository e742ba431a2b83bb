// SPDX-License-Identifier: MPL-2.0
//! The element on a `gst_check::Harness`, fed with recorded muxer output
//! (`tests/data/isofmp4mux-av.rec`, made by `fmp4ingest-record-muxer`): no encoder, a test clock,
//! deterministic and fast; and, where the pace of the input is the point, muxer output encoded
//! at test time and pushed with pauses. EOS and the final response, key-unit requests at the grid's
//! boundaries (parsed back with gstreamer-video's event API), ad events, bad input, and every
//! property's range. The server is our receiver on loopback.

mod common;

use std::time::{Duration, Instant};

use common::check_media_post;
use fmp4ingest_receiver::recording::Recording;
use fmp4ingest_receiver::{Behaviour, Fault, FaultKind, Receiver};
use gst::prelude::*;
use gst_check::Harness;

const SEC: u64 = 1_000_000_000;

fn recording() -> Recording {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/data/isofmp4mux-av.rec")).expect("the recording");
    Recording::read(&bytes).expect("a recording")
}

fn buffer(b: &fmp4ingest_receiver::recording::RecordedBuffer) -> gst::Buffer {
    let mut buf = gst::Buffer::from_slice(b.data.clone());
    let m = buf.get_mut().expect("writable");
    m.set_pts(b.pts.map(gst::ClockTime::from_nseconds));
    m.set_dts(b.dts.map(gst::ClockTime::from_nseconds));
    m.set_duration(b.duration.map(gst::ClockTime::from_nseconds));
    m.set_flags(gst::BufferFlags::from_bits_truncate(b.flags));
    buf
}

/// A sink with `props` (and `location`) on a harness with a test clock, playing, with the
/// recording's caps; its bus, to read its messages.
fn harness(location: &str, props: &[(&str, &str)]) -> (Harness, gst::Bus) {
    common::init();
    let sink = gst::ElementFactory::make("fmp4ingestsink").property("location", location).build().unwrap();
    for (k, v) in props {
        sink.set_property_from_str(k, v);
    }
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut h = Harness::with_element(&sink, Some("sink"), None);
    h.use_testclock();
    h.play();
    h.set_src_caps_str(&recording().caps);
    (h, bus)
}

fn messages(bus: &gst::Bus, kind: gst::MessageType) -> Vec<gst::Message> {
    std::iter::from_fn(|| bus.pop_filtered(&[kind])).collect()
}

/// The warnings on `bus`: each one's message and debug text.
fn warnings(bus: &gst::Bus) -> Vec<String> {
    messages(bus, gst::MessageType::Warning)
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(format!("{} {:?}", w.error(), w.debug())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_recording_goes_out_whole_and_eos_waits_for_the_final_response() {
    let rx = Receiver::start().unwrap();
    let (mut h, bus) = harness(&rx.url("live", "h"), &[]);
    let rec = recording();
    for b in &rec.buffers {
        assert_eq!(h.push(buffer(b)), Ok(gst::FlowSuccess::Ok));
    }
    let started = Instant::now();
    // EOS returns once the server answered the end of the body.
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(started.elapsed() < Duration::from_secs(10));
    let view = rx.stream("h");
    let posts = view.media_posts();
    assert_eq!(posts.len(), 1);
    let post = posts[0];
    assert!(post.complete && post.status == Some(200), "{post:?}");
    assert!(check_media_post(post).is_empty(), "{:?}", check_media_post(post));
    // Six seconds: three 2 s fragments per track on the grid (audio ends with a few samples
    // more, in a short last fragment).
    for t in view.track_ids() {
        let timeline = view.timeline(t);
        assert!((3..=4).contains(&timeline.len()), "track {t}: {timeline:?}");
        assert!(view.gaps(t).is_empty());
    }
    assert!(messages(&bus, gst::MessageType::Error).is_empty());
}

/// 16 s of 600 kbit/s H.264 in 2 s fragments from isofmp4mux, encoded as fast as it goes
/// (once per test binary): the muxer's caps, and its buffers grouped per fragment (the header
/// with the first).
fn encoded_fragments() -> (gst::Caps, Vec<Vec<gst::Buffer>>) {
    static ENCODED: std::sync::OnceLock<(gst::Caps, Vec<Vec<gst::Buffer>>)> = std::sync::OnceLock::new();
    ENCODED.get_or_init(|| encode(16)).clone()
}

fn encode(seconds: u32) -> (gst::Caps, Vec<Vec<gst::Buffer>>) {
    common::init();
    let mut enc = Harness::new_parse(&format!(
        "videotestsrc num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc speed-preset=ultrafast bitrate=600 key-int-max=60 ! h264parse ! \
         isofmp4mux fragment-duration=2000000000",
        seconds * 30
    ));
    enc.play();
    let mut fragments: Vec<Vec<gst::Buffer>> = vec![Vec::new()];
    let mut open = false;
    while let Ok(Some(b)) = enc.pull_until_eos() {
        // A fragment starts with the buffer that holds its moof (after styp, when there is one).
        let starts = b.map_readable().is_ok_and(|m| matches!(m.get(4..8), Some(b"styp" | b"moof")));
        if starts && std::mem::replace(&mut open, true) {
            fragments.push(Vec::new());
        }
        fragments.last_mut().expect("a group").push(b);
    }
    let caps = enc.sinkpad().and_then(|p| p.current_caps()).expect("the muxer's caps");
    (caps, fragments)
}

#[test]
fn a_server_that_read_everything_is_not_taken_for_stalled_while_the_stream_pauses() {
    // A busy but healthy server, with a 256 KiB receive buffer, that waits 200 ms before each
    // read from its socket: its kernel acknowledges each fragment before the server reads it, so the window
    // it advertises then is smaller by the fragment; once the server has read it, its kernel
    // sends no update (the window would not double). The stream then pauses for longer than the
    // send timeout (3 s with 2 s fragments): that is no stall, and the POST goes on.
    let (caps, fragments) = encoded_fragments();
    assert!(fragments.len() >= 7, "{} fragments", fragments.len());
    let rx = Receiver::start_with(Behaviour { recv_buffer: Some(256 << 10), ..Behaviour::default() }, "127.0.0.1:0")
        .unwrap();
    rx.inject(Fault::new(FaultKind::ReadDelay(Duration::from_millis(200)), Duration::from_secs(120)));
    let sink =
        gst::ElementFactory::make("fmp4ingestsink").property("location", rx.url("live", "pause")).build().unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut h = Harness::with_element(&sink, Some("sink"), None);
    h.play();
    h.set_src_caps(caps);
    for (i, fragment) in fragments.into_iter().take(7).enumerate() {
        // The first four at once (the server's window grows to its 256 KiB buffer's worth),
        // then one every 4.5 s: each pause is a chance to take the stale window for a stall.
        if i >= 4 {
            std::thread::sleep(Duration::from_millis(4500));
        }
        for b in fragment {
            assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let warnings = warnings(&bus);
    let view = rx.stream("pause");
    let posts = view.media_posts();
    assert_eq!(
        posts.len(),
        1,
        "the POST was abandoned: {warnings:?} {:?}",
        posts
            .iter()
            .map(|p| (
                p.complete,
                p.status,
                p.bytes,
                p.fragments.len(),
                p.ended_by_receiver.clone(),
                p.violations.clone()
            ))
            .collect::<Vec<_>>()
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(posts[0].complete && posts[0].status == Some(200), "{:?}", posts[0]);
    assert!(check_media_post(posts[0]).is_empty(), "{:?}", check_media_post(posts[0]));
    assert_eq!(view.timeline(1).len(), 7, "{:?}", view.timeline(1));
}

#[test]
fn key_units_are_asked_for_a_lead_ahead_of_each_boundary() {
    let rx = Receiver::start().unwrap();
    let (mut h, _bus) = harness(&rx.url("live", "k"), &[("keyframe-lead", "500000000")]);
    // The harness went to PLAYING at time 0: the first request is for the 2 s boundary, at 1.5 s.
    let mut asked = Vec::new();
    for _ in 0..3 {
        h.crank_single_clock_wait().expect("a clock wait to fire");
        let now = h.testclock().unwrap().time().nseconds();
        let ev = std::iter::from_fn(|| h.try_pull_upstream_event())
            .find(|e| gst_video::UpstreamForceKeyUnitEvent::parse(e).is_ok())
            .expect("a force-key-unit event upstream");
        let fku = gst_video::UpstreamForceKeyUnitEvent::parse(&ev).unwrap();
        asked.push((now, fku.running_time.map(|t| t.nseconds())));
    }
    assert_eq!(asked, [(3 * SEC / 2, Some(2 * SEC)), (7 * SEC / 2, Some(4 * SEC)), (11 * SEC / 2, Some(6 * SEC))]);
}

#[test]
fn an_ad_event_becomes_a_sparse_message_timed_on_the_parent_track() {
    let rx = Receiver::start().unwrap();
    let (mut h, bus) = harness(&rx.url("live", "m"), &[("sparse-stream-id", "ads")]);
    let rec = recording();
    // A splice at 5 s, announced before any media: it goes out 4 s ahead, at 1 s of media.
    let splice = gst::Structure::builder("fmp4ingest-splice")
        .field("running-time", 5 * SEC)
        .field("id", 7u32)
        .field("duration", 30 * SEC)
        .build();
    assert!(h.push_event(gst::event::CustomDownstream::new(splice)));
    for b in &rec.buffers {
        h.push(buffer(b)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let accepted: Vec<gst::Message> = messages(&bus, gst::MessageType::Element)
        .into_iter()
        .filter(|m| m.structure().is_some_and(|s| s.name() == "fmp4ingestsink-signal-accepted"))
        .collect();
    assert_eq!(accepted.len(), 1);
    let view = rx.stream("ads");
    let sparse = view.sparse_messages();
    assert_eq!(sparse.len(), 1, "{:?}", view.posts);
    let (_, m) = sparse[0];
    let s = m.sparse.as_ref().expect("a sparse message");
    // On the parent's (video's) timescale: the splice is at 5 s.
    let video_ts = rx.stream("m").media_posts()[0].moov_tracks[0].timescale as u64;
    assert_eq!(m.time().unwrap() + u64::from(s.delta), 5 * video_ts);
}

#[test]
fn bytes_that_are_not_mp4_after_good_ones_are_an_error_and_what_came_before_goes() {
    let rx = Receiver::start().unwrap();
    let (mut h, bus) = harness(&rx.url("live", "b"), &[]);
    let rec = recording();
    // Cut where a fragment starts (isofmp4mux: styp, moof and the mdat header in one buffer),
    // half way: the junk is where a box header must be.
    let half = (rec.buffers.len() / 2..rec.buffers.len())
        .find(|&i| rec.buffers[i].data.get(4..8) == Some(b"styp"))
        .expect("a fragment in the second half");
    for b in &rec.buffers[..half] {
        h.push(buffer(b)).unwrap();
    }
    let junk = gst::Buffer::from_slice(vec![0xA5u8; 4096]);
    assert_eq!(h.push(junk), Err(gst::FlowError::Error));
    let errors = messages(&bus, gst::MessageType::Error);
    assert_eq!(errors.len(), 1);
    let gst::MessageView::Error(e) = errors[0].view() else { unreachable!() };
    assert!(e.error().matches(gst::StreamError::Format), "{}", e.error());
    assert!(e.error().to_string().contains("Invalid input from the muxer"), "{}", e.error());
    // Everything accepted before the fault was delivered and the POST ended properly.
    let posts = rx.stream("b").media_posts().into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].complete && !posts[0].fragments.is_empty());
}

#[test]
fn every_property_takes_the_ends_of_its_range_and_reads_them_back() {
    common::init();
    use gst::glib;
    let sink = gst::ElementFactory::make("fmp4ingestsink").build().unwrap();
    let ours: Vec<glib::ParamSpec> =
        sink.list_properties().iter().filter(|p| p.owner_type() == sink.type_()).cloned().collect();
    let mut checked = 0;
    for p in &ours {
        let writable = p.flags().contains(glib::ParamFlags::WRITABLE) && p.flags().contains(glib::ParamFlags::READABLE);
        macro_rules! ends {
            ($t:ty, $v:ty) => {
                if let Some(q) = p.downcast_ref::<$t>()
                    && writable
                {
                    for v in [q.minimum(), q.maximum(), q.default_value()] {
                        sink.set_property(p.name(), v);
                        assert_eq!(sink.property::<$v>(p.name()), v, "{}", p.name());
                    }
                    checked += 1;
                }
            };
        }
        ends!(glib::ParamSpecUInt64, u64);
        ends!(glib::ParamSpecInt64, i64);
        ends!(glib::ParamSpecUInt, u32);
        ends!(glib::ParamSpecInt, i32);
        ends!(glib::ParamSpecDouble, f64);
    }
    assert!(checked >= 20, "{checked} numeric properties");
    // A write-only secret never reads back.
    sink.set_property("user-pw", "s3cret");
    assert!(
        !sink.list_properties().iter().any(|p| p.name() == "user-pw" && p.flags().contains(glib::ParamFlags::READABLE))
    );
}

#[test]
fn in_utc_mode_whole_fragments_stamped_on_arrival_send_their_video_off_the_grid_and_say_so() {
    // An application that hands an appsrc (do-timestamp) whole fragments muxed elsewhere: a
    // buffer's time is its arrival, after the fragment's media, and no time falls inside an
    // mdat, so the muxer's own timeline is placed on UTC as it is. Its key frames then lie
    // between the grid's boundaries (here 1 s after them, set with timestamp-offset), where no
    // video fragment can start. The video goes anyway, off the grid, and the sink says why.
    let (caps, fragments) = encoded_fragments();
    let d = 2 * SEC;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let offset = (u128::from(d) + u128::from(d / 2) - now % u128::from(d)) % u128::from(d);
    let rx = Receiver::start().unwrap();
    common::init();
    let sink = gst::ElementFactory::make("fmp4ingestsink")
        .property("location", rx.url("live", "whole"))
        .property_from_str("timestamp-mode", "utc")
        .property("timestamp-offset", offset as i64)
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut h = Harness::with_element(&sink, Some("sink"), None);
    h.play();
    h.set_src_caps(caps);
    let count = fragments.len();
    for (k, fragment) in fragments.into_iter().enumerate() {
        let mut whole = Vec::new();
        for b in fragment {
            whole.extend_from_slice(&b.map_readable().unwrap());
        }
        let mut buf = gst::Buffer::from_mut_slice(whole);
        buf.get_mut().unwrap().set_pts(gst::ClockTime::from_nseconds((k as u64 + 1) * d + 37_000_000));
        assert_eq!(h.push(buf), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let warnings = warnings(&bus);
    assert!(warnings.iter().any(|w| w.contains("not on the fragment grid")), "{warnings:?}");
    let view = rx.stream("whole");
    let timeline = view.timeline(1);
    // The first two fragment durations wait for a key frame on a boundary; from the third key
    // frame on, every fragment goes, each a whole GOP, without a gap.
    assert_eq!(timeline.len(), count - 2, "{timeline:?}");
    assert!(view.gaps(1).is_empty(), "{:?}", view.gaps(1));
    let ticks = view.media_posts()[0].moov_tracks[0].timescale;
    let two_s = 2 * u64::from(ticks);
    assert!(timeline.iter().all(|(t, dur)| t % two_s != 0 && *dur == two_s), "{timeline:?}");
    let post = view.media_posts()[0];
    assert!(check_media_post(post).is_empty(), "{:?}", check_media_post(post));
}
