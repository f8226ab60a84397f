//! Assembles ingest, pipeline and sink into the running daemon, and takes it down in order on
//! shutdown: stop accepting, finish the frames already read, drain the sink, sync the file.

use crate::admin::{self, AdminState};
use crate::ingest::unix::{self, UnixIngestConfig};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::sink::file::{FileSink, FileSinkConfig};
use anyhow::Context;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Everything the daemon needs to run.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub socket: UnixIngestConfig,
    pub file: FileSinkConfig,
    /// Address of the HTTP endpoint (`/metrics`, `/health/*`); none disables it.
    pub admin_listen: Option<SocketAddr>,
    /// Written into events as `collector.host`.
    pub host_name: String,
    /// Batches waiting for the sink before ingest stops reading (backpressure to the proxies).
    pub queue_batches: usize,
}

/// What the daemon did, printed as one JSON line when it stops.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub events_received: u64,
    pub events_written: u64,
    pub events_dropped: u64,
    pub malformed: u64,
    pub oversized: u64,
    pub output: PathBuf,
}

/// The collector daemon: its parts are built and torn down by [`Daemon::run`].
pub struct Daemon;

impl Daemon {
    /// Runs until `shutdown` turns true, then drains and returns the summary.
    pub async fn run(config: DaemonConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<Summary> {
        let metrics = Arc::new(Metrics::default());
        Daemon::run_with(config, metrics, shutdown).await
    }

    /// As [`Daemon::run`], counting into `metrics` (so a caller can watch them live).
    pub async fn run_with(config: DaemonConfig, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) -> anyhow::Result<Summary> {
        config.file.validate().map_err(anyhow::Error::msg)?;
        let ready = Arc::new(AtomicBool::new(false));
        let admin_task = match config.admin_listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
                let state = AdminState { metrics: metrics.clone(), ready: ready.clone() };
                Some(tokio::spawn(admin::serve(l, state, shutdown.clone())))
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(config.queue_batches.max(1));
        let sink = FileSink::start(config.file.clone(), rx, metrics.clone())
            .with_context(|| format!("cannot open output in {}", config.file.dir.display()))?;
        let listener = unix::bind(&config.socket)?;
        ready.store(true, Relaxed);
        tracing::info!(socket = %config.socket.path.display(), output = %config.file.active_path().display(), "collector ready");

        let pipeline = Pipeline::new(config.host_name.clone());
        unix::serve(listener, config.socket.clone(), pipeline, tx, metrics.clone(), shutdown).await;
        // Every connection task has ended and dropped its sender: the sink drains and syncs.
        ready.store(false, Relaxed);
        tokio::task::spawn_blocking(move || sink.join()).await?;
        if let Some(t) = admin_task {
            t.abort();
        }
        Ok(Summary {
            events_received: metrics.events_received.load(Relaxed),
            events_written: metrics.events_written.load(Relaxed),
            events_dropped: metrics.events_dropped.load(Relaxed),
            malformed: metrics.malformed_total(),
            oversized: metrics.oversized.load(Relaxed),
            output: config.file.active_path(),
        })
    }
}
