// SPDX-License-Identifier: MPL-2.0
//! CMAF ingest when the receiver fails (docs/protocol.md §6.6; DASH-IF Live Media Ingest
//! "Failure Behaviors"): each failure class against the receiver's fault injection, with
//! default properties unless the test says otherwise, checked on what the receiver kept.

mod common;

use std::time::Duration;

use common::cmaf::{assert_conformant, pipeline, problems};
use common::{RunResult, run_pipeline, spawn_pipeline};
use fmp4ingest_receiver::cmaf::CmafTrack;
use fmp4ingest_receiver::{Behaviour, Fault, FaultKind, Receiver, TlsSetup};

const ISO: &str = "isofmp4mux fragment-duration=2000000000";

fn ok(r: &RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

/// `seconds` of A/V into the receiver's publishing point `live`.
fn av(rx: &Receiver, props: &str, seconds: u32) -> String {
    pipeline(ISO, &rx.publishing_point("live"), props, seconds, true)
}

fn track(rx: &Receiver, name: &str) -> CmafTrack {
    rx.cmaf_track(name).unwrap_or_else(|| panic!("no track {name}"))
}

/// Messages of the sink named `name` about `track` (by its URL).
fn about<'a>(r: &'a RunResult, name: &str, track: &str) -> Vec<&'a gst::Structure> {
    r.messages_named(name).into_iter().filter(|m| m.get::<String>("url").unwrap().ends_with(track)).collect()
}

fn forever(kind: FaultKind) -> Fault {
    Fault::new(kind, Duration::from_secs(600))
}

/// Waits until `track` has `n` segments.
fn wait_segments(rx: &Receiver, track: &str, n: usize) {
    let got = rx
        .wait_cmaf(Duration::from_secs(30), |ts| ts.iter().any(|t| t.name == track && t.unique_segments().len() >= n));
    assert!(got, "{track}: fewer than {n} segments");
}

#[test]
fn a_segment_cut_off_is_resent_on_a_new_connection_and_nothing_is_lost() {
    let rx = Receiver::start().unwrap();
    rx.inject(forever(FaultKind::Abort { min: 2, max: 2, reset: true }).for_stream("video.cmfv").once());
    let r = run_pipeline(&av(&rx, "", 10), Duration::from_secs(60));
    ok(&r);
    assert_conformant(&rx);
    let v = track(&rx, "video.cmfv");
    assert!(v.header_connections.len() >= 2, "{:?}", v.header_connections);
    let gone = about(&r, "fmp4ingestsink-disconnected", "video.cmfv)");
    assert_eq!(gone.len(), 1, "{:?}", r.messages);
    assert_eq!(gone[0].get::<String>("reason").unwrap(), "transport");
    // Back within three segment durations: what was cut goes again, in order.
    assert_eq!(about(&r, "fmp4ingestsink-cmaf-resent", "video.cmfv)").len(), 1, "{:?}", r.messages);
    assert!(v.segments.iter().any(|s| s.duplicate) || v.unique_segments().len() >= 5);
}

#[test]
fn a_stalled_receiver_is_abandoned_and_the_segment_resent() {
    let rx = Receiver::start().unwrap();
    // The receiver stops reading at the third segment until the sender gives up and comes
    // back on a new connection, then drops the old one.
    let stall =
        FaultKind::Stall { fragments: 2, duration: Duration::from_secs(20), until_new_post: true, discard: true };
    rx.inject(forever(stall).for_stream("video.cmfv").once());
    let r = run_pipeline(&av(&rx, "", 14), Duration::from_secs(90));
    ok(&r);
    assert_conformant(&rx);
    let reasons: Vec<String> = about(&r, "fmp4ingestsink-disconnected", "video.cmfv)")
        .iter()
        .map(|m| m.get::<String>("reason").unwrap())
        .collect();
    assert!(reasons.iter().any(|x| x == "response-timeout" || x == "send-timeout"), "{reasons:?}");
    assert!(track(&rx, "video.cmfv").header_connections.len() >= 2);
}

#[test]
fn a_412_sends_the_header_again_then_the_segment() {
    let rx = Receiver::start().unwrap();
    // The receiver forgets the header (as a restarted one would) and answers 412.
    rx.inject(forever(FaultKind::ErrorStatus { fragments: 2, status: 412 }).for_stream("audio.cmfa").once());
    let r = run_pipeline(&av(&rx, "", 10), Duration::from_secs(60));
    ok(&r);
    assert_conformant(&rx);
    let a = track(&rx, "audio.cmfa");
    assert_eq!(a.headers_received, 2, "the header once more");
    // On the same connection: a 412 is no failure of it.
    assert_eq!(a.header_connections.len(), 2);
    assert_eq!(a.header_connections[0], a.header_connections[1]);
    let asked = about(&r, "fmp4ingestsink-cmaf-header-requested", "audio.cmfa)");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].get::<u32>("sequence").unwrap(), a.unique_segments()[2].segment.sequence);
    assert!(about(&r, "fmp4ingestsink-disconnected", "audio.cmfa)").is_empty());
}

