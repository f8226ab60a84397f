//! `sentinel-demo`: `run` starts the whole stack, sends generated traffic and prints a summary;
//! `upstream` serves the demo upstream alone (for load runs against the proxy).

use anyhow::Context;
use clap::{Parser, Subcommand};
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "Runs Sentinel Telemetry end to end on loopback.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start upstream, collector and proxy with the filter, send traffic, print a summary.
    Run {
        #[arg(long, default_value_t = 3000)]
        requests: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Working directory (socket, logs, output); emptied first.
        #[arg(long, default_value = ".data/demo")]
        dir: PathBuf,
        /// Filter component; default: target/filters/sentinel_filter.wasm.
        #[arg(long)]
        filter: Option<PathBuf>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Serve the demo upstream on ADDR until killed.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Cmd::Run {
        requests: 3000,
        concurrency: 16,
        dir: ".data/demo".into(),
        filter: None,
        seed: 42,
    }) {
        Cmd::Upstream { listen, threads } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
                eprintln!("demo upstream on {listen}");
                sentinel_demo::upstream::serve(l).await;
                Ok(())
            })
        }
        Cmd::Run { requests, concurrency, dir, filter, seed } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(demo(requests, concurrency, dir, filter, seed))
        }
    }
}

async fn demo(requests: u64, concurrency: usize, dir: PathBuf, filter: Option<PathBuf>, seed: u64) -> anyhow::Result<()> {
    let paths = Paths::discover()?;
    let filter = filter.unwrap_or_else(|| paths.filter("sentinel_filter.wasm"));
    anyhow::ensure!(filter.exists(), "{} not found: run `make filters` first", filter.display());
    let _ = std::fs::remove_dir_all(&dir);
    let dir = std::path::absolute(&dir)?;
    println!("Sentinel Telemetry demo");
    println!("  starting upstream, collector and proxy (filter {})", filter.display());
    let data = sentinel_demo::enrichment::data_dir(&paths.bin_dir);
    anyhow::ensure!(data.join("dbip").exists(), "{} has no enrichment data: run scripts/fetch-data.sh first", data.display());
    std::fs::create_dir_all(&dir)?;
    let mut config = StackConfig::new(&dir, &filter);
    config.collector_blocks = Some(sentinel_demo::enrichment::demo_block(&data, &dir)?);
    println!("  enrichment: DB-IP lite city (CC-BY-4.0, db-ip.com), ASN ranges, uap-core, demo threat lists");
    let stack = Stack::start(paths, config).await?;
    println!("  proxy http://{}  collector socket {}", stack.proxy_addr, stack.socket.display());
    println!("  sending {requests} requests over {concurrency} connections");
    let report = traffic::run(&stack.proxy_addr, seed, requests, concurrency, move |done| {
        let pct = done * 100 / requests.max(1);
        if (pct.is_multiple_of(10) && done.is_multiple_of((requests / 100).max(1))) || done == requests {
            eprint!("\r  progress: {done}/{requests} ({pct}%)   ");
            let _ = std::io::stderr().flush();
        }
    })
    .await;
    eprintln!();
    stack.settle(Duration::from_secs(10)).await.ok();
    let proxy = stack.proxy_metrics().await?;
    let output = stack.output_file();
    let summary = stack.shutdown().await?;
    let events = sentinel_demo::stack::read_events(output.parent().context("output has no directory")?)?;

    let count = |f: &dyn Fn(&serde_json::Value) -> bool| events.iter().filter(|e| f(e)).count();
    let status = |e: &serde_json::Value| e["http"]["response"]["status_code"].as_u64().unwrap_or(0);
    let masked = count(&|e| e["http"]["request"]["header"]["authorization"].as_str().is_some_and(|a| a.ends_with("***")));
    let raw = std::fs::read_to_string(&output).unwrap_or_default();
    let leaked = traffic::SECRET_MARKERS.iter().filter(|m| raw.contains(*m)).count();
    let dropped = proxy.sum("sentinel_channel_dropped_total") as u64 + summary["events_dropped"].as_u64().unwrap_or(0);
    println!();
    println!("Summary");
    println!(
        "  requests        {} sent, {} answered as expected, {} failed, in {:.2}s ({:.0} req/s)",
        report.sent,
        report.ok,
        report.failed,
        report.elapsed.as_secs_f64(),
        report.sent as f64 / report.elapsed.as_secs_f64().max(1e-9)
    );
    println!("  latency         p50 {:?}  p99 {:?} (client side)", report.percentile(0.5), report.percentile(0.99));
    println!(
        "  filter          {} calls, {} events emitted, {} faults; version {}",
        proxy.get("sentinel_filter_calls_total"),
        proxy.get("sentinel_filter_outcomes_total{outcome=\"emitted\"}"),
        proxy.sum("sentinel_filter_faults_total"),
        events.first().and_then(|e| e["filter"]["version"].as_str()).unwrap_or("?")
    );
    println!(
        "  events written  {} ({} 2xx, {} 4xx, {} 5xx), {} dropped, {} malformed frames",
        events.len(),
        count(&|e| (200..300).contains(&status(e))),
        count(&|e| (400..500).contains(&status(e))),
        count(&|e| status(e) >= 500),
        dropped,
        summary["malformed"]
    );
    println!("  credentials     {masked} Authorization headers masked; {leaked} secret values found in the output");
    let top = |field: &dyn Fn(&serde_json::Value) -> Option<String>| {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for e in &events {
            if let Some(k) = field(e) {
                *counts.entry(k).or_default() += 1;
            }
        }
        let mut v: Vec<(String, usize)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.iter().take(6).map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    println!("  countries       {}", top(&|e| text(&e["geo"]["country"]["iso_code"])));
    println!("  cities          {}", top(&|e| text(&e["geo"]["locality"]["name"])));
    println!("  networks        {}", top(&|e| e["asn"]["number"].as_u64().map(|n| format!("AS{n} {}", e["asn"]["organization"].as_str().unwrap_or("")))));
    println!("  devices         {}", top(&|e| text(&e["device"]["type"])));
    println!("  browsers        {}", top(&|e| text(&e["user_agent"]["name"])));
    println!(
        "  threats         {} from Tor exits, {} on a known-bad list, {} with a score over 0",
        count(&|e| e["threat"]["tor_exit"] == true),
        count(&|e| e["threat"]["known_bad"] == true),
        count(&|e| e["threat"]["score"].as_u64().unwrap_or(0) > 0)
    );
    println!("  output          {}", output.display());
    if let Some(e) = events.iter().find(|e| e["http"]["request"]["header"]["authorization"].is_string()) {
        println!("  one event:\n{}", serde_json::to_string_pretty(e)?);
    }
    println!(
        "{}",
        serde_json::json!({
            "requests": report.sent,
            "requests_failed": report.failed,
            "events_written": events.len(),
            "events_dropped": dropped,
            "secrets_leaked": leaked,
            "output": output,
        })
    );
    Ok(())
}
