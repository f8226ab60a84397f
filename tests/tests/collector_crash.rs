//! Accepted means durable: the collector is killed with SIGKILL in the middle of a load and
//! started again. The proxy resends what was not acknowledged, the log replays what the sink
//! had not delivered, and every request ends up in the output; duplicates carry the same
//! `event.id` and stay few. The log's segments are small, so the crash finds segments written
//! over reused files, and the restart recovers them.

use sentinel_demo::metrics::Samples;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_collector_loses_nothing_it_acknowledged() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    let buffer = dir.path().join("buffer").display().to_string();
    cfg.collector_blocks = Some(format!("    buffer {{\n        path {buffer:?}\n        segment-bytes 65536\n    }}\n"));
    let mut stack = Stack::start(paths, cfg).await?;

    let addr = stack.proxy_addr.clone();
    let load = tokio::spawn(async move { traffic::run(&addr, 11, 8000, 4, |_| {}).await });
    // Kill it once a good part of the load is logged, so acknowledged, unacknowledged and
    // undelivered events all exist at that moment. Acknowledgements come back within a
    // millisecond or two of a write, so a kill at a random moment often finds nothing in flight:
    // the collector hangs first (SIGSTOP) until the proxy holds frames it wrote and has no
    // acknowledgement for (written after the hang, or written before and not yet processed; the
    // proxy's sender may itself be stuck writing to the full socket), then dies.
    stack.wait_metric(false, "sentinel_collector_buffer_events_total", 1500.0, Duration::from_secs(30)).await?;
    // The sink recycles delivered segments a little behind the writes: wait for the first one
    // rather than expect it at that count (a fresh-clone run once had none yet).
    stack.wait_metric(false, "sentinel_collector_buffer_recycled_segments_total", 1.0, Duration::from_secs(10)).await?;
    let before = stack.collector_metrics().await?;
    assert!(before.get("sentinel_collector_buffer_recycled_segments_total") > 0.0, "64 KiB segments are written over delivered ones before the kill");
    // The logging rate just before the hang: the sink stores its position every 100 ms, so at
    // most that long of deliveries can be delivered again after the crash.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logged_in_100ms = stack.collector_metrics().await?.get("sentinel_collector_buffer_events_total") - before.get("sentinel_collector_buffer_events_total");
    stack.freeze_collector()?;
    // Long enough for the proxy to read acknowledgements written before the hang.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let unacknowledged = |p: &Samples| p.get("sentinel_channel_sent_frames_total") > p.get("sentinel_channel_acked_frames_total");
    stack.wait_until(true, "unacknowledged frames in the proxy while the collector hangs", Duration::from_secs(30), unacknowledged).await?;
    stack.kill_collector().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.start_collector().await?;
    let report = load.await?;
    stack.settle(Duration::from_secs(30)).await?;

    assert_eq!(report.failed, 0, "no request fails while the collector is down");
    let proxy = stack.proxy_metrics().await?;
    let after = stack.collector_metrics().await?;
    assert_eq!(after.get("sentinel_collector_buffer_corrupt_records_total"), 0.0, "what reused files held before is not read as corruption");
    assert_eq!(proxy.sum("sentinel_channel_dropped_total"), 0.0, "the 16 MiB queue held the outage: nothing dropped");
    assert!(proxy.get("sentinel_channel_resent_frames_total") > 0.0, "unacknowledged frames were sent again");

    let events = stack.events()?;
    let id = |e: &serde_json::Value| e["event"]["id"].as_str().unwrap_or_default().to_string();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for e in &events {
        *seen.entry(id(e)).or_default() += 1;
    }
    assert_eq!(seen.len() as u64, report.sent, "every request has its event after the crash");
    // A replay of everything would write the first events again: they were in the first log
    // segment, which was recycled before the kill (its records are gone), and acknowledged long
    // before it (the proxy does not resend them).
    for e in events.iter().take(20) {
        assert_eq!(seen[&id(e)], 1, "one of the first events written was written again after the crash");
    }
    let duplicates = events.len() - seen.len();
    // Duplicates come from frames in flight (unacknowledged, all of which the proxy resends) and
    // records delivered but not yet stored as delivered at the kill (at most 100 ms of
    // deliveries; twice that, for the rate's swing and a delivery batch): never a replay of
    // everything. A fixed quarter of the events failed about one run in six on a fast day,
    // when 100 ms held more events.
    let resent = proxy.get("sentinel_channel_resent_frames_total");
    let bound = resent + 2.0 * logged_in_100ms;
    eprintln!("crash: {} requests, {} events written, {duplicates} duplicates, {resent} resent by the proxy, {logged_in_100ms} logged in 100 ms before the hang, bound {bound}", report.sent, events.len());
    assert!((duplicates as f64) <= bound, "{duplicates} duplicates of {} events, more than {resent} resent + 2 x {logged_in_100ms} logged in 100 ms", events.len());
    Ok(())
}
