//! What both file formats do on rotation: name the finished file after the UTC time and a
//! sequence number (so names sort by age), and delete the oldest past `max_files`.

use super::FileSinkConfig;
use crate::metrics::SinkMetrics;
use crate::utc::Civil;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

/// Moves the finished file `from` to its rotated name, then prunes old files.
pub fn finish(cfg: &FileSinkConfig, from: &Path, seq: u64, metrics: &SinkMetrics) -> std::io::Result<PathBuf> {
    let now = Civil::from_unix(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let to = cfg.dir.join(format!("{}-{}-{seq:06}.{}", cfg.prefix, now.compact(), cfg.extension()));
    std::fs::rename(from, &to)?;
    // The new name is durable only once the directory is synced.
    std::fs::File::open(&cfg.dir)?.sync_all()?;
    metrics.files_rotated.fetch_add(1, Relaxed);
    prune(cfg);
    Ok(to)
}

/// Deletes the oldest rotated files past `max_files` (0 keeps all).
fn prune(cfg: &FileSinkConfig) {
    if cfg.max_files == 0 {
        return;
    }
    let (head, tail) = (format!("{}-", cfg.prefix), format!(".{}", cfg.extension()));
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(&cfg.dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&head) && n.ends_with(&tail)))
        .collect();
    rotated.sort();
    let excess = rotated.len().saturating_sub(cfg.max_files);
    for p in &rotated[..excess] {
        let _ = std::fs::remove_file(p);
    }
}
