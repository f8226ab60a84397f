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
