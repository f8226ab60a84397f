//! The collector configured by a KDL file runs the same path as one configured by flags, and
//! `validate` answers a broken file with its position and fix, without starting anything.

use anyhow::Context;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_run_from_a_config_file_writes_every_event() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.collector_config_file = true;
    let mut stack = Stack::start(paths, cfg).await?;
    let n = 300;
    let report = traffic::run(&stack.proxy_addr, 5, n, 4, |_| {}).await;
    assert_eq!(report.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    assert_eq!(stack.events()?.len() as u64, n, "one event per request, written where the file says");
    assert_eq!(stack.collector_metrics().await?.get("sentinel_collector_events_written_total{sink=\"file\"}"), n as f64);

    // SIGHUP re-reads the file even when it did not change (what `systemctl reload` sends).
    let pid = stack.collector_pid().expect("collector runs");
    assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status()?.success());
    stack.wait_metric(false, "sentinel_collector_config_reloads_total{result=\"ok\"}", 1.0, Duration::from_secs(10)).await.context("SIGHUP did not reload")?;
    let more = traffic::run(&stack.proxy_addr, 6, 100, 4, |_| {}).await;
    assert_eq!(more.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    assert_eq!(stack.events()?.len() as u64, n + 100, "the unchanged sink kept running across the reload");
    let summary = stack.stop_collector().await?;
    assert_eq!(summary["events_written"], n + 100);
    Ok(())
}

#[test]
fn validate_reports_position_and_fix_and_exits_1() -> anyhow::Result<()> {
    let paths = Paths::discover()?;
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.kdl");
    std::fs::write(&bad, "agent \"telemetry\" {\n    events [\"request_headers\", \"response_headers\"]\n    samplig { rate 0.5; }\n}\n")?;
    let out = Command::new(paths.bin_dir.join("sentinel-collector")).arg("validate").arg(&bad).output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("bad.kdl:2:12: KDL has no lists"), "{err}");
    assert!(err.contains("`events \"request_headers\" \"response_headers\"`"), "{err}");

    let good = dir.path().join("good.kdl");
    std::fs::write(&good, "agent \"telemetry\" {\n    sink \"file\" { path \"/tmp/x\"; }\n}\n")?;
    let out = Command::new(paths.bin_dir.join("sentinel-collector")).arg("validate").arg(&good).output()?;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
