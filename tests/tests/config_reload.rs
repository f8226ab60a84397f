//! The collector's configuration changes while traffic flows: a sink is added and another is
//! changed, a broken file is dropped in, then the added sink is removed. Every event lands exactly once in each sink that
//! ran across the change, the counters add up, and the broken file changes nothing.

use sentinel_demo::stack::{read_events, Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn wait_for(stack: &Stack, series: &str, want: f64) -> anyhow::Result<()> {
    stack.wait_metric(false, series, want, Duration::from_secs(10)).await
}

fn ids(events: &[serde_json::Value]) -> Vec<String> {
    events.iter().map(|e| e["event"]["id"].as_str().unwrap_or("").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_change_under_load_without_losing_or_duplicating() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.collector_config_file = true;
    let stack = Stack::start(paths, cfg).await?;
    let config_path = dir.path().join("collector.kdl");
    let copy_dir = dir.path().join("copy");

    let addr = stack.proxy_addr.clone();
    let load = tokio::spawn(async move { traffic::run_until(&addr, 21, 1_000_000, Some(Instant::now() + Duration::from_secs(4)), 4, |_| {}).await });
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Add a second file sink and change the first one's rotation: the first restarts on the
    // same directory, the second starts empty.
    let changed = stack
        .collector_kdl()
        .replace("    metrics {", &format!("    sink \"file\" id=\"copy\" {{\n        path {:?}\n    }}\n    metrics {{", copy_dir.display().to_string()))
        .replace("    sink \"file\" {\n", "    sink \"file\" {\n        rotate-bytes 65536\n        keep-files 0\n");
    std::fs::write(&config_path, &changed)?;
    wait_for(&stack, "sentinel_collector_config_reloads_total{result=\"ok\"}", 1.0).await?;

    tokio::time::sleep(Duration::from_millis(700)).await;
    std::fs::write(&config_path, changed.replace("rotate-bytes 65536", "rotate-bytes \"big\""))?;
    wait_for(&stack, "sentinel_collector_config_reloads_total{result=\"failed\"}", 1.0).await?;

    // Remove the added sink again: it drains, syncs and stops receiving.
    std::fs::write(&config_path, stack.collector_kdl())?;
    wait_for(&stack, "sentinel_collector_config_reloads_total{result=\"ok\"}", 2.0).await?;
    let copy_at_removal = read_events(&copy_dir)?.len();

    let report = load.await?;
    assert_eq!(report.failed, 0);
    assert!(report.sent > 500, "too little traffic to prove anything: {}", report.sent);
    stack.settle(Duration::from_secs(15)).await?;

    let main = ids(&stack.events()?);
    let unique: HashSet<&String> = main.iter().collect();
    assert_eq!(main.len() as u64, report.sent, "the changed sink has every event");
    assert_eq!(unique.len(), main.len(), "the changed sink has no event twice");
    let copy = ids(&read_events(&copy_dir)?);
    let copy_unique: HashSet<&String> = copy.iter().collect();
    assert!(!copy.is_empty(), "the added sink received nothing");
    assert_eq!(copy_unique.len(), copy.len(), "the added sink has no event twice");
    assert!(copy_unique.is_subset(&unique));
    assert_eq!(copy.len(), copy_at_removal, "a removed sink receives nothing more, and was synced when removed");
    // Events after the reload reach both: the copy holds the tail of the main sink.
    assert!(copy.len() as u64 > report.sent / 10, "copy has {} of {}", copy.len(), report.sent);
    assert!(std::fs::read_dir(&stack.output_dir)?.count() > 1, "the new rotation size was applied");

    let m = stack.collector_metrics().await?;
    assert_eq!(m.get("sentinel_collector_events_written_total{sink=\"file\"}"), main.len() as f64);
    assert_eq!(m.get("sentinel_collector_events_written_total{sink=\"copy\"}"), copy.len() as f64);
    assert_eq!(m.get("sentinel_collector_config_reloads_total{result=\"ok\"}"), 2.0);
    assert_eq!(m.get("sentinel_collector_config_reloads_total{result=\"failed\"}"), 1.0, "the broken file was refused");
    Ok(())
}
