//! The file sink's Parquet I/O. Delivered batches gather in memory until they make a row group
//! (or the file is due), row groups stream into `<prefix>.parquet.partial`, and rotation writes
//! the footer, syncs the file and renames it to its final name: only then are its events
//! [`Delivered::Durable`] and the buffer lets go of them. Any failure abandons the unfinished
//! file and asks the driver to read its events again from the buffer, so a file never loses
//! or repeats an event.

use super::uncached::Appender;
use super::{rotate, FileSinkConfig};
use crate::metrics::SinkMetrics;
use crate::sink::driver::{Delivered, SendError, Service};
use crate::sink::parquet::ParquetWriter;
use crate::wal::ReadBatch;
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;
use std::time::Instant;

/// Events per row group (fewer when the file is rotated first).
const ROW_GROUP_EVENTS: u64 = 100_000;
/// NDJSON bytes per row group at most: bounds the memory a row group takes to build.
const ROW_GROUP_BYTES: usize = 64 << 20;

/// Writes batches to rotating Parquet files.
pub struct ParquetFileService {
    cfg: FileSinkConfig,
    metrics: Arc<SinkMetrics>,
    /// The unfinished file, once its first row group is written.
    open: Option<ParquetWriter<BufWriter<Appender>>>,
    /// Lines delivered and not yet in a row group.
    pending: Vec<u8>,
    pending_events: u64,
    /// Buffer bytes of the events staged for the unfinished file (written or pending), and
    /// when the first of them came.
    staged_bytes: u64,
    since: Option<Instant>,
    seq: u64,
}

impl ParquetFileService {
    /// Prepares the directory; an unfinished file left by an earlier run is removed (its
    /// events were never committed, so the buffer delivers them again).
    pub fn open(cfg: FileSinkConfig, metrics: Arc<SinkMetrics>) -> std::io::Result<ParquetFileService> {
        std::fs::create_dir_all(&cfg.dir)?;
        let partial = cfg.active_path();
        match std::fs::metadata(&partial) {
            Ok(m) => {
                if m.len() > 0 {
                    tracing::warn!("removing the unfinished {} of an earlier run; its events are written again from the buffer", partial.display());
                }
                std::fs::remove_file(&partial)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(ParquetFileService { cfg, metrics, open: None, pending: Vec::new(), pending_events: 0, staged_bytes: 0, since: None, seq: 0 })
    }

    /// Writes the pending lines as a row group, starting the file if needed.
    fn write_row_group(&mut self) -> Result<(), String> {
        if self.pending_events == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            let path = self.cfg.active_path();
            let file = File::create(&path).map_err(|e| format!("creating {} failed: {e}", path.display()))?;
            let writer = ParquetWriter::new(BufWriter::with_capacity(1 << 20, Appender::new(file, self.cfg.drop_pages).direct_blocks(&path))).map_err(|e| e.to_string())?;
            self.open = Some(writer);
        }
        let Some(f) = self.open.as_mut() else { return Err("no open file".into()) };
        let lines = crate::wal::Lines::new(&self.pending);
        f.write_lines(lines, "file").map_err(|e| e.to_string())?;
        self.pending.clear();
        self.pending_events = 0;
        Ok(())
    }

    /// Whether the file should be finished now.
    fn due(&self) -> bool {
        let written = self.open.as_ref().map_or(0, |f| f.bytes_written() as u64);
        written >= self.cfg.max_bytes || self.staged_bytes >= self.cfg.max_staged_bytes || self.since.is_some_and(|t| t.elapsed() >= self.cfg.max_age)
    }

    /// Writes what is pending, the footer, syncs and renames: every event so far is durable.
    fn finish(&mut self) -> Result<(), String> {
        self.write_row_group()?;
        self.staged_bytes = 0;
        self.since = None;
        let Some(f) = self.open.take() else { return Ok(()) };
        let path = self.cfg.active_path();
        let out = f.finish().map_err(|e| e.to_string())?;
        let file = out.into_inner().map_err(|e| format!("writing {} failed: {}", path.display(), e.error()))?;
        file.file().sync_all().map_err(|e| format!("syncing {} failed: {e}", path.display()))?;
        self.seq += 1;
        rotate::finish(&self.cfg, &path, self.seq, &self.metrics).map_err(|e| format!("renaming {} failed: {e}", path.display()))?;
        Ok(())
    }

    /// Gives up the unfinished file and what is pending; the driver reads them again.
    fn abandon(&mut self, reason: String) -> SendError {
        self.open = None;
        self.pending.clear();
        self.pending_events = 0;
        self.staged_bytes = 0;
        self.since = None;
        let _ = std::fs::remove_file(self.cfg.active_path());
        SendError::Restart { reason }
    }

    /// Finishes the file if it is due.
    fn settle(&mut self) -> Result<Delivered, SendError> {
        if self.since.is_none() {
            return Ok(Delivered::Durable);
        }
        if !self.due() {
            return Ok(Delivered::Staged);
        }
        match self.finish() {
            Ok(()) => Ok(Delivered::Durable),
            Err(e) => Err(self.abandon(e)),
        }
    }
}

impl Service for ParquetFileService {
    async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError> {
        self.pending.extend_from_slice(&batch.lines);
        if !self.pending.ends_with(b"\n") {
            self.pending.push(b'\n');
        }
        self.pending_events += batch.events;
        self.staged_bytes += batch.lines.len() as u64;
        self.since.get_or_insert_with(Instant::now);
        // A row group at most as large as a file may be, so size rotation sees the bytes.
        if self.pending_events >= ROW_GROUP_EVENTS || self.pending.len() as u64 >= (ROW_GROUP_BYTES as u64).min(self.cfg.max_bytes) {
            if let Err(e) = self.write_row_group() {
                return Err(self.abandon(e));
            }
        }
        self.settle()
    }

