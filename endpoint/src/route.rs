// SPDX-License-Identifier: MPL-2.0
//! Request routing: a method and a request target in, what the request is for out — or the
//! status and the one-line reason it is refused with. Pure, so that it is tested and fuzzed
//! alone.
//!
//! - `POST /<name>.isml/Streams(<id>)`: Smooth ingest (Azure fragmented MP4 live ingest §2.2),
//!   and `POST`/`PUT` of CMAF ingest (DASH-IF Live Media Ingest, Interface-1: `<id>` is
//!   `<track>.cmfv|cmfa|cmfm`), told apart by [`crate::ingest`];
//! - `POST`/`PUT` `/<name>.isml/<file>.mpd` (or `Streams(<file>.mpd)`): an MPD posted to the
//!   publishing point (DASH-IF Live Media Ingest, Interface-1: "before that SHOULD post a DASH
//!   MPD"), stored and served back at `GET /<name>.isml/<file>.mpd`;
//! - `POST /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Media/mediaservices/
//!   {account}/liveEvents/{name}/getTrackIngestHeartbeats`: the heartbeats of point `{name}`;
//! - `/api/Programs...`: the Programs API (methods are checked there);
//! - `GET`/`HEAD` `/<name>.isml/<resource>` (a publishing point) or `/<name>.ism/<resource>`
//!   (a program's archive, by its ManifestName), the resources of [`crate::output`].
//!
//! Path segments are percent-decoded one by one after splitting, so a name may hold any
//! character but a control one; names are at most 128 bytes. The query is ignored.

use percent_encoding::percent_decode_str;

/// What is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `/<name>.isml/`: a publishing point.
    Point(String),
    /// `/<ManifestName>.ism/`: a program's archive.
    Program(String),
}

/// What is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `Manifest`: the Smooth client manifest.
    Smooth,
    /// `QualityLevels(<b>)/Fragments(<track>=<time>)`.
    SmoothFragment { track: String, time: u64 },
    /// `.mpd`
    Mpd,
    /// `.m3u8`: the multivariant playlist.
    HlsMain,
    /// `<track>.m3u8`
    HlsMedia(String),
    /// `cmaf/<track>/init.mp4`
    Init(String),
    /// `cmaf/<track>/<time>.m4s`
    Segment { track: String, time: u64 },
    /// `<file>.mpd`: an MPD an encoder posted to the point, as it came.
    PostedMpd(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Ingest {
        point: String,
        stream: String,
    },
    /// An MPD posted or put to a publishing point, under its file name.
    MpdUpload {
        point: String,
        file: String,
    },
    Heartbeats {
        point: String,
    },
    Programs,
    Get {
        source: Source,
        resource: Resource,
    },
}

/// A refused request: its status, and a reason in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
    /// The methods the resource takes (for a 405's `Allow`).
    pub allow: Option<&'static str>,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal { status, reason: reason.into(), allow: None }
}

fn method_not_allowed(method: &str, allow: &'static str, what: &str) -> Refusal {
    Refusal { status: 405, reason: format!("{method} is not allowed on {what} (only {allow})"), allow: Some(allow) }
}

/// Longest name of a point, stream or track.
pub const MAX_NAME: usize = 128;

fn name(segment: &str, what: &str) -> Result<String, Refusal> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| refuse(400, format!("the {what} name is not UTF-8 once percent-decoded")))?;
    if decoded.is_empty() || decoded.len() > MAX_NAME || decoded.chars().any(char::is_control) {
        return Err(refuse(400, format!("a {what} name must be 1 to {MAX_NAME} bytes without control characters")));
    }
    Ok(decoded.into_owned())
}

/// `<file>.mpd` with a file name before the extension (`.mpd` alone is the point's own MPD).
fn mpd_file(segment: &str) -> bool {
    segment.len() > 4 && segment.get(segment.len() - 4..).is_some_and(|e| e.eq_ignore_ascii_case(".mpd"))
}

/// `prefix(inner)` → inner, the prefix compared without case.
fn inside<'a>(segment: &'a str, prefix: &str) -> Option<&'a str> {
    let head = segment.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| segment[prefix.len()..].strip_suffix(')')).flatten()
}

