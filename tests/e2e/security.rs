// SPDX-License-Identifier: MPL-2.0
//! Security and hostile servers (README, Security): HTTPS with certificates made here, mutual TLS,
//! Basic authentication, extra headers, secrets that never show, redirects, and servers that
//! try to exhaust the sink.

mod common;

use std::time::{Duration, Instant};

use common::{RunResult, check_media_post, run_pipeline};
use fmp4ingest_receiver::{Behaviour, Fault, FaultKind, Hostile, Receiver, TlsSetup};
use gst::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A certificate authority and what it signed, in PEM.
struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    /// The CA that signed the client certificate.
    client_ca_pem: String,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn leaf(names: &[&str], usage: ExtendedKeyUsagePurpose, issuer: &(rcgen::Certificate, KeyPair)) -> (String, String) {
    leaf_valid(names, usage, issuer, None)
}

/// A certificate for `names`, valid over `years` (from, to) when given.
fn leaf_valid(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &(rcgen::Certificate, KeyPair),
    years: Option<(i32, i32)>,
) -> (String, String) {
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.extended_key_usages = vec![usage];
    if let Some((from, to)) = years {
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer.0, &issuer.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// What is wrong with the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerCert {
    Good,
    /// Valid 2020 to 2021 only.
    Expired,
    /// For another host name.
    WrongName,
}

fn pki() -> Pki {
    pki_with(ServerCert::Good)
}

fn pki_with(server: ServerCert) -> Pki {
    let server_ca = ca("fmp4ingest test CA");
    let client_ca = ca("fmp4ingest test client CA");
    let (names, years) = match server {
        ServerCert::Good => (&["127.0.0.1", "localhost"][..], None),
        ServerCert::Expired => (&["127.0.0.1", "localhost"][..], Some((2020, 2021))),
        ServerCert::WrongName => (&["ingest.example.invalid"][..], None),
    };
    let (server_cert_pem, server_key_pem) = leaf_valid(names, ExtendedKeyUsagePurpose::ServerAuth, &server_ca, years);
    let (client_cert_pem, client_key_pem) = leaf(&["encoder-1"], ExtendedKeyUsagePurpose::ClientAuth, &client_ca);
    Pki {
        ca_pem: server_ca.0.pem(),
        server_cert_pem,
        server_key_pem,
        client_cert_pem,
        client_key_pem,
        client_ca_pem: client_ca.0.pem(),
    }
}

/// Writes `content` to a file of its own; returns the path.
fn file(name: &str, content: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fmp4ingest-security-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_string_lossy().into_owned()
}

fn tls_receiver(p: &Pki, client_ca: bool, behaviour: Behaviour) -> Receiver {
    let setup = TlsSetup {
        cert_chain_pem: p.server_cert_pem.clone(),
        key_pem: p.server_key_pem.clone(),
        client_ca_pem: client_ca.then(|| p.client_ca_pem.clone()),
    };
    Receiver::start_tls(behaviour, setup).unwrap()
}

fn pipeline(url: &str, props: &str) -> String {
    common::av_pipeline(url, props, 4)
}

/// Fails quickly: one retry, short delays.
const QUICK: &str = "max-retries=1 retry-delay=100000000 connect-timeout=3000000000";

/// The run ended well and the stream arrived whole: a conformant last POST, every track with
/// fragments and no gap.
fn delivered(rx: &Receiver, r: &RunResult, id: &str) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
    let view = rx.stream(id);
    let posts = view.media_posts();
    let last = posts.last().expect("a POST with the stream");
    let problems = check_media_post(last);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(view.track_ids().len(), 2);
    for t in view.track_ids() {
        assert!(view.timeline(t).len() >= 2 && view.gaps(t).is_empty(), "track {t}: {:?}", view.timeline(t));
    }
}

#[test]
fn https_with_the_ca_in_ca_file_delivers_the_stream() {
    let p = pki();
    let rx = tls_receiver(&p, false, Behaviour::default());
    let ca = file("ca.pem", &p.ca_pem);
    let r = run_pipeline(&pipeline(&rx.url("live", "v"), &format!("ca-file={ca}")), Duration::from_secs(60));
    delivered(&rx, &r, "v");
    assert!(rx.url("live", "v").starts_with("https://"));
    assert!(rx.tls_failures().is_empty(), "{:?}", rx.tls_failures());
}

