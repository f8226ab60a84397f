//! Requests through the real proxy and filter become exactly the right events in the output.

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic::{self, plan};
use std::collections::BTreeMap;
use std::time::Duration;

const SEED: u64 = 11;

fn planned_key(i: u64) -> (String, String, u64) {
    let p = plan(SEED, i);
    let (path, query) = match p.path.split_once('?') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (p.path.clone(), String::new()),
    };
    (p.method.to_string(), format!("{path}?{query}"), p.expect_status as u64)
}

fn event_key(e: &serde_json::Value) -> (String, String, u64) {
    (
        e["http"]["request"]["method"].as_str().unwrap_or("").to_string(),
        format!("{}?{}", e["url"]["path"].as_str().unwrap_or(""), e["url"]["query"].as_str().unwrap_or("")),
        e["http"]["response"]["status_code"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_becomes_one_event_with_its_fields() -> anyhow::Result<()> {
    // Redaction on, sampling keeping everything: every stage in one pass per frame.
    let staged = every_request_one_event(None).await?;
    assert!(staged.get("sentinel_collector_stage_seconds_count{stage=\"one_pass\"}") > 0.0);
    assert_eq!(staged.get("sentinel_collector_stage_seconds_count{stage=\"decode\"}"), 0.0);
    assert_eq!(staged.get("sentinel_collector_stage_seconds_count{stage=\"forward\"}"), 0.0);
    Ok(())
}

/// A collector that only forwards (no stage needs the decoded event) writes its lines in one
/// pass from the frames: the same events, every field in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_collector_writes_the_same_events() -> anyhow::Result<()> {
    let forward = every_request_one_event(Some("redaction #false")).await?;
    assert!(forward.get("sentinel_collector_stage_seconds_count{stage=\"forward\"}") > 0.0);
    assert_eq!(forward.get("sentinel_collector_stage_seconds_count{stage=\"decode\"}"), 0.0, "every frame took the one pass");
    Ok(())
}

/// Runs the demo's traffic through the stack (with `collector_blocks` added to the collector's
/// config) and checks every event; returns the collector's metrics from before it stopped.
async fn every_request_one_event(collector_blocks: Option<&str>) -> anyhow::Result<sentinel_demo::metrics::Samples> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let mut config = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    config.collector_blocks = collector_blocks.map(str::to_string);
    let stack = Stack::start(paths.clone(), config).await?;
    let n = 600;
    let report = traffic::run(&stack.proxy_addr, SEED, n, 8, |_| {}).await;
    assert_eq!(report.failed, 0, "every request must succeed");
    stack.settle(Duration::from_secs(10)).await?;
    let events = stack.events()?;
    let m = stack.proxy_metrics().await?;
    assert_eq!(events.len() as u64, n, "exactly one event per request; proxy counters: {:?}", m.0);

    // The same multiset of (method, path?query, status) as was sent.
    let mut want: BTreeMap<_, i64> = BTreeMap::new();
    for i in 0..n {
        *want.entry(planned_key(i)).or_default() += 1;
    }
    for e in &events {
        *want.entry(event_key(e)).or_default() -= 1;
    }
    want.retain(|_, v| *v != 0);
    assert!(want.is_empty(), "events differ from requests: {want:?}");

    let mut ids = std::collections::HashSet::new();
    for e in &events {
        let id = e["event"]["id"].as_str().unwrap();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "request id {id}");
        assert!(ids.insert(id.to_string()), "duplicate id {id}");
        let h = &e["http"]["request"]["header"];
        assert!(h["user-agent"].is_string() && h["x-forwarded-for"].is_string() && h["accept"].is_string(), "{e}");
        assert!(h.get("x-internal-trace").is_none(), "non-allowlisted header leaked: {e}");
        assert!(e["http"]["response"]["header"].get("set-cookie").is_none(), "{e}");
        assert_eq!(e["client"]["address"], "127.0.0.1");
        assert!(e["client"]["port"].as_u64().unwrap() > 0);
        assert_eq!(e["filter"]["version"], "0.1.0");
        assert_eq!(e["schema_version"], sentinel_wire::SCHEMA_VERSION);
        assert_eq!(e["url"]["domain"], "127.0.0.1");
        assert_eq!(e["network"]["protocol"]["version"], "1.1");
        let total = e["timing"]["total_ms"].as_f64().unwrap();
        let ttfb = e["timing"]["ttfb_ms"].as_f64().unwrap();
        assert!(total > 0.0 && ttfb > 0.0 && ttfb <= total + 0.001, "timings {e}");
        assert!(e["event"]["end_ns"].as_u64() > e["event"]["start_ns"].as_u64());
        assert_eq!(e["upstream"]["attempts"], 1);
        assert_eq!(e["upstream"]["status_code"], e["http"]["response"]["status_code"]);
        assert_eq!(e["sampling"]["rate"], 1.0);
        assert!(e["collector"]["host"].is_string());
    }
    let metrics = stack.collector_metrics().await?;
    let summary = stack.shutdown().await?;
    assert_eq!(summary["events_written"], n);
    assert_eq!(summary["malformed"], 0);
    Ok(metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_sampling_keeps_its_fraction_and_every_server_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.proxy_args = vec!["--sample-rate".into(), "0.25".into()];
    let stack = Stack::start(paths, cfg).await?;
    let n = 4000;
    let report = traffic::run(&stack.proxy_addr, SEED, n, 8, |_| {}).await;
    assert_eq!(report.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    let events = stack.events()?;

    let sent_5xx = (0..n).filter(|i| plan(SEED, *i).expect_status >= 500).count();
    let status = |e: &serde_json::Value| e["http"]["response"]["status_code"].as_u64().unwrap_or(0);
    let kept_5xx: Vec<_> = events.iter().filter(|e| status(e) >= 500).collect();
    assert_eq!(kept_5xx.len(), sent_5xx, "every 5xx is kept");
    assert!(kept_5xx.iter().all(|e| e["sampling"]["reason"] == "error" && e["sampling"]["rate"] == 1.0));

    let others = n as usize - sent_5xx;
    let kept = events.iter().filter(|e| status(e) < 500).collect::<Vec<_>>();
    let frac = kept.len() as f64 / others as f64;
    assert!((frac - 0.25).abs() < 0.04, "kept {frac:.3} of non-errors at rate 0.25");
    assert!(kept.iter().all(|e| e["sampling"]["rate"] == 4.0 && e["sampling"]["reason"] == "head_rate"));
    // Re-weighting by sampling.rate gives back the request count.
    let weighted: f64 = events.iter().map(|e| e["sampling"]["rate"].as_f64().unwrap()).sum();
    assert!((weighted / n as f64 - 1.0).abs() < 0.15, "re-weighted {weighted} vs {n}");
    stack.shutdown().await?;
    Ok(())
}