    async fn idle(&mut self) -> Result<Delivered, SendError> {
        self.settle()
    }

    async fn close(&mut self) -> Result<Delivered, SendError> {
        match self.finish() {
            Ok(()) => Ok(Delivered::Durable),
            Err(e) => Err(self.abandon(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use std::path::Path;
    use std::time::Duration;

    fn event(n: u64) -> String {
        format!(r#"{{"schema_version":"1","event":{{"id":"ev-{n}","start_ns":{n},"end_ns":{n}}},"http":{{"request":{{"method":"GET"}},"response":{{"status_code":200}}}},"url":{{"path":"/{n}"}},"client":{{"address":"198.51.100.1"}},"timing":{{"total_ms":1.0}},"sampling":{{"rate":1.0,"reason":"all"}},"filter":{{"version":"t"}}}}"#)
    }

    fn batch(range: std::ops::Range<u64>) -> ReadBatch {
        let mut lines = Vec::new();
        for n in range.clone() {
            lines.extend_from_slice(event(n).as_bytes());
            lines.push(b'\n');
        }
        ReadBatch { first: range.start, end: range.end, records: 1, events: range.end - range.start, lines }
    }

    fn ids_in(dir: &Path) -> Vec<String> {
        let mut ids = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "parquet") {
                let r = SerializedFileReader::new(File::open(&p).unwrap()).unwrap();
                for row in r.get_row_iter(None).unwrap() {
                    ids.push(row.unwrap().to_json_value()["event_id"].as_str().unwrap().to_owned());
                }
            }
        }
        ids.sort_by_key(|id| id[3..].parse::<u64>().unwrap());
        ids
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn events_are_staged_until_the_file_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileSinkConfig::new(dir.path());
        cfg.format = sentinel_config::FileFormat::Parquet;
        let metrics = Arc::new(SinkMetrics::default());
        let mut sink = ParquetFileService::open(cfg.clone(), metrics.clone()).unwrap();
        run(async {
            assert_eq!(sink.send(&batch(0..10)).await.unwrap(), Delivered::Staged);
            assert_eq!(sink.send(&batch(10..25)).await.unwrap(), Delivered::Staged);
            assert_eq!(sink.idle().await.unwrap(), Delivered::Staged);
            assert!(ids_in(dir.path()).is_empty(), "nothing is readable before the file is finished");
            assert_eq!(sink.close().await.unwrap(), Delivered::Durable);
        });
        let expected: Vec<String> = (0..25).map(|n| format!("ev-{n}")).collect();
        assert_eq!(ids_in(dir.path()), expected);
        assert!(!cfg.active_path().exists());
        assert_eq!(metrics.files_rotated.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn rotation_by_size_and_age_makes_complete_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileSinkConfig::new(dir.path());
        cfg.format = sentinel_config::FileFormat::Parquet;
        cfg.max_staged_bytes = 2_000; // about five events' worth of buffer
        cfg.max_files = 0;
        let mut sink = ParquetFileService::open(cfg.clone(), Arc::new(SinkMetrics::default())).unwrap();
        run(async {
            let mut durable = 0;
            for i in 0..20 {
                if sink.send(&batch(i * 3..i * 3 + 3)).await.unwrap() == Delivered::Durable {
                    durable += 1;
                }
            }
            assert!(durable >= 5, "{durable} files finished by size");
            sink.close().await.unwrap();
        });
        assert_eq!(ids_in(dir.path()).len(), 60);

        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileSinkConfig::new(dir.path());
        cfg.format = sentinel_config::FileFormat::Parquet;
        cfg.max_age = Duration::from_millis(50);
        let mut sink = ParquetFileService::open(cfg, Arc::new(SinkMetrics::default())).unwrap();
        run(async {
            sink.send(&batch(0..4)).await.unwrap();
            std::thread::sleep(Duration::from_millis(60));
            assert_eq!(sink.idle().await.unwrap(), Delivered::Durable);
        });
        assert_eq!(ids_in(dir.path()).len(), 4);
    }

    #[test]
    fn an_unfinished_file_from_a_crash_is_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileSinkConfig::new(dir.path());
        cfg.format = sentinel_config::FileFormat::Parquet;
        std::fs::write(cfg.active_path(), b"PAR1 half a file").unwrap();
        let _sink = ParquetFileService::open(cfg.clone(), Arc::new(SinkMetrics::default())).unwrap();
        assert!(!cfg.active_path().exists());
    }
}
