// SPDX-License-Identifier: MPL-2.0
//! How the element fails: a refused connection, a refused probe, a bad location. Each must be
//! a clear element error naming the URL (without credentials), the status and the fix, with the
//! error code that fits (README, Errors). A server that refuses the stream for good (401, 403,
//! 404, 400, 415 to the first probe) ends it at once with default properties; what a retry may
//! mend is retried, within `max-retries`; and the same refusals after the stream ran are
//! retried. TLS refusals are in security.rs.

mod common;

use std::time::Duration;

use common::{run_pipeline, spawn_pipeline, video_source};
use fmp4ingest_receiver::{Behaviour, Fault, FaultKind, Receiver};

/// `seconds` of video into a sink with default properties but `props`.
fn video_pipeline(url: &str, props: &str, seconds: u32) -> String {
    format!(
        "{} ! isofmp4mux fragment-duration=2000000000 ! fmp4ingestsink name=sink {props} location=\"{url}\"",
        video_source(seconds, 60)
    )
}

/// Six seconds of video into a sink with default properties but `props`.
fn pipeline_with(url: &str, props: &str) -> String {
    video_pipeline(url, props, 6)
}

/// The first failure is final.
fn pipeline(url: &str) -> String {
    pipeline_with(url, "max-retries=0")
}

#[test]
fn a_probe_refused_for_good_is_an_error_at_once_with_url_status_and_code() {
    for (status, text, code) in [
        (404, "HTTP 404 Not Found", gst::ResourceError::NotFound),
        (403, "HTTP 403 Forbidden", gst::ResourceError::NotAuthorized),
        (401, "HTTP 401 Unauthorized", gst::ResourceError::NotAuthorized),
        (400, "HTTP 400 Bad Request", gst::ResourceError::OpenWrite),
        (415, "HTTP 415 Unsupported Media Type", gst::ResourceError::OpenWrite),
    ] {
        let rx =
            Receiver::start_with(Behaviour { probe_status: status, ..Behaviour::default() }, "127.0.0.1:0").unwrap();
        let url = rx.url("missing", "video");
        // Default properties: retries forever, but not for this.
        let result = run_pipeline(&pipeline_with(&url, ""), Duration::from_secs(30));
        assert!(!result.eos, "{status}: {result:?}");
        let error = result.errors.join("\n");
        assert!(error.contains(&format!("refused the stream: {text}")), "{error}");
        assert!(error.contains(&url) && error.contains("before any media was sent"), "{error}");
        assert_eq!(result.error_code, Some(code), "{status}: {error}");
        // At once: well within the connect timeout.
        assert!(result.error_at.unwrap() < Duration::from_secs(10), "{status}: {result:?}");
        // Nothing but the probe reached the server.
        let view = rx.stream("video");
        assert_eq!(view.posts.len(), 1, "{:?}", view.posts);
        assert!(view.posts[0].is_probe());
    }
}

#[test]
fn refusals_after_the_stream_ran_are_retried_and_the_stream_goes_on() {
    let rx = Receiver::start().unwrap();
    let run = spawn_pipeline(&video_pipeline(&rx.url("live", "v"), "", 20), Duration::from_secs(90));
    // Once two fragments arrived, the POST is cut and the publishing point "stops" for 3 s: its
    // probes are answered 404, then 403.
    assert!(
        rx.wait_until(Duration::from_secs(30), |posts| posts.iter().map(|p| p.fragments.len()).sum::<usize>() >= 2)
    );
    // (The reset comes with the connection's next bytes, within a fragment.)
    rx.inject(Fault::new(FaultKind::ProbeStatus(404), Duration::from_secs(4)).for_stream("v"));
    rx.restart(Duration::ZERO);
    std::thread::sleep(Duration::from_secs(4));
    // Longer than the backoff's cap (4 s, +25 %): an attempt falls in it.
    rx.inject(Fault::new(FaultKind::ProbeStatus(403), Duration::from_secs(6)).for_stream("v"));
    let r = run.join().unwrap();
    assert!(r.eos && r.errors.is_empty(), "{:?}", r.errors);
    let refused: Vec<u32> = r
        .messages_named("fmp4ingestsink-disconnected")
        .iter()
        .filter(|m| m.get::<String>("reason").unwrap() == "probe-refused")
        .map(|m| m.get::<u32>("status").unwrap())
        .collect();
    assert!(refused.contains(&404) && refused.contains(&403), "{refused:?}");
    let view = rx.stream("v");
    for t in view.track_ids() {
        assert!(view.gaps(t).is_empty(), "track {t}: {:?}", view.gaps(t));
    }
}

