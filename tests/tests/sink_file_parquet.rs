//! The file sink in Parquet: events through the real proxy and collector land as rows of
//! complete, rotated Parquet files, read back with a Parquet reader, field for field the same as
//! the NDJSON sink running beside it; and a collector killed while a file is half written
//! leaves no broken file and loses no event.

use parquet::file::reader::{FileReader, SerializedFileReader};
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// A second file sink, in Parquet, rotating every second.
fn parquet_sink(dir: &Path) -> String {
    format!("    sink \"file\" id=\"columns\" {{\n        path {:?}\n        format \"parquet\"\n        rotate-secs 1\n    }}\n", dir.display().to_string())
}

/// Every row of every finished Parquet file in `dir`, as JSON objects keyed by column.
fn rows(dir: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !name.ends_with(".parquet") {
            continue;
        }
        let reader = SerializedFileReader::new(std::fs::File::open(&path)?).map_err(|e| anyhow::anyhow!("{name} is not a complete Parquet file: {e}"))?;
        for row in reader.get_row_iter(None)? {
            out.push(row?.to_json_value());
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_rows_of_rotated_parquet_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let columns = dir.path().join("columns");
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.collector_blocks = Some(parquet_sink(&columns));
    let stack = Stack::start(paths, cfg).await?;
    let report = traffic::run(&stack.proxy_addr, 41, 3000, 4, |_| {}).await;
    stack.settle(Duration::from_secs(60)).await?;
    assert_eq!(report.failed, 0);

    let rows = rows(&columns)?;
    assert_eq!(rows.len() as u64, report.sent, "one row per request");
    let by_id: HashMap<&str, &serde_json::Value> = rows.iter().map(|r| (r["event_id"].as_str().unwrap_or_default(), r)).collect();
    assert_eq!(by_id.len(), rows.len(), "no event twice");
    // The same events as the NDJSON sink beside it, field for field.
    let events = stack.events()?;
    assert_eq!(events.len(), rows.len());
    for e in &events {
        let id = e["event"]["id"].as_str().unwrap_or_default();
        let r = by_id.get(id).ok_or_else(|| anyhow::anyhow!("event {id} has no row"))?;
        assert_eq!(r["http_request_method"], e["http"]["request"]["method"]);
        assert_eq!(r["url_path"], e["url"]["path"]);
        assert_eq!(r["http_response_status_code"], e["http"]["response"]["status_code"]);
        assert_eq!(r["client_address"], e["client"]["address"]);
        assert_eq!(r["timing_total_ms"], e["timing"]["total_ms"]);
        assert_eq!(r["sampling_reason"], e["sampling"]["reason"]);
        let names = r["http_request_header_names"].as_array().map(Vec::len).unwrap_or_default();
        assert_eq!(names, e["http"]["request"]["header"].as_object().map(|h| h.len()).unwrap_or_default(), "headers of {id}");
    }
    assert!(!columns.join("events.parquet.partial").exists(), "the last file was finished");
    let m = stack.collector_metrics().await?;
    assert!(m.get("sentinel_collector_files_rotated_total{sink=\"columns\"}") >= 1.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_collector_leaves_no_broken_parquet_file_and_loses_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let columns = dir.path().join("columns");
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.collector_blocks = Some(parquet_sink(&columns));
    let mut stack = Stack::start(paths, cfg).await?;

    let addr = stack.proxy_addr.clone();
    let load = tokio::spawn(async move { traffic::run(&addr, 43, 6000, 4, |_| {}).await });
    stack.wait_metric(false, "sentinel_collector_buffer_events_total", 1500.0, Duration::from_secs(30)).await?;
    stack.kill_collector().await?;
    let partial = columns.join("events.parquet.partial");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.start_collector().await?;
    let report = load.await?;
    stack.settle(Duration::from_secs(60)).await?;
    assert_eq!(report.failed, 0);

    // Every file reads (a half-written one was removed, not renamed), every request is a row.
    let rows = rows(&columns)?;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for r in &rows {
        *seen.entry(r["event_id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    assert_eq!(seen.len() as u64, report.sent, "every request has its row after the crash");
    let duplicates = rows.len() - seen.len();
    assert!(duplicates * 4 < rows.len(), "{duplicates} duplicates of {} rows", rows.len());
    assert!(!partial.exists());
    eprintln!("parquet crash: {} requests, {} rows, {duplicates} duplicates", report.sent, rows.len());
    Ok(())
}
