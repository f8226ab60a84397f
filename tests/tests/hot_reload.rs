//! Replacing the filter file under continuous load: the new version serves within a second, no
//! request fails, and a corrupt file is refused while the old version keeps serving.

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Copies `src` next to `dst` and renames it over `dst` (how deploy tools replace files).
fn replace_atomically(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    let tmp = dst.with_extension("wasm.tmp");
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, dst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_version_serves_within_a_second_and_corrupt_files_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let live = dir.path().join("filter.wasm");
    std::fs::copy(paths.filter("sentinel_filter.wasm"), &live)?;
    let stack = Stack::start(paths.clone(), StackConfig::new(dir.path(), &live)).await?;

    let load_until = Instant::now() + Duration::from_secs(6);
    let addr = stack.proxy_addr.clone();
    let load = tokio::spawn(async move { traffic::run_until(&addr, 3, u64::MAX, Some(load_until), 4, |_| {}).await });

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let swapped_at = now_ns();
    replace_atomically(&paths.filter("filter-next.wasm"), &live)?;

    tokio::time::sleep(Duration::from_millis(2000)).await;
    let corrupted_at = now_ns();
    std::fs::write(&live, b"\0asm this is not a component")?;

    let report = load.await?;
    assert!(report.sent > 1000, "load too light to prove anything: {}", report.sent);
    assert_eq!(report.failed, 0, "requests failed during the swaps");
    stack.settle(Duration::from_secs(10)).await?;

    let m = stack.proxy_metrics().await?;
    assert_eq!(m.get("sentinel_filter_reloads_total{result=\"ok\"}"), 1.0);
    assert!(m.get("sentinel_filter_reloads_total{result=\"failed\"}") >= 1.0);
    assert_eq!(m.get("sentinel_filter_info{version=\"0.1.0-next\"}"), 1.0);

    let events = stack.events()?;
    assert_eq!(events.len() as u64, report.sent, "one event per request across both versions");
    let version = |e: &serde_json::Value| e["filter"]["version"].as_str().unwrap_or("").to_string();
    let start = |e: &serde_json::Value| e["event"]["start_ns"].as_u64().unwrap_or(0);
    assert!(events.iter().any(|e| version(e) == "0.1.0" && start(e) < swapped_at));
    // Every request that started a second after the swap ran on the new version, including
    // those after the corrupt file was dropped in.
    let late: Vec<_> = events.iter().filter(|e| start(e) > swapped_at + 1_000_000_000).collect();
    assert!(!late.is_empty());
    assert!(late.iter().all(|e| version(e) == "0.1.0-next"), "old version still serving a second after the swap");
    assert!(events.iter().any(|e| start(e) > corrupted_at && version(e) == "0.1.0-next"));

    // Both good builds were precompiled into the cache (the corrupt one never compiled).
    let cached = std::fs::read_dir(dir.path().join("filter-cache"))?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert_eq!(cached, 2, "one cache entry per distinct build");
    Ok(())
}