#[test]
fn a_restarted_receiver_gets_the_header_again_and_every_segment() {
    let rx = Receiver::start().unwrap();
    let run = spawn_pipeline(&av(&rx, "", 14), Duration::from_secs(90));
    // Both tracks ran (their headers were taken) before the receiver restarts.
    wait_segments(&rx, "video.cmfv", 2);
    wait_segments(&rx, "audio.cmfa", 2);
    // Connections reset, refused for a second, every header forgotten.
    rx.restart(Duration::from_secs(1));
    let r = run.join().unwrap();
    ok(&r);
    assert_conformant(&rx);
    for t in rx.cmaf_tracks() {
        assert!(t.header_connections.len() >= 2, "{}: {:?}", t.name, t.header_connections);
    }
    assert!(
        !r.messages_named("fmp4ingestsink-cmaf-resent").is_empty()
            || rx.cmaf_tracks().iter().all(|t| t.gaps().is_empty())
    );
    assert!(r.messages_named("fmp4ingestsink-cmaf-skipped").is_empty());
}

#[test]
fn a_400_is_resent_at_once_and_a_segment_refused_three_times_is_given_up() {
    let rx = Receiver::start().unwrap();
    rx.inject(forever(FaultKind::SegmentStatus { sequence: 2, status: 400, times: 1 }).for_stream("video.cmfv"));
    rx.inject(forever(FaultKind::SegmentStatus { sequence: 4, status: 400, times: 3 }).for_stream("video.cmfv"));
    let r = run_pipeline(&av(&rx, "", 12), Duration::from_secs(60));
    ok(&r);
    let v = track(&rx, "video.cmfv");
    assert_eq!(v.refused, [(2, 400), (4, 400), (4, 400), (4, 400)]);
    // Segment 2 went again at once (same connection); 4 was given up, the rest went on.
    let seqs = v.sequences();
    assert!(seqs.contains(&2) && !seqs.contains(&4) && seqs.contains(&5), "{seqs:?}");
    assert_eq!(v.header_connections.len(), 1);
    let rejected = about(&r, "fmp4ingestsink-cmaf-rejected", "video.cmfv)");
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0].get::<u32>("sequence").unwrap(), rejected[0].get::<u32>("status").unwrap()), (4, 400));
    assert!(r.warnings.iter().any(|w| w.contains("rejected segment 4 of video.cmfv")), "{:?}", r.warnings);
    // The hole is the only thing wrong with the track, and the audio is untouched.
    assert_eq!(v.gaps().len(), 1);
    assert!(problems(&rx, &track(&rx, "audio.cmfa")).is_empty());
}

#[test]
fn a_403_is_retried_with_the_segment_then_an_error_after_forbidden_retries() {
    // Once: resent on a new connection after the header, nothing lost.
    let rx = Receiver::start().unwrap();
    rx.inject(forever(FaultKind::SegmentStatus { sequence: 2, status: 403, times: 1 }).for_stream("audio.cmfa"));
    let r = run_pipeline(&av(&rx, "", 8), Duration::from_secs(60));
    ok(&r);
    assert_conformant(&rx);
    assert_eq!(track(&rx, "audio.cmfa").refused, [(2, 403)]);
    assert_eq!(about(&r, "fmp4ingestsink-disconnected", "audio.cmfa)")[0].get::<u32>("status").unwrap(), 403);
    // For ever: after forbidden-retries more, an error naming the track, NotAuthorized.
    let rx = Receiver::start().unwrap();
    rx.inject(forever(FaultKind::SegmentStatus { sequence: 2, status: 403, times: 100 }).for_stream("audio.cmfa"));
    let r = run_pipeline(&av(&rx, "forbidden-retries=2", 20), Duration::from_secs(60));
    assert!(!r.eos, "{r:?}");
    assert_eq!(r.error_code, Some(gst::ResourceError::NotAuthorized), "{:?}", r.errors);
    let e = r.errors.join("\n");
    assert!(e.contains("refused the track audio.cmfa: HTTP 403 Forbidden"), "{e}");
    assert!(e.contains("/live.isml/Streams(audio.cmfa)") && e.contains("retry limit"), "{e}");
    assert_eq!(track(&rx, "audio.cmfa").refused.len(), 3);
}

