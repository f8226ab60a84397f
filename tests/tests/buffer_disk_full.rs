//! The write-ahead log on a disk that fills up: a small tmpfs made by the test holds the log
//! while the only other sink is down. Appends fail (ENOSPC), nothing unwritten is acknowledged
//! (the proxy drops with a count once its queue is full), the collector stays up, and once the
//! sink is back and frees space every acknowledged event is delivered, each once. Needs root
//! for `mount`; elsewhere it says so and does nothing.

use sentinel_demo::receiver::Receiver;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size` at `at`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).status().ok()?.success();
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn ids(events: &[serde_json::Value]) -> (usize, usize) {
    let all: Vec<&str> = events.iter().filter_map(|e| e["event"]["id"].as_str()).collect();
    (all.len(), all.iter().collect::<HashSet<_>>().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_acknowledged_event_and_recovers_when_space_returns() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let buffer = dir.path().join("buffer");
    let Some(_disk) = Tmpfs::mount(&buffer, "6m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return Ok(());
    };
    let receiver = Receiver::start(None).await?;
    receiver.stop();
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    // The log's cap is far above the disk: the disk, not the policy, is what runs out.
    cfg.collector_blocks = Some(format!(
        "    buffer {{\n        path {:?}\n        max-bytes {}\n        segment-bytes {}\n    }}\n    sink \"http\" {{\n        url {:?}\n        batch-size 500\n        flush-interval-ms 50\n        retry-initial-ms 50\n        retry-max-ms 200\n        circuit-breaker-cooldown-ms 200\n    }}\n",
        buffer.display().to_string(),
        256u64 << 20,
        512u64 << 10,
        receiver.url()
    ));
    cfg.proxy_args = vec!["--queue-bytes".into(), (2 << 20).to_string()];
    let stack = Stack::start(paths, cfg).await?;

    // About 12 MB of events for a 6 MB disk.
    let report = traffic::run(&stack.proxy_addr, 131, 12_000, 4, |_| {}).await;
    assert_eq!(report.failed, 0, "a full disk never fails a request");
    let m = stack
        .wait_until(false, "appends failing on the full disk", Duration::from_secs(30), |m| m.get("sentinel_collector_buffer_write_errors_total") > 0.0)
        .await?;
    assert!(m.get("sentinel_collector_buffer_write_errors_total") > 0.0);
    let proxy = stack.proxy_metrics().await?;
    assert!(proxy.get("sentinel_channel_dropped_total{reason=\"queue_full\"}") > 0.0, "unacknowledged, the proxy drops (counted)");

    // Space returns when the sink drains the log.
    receiver.restart().await?;
    if let Err(e) = stack.settle(Duration::from_secs(90)).await {
        let c = stack.collector_metrics().await?;
        let p = stack.proxy_metrics().await?;
        let pick = |m: &sentinel_demo::metrics::Samples| m.0.iter().filter(|(k, _)| k.contains("buffer") || k.contains("lag") || k.contains("written") || k.contains("queue") || k.contains("received") || k.contains("acked") || k.contains("sent")).map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join("\n");
        let log = std::fs::read_to_string(dir.path().join("collector.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        anyhow::bail!("{e}\ncollector:\n{}\nproxy:\n{}\nlog:\n{}", pick(&c), pick(&p), tail.join("\n"));
    }
    let proxy = stack.proxy_metrics().await?;
    let dropped = proxy.sum("sentinel_channel_dropped_total") as u64;
    let acked = proxy.get("sentinel_channel_acked_frames_total") as u64;
    let m = stack.collector_metrics().await?;
    assert_eq!(m.get("sentinel_collector_events_dropped_total{sink=\"http\"}"), 0.0);
    let (file_lines, file_unique) = ids(&stack.events()?);
    let (_, http_unique) = ids(&receiver.events());
    assert_eq!(file_lines, file_unique, "no event twice in the file");
    assert_eq!(file_unique as u64 + dropped, report.sent, "every request is in the file or a counted drop at the proxy");
    assert_eq!(http_unique, file_unique, "and the sink that was down has every one of them");
    assert!(acked >= file_unique as u64, "everything written was acknowledged ({acked} acknowledged)");
    Ok(())
}
