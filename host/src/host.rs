//! [`TelemetryHost`]: the one object a proxy keeps. It owns the engine, the serving filter, the
//! epoch ticker, the file watcher, the filter threads and the channel, and takes each finished
//! request off the proxy's hands.

use crate::channel::{Channel, Queues};
use crate::config::{FilterSettings, HostConfig};
use crate::deadline::TICK;
use crate::ticker::Ticker;
use crate::filter_thread::FilterThread;
use crate::handoff::Handoff;
use crate::metrics::{DropReason, Metrics};
use crate::runtime::{Limits, LoadedFilter};
use crate::{compile, reload, Exchange, FilterConfig, HeadWriter};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;
use wasmtime::Engine;

/// Why the host could not start or a reload was refused.
#[derive(Debug, Error)]
pub enum HostError {
    #[error("cannot read filter {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("filter {path} refused: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot start the telemetry runtime: {0}")]
    Runtime(String),
}

/// What the host's threads share with the filter threads.
pub(crate) struct Shared {
    pub engine: Engine,
    pub config: HostConfig,
    pub limits: Limits,
    pub current: ArcSwap<LoadedFilter>,
    pub metrics: Arc<Metrics>,
    pub queues: Queues,
    pub handoff: Handoff,
    pub ticker: Ticker,
    /// Tells the filter threads to empty the queue once more and end.
    pub filter_stop: AtomicBool,
    /// The serving filter's body capture, readable by the proxy's threads without touching it.
    pub body_capture_bytes: AtomicU32,
}

struct Inner {
    shared: Arc<Shared>,
    next_generation: AtomicU64,
    reload_lock: Mutex<()>,
    channel: Mutex<Channel>,
    filter_threads: Mutex<Vec<JoinHandle<()>>>,
    filter_tids: Vec<i32>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Runs the telemetry filter inside a proxy. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct TelemetryHost {
    inner: Arc<Inner>,
}

impl TelemetryHost {
    /// Loads and validates the filter, then starts the ticker, the watcher, the filter threads
    /// and the sender. A filter that cannot be loaded at start is an error: there is nothing old
    /// to fall back on.
    pub fn start(config: HostConfig) -> Result<TelemetryHost, HostError> {
        let engine = compile::engine(config.memory_limit_bytes).map_err(|e| HostError::Runtime(format!("{e:#}")))?;
        let filter_config = filter_config(&config.filter);
        let ticks = config.call_deadline.as_nanos().div_ceil(TICK.as_nanos()) as u64 + 1;
        let limits = Limits { memory_bytes: config.memory_limit_bytes, deadline_ticks: ticks };
        let metrics = Arc::new(Metrics::default());
        let stop = Arc::new(AtomicBool::new(false));

        // The ticker must run before the first (validating) instantiation: deadlines need it.
        let (ticker, ticker_thread) = {
            let engine = engine.clone();
            Ticker::start(move || engine.increment_epoch()).map_err(|e| HostError::Runtime(e.to_string()))?
        };
        let first = read_and_load(&engine, &ticker, &config, &filter_config, limits, 1).inspect_err(|_| ticker.stop())?;
        metrics.set_active_version(&first.version);
        let first_body_capture = first.config.body_capture_bytes;
        let channel = Channel::start(config.channel.clone(), metrics.clone()).map_err(|e| HostError::Runtime(e.to_string()))?;
        let shared = Arc::new(Shared {
            queues: channel.queues(),
            engine,
            limits,
            current: ArcSwap::from_pointee(first),
            metrics,
            handoff: Handoff::new(config.handoff_capacity),
            ticker,
            filter_stop: AtomicBool::new(false),
            body_capture_bytes: AtomicU32::new(first_body_capture),
            config,
        });
        let mut filter_threads = Vec::new();
        let mut filter_tids = Vec::new();
        for i in 0..shared.config.filter_threads.max(1) {
            let thread = FilterThread::new(shared.clone());
            let (tid_tx, tid_rx) = std::sync::mpsc::sync_channel(1);
            let spawned = std::thread::Builder::new().name(format!("sentinel-filter{i}")).spawn(move || {
                // SAFETY: gettid has no preconditions.
                let _ = tid_tx.send(unsafe { libc::gettid() });
                thread.run()
            });
            match spawned {
                Ok(t) => {
                    filter_tids.extend(tid_rx.recv().ok());
                    filter_threads.push(t);
                }
                Err(e) => {
                    stop_filter_threads(&shared, filter_threads);
                    shared.ticker.stop();
                    return Err(HostError::Runtime(e.to_string()));
                }
            }
        }
        let inner = Arc::new(Inner {
            shared: shared.clone(),
            channel: Mutex::new(channel),
            next_generation: AtomicU64::new(2),
            reload_lock: Mutex::new(()),
            filter_threads: Mutex::new(filter_threads),
            filter_tids,
            stop: stop.clone(),
            threads: Mutex::new(vec![ticker_thread]),
        });
        if let Some(interval) = shared.config.watch_interval {
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            let w = reload::watch_file("telemetry-filter-watch", shared.config.filter_path.clone(), interval, stop, move || {
                if let Some(inner) = weak.upgrade() {
                    let _ = TelemetryHost { inner }.reload();
                }
            })
            .map_err(|e| HostError::Runtime(e.to_string()))?;
            if let Ok(mut t) = inner.threads.lock() {
                t.push(w);
            }
        }
        Ok(TelemetryHost { inner })
    }

