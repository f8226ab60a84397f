//! What the host's benchmarks and tests share: a realistic exchange (a request with 20 headers)
//! and a collector stand-in that drains the channel's socket.
#![allow(dead_code)]

use sentinel_host::{Exchange, HeadWriter, Tag};
use sentinel_wire::frame::{self, FrameKind};
use std::io::{BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// A thread's time on its CPU and time spent waiting for one, from /proc (`schedstat`); zero for
/// a thread that is gone.
pub fn thread_times(tid: i32) -> (std::time::Duration, std::time::Duration) {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap_or_default();
    let mut f = stat.split_whitespace().map(|v| std::time::Duration::from_nanos(v.parse().unwrap_or(0)));
    (f.next().unwrap_or_default(), f.next().unwrap_or_default())
}

/// CPU time so far of each of this process's threads whose name starts with `name`, by id.
pub fn named_threads_cpu(name: &str) -> std::collections::HashMap<i32, std::time::Duration> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().starts_with(name))
        .filter_map(|task| task.file_name().to_str().and_then(|t| t.parse().ok()))
        .map(|tid| (tid, thread_times(tid).0))
        .collect()
}

/// CPU time the threads named `name` used since `before` (from [`named_threads_cpu`]). Only
/// threads alive at both moments count: another host's threads that ended meanwhile would make
/// a plain difference of sums go backwards.
pub fn named_threads_cpu_since(name: &str, before: &std::collections::HashMap<i32, std::time::Duration>) -> std::time::Duration {
    named_threads_cpu(name).into_iter().filter_map(|(tid, now)| before.get(&tid).map(|b| now.saturating_sub(*b))).sum()
}

/// A filter build from `make test-filters` (`sentinel_filter.wasm` is the production one).
pub fn filter_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/filters").join(name)
}

/// A collector stand-in: reads the frames, throws them away, and acknowledges every event frame
/// once read (as the collector does once they are durable), so the sender never backs up.
pub fn drain_socket(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("bench.sock");
    let listener = UnixListener::bind(&path).expect("bind bench socket");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || drain_and_ack(conn));
        }
    });
    path
}

fn drain_and_ack(conn: UnixStream) -> std::io::Result<()> {
    let mut acks = conn.try_clone()?;
    let mut r = BufReader::with_capacity(1 << 20, conn);
    let mut hello = [0u8; 5];
    r.read_exact(&mut hello)?;
    let (mut header, mut payload, mut events) = ([0u8; frame::HEADER_LEN], Vec::new(), 0u64);
    loop {
        r.read_exact(&mut header)?;
        let h = frame::read_header(&header).map_err(std::io::Error::other)?;
        payload.resize(h.len, 0);
        r.read_exact(&mut payload)?;
        if h.kind == FrameKind::Event {
            events += 1;
        }
        if r.buffer().is_empty() {
            acks.write_all(&frame::ack_frame(events))?;
        }
    }
}

pub const HEADERS: [(&str, &str); 20] = [
    ("host", "shop.example.com"),
    ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-language", "en-US,en;q=0.9"),
    ("accept-encoding", "gzip, deflate, br"),
    ("referer", "https://shop.example.com/cart"),
    ("cookie", "session=abcdef0123456789; theme=dark; ab=variant-b"),
    ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTYifQ.sig"),
    ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
    ("x-request-id", "f3b1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"),
    ("content-type", "application/json"),
    ("content-length", "512"),
    ("cache-control", "no-cache"),
    ("pragma", "no-cache"),
    ("sec-ch-ua", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\""),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Windows\""),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "cors"),
    ("dnt", "1"),
];

pub fn exchange(i: u64) -> Exchange {
    exchange_with(HeadWriter::new(), i)
}

/// The same request, its head written with `w` (e.g. [`sentinel_host::TelemetryHost::head_writer`],
/// as a proxy does).
pub fn exchange_with(mut w: HeadWriter, i: u64) -> Exchange {
    let mut id = *b"0192f0c1d2e3f4a5b6c7d8e9f0a1b200";
    let hex = b"0123456789abcdef";
    id[30] = hex[(i as usize >> 4) & 15];
    id[31] = hex[i as usize & 15];
    w.field(Tag::RequestId, &id)
        .field(Tag::Method, b"POST")
        .field(Tag::Scheme, b"https")
        .field(Tag::Authority, b"shop.example.com")
        .field(Tag::Path, b"/api/orders/12345")
        .field(Tag::Query, b"expand=items&currency=EUR")
        .field(Tag::Protocol, b"1.1")
        .field(Tag::ClientAddress, b"203.0.113.7")
        .field(Tag::UpstreamAddress, b"10.0.0.12:8080");
    for (n, v) in HEADERS {
        w.header(false, n.as_bytes(), v.as_bytes());
    }
    w.header(true, b"content-type", b"application/json").header(true, b"content-length", b"1024");
    Exchange {
        head: w.into_bytes(),
        start_ns: 1_795_000_000_000_000_000,
        end_ns: 1_795_000_000_002_500_000,
        status: 201,
        client_port: 51234,
        request_body_size: 512,
        response_body_size: 1024,
        ttfb_us: Some(1800),
        upstream_us: Some(2300),
        upstream_connect_us: None,
        upstream_attempts: 1,
        upstream_status: Some(201),
        risk_score: None,
        request_body: vec![],
        response_body: vec![],
    }
}
