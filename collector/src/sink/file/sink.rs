//! Drives the file sink: a dedicated thread receives batches, appends them, flushes when the
//! queue runs dry, rotates by size and age, and syncs to disk on rotation and on shutdown.

use super::FileSinkConfig;
use crate::ingest::Batch;
use crate::metrics::SinkMetrics;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// A running file sink; [`FileSink::join`] waits until every batch it was sent is on disk.
pub struct FileSink {
    thread: JoinHandle<()>,
}

struct Active {
    out: BufWriter<File>,
    bytes: u64,
    opened: Instant,
}

impl FileSink {
    /// Opens the active file (appending: a restart continues it) and starts the writer thread.
    pub fn start(cfg: FileSinkConfig, rx: mpsc::Receiver<Arc<Batch>>, metrics: Arc<SinkMetrics>) -> std::io::Result<FileSink> {
        std::fs::create_dir_all(&cfg.dir)?;
        let active = open(&cfg)?;
        let thread = std::thread::Builder::new()
            .name("sink-file".into())
            .spawn(move || Writer { cfg, metrics, active: Some(active), seq: 0 }.run(rx))?;
        Ok(FileSink { thread })
    }

    /// Waits for the writer to drain its queue (all senders dropped) and sync the file.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

fn open(cfg: &FileSinkConfig) -> std::io::Result<Active> {
    let file = OpenOptions::new().create(true).append(true).open(cfg.active_path())?;
    let bytes = file.metadata()?.len();
    Ok(Active { out: BufWriter::with_capacity(256 << 10, file), bytes, opened: Instant::now() })
}

struct Writer {
    cfg: FileSinkConfig,
    metrics: Arc<SinkMetrics>,
    active: Option<Active>,
    seq: u64,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Arc<Batch>>) {
        while let Some(batch) = rx.blocking_recv() {
            let started = Instant::now();
            self.write(batch);
            while let Ok(batch) = rx.try_recv() {
                self.write(batch);
            }
            self.flush();
            self.metrics.batch_seconds.record(started.elapsed());
            self.rotate_if_due();
        }
        if let Some(a) = self.active.as_mut() {
            let _ = a.out.flush();
            let _ = a.out.get_ref().sync_all();
        }
    }

    fn write(&mut self, batch: Arc<Batch>) {
        if self.active.is_none() {
            match open(&self.cfg) {
                Ok(a) => self.active = Some(a),
                Err(e) => tracing::error!("cannot reopen {}: {e}", self.cfg.active_path().display()),
            }
        }
        let result = match self.active.as_mut() {
            Some(a) => a.out.write_all(&batch.lines).map(|_| a.bytes += batch.lines.len() as u64),
            None => Err(std::io::Error::other("no output file")),
        };
        match result {
            Ok(()) => {
                self.metrics.events_written.fetch_add(batch.events, Relaxed);
                self.metrics.bytes_written.fetch_add(batch.lines.len() as u64, Relaxed);
            }
            Err(e) => {
                tracing::error!("writing {} events to {} failed: {e}", batch.events, self.cfg.active_path().display());
                self.metrics.write_errors.fetch_add(1, Relaxed);
                self.metrics.events_dropped.fetch_add(batch.events, Relaxed);
                self.active = None;
            }
        }
    }

    fn flush(&mut self) {
        if let Some(a) = self.active.as_mut() {
            if let Err(e) = a.out.flush() {
                tracing::error!("flushing {} failed: {e}", self.cfg.active_path().display());
                self.metrics.write_errors.fetch_add(1, Relaxed);
                self.active = None;
            }
        }
    }

    fn rotate_if_due(&mut self) {
        let Some(a) = self.active.as_ref() else { return };
        if a.bytes < self.cfg.max_bytes && a.opened.elapsed() < self.cfg.max_age {
            return;
        }
        if let Some(mut a) = self.active.take() {
            let _ = a.out.flush();
            let _ = a.out.get_ref().sync_all();
        }
        self.seq += 1;
        let rotated = self.cfg.dir.join(format!("{}-{}-{:06}.ndjson", self.cfg.prefix, utc_stamp(SystemTime::now()), self.seq));
        match std::fs::rename(self.cfg.active_path(), &rotated) {
            Ok(()) => self.metrics.files_rotated.fetch_add(1, Relaxed),
            Err(e) => {
                tracing::error!("rotating {} failed: {e}", self.cfg.active_path().display());
                0
            }
        };
        self.prune();
    }

    fn prune(&self) {
        if self.cfg.max_files == 0 {
            return;
        }
        let head = format!("{}-", self.cfg.prefix);
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(&self.cfg.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&head) && n.ends_with(".ndjson"))
            })
            .collect();
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.cfg.max_files);
        for p in &rotated[..excess] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `YYYYmmddTHHMMSSZ` for a time (UTC), without a calendar dependency.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for all dates after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_stamp_matches_known_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_795_000_000)), "20261118T110640Z");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000Z");
    }

    fn write_lines(cfg: &FileSinkConfig, n: usize) -> Arc<SinkMetrics> {
        let metrics = Arc::new(SinkMetrics::default());
        let (tx, rx) = mpsc::channel(4);
        let sink = FileSink::start(cfg.clone(), rx, metrics.clone()).unwrap();
        for i in 0..n {
            let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(60));
            tx.blocking_send(Arc::new(Batch { lines: line.into_bytes(), events: 1 })).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(tx);
        sink.join();
        metrics
    }

    #[test]
    fn rotation_by_size_keeps_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileSinkConfig::new(dir.path());
        cfg.max_bytes = 100;
        cfg.max_files = 0;
        let metrics = write_lines(&cfg, 10);
        assert_eq!(metrics.events_written.load(Relaxed), 10);
        assert!(metrics.batch_seconds.count() >= 1, "batch latency is recorded");
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
