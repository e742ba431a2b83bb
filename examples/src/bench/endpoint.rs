// SPDX-License-Identifier: MPL-2.0
//! The local endpoint under load: `fmp4ingest-endpoint` (the release binary, a process of its
//! own) with a 25 h archive window pre-filled on disk for 10 publishing points — 45,000
//! fragments per track, read back at start — while 10 fmp4ingestsink push live 2 Mbps H.264 +
//! AAC to those points (times on the UTC timeline, following the archive) and 50 players poll
//! manifests and fetch fragments, each over one keep-alive connection. Figures: the latency of
//! every manifest and fragment request (from the request written to the last body byte read,
//! in the players' process), the endpoint's CPU and peak RSS, and how long reading the archive
//! back took.
//!
//! The archive is made of a short real ingest: the fragments of one point as the endpoint
//! archived them, then 45,000 names per track, each a hard link to a copy of one of those
//! files (the bytes are the same; the names carry the times), so that 900,000 fragments take
//! little space.
//!
//! Players: a third each on Smooth (`Manifest`), DASH (`.mpd`) and HLS (the media playlists);
//! every 2 s each fetches its manifest, and the newest video and audio fragment when new (from
//! memory); one in five also fetches a random fragment of the archive (from disk).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fmp4ingest_endpoint::media::meta::TrackMeta;
use fmp4ingest_endpoint::{Endpoint, EndpointConfig, archive};
use gst::prelude::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::many::units;
use crate::util::{child_cpu_seconds, init, machine, muxed_input, percentile};

pub const POINTS: usize = 10;
pub const PLAYERS: usize = 50;
/// Fragments per track in the archive: 25 h of 2 s fragments.
pub const ARCHIVED: u64 = 45_000;
/// Seconds of live ingest; the players run through the middle of it.
pub const SECONDS: u64 = 60;

fn bench_dir() -> PathBuf {
    PathBuf::from("target/bench")
}

/// 60 s of 640x360 H.264 at 2 Mbps (x264 on noise, so that it reaches the rate) and AAC,
/// isofmp4mux with 2 s fragments.
fn input() -> Result<PathBuf, String> {
    muxed_input(
        "input-2mbps-noise-60s-isofmp4mux.mp4",
        "isofmp4mux fragment-duration=2000000000",
        640,
        360,
        2000,
        "snow",
    )
}

