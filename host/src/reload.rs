//! Watches a file (the filter, or a proxy's configuration) and runs a callback when it changes.
//!
//! Polling the file's identity (size, modification time, inode) is used rather than inotify: it
//! sees atomic renames, editors that replace files and network filesystems alike, and costs one
//! `stat` per interval. A change is reloaded off the request path; a bad build is refused by the
//! host and the old one keeps serving.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { len: m.len(), mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()), ino: m.ino() })
}

/// Starts a watcher thread named `name`; `on_change` runs on it each time the file's stamp
/// (size, modification time, inode) changes, until `stop` is set.
pub fn watch_file(
    name: &str,
    path: PathBuf,
    interval: Duration,
    stop: Arc<AtomicBool>,
    mut on_change: impl FnMut() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let mut last = stamp(&path);
        while !stop.load(Relaxed) {
            std::thread::sleep(interval);
            let now = stamp(&path);
            if now.is_some() && now != last {
                last = now;
                on_change();
            }
        }
    })
}
