//! Both `/metrics` endpoints during an end-to-end run: every counter equals what the test sent,
//! what crossed the socket and what was written, and nothing is dropped or refused.

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_what_was_sent_received_and_written() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let stack = Stack::start(paths.clone(), StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"))).await?;
    let n = 1500;
    let report = traffic::run(&stack.proxy_addr, 51, n, 8, |_| {}).await;
    assert_eq!(report.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    let written = stack.events()?.len() as f64;
    let (p, c) = (stack.proxy_metrics().await?, stack.collector_metrics().await?);
    let n = n as f64;

    assert_eq!(p.get("sentinel_filter_calls_total"), n);
    assert_eq!(p.get("sentinel_filter_outcomes_total{outcome=\"emitted\"}"), n);
    assert_eq!(p.sum("sentinel_filter_faults_total"), 0.0);
    assert_eq!(p.get("sentinel_channel_sent_frames_total"), n);
    assert_eq!(p.sum("sentinel_channel_dropped_total"), 0.0);
    assert_eq!(p.get("sentinel_channel_queue_frames"), 0.0);
    assert_eq!(p.get("sentinel_channel_connected"), 1.0);
    assert_eq!(p.get("sentinel_filter_info{version=\"0.1.0\"}"), 1.0);

    assert_eq!(c.get("sentinel_collector_frames_received_total"), n);
    assert_eq!(c.get("sentinel_collector_events_received_total"), n);
    assert!(c.get("sentinel_collector_received_bytes_total") > p.get("sentinel_channel_sent_bytes_total") + 5.0, "event frames, the hello and counter frames");
    assert_eq!(c.get("sentinel_collector_events_written_total{sink=\"file\"}"), written);
    assert_eq!(written, n);
    assert_eq!(c.sum("sentinel_collector_malformed_total"), 0.0);
    assert_eq!(c.sum("sentinel_collector_events_dropped_total"), 0.0);
    assert!(c.get("sentinel_collector_sink_batch_seconds_count{sink=\"file\"}") >= 1.0);
    assert_eq!(
        c.get("sentinel_collector_sink_batch_seconds_bucket{sink=\"file\",le=\"+Inf\"}"),
        c.get("sentinel_collector_sink_batch_seconds_count{sink=\"file\"}")
    );

    // The proxy's counters also reach the collector (every 5 s), labelled with the proxy's name.
    let c = stack.wait_until(false, "the proxy's call count reaching the collector", Duration::from_secs(12), |c| c.sum("sentinel_filter_calls_total") == n).await?;
    assert_eq!(c.sum("sentinel_filter_calls_total"), n, "{:?}", c.0);
    let emitted: f64 = c.0.iter().filter(|(k, _)| k.starts_with("sentinel_filter_outcomes_total{") && k.contains("outcome=\"emitted\"")).map(|(_, v)| v).sum();
    assert_eq!(emitted, n, "the same families as the proxy serves, with a proxy label");
    assert_eq!(c.sum("sentinel_channel_dropped_total"), 0.0);
    assert!(c.0.keys().any(|k| k.starts_with("sentinel_filter_info{proxy=\"sentinel-proxy-") && k.contains("version=\"0.1.0\"")), "{:?}", c.0);
    assert!(c.get("sentinel_collector_stats_frames_total") >= 1.0);

    // Every series the shipped dashboard queries is one these components serve.
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana-dashboard.json"))?;
    let _: serde_json::Value = serde_json::from_str(&dashboard)?;
    let served = |family: &str| [&p, &c].iter().any(|m| m.0.keys().any(|k| k == family || k.starts_with(&format!("{family}{{"))));
    let mut queried = 0;
    for (i, _) in dashboard.match_indices("sentinel_") {
        let name: String = dashboard[i..].chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_').collect();
        if name == "sentinel_telemetry" {
            continue;
        }
        assert!(served(&name), "the dashboard queries {name}, which nothing serves");
        queried += 1;
    }
    assert!(queried >= 20, "the dashboard lost its queries");
    Ok(())
}