#[test]
fn a_404_or_415_is_an_error_at_once_naming_the_track_and_the_status() {
    for (status, code, text) in [
        (404, gst::ResourceError::NotFound, "HTTP 404 Not Found"),
        (415, gst::ResourceError::OpenWrite, "HTTP 415 Unsupported Media Type"),
    ] {
        let rx = Receiver::start().unwrap();
        // Every request with a body (the header) is refused; the probe is answered.
        rx.inject(forever(FaultKind::PostStatus(status)).for_stream("video.cmfv"));
        let r = run_pipeline(&av(&rx, "", 20), Duration::from_secs(60));
        assert!(!r.eos, "{status}: {r:?}");
        assert_eq!(r.error_code, Some(code), "{status}: {:?}", r.errors);
        let e = r.errors.join("\n");
        assert!(e.contains(&format!("refused the track video.cmfv: {text}")), "{e}");
        assert!(e.contains(&format!("{}/Streams(video.cmfv)", rx.publishing_point("live"))), "{e}");
        // At once: one header request, no retry.
        let headers = rx.cmaf_requests().iter().filter(|q| q.track.ends_with("(video.cmfv)") && q.bytes > 0).count();
        assert_eq!(headers, 1, "{status}");
        assert!(r.error_at.unwrap() < Duration::from_secs(8), "{status}: {:?}", r.error_at);
    }
}

#[test]
fn a_probe_refused_for_good_at_start_is_an_error_at_once() {
    for (status, code) in [(403, gst::ResourceError::NotAuthorized), (401, gst::ResourceError::NotAuthorized)] {
        let rx =
            Receiver::start_with(Behaviour { probe_status: status, ..Behaviour::default() }, "127.0.0.1:0").unwrap();
        let r = run_pipeline(&av(&rx, "", 20), Duration::from_secs(60));
        assert!(!r.eos);
        assert_eq!(r.error_code, Some(code), "{status}: {:?}", r.errors);
        let e = r.errors.join("\n");
        assert!(e.contains("before the track ever ran") && e.contains("Nothing was sent"), "{e}");
        // Nothing but the probes reached the receiver.
        assert!(rx.cmaf_requests().iter().all(|q| q.bytes == 0));
        assert!(r.error_at.unwrap() < Duration::from_secs(8), "{status}: {:?}", r.error_at);
    }
}

#[test]
fn a_5xx_is_retried_and_the_segment_goes_again() {
    let rx = Receiver::start().unwrap();
    rx.inject(forever(FaultKind::SegmentStatus { sequence: 3, status: 503, times: 2 }).for_stream("video.cmfv"));
    let r = run_pipeline(&av(&rx, "", 12), Duration::from_secs(60));
    ok(&r);
    assert_conformant(&rx);
    let statuses: Vec<u32> = about(&r, "fmp4ingestsink-disconnected", "video.cmfv)")
        .iter()
        .map(|m| m.get::<u32>("status").unwrap())
        .collect();
    assert_eq!(statuses, [503, 503]);
    assert_eq!(track(&rx, "video.cmfv").refused, [(3, 503), (3, 503)]);
}

#[test]
fn an_outage_shorter_than_three_segments_resends_what_was_missed_in_order() {
    let rx = Receiver::start().unwrap();
    let run = spawn_pipeline(&av(&rx, "", 16), Duration::from_secs(90));
    wait_segments(&rx, "video.cmfv", 2);
    wait_segments(&rx, "audio.cmfa", 2);
    // Down for 2 s: with a retry at least every segment duration (2 s), every track is back
    // within 4 s of its first failure, under the three segment durations (6 s).
    rx.restart(Duration::from_secs(2));
    let r = run.join().unwrap();
    ok(&r);
    assert_conformant(&rx);
    for t in rx.cmaf_tracks() {
        assert!(t.gaps().is_empty(), "{}: {:?}", t.name, t.gaps());
        let resent = about(&r, "fmp4ingestsink-cmaf-resent", &format!("{})", t.name));
        assert!(!resent.is_empty(), "{}: {:?}", t.name, r.messages);
        // In order: the resent segments arrived by sequence.
        let seqs: Vec<u32> = t.unique_segments().iter().map(|s| s.segment.sequence).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{}: {seqs:?}", t.name);
    }
    assert!(r.messages_named("fmp4ingestsink-cmaf-skipped").is_empty());
    assert!(r.max_buffer_gap < Duration::from_millis(3500), "the sink blocked for {:?}", r.max_buffer_gap);
}

