//! Assembles ingest, pipeline, write-ahead log and sinks into the running daemon, and takes it
//! down in order on shutdown: stop accepting, finish the frames already read, write them to the
//! log (and acknowledge them), let the sinks deliver what they can, leave the rest in the log.

use crate::admin::{self, AdminState};
use crate::ingest::unix::{self, UnixIngestConfig};
use crate::metrics::Metrics;
use crate::enrich::{self, EnrichmentHandle};
use crate::pipeline::workers::Workers;
use crate::pipeline::{Live, Pipeline};
use crate::sink::{SinkReload, Sinks};
use crate::wal::{self, Wal, WalConfig};
use crate::sample::SamplingHandle;
use crate::redact::Redactor;
use arc_swap::ArcSwap;
use sentinel_config::{Enrichment, Redaction, Sampling, Sink};
use crate::tap::TapHub;
use anyhow::Context;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// Everything the daemon needs to run.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub socket: UnixIngestConfig,
    /// The sinks every event goes to (at least one).
    pub sinks: Vec<Sink>,
    /// The write-ahead log in front of them.
    pub wal: WalConfig,
    /// On shutdown, how long sinks may go on delivering what is in the log.
    pub sink_drain: std::time::Duration,
    /// Address of the HTTP endpoint (`/metrics`, `/health/*`); none disables it.
    pub admin_listen: Option<SocketAddr>,
    /// Who may use `/tap` there, and which stages.
    pub tap: crate::admin::TapAccess,
    /// Written into events as `collector.host`.
    pub host_name: String,
    /// Batches waiting for the sink before ingest stops reading (backpressure to the proxies).
    pub queue_batches: usize,
    pub sampling: Sampling,
    pub enrichment: Enrichment,
    pub redaction: Option<Redaction>,
    /// Pipeline worker threads.
    pub workers: usize,
}

