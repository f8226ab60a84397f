//! The ClickHouse sink against a real ClickHouse server (Debian's 18.16) on loopback: the
//! shipped DDL creates the table, every event becomes one row with its fields, read back with
//! SQL; the server going away and coming back loses nothing.

use sentinel_demo::servers::ClickHouse;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::time::Duration;

fn block(ch: &ClickHouse) -> String {
    format!(
        "    sink \"clickhouse\" {{\n        url {:?}\n        table \"events\"\n        create-table #true\n        batch-size 1000\n        flush-interval-ms 200\n        retry-initial-ms 100\n        retry-max-ms 500\n    }}\n",
        ch.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_becomes_one_row_with_its_fields() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let ch = ClickHouse::start(&paths, dir.path()).await?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.collector_blocks = Some(block(&ch));
    let stack = Stack::start(paths, cfg).await?;
    let report = traffic::run(&stack.proxy_addr, 81, 3000, 4, |_| {}).await;
    stack.settle(Duration::from_secs(30)).await?;
    assert_eq!(report.failed, 0);

    let counts = ch.query("SELECT count(), uniqExact(event_id) FROM events").await?;
    // On a mismatch, say whether the proxy made every event at all (a faulting filter call makes
    // none) and what the file sink got.
    let faults = stack.proxy_metrics().await?.sum("sentinel_filter_faults_total");
    let file = stack.events()?;
    assert_eq!(counts.trim(), format!("{}\t{}", report.sent, report.sent), "one row per request, none twice (filter faults {faults}, file sink {} events)", file.len());
    // Field for field against the file sink's copy of the same events.
    let e = file.iter().find(|e| e["http"]["response"]["status_code"] == 200).expect("a 200 event");
    let id = e["event"]["id"].as_str().unwrap_or_default();
    let row = ch
        .query(&format!(
            "SELECT http_request_method, url_path, http_response_status_code, client_address, event_start_ns, timing_total_ms, collector_host, schema_version FROM events WHERE event_id = '{id}' FORMAT JSONEachRow"
        ))
        .await?;
    let row: serde_json::Value = serde_json::from_str(row.trim())?;
    assert_eq!(row["http_request_method"], e["http"]["request"]["method"]);
    assert_eq!(row["url_path"], e["url"]["path"]);
    assert_eq!(row["http_response_status_code"], 200);
    assert_eq!(row["client_address"], e["client"]["address"]);
    assert_eq!(row["event_start_ns"].as_str().and_then(|s| s.parse::<u64>().ok()).or(row["event_start_ns"].as_u64()), e["event"]["start_ns"].as_u64());
    assert_eq!(row["timing_total_ms"].as_f64(), e["timing"]["total_ms"].as_f64());
    assert_eq!(row["collector_host"], e["collector"]["host"]);
    assert_eq!(row["schema_version"], e["schema_version"]);
    let statuses = ch.query("SELECT count() FROM events WHERE http_response_status_code >= 500").await?;
    let expected = file.iter().filter(|e| e["http"]["response"]["status_code"].as_u64().unwrap_or(0) >= 500).count();
    assert_eq!(statuses.trim(), expected.to_string());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_delays_rows_but_loses_none() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let ch = ClickHouse::start(&paths, dir.path()).await?;
    let relay = sentinel_demo::relay::TcpRelay::start(&ch.addr).await?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.collector_blocks = Some(block(&ch).replace(&ch.url(), &format!("http://{}", relay.addr)));
    let stack = Stack::start(paths, cfg).await?;
    let before = traffic::run(&stack.proxy_addr, 91, 500, 4, |_| {}).await;
    stack.settle(Duration::from_secs(30)).await?;
    relay.cut();
    let during = traffic::run(&stack.proxy_addr, 92, 2000, 4, |_| {}).await;
    stack.wait_metric(false, "sentinel_collector_write_errors_total{sink=\"clickhouse\"}", 2.0, Duration::from_secs(20)).await?;
    // The file sink goes on while ClickHouse is unreachable.
    let all = (before.sent + during.sent) as f64;
    stack.wait_metric(false, "sentinel_collector_events_written_total{sink=\"file\"}", all, Duration::from_secs(10)).await?;
    assert_eq!(stack.collector_metrics().await?.get("sentinel_collector_events_written_total{sink=\"clickhouse\"}") as u64, before.sent);
    relay.resume().await?;
    stack.settle(Duration::from_secs(60)).await?;
    let sent = before.sent + during.sent;
    let counts = ch.query("SELECT count(), uniqExact(event_id) FROM events").await?;
    let mut it = counts.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    let (rows, distinct) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    assert_eq!(distinct, sent, "every event has its row after the outage");
    assert!(rows - distinct <= 1000, "duplicates only within one batch: {} extra", rows - distinct);
    Ok(())
}
