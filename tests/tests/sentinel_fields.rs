//! The reference proxy reports the decisions it really makes: with `--deny-path /admin`, a request
//! under /admin is answered 403 by the proxy and its event says `sentinel.decision` "block", the
//! rule that matched, risk 1 and the policy's own verdict and time; every other request says
//! "allow" with risk 0.

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic::get_once;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_of_the_proxy_reach_the_events() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let mut config = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    config.proxy_args = vec!["--deny-path".into(), "/admin".into()];
    let stack = Stack::start(paths, config).await?;
    for i in 0..10 {
        assert_eq!(get_once(&stack.proxy_addr, &format!("/admin/users/{i}"), &[]).await?, 403);
        assert_eq!(get_once(&stack.proxy_addr, &format!("/api/users/{i}"), &[]).await?, 200);
    }
    stack.settle(Duration::from_secs(10)).await?;
    let events = stack.events()?;
    assert_eq!(events.len(), 20);
    for e in &events {
        let s = &e["sentinel"];
        let agent = &s["agents"][0];
        assert_eq!(agent["name"], "path-policy", "{e}");
        assert!(agent["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
        if e["url"]["path"].as_str().unwrap_or("").starts_with("/admin") {
            assert_eq!(e["http"]["response"]["status_code"], 403);
            assert_eq!((s["decision"].as_str(), s["risk_score"].as_f64()), (Some("block"), Some(1.0)));
            assert_eq!(s["rules"], serde_json::json!(["deny-path:/admin"]));
            assert_eq!(agent["verdict"], "block");
            assert!(e.get("upstream").is_none() || e["upstream"]["attempts"] == 0, "a blocked request never reaches the upstream: {e}");
        } else {
            assert_eq!(e["http"]["response"]["status_code"], 200);
            assert_eq!((s["decision"].as_str(), s["risk_score"].as_f64()), (Some("allow"), Some(0.0)));
            assert!(s.get("rules").is_none());
            assert_eq!(agent["verdict"], "allow");
        }
    }
    Ok(())
}
