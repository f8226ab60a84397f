//! `sentinel-collector`: the collector daemon's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sentinel_collector::metrics::Metrics;
use sentinel_collector::{config, reload, tap, Daemon};
use std::sync::Arc;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The pipeline allocates and frees many small strings per batch; mimalloc's per-thread heaps
/// measured 10–20% faster on the whole pipeline than the system allocator (benches/pipeline.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Receives telemetry events from proxies, processes them and writes them to sinks.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT; prints a JSON summary line when it stops.
    Run(RunArgs),
    /// Check a configuration file without starting anything: the file itself (every error with
    /// file:line:column, what was expected, the fix), its sinks, and the enrichment data it
    /// names. Exit 0 when valid, else 1 with the errors on stderr.
    Validate {
        /// The KDL configuration file.
        config: PathBuf,
    },
    /// Stream events passing a running collector, filtered and rate-limited, as JSON lines or
    /// a table. It never slows the collector: what a tap cannot take is skipped and counted.
    Tap(TapCli),
    /// Print the collector's version and the event schema and wire protocol it speaks.
    Version,
}

#[derive(clap::Args)]
struct TapCli {
    /// The collector's HTTP endpoint (its `metrics { listen … }` or --metrics-listen).
    #[arg(long, default_value = "127.0.0.1:9464")]
    addr: SocketAddr,
    /// Which events, e.g. 'http.response.status_code >= 500 and url.path contains "/api"'.
    /// Operators: == != >= <= > < contains; conditions joined by `and`.
    #[arg(long, default_value = "")]
    filter: String,
    /// The stage to watch.
    #[arg(long, default_value = "processed")]
    stage: String,
    /// Most events a second (0: no limit).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// The collector's `metrics { tap-token … }` (default: $SENTINEL_TAP_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// `json` (one event a line) or `table`.
    #[arg(long, default_value = "json", value_parser = ["json", "table"])]
    format: String,
    /// Stop after this many events (0: until interrupted).
    #[arg(long, default_value_t = 0)]
    limit: u64,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The KDL configuration file (see docs/configuration.md). Without it, the flags below
    /// configure a collector with one file sink.
    #[arg(long, conflicts_with_all = ["socket", "output_dir", "metrics_listen", "max_frame_bytes", "rotate_bytes", "rotate_secs", "keep_files", "buffer_dir"])]
    config: Option<PathBuf>,
    /// Unix socket proxies connect to (created 0660).
    #[arg(long, default_value = "/run/sentinel/telemetry.sock")]
    socket: PathBuf,
    /// Directory of the NDJSON output files.
    #[arg(long, default_value = "/var/lib/sentinel/events")]
    output_dir: PathBuf,
    /// Serve /metrics and /health/{live,ready} on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Largest frame accepted; larger ones are counted and skipped.
    #[arg(long, default_value_t = sentinel_wire::frame::DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// Rotate the output file at this size.
    #[arg(long, default_value_t = 256 << 20)]
    rotate_bytes: u64,
    /// Rotate the output file at this age, in seconds.
    #[arg(long, default_value_t = 3600)]
    rotate_secs: u64,
    /// Rotated files kept (0: all).
    #[arg(long, default_value_t = 24)]
    keep_files: usize,
    /// Directory of the write-ahead log (accepted events wait here until delivered).
    #[arg(long, default_value = "/var/lib/sentinel/buffer")]
    buffer_dir: PathBuf,
}

fn main() -> ExitCode {
    if !sentinel_collector::huge_pages::opt_out() {
        eprintln!("note: could not turn transparent huge pages off for this process; allocation may cost more");
    }
    match Cli::parse().command {
        Command::Validate { config } => {
            // The file, then what it names: sinks this build runs, and the enrichment data.
            let checked = sentinel_config::load(&config).map_err(|e| e.to_string()).and_then(|c| {
                for s in config::sink_specs(&c)? {
                    sentinel_collector::sink::check(&s)?;
                }
                sentinel_collector::enrich::Enrichers::load(&c.enrichment).map_err(|e| format!("enrichment data: {e}"))?;
                Ok(c)
            });
            match checked {
                Ok(c) => {
                    println!("{}: valid ({} sink{})", config.display(), c.sinks.len(), if c.sinks.len() == 1 { "" } else { "s" });
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tap(t) => {
            let args = tap::client::TapArgs {
                addr: t.addr,
                filter: t.filter,
                stage: t.stage,
                rate: t.rate,
                format: if t.format == "table" { tap::client::Format::Table } else { tap::client::Format::Json },
                limit: t.limit,
                token: t.token.or_else(|| std::env::var("SENTINEL_TAP_TOKEN").ok()),
            };
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(tap::client::TapError::Output)
                .and_then(|rt| rt.block_on(tap::client::run(&args, &mut std::io::stdout().lock())));
            match result {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sentinel-collector tap: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Version => {
            println!(
                "sentinel-collector {} (event schema {}, wire protocol {})",
                env!("CARGO_PKG_VERSION"),
                sentinel_wire::event::SCHEMA_VERSION,
                sentinel_wire::frame::PROTOCOL_VERSION
            );
            ExitCode::SUCCESS
        }
        Command::Run(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sentinel-collector: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The flags as the configuration they stand for (one file sink), so flags and files take the
/// same path to the daemon's settings.
fn from_flags(args: &RunArgs) -> sentinel_config::Config {
    let mut c = sentinel_config::Config::default();
    c.transport.socket_path = args.socket.clone();
    c.transport.max_frame_bytes = args.max_frame_bytes;
    c.metrics.listen = args.metrics_listen;
    let mut file = sentinel_config::FileSink::new(&args.output_dir);
    file.rotate_bytes = args.rotate_bytes;
    file.rotate_after = Duration::from_secs(args.rotate_secs);
    file.keep_files = args.keep_files;
    c.sinks = vec![sentinel_config::Sink { id: "file".into(), kind: sentinel_config::SinkKind::File(file), delivery: sentinel_config::Delivery::defaults_for("file") }];
    c.buffer.dir = args.buffer_dir.clone();
    c
}

/// Logs to stderr; `RUST_LOG`, when set, wins over the configured level.
fn init_logging(log: &sentinel_config::Logging) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| log.level.as_str().into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match log.format {
        sentinel_config::LogFormat::Json => builder.json().init(),
        sentinel_config::LogFormat::Text => builder.init(),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let (agent, source) = match &args.config {
        Some(path) => (sentinel_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?, path.display().to_string()),
        None => (from_flags(&args), "the command line".to_string()),
    };
    let config = config::daemon_config(&agent).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    init_logging(&agent.log);
    let metrics = Arc::new(Metrics::default());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let summary = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::info!("shutting down: draining what was accepted");
            let _ = stop_tx.send(true);
        });
        let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
        if let Some(path) = args.config {
            tokio::spawn(reload::watch(path, agent, Duration::from_secs(1), reload_tx, metrics.clone(), stop_rx.clone()));
        }
        Daemon::run_with(config, metrics, stop_rx, reloads).await
    }).context("collector failed")?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
