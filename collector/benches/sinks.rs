//! What each sink sustains against its real server on this machine, and how old events are
//! when they arrive. A load run, not a criterion benchmark: every figure is seconds of I/O.
//!
//! 1. Drain: the log is filled with `EVENTS` enriched events (about 1 KB of NDJSON each) while
//!    the sink is not running; then the sink starts and is timed until its cursor reaches the end.
//!    Events/s = `EVENTS` / that time, every sink with its default batching except where the
//!    label says (S3 objects of 20,000 events; Parquet files of 8 MiB, the last one finished
//!    after 1 s; so that the drain measures the sink rather than a flush timer).
//! 2. Freshness: the whole path (proxy, filter, collector, every sink at once) under a steady
//!    `RATE` requests/s for `SECONDS`; each sink's `sentinel_collector_sink_delivery_seconds`
//!    (request end → the destination acknowledged it) gives p50 and p99.
//!
//! Run: `make bench-sinks` (builds the binaries and installs the servers first).

use sentinel_collector::metrics::Metrics;
use sentinel_collector::sink::Sinks;
use sentinel_collector::wal::{Payload, Wal, WalConfig};
use sentinel_demo::receiver::Receiver;
use sentinel_demo::servers::{ClickHouse, SeaweedFs, Tansu};
use sentinel_demo::metrics::quantile;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EVENTS: u64 = 100_000;
const RATE: u64 = 2_000;
const SECONDS: u64 = 20;

/// The servers every sink writes to (kept running for both phases).
struct Servers {
    kafka: Tansu,
    clickhouse: ClickHouse,
    s3: SeaweedFs,
    http: Receiver,
}

