//! The daemon's settings from the agent's KDL configuration (see `sentinel-config`): which parts
//! of it the collector runs, and which a reload may change.

use crate::daemon::DaemonConfig;
use crate::ingest::unix::{PeerPolicy, UnixIngestConfig};
use crate::pipeline;
use crate::wal::{Fsync, WalConfig, WhenFull};
use sentinel_config::{Config, Sink};

/// The sinks of a configuration; at least one. Each is checked again when it starts.
pub fn sink_specs(c: &Config) -> Result<Vec<Sink>, String> {
    if c.sinks.is_empty() {
        return Err("no sink configured: add a `sink \"file\" { path … }`".into());
    }
    Ok(c.sinks.clone())
}

/// The write-ahead log's settings.
pub fn wal_config(c: &Config) -> WalConfig {
    let b = &c.buffer;
    WalConfig {
        dir: b.dir.clone(),
        segment_bytes: b.segment_bytes,
        max_bytes: b.max_bytes,
        when_full: match b.when_full {
            sentinel_config::WhenFull::Block => WhenFull::Block,
            sentinel_config::WhenFull::DropOldest => WhenFull::DropOldest,
        },
        fsync: match b.fsync {
            sentinel_config::FsyncPolicy::Batch => Fsync::Batch,
            sentinel_config::FsyncPolicy::Interval(d) => Fsync::Interval(d),
        },
        direct_io: b.direct_io,
    }
}

/// Everything the daemon needs, from a configuration.
pub fn daemon_config(c: &Config) -> Result<DaemonConfig, String> {
    Ok(DaemonConfig {
        socket: UnixIngestConfig {
            max_frame_bytes: c.transport.max_frame_bytes,
            peers: PeerPolicy { uids: c.transport.allowed_uids.clone(), gids: c.transport.allowed_gids.clone() },
            ..UnixIngestConfig::new(c.transport.socket_path.clone())
        },
        sinks: sink_specs(c)?,
        wal: wal_config(c),
        sink_drain: std::time::Duration::from_secs(5),
        admin_listen: c.metrics.listen,
        tap: crate::admin::TapAccess { token: c.metrics.tap_token.clone(), unredacted: c.metrics.tap_unredacted },
        host_name: pipeline::host_name(),
        queue_batches: 1024,
        sampling: c.sampling.clone(),
        enrichment: c.enrichment.clone(),
        redaction: c.redaction.clone(),
        workers: pipeline::workers::default_count(),
    })
}

/// Settings a running daemon cannot change (a restart applies them), named for the log.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.transport != new.transport {
        v.push("transport");
    }
    if old.metrics != new.metrics {
        v.push("metrics");
    }
    if old.log != new.log {
        v.push("log");
    }
    if old.buffer != new.buffer {
        v.push("buffer");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    #[test]
    fn the_deployed_configuration_runs_as_is() {
        let c = sentinel_config::load(&repo("deploy/telemetry.kdl")).unwrap_or_else(|e| panic!("{e}"));
        let d = daemon_config(&c).unwrap();
        assert_eq!(d.socket.path, std::path::Path::new("/run/sentinel/telemetry.sock"));
        assert_eq!(d.sinks.len(), 1);
        let sentinel_config::SinkKind::File(f) = &d.sinks[0].kind else { panic!("{:?}", d.sinks) };
        assert_eq!(f.dir, std::path::Path::new("/var/lib/sentinel/events"));
        assert_eq!(f.keep_files, 48);
        assert_eq!(d.wal.dir, std::path::Path::new("/var/lib/sentinel/buffer"));
    }

    #[test]
    fn only_sinks_change_without_a_restart() {
        let a = sentinel_config::Config::default();
        let mut b = a.clone();
        b.sampling.rate = 0.5;
        assert!(needs_restart(&a, &b).is_empty());
        b.metrics.listen = "127.0.0.1:1".parse().ok();
        assert_eq!(needs_restart(&a, &b), vec!["metrics"]);
    }
}