    /// Hands one finished request to the filter. Never fails, never blocks, never runs the filter
    /// on the calling thread: the exchange is queued for the filter thread, or counted as dropped
    /// (`filter_backlog` when the queue is full, `shutdown` once the host has shut down).
    #[inline]
    pub fn on_request(&self, ex: Exchange) {
        let shared = &*self.inner.shared;
        if shared.filter_stop.load(Relaxed) {
            // Shut down: no filter thread will take it.
            shared.metrics.drop_event(DropReason::Shutdown, 1);
        } else if !shared.handoff.push(ex) {
            shared.metrics.drop_event(DropReason::FilterBacklog, 1);
        }
    }

    /// A writer for the next request's head, over a buffer the filter thread is done with (no
    /// allocation per request once the proxy runs).
    #[inline]
    pub fn head_writer(&self) -> HeadWriter {
        HeadWriter::from_buffer(self.inner.shared.handoff.spare_buffer())
    }

    /// Waits until every exchange handed over so far has been through the filter (its event is
    /// then on the channel's queue), for at most `timeout`. False when time ran out.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.shared.handoff.wait_idle(timeout)
    }

    /// The operating-system thread ids of the filter threads, so they can be pinned to CPUs or
    /// inspected like the proxy's own workers.
    pub fn filter_thread_ids(&self) -> &[i32] {
        &self.inner.filter_tids
    }

    /// Reloads the filter file now. A build identical to the serving one is a no-op; a bad one is
    /// refused (counted, logged) and the serving filter stays. Returns the version serving after.
    pub fn reload(&self) -> Result<String, HostError> {
        let _guard = self.inner.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let config = self.inner.shared.current.load().config.clone();
        self.swap(self.load_next(&config, true))
    }

    /// Gives the filter new settings (allowlist, masking, sampling, body capture): the serving
    /// build is instantiated with them and validated (the filter may refuse them), then swapped
    /// in like a new build; calls already running finish with the old settings. Settings equal
    /// to the serving ones are a no-op.
    pub fn reconfigure(&self, settings: &FilterSettings) -> Result<String, HostError> {
        let _guard = self.inner.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let config = filter_config(settings);
        if self.inner.shared.current.load().config == config {
            return Ok(self.inner.shared.current.load().version.clone());
        }
        self.swap(self.load_next(&config, false))
    }

    /// Reads the filter file and loads it with `config` as the next generation. With
    /// `unless_serving`, a file identical to the serving build gives `None` (nothing to do).
    fn load_next(&self, config: &FilterConfig, unless_serving: bool) -> Result<Option<LoadedFilter>, HostError> {
        let inner = &*self.inner;
        let shared = &*inner.shared;
        let wasm = read_filter(&shared.config)?;
        if unless_serving && compile::digest(&wasm) == shared.current.load().digest {
            return Ok(None);
        }
        let generation = inner.next_generation.fetch_add(1, Relaxed);
        load(&shared.engine, &shared.ticker, &shared.config, &wasm, config, shared.limits, generation).map(Some)
    }