/// A stream with default properties (but `extra`) to a server that refuses it for good: it
/// ends with an element error at once, before any media reached the server.
fn refused_at_start(rx: &Receiver, id: &str, extra: &str) -> (String, gst::ResourceError) {
    let r = run_pipeline(&pipeline(&rx.url("live", id), extra), Duration::from_secs(60));
    assert!(!r.eos, "{r:?}");
    assert_eq!(r.errors.len(), 1, "{:?}", r.warnings);
    // Within the connect timeout (10 s by default) and a few seconds.
    let took = r.error_at.expect("an error");
    assert!(took < Duration::from_secs(13), "the error took {took:?}");
    assert!(rx.stream(id).media_posts().is_empty(), "no media was posted");
    (r.errors[0].clone(), r.error_code.expect("a resource error"))
}

#[test]
fn an_untrusted_certificate_is_a_clear_error() {
    let p = pki();
    let rx = tls_receiver(&p, false, Behaviour::default());
    let (e, code) = refused_at_start(&rx, "v", "");
    assert_eq!(code, gst::ResourceError::NotAuthorized, "{e}");
    assert!(e.contains("The TLS connection to the ingest server failed"), "{e}");
    assert!(e.contains("not trusted") && e.contains("ca-file"), "{e}");
    assert!(rx.posts().is_empty(), "nothing reached the server");
    assert!(!rx.tls_failures().is_empty());
}

#[test]
fn an_expired_certificate_and_a_certificate_for_another_name_are_clear_errors() {
    for (what, words, fix) in [
        (ServerCert::Expired, "expired or is not valid yet", "Renew"),
        (ServerCert::WrongName, "for another host name", "host name"),
    ] {
        let p = pki_with(what);
        let rx = tls_receiver(&p, false, Behaviour::default());
        let ca = file("ca.pem", &p.ca_pem);
        let (e, code) = refused_at_start(&rx, "v", &format!("ca-file={ca}"));
        assert_eq!(code, gst::ResourceError::NotAuthorized, "{what:?}: {e}");
        assert!(e.contains(words) && e.contains(fix), "{what:?}: {e}");
        assert!(rx.posts().is_empty(), "{what:?}: nothing reached the server");
    }
}

#[test]
fn tls_verify_false_accepts_any_certificate_with_a_warning() {
    let p = pki();
    let rx = tls_receiver(&p, false, Behaviour::default());
    let r = run_pipeline(&pipeline(&rx.url("live", "v"), "tls-verify=false"), Duration::from_secs(60));
    delivered(&rx, &r, "v");
    assert!(r.warnings.iter().any(|w| w.contains("TLS certificate verification is off")), "{:?}", r.warnings);
}

#[test]
fn mutual_tls_works_with_the_client_certificate_and_is_refused_without() {
    let p = pki();
    let rx = tls_receiver(&p, true, Behaviour::default());
    let ca = file("ca.pem", &p.ca_pem);
    let cert = file("client.pem", &p.client_cert_pem);
    let key = file("client.key", &p.client_key_pem);
    let with = format!("ca-file={ca} client-cert={cert} client-key={key}");
    let r = run_pipeline(&pipeline(&rx.url("live", "m"), &with), Duration::from_secs(60));
    delivered(&rx, &r, "m");
    let (e, code) = refused_at_start(&rx, "n", &format!("ca-file={ca}"));
    assert_eq!(code, gst::ResourceError::NotAuthorized, "{e}");
    assert!(e.contains("client certificate") && e.contains("client-cert"), "{e}");
    assert!(rx.tls_failures().iter().any(|f| f.contains("certificate")), "{:?}", rx.tls_failures());
}