/// Child: `endpoint-push <port> <points> <fragments>`: that many fmp4ingestsink, each pushing
/// the 2 Mbps input live (one fragment every 2 s) to `/point-<i>.isml/Streams(av)`, with
/// times on the UTC timeline (`timestamp-offset` on a boundary: with `timestamp-mode=utc` the
/// video of an appsrc that hands over whole pre-muxed fragments would go off the grid).
pub fn push_child(port: u16, points: usize, fragments: usize) -> Result<(), String> {
    init()?;
    let data = std::fs::read(input()?).map_err(|e| e.to_string())?;
    let (header, frags) = units(&data)?;
    // Times on the UTC timeline, so that the live fragments follow the archive: the pipeline's
    // running time plus the UTC instant it starts at, on the 2 s grid.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let offset = now / 2 * 2 * 1_000_000_000;
    let mut d = String::new();
    for i in 0..points {
        d.push_str(&format!(
            "appsrc name=src{i} is-live=true do-timestamp=true format=time caps=video/quicktime,variant=iso-fragmented ! \
             fmp4ingestsink name=sink{i} timestamp-offset={offset} location=http://127.0.0.1:{port}/point-{i}.isml/Streams(av) "
        ));
    }
    let p = gst::parse::launch(&d).map_err(|e| e.to_string())?.downcast::<gst::Pipeline>().map_err(|_| "pipeline")?;
    let srcs: Vec<gst::Element> = (0..points).map(|i| p.by_name(&format!("src{i}")).unwrap()).collect();
    let bus = p.bus().ok_or("bus")?;
    p.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let push = |buf: &gst::Buffer| {
        for s in &srcs {
            let _ = s.emit_by_name::<gst::FlowReturn>("push-buffer", &[buf]);
        }
    };
    let start = Instant::now();
    push(&gst::Buffer::from_slice(header));
    for (k, f) in frags.into_iter().take(fragments).enumerate() {
        let due = start + Duration::from_secs(2 * (k as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        push(&gst::Buffer::from_slice(f));
    }
    for s in &srcs {
        let _ = s.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    }
    let msg =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let _ = p.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => Err(format!("{} ({:?})", e.error(), e.debug())),
        _ => Ok(()),
    }
}

/// One track of the archive's template: its description and a real fragment.
struct Template {
    meta: TrackMeta,
    dir: PathBuf,
    fragment: PathBuf,
    duration: u64,
}

/// A short real ingest into an in-process endpoint with an archive: the template of every
/// track.
fn templates(scratch: &Path) -> Result<Vec<Template>, String> {
    let _ = std::fs::remove_dir_all(scratch);
    let ep = Endpoint::start(EndpointConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        archive_dir: Some(scratch.to_path_buf()),
        ..EndpointConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["endpoint-push", &ep.addr().port().to_string(), "1", "3"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("endpoint-push failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    // The archive writer is off the request path: wait for its files.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ep.archive_counts().is_some_and(|(w, ..)| w < 4) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(ep);
    let point = archive::track_dir(scratch, "point-0", "x").parent().unwrap().to_path_buf();
    let mut out = Vec::new();
    for t in std::fs::read_dir(&point).map_err(|e| format!("{}: {e}", point.display()))?.flatten() {
        let dir = t.path();
        let meta: TrackMeta =
            serde_json::from_slice(&std::fs::read(dir.join("track.json")).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        // A middle fragment: the first may start late, the last may be cut by the end.
        let mut frags: Vec<(u64, u64, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".m4s")?.to_string();
                let (t, d) = name.split_once('_')?;
                Some((t.parse().ok()?, d.parse().ok()?, e.path()))
            })
            .collect();
        frags.sort();
        let (_, duration, fragment) = frags.get(frags.len() / 2).cloned().ok_or("no archived fragment")?;
        out.push(Template { meta, dir, fragment, duration });
    }
    Ok(out)
}

/// The pre-filled archive: for every point and track, [`ARCHIVED`] fragments ending 20 s ago.
fn prefill(dir: &Path, templates: &[Template]) -> Result<u64, String> {
    let _ = std::fs::remove_dir_all(dir);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() - 20.0;
    let mut files = 0;
    for p in 0..POINTS {
        for t in templates {
            let d = archive::track_dir(dir, &format!("point-{p}"), &t.meta.name);
            std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
            for f in ["track.json", "init.mp4"] {
                std::fs::copy(t.dir.join(f), d.join(f)).map_err(|e| e.to_string())?;
            }
            // A copy per track directory: a file takes at most 65,000 links (ext4).
            let source = d.join("template.bin");
            std::fs::copy(&t.fragment, &source).map_err(|e| e.to_string())?;
            let end = (now * f64::from(t.meta.timescale)) as u64 / t.duration * t.duration;
            for k in 0..ARCHIVED {
                let time = end - (ARCHIVED - k) * t.duration;
                std::fs::hard_link(&source, d.join(format!("{time}_{}.m4s", t.duration)))
                    .map_err(|e| format!("hard link in {}: {e}", d.display()))?;
                files += 1;
            }
        }
    }
    Ok(files)
}

/// utime + stime of a process, in seconds.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat, counted from the state (field 3) at index 0.
    (ticks(11) + ticks(12)) / hz
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM"))?.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// What a player asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Smooth,
    Dash,
    Hls,
}

/// A DASH timeline run: its first time, duration and repeats.
type Run = (u64, u64, u64);

/// The newest fragments a manifest lists (each its path relative to the point and its
/// time), and for DASH the video timeline's first run (to pick archive fragments from).
fn newest(format: Format, text: &str) -> (Vec<(String, u64)>, Option<Run>) {
    // An attribute of an element's text (`t="1" d="2"/>`): its tokens, `name="value"`.
    let attr = |s: &str, n: &str| -> Option<u64> {
        s.split_whitespace().find_map(|tok| tok.strip_prefix(n)?.strip_prefix("=\"")?.split('"').next()?.parse().ok())
    };
    let mut out = Vec::new();
    let mut first_run = None;
    match format {
        Format::Smooth => {
            // From each StreamIndex's last `<c t=`: the list writes a time there, and durations
            // after it (a player reading 45,000 entries each poll would measure itself).
            for index in text.split("<StreamIndex ").skip(1) {
                let Some(name) = index.split("Name=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
                if index.contains("Type=\"text\"") {
                    continue;
                }
                let Some(at) = index.rfind("<c t=") else { continue };
                let (mut t, mut last) = (0u64, None);
                for c in index[at..].split("<c ").skip(1) {
                    let c = c.split('>').next().unwrap_or("");
                    if let Some(start) = attr(c, "t") {
                        t = start;
                    }
                    last = Some(t);
                    t += attr(c, "d").unwrap_or(0);
                }
                if let Some(l) = last {
                    out.push((format!("QualityLevels(0)/Fragments({name}={l})"), l));
                }
            }
        }
        Format::Dash => {
            for tpl in text.split("<SegmentTemplate ").skip(1) {
                let Some(media) = tpl.split("media=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
                let mut newest = None;
                for s in tpl.split("<S ").skip(1) {
                    let s = s.split('>').next().unwrap_or("");
                    let (t, d, r) = (attr(s, "t").unwrap_or(0), attr(s, "d").unwrap_or(0), attr(s, "r").unwrap_or(0));
                    if first_run.is_none() && media.contains("video") {
                        first_run = Some((t, d, r));
                    }
                    newest = Some(t + r * d);
                }
                if let Some(n) = newest {
                    out.push((media.replace("$Time$", &n.to_string()), n));
                }
            }
        }
        Format::Hls => {
            if let Some(l) = text.lines().rev().find(|l| l.ends_with(".m4s")) {
                let time = l.rsplit('/').next().and_then(|f| f.strip_suffix(".m4s")?.parse().ok()).unwrap_or(0);
                out.push((l.to_string(), time));
            }
        }
    }
    (out, first_run)
}

/// A keep-alive connection and its requests' latencies.
struct Player {
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    samples: Vec<(&'static str, u64, u16, usize)>,
}

impl Player {
    async fn connect(addr: SocketAddr) -> Result<Player, String> {
        let s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Player { send, samples: Vec::new() })
    }

    async fn get(&mut self, what: &'static str, path: &str) -> Option<Bytes> {
        let req = hyper::Request::get(path).header("host", "bench").body(Empty::new()).ok()?;
        let t0 = Instant::now();
        let resp = self.send.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let us = t0.elapsed().as_micros() as u64;
        self.samples.push((what, us, status, body.len()));
        (status == 200).then_some(body)
    }
}

async fn play(addr: SocketAddr, i: usize, until: Instant) -> Vec<(&'static str, u64, u16, usize)> {
    let Ok(mut p) = Player::connect(addr).await else { return vec![("connect", 0, 0, 0)] };
    let point = format!("/point-{}.isml", i % POINTS);
    let format = [Format::Smooth, Format::Dash, Format::Hls][i % 3];
    let dvr = i % 5 == 4;
    let mut fetched: BTreeMap<String, u64> = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ i as u64;
    // Start spread over the first poll period.
    tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
    while Instant::now() < until {
        let started = Instant::now();
        let manifests: Vec<(&'static str, String)> = match format {
            Format::Smooth => vec![("manifest Smooth", format!("{point}/Manifest"))],
            Format::Dash => vec![("manifest DASH", format!("{point}/.mpd"))],
            Format::Hls => {
                vec![("manifest HLS", format!("{point}/video.m3u8")), ("manifest HLS", format!("{point}/audio.m3u8"))]
            }
        };
        let mut first_run = None;
        let mut wanted = Vec::new();
        for (what, path) in manifests {
            let Some(body) = p.get(what, &path).await else { continue };
            let (n, run) = newest(format, &String::from_utf8_lossy(&body));
            first_run = first_run.or(run);
            wanted.extend(n);
        }
        for (rel, time) in wanted {
            let track = if rel.contains("video") { "video" } else { "audio" };
            if fetched.get(track) != Some(&time) {
                fetched.insert(track.to_string(), time);
                p.get("fragment, newest (memory)", &format!("{point}/{rel}")).await;
            }
        }
        if dvr {
            // A random fragment of the video archive (DASH's first run is the archive).
            let run = match first_run {
                Some(r) => Some(r),
                None => p
                    .get("manifest DASH", &format!("{point}/.mpd"))
                    .await
                    .and_then(|b| newest(Format::Dash, &String::from_utf8_lossy(&b)).1),
            };
            if let Some((t0, d, r)) = run.filter(|r| r.2 > 0) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = rng % r;
                p.get("fragment, archive (disk)", &format!("{point}/cmaf/video/{}.m4s", t0 + k * d)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(2).saturating_sub(started.elapsed())).await;
    }
    p.samples
}

/// Child: `endpoint-players <port> <seconds>`: the players; prints a `sample` line per request.
pub fn players_child(port: u16, seconds: u64) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let until = Instant::now() + Duration::from_secs(seconds);
    let all = rt.block_on(async {
        let tasks: Vec<_> = (0..PLAYERS).map(|i| tokio::spawn(play(addr, i, until))).collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    });
    for (what, us, status, bytes) in all {
        println!("sample\t{what}\t{us}\t{status}\t{bytes}");
    }
    Ok(())
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

pub fn section() -> Result<String, String> {
    let input_kbps = std::fs::metadata(input()?).map_err(|e| e.to_string())?.len() as f64 * 8.0 / 60.0 / 1000.0;
    let scratch = bench_dir().join("endpoint-template");
    let dir = bench_dir().join("endpoint-archive");
    println!("   a short real ingest for the archive's template");
    let templates = templates(&scratch)?;
    println!("   pre-filling {POINTS} points x {} tracks x {ARCHIVED} fragments", templates.len());
    let t = Instant::now();
    let files = prefill(&dir, &templates)?;
    println!("   {files} names in {:.1} s", t.elapsed().as_secs_f64());
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let endpoint_exe = exe.with_file_name("fmp4ingest-endpoint");
    let spawned = Instant::now();
    let mut endpoint = Command::new(&endpoint_exe)
        .args(["--port", "0", "--quiet", "--archive-window", "PT25H", "--archive-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e} (scripts/bench.sh builds it)", endpoint_exe.display()))?;
    let pid = endpoint.id();
    let mut lines = BufReader::new(endpoint.stdout.take().ok_or("no stdout")?).lines();
    let first = lines.next().ok_or("the endpoint said nothing")?.map_err(|e| e.to_string())?;
    let startup = spawned.elapsed().as_secs_f64();
    let port: u16 = first
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {first:?}"))?;
    std::thread::spawn(move || for _ in lines {});
    let rss_start = peak_rss_mib(pid);
    println!("   endpoint up in {startup:.1} s ({rss_start:.0} MiB), pushing {POINTS} live streams");
    let mut pusher = Command::new(&exe)
        .args(["endpoint-push", &port.to_string(), &POINTS.to_string(), &(SECONDS / 2).to_string()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Players start once each point has a few live fragments.
    std::thread::sleep(Duration::from_secs(8));
    let measured = SECONDS - 16;
    let cpu0 = process_cpu(pid);
    let children0 = child_cpu_seconds();
    let t0 = Instant::now();
    let out = Command::new(&exe).args(["endpoint-players", &port.to_string(), &measured.to_string()]).output();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu(pid) - cpu0;
    let players_cpu = child_cpu_seconds() - children0;
    let rss = peak_rss_mib(pid);
    let pushed = pusher.wait().map_err(|e| e.to_string())?;
    let _ = endpoint.kill();
    let _ = endpoint.wait();
    let out = out.map_err(|e| e.to_string())?;
    if !out.status.success() || !pushed.success() {
        return Err(format!("players or pushers failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut errors, mut bytes) = (0usize, 0u64);
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if let [_, what, us, status, n] = f[..] {
            if status != "200" {
                errors += 1;
                continue;
            }
            let n = n.parse::<u64>().unwrap_or(0);
            bytes += n;
            *sizes.entry(what.to_string()).or_default() += n;
            let us: f64 = us.parse().unwrap_or(f64::NAN);
            by.entry(what.to_string()).or_default().push(us);
            let all = if what.starts_with("manifest") { "manifests (all)" } else { "fragments (all)" };
            by.entry(all.to_string()).or_default().push(us);
        }
    }
    let mut rows = String::new();
    for (what, v) in &mut by {
        v.sort_by(f64::total_cmp);
        let size =
            sizes.get(what.as_str()).map_or(String::new(), |b| format!("{:.0} kB", *b as f64 / v.len() as f64 / 1e3));
        rows.push_str(&format!(
            "| {what} | {} | {size} | {} | {} | {} |\n",
            v.len(),
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(*v.last().unwrap_or(&f64::NAN))
        ));
    }
    let p99 = |k: &str| by.get(k).map_or(f64::NAN, |v| percentile(v, 0.99));
    let (m99, f99) = (p99("manifests (all)"), p99("fragments (all)"));
    let verdict = |v: f64| if v < 10_000.0 { "met" } else { "**not met**" };
    Ok(format!(
        "## Local endpoint\n\n{}\n\n\
         `fmp4ingest-endpoint` (release, its own process, default settings but `--archive-window PT25H \
         --archive-dir`), with the archive of {POINTS} publishing points pre-filled on disk: video and audio, \
         {ARCHIVED} fragments of 2 s per track ({files} files, hard links to real fragments) read back at start in \
         **{startup:.1} s** ({rss_start:.0} MiB resident after). Then {POINTS} fmp4ingestsink in another process push \
         live H.264 + AAC to those points at {input_kbps:.0} kb/s each (a pre-muxed isofmp4mux stream, x264 at 2 Mbps \
         on noise, fed in real time, times on the UTC timeline that follow the archive), and {PLAYERS} players in a third process, each on one keep-alive connection, \
         every 2 s fetch their manifest (a third each Smooth `Manifest`, DASH `.mpd`, HLS media playlists) and the \
         newest video and audio fragment when new; one in five also fetches a random fragment of the 25 h archive \
         (read from disk). Latency from the request written to the last body byte read, over {wall:.0} s; \
         {errors} answers other than 200; {:.1} MB served.\n\n\
         | requests | count | mean size | p50 | p99 | max |\n|---|---|---|---|---|---|\n{rows}\n\
         CPU of the endpoint over those {wall:.0} s: **{cpu:.2} s**, {:.1} % of one core; peak RSS {rss:.0} MiB. \
         The players took {players_cpu:.1} s of CPU (reading {:.0} MB/s of manifests and fragments on the same 2 \
         cores). \
         Goal p99 < 10 ms: manifests {} ({}; HLS media playlists alone, 45,000 segments each: {}), fragments {} \
         ({}).\n",
        machine(),
        bytes as f64 / 1e6,
        cpu / wall * 100.0,
        bytes as f64 / 1e6 / wall,
        ms(m99),
        verdict(m99),
        ms(p99("manifest HLS")),
        ms(f99),
        verdict(f99),
    ))
}
