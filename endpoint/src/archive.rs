// SPDX-License-Identifier: MPL-2.0
//! The on-disk archive: every fragment a point keeps, as a file
//! `<dir>/<point>/<track>/<time>_<duration>.m4s` (moof + mdat as ingested), with the track's
//! description (`track.json`) and init segment (`init.mp4`) beside them, so that an endpoint
//! started on the same directory serves what an earlier one recorded.
//!
//! Files are written and removed by one writer thread, never by the async workers that serve
//! requests: the server hands it operations through a bounded queue and goes on. Pruning
//! names the files of the fragments the window dropped, from their times, so nothing lists a
//! directory while the endpoint runs; only [`restore`] does, once, at start.
//!
//! Names are percent-encoded (a leading dot too), so that any point or track name is one
//! directory and reads back as itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use bytes::Bytes;
use percent_encoding::percent_decode_str;

use crate::media::meta::TrackMeta;
use crate::output::url_part;

/// Operations queued for the writer before the server counts them as dropped.
pub const QUEUE: usize = 4096;

/// A name as one path component.
pub fn file_part(name: &str) -> String {
    let p = url_part(name);
    match p.strip_prefix('.') {
        Some(rest) => format!("%2E{rest}"),
        None => p,
    }
}

/// The directory of a track.
pub fn track_dir(dir: &Path, point: &str, track: &str) -> PathBuf {
    dir.join(file_part(point)).join(file_part(track))
}

/// The file of a fragment.
pub fn fragment_path(dir: &Path, point: &str, track: &str, time: u64, duration: u64) -> PathBuf {
    track_dir(dir, point, track).join(format!("{time}_{duration}.m4s"))
}

/// What the writer does.
#[derive(Debug)]
pub enum Op {
    /// A track's description and init segment.
    Track {
        point: String,
        meta: TrackMeta,
        init: Option<Bytes>,
    },
    Fragment {
        point: String,
        track: String,
        time: u64,
        duration: u64,
        bytes: Bytes,
    },
    Remove {
        point: String,
        track: String,
        time: u64,
        duration: u64,
    },
}

/// Counts of the writer, for the status and the log.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    pub written: AtomicU64,
    pub removed: AtomicU64,
    pub failed: AtomicU64,
    /// Operations not queued because the writer was behind.
    pub dropped: AtomicU64,
}

/// The archive of one endpoint: its directory and its writer.
#[derive(Debug)]
pub struct Archive {
    pub dir: PathBuf,
    tx: SyncSender<Op>,
    pub stats: Arc<ArchiveStats>,
}

impl Archive {
    /// Starts the writer thread; `log` receives a line for every failed operation.
    pub fn start(dir: PathBuf, log: impl Fn(String) + Send + 'static) -> std::io::Result<Archive> {
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(ArchiveStats::default());
        let (d, s) = (dir.clone(), stats.clone());
        std::thread::Builder::new().name("endpoint-archive".into()).spawn(move || writer(&d, rx, &s, &log))?;
        Ok(Archive { dir, tx, stats })
    }

