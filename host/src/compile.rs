//! The engine and the component cache: one [`Engine`] per host, configured for cheap calls
//! (no async support, epoch interruption, pooled instances), and components precompiled once and
//! kept on disk keyed by the wasm's hash and the engine's compatibility hash.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Most filter instances alive at once (worker threads × generations in flight).
const MAX_INSTANCES: u32 = 256;

/// Builds the engine every filter of a host runs on.
pub(crate) fn engine(memory_limit_bytes: usize) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 8)
        .total_memories(MAX_INSTANCES * 2)
        .total_tables(MAX_INSTANCES * 4)
        .max_memory_size(memory_limit_bytes);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Lets `perf` name JIT-compiled filter functions; off unless asked for.
    if std::env::var_os("SENTINEL_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config)
}

/// Hex SHA-256 of a filter's bytes: identifies a build in logs and cache keys.
pub(crate) fn digest(wasm: &[u8]) -> String {
    Sha256::digest(wasm).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles `wasm`, or loads its precompiled form from `cache_dir` when this engine made one.
pub(crate) fn component(engine: &Engine, wasm: &[u8], digest: &str, cache_dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm);
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let path = dir.join(format!("{digest}-{:016x}.cwasm", h.finish()));
    if path.exists() {
        // SAFETY: the file name carries the engine's compatibility hash and the source digest, and
        // only this function writes such files (atomically, below), so it was produced by an
        // engine configured exactly like this one from exactly these bytes.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => log::warn!("telemetry: ignoring unreadable cache entry {}: {e:#}", path.display()),
        }
    }
    let compiled = engine.precompile_component(wasm)?;
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{digest}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &compiled)?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        log::warn!("telemetry: cannot cache compiled filter in {}: {e}", dir.display());
    }
    // SAFETY: `compiled` was produced just above by this engine.
    unsafe { Component::deserialize(engine, &compiled) }
}
