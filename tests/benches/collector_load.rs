//! The whole collector under load, as a daemon: the real `sentinel-collector` binary with the
//! demo's enrichment (DB-IP city, ASN ranges, uap-core, threat lists, a trusted proxy), redaction
//! with every detector, the write-ahead log synced per group (the default) and the NDJSON file
//! sink, fed pre-encoded event frames by one unix-socket client as fast as it can write. Prints
//! events/s until the file sink has written every event, and the collector's CPU per event
//! (all its threads: ingest, pipeline workers, log writer, sink), read from `/proc/<pid>/stat`.
//! One round is sent and written before measuring, so the run sees the daemon as it runs for
//! days: caches filled, and the log's first segments delivered and waiting for reuse. Then the
//! same again with a collector that only forwards (no enrichment, no redaction).
//!
//! `make bench-collector-load` (needs `make build` and `make data`);
//! `SENTINEL_BENCH_BUFFER_PAGE_CACHE=keep` runs the log through the page cache. Not a criterion bench: one
//! run is one long measurement; run it a few times on a noisy machine.

use sentinel_demo::enrichment;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use sentinel_wire::event::*;
use sentinel_wire::frame::{write_frame, FrameKind, HELLO};
use std::borrow::Cow;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Distinct events made; the run sends them `ROUNDS` times.
const EVENTS: u64 = 100_000;
const ROUNDS: u64 = 4;

/// An event as the filter would shape request `i` of the demo's traffic mix (credentials masked,
/// the client behind the trusted loopback proxy).
fn event(i: u64) -> Event<'static> {
    let p = traffic::plan(11, i);
    let header = p
        .headers
        .iter()
        .map(|(n, v)| {
            let v = match *n {
                "authorization" => v.split_once(' ').map_or("***".to_string(), |(scheme, _)| format!("{scheme} ***")),
                "cookie" | "x-api-key" => "***".to_string(),
                _ => v.clone(),
            };
            (Cow::Borrowed(*n), Cow::Owned(v))
        })
        .collect();
    let (path, query) = match p.path.split_once('?') {
        Some((a, b)) => (a.to_string(), Some(b.to_string().into())),
        None => (p.path.clone(), None),
    };
    let start_ns = 1_795_000_000_000_000_000 + i * 1_000_000;
    Event {
        schema_version: SCHEMA_VERSION.into(),
        event: EventInfo { id: format!("0192f0c4-7c1a-7d5e-9f00-{i:012x}").into(), start_ns, end_ns: start_ns + 2_500_000 },
        http: Http {
            request: HttpRequest { method: p.method.into(), header: Headers(header), body: Body { size: p.body.as_ref().map_or(0, |b| b.len() as u64), ..Default::default() } },
            response: HttpResponse {
                status_code: p.expect_status,
                header: Headers(vec![("content-type".into(), "application/json".into())]),
                body: Body { size: 512, ..Default::default() },
            },
            route: None,
        },
        url: Url { scheme: Some("http".into()), domain: Some("shop.example".into()), path: path.into(), query },
        client: Client { address: "127.0.0.1".into(), port: 40_000 + (i % 20_000) as u16 },
        timing: Timing { ttfb_ms: Some(1.5), total_ms: 2.5, upstream_ms: Some(2.0), upstream_connect_ms: None },
        sampling: Sampling { rate: 1.0, reason: "all".into() },
        filter: FilterInfo { version: "load".into() },
        ..Default::default()
    }
}

/// User plus system CPU time of process `pid` so far.
fn cpu_of(pid: u32) -> anyhow::Result<Duration> {
    cpu_in(&format!("/proc/{pid}/stat"))
}

/// CPU time so far of each of `pid`'s threads, summed by thread name.
fn threads_of(pid: u32) -> anyhow::Result<std::collections::BTreeMap<String, Duration>> {
    let mut out = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        *out.entry(name).or_default() += cpu_in(&dir.join("stat").display().to_string()).unwrap_or_default();
    }
    Ok(out)
}

