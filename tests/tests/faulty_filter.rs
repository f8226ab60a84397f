//! A filter that loops forever, traps or exhausts its memory never fails or holds up a request:
//! the fault is contained, counted, and the filter backs off. One that leaks is recycled first.

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::time::Duration;

async fn run_with(filter: &str, fault_series: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let stack = Stack::start(paths.clone(), StackConfig::new(dir.path(), paths.filter(filter))).await?;
    let report = traffic::run(&stack.proxy_addr, 9, 400, 4, |_| {}).await;
    assert_eq!(report.failed, 0, "{filter}: requests failed");
    // The per-call deadline is 10 ms and a faulting filter backs off: nothing waits much longer.
    assert!(report.percentile(1.0) < Duration::from_millis(250), "{filter}: slowest request {:?}", report.percentile(1.0));
    // The logging phase runs after the response is sent: let the last calls land.
    stack.settle(Duration::from_secs(10)).await?;
    let m = stack.proxy_metrics().await?;
    let calls = m.get("sentinel_filter_calls_total");
    let faults = m.get(fault_series);
    let skipped = m.get("sentinel_filter_skipped_total");
    assert_eq!(calls, 400.0);
    assert!(faults >= 5.0, "{filter}: {fault_series} = {faults}");
    assert_eq!(faults + skipped + m.get("sentinel_filter_faults_total{kind=\"instantiate\"}"), calls, "{filter}: every call is a fault or skipped");
    assert_eq!(m.get("sentinel_filter_outcomes_total{outcome=\"emitted\"}"), 0.0);
    assert!(stack.events()?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_filter_hits_its_deadline() -> anyhow::Result<()> {
    run_with("filter-fault-loop.wasm", "sentinel_filter_faults_total{kind=\"deadline\"}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_filter_is_contained() -> anyhow::Result<()> {
    run_with("filter-fault-trap.wasm", "sentinel_filter_faults_total{kind=\"trap\"}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_exhausts_memory_is_contained() -> anyhow::Result<()> {
    run_with("filter-fault-memory.wasm", "sentinel_filter_faults_total{kind=\"trap\"}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_filter_is_recycled_before_it_hits_its_memory_cap() -> anyhow::Result<()> {
    // Leaks 1 MiB a call: with a 16 MiB cap it would trap within ~16 calls per worker; instances
    // are rebuilt every 4 MiB of growth instead, so every request still gets its event.
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let stack = Stack::start(paths.clone(), StackConfig::new(dir.path(), paths.filter("filter-fault-leak.wasm"))).await?;
    let report = traffic::run(&stack.proxy_addr, 9, 200, 4, |_| {}).await;
    assert_eq!(report.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    let m = stack.proxy_metrics().await?;
    let kinds: Vec<_> = m.0.iter().filter(|(k, v)| k.starts_with("sentinel_filter_faults_total{") && **v > 0.0).collect();
    assert_eq!(m.sum("sentinel_filter_faults_total"), 0.0, "no instance reached its cap: {kinds:?}");
    assert_eq!(m.get("sentinel_filter_outcomes_total{outcome=\"emitted\"}"), 200.0);
    assert!(m.get("sentinel_filter_instances_created_total") >= 20.0, "instances were recycled: {:?}", m.0);
    assert_eq!(stack.events()?.len(), 200);
    Ok(())
}