#[test]
fn a_refused_connection_is_an_error_that_says_so_without_credentials() {
    // A port that is bound but not listening: connections are refused, and no other test can
    // take the port while this socket holds it.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let url = format!("http://ingestuser:s3cret-pw@127.0.0.1:{port}/live.isml/Streams(video)");
    let result = run_pipeline(&pipeline(&url), Duration::from_secs(30));
    assert!(!result.eos, "{result:?}");
    let error = result.errors.join("\n");
    assert!(error.contains("Could not connect to the ingest server"), "{error}");
    assert!(error.contains(&format!("http://***@127.0.0.1:{port}/live.isml/Streams(video)")), "{error}");
    assert!(!error.contains("s3cret-pw") && !error.contains("ingestuser"), "{error}");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    drop(held);
}

#[test]
fn a_location_without_streams_noun_is_refused_at_start() {
    common::init();
    let sink = gst::ElementFactory::make("fmp4ingestsink")
        .property("location", "http://127.0.0.1:9/live.isml")
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    use gst::prelude::*;
    assert!(sink.set_state(gst::State::Ready).is_err());
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).expect("an error message");
    let gst::MessageView::Error(e) = msg.view() else { unreachable!() };
    assert!(e.error().to_string().contains("must end in /Streams(<id>)"), "{}", e.error());
    let _ = sink.set_state(gst::State::Null);
}

#[test]
fn a_probe_answered_500_is_an_error_too() {
    let rx = Receiver::start_with(Behaviour { probe_status: 500, ..Behaviour::default() }, "127.0.0.1:0").unwrap();
    let result = run_pipeline(&pipeline(&rx.url("live", "v")), Duration::from_secs(30));
    let error = result.errors.join("\n");
    assert!(error.contains("HTTP 500 Internal Server Error"), "{error}");
}

#[test]
fn every_property_has_a_nick_a_blurb_a_default_in_range_and_a_readme_entry() {
    common::init();
    use gst::glib;
    use gst::prelude::*;
    let sink = gst::ElementFactory::make("fmp4ingestsink").build().unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let ours: Vec<glib::ParamSpec> =
        sink.list_properties().iter().filter(|p| p.owner_type() == sink.type_()).cloned().collect();
    assert!(ours.len() >= 35, "{} properties", ours.len());
    for p in &ours {
        let name = p.name();
        assert!(!p.nick().is_empty() && p.nick() != name, "{name}: nick {:?}", p.nick());
        assert!(p.blurb().is_some_and(|b| b.len() >= 15), "{name}: blurb {:?}", p.blurb());
        assert!(readme.contains(&format!("`{name}`")), "{name} is not in the README's property table");
        macro_rules! in_range {
            ($t:ty) => {
                if let Some(q) = p.downcast_ref::<$t>() {
                    let (min, max, def) = (q.minimum(), q.maximum(), q.default_value());
                    assert!(min <= def && def <= max, "{name}: default {def} outside [{min}, {max}]");
                    assert!(min < max, "{name}: empty range");
                }
            };
        }
        in_range!(glib::ParamSpecUInt64);
        in_range!(glib::ParamSpecInt64);
        in_range!(glib::ParamSpecUInt);
        in_range!(glib::ParamSpecInt);
        in_range!(glib::ParamSpecDouble);
        // Read back, every readable property gives its default.
        if p.flags().contains(glib::ParamFlags::READABLE) && name != "stats" {
            let v = sink.property_value(name);
            assert_eq!(v.type_(), p.value_type(), "{name}");
        }
    }
}
