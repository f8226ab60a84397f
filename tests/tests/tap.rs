//! `sentinel-collector tap` against a running collector during traffic: what it prints is what
//! its filter selects, it stops at its limit, and the pipeline writes every event regardless.
//! Without the configured token nothing is served, and the stages before redaction only when
//! the configuration allows them.

use sentinel_demo::stack::{Paths, Stack, StackConfig, TAP_TOKEN};
use sentinel_demo::traffic;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_prints_what_its_filter_selects_without_slowing_the_pipeline() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let config = StackConfig { collector_config_file: true, ..StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm")) };
    let stack = Stack::start(paths.clone(), config).await?;
    let tap = |args: &[&str]| {
        Command::new(paths.bin_dir.join("sentinel-collector"))
            .args(["tap", "--addr", &stack.collector_admin, "--token", TAP_TOKEN])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let errors = tap(&["--filter", "http.response.status_code >= 500", "--limit", "20"])?;
    let table = tap(&["--format", "table", "--limit", "5"])?;
    let limited = tap(&["--rate", "2", "--limit", "1000"])?;
    // Let the sessions start before traffic flows.
    stack.wait_metric(false, "sentinel_collector_tap_sessions", 3.0, Duration::from_secs(10)).await?;

    let report = traffic::run(&stack.proxy_addr, 41, 3000, 8, |_| {}).await;
    assert_eq!(report.failed, 0);
    assert!(report.server_errors >= 20, "the plan needs some 5xx: {}", report.server_errors);
    stack.settle(Duration::from_secs(10)).await?;
    assert_eq!(stack.events()?.len(), 3000, "the pipeline wrote everything while tapped");

    let out = tokio::task::spawn_blocking(move || errors.wait_with_output()).await??;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 20, "the tap stops at its limit");
    assert!(lines.iter().all(|e| e["http"]["response"]["status_code"].as_u64().unwrap_or(0) >= 500));

    let out = tokio::task::spawn_blocking(move || table.wait_with_output()).await??;
    let text = String::from_utf8(out.stdout)?;
    assert!(text.starts_with("TIME (UTC)"), "{text}");
    assert_eq!(text.lines().count(), 6, "a header and five rows:\n{text}");

    // The rate-limited session saw at most ~2/s plus its burst; the rest is counted, not queued.
    let m = stack.collector_metrics().await?;
    assert!(m.get("sentinel_collector_tap_skipped_total{reason=\"rate\"}") > 2000.0, "{:?}", m.0);
    let mut limited = limited;
    let _ = limited.kill();
    let out = limited.wait_with_output()?;
    assert!(String::from_utf8(out.stdout)?.lines().count() <= 40, "the rate bounds what a session prints");

    let refused = Command::new(paths.bin_dir.join("sentinel-collector"))
        .args(["tap", "--addr", &stack.collector_admin, "--token", TAP_TOKEN, "--filter", "status =~ 5"])
        .output()?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8(refused.stderr)?.contains("unknown operator \"=~\""));

    // No token, a wrong one, and a stage before redaction the configuration does not allow.
    let bin = paths.bin_dir.join("sentinel-collector");
    for (args, why) in [
        (vec!["--limit", "1"], "needs the configured token"),
        (vec!["--token", "not-the-token", "--limit", "1"], "needs the configured token"),
        (vec!["--token", TAP_TOKEN, "--stage", "decoded", "--limit", "1"], "tap-unredacted"),
        (vec!["--token", TAP_TOKEN, "--stage", "enriched", "--limit", "1"], "tap-unredacted"),
    ] {
        let out = Command::new(&bin).args(["tap", "--addr", &stack.collector_admin]).args(&args).env_remove("SENTINEL_TAP_TOKEN").output()?;
        assert_eq!(out.status.code(), Some(1), "{args:?} was served");
        let err = String::from_utf8(out.stderr)?;
        assert!(err.contains(why), "{args:?}: {err}");
    }
    Ok(())
}
