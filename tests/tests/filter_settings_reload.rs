//! The proxy reads its telemetry settings from the agent's KDL file and applies a change to the
//! filter's part (here, sampling) live: no restart, no failed request, and the events follow the
//! new settings. A broken file changes nothing.

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::time::Duration;

fn kdl(socket: &std::path::Path, sampling: &str) -> String {
    format!(
        "agent \"telemetry\" {{\n    transport \"unix_socket\" {{\n        path {:?}\n    }}\n    timeout-ms 10\n    filter {{\n        header-allow \"host\" \"user-agent\"\n    }}\n    sampling {{\n{sampling}\n    }}\n}}\n",
        socket.display().to_string()
    )
}

async fn wait_reloads(stack: &Stack, want: f64) -> anyhow::Result<()> {
    stack.wait_metric(true, "sentinel_filter_reloads_total{result=\"ok\"}", want, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_changes_live_from_the_config_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let socket = dir.path().join("telemetry.sock");
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.proxy_kdl = Some(kdl(&socket, "        rate 1.0"));
    let stack = Stack::start(paths, cfg).await?;

    let first = traffic::run(&stack.proxy_addr, 31, 400, 4, |_| {}).await;
    stack.settle(Duration::from_secs(10)).await?;
    let events = stack.events()?;
    assert_eq!(events.len() as u64, 400, "rate 1 keeps every request");
    assert!(events.iter().all(|e| e["http"]["request"]["header"].as_object().is_some_and(|h| h.keys().all(|k| k == "host" || k == "user-agent"))),
        "the allowlist from the file is applied");

    // Rate 0 with errors kept: from now on only 5xx become events.
    std::fs::write(dir.path().join("proxy.kdl"), kdl(&socket, "        rate 0\n        always-sample-errors #true"))?;
    wait_reloads(&stack, 1.0).await?;
    let second = traffic::run(&stack.proxy_addr, 32, 600, 4, |_| {}).await;
    stack.settle(Duration::from_secs(10)).await?;
    let after: Vec<serde_json::Value> = stack.events()?.into_iter().skip(400).collect();
    assert_eq!(after.len() as u64, second.server_errors, "only the 5xx are kept at rate 0");
    assert!(after.iter().all(|e| e["http"]["response"]["status_code"].as_u64().unwrap_or(0) >= 500));
    assert!(after.iter().all(|e| e["sampling"]["reason"] == "error"));

    // A broken file is refused: still only errors, and no second reload.
    std::fs::write(dir.path().join("proxy.kdl"), kdl(&socket, "        rate 7"))?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stack.proxy_metrics().await?.get("sentinel_filter_reloads_total{result=\"ok\"}"), 1.0);
    for r in [&first, &second] {
        assert_eq!(r.failed, 0, "no request fails across the change");
    }
    Ok(())
}

fn body_kdl(socket: &std::path::Path, capture: u32) -> String {
    format!(
        "agent \"telemetry\" {{\n    transport \"unix_socket\" {{ path {:?}; }}\n    events \"request_headers\" \"response_headers\" \"request_body\" \"response_body\"\n    filter {{ body-capture-bytes {capture}; }}\n}}\n",
        socket.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_capture_changes_live_in_the_proxy_and_the_filter() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let socket = dir.path().join("telemetry.sock");
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.proxy_kdl = Some(body_kdl(&socket, 0));
    let stack = Stack::start(paths, cfg).await?;
    let first = traffic::run(&stack.proxy_addr, 33, 200, 4, |_| {}).await;
    stack.settle(Duration::from_secs(10)).await?;
    assert!(stack.events()?.iter().all(|e| e["http"]["response"]["body"].get("content").is_none()), "capture is off");

    // 8 bytes a direction from now on: the proxy must buffer them for the filter to keep them.
    std::fs::write(dir.path().join("proxy.kdl"), body_kdl(&socket, 8))?;
    wait_reloads(&stack, 1.0).await?;
    let second = traffic::run(&stack.proxy_addr, 34, 200, 4, |_| {}).await;
    stack.settle(Duration::from_secs(10)).await?;
    let after: Vec<serde_json::Value> = stack.events()?.into_iter().skip(200).collect();
    assert_eq!(after.len(), 200);
    let with_body: Vec<&serde_json::Value> = after.iter().filter(|e| e["http"]["response"]["body"]["size"].as_u64().unwrap_or(0) > 0).collect();
    assert!(!with_body.is_empty());
    for e in with_body {
        let body = &e["http"]["response"]["body"];
        let content = body["content"].as_str().unwrap_or_else(|| panic!("no captured body: {e}"));
        assert!(!content.is_empty() && content.len() <= 8, "{content:?}");
        assert_eq!(body["truncated"].as_bool().unwrap_or(false), body["size"].as_u64().unwrap_or(0) > 8, "{e}");
    }
    assert_eq!(first.failed + second.failed, 0);
    Ok(())
}
