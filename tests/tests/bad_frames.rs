//! Garbage, broken frames and oversized frames on the collector socket are counted and skipped,
//! and a well-behaved proxy on another connection keeps getting its events written.

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use sentinel_wire::event::{Event, EventInfo};
use sentinel_wire::frame::{write_frame, FrameKind, HELLO};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn event_frame(id: &str) -> Vec<u8> {
    let ev = Event { event: EventInfo { id: id.into(), start_ns: 1, end_ns: 2 }, ..Default::default() };
    let mut payload = Vec::new();
    ev.encode_into(&mut payload).unwrap();
    let mut f = Vec::new();
    write_frame(&mut f, FrameKind::Event, &payload);
    f
}

/// True when the collector closed the connection (read returns EOF or an error).
async fn closed_by_peer(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_counted_and_skipped_while_good_ones_flow() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let stack = Stack::start(paths.clone(), StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"))).await?;
    let addr = stack.proxy_addr.clone();
    let good = tokio::spawn(async move { traffic::run(&addr, 4, 2000, 4, |_| {}).await });

    // 1. Not our protocol at all: cut off.
    let mut s = UnixStream::connect(&stack.socket).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    assert!(closed_by_peer(&mut s).await);

    // 2. Oversized frame (2 MiB > 1 MiB limit), then a valid one: the big one is skipped.
    let mut s = UnixStream::connect(&stack.socket).await?;
    s.write_all(&HELLO).await?;
    let mut big = Vec::new();
    write_frame(&mut big, FrameKind::Event, &vec![0x90u8; 2 << 20]);
    s.write_all(&big).await?;
    s.write_all(&event_frame("after-oversized")).await?;

    // 3. A frame whose payload is not an event, then a valid one on the same connection.
    s.write_all(&{
        let mut f = Vec::new();
        write_frame(&mut f, FrameKind::Event, b"\xc1\xc1 not messagepack");
        f
    })
    .await?;
    s.write_all(&event_frame("after-bad-event")).await?;
    s.flush().await?;

    // 4. An unknown frame kind: the framing is lost, the peer is cut.
    let mut s2 = UnixStream::connect(&stack.socket).await?;
    s2.write_all(&HELLO).await?;
    s2.write_all(&[0, 0, 0, 3, 0x7f, 1, 2, 3]).await?;
    assert!(closed_by_peer(&mut s2).await);

    let report = good.await?;
    assert_eq!(report.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    let m = stack.collector_metrics().await?;
    assert_eq!(m.get("sentinel_collector_malformed_total{reason=\"bad_hello\"}"), 1.0);
    assert_eq!(m.get("sentinel_collector_malformed_total{reason=\"bad_event\"}"), 1.0);
    assert_eq!(m.get("sentinel_collector_malformed_total{reason=\"bad_frame\"}"), 1.0);
    assert_eq!(m.get("sentinel_collector_oversized_frames_total"), 1.0);

    let events = stack.events()?;
    let ids: Vec<&str> = events.iter().filter_map(|e| e["event"]["id"].as_str()).collect();
    assert!(ids.contains(&"after-oversized") && ids.contains(&"after-bad-event"));
    assert_eq!(events.len() as u64, report.sent + 2, "every good event written");
    drop(s);
    Ok(())
}
