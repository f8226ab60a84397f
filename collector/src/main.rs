//! `sentinel-collector`: the collector daemon's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sentinel_collector::ingest::unix::UnixIngestConfig;
use sentinel_collector::sink::file::FileSinkConfig;
use sentinel_collector::{pipeline, Daemon, DaemonConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

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
}

#[derive(clap::Args)]
struct RunArgs {
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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let Command::Run(args) = Cli::parse().command;
    let mut file = FileSinkConfig::new(&args.output_dir);
    file.max_bytes = args.rotate_bytes;
    file.max_age = Duration::from_secs(args.rotate_secs);
    file.max_files = args.keep_files;
    let config = DaemonConfig {
        socket: UnixIngestConfig { path: args.socket, mode: 0o660, max_frame_bytes: args.max_frame_bytes },
        file,
        admin_listen: args.metrics_listen,
        host_name: pipeline::host_name(),
        queue_batches: 1024,
    };
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
        Daemon::run(config, stop_rx).await
    }).context("collector failed")?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
