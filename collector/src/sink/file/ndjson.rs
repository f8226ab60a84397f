//! The file sink's NDJSON I/O: appends each delivered batch to the active file, rotates by size
//! and age (also while idle). A batch is durable (and the log lets go of it) only once the file
//! is synced: batches written since the last sync are reported staged, and a sync at most
//! [`SYNC_EVERY`] after the first of them (and when the sink idles, rotates or stops) makes
//! them all durable at once. A failed sync is never retried on the same pages (after it, the
//! page cache cannot be trusted to hold what the disk lacks): the file is cut back to what the
//! last good sync covered and the log delivers the rest again.

use super::uncached::Appender;
use super::{rotate, FileSinkConfig};
use crate::metrics::SinkMetrics;
use crate::sink::driver::{Delivered, SendError, Service};
use crate::wal::ReadBatch;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a written batch waits for the sync that makes it durable while batches keep coming.
pub const SYNC_EVERY: Duration = Duration::from_millis(50);

/// Writes batches to rotating NDJSON files.
pub struct NdjsonFileService {
    cfg: FileSinkConfig,
    metrics: Arc<SinkMetrics>,
    active: Option<Active>,
    seq: u64,
}

struct Active {
    out: Appender,
    bytes: u64,
    /// Bytes the last good sync covered, and when the first batch after it was written.
    synced: u64,
    unsynced_since: Option<Instant>,
    opened: Instant,
}

fn open(cfg: &FileSinkConfig) -> std::io::Result<Active> {
    let path = cfg.active_path();
    let file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
    // A file just created is durable only once its directory entry is.
    std::fs::File::open(&cfg.dir)?.sync_all()?;
    let held = file.metadata()?.len();
    let bytes = drop_torn_line(&file, held)?;
    if bytes < held {
        tracing::warn!("{}: cut a torn last line (a write interrupted by a crash or an error); its events are delivered again", path.display());
    }
    Ok(Active { out: Appender::new(file, cfg.drop_pages).direct_blocks(&path), bytes, synced: bytes, unsynced_since: None, opened: Instant::now() })
}

/// Cuts the file, `len` bytes long, back to its last whole line and returns its new length.
/// Every batch ends with a newline, so a file that does not was cut short mid-write: the
/// collector died in it, or it failed. Its batch was never counted as delivered and comes
/// again, so appending after the broken part would leave one invalid line (half an event glued
/// to the next one).
fn drop_torn_line(file: &std::fs::File, len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let whole = start + i as u64 + 1;
            if whole < len {
                file.set_len(whole)?;
            }
            return Ok(whole);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
    }
    Ok(0)
}

impl NdjsonFileService {
    /// Opens the active file (appending: a restart continues it).
    pub fn open(cfg: FileSinkConfig, metrics: Arc<SinkMetrics>) -> std::io::Result<NdjsonFileService> {
        std::fs::create_dir_all(&cfg.dir)?;
        let active = open(&cfg)?;
        Ok(NdjsonFileService { cfg, metrics, active: Some(active), seq: 0 })
    }

    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        if self.active.is_none() {
            self.active = Some(open(&self.cfg)?);
        }
        let Some(a) = self.active.as_mut() else { return Err(std::io::Error::other("no output file")) };
        a.out.write_all(lines)?;
        a.bytes += lines.len() as u64;
        a.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Syncs the active file: everything written is durable. On failure the unsynced part is
    /// cut off and the file closed, and the log replays it (`Restart`).
    fn sync(&mut self) -> Result<(), SendError> {
        let Some(a) = self.active.as_mut() else { return Ok(()) };
        if a.unsynced_since.is_none() {
            return Ok(());
        }
        if let Err(e) = sync_file(a.out.file()) {
            let synced = a.synced;
            if let Some(a) = self.active.take() {
                let _ = a.out.file().set_len(synced);
            }
            return Err(SendError::Restart { reason: format!("syncing {} failed: {e}; what it did not cover is written again", self.cfg.active_path().display()) });
        }
        a.synced = a.bytes;
        a.unsynced_since = None;
        Ok(())
    }

    /// Syncs and rotates when due; `Durable` once everything written is synced.
    fn settle(&mut self, force: bool) -> Result<Delivered, SendError> {
        let due = |a: &Active| a.unsynced_since.is_some_and(|t| t.elapsed() >= SYNC_EVERY) || a.bytes >= self.cfg.max_bytes || a.opened.elapsed() >= self.cfg.max_age;
        if !force && !self.active.as_ref().is_some_and(due) {
            return Ok(if self.active.as_ref().is_some_and(|a| a.unsynced_since.is_some()) { Delivered::Staged } else { Delivered::Durable });
        }
        self.sync()?;
        self.rotate_if_due();
        Ok(Delivered::Durable)
    }

    /// Rotates a synced active file that is old or large enough.
    fn rotate_if_due(&mut self) {
        let Some(a) = self.active.as_ref() else { return };
        if a.bytes == 0 || a.unsynced_since.is_some() || (a.bytes < self.cfg.max_bytes && a.opened.elapsed() < self.cfg.max_age) {
            return;
        }
        self.active = None;
        self.seq += 1;
        if let Err(e) = rotate::finish(&self.cfg, &self.cfg.active_path(), self.seq, &self.metrics) {
            tracing::error!("rotating {} failed: {e}", self.cfg.active_path().display());
        }
    }
}

