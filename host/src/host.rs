//! [`TelemetryHost`]: the one object a proxy keeps. It owns the engine, the serving filter, the
//! epoch ticker, the file watcher and the channel, and runs the filter for each finished request.

use crate::channel::{Channel, Queues};
use crate::config::{FilterSettings, HostConfig};
use crate::deadline::TICK;
use crate::metrics::Metrics;
use crate::runtime::{Limits, LoadedFilter, Worker};
use crate::{compile, reload, Exchange, FilterConfig, Outcome};
use arc_swap::ArcSwap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;
use wasmtime::{Engine, Trap};

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

struct Inner {
    id: u64,
    engine: Engine,
    config: HostConfig,
    limits: Limits,
    current: ArcSwap<LoadedFilter>,
    next_generation: AtomicU64,
    reload_lock: Mutex<()>,
    metrics: Arc<Metrics>,
    queues: Queues,
    channel: Mutex<Channel>,
    /// Consecutive faults of the serving filter, and until when calls are skipped.
    faults_in_a_row: AtomicU32,
    skip_until_ns: AtomicU64,
    epoch0: Instant,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Runs the telemetry filter inside a proxy. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct TelemetryHost {
    inner: Arc<Inner>,
}

thread_local! {
    /// This thread's filter instances, one per host in the process.
    static WORKERS: RefCell<Vec<(u64, Worker)>> = const { RefCell::new(Vec::new()) };
}

static HOST_IDS: AtomicU64 = AtomicU64::new(1);

impl TelemetryHost {
    /// Loads and validates the filter, then starts the ticker, the watcher and the sender.
    /// A filter that cannot be loaded at start is an error: there is nothing old to fall back on.
    pub fn start(config: HostConfig) -> Result<TelemetryHost, HostError> {
        let engine = compile::engine(config.memory_limit_bytes).map_err(|e| HostError::Runtime(format!("{e:#}")))?;
        let filter_config = filter_config(&config.filter);
        let ticks = config.call_deadline.as_nanos().div_ceil(TICK.as_nanos()) as u64 + 1;
        let limits = Limits { memory_bytes: config.memory_limit_bytes, deadline_ticks: ticks };
        let metrics = Arc::new(Metrics::default());
        let stop = Arc::new(AtomicBool::new(false));

        // The ticker must run before the first (validating) instantiation: deadlines need it.
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("telemetry-epoch".into())
                .spawn(move || {
                    while !stop.load(Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| HostError::Runtime(e.to_string()))?
        };
        let first = read_and_load(&engine, &config, &filter_config, limits, 1)?;
        metrics.set_active_version(&first.version);
        let channel = Channel::start(config.channel.clone(), metrics.clone()).map_err(|e| HostError::Runtime(e.to_string()))?;
        let inner = Arc::new(Inner {
            id: HOST_IDS.fetch_add(1, Relaxed),
            queues: channel.queues(),
            channel: Mutex::new(channel),
            engine,
            limits,
            current: ArcSwap::from_pointee(first),
            next_generation: AtomicU64::new(2),
            reload_lock: Mutex::new(()),
            metrics,
            faults_in_a_row: AtomicU32::new(0),
            skip_until_ns: AtomicU64::new(0),
            epoch0: Instant::now(),
            stop: stop.clone(),
            threads: Mutex::new(vec![ticker]),
            config,
        });
        if let Some(interval) = inner.config.watch_interval {
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            let w = reload::watch_file("telemetry-filter-watch", inner.config.filter_path.clone(), interval, stop, move || {
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

    /// Runs the filter on one finished request. Never fails, never blocks: faults and full
    /// queues are counted and the request is left as it was.
    pub fn on_request(&self, ex: &Exchange) {
        let inner = &*self.inner;
        let m = &inner.metrics;
        m.calls.fetch_add(1, Relaxed);
        let skip_until = inner.skip_until_ns.load(Relaxed);
        if skip_until != 0 && (inner.epoch0.elapsed().as_nanos() as u64) < skip_until {
            m.skipped.fetch_add(1, Relaxed);
            return;
        }
        let current = inner.current.load();
        WORKERS.with(|cell| {
            let Ok(mut workers) = cell.try_borrow_mut() else { return };
            let pos = workers.iter().position(|(id, w)| {
                *id == inner.id
                    && w.filter.generation == current.generation
                    && w.calls < inner.config.recycle_after_calls
                    && w.memory_growth() < inner.config.recycle_after_growth_bytes
            });
            let i = match pos {
                Some(i) => i,
                None => {
                    // No usable instance on this thread: drop a stale one, build a fresh one.
                    workers.retain(|(id, _)| *id != inner.id);
                    match Worker::new(&inner.engine, current.clone(), Some(inner.queues.producer()), inner.limits) {
                        Ok(w) => {
                            m.instances_created.fetch_add(1, Relaxed);
                            workers.push((inner.id, w));
                            workers.len() - 1
                        }
                        Err(e) => {
                            m.instantiate_failures.fetch_add(1, Relaxed);
                            log::warn!("telemetry: cannot instantiate filter {}: {e:#}", current.version);
                            self.fault();
                            return;
                        }
                    }
                }
            };
            match workers[i].1.call(ex, inner.limits.deadline_ticks) {
                Ok(outcome) => {
                    match outcome {
                        Outcome::Emitted => m.emitted.fetch_add(1, Relaxed),
                        Outcome::SampledOut => m.sampled_out.fetch_add(1, Relaxed),
                        // The channel already counted the drop and its reason.
                        Outcome::Dropped => 0,
                    };
                    if inner.faults_in_a_row.load(Relaxed) != 0 {
                        inner.faults_in_a_row.store(0, Relaxed);
                    }
                }
                Err(e) => {
                    // A trapped instance cannot be used again: drop it, the next call rebuilds.
                    workers.swap_remove(i);
                    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                        m.deadline_hits.fetch_add(1, Relaxed);
                    } else {
                        m.traps.fetch_add(1, Relaxed);
                        log::debug!("telemetry: filter trapped: {e:#}");
                    }
                    self.fault();
                }
            }
        });
    }

    /// Counts a fault of the serving filter; past the threshold, calls are skipped for a while
    /// (100 ms, doubling up to 30 s) so a broken filter costs the proxy almost nothing.
    fn fault(&self) {
        let inner = &*self.inner;
        let n = inner.faults_in_a_row.fetch_add(1, Relaxed) + 1;
        if n >= inner.config.fault_backoff_after {
            let exp = (n - inner.config.fault_backoff_after).min(9);
            let wait = Duration::from_millis(100u64 << exp).min(Duration::from_secs(30));
            let until = inner.epoch0.elapsed() + wait;
            inner.skip_until_ns.store(until.as_nanos() as u64, Relaxed);
        }
    }

    /// Reloads the filter file now. A build identical to the serving one is a no-op; a bad one is
    /// refused (counted, logged) and the serving filter stays. Returns the version serving after.
    pub fn reload(&self) -> Result<String, HostError> {
        let _guard = self.inner.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let config = self.inner.current.load().config.clone();
        self.swap(self.load_next(&config, true))
    }

    /// Gives the filter new settings (allowlist, masking, sampling, body capture): the serving
    /// build is instantiated with them and validated (the filter may refuse them), then swapped
    /// in like a new build; calls already running finish with the old settings. Settings equal
    /// to the serving ones are a no-op.
    pub fn reconfigure(&self, settings: &FilterSettings) -> Result<String, HostError> {
        let _guard = self.inner.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let config = filter_config(settings);
        if self.inner.current.load().config == config {
            return Ok(self.inner.current.load().version.clone());
        }
        self.swap(self.load_next(&config, false))
    }

    /// Reads the filter file and loads it with `config` as the next generation. With
    /// `unless_serving`, a file identical to the serving build gives `None` (nothing to do).
    fn load_next(&self, config: &FilterConfig, unless_serving: bool) -> Result<Option<LoadedFilter>, HostError> {
        let inner = &*self.inner;
        let wasm = read_filter(&inner.config)?;
        if unless_serving && compile::digest(&wasm) == inner.current.load().digest {
            return Ok(None);
        }
        let generation = inner.next_generation.fetch_add(1, Relaxed);
        load(&inner.engine, &inner.config, &wasm, config, inner.limits, generation).map(Some)
    }

    /// Serves a freshly loaded filter, or counts and logs why there is none.
    fn swap(&self, result: Result<Option<LoadedFilter>, HostError>) -> Result<String, HostError> {
        let inner = &*self.inner;
        match result {
            Ok(None) => Ok(inner.current.load().version.clone()),
            Ok(Some(filter)) => {
                let version = filter.version.clone();
                log::info!("telemetry: filter {} now serving ({})", version, &filter.digest[..12]);
                inner.current.store(Arc::new(filter));
                inner.faults_in_a_row.store(0, Relaxed);
                inner.skip_until_ns.store(0, Relaxed);
                inner.metrics.set_active_version(&version);
                inner.metrics.reloads_ok.fetch_add(1, Relaxed);
                Ok(version)
            }
            Err(e) => {
                log::error!("telemetry: {e}; the serving filter stays");
                inner.metrics.reloads_failed.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The counters as Prometheus text, for the proxy's own `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render_prometheus(&self.inner.config.channel.instance_name)
    }

    /// The version string of the filter serving now.
    pub fn active_version(&self) -> String {
        self.inner.current.load().version.clone()
    }

    /// Body bytes the active filter keeps per direction: what a proxy should capture, read per
    /// request so a reconfiguration reaches the proxy's capture buffers too.
    pub fn body_capture_bytes(&self) -> usize {
        self.inner.current.load().config.body_capture_bytes as usize
    }

    /// Stops the threads after trying, for at most `grace`, to send what is queued.
    pub fn shutdown(&self, grace: Duration) {
        self.inner.stop.store(true, Relaxed);
        if let Ok(mut c) = self.inner.channel.lock() {
            c.shutdown(grace);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
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
    config: &HostConfig,
    wasm: &[u8],
    filter_config: &FilterConfig,
    limits: Limits,
    generation: u64,
) -> Result<LoadedFilter, HostError> {
    LoadedFilter::load(engine, wasm, config.cache_dir.as_deref(), filter_config, limits, generation)
        .map_err(|e| HostError::Invalid { path: config.filter_path.display().to_string(), reason: format!("{e:#}") })
}

fn read_and_load(
    engine: &Engine,
    config: &HostConfig,
    filter_config: &FilterConfig,
    limits: Limits,
    generation: u64,
) -> Result<LoadedFilter, HostError> {
    load(engine, config, &read_filter(config)?, filter_config, limits, generation)
}

fn read_filter(config: &HostConfig) -> Result<Vec<u8>, HostError> {
    let path = &config.filter_path;
    std::fs::read(path).map_err(|source| HostError::Read { path: path.display().to_string(), source })
}
