// SPDX-License-Identifier: MPL-2.0
//! Proxies on purpose (README, properties `proxy`, `proxy-id`, `proxy-pw`): every request goes
//! through the proxy the property names, with its credentials, through a CONNECT tunnel; a
//! reset through the proxy loses nothing (the socket's counters are the proxy's, so the sink
//! counts deliveries conservatively); and the environment's proxy variables are never used.

mod common;

use std::time::Duration;

use common::{RunResult, av_pipeline, run_pipeline};
use fmp4ingest_receiver::proxy::Proxy;
use fmp4ingest_receiver::{Fault, FaultKind, Receiver};

fn ok(r: &RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

#[test]
fn every_request_goes_through_the_proxy_and_a_reset_through_it_loses_nothing() {
    let rx = Receiver::start().unwrap();
    // The server resets the POST every 2 to 3 fragments.
    rx.inject(Fault::new(FaultKind::Abort { min: 2, max: 3, reset: true }, Duration::from_secs(300)));
    let proxy = Proxy::start(Some(("enc".into(), "pr0xy:pw".into()))).unwrap();
    let props = format!("proxy={} proxy-id=enc proxy-pw=pr0xy:pw sparse-stream-id=ads", proxy.url());
    let r = run_pipeline(&av_pipeline(&rx.url("live", "p"), &props, 16), Duration::from_secs(90));
    ok(&r);
    let view = rx.stream("p");
    for t in view.track_ids() {
        assert!(view.timeline(t).len() >= 7, "track {t}: {:?}", view.timeline(t));
        assert!(view.gaps(t).is_empty(), "track {t}: {:?}", view.gaps(t));
    }
    assert!(view.media_posts().len() >= 3, "the server reset the POST");
    // Every connection the receiver saw came through an open tunnel with the credentials.
    let tunnels = proxy.tunnels();
    let target = rx.url("live", "p").trim_start_matches("http://").split('/').next().unwrap().to_string();
    assert!(!tunnels.is_empty());
    for t in &tunnels {
        assert!(t.opened && t.target == target, "{t:?}");
        assert_eq!(t.credentials, Some(("enc".into(), "pr0xy:pw".into())));
    }
    assert_eq!(tunnels.len() as u64, rx.connections(), "probes, POSTs and sparse POSTs");
    // Without the server's own counters the sink counts the last 8 MiB it sent as undelivered:
    // here that is the whole stream so far, so no resend is shorter than the one before, and
    // soon more than the last two fragments per track.
    let resent: Vec<u32> =
        r.messages_named("fmp4ingestsink-resent").iter().map(|m| m.get::<u32>("count").unwrap()).collect();
    assert!(resent.len() >= 2 && resent.windows(2).all(|w| w[1] >= w[0]), "{resent:?}");
    assert!(*resent.last().unwrap() > 4, "{resent:?}");
}

#[test]
fn a_proxy_that_refuses_the_credentials_is_retried_and_reported() {
    let rx = Receiver::start().unwrap();
    let proxy = Proxy::start(Some(("enc".into(), "right".into()))).unwrap();
    let props = format!("proxy={} proxy-id=enc proxy-pw=wrong max-retries=1 retry-delay=100000000", proxy.url());
    let r = run_pipeline(&av_pipeline(&rx.url("live", "q"), &props, 4), Duration::from_secs(60));
    assert_eq!(r.errors.len(), 1, "{:?}", r.warnings);
    let e = &r.errors[0];
    assert!(e.contains("407") && e.contains("proxy"), "{e}");
    assert!(!e.contains("wrong"), "the password never shows: {e}");
    assert_eq!(rx.connections(), 0, "nothing reached the server");
}

/// Run by the test below as a child process whose environment names a proxy that does not
/// exist: the sink must not use it.
#[test]
fn with_proxy_variables_in_the_environment_the_sink_goes_direct() {
    const CHILD: &str = "FMP4INGEST_PROXY_ENV_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "with_proxy_variables_in_the_environment_the_sink_goes_direct", "--nocapture"])
            .env(CHILD, "1")
            .env("http_proxy", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("https_proxy", "http://127.0.0.1:9")
            .env("all_proxy", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .status()
            .unwrap();
        assert!(status.success(), "the child run failed");
        return;
    }
    assert!(std::env::var("http_proxy").is_ok());
    let rx = Receiver::start().unwrap();
    let r = run_pipeline(&av_pipeline(&rx.url("live", "e"), "", 4), Duration::from_secs(60));
    ok(&r);
    assert!(rx.connections() >= 2, "the probe and the POST came straight to the server");
}