/// One enriched event as the log holds it.
fn event(i: u64, now_ns: u64) -> String {
    serde_json::json!({
        "schema_version": "1.1",
        "event": {"id": format!("{i:032x}"), "start_ns": now_ns - 4_000_000, "end_ns": now_ns},
        "http": {
            "request": {"method": "GET", "header": {"user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "accept": "application/json", "x-forwarded-for": "81.2.69.160", "authorization": "Bearer ***"}, "body": {"size": 0}},
            "response": {"status_code": if i.is_multiple_of(50) { 503 } else { 200 }, "header": {"content-type": "application/json", "cache-control": "no-store"}, "body": {"size": 1234}},
            "route": "/api/items/{id}"
        },
        "url": {"scheme": "https", "domain": "shop.example.com", "path": format!("/api/items/{}", i % 9973), "query": "page=2&sort=price"},
        "network": {"protocol": {"version": "1.1"}, "peer": {"address": "10.0.0.5"}},
        "client": {"address": "81.2.69.160", "port": 51234},
        "upstream": {"address": "10.0.1.20:8080", "attempts": 1, "status_code": 200},
        "timing": {"ttfb_ms": 3.2, "total_ms": 4.0, "upstream_ms": 3.1, "upstream_connect_ms": 0.3},
        "sentinel": {"decision": "allow", "risk_score": 0.1, "rules": ["rate-limit"], "agents": [{"name": "waf", "verdict": "allow", "duration_ms": 0.4}]},
        "geo": {"continent": {"code": "EU"}, "country": {"iso_code": "GB", "name": "United Kingdom"}, "locality": {"name": "Boxford"}, "timezone": "Europe/London", "location": {"lat": 51.75, "lon": -1.25}},
        "asn": {"number": 64512, "organization": "Example Broadband"},
        "device": {"type": "smartphone", "brand": "Apple", "model": "iPhone"},
        "user_agent": {"original": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)", "name": "Mobile Safari", "version": "17.4"},
        "os": {"name": "iOS", "version": "17.4"},
        "threat": {"known_bad": false, "tor_exit": false, "proxy": false, "hosting": false, "score": 0},
        "sampling": {"rate": 1.0, "reason": "rate"},
        "filter": {"version": "0.1.0"},
        "collector": {"host": "bench"}
    })
    .to_string()
}

/// The `sink` block of each measured sink (defaults but for what is stated).
fn sink_blocks(s: &Servers, files: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("file (NDJSON)", format!("sink \"file\" id=\"file\" {{\n path {:?}\n}}\n", files.join("ndjson").display().to_string())),
        ("file (Parquet, rotate-secs 10)", format!("sink \"file\" id=\"parquet\" {{\n path {:?}\n format \"parquet\"\n rotate-secs 10\n}}\n", files.join("parquet").display().to_string())),
        ("Kafka (Tansu)", format!("sink \"kafka\" id=\"kafka\" {{\n brokers {:?}\n topic \"events\"\n}}\n", s.kafka.addr)),
        ("ClickHouse 18.16", format!("sink \"clickhouse\" id=\"clickhouse\" {{\n url {:?}\n create-table #true\n}}\n", s.clickhouse.url())),
        ("S3 (SeaweedFS, gzip NDJSON, flush 10 s)", format!("sink \"s3\" id=\"s3\" {{\n bucket \"telemetry\"\n endpoint {:?}\n access-key-id \"test\"\n secret-access-key \"test-secret\"\n flush-interval-ms 10000\n}}\n", s.s3.endpoint)),
        ("S3 (SeaweedFS, Parquet, flush 10 s)", format!("sink \"s3\" id=\"s3-parquet\" {{\n bucket \"telemetry\"\n prefix \"pq\"\n endpoint {:?}\n format \"parquet\"\n access-key-id \"test\"\n secret-access-key \"test-secret\"\n flush-interval-ms 10000\n}}\n", s.s3.endpoint)),
        ("HTTP (loopback receiver)", format!("sink \"http\" id=\"http\" {{\n url {:?}\n}}\n", s.http.url())),
    ]
}

fn parse_sink(block: &str) -> anyhow::Result<sentinel_config::Sink> {
    let text = format!("agent \"telemetry\" {{\n{block}}}\n");
    let cfg = sentinel_config::parse("bench.kdl", &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.sinks.into_iter().next().ok_or_else(|| anyhow::anyhow!("no sink in {block}"))
}

/// Fills a fresh log, then times one sink draining it.
fn drain(block: &str, dir: &Path) -> anyhow::Result<f64> {
    let block = block.replace("flush-interval-ms 10000", "batch-size 20000").replace("rotate-secs 10", "rotate-bytes 8388608\n rotate-secs 1");
    let spec = parse_sink(&block)?;
    let metrics = Arc::new(Metrics::default());
    let (wal, mut writer) = Wal::open(WalConfig { max_bytes: 8 << 30, ..WalConfig::new(dir.join("buffer")) }, metrics.clone())?;
    drop(wal.attach(&spec.id)); // the cursor starts at the (empty) log's end: 0
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let stop = AtomicBool::new(false);
    let mut i = 0;
    while i < EVENTS {
        let mut lines = String::new();
        for _ in 0..100 {
            lines.push_str(&event(i, now));
            lines.push('\n');
            i += 1;
        }
        writer.append(std::iter::once(Payload::new(lines.as_bytes(), 100)), &stop).map_err(|e| anyhow::anyhow!("appending to the log: {e:?}"))?;
    }
    writer.sync();
    let id = spec.id.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let sinks = Sinks::start(wal.clone(), vec![spec], metrics).map_err(anyhow::Error::msg)?;
    while wal.lag(&id) > 0 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "sink {id} did not drain in 10 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = started.elapsed().as_secs_f64();
    drop(writer);
    rt.block_on(sinks.shutdown(Duration::from_secs(5)));
    Ok(EVENTS as f64 / secs)
}

async fn freshness(dir: &Path, blocks: &[(&'static str, String)]) -> anyhow::Result<Vec<(String, f64, f64, f64)>> {
    let paths = Paths::discover()?;
    let mut cfg = StackConfig::new(dir, paths.filter("sentinel_filter.wasm"));
    // The stack brings its own NDJSON file sink (`file`); the others are added.
    cfg.collector_blocks = Some(blocks.iter().filter(|(_, b)| !b.contains("id=\"file\"")).map(|(_, b)| b.clone()).collect());
    let stack = Stack::start(paths, cfg).await?;
    let tick = Duration::from_millis(100);
    let per_tick = RATE / 10;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(SECONDS) {
        let t = Instant::now();
        sentinel_demo::traffic::run(&stack.proxy_addr, 1000 + n, per_tick, 8, |_| {}).await;
        n += 1;
        tokio::time::sleep(tick.saturating_sub(t.elapsed())).await;
    }
    let offered = n * per_tick;
    let achieved = offered as f64 / started.elapsed().as_secs_f64();
    stack.settle(Duration::from_secs(120)).await?;
    let m = stack.collector_metrics().await?;
    let mut out = Vec::new();
    for (name, block) in blocks {
        let id = block.split("id=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("file");
        let b = m.buckets("sentinel_collector_sink_delivery_seconds", &format!("sink=\"{id}\""));
        out.push((name.to_string(), quantile(&b, 0.5), quantile(&b, 0.99), b.last().map_or(0.0, |x| x.1)));
    }
    eprintln!("freshness load: {offered} requests at {achieved:.0}/s");
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let servers = rt.block_on(async {
        let kafka = Tansu::start(&paths, dir.path()).await?;
        kafka.create_topic("events", 3)?;
        let clickhouse = ClickHouse::start(&paths, dir.path()).await?;
        let s3 = SeaweedFs::start(&paths, dir.path()).await?;
        let http = Receiver::start(None).await?;
        anyhow::Ok(Servers { kafka, clickhouse, s3, http })
    })?;
    let blocks = sink_blocks(&servers, &dir.path().join("files"));
    // The bucket is created while SeaweedFS starts; the first drain retries until it exists.
    println!("drain of {EVENTS} logged events (~1 KB each), one sink at a time:");
    for (i, (name, block)) in blocks.iter().enumerate() {
        let scratch = dir.path().join(format!("drain-{i}"));
        let rate = drain(block, &scratch)?;
        println!("  {name:<42} {rate:>10.0} events/s");
    }
    println!("freshness at {RATE} requests/s for {SECONDS} s through the proxy, all sinks at once (request end → acknowledged):");
    for (name, p50, p99, count) in rt.block_on(freshness(&dir.path().join("stack"), &blocks))? {
        println!("  {name:<42} p50 {:>8.1} ms   p99 {:>8.1} ms   ({count:.0} events)", p50 * 1e3, p99 * 1e3);
    }
    Ok(())
}
