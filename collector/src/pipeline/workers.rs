//! The pipeline's worker threads. Ingest tasks hand batches of frames to a bounded queue; each
//! worker takes one, runs every stage over it and passes the result on to the write-ahead log. CPU-heavy
//! stages (lookups, parsing, encoding) thus never hold up the async reactor, and when the
//! workers or the sinks fall behind the queue fills and ingest stops reading: backpressure,
//! not loss.

use super::{Pipeline, WorkerScratch};
use crate::ingest::{Batch, Frames};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::mpsc;
use crossbeam_channel::Sender;

/// The running workers; dropping every [`mpsc::Sender`] of their queue ends them.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

/// Worker threads to start when the config does not say: one per core, at most 8.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8)
}

impl Workers {
    /// Starts `count` workers; returns them and the queue ingest sends to.
    pub fn start(count: usize, queue_batches: usize, pipeline: Arc<Pipeline>, out: Sender<Batch>) -> std::io::Result<(Workers, mpsc::Sender<Frames>)> {
        let (tx, rx) = mpsc::channel::<Frames>(queue_batches.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let (rx, pipeline, out) = (rx.clone(), pipeline.clone(), out.clone());
            let t = std::thread::Builder::new().name(format!("pipeline-{i}")).spawn(move || {
                let mut scratch = WorkerScratch::default();
                loop {
                    // One worker waits on the queue at a time; the others wait for the lock.
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
                    let Some(mut frames) = next else { break };
                    pipeline.metrics.pipeline_queue.fetch_sub(1, Relaxed);
                    // A stage that panics on some input costs that batch, not the worker: its
                    // frames are counted as malformed and acknowledged (the proxy must not send
                    // them again, they would panic again), and the connection goes on.
                    let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pipeline.process(&frames, &mut scratch)));
                    let mut batch = match processed {
                        Ok(b) => b,
                        Err(p) => {
                            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                            tracing::error!(frames = frames.len(), "a pipeline stage panicked on a batch; its frames are dropped and counted: {what}");
                            for _ in 0..frames.len() {
                                pipeline.metrics.malformed(crate::metrics::Malformed::Panic);
                            }
                            // Whatever the stage left half-done in the scratch goes with it.
                            scratch = WorkerScratch::default();
                            if let Some(a) = frames.ack.take() {
                                a.complete();
                            }
                            continue;
                        }
                    };
                    batch.ack = frames.ack.take();
                    batch.held = frames.held.take();
                    if batch.events == 0 {
                        // Nothing to store (sampled out or malformed): handled, so acknowledged.
                        if let Some(a) = batch.ack.take() {
                            a.complete();
                        }
                    } else {
                        batch.lines_crc = Some(crc32fast::hash(&batch.lines));
                        if out.send(batch).is_err() {
                            break;
                        }
                    }
                }
            })?;
            threads.push(t);
        }
        Ok((Workers { threads }, tx))
    }

    /// Waits for every worker to finish the batches still queued (call after the senders are
    /// gone).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::ack::AckTracker;
    use crate::metrics::Malformed;

    #[test]
    fn a_panicking_stage_costs_its_batch_and_acknowledges_it_and_the_worker_goes_on() {
        let (pipeline, metrics) = super::super::tests::with_redaction(&sentinel_config::Config::default().enrichment, &None);
        let (out, done) = crossbeam_channel::bounded(4);
        let (workers, tx) = Workers::start(1, 4, Arc::new(pipeline), out).unwrap();
        let acks = Arc::new(AckTracker::default());
        let mut bad = Frames::default();
        bad.push(super::super::tests::PANIC_FRAME);
        bad.push(b"a second frame of the same batch");
        bad.ack = Some(acks.issue(2));
        let mut good = Frames::default();
        let mut ev = sentinel_wire::event::Event::default();
        ev.event.id = "after".into();
        let mut f = Vec::new();
        ev.encode_into(&mut f).unwrap();
        good.push(&f);
        good.ack = Some(acks.issue(3));
        tx.blocking_send(bad).unwrap();
        tx.blocking_send(good).unwrap();
        let batch = done.recv_timeout(std::time::Duration::from_secs(10)).expect("the worker went on after the panic");
        assert_eq!(batch.events, 1);
        assert_eq!(acks.acked(), 2, "the panicked batch's frames are acknowledged (the good one waits for the log)");
        assert_eq!(metrics.malformed_count(Malformed::Panic), 2);
        drop(tx);
        drop(batch);
        workers.join();
    }
}