/// User plus system CPU time in a `/proc` stat file.
fn cpu_in(path: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// The collector configurations measured, one after the other in one run.
#[derive(Clone, Copy)]
enum Mode {
    /// The demo's enrichment and redaction with every detector.
    Full,
    /// Forwarding only: no enrichment, no redaction (each line written in one pass).
    Forward,
}

async fn run(mode: Mode) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    let mut blocks = match mode {
        Mode::Full => enrichment::demo_block(&enrichment::data_dir(&paths.bin_dir), dir.path())?,
        Mode::Forward => "redaction #false".to_string(),
    };
    // `SENTINEL_BENCH_BUFFER_PAGE_CACHE=keep` (or `bypass`, the default) compares the log's I/O
    // through the page cache with direct I/O.
    if let Ok(mode) = std::env::var("SENTINEL_BENCH_BUFFER_PAGE_CACHE") {
        blocks.push_str(&format!("\nbuffer {{\n    path {:?}\n    page-cache {mode:?}\n}}\n", dir.path().join("buffer").display().to_string()));
        println!("buffer page-cache {mode}");
    }
    cfg.collector_blocks = Some(blocks);
    println!("{}", match mode {
        Mode::Full => "full pipeline (demo enrichment, every redaction detector):",
        Mode::Forward => "forwarding only (no enrichment, no redaction):",
    });
    let stack = Stack::start(paths, cfg).await?;
    let pid = stack.collector_pid().ok_or_else(|| anyhow::anyhow!("no collector"))?;
    // Ready is announced before every data file's index is built: measure from idle.
    for _ in 0..100 {
        let before = cpu_of(pid)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if cpu_of(pid)? - before < Duration::from_millis(15) {
            break;
        }
    }

    let mut frames = Vec::new();
    let mut payload = Vec::new();
    for i in 0..EVENTS {
        payload.clear();
        event(i).encode_into(&mut payload)?;
        write_frame(&mut frames, FrameKind::Event, &payload);
    }
    let total = EVENTS * ROUNDS;
    println!("{EVENTS} distinct events, {} bytes of frames, sent {ROUNDS} times", frames.len());

    let mut sock = std::os::unix::net::UnixStream::connect(&stack.socket)?;
    let mut acks = sock.try_clone()?;
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(acks.read(&mut buf), Ok(n) if n > 0) {}
    });
    sock.write_all(&HELLO)?;
    sock.write_all(&frames)?;
    let written = "sentinel_collector_events_written_total{sink=\"file\"}";
    stack.wait_metric(false, written, EVENTS as f64, Duration::from_secs(300)).await?;
    let (cpu0, threads0, t0) = (cpu_of(pid)?, threads_of(pid)?, Instant::now());
    for _ in 0..ROUNDS {
        sock.write_all(&frames)?;
    }
    let sent = t0.elapsed();
    stack.wait_metric(false, written, (total + EVENTS) as f64, Duration::from_secs(300)).await?;
    let (cpu, wall) = (cpu_of(pid)? - cpu0, t0.elapsed());
    let by_thread: Vec<String> = threads_of(pid)?
        .into_iter()
        .map(|(name, t)| (name.clone(), t.saturating_sub(threads0.get(&name).copied().unwrap_or_default())))
        .filter(|(_, t)| !t.is_zero())
        .map(|(name, t)| format!("{name} {:.2}", t.as_secs_f64() * 1e6 / total as f64))
        .collect();
    let m = stack.collector_metrics().await?;
    let per_event = cpu.as_secs_f64() * 1e6 / total as f64;
    println!(
        "written {total} events in {:.2} s (all sent after {:.2} s): {:.0} events/s; collector CPU {:.2} s, {per_event:.2} µs an event, {:.0} events per CPU-second",
        wall.as_secs_f64(),
        sent.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        1e6 / per_event
    );
    println!("µs an event by thread: {}", by_thread.join(", "));
    println!(
        "counts with the warm-up round: malformed {}, redacted {}, geo found {}, log segments started in a reused file {}",
        m.get("sentinel_collector_malformed_total{reason=\"bad_event\"}"),
        m.get("sentinel_collector_events_redacted_total"),
        m.get("sentinel_collector_enrich_lookups_total{enricher=\"geo\",result=\"hit\"}"),
        m.get("sentinel_collector_buffer_recycled_segments_total")
    );
    // Both directions, for every handle of the socket: the ack reader's read ends.
    sock.shutdown(std::net::Shutdown::Both)?;
    let _ = reader.join();
    stack.shutdown().await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument that is not this bench's name skips it.
    if std::env::args().skip(1).any(|a| !a.starts_with("--") && !"collector_load".contains(a.as_str())) {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(Mode::Full))?;
    runtime.block_on(run(Mode::Forward))
}