    /// Queues an operation without waiting; false (and counted) when the writer is behind.
    pub fn send(&self, op: Op) -> bool {
        match self.tx.try_send(op) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

fn writer(dir: &Path, rx: Receiver<Op>, stats: &ArchiveStats, log: &dyn Fn(String)) {
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut ensure = |d: PathBuf| -> std::io::Result<PathBuf> {
        if !made.contains(&d) {
            std::fs::create_dir_all(&d)?;
            made.insert(d.clone());
        }
        Ok(d)
    };
    // Written whole then renamed: a file is either complete or absent.
    let put = |path: PathBuf, bytes: &[u8]| -> std::io::Result<()> {
        let part = path.with_extension("part");
        std::fs::write(&part, bytes)?;
        std::fs::rename(part, path)
    };
    for op in rx {
        let result = match &op {
            Op::Track { point, meta, init } => ensure(track_dir(dir, point, &meta.name)).and_then(|d| {
                let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
                put(d.join("track.json"), &json)?;
                match init {
                    Some(i) => put(d.join("init.mp4"), i),
                    None => Ok(()),
                }
            }),
            Op::Fragment { point, track, time, duration, bytes } => ensure(track_dir(dir, point, track))
                .and_then(|_| put(fragment_path(dir, point, track, *time, *duration), bytes))
                .map(|()| {
                    stats.written.fetch_add(1, Ordering::Relaxed);
                }),
            Op::Remove { point, track, time, duration } => {
                match std::fs::remove_file(fragment_path(dir, point, track, *time, *duration)) {
                    Ok(()) => {
                        stats.removed.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            log(format!("archive: {op:?}: {e}").chars().take(300).collect());
        }
    }
}

/// A track read back from the archive.
#[derive(Debug)]
pub struct RestoredTrack {
    pub point: String,
    pub meta: TrackMeta,
    pub init: Option<Bytes>,
    /// (time, duration) of its fragment files, sorted.
    pub fragments: Vec<(u64, u64)>,
}

/// Reads what an archive directory holds: every track with a description, and its fragments.
/// Problems are returned as lines, and the rest is read.
pub fn restore(dir: &Path) -> (Vec<RestoredTrack>, Vec<String>) {
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    let Ok(points) = std::fs::read_dir(dir) else { return (out, problems) };
    for p in points.flatten() {
        let Some(point) = decode(&p.file_name().to_string_lossy()) else { continue };
        let Ok(tracks) = std::fs::read_dir(p.path()) else { continue };
        for t in tracks.flatten() {
            let tdir = t.path();
            let meta = match std::fs::read(tdir.join("track.json"))
                .map_err(|e| e.to_string())
                .and_then(|j| serde_json::from_slice::<TrackMeta>(&j).map_err(|e| e.to_string()))
            {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("archive: {}: no usable track.json ({e})", tdir.display()));
                    continue;
                }
            };
            let init = std::fs::read(tdir.join("init.mp4")).ok().map(Bytes::from);
            let mut fragments: Vec<(u64, u64)> = std::fs::read_dir(&tdir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    let (t, d) = name.to_str()?.strip_suffix(".m4s")?.split_once('_')?;
                    let (t, d): (u64, u64) = (t.parse().ok()?, d.parse().ok()?);
                    // Not a file this endpoint wrote: its fragments end within 2^64 ticks.
                    t.checked_add(d)?;
                    Some((t, d))
                })
                .collect();
            fragments.sort_unstable();
            out.push(RestoredTrack { point: point.clone(), meta, init, fragments });
        }
    }
    (out, problems)
}

fn decode(part: &str) -> Option<String> {
    percent_decode_str(part).decode_utf8().ok().map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::meta::Kind;

    #[test]
    fn names_are_one_reversible_component() {
        for name in ["live", "a b", "../etc", ".hidden", "x/y", "é"] {
            let p = file_part(name);
            assert!(!p.contains('/') && !p.starts_with('.'), "{name}: {p}");
            assert_eq!(decode(&p).as_deref(), Some(name));
        }
    }

    #[test]
    fn written_pruned_and_restored() {
        let dir = std::env::temp_dir().join(format!("fmp4ingest-archive-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Archive::start(dir.clone(), |_| {}).unwrap();
        let meta = TrackMeta {
            name: "video".into(),
            kind: Kind::Video,
            timescale: 1000,
            bitrate: 1,
            language: "und".into(),
            params: vec![("FourCC".into(), "H264".into())],
            codecs: "avc1.64001f".into(),
            width: 2,
            height: 2,
            sample_rate: 0,
            channels: 0,
        };
        assert!(a.send(Op::Track { point: "p q".into(), meta: meta.clone(), init: Some(Bytes::from_static(b"init")) }));
        for t in [0, 2000, 4000] {
            let bytes = Bytes::from(vec![1; 10]);
            assert!(a.send(Op::Fragment {
                point: "p q".into(),
                track: "video".into(),
                time: t,
                duration: 2000,
                bytes
            }));
        }
        assert!(a.send(Op::Remove { point: "p q".into(), track: "video".into(), time: 0, duration: 2000 }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while a.stats.removed.load(Ordering::Relaxed) < 1 {
            assert!(std::time::Instant::now() < deadline, "the writer did not get there");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (tracks, problems) = restore(&dir);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(tracks.len(), 1);
        assert_eq!((tracks[0].point.as_str(), &tracks[0].meta), ("p q", &meta));
        assert_eq!(tracks[0].fragments, [(2000, 2000), (4000, 2000)]);
        assert_eq!(tracks[0].init.as_deref(), Some(&b"init"[..]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