/// `fdatasync`, with a test's injected failure first.
fn sync_file(f: &std::fs::File) -> std::io::Result<()> {
    #[cfg(test)]
    if tests::FAIL_SYNC.with(|c| c.replace(false)) {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    f.sync_data()
}

impl Service for NdjsonFileService {
    async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError> {
        if let Err(e) = self.write(&batch.lines) {
            // The file is reopened on the next attempt, which cuts a partial line this left;
            // batches written before it stay staged until a sync covers them.
            self.active = None;
            return Err(SendError::retry(format!("writing {} failed: {e}", self.cfg.active_path().display())));
        }
        self.settle(false)
    }

    async fn idle(&mut self) -> Result<Delivered, SendError> {
        self.settle(true)
    }

    async fn close(&mut self) -> Result<Delivered, SendError> {
        self.settle(true)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    thread_local! {
        /// Makes the next sync on this thread fail with EIO.
        pub static FAIL_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn write_lines(cfg: &FileSinkConfig, n: usize) -> Arc<SinkMetrics> {
        let metrics = Arc::new(SinkMetrics::default());
        let mut sink = NdjsonFileService::open(cfg.clone(), metrics.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            for i in 0..n {
                let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(60));
                let batch = ReadBatch { records: 1, events: 1, lines: line.into_bytes(), ..ReadBatch::default() };
                sink.send(&batch).await.unwrap();
            }
            sink.close().await.unwrap();
        });
        metrics
    }

    #[test]
    fn rotation_by_size_keeps_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileSinkConfig::new(dir.path());
        cfg.max_bytes = 100;
        cfg.max_files = 0;
        let metrics = write_lines(&cfg, 10);
        assert!(metrics.files_rotated.load(Relaxed) >= 3);
        let mut numbers: Vec<u64> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .flat_map(|e| std::fs::read_to_string(e.path()).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
            .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap()["n"].as_u64().unwrap())
            .collect();
        numbers.sort();
        assert_eq!(numbers, (0..10).collect::<Vec<u64>>());
    }

    #[test]
    fn a_line_torn_by_a_crash_is_cut_before_the_batch_comes_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig::new(dir.path());
        // What a collector killed mid-write leaves: whole lines, then part of one.
        let torn = format!("{{\"n\":0}}\n{{\"n\":1}}\n{{\"n\":2,\"pad\":\"{}", "y".repeat(100_000));
        std::fs::write(cfg.active_path(), torn).unwrap();
        write_lines(&cfg, 3);
        let text = std::fs::read_to_string(cfg.active_path()).unwrap();
        let numbers: Vec<u64> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["n"].as_u64().unwrap()).collect();
        assert_eq!(numbers, [0, 1, 0, 1, 2], "the torn line is gone and every line is whole");

        // A file holding nothing but a torn line is emptied.
        std::fs::write(cfg.active_path(), "{\"n\":9,").unwrap();
        write_lines(&cfg, 1);
        assert_eq!(std::fs::read_to_string(cfg.active_path()).unwrap().lines().count(), 1);
    }

    fn batch(from: usize, to: usize) -> ReadBatch {
        let lines: String = (from..to).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        ReadBatch { records: 1, events: (to - from) as u64, lines: lines.into_bytes(), ..ReadBatch::default() }
    }

    #[test]
    fn a_batch_is_durable_only_once_synced_and_a_failed_sync_loses_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig::new(dir.path());
        let mut sink = NdjsonFileService::open(cfg.clone(), Arc::new(SinkMetrics::default())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            assert_eq!(sink.send(&batch(0, 3)).await.unwrap(), Delivered::Staged, "written, not yet synced");
            assert_eq!(sink.idle().await.unwrap(), Delivered::Durable, "synced");
            assert_eq!(sink.send(&batch(3, 5)).await.unwrap(), Delivered::Staged);
            tokio::time::sleep(SYNC_EVERY).await;
            assert_eq!(sink.send(&batch(5, 6)).await.unwrap(), Delivered::Durable, "a sync is due: everything so far is durable");
            // A sync that fails: what it should have covered is cut off and comes again.
            assert_eq!(sink.send(&batch(6, 8)).await.unwrap(), Delivered::Staged);
            FAIL_SYNC.with(|c| c.set(true));
            assert!(matches!(sink.idle().await, Err(SendError::Restart { .. })));
            assert_eq!(sink.send(&batch(6, 8)).await.unwrap(), Delivered::Staged, "the replay, written again");
            assert_eq!(sink.close().await.unwrap(), Delivered::Durable);
        });
        let text = std::fs::read_to_string(cfg.active_path()).unwrap();
        let numbers: Vec<u64> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["n"].as_u64().unwrap()).collect();
        assert_eq!(numbers, (0..8).collect::<Vec<u64>>(), "every event once, in order");
    }

    #[test]
    fn old_rotated_files_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileSinkConfig::new(dir.path());
        cfg.max_bytes = 100;
        cfg.max_files = 2;
        let metrics = write_lines(&cfg, 12);
        assert!(metrics.files_rotated.load(Relaxed) >= 3);
        let rotated = std::fs::read_dir(dir.path()).unwrap().flatten().filter(|e| e.path() != cfg.active_path()).count();
        assert_eq!(rotated, 2);
    }
}