#[test]
fn basic_authentication_and_the_401_path() {
    let behaviour = Behaviour { basic_auth: Some(("encoder".into(), "pa55:word".into())), ..Behaviour::default() };
    let rx = Receiver::start_with(behaviour, "127.0.0.1:0").unwrap();
    // From the properties.
    let r = run_pipeline(&pipeline(&rx.url("live", "a"), "user-id=encoder user-pw=pa55:word"), Duration::from_secs(60));
    delivered(&rx, &r, "a");
    // From the URL.
    let url = rx.url("live", "b").replace("http://", "http://encoder:pa55%3Aword@");
    let r = run_pipeline(&pipeline(&url, ""), Duration::from_secs(60));
    delivered(&rx, &r, "b");
    // Wrong, or none: 401 to the probe, an error at once (default properties), nothing sent.
    for (id, props) in [("c", "user-id=encoder user-pw=nope"), ("d", "")] {
        let (e, code) = refused_at_start(&rx, id, props);
        assert_eq!(code, gst::ResourceError::NotAuthorized, "{e}");
        assert!(e.contains("HTTP 401 Unauthorized") && e.contains("user-id"), "{e}");
        assert!(!e.contains("nope"), "{e}");
    }
    assert_eq!(rx.rejected().iter().filter(|w| w.contains("401")).count(), 2, "{:?}", rx.rejected());
}

#[test]
fn extra_headers_content_type_and_user_agent_go_with_every_request() {
    let rx = Receiver::start().unwrap();
    let props = "extra-headers=\"h,Authorization=(string)\\\"Bearer tok-123\\\",X-Channel=(string)ch7\" \
                 content-type=video/mp4 user-agent=test-encoder/1.0 sparse-stream-id=ads";
    let p = common::init_pipeline(&pipeline(&rx.url("live", "h"), props));
    let sink = p.by_name("sink").unwrap();
    // Read back, the values are hidden.
    let back = sink.property::<gst::Structure>("extra-headers");
    assert_eq!(back.get::<String>("Authorization").unwrap(), "***");
    let r = common::run(&p, Duration::from_secs(60));
    delivered(&rx, &r, "h");
    let all = rx.posts();
    assert!(all.len() >= 3, "probe, POST, sparse header");
    for post in &all {
        assert_eq!(post.header("authorization"), Some("Bearer tok-123"), "{}", post.path);
        assert_eq!(post.header("x-channel"), Some("ch7"));
        assert_eq!(post.header("content-type"), Some("video/mp4"));
        assert_eq!(post.header("user-agent"), Some("test-encoder/1.0"));
    }
}

#[test]
fn a_redirected_probe_is_followed_only_when_allowed_and_a_post_never() {
    let rx = Receiver::start().unwrap();
    let moved = rx.url("moved", "r");
    rx.inject(
        Fault::new(FaultKind::Redirect { status: 307, location: moved.clone() }, Duration::from_secs(120))
            .for_stream("r"),
    );
    // Not allowed: a clear error that says what to do.
    let r = run_pipeline(&pipeline(&rx.url("live", "r"), QUICK), Duration::from_secs(60));
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].contains("307") && r.errors[0].contains("follow-redirects"), "{}", r.errors[0]);
    rx.clear_faults();
    // Allowed: the POST goes to the new place, and the sink says so.
    let before = rx.posts().len();
    rx.inject(
        Fault::new(
            FaultKind::Redirect { status: 307, location: "/moved.isml/Streams(r)".into() },
            Duration::from_secs(120),
        )
        .for_stream("r")
        .once(),
    );
    let r = run_pipeline(&pipeline(&rx.url("live", "r"), "follow-redirects=true"), Duration::from_secs(60));
    assert!(r.eos && r.errors.is_empty(), "{:?}", r.errors);
    let m = r.messages_named("fmp4ingestsink-redirected");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].get::<String>("to").unwrap(), moved);
    let posts: Vec<_> = rx.posts().into_iter().skip(before).collect();
    let media: Vec<_> = posts.iter().filter(|p| !p.is_probe()).collect();
    assert_eq!(media.len(), 1);
    assert!(media[0].path.starts_with("/moved.isml/"), "{}", media[0].path);
    assert!(media[0].complete && media[0].violations.is_empty());
    // A streaming POST answered with a redirect is not followed: the sink reconnects where it
    // was, and nothing goes to the Location.
    let before = rx.posts().len();
    rx.inject(
        Fault::new(FaultKind::ErrorStatus { fragments: 2, status: 307 }, Duration::from_secs(60))
            .for_stream("p")
            .once(),
    );
    let r = run_pipeline(&pipeline(&rx.url("live", "p"), ""), Duration::from_secs(60));
    delivered(&rx, &r, "p");
    let posts: Vec<_> = rx.posts().into_iter().skip(before).collect();
    assert!(posts.iter().all(|p| p.path.starts_with("/live.isml/")));
    assert_eq!(r.messages_named("fmp4ingestsink-disconnected").len(), 1);
}

