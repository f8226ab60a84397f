//! The engine and the component cache: one [`Engine`] per host, configured for cheap calls
//! (no async support, epoch interruption, pooled instances), and components precompiled once and
//! kept on disk keyed by the wasm's hash and the engine's compatibility hash. A cached file is
//! native code the proxy will run, so the cache is trusted only as the proxy's own: a directory
//! it owns that nobody else can write, files it owns that nobody else can write, written under
//! unpredictable names; anything else is refused (compiled afresh, and said in the log).

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
    if let Err(e) = trusted_dir(dir) {
        log::warn!("telemetry: not using the compile cache {}: {e}", dir.display());
        return Component::new(engine, wasm);
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let path = dir.join(format!("{digest}-{:016x}.cwasm", h.finish()));
    match read_trusted(&path) {
        Ok(Some(bytes)) => {
            // SAFETY: the file name carries the engine's compatibility hash and the source
            // digest; it lies in a directory only this user can write, and is owned by this user
            // and writable by nobody else, so only this function (atomically, below) wrote it:
            // an engine configured exactly like this one, from exactly these bytes.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(c) => return Ok(c),
                Err(e) => log::warn!("telemetry: ignoring unreadable cache entry {}: {e:#}", path.display()),
            }
        }
        Ok(None) => {}
        Err(e) => log::warn!("telemetry: ignoring cache entry {}: {e}", path.display()),
    }
    let compiled = engine.precompile_component(wasm)?;
    if let Err(e) = write_trusted(dir, digest, &path, &compiled) {
        log::warn!("telemetry: cannot cache compiled filter in {}: {e}", dir.display());
    }
    // SAFETY: `compiled` was produced just above by this engine.
    unsafe { Component::deserialize(engine, &compiled) }
}

fn refused(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why)
}

/// Whether `meta` is owned by this process's user and writable by nobody else.
fn owned_and_private(meta: &std::fs::Metadata, what: &str) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(refused(format!("the {what} is owned by uid {}, not by this process's uid {me}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refused(format!("the {what} is writable by group or others (mode {:o})", meta.mode() & 0o7777)));
    }
    Ok(())
}

/// Creates the cache directory (mode 0700) if needed, and checks that it is a real directory
/// this user owns and nobody else can write.
fn trusted_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(refused("it is not a directory (a symbolic link?)".into()));
    }
    owned_and_private(&meta, "directory")
}

/// A cached file's bytes, if it exists and is this user's own private regular file (opened
/// without following a link, checked on the open descriptor).
fn read_trusted(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(refused("not a regular file".into()));
    }
    owned_and_private(&meta, "file")?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Writes `compiled` to `path` through a new file of an unpredictable name (mode 0600, created
/// exclusively, so nothing prepared in advance can stand in for it), renamed into place.
fn write_trusted(dir: &Path, digest: &str, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    use std::hash::BuildHasher;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let nonce = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
    let tmp = dir.join(format!(".{digest}.{nonce:016x}.tmp"));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&tmp)?;
    let written = f.write_all(compiled).and_then(|()| f.sync_all()).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_cache_is_used_only_when_it_is_the_users_own_and_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        trusted_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "created 0700");
        let path = dir.join("x.cwasm");
        write_trusted(&dir, "x", &path, b"compiled").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_trusted(&path).unwrap().as_deref(), Some(&b"compiled"[..]));
        assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")), "no temporary left");

        // A file others can write is refused, and so is a directory others can write.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_trusted(&path).unwrap_err().to_string().contains("writable by group or others"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(trusted_dir(&dir).unwrap_err().to_string().contains("writable by group or others"));

        // A link planted where a cache file goes is not followed.
        let planted = root.path().join("planted.cwasm");
        std::fs::write(&planted, b"evil").unwrap();
        let link = root.path().join("ok");
        std::fs::create_dir(&link).unwrap();
        std::os::unix::fs::symlink(&planted, link.join("y.cwasm")).unwrap();
        assert!(read_trusted(&link.join("y.cwasm")).is_err());
        // A directory that is a link is refused.
        std::os::unix::fs::symlink(&link, root.path().join("dirlink")).unwrap();
        assert!(trusted_dir(&root.path().join("dirlink")).is_err());
        assert_eq!(read_trusted(&dir.join("absent.cwasm")).unwrap(), None);
    }

    #[test]
    fn a_cache_owned_by_someone_else_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: changing a file's owner needs root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        trusted_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        assert!(trusted_dir(&dir).unwrap_err().to_string().contains("owned by uid 65534"));
    }
}
