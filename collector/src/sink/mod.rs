//! Sinks: where events go once they are in the write-ahead log. Each kind has a folder that
//! reads alike: `config.rs` (the user-facing settings and their checks) and `service.rs` (the
//! I/O); [`driver`] does what they share (batching, retries, circuit breaker, cursor). Every
//! sink runs on its own thread and reads the log at its own pace.
//!
//! [`Sinks`] is the running set: it starts the configured sinks, swaps them on reload (a sink
//! whose settings are unchanged keeps running; a changed one stops and restarts from its
//! cursor; a removed one lets go of its cursor) and drains them on shutdown.

pub mod clickhouse;
pub mod driver;
pub mod file;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod latency;
pub mod parquet;
pub mod row;
pub mod s3;

use crate::metrics::Metrics;
use crate::wal::{Reader, Wal};
use sentinel_config::{FileFormat, Sink, SinkKind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct Running {
    spec: Sink,
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

/// The sinks running now.
pub struct Sinks {
    wal: Wal,
    metrics: Arc<Metrics>,
    running: Vec<Running>,
}

/// Checks that a sink can start, without starting it, so a reload that would fail is refused
/// before anything is stopped.
pub fn check(spec: &Sink) -> Result<(), String> {
    let fail = |e: String| format!("sink `{}`: {e}", spec.id);
    match &spec.kind {
        SinkKind::File(f) => {
            let cfg = file::FileSinkConfig::from_model(f, u64::MAX);
            cfg.validate().map_err(fail)?;
            let probe = cfg.dir.join(format!(".{}.probe", cfg.prefix));
            std::fs::create_dir_all(&cfg.dir)
                .and_then(|()| std::fs::write(&probe, b""))
                .and_then(|()| std::fs::remove_file(&probe))
                .map_err(|e| fail(format!("cannot write in {}: {e}", cfg.dir.display())))
        }
        SinkKind::Http(h) => http::HttpSettings::check(h).map(drop).map_err(fail),
        #[cfg(feature = "kafka")]
        SinkKind::Kafka(k) => kafka::KafkaSettings::check(k).map(drop).map_err(fail),
        #[cfg(not(feature = "kafka"))]
        SinkKind::Kafka(_) => Err(fail("this build has no Kafka sink (the `kafka` feature is off)".into())),
        SinkKind::ClickHouse(c) => clickhouse::ClickHouseSettings::check(c).map(drop).map_err(fail),
        SinkKind::S3(s) => s3::S3Settings::check(s).map(drop).map_err(fail),
    }
}

/// Runs one sink to its end on the current (sink-owned) thread.
async fn drive(spec: Sink, reader: Reader, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) {
    let m = metrics.sink(&spec.id);
    let host = crate::pipeline::host_name();
    match &spec.kind {
        SinkKind::File(f) => {
            let cfg = file::FileSinkConfig::from_model(f, reader.wal().config().max_bytes);
            let failed = match f.format {
                FileFormat::Ndjson => match file::NdjsonFileService::open(cfg, m.clone()) {
                    Ok(s) => return driver::run(s, reader, spec.delivery.clone(), m, stop).await,
                    Err(e) => e,
                },
                FileFormat::Parquet => match file::ParquetFileService::open(cfg, m.clone()) {
                    Ok(s) => return driver::run(s, reader, spec.delivery.clone(), m, stop).await,
                    Err(e) => e,
                },
            };
            tracing::error!(sink = %spec.id, "cannot open the output in {}: {failed}", f.dir.display());
        }
        SinkKind::Http(h) => match http::HttpSettings::check(h).and_then(|s| http::HttpService::new(s, &spec.id, &host)) {
            Ok(s) => driver::run(s, reader, spec.delivery.clone(), m, stop).await,
            Err(e) => tracing::error!(sink = %spec.id, "{e}"),
        },
        #[cfg(not(feature = "kafka"))]
        SinkKind::Kafka(_) => tracing::error!(sink = %spec.id, "this build has no Kafka sink"),
        #[cfg(feature = "kafka")]
        SinkKind::Kafka(k) => match kafka::KafkaSettings::check(k).and_then(kafka::KafkaService::new) {
            Ok(s) => driver::run(s, reader, spec.delivery.clone(), m, stop).await,
            Err(e) => tracing::error!(sink = %spec.id, "{e}"),
        },
        SinkKind::ClickHouse(c) => match clickhouse::ClickHouseSettings::check(c) {
            Ok(s) => driver::run(clickhouse::ClickHouseService::new(s, &spec.id, &host), reader, spec.delivery.clone(), m, stop).await,
            Err(e) => tracing::error!(sink = %spec.id, "{e}"),
        },
        SinkKind::S3(s) => match s3::S3Settings::check(s).and_then(|s| s3::S3Service::new(s, &spec.id, &host)) {
            Ok(s) => driver::run(s, reader, spec.delivery.clone(), m, stop).await,
            Err(e) => tracing::error!(sink = %spec.id, "{e}"),
        },
    }
}

impl Sinks {
    /// Starts the configured sinks, first forgetting the cursors of sinks no longer configured.
    pub fn start(wal: Wal, specs: Vec<Sink>, metrics: Arc<Metrics>) -> Result<Sinks, String> {
        if let Some(e) = specs.iter().find_map(|s| check(s).err()) {
            return Err(e);
        }
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        wal.retain_sinks(&ids);
        let mut sinks = Sinks { wal, metrics, running: Vec::new() };
        for spec in specs {
            let r = sinks.launch(spec)?;
            sinks.running.push(r);
        }
        Ok(sinks)
    }

    fn launch(&self, spec: Sink) -> Result<Running, String> {
        let reader = self.wal.attach(&spec.id);
        let (stop, stop_rx) = watch::channel(false);
        let (metrics, s) = (self.metrics.clone(), spec.clone());
        let thread = std::thread::Builder::new()
            .name(format!("sink-{}", spec.id))
            .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(drive(s, reader, metrics, stop_rx)),
                Err(e) => tracing::error!(sink = %s.id, "cannot start the sink's runtime: {e}"),
            })
            .map_err(|e| format!("sink `{}`: cannot start its thread: {e}", spec.id))?;
        Ok(Running { spec, stop, thread })
    }

    /// The active file of the first file sink, for the summary.
    pub fn first_output(&self) -> Option<std::path::PathBuf> {
        self.running.iter().find_map(|r| match &r.spec.kind {
            SinkKind::File(f) => Some(file::FileSinkConfig::from_model(f, self.wal.config().max_bytes).active_path()),
            _ => None,
        })
    }

    /// Replaces the running set. A set that cannot start is refused before anything is stopped.
    pub async fn apply(&mut self, wanted: Vec<Sink>) -> Result<(), String> {
        if let Some(e) = wanted.iter().filter(|w| !self.running.iter().any(|r| &r.spec == *w)).find_map(|s| check(s).err()) {
            return Err(e);
        }
        let (keep, stop): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running).into_iter().partition(|r| wanted.contains(&r.spec));
        self.running = keep;
        let removed: Vec<String> = stop.iter().filter(|r| !wanted.iter().any(|w| w.id == r.spec.id)).map(|r| r.spec.id.clone()).collect();
        join_all(stop, Duration::ZERO).await;
        for id in removed {
            self.wal.detach(&id);
        }
        for spec in wanted {
            if !self.running.iter().any(|r| r.spec == spec) {
                let r = self.launch(spec)?;
                self.running.push(r);
            }
        }
        Ok(())
    }

    /// Lets every sink deliver what is in the log (the writer must be gone), for at most
    /// `grace`; what is left stays in the log for the next run.
    pub async fn shutdown(self, grace: Duration) {
        join_all(self.running, grace).await;
    }
}

/// Waits up to `grace` for the sinks to finish on their own, then tells the rest to stop (a
/// sink in the middle of a delivery finishes that attempt) and waits for them.
async fn join_all(running: Vec<Running>, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && running.iter().any(|r| !r.thread.is_finished()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for r in &running {
        let _ = r.stop.send(true);
    }
    let threads: Vec<JoinHandle<()>> = running.into_iter().map(|r| r.thread).collect();
    let _ = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join()))).await;
}

/// A request to replace the running sinks, answered once applied (or refused).
pub struct SinkReload {
    pub sinks: Vec<Sink>,
    pub done: tokio::sync::oneshot::Sender<Result<(), String>>,
}