/// Routes a request.
pub fn route(method: &str, target: &str) -> Result<Route, Refusal> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(path) = path.strip_prefix('/') else {
        return Err(refuse(400, "the request target is not an absolute path"));
    };
    let parts: Vec<&str> = path.split('/').collect();
    if parts.first() == Some(&"api") && parts.get(1).is_some_and(|p| p.starts_with("Programs")) {
        return Ok(Route::Programs);
    }
    if let [
        "subscriptions",
        _,
        "resourceGroups",
        _,
        "providers",
        "Microsoft.Media",
        "mediaservices",
        _,
        "liveEvents",
        point,
        "getTrackIngestHeartbeats",
    ] = parts.as_slice()
    {
        if method != "POST" {
            return Err(method_not_allowed(method, "POST", "the heartbeats API"));
        }
        return Ok(Route::Heartbeats { point: name(point, "live event")? });
    }
    let first = parts[0];
    let (source, is_point) = if let Some(n) = first.strip_suffix(".isml") {
        (Source::Point(name(n, "publishing point")?), true)
    } else if let Some(n) = first.strip_suffix(".ism") {
        (Source::Program(name(n, "program manifest")?), false)
    } else {
        return Err(refuse(
            404,
            "not a publishing point (/<name>.isml/...), program (/<name>.ism/...), heartbeats or /api/Programs URL",
        ));
    };
    let rest = &parts[1..];
    if let [streams] = rest
        && let Some(id) = inside(streams, "Streams(")
    {
        if !is_point {
            return Err(refuse(404, "ingest goes to a publishing point: /<name>.isml/Streams(<id>)"));
        }
        if method != "POST" && method != "PUT" {
            return Err(method_not_allowed(method, "POST, PUT", "an ingest URL"));
        }
        let Source::Point(point) = source else { unreachable!("checked above") };
        let stream = name(id, "stream")?;
        if mpd_file(&stream) {
            return Ok(Route::MpdUpload { point, file: stream });
        }
        return Ok(Route::Ingest { point, stream });
    }
    if let ([file], Source::Point(point), "POST" | "PUT") = (rest, &source, method)
        && mpd_file(file)
    {
        return Ok(Route::MpdUpload { point: point.clone(), file: name(file, "MPD file")? });
    }
    let resource = match rest {
        [m] if m.eq_ignore_ascii_case("Manifest") => Resource::Smooth,
        [".mpd"] => Resource::Mpd,
        [".m3u8"] => Resource::HlsMain,
        [m] if m.ends_with(".m3u8") => Resource::HlsMedia(name(&m[..m.len() - 5], "track")?),
        [m] if is_point && mpd_file(m) => Resource::PostedMpd(name(m, "MPD file")?),
        [q, f] if inside(q, "QualityLevels(").is_some() => {
            let inner = inside(f, "Fragments(").ok_or_else(|| refuse(404, "expected Fragments(<track>=<time>)"))?;
            let (track, time) =
                inner.rsplit_once('=').ok_or_else(|| refuse(404, "expected Fragments(<track>=<time>)"))?;
            let time = time.parse().map_err(|_| refuse(400, format!("fragment time {time:?} is not a number")))?;
            Resource::SmoothFragment { track: name(track, "track")?, time }
        }
        ["cmaf", track, "init.mp4"] => Resource::Init(name(track, "track")?),
        ["cmaf", track, file] if file.ends_with(".m4s") => {
            let time = &file[..file.len() - 4];
            let time = time.parse().map_err(|_| refuse(400, format!("segment time {time:?} is not a number")))?;
            Resource::Segment { track: name(track, "track")?, time }
        }
        _ => {
            return Err(refuse(
                404,
                "no such resource: Manifest, QualityLevels(..)/Fragments(..), .mpd, .m3u8, <track>.m3u8 or cmaf/<track>/...",
            ));
        }
    };
    if method != "GET" && method != "HEAD" {
        return Err(method_not_allowed(method, "GET, HEAD", "a manifest or segment"));
    }
    Ok(Route::Get { source, resource })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<Route, Refusal> {
        route("GET", path)
    }

    #[test]
    fn every_route() {
        assert_eq!(
            route("POST", "/live.isml/Streams(av)"),
            Ok(Route::Ingest { point: "live".into(), stream: "av".into() })
        );
        assert_eq!(
            route("PUT", "/live.isml/Streams(video.cmfv)"),
            Ok(Route::Ingest { point: "live".into(), stream: "video.cmfv".into() })
        );
        assert_eq!(
            route("POST", "/a%20b.isml/streams(x%2Fy)?q=1"),
            Ok(Route::Ingest { point: "a b".into(), stream: "x/y".into() })
        );
        let hb = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Media/mediaservices/a/liveEvents/live/getTrackIngestHeartbeats?api-version=2022-11-01";
        assert_eq!(route("POST", hb), Ok(Route::Heartbeats { point: "live".into() }));
        for (method, target) in [("PUT", "/live.isml/channel1.mpd"), ("POST", "/live.isml/Streams(channel1.mpd)")] {
            assert_eq!(
                route(method, target),
                Ok(Route::MpdUpload { point: "live".into(), file: "channel1.mpd".into() }),
                "{method} {target}"
            );
        }
        assert_eq!(
            get("/live.isml/channel1.MPD"),
            Ok(Route::Get {
                source: Source::Point("live".into()),
                resource: Resource::PostedMpd("channel1.MPD".into())
            })
        );
        // The point's own MPD is read, not written; a program takes no upload.
        assert_eq!(route("PUT", "/live.isml/.mpd").unwrap_err().status, 405);
        assert_eq!(route("PUT", "/news.ism/channel1.mpd").unwrap_err().status, 404);
        assert_eq!(get("/news.ism/channel1.mpd").unwrap_err().status, 404);
        assert_eq!(route("GET", hb).unwrap_err().status, 405);
        assert_eq!(route("DELETE", "/api/Programs('x')"), Ok(Route::Programs));
        let p = |r| Ok(Route::Get { source: Source::Point("live".into()), resource: r });
        assert_eq!(get("/live.isml/Manifest"), p(Resource::Smooth));
        assert_eq!(get("/live.isml/manifest"), p(Resource::Smooth));
        assert_eq!(get("/live.isml/.mpd"), p(Resource::Mpd));
        assert_eq!(get("/live.isml/.m3u8"), p(Resource::HlsMain));
        assert_eq!(get("/live.isml/audio%20eng.m3u8"), p(Resource::HlsMedia("audio eng".into())));
        assert_eq!(get("/live.isml/cmaf/video/init.mp4"), p(Resource::Init("video".into())));
        assert_eq!(get("/live.isml/cmaf/video/1234.m4s"), p(Resource::Segment { track: "video".into(), time: 1234 }));
        assert_eq!(
            get("/live.isml/QualityLevels(128000)/Fragments(a=b=77)"),
            p(Resource::SmoothFragment { track: "a=b".into(), time: 77 })
        );
        assert_eq!(
            route("HEAD", "/news.ism/.mpd"),
            Ok(Route::Get { source: Source::Program("news".into()), resource: Resource::Mpd })
        );
    }

    #[test]
    fn refusals_say_why() {
        for (method, path, status, why) in [
            ("GET", "/etc/passwd", 404, "not a publishing point"),
            ("GET", "/live.isml/Streams(av)", 405, "only POST, PUT"),
            ("DELETE", "/live.isml/Streams(video.cmfv)", 405, "only POST, PUT"),
            ("DELETE", "/live.isml/Manifest", 405, "GET, HEAD"),
            ("POST", "/news.ism/Streams(av)", 404, "ingest goes to"),
            ("GET", "/live.isml/cmaf/video/x.m4s", 400, "not a number"),
            ("GET", "/live.isml/QualityLevels(1)/Fragments(video=x)", 400, "not a number"),
            ("GET", "/live.isml/QualityLevels(1)/Nope", 404, "Fragments"),
            ("GET", "/%ff.isml/Manifest", 400, "UTF-8"),
            ("GET", "/a%0ab.isml/Manifest", 400, "control"),
            ("GET", "/.isml/Manifest", 400, "1 to 128"),
            ("GET", "/live.isml/cmaf/video/init.mp4/x", 404, "no such resource"),
            ("GET", "*", 400, "absolute path"),
        ] {
            let r = route(method, path).unwrap_err();
            assert_eq!(r.status, status, "{method} {path}: {r:?}");
            assert!(r.reason.contains(why), "{method} {path}: {r:?}");
            assert!(!r.reason.contains('\n'));
        }
        let long = format!("/{}.isml/Manifest", "a".repeat(129));
        assert_eq!(get(&long).unwrap_err().status, 400);
    }
}