    /// Serves a freshly loaded filter, or counts and logs why there is none.
    fn swap(&self, result: Result<Option<LoadedFilter>, HostError>) -> Result<String, HostError> {
        let shared = &*self.inner.shared;
        match result {
            Ok(None) => Ok(shared.current.load().version.clone()),
            Ok(Some(filter)) => {
                let version = filter.version.clone();
                log::info!("telemetry: filter {} now serving ({})", version, &filter.digest[..12]);
                let body_capture_bytes = filter.config.body_capture_bytes;
                shared.current.store(Arc::new(filter));
                shared.body_capture_bytes.store(body_capture_bytes, Relaxed);
                shared.metrics.set_active_version(&version);
                shared.metrics.reloads_ok.fetch_add(1, Relaxed);
                Ok(version)
            }
            Err(e) => {
                log::error!("telemetry: {e}; the serving filter stays");
                shared.metrics.reloads_failed.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.shared.metrics
    }

    /// The counters as Prometheus text, for the proxy's own `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.inner.shared.metrics.render_prometheus(&self.inner.shared.config.channel.instance_name)
    }

    /// The version string of the filter serving now.
    pub fn active_version(&self) -> String {
        self.inner.shared.current.load().version.clone()
    }

    /// Body bytes the active filter keeps per direction: what a proxy should capture, read per
    /// request so a reconfiguration reaches the proxy's capture buffers too.
    #[inline]
    pub fn body_capture_bytes(&self) -> usize {
        self.inner.shared.body_capture_bytes.load(Relaxed) as usize
    }

    /// Stops the threads after running the filter on every queued exchange and trying, for at
    /// most `grace`, to send what is queued.
    pub fn shutdown(&self, grace: Duration) {
        self.inner.stop_filter_threads();
        self.inner.stop.store(true, Relaxed);
        self.inner.shared.ticker.stop();
        if let Ok(mut c) = self.inner.channel.lock() {
            c.shutdown(grace);
        }
    }
}

impl Inner {
    fn stop_filter_threads(&self) {
        let threads = self.filter_threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        stop_filter_threads(&self.shared, threads);
    }
}

/// Lets the filter threads empty the queue and end (the ticker still runs: calls need it).
fn stop_filter_threads(shared: &Shared, threads: Vec<JoinHandle<()>>) {
    shared.filter_stop.store(true, Relaxed);
    for t in threads {
        t.thread().unpark();
        let _ = t.join();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_filter_threads();
        self.stop.store(true, Relaxed);
        self.shared.ticker.stop();
        if let Ok(mut threads) = self.threads.lock() {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// The filter's `configure` argument for a host's settings.
fn filter_config(s: &FilterSettings) -> FilterConfig {
    FilterConfig {
        header_allowlist: s.header_allowlist.clone(),
        masked_headers: s.masked_headers.clone(),
        sample_rate: s.sample_rate,
        always_keep_server_errors: s.always_keep_server_errors,
        always_keep_client_errors: s.always_keep_client_errors,
        body_capture_bytes: s.body_capture_bytes,
    }
}

fn load(
    engine: &Engine,
    ticker: &Ticker,
    config: &HostConfig,
    wasm: &[u8],
    filter_config: &FilterConfig,
    limits: Limits,
    generation: u64,
) -> Result<LoadedFilter, HostError> {
    // Validation runs the filter (instantiate, configure, version) under the deadline.
    let _running = ticker.running();
    LoadedFilter::load(engine, wasm, config.cache_dir.as_deref(), filter_config, limits, generation)
        .map_err(|e| HostError::Invalid { path: config.filter_path.display().to_string(), reason: format!("{e:#}") })
}

fn read_and_load(
    engine: &Engine,
    ticker: &Ticker,
    config: &HostConfig,
    filter_config: &FilterConfig,
    limits: Limits,
    generation: u64,
) -> Result<LoadedFilter, HostError> {
    load(engine, ticker, config, &read_filter(config)?, filter_config, limits, generation)
}

fn read_filter(config: &HostConfig) -> Result<Vec<u8>, HostError> {
    let path = &config.filter_path;
    std::fs::read(path).map_err(|source| HostError::Read { path: path.display().to_string(), source })
}
