//! `sentinel-proxy`: the reference reverse proxy. Plain HTTP on Pingora, one upstream, and the
//! telemetry filter run from the logging phase of every request. It exists so the whole path runs
//! and is measured for real, and as the example an integrator copies (see `exchange.rs`).

mod admin;
mod config_watch;
mod exchange;
mod policy;
mod proxy;

use anyhow::Context;
use clap::Parser;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use sentinel_host::{FilterSettings, HostConfig, TelemetryHost};
use std::path::PathBuf;
use std::time::Duration;

/// Reference reverse proxy with the Sentinel telemetry filter.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to accept client connections on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The upstream every request is proxied to (host:port, plain HTTP).
    #[arg(long, default_value = "127.0.0.1:8081")]
    upstream: String,
    /// The telemetry filter component (.wasm). Without it, telemetry is off.
    #[arg(long)]
    filter: Option<PathBuf>,
    /// The agent's KDL configuration (see docs/configuration.md): the collector socket, the
    /// call budget and the filter's settings come from it, and changes to the filter's settings
    /// are applied live. It replaces the flags that set the same things.
    #[arg(long, requires = "filter", conflicts_with_all = ["collector", "sample_rate", "keep_client_errors", "header_allow", "mask_header", "body_capture_bytes", "call_deadline_ms", "filter_threads"])]
    config: Option<PathBuf>,
    /// The collector's unix socket.
    #[arg(long, default_value = "/run/sentinel/telemetry.sock")]
    collector: PathBuf,
    /// Serve the telemetry counters at http://ADDR/metrics (Prometheus text).
    #[arg(long)]
    admin_listen: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Head-sampling rate in [0, 1], consistent by request id.
    #[arg(long, default_value_t = 1.0)]
    sample_rate: f64,
    /// Keep every 4xx whatever the rate (5xx always are).
    #[arg(long)]
    keep_client_errors: bool,
    /// Path prefixes the proxy answers with 403 itself (comma separated or repeated): its one
    /// access rule, reported in events as `sentinel.decision`, `.rules`, `.risk_score`, `.agents`.
    #[arg(long, value_delimiter = ',')]
    deny_path: Vec<String>,
    /// Header names kept in events (comma separated); default: the filter's allowlist.
    #[arg(long, value_delimiter = ',')]
    header_allow: Vec<String>,
    /// Extra header names whose values are masked (comma separated).
    #[arg(long, value_delimiter = ',')]
    mask_header: Vec<String>,
    /// Most body bytes captured per request and response (0: off).
    #[arg(long, default_value_t = 0)]
    body_capture_bytes: u32,
    /// Time one filter call may run, in milliseconds. Time its thread spends preempted is given
    /// back (up to four times this in wall-clock time), so a busy machine costs no events.
    #[arg(long, default_value_t = 10)]
    call_deadline_ms: u64,
    /// Threads that run the filter (one instance each); the proxy's own threads only queue
    /// finished requests for them. One runs ~300k requests a second.
    #[arg(long, default_value_t = 1)]
    filter_threads: usize,
    /// Most bytes of events held in memory while the collector is slow or away (each filter
    /// thread's instance has its own ring; at least 64 KiB). The filter thread writes up to
    /// 20 ms of requests at once: keep room for ~50 ms of events (1 MiB at 20k requests/s).
    #[arg(long, default_value_t = 16 << 20)]
    queue_bytes: usize,
    /// Directory for precompiled filters.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Directory for Pingora's pid file and upgrade socket.
    #[arg(long, default_value = "/tmp")]
    runtime_dir: PathBuf,
}

/// Logs through `tracing` (Pingora's and the host's `log` records included), text or JSON and
/// the level from the config's `log` block, `RUST_LOG` over both.
fn init_logging(config: Option<&sentinel_config::Config>) {
    let level = config.map_or("warn,sentinel_host=info,sentinel_proxy=info", |c| c.log.level.as_str());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.map(|c| c.log.format) {
        Some(sentinel_config::LogFormat::Json) => builder.json().init(),
        _ => builder.init(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let agent_config = match &args.config {
        Some(path) => Some(sentinel_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    init_logging(agent_config.as_ref());
    let telemetry = match &args.filter {
        None => None,
        Some(filter) => {
            let mut cfg = match &agent_config {
                Some(c) => HostConfig::from_agent_config(filter, c),
                None => {
                    let mut cfg = HostConfig::new(filter, &args.collector);
                    cfg.call_deadline = Duration::from_millis(args.call_deadline_ms);
                    cfg.filter_threads = args.filter_threads.clamp(1, 64);
                    cfg.filter = FilterSettings {
                        header_allowlist: args.header_allow.clone(),
                        masked_headers: args.mask_header.clone(),
                        sample_rate: args.sample_rate,
                        always_keep_server_errors: true,
                        always_keep_client_errors: args.keep_client_errors,
                        body_capture_bytes: args.body_capture_bytes,
                    };
                    cfg
                }
            };
            cfg.cache_dir = args.cache_dir.clone();
            cfg.channel.capacity_bytes = args.queue_bytes;
            let host = TelemetryHost::start(cfg).context("starting telemetry")?;
            log::info!("telemetry filter {} loaded from {}", host.active_version(), filter.display());
            if let (Some(path), Some(c)) = (&args.config, agent_config) {
                config_watch::watch(path.clone(), c, host.clone(), Duration::from_secs(1)).context("watching the configuration")?;
            }
            Some(host)
        }
    };

    let conf = ServerConf {
        threads: args.threads,
        pid_file: args.runtime_dir.join(format!("sentinel-proxy-{}.pid", std::process::id())).display().to_string(),
        upgrade_sock: args.runtime_dir.join(format!("sentinel-proxy-{}.upgrade", std::process::id())).display().to_string(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(2),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let app = proxy::ReferenceProxy::new(args.upstream.clone(), telemetry.clone(), policy::PathPolicy::new(args.deny_path.clone()));
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, app);
    service.add_tcp(&args.listen);
    server.add_service(service);
    if let Some(addr) = &args.admin_listen {
        server.add_service(admin::service(addr, telemetry.clone()));
    }
    if let Some(host) = telemetry {
        server.add_service(pingora::services::background::background_service("telemetry-flush", admin::FlushOnShutdown(host)));
    }
    eprintln!("sentinel-proxy listening on {} -> {}", args.listen, args.upstream);
    server.run_forever()
}
