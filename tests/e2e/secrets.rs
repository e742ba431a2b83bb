// SPDX-License-Identifier: MPL-2.0
//! Secrets never show (README, Security): with every GStreamer debug category at its most verbose
//! level, nothing the sink logs, posts or reports contains the URL's password, the Basic
//! password, or extra header values. A binary of its own, because the log level is global.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::check_media_post;
use fmp4ingest_receiver::{Behaviour, Fault, FaultKind, Receiver};
use gst::prelude::*;

fn pipeline(url: &str, props: &str) -> String {
    common::av_pipeline(url, props, 6)
}

/// Everything GStreamer logs, from every category at every level.
fn capture_logs() -> Arc<Mutex<Vec<String>>> {
    common::init();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    gst::log::set_active(true);
    gst::log::set_default_threshold(gst::DebugLevel::Memdump);
    // Not to stderr: only to the capture.
    gst::log::remove_default_log_function();
    gst::log::add_log_function(move |cat, level, file, function, line, object, message| {
        let text = format!(
            "{level:?} {} {file}:{line}:{function} {:?} {}",
            cat.name(),
            object.map(|o| o.to_string()),
            message.get().map(|m| m.to_string()).unwrap_or_default()
        );
        l.lock().unwrap().push(text);
    });
    lines
}

#[test]
fn secrets_never_show_in_logs_messages_errors_or_stats() {
    const SECRETS: [&str; 5] = ["url-s3cret", "pw-s3cret", "tok-s3cret", "cookie-s3cret", "ZW5jb2Rlcjpw"];
    let logs = capture_logs();
    let behaviour = Behaviour { basic_auth: Some(("encoder".into(), "pw-s3cret".into())), ..Behaviour::default() };
    let rx = Receiver::start_with(behaviour, "127.0.0.1:0").unwrap();
    // One refused POST mid-stream, so that failure paths log and post too.
    rx.inject(
        Fault::new(FaultKind::ErrorStatus { fragments: 2, status: 503 }, Duration::from_secs(60))
            .for_stream("s")
            .once(),
    );
    let url = rx.url("live", "s").replace("http://", "http://encoder:url-s3cret@");
    let p = common::init_pipeline(&pipeline("http://placeholder/x.isml/Streams(s)", "sparse-stream-id=ads"));
    let sink = p.by_name("sink").unwrap();
    // Set from code, as an application embeds the element (gst-launch logs its whole command
    // line itself, see the README). The URL's password is wrong on purpose: user-id/user-pw
    // win, and the URL's must not show either.
    sink.set_property("location", &url);
    sink.set_property("user-id", "encoder");
    sink.set_property("user-pw", "pw-s3cret");
    let h =
        gst::Structure::builder("h").field("X-Token", "tok-s3cret").field("Cookie", "session=cookie-s3cret").build();
    sink.set_property("extra-headers", &h);
    let stats = Arc::new(Mutex::new(Vec::<String>::new()));
    let (s2, sink2) = (stats.clone(), sink.clone());
    let poller = std::thread::spawn(move || {
        for _ in 0..20 {
            s2.lock().unwrap().push(sink2.property::<gst::Structure>("stats").to_string());
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let r = common::run(&p, Duration::from_secs(60));
    poller.join().unwrap();
    assert!(r.eos && r.errors.is_empty(), "{:?}", r.errors);
    let view = rx.stream("s");
    assert!(check_media_post(view.media_posts().last().unwrap()).is_empty());
    // The secrets were sent (the server checked the password) ...
    let posts = rx.posts();
    assert!(posts.iter().all(|p| p.header("x-token") == Some("tok-s3cret")));
    assert!(posts.iter().any(|p| p.header("cookie") == Some("session=cookie-s3cret")));
    assert!(r.messages_named("fmp4ingestsink-disconnected").len() == 1, "the failure path ran");
    // ... and appear nowhere else. (Read the property before the capture is locked: making
    // its structure logs too.)
    let extra_headers =
        sink.property::<Option<gst::Structure>>("extra-headers").map(|s| s.to_string()).unwrap_or_default();
    gst::log::set_active(false);
    let logs = logs.lock().unwrap();
    assert!(logs.len() > 1000, "the logs were captured ({} lines)", logs.len());
    let mut shown: Vec<String> = logs.clone();
    shown.extend(r.messages.iter().map(|m| m.to_string()));
    shown.extend(r.errors.iter().chain(&r.warnings).cloned());
    shown.extend(stats.lock().unwrap().iter().cloned());
    shown.extend(r.final_stats.iter().map(|s| s.to_string()));
    shown.push(extra_headers);
    for secret in SECRETS {
        let leaks: Vec<&String> = shown.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} shows in {} places: {:?}", leaks.len(), &leaks[..leaks.len().min(3)]);
    }
}
