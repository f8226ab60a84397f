//! The proxy side of the agent's configuration file: when the file changes, its filter part
//! (allowlist, masking, sampling, body capture) is handed to the running filter without a
//! restart. An invalid file is refused with its errors logged, and the filter keeps its settings.

use sentinel_host::{watch_file, FilterSettings, TelemetryHost};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Watches `path` (every `interval`, on its own thread) for as long as the process runs.
pub fn watch(path: PathBuf, mut current: sentinel_config::Config, host: TelemetryHost, interval: Duration) -> std::io::Result<()> {
    let file = path.clone();
    watch_file("telemetry-config-watch", path, interval, Arc::new(AtomicBool::new(false)), move || {
        let new = match sentinel_config::load(&file) {
            Ok(c) => c,
            Err(e) => {
                log::error!("telemetry: configuration refused, the filter keeps its settings:\n{e}");
                return;
            }
        };
        if new.transport != current.transport || new.timeout != current.timeout {
            log::warn!("telemetry: transport and timeout-ms changes take effect at the next restart");
        }
        match host.reconfigure(&FilterSettings::from_agent_config(&new)) {
            Ok(version) => log::info!("telemetry: filter {version} now runs with the settings of {}", file.display()),
            Err(e) => log::error!("telemetry: new filter settings refused: {e}"),
        }
        current = new;
    })?;
    Ok(())
}