#[test]
fn a_longer_outage_resumes_at_the_live_edge_and_says_what_was_skipped() {
    let rx = Receiver::start().unwrap();
    let run = spawn_pipeline(&av(&rx, "", 24), Duration::from_secs(90));
    wait_segments(&rx, "video.cmfv", 2);
    rx.restart(Duration::from_secs(10));
    let r = run.join().unwrap();
    ok(&r);
    let skipped = about(&r, "fmp4ingestsink-cmaf-skipped", "video.cmfv)");
    assert_eq!(skipped.len(), 1, "{:?}", r.messages);
    let count = skipped[0].get::<u32>("count").unwrap();
    assert!(count >= 2, "{count}");
    // Longer than three segment durations, from the first failure to the header accepted.
    assert!(skipped[0].get::<u64>("outage").unwrap() >= 6_000_000_000);
    assert!(r.warnings.iter().any(|w| w.contains("resumed at the live edge")), "{:?}", r.warnings);
    // The hole is the skipped segments, no more: the track goes on from the newest.
    let v = track(&rx, "video.cmfv");
    assert_eq!(v.gaps().len(), 1, "{:?}", v.gaps());
    let stats = r.final_stats.unwrap();
    assert!(stats.get::<u64>("fragments-dropped").unwrap() >= u64::from(count), "{stats}");
    // The pipeline never waited on the network.
    assert!(r.max_buffer_gap < Duration::from_millis(3500), "the sink blocked for {:?}", r.max_buffer_gap);
}

#[test]
fn a_refused_connection_with_max_retries_0_is_an_error_that_says_so() {
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let pp = format!("http://enc:s3cret@127.0.0.1:{port}/live.isml");
    let r = run_pipeline(&pipeline(ISO, &pp, "max-retries=0", 10, false), Duration::from_secs(30));
    assert!(!r.eos, "{r:?}");
    assert_eq!(r.error_code, Some(gst::ResourceError::OpenWrite));
    let e = r.errors.join("\n");
    assert!(e.contains("Could not connect to the ingest server"), "{e}");
    assert!(e.contains(&format!("http://***@127.0.0.1:{port}/live.isml/Streams(video.cmfv)")), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
    drop(held);
}

#[test]
fn an_untrusted_certificate_is_an_error_at_once_and_https_works_with_its_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let setup =
        TlsSetup { cert_chain_pem: cert.cert.pem(), key_pem: cert.key_pair.serialize_pem(), client_ca_pem: None };
    let rx = Receiver::start_tls(Behaviour::default(), setup).unwrap();
    let pp = rx.publishing_point("live");
    assert!(pp.starts_with("https://"));
    let r = run_pipeline(&pipeline(ISO, &pp, "", 10, false), Duration::from_secs(60));
    assert!(!r.eos, "{r:?}");
    assert_eq!(r.error_code, Some(gst::ResourceError::NotAuthorized), "{:?}", r.errors);
    let e = r.errors.join("\n");
    assert!(e.contains("The TLS connection to the ingest server failed") && e.contains("ca-file"), "{e}");
    assert!(r.error_at.unwrap() < Duration::from_secs(8), "{:?}", r.error_at);
    assert!(rx.cmaf_requests().is_empty());
    // Trusted through ca-file: the track goes over TLS.
    let ca = std::env::temp_dir().join(format!("fmp4ingest-cmaf-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let r = run_pipeline(&pipeline(ISO, &pp, &format!("ca-file={}", ca.display()), 6, false), Duration::from_secs(60));
    ok(&r);
    assert_conformant(&rx);
    let _ = std::fs::remove_file(&ca);
}

#[test]
fn a_redirected_probe_is_followed_only_when_allowed() {
    let rx = Receiver::start().unwrap();
    let to = format!("{}/Streams(video.cmfv)", rx.publishing_point("moved"));
    let redirect = FaultKind::Redirect { status: 307, location: to.clone() };
    rx.inject(forever(redirect).for_stream("video.cmfv").once());
    let r = run_pipeline(
        &pipeline(ISO, &rx.publishing_point("live"), "follow-redirects=true", 8, false),
        Duration::from_secs(60),
    );
    ok(&r);
    let moved = rx
        .cmaf_tracks()
        .into_iter()
        .find(|t| t.path.starts_with("/moved.isml/"))
        .expect("the track where the probe ended");
    assert!(problems(&rx, &moved).is_empty(), "{:?}", problems(&rx, &moved));
    assert!(moved.unique_segments().len() >= 4);
    let redirected = r.messages_named("fmp4ingestsink-redirected");
    assert_eq!(redirected.len(), 1);
    assert_eq!(redirected[0].get::<String>("to").unwrap(), to);
    // Without follow-redirects, a redirect is a failure like any other: retried, never followed.
    let rx = Receiver::start().unwrap();
    rx.inject(forever(FaultKind::Redirect { status: 307, location: to }).for_stream("video.cmfv").once());
    let r = run_pipeline(&pipeline(ISO, &rx.publishing_point("live"), "", 8, false), Duration::from_secs(60));
    ok(&r);
    assert!(rx.cmaf_tracks().iter().all(|t| t.path.starts_with("/live.isml/")));
    assert_eq!(about(&r, "fmp4ingestsink-disconnected", "video.cmfv)")[0].get::<u32>("status").unwrap(), 307);
    assert_conformant(&rx);
}
