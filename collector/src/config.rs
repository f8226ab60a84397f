//! The daemon's settings from the agent's KDL configuration (see `sentinel-config`): which parts
//! of it the collector runs, and which a reload may change.

use crate::daemon::DaemonConfig;
use crate::ingest::unix::UnixIngestConfig;
use crate::pipeline;
use crate::router::SinkSpec;
use crate::sink::file::FileSinkConfig;
use sentinel_config::{Config, SinkKind};

/// The sinks of a configuration, ready to run. Kinds not built yet are refused by name rather
/// than skipped, so a configuration never runs with fewer outputs than it lists.
pub fn sink_specs(c: &Config) -> Result<Vec<SinkSpec>, String> {
    if c.sinks.is_empty() {
        return Err("no sink configured: add a `sink \"file\" { path … }`".into());
    }
    c.sinks
        .iter()
        .map(|s| match &s.kind {
            SinkKind::File(f) => {
                let mut file = FileSinkConfig::new(&f.dir);
                file.max_bytes = f.rotate_bytes;
                file.max_age = f.rotate_after;
                file.max_files = f.keep_files;
                Ok(SinkSpec { id: s.id.clone(), file })
            }
            SinkKind::Kafka(_) => Err(format!("sink `{}`: the Kafka sink is not available in this build yet", s.id)),
        })
        .collect()
}

/// Everything the daemon needs, from a configuration.
pub fn daemon_config(c: &Config) -> Result<DaemonConfig, String> {
    Ok(DaemonConfig {
        socket: UnixIngestConfig { path: c.transport.socket_path.clone(), mode: 0o660, max_frame_bytes: c.transport.max_frame_bytes },
        sinks: sink_specs(c)?,
        admin_listen: c.metrics.listen,
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
        assert_eq!(d.sinks[0].file.dir, std::path::Path::new("/var/lib/sentinel/events"));
        assert_eq!(d.sinks[0].file.max_files, 48);
    }

    #[test]
    fn sinks_not_built_yet_are_refused_by_name() {
        let c = sentinel_config::parse_with_env("x.kdl", "agent \"t\" {\n  sink \"kafka\" { brokers \"k:9092\"; topic \"t\"; }\n}\n", &|_| None).unwrap();
        assert_eq!(sink_specs(&c), Err("sink `kafka`: the Kafka sink is not available in this build yet".into()));
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