/// A probe answered with `how`: the sink gives up at its limits, in bounded time.
fn hostile_probe(how: Hostile) -> (RunResult, Duration) {
    let rx = Receiver::start().unwrap();
    rx.inject(Fault::new(FaultKind::HostileAnswer(how), Duration::from_secs(120)));
    let start = Instant::now();
    let r = run_pipeline(&pipeline(&rx.url("live", "x"), QUICK), Duration::from_secs(60));
    (r, start.elapsed())
}

#[test]
fn a_hostile_server_cannot_exhaust_the_sink() {
    for how in [Hostile::HugeHeader, Hostile::ManyHeaders, Hostile::SlowDrip] {
        let (r, took) = hostile_probe(how);
        assert_eq!(r.errors.len(), 1, "{how:?}: {:?}", r.warnings);
        assert!(r.errors[0].contains("Could not connect"), "{how:?}: {}", r.errors[0]);
        // Two attempts of at most connect-timeout each, and the backoff between them.
        assert!(took < Duration::from_secs(15), "{how:?} took {took:?}");
    }
    // An endless body after a 200: the probe counts, the body is never read, the stream goes on.
    let rx = Receiver::start().unwrap();
    rx.inject(
        Fault::new(FaultKind::HostileAnswer(Hostile::EndlessBody), Duration::from_secs(120)).for_stream("e").once(),
    );
    let r = run_pipeline(&pipeline(&rx.url("live", "e"), ""), Duration::from_secs(60));
    delivered(&rx, &r, "e");
    let probe = rx.stream("e").probes()[0].clone();
    let taken = probe.hostile_bytes.expect("the endless answer was written");
    assert!(taken < 16 << 20, "the sink read {taken} bytes of an endless body");
    // The same as the answer to a sparse POST: read up to a cap, the message still counts.
    let rx = Receiver::start().unwrap();
    rx.inject(
        Fault::new(FaultKind::HostileAnswer(Hostile::EndlessBody), Duration::from_secs(120)).for_stream("ads").once(),
    );
    let r = run_pipeline(&pipeline(&rx.url("live", "e"), "sparse-stream-id=ads"), Duration::from_secs(60));
    delivered(&rx, &r, "e");
    let header_post = rx.stream("ads").media_posts()[0].clone();
    assert!(header_post.hostile_bytes.expect("hostile") < 16 << 20);
    let delivered = r.messages_named("fmp4ingestsink-sparse-delivered");
    assert_eq!(delivered.len(), 1, "the registration counts: {:?}", r.messages);
}

/// Run by the test below as a child process, so that the provider it installs stays in that
/// process.
#[test]
fn a_host_process_that_chose_its_own_rustls_provider_keeps_it_and_the_sink_pushes_https() {
    const CHILD: &str = "FMP4INGEST_PROVIDER_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_host_process_that_chose_its_own_rustls_provider_keeps_it_and_the_sink_pushes_https",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the child run failed");
        return;
    }
    // The host application installs its own process-wide provider first — one no TLS
    // connection can be made with (no cipher suite at all), so that a sink that took the
    // process's provider instead of bringing its own could not push.
    let ring = rustls::crypto::ring::default_provider();
    let own = rustls::crypto::CryptoProvider { cipher_suites: Vec::new(), ..ring };
    own.install_default().expect("nothing installed before");
    let p = pki();
    let rx = tls_receiver(&p, false, Behaviour::default());
    let ca = file("ca.pem", &p.ca_pem);
    let r = run_pipeline(&pipeline(&rx.url("live", "h"), &format!("ca-file={ca}")), Duration::from_secs(60));
    delivered(&rx, &r, "h");
    // The sink neither replaced nor used it: the host's choice is intact.
    let installed = rustls::crypto::CryptoProvider::get_default().expect("still installed");
    assert!(installed.cipher_suites.is_empty());
}
