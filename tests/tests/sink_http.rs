//! The HTTP sink against a real HTTP server on loopback: every event arrives once, signed and
//! intact; an outage of the endpoint delays delivery but loses nothing and never pauses the
//! file sink beside it; 429 is retried after its Retry-After and a 400 drops that batch, counted.

use sentinel_demo::receiver::Receiver;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const KEY: &str = "an-hmac-key-shared-with-the-receiver";

fn http_block(r: &Receiver, extra: &str) -> String {
    format!(
        "    sink \"http\" {{\n        url {:?}\n        hmac-key {KEY:?}\n        batch-size 500\n        flush-interval-ms 100\n        retry-initial-ms 50\n        retry-max-ms 400\n{extra}    }}\n",
        r.url()
    )
}

async fn stack_with(dir: &std::path::Path, blocks: String) -> anyhow::Result<Stack> {
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir, paths.filter("sentinel_filter.wasm"));
    cfg.collector_blocks = Some(blocks);
    Stack::start(paths, cfg).await
}

fn ids(events: &[serde_json::Value]) -> HashSet<String> {
    events.iter().filter_map(|e| e["event"]["id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_signed_and_intact() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let receiver = Receiver::start(Some(KEY)).await?;
    let stack = stack_with(dir.path(), http_block(&receiver, "")).await?;
    let report = traffic::run(&stack.proxy_addr, 21, 2000, 4, |_| {}).await;
    stack.settle(Duration::from_secs(20)).await?;
    assert_eq!(report.failed, 0);
    let got = receiver.events();
    assert_eq!(got.len() as u64, report.sent, "one line per request, none twice");
    assert_eq!(receiver.bad_signatures(), 0, "every body carried a valid HMAC-SHA256 signature");
    assert!(receiver.accepted_requests() >= 4, "batches of at most 500 events: {} requests", receiver.accepted_requests());
    // The same events as the file sink beside it, field for field.
    let mut file = stack.events()?;
    let mut http = got;
    let key = |e: &serde_json::Value| e["event"]["id"].as_str().unwrap_or_default().to_string();
    file.sort_by_key(key);
    http.sort_by_key(key);
    assert_eq!(file, http);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_never_pauses_the_other_sink() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let receiver = Receiver::start(Some(KEY)).await?;
    let extra = "        circuit-breaker-failures 3\n        circuit-breaker-cooldown-ms 300\n";
    let stack = stack_with(dir.path(), http_block(&receiver, extra)).await?;
    let before = traffic::run(&stack.proxy_addr, 31, 500, 4, |_| {}).await;
    stack.settle(Duration::from_secs(20)).await?;

    receiver.stop();
    let outage_start = Instant::now();
    let during = traffic::run_until(&stack.proxy_addr, 32, 3000, Some(Instant::now() + Duration::from_secs(3)), 4, |_| {}).await;
    // While the endpoint is down for many flush intervals the file sink keeps writing.
    let written = |m: &sentinel_demo::metrics::Samples, sink: &str| m.get(&format!("sentinel_collector_events_written_total{{sink=\"{sink}\"}}"));
    let m = stack
        .wait_until(false, "the file sink writing everything while the endpoint is down", Duration::from_secs(10), |m| {
            written(m, "file") as u64 == before.sent + during.sent
        })
        .await?;
    assert_eq!(written(&m, "http") as u64, before.sent, "nothing reached the stopped endpoint");
    assert!(m.get("sentinel_collector_sink_lag_records{sink=\"http\"}") > 0.0);
    // Three failed attempts in a row open the circuit; the traffic above can be over in 150 ms,
    // before the third, so this is waited for rather than read at that instant.
    let m = stack
        .wait_until(false, "the HTTP sink's circuit opening", Duration::from_secs(5), |m| {
            m.get("sentinel_collector_sink_circuit_state{sink=\"http\"}") >= 1.0
        })
        .await?;
    assert!(m.get("sentinel_collector_sink_retries_total{sink=\"http\"}") > 0.0, "failures were retried");
    assert_eq!(written(&m, "http") as u64, before.sent, "nothing reached the stopped endpoint");
    // Keep the endpoint down for many flush intervals (and several circuit cool-downs).
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(outage_start.elapsed())).await;
    receiver.restart().await?;
    stack.settle(Duration::from_secs(30)).await?;

    let sent = before.sent + during.sent;
    let got = receiver.events();
    assert_eq!(ids(&got).len() as u64, sent, "every event arrived after the outage");
    assert!(got.len() as u64 - sent <= 500, "duplicates only within one batch: {} extra", got.len() as u64 - sent);
    assert_eq!(ids(&stack.events()?).len() as u64, sent);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_honoured_and_a_refused_batch_is_counted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let receiver = Receiver::start(Some(KEY)).await?;
    receiver.script(&[(429, Some(1)), (400, None)]);
    let stack = stack_with(dir.path(), http_block(&receiver, "")).await?;
    let report = traffic::run(&stack.proxy_addr, 41, 1500, 4, |_| {}).await;
    stack.settle(Duration::from_secs(20)).await?;

    let times = receiver.request_times();
    assert!(times.len() >= 3);
    assert!(times[1] - times[0] >= Duration::from_millis(990), "the retry waited for Retry-After: {:?}", times[1] - times[0]);
    let m = stack.collector_metrics().await?;
    assert_eq!(m.get("sentinel_collector_sink_rejected_batches_total{sink=\"http\"}"), 1.0);
    let dropped = m.get("sentinel_collector_events_dropped_total{sink=\"http\"}") as u64;
    assert!(dropped > 0);
    assert_eq!(receiver.events().len() as u64 + dropped, report.sent, "the refused batch is the only loss, and it is counted");
    Ok(())
}
