//! Hands every processed batch to every running sink, and changes the set of sinks when the
//! configuration is reloaded. A change happens between two batches: each batch reaches exactly
//! the sinks running when it arrives, so a reload neither drops nor duplicates an event in any
//! sink that runs across it. Sinks that are removed or changed drain and sync before their
//! replacements start.

use crate::ingest::Batch;
use crate::metrics::Metrics;
use crate::sink::file::{FileSink, FileSinkConfig};
use crate::tap::TapHub;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// One sink as configured: its id (unique) and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    pub id: String,
    pub file: FileSinkConfig,
}

/// A request to replace the running sinks, answered once applied (or refused).
pub struct SinkReload {
    pub sinks: Vec<SinkSpec>,
    pub done: oneshot::Sender<Result<(), String>>,
}

struct Running {
    spec: SinkSpec,
    tx: mpsc::Sender<Arc<Batch>>,
    sink: FileSink,
}

/// The fan-out stage between the pipeline and the sinks.
pub struct Router {
    running: Vec<Running>,
    metrics: Arc<Metrics>,
    queue_batches: usize,
    taps: TapHub,
}

/// Checks that a sink can start (its directory can be created and its file opened) without
/// starting it, so a reload that would fail is refused before anything is stopped.
fn check(spec: &SinkSpec) -> Result<(), String> {
    spec.file.validate().map_err(|e| format!("sink `{}`: {e}", spec.id))?;
    std::fs::create_dir_all(&spec.file.dir)
        .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(spec.file.active_path()).map(drop))
        .map_err(|e| format!("sink `{}`: cannot write in {}: {e}", spec.id, spec.file.dir.display()))
}

impl Router {
    /// Starts the first set of sinks.
    pub async fn start(sinks: Vec<SinkSpec>, metrics: Arc<Metrics>, queue_batches: usize, taps: TapHub) -> Result<Router, String> {
        let mut r = Router { running: Vec::new(), metrics, queue_batches: queue_batches.max(1), taps };
        r.apply(sinks).await?;
        Ok(r)
    }

    fn launch(&self, spec: SinkSpec) -> Result<Running, String> {
        let (tx, rx) = mpsc::channel(self.queue_batches);
        let sink = FileSink::start(spec.file.clone(), rx, self.metrics.sink(&spec.id))
            .map_err(|e| format!("sink `{}`: cannot open output in {}: {e}", spec.id, spec.file.dir.display()))?;
        Ok(Running { spec, tx, sink })
    }

    /// Replaces the running set: unchanged sinks keep running; removed and changed ones drain
    /// and sync (before a changed one starts again on the same output); new and changed ones
    /// start. A set that cannot start is refused before anything is stopped.
    async fn apply(&mut self, wanted: Vec<SinkSpec>) -> Result<(), String> {
        if let Some(e) = wanted.iter().find_map(|s| check(s).err()) {
            return Err(e);
        }
        let (keep, stop): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running).into_iter().partition(|r| wanted.contains(&r.spec));
        self.running = keep;
        let stopped: Vec<FileSink> = stop.into_iter().map(|r| r.sink).collect();
        if !stopped.is_empty() {
            // Their senders are gone with `stop`: each writer drains what it holds, syncs, ends.
            let _ = tokio::task::spawn_blocking(move || stopped.into_iter().for_each(FileSink::join)).await;
        }
        for spec in wanted {
            if !self.running.iter().any(|r| r.spec == spec) {
                let r = self.launch(spec)?;
                self.running.push(r);
            }
        }
        Ok(())
    }

    /// The active file of the first sink, for the summary.
    pub fn first_output(&self) -> Option<std::path::PathBuf> {
        self.running.first().map(|r| r.spec.file.active_path())
    }

    /// Runs until the ingest side closes (every sender dropped), applying reloads between
    /// batches; then drains and syncs every sink.
    pub async fn run(mut self, mut batches: mpsc::Receiver<Batch>, mut reloads: mpsc::Receiver<SinkReload>) {
        let mut reloads_open = true;
        loop {
            tokio::select! {
                biased;
                reload = reloads.recv(), if reloads_open => match reload {
                    Some(r) => {
                        let result = self.apply(r.sinks).await;
                        let _ = r.done.send(result);
                    }
                    None => reloads_open = false,
                },
                batch = batches.recv() => {
                    let Some(batch) = batch else { break };
                    let batch = Arc::new(batch);
                    self.taps.offer(crate::tap::Stage::Processed, &batch);
                    for r in &self.running {
                        // A sink that is behind holds the router here: backpressure to ingest.
                        let _ = r.tx.send(batch.clone()).await;
                    }
                }
            }
        }
        let stopped: Vec<FileSink> = std::mem::take(&mut self.running).into_iter().map(|r| r.sink).collect();
        let _ = tokio::task::spawn_blocking(move || stopped.into_iter().for_each(FileSink::join)).await;
    }
}
