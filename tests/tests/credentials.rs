//! Credentials never leave the proxy: not in the bytes on the collector's socket, not in the
//! output. A relay between proxy and collector records every byte the proxy sends (and passes
//! the collector's acknowledgements back).

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic::{self, SECRET_MARKERS};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_value_reaches_the_collector_or_the_output() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let relay_path = dir.path().join("relay.sock");
    let collector_path = dir.path().join("telemetry.sock");
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let relay = UnixListener::bind(&relay_path)?;
    let relay_seen = seen.clone();
    let relay_task = tokio::spawn(async move {
        loop {
            let Ok((from_proxy, _)) = relay.accept().await else { return };
            let Ok(to_collector) = UnixStream::connect(&collector_path).await else { continue };
            let (mut acks_in, mut to_collector) = to_collector.into_split();
            let (mut from_proxy, mut acks_out) = from_proxy.into_split();
            // The collector's acknowledgements go back untouched.
            tokio::spawn(async move { tokio::io::copy(&mut acks_in, &mut acks_out).await });
            let seen = relay_seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = from_proxy.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to_collector.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    cfg.proxy_collector_socket = Some(relay_path);
    // Ask for the credential headers explicitly: masking must hold even when they are captured.
    cfg.proxy_args = vec!["--header-allow".into(), "authorization,cookie,x-api-key,user-agent,set-cookie".into()];
    let stack = Stack::start(paths, cfg).await?;
    let report = traffic::run(&stack.proxy_addr, 5, 1500, 8, |_| {}).await;
    assert_eq!(report.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    let events = stack.events()?;
    let m = stack.proxy_metrics().await?;
    let c = stack.collector_metrics().await?;
    assert_eq!(events.len(), 1500, "proxy {:?}\ncollector {:?}", m.0, c.0);

    let wire = seen.lock().unwrap().clone();
    let output = std::fs::read(stack.output_file())?;
    // The relay and the output did carry the (masked) headers: this test can see them.
    let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(&wire, "Bearer ***") && contains(&output, "Bearer ***"));
    assert!(contains(&output, "Basic ***"));
    for marker in SECRET_MARKERS.iter().chain(["UPSTREAM-SECRET-COOKIE"].iter()) {
        assert!(!contains(&wire, marker), "{marker} crossed the collector socket");
        assert!(!contains(&output, marker), "{marker} reached the output");
    }
    assert!(events.iter().any(|e| e["http"]["request"]["header"]["cookie"] == "***"));
    assert!(events.iter().any(|e| e["http"]["request"]["header"]["x-api-key"] == "***"));
    assert!(events.iter().any(|e| e["http"]["response"]["header"]["set-cookie"] == "***"));
    relay_task.abort();
    Ok(())
}