/// A new configuration's reloadable parts, answered once applied (or refused). It is applied
/// whole or not at all: the enrichment data is loaded first, then the sinks are swapped between
/// two batches, and only then does the new enrichment go into force.
pub struct Reload {
    pub sinks: Vec<Sink>,
    pub sampling: Sampling,
    pub enrichment: Enrichment,
    pub redaction: Option<Redaction>,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// What the daemon did, printed as one JSON line when it stops.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub events_received: u64,
    /// Summed over sinks (with one sink, the events it wrote).
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
        let (_reload_tx, reloads) = mpsc::channel(1);
        Daemon::run_with(config, Arc::new(Metrics::default()), shutdown, reloads).await
    }

    /// As [`Daemon::run`], counting into `metrics` (so a caller can watch them live) and
    /// replacing the sinks whenever a [`Reload`] arrives.
    pub async fn run_with(
        config: DaemonConfig,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        reloads: mpsc::Receiver<Reload>,
    ) -> anyhow::Result<Summary> {
        if config.sinks.is_empty() {
            anyhow::bail!("no sink configured: add a `sink \"file\" {{ path … }}`");
        }
        let ready = Arc::new(AtomicBool::new(false));
        let taps = TapHub::default();
        let admin_task = match config.admin_listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
                let state = AdminState { metrics: metrics.clone(), ready: ready.clone(), taps: taps.clone(), tap: config.tap.clone() };
                Some(tokio::spawn(admin::serve(l, state, shutdown.clone())))
            }
            None => None,
        };
        let enrichment = Arc::new(
            EnrichmentHandle::start(&config.enrichment, metrics.enrich.clone()).map_err(|e| anyhow::anyhow!("enrichment data: {e}"))?,
        );
        let (wal, writer) = Wal::open(config.wal.clone(), metrics.clone()).context("cannot open the buffer (write-ahead log)")?;
        let sinks = Sinks::start(wal.clone(), config.sinks.clone(), metrics.clone()).map_err(anyhow::Error::msg)?;
        let output = sinks.first_output().unwrap_or_default();
        let (tx, rx) = crossbeam_channel::bounded(config.queue_batches.max(1));
        let stop_writer = Arc::new(AtomicBool::new(false));
        let intake = wal::intake::spawn(writer, rx, taps.clone(), stop_writer.clone(), metrics.clone()).context("cannot start the buffer writer")?;
        let (sink_reload_tx, mut sink_reloads) = mpsc::channel::<SinkReload>(1);
        let sinks_task = tokio::spawn(async move {
            let mut sinks = sinks;
            while let Some(r) = sink_reloads.recv().await {
                let result = sinks.apply(r.sinks).await;
                let _ = r.done.send(result);
            }
            sinks
        });
        let sampling = Arc::new(SamplingHandle::new(&config.sampling));
        let redaction = Arc::new(ArcSwap::from_pointee(Redactor::new(&config.redaction)));
        let live = Live { sampling, enrichment: enrichment.clone(), redaction };
        let reload_task = tokio::spawn(dispatch_reloads(reloads, live.clone(), sink_reload_tx));
        let watch_task = tokio::spawn(enrich::watch_files(enrichment.clone(), shutdown.clone()));
        let pipeline = Arc::new(Pipeline::new(config.host_name.clone(), live, taps, metrics.clone()));
        let (workers, frames_tx) = Workers::start(config.workers, config.queue_batches, pipeline, tx).context("cannot start pipeline workers")?;
        let listener = unix::bind(&config.socket)?;
        ready.store(true, Relaxed);
        tracing::info!(socket = %config.socket.path.display(), output = %output.display(), sinks = config.sinks.len(), workers = config.workers, "collector ready");

        let mut stopping = shutdown.clone();
        let stop_flag = stop_writer.clone();
        tokio::spawn(async move {
            // From now on a writer waiting at the buffer's cap gives up rather than hold the
            // shutdown (what it held is not acknowledged, so the proxies resend it).
            let _ = stopping.wait_for(|s| *s).await;
            stop_flag.store(true, Relaxed);
        });
        unix::serve(listener, config.socket.clone(), frames_tx, metrics.clone(), shutdown).await;
        // Every connection task has ended and dropped its sender: the workers finish what is
        // queued, the writer logs it, then the sinks deliver what they can.
        ready.store(false, Relaxed);
        tokio::task::spawn_blocking(move || workers.join()).await?;
        tokio::task::spawn_blocking(move || intake.join()).await?.map_err(|_| anyhow::anyhow!("the buffer writer panicked"))?;
        reload_task.abort();
        let _ = reload_task.await;
        let sinks = sinks_task.await?;
        sinks.shutdown(config.sink_drain).await;
        watch_task.abort();
        if let Some(t) = admin_task {
            t.abort();
        }
        Ok(Summary {
            events_received: metrics.events_received.load(Relaxed),
            events_written: metrics.sum_sinks(|m| &m.events_written),
            events_dropped: metrics.sum_sinks(|m| &m.events_dropped),
            malformed: metrics.malformed_total(),
            oversized: metrics.oversized.load(Relaxed),
            output,
        })
    }
}

/// Applies reloads in order: enrichment loaded (off the reactor), sinks swapped, enrichment,
/// sampling and redaction put in force. A failure at any step leaves everything as it was.
async fn dispatch_reloads(mut reloads: mpsc::Receiver<Reload>, live: Live, sinks: mpsc::Sender<SinkReload>) {
    while let Some(r) = reloads.recv().await {
        let handle = live.enrichment.clone();
        let cfg = r.enrichment.clone();
        let prepared = match tokio::task::spawn_blocking(move || handle.prepare(&cfg)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let _ = r.done.send(Err(format!("enrichment data: {e}")));
                continue;
            }
            Err(e) => {
                let _ = r.done.send(Err(format!("enrichment data: {e}")));
                continue;
            }
        };
        let (done, answer) = oneshot::channel();
        if sinks.send(SinkReload { sinks: r.sinks, done }).await.is_err() {
            let _ = r.done.send(Err("the daemon is stopping".into()));
            continue;
        }
        let result = answer.await.unwrap_or_else(|_| Err("the daemon is stopping".into()));
        if result.is_ok() {
            live.enrichment.commit(prepared);
            live.sampling.reconfigure(&r.sampling);
            live.redaction.store(Arc::new(Redactor::new(&r.redaction)));
        }
        let _ = r.done.send(result);
    }
}
