//! The optional on-disk archive: every fragment a track keeps, as a file
//! `<dir>/<publishing point>/<track>/<time>.m4s` (moof + mdat as ingested), pruned to the same
//! archive window as the memory. Names come from the ingest URL and the manifest, so they are
//! reduced to characters safe in a path.

use std::path::{Path, PathBuf};

use super::store::StoredFragment;

fn safe(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with('.') { format!("_{s}") } else { s }
}

/// The directory of a track's fragments.
pub fn track_dir(dir: &Path, point: &str, track: &str) -> PathBuf {
    dir.join(safe(point)).join(safe(track))
}

/// Writes `f`, then removes the files of fragments before `oldest_kept` (what the window
/// dropped). Errors are logged to stderr and otherwise ignored: the archive is a copy.
pub fn write(dir: &Path, point: &str, track: &str, f: &StoredFragment, oldest_kept: Option<u64>) {
    let d = track_dir(dir, point, track);
    let result =
        std::fs::create_dir_all(&d).and_then(|()| std::fs::write(d.join(format!("{}.m4s", f.time)), &*f.bytes));
    if let Err(e) = result {
        eprintln!("archive: cannot write {}: {e}", d.display());
        return;
    }
    let Some(oldest) = oldest_kept else { return };
    let Ok(entries) = std::fs::read_dir(&d) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(t) = name.strip_suffix(".m4s").and_then(|t| t.parse::<u64>().ok())
            && t < oldest
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The times of the fragments archived for a track, sorted.
pub fn archived(dir: &Path, point: &str, track: &str) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(track_dir(dir, point, track))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".m4s").and_then(|t| t.parse().ok()))
        .collect();
    v.sort_unstable();
    v
}
