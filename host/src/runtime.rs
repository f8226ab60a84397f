//! A loaded filter and the filter thread's instance that runs it.
//!
//! A [`LoadedFilter`] is one compiled, linked and validated build (an `InstancePre`): cheap to
//! instantiate. A [`Worker`] is one thread's store and instance of it; it is rebuilt when the
//! filter is reloaded, after a fault (a trapped instance cannot be reused), every N calls, and
//! once its memory has grown by M bytes (a leaking or fragmenting guest heap is reset early).

use crate::bindings::{Filter, FilterPre};
use crate::channel::Producer;
use crate::deadline::{thread_cpu_time, CallDeadline};
use crate::{compile, Exchange, FilterConfig, Outcome};
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Linker, WasmList};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};

/// Caps an instance's memory (growth past the cap traps) and records how far it has grown, so a
/// worker whose guest heap keeps growing is rebuilt before it reaches the cap.
struct MemoryLimiter {
    limits: StoreLimits,
    /// Largest linear-memory size granted so far, in bytes.
    high_water: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let ok = self.limits.memory_growing(current, desired, maximum)?;
        if ok {
            self.high_water = self.high_water.max(desired);
        }
        Ok(ok)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

/// What a filter instance can reach: its memory limiter and the queue; and its call deadline.
pub(crate) struct HostState {
    limiter: MemoryLimiter,
    producer: Option<Producer>,
    deadline: CallDeadline,
}

/// Links the filter's one import, `emit`, by hand rather than through the generated trait: the
/// event is read in place from the guest's memory as a `WasmList` and copied once, into the
/// instance's ring, instead of being lifted into a fresh `Vec` first.
fn link_emit(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.root().func_wrap("emit", |store: wasmtime::StoreContextMut<'_, HostState>, (event,): (WasmList<u8>,)| {
        let queued = match &store.data().producer {
            Some(p) => p.push(event.as_le_slice(&store)),
            // Validation instances have no queue; what they emit goes nowhere, on purpose.
            None => true,
        };
        Ok((queued,))
    })
}

/// One compiled, linked and validated filter build.
pub(crate) struct LoadedFilter {
    pub generation: u64,
    pub version: String,
    pub digest: String,
    /// What every instance of this build is configured with.
    pub config: FilterConfig,
    pre: FilterPre<HostState>,
}

/// Limits every instance runs under.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub memory_bytes: usize,
    pub deadline_ticks: u64,
}

impl LoadedFilter {
    /// Compiles (or loads from cache), links and validates a filter: it must instantiate, accept
    /// its config and say its version within the limits. Nothing here runs on the request path.
    pub fn load(
        engine: &Engine,
        wasm: &[u8],
        cache_dir: Option<&Path>,
        config: &FilterConfig,
        limits: Limits,
        generation: u64,
    ) -> wasmtime::Result<LoadedFilter> {
        let digest = compile::digest(wasm);
        let component = compile::component(engine, wasm, &digest, cache_dir)?;
        let mut linker: Linker<HostState> = Linker::new(engine);
        link_emit(&mut linker)?;
        // The guest's std imports WASI interfaces it never calls on this path; calling one traps.
        // (The `types` interface holds no functions, so it needs nothing either.)
        linker.define_unknown_imports_as_traps(&component)?;
        let pre = FilterPre::new(linker.instantiate_pre(&component)?)?;
        let (mut store, bindings) = instantiate(engine, &pre, config, None, limits)?;
        let version = bindings.call_version(&mut store)?;
        Ok(LoadedFilter { generation, version, digest, config: config.clone(), pre })
    }
}

/// A fresh store and instance of `pre`, configured. Instantiation and `configure` run under a
/// generous deadline: they happen once per instance, off the hot path.
fn instantiate(
    engine: &Engine,
    pre: &FilterPre<HostState>,
    config: &FilterConfig,
    producer: Option<Producer>,
    limits: Limits,
) -> wasmtime::Result<(Store<HostState>, Filter)> {
    let state = HostState {
        limiter: MemoryLimiter {
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).trap_on_grow_failure(true).build(),
            high_water: 0,
        },
        producer,
        deadline: CallDeadline::new(limits.deadline_ticks),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().deadline.expired(thread_cpu_time())));
    store.set_epoch_deadline(limits.deadline_ticks.max(50));
    let bindings = pre.instantiate(&mut store)?;
    bindings
        .call_configure(&mut store, config)?
        .map_err(|msg| wasmtime::Error::msg(format!("filter refused its configuration: {msg}")))?;
    Ok((store, bindings))
}

/// One thread's instance of a filter.
pub(crate) struct Worker {
    pub filter: Arc<LoadedFilter>,
    store: Store<HostState>,
    bindings: Filter,
    pub calls: u64,
    /// Memory size once configured; growth beyond it is measured from here.
    baseline_memory: usize,
}

impl Worker {
    pub fn new(engine: &Engine, filter: Arc<LoadedFilter>, producer: Option<Producer>, limits: Limits) -> wasmtime::Result<Worker> {
        let (store, bindings) = instantiate(engine, &filter.pre, &filter.config, producer, limits)?;
        let baseline_memory = store.data().limiter.high_water;
        Ok(Worker { filter, store, bindings, calls: 0, baseline_memory })
    }

    /// Bytes the instance's memory has grown since it was configured.
    pub fn memory_growth(&self) -> usize {
        self.store.data().limiter.high_water.saturating_sub(self.baseline_memory)
    }

    /// Runs the filter on one exchange under the per-call deadline.
    pub fn call(&mut self, ex: &Exchange, deadline_ticks: u64) -> wasmtime::Result<Outcome> {
        self.calls += 1;
        self.store.data_mut().deadline.reset();
        self.store.set_epoch_deadline(deadline_ticks);
        self.bindings.call_on_request(&mut self.store, ex)
    }
}
