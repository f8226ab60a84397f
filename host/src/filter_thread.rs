//! The thread that runs the filter: it takes what the proxy's threads queued on the
//! [`Handoff`], calls the filter once per exchange under the call deadline, and owns the instance
//! (rebuilt after a reload, a fault, N calls or M bytes of heap growth) and the fault backoff.
//! Nothing here ever runs on a proxy thread, so a slow, looping or trapping filter cannot hold a
//! request up: the worst it does is fill the queue, whose overflow is counted.

use crate::host::Shared;
use crate::runtime::Worker;
use crate::{Exchange, Outcome};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Trap;

/// Longest the thread sleeps with exchanges possibly queued; a push that fills the queue to its
/// wake mark ends the sleep early. Events wait at most this long before the filter sees them.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(20);

/// One filter thread: the host's shared parts, and its own instance and fault state.
pub(crate) struct FilterThread {
    shared: Arc<Shared>,
    worker: Option<Worker>,
    /// Consecutive faults of the serving filter, and until when calls are skipped.
    faults_in_a_row: u32,
    skip_until: Option<Instant>,
    /// The generation the fault state belongs to: a new filter starts with a clean slate.
    fault_generation: u64,
}

impl FilterThread {
    pub fn new(shared: Arc<Shared>) -> FilterThread {
        FilterThread { shared, worker: None, faults_in_a_row: 0, skip_until: None, fault_generation: 0 }
    }

    /// Drains the queue, sleeps until woken or [`MAX_WAIT`], and again, until stopped.
    pub fn run(mut self) {
        let shared = self.shared.clone();
        shared.handoff.set_consumer();
        let mut batch = shared.handoff.empty_batch();
        loop {
            let stopping = shared.filter_stop.load(Relaxed);
            if !shared.handoff.is_empty() {
                let _running = shared.ticker.running();
                shared.handoff.drain(&mut batch, |ex| self.call(ex));
            }
            if stopping {
                return;
            }
            std::thread::park_timeout(MAX_WAIT);
        }
    }

    /// Runs the filter on one exchange. Faults are contained and counted; past the backoff
    /// threshold calls are skipped for a while (100 ms, doubling up to 30 s).
    fn call(&mut self, ex: &Exchange) {
        let shared = &*self.shared;
        let m = &*shared.metrics;
        m.calls.fetch_add(1, Relaxed);
        let current = shared.current.load();
        if current.generation != self.fault_generation {
            // A new build or new settings: whatever the old one did wrong is forgotten.
            self.fault_generation = current.generation;
            self.faults_in_a_row = 0;
            self.skip_until = None;
        }
        if self.skip_until.is_some_and(|until| Instant::now() < until) {
            m.skipped.fetch_add(1, Relaxed);
            return;
        }
        let usable = self.worker.as_ref().is_some_and(|w| {
            w.filter.generation == current.generation
                && w.calls < shared.config.recycle_after_calls
                && w.memory_growth() < shared.config.recycle_after_growth_bytes
        });
        if !usable {
            self.worker = None;
            match Worker::new(&shared.engine, Arc::clone(&current), Some(shared.queues.producer()), shared.limits) {
                Ok(w) => {
                    m.instances_created.fetch_add(1, Relaxed);
                    self.worker = Some(w);
                }
                Err(e) => {
                    m.instantiate_failures.fetch_add(1, Relaxed);
                    log::warn!("telemetry: cannot instantiate filter {}: {e:#}", current.version);
                    self.fault();
                    return;
                }
            }
        }
        let Some(worker) = self.worker.as_mut() else { return };
        match worker.call(ex, shared.limits.deadline_ticks) {
            Ok(outcome) => {
                match outcome {
                    Outcome::Emitted => m.emitted.fetch_add(1, Relaxed),
                    Outcome::SampledOut => m.sampled_out.fetch_add(1, Relaxed),
                    // The channel already counted the drop and its reason.
                    Outcome::Dropped => 0,
                };
                self.faults_in_a_row = 0;
            }
            Err(e) => {
                // A trapped instance cannot be used again: drop it, the next call rebuilds.
                self.worker = None;
                if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    m.deadline_hits.fetch_add(1, Relaxed);
                } else {
                    m.traps.fetch_add(1, Relaxed);
                    log::debug!("telemetry: filter trapped: {e:#}");
                }
                self.fault();
            }
        }
    }

    fn fault(&mut self) {
        self.faults_in_a_row += 1;
        let after = self.shared.config.fault_backoff_after;
        if self.faults_in_a_row >= after {
            let exp = (self.faults_in_a_row - after).min(9);
            let wait = Duration::from_millis(100u64 << exp).min(Duration::from_secs(30));
            self.skip_until = Some(Instant::now() + wait);
        }
    }
}
