//! How the element fails: a refused connection, a refused probe, a bad location. Each must be
//! a clear element error naming the URL (without credentials) and the status (README, Errors). With
//! `max-retries=0` the first failure is final; retrying is covered in failover.rs.

mod common;

use std::time::Duration;

use common::{run_pipeline, video_source};
use fmp4ingest_receiver::{Behaviour, Receiver};

fn pipeline(url: &str) -> String {
    format!(
        "{} ! isofmp4mux fragment-duration=2000000000 ! fmp4ingestsink max-retries=0 location=\"{url}\"",
        video_source(6, 60)
    )
}

#[test]
fn a_refused_probe_is_an_error_with_url_and_status() {
    let rx = Receiver::start_with(Behaviour { probe_status: 404, ..Behaviour::default() }, "127.0.0.1:0").unwrap();
    let url = rx.url("missing", "video");
    let result = run_pipeline(&pipeline(&url), Duration::from_secs(30));
    assert!(!result.eos, "{result:?}");
    let error = result.errors.join("\n");
    assert!(error.contains("refused the stream: HTTP 404 Not Found"), "{error}");
    assert!(error.contains(&url), "{error}");
    // Nothing but the probe reached the server.
    let view = rx.stream("video");
    assert_eq!(view.posts.len(), 1, "{:?}", view.posts);
    assert!(view.posts[0].is_probe());
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
