//! The proxy side of the agent's configuration file: when the file changes, its filter part
//! (allowlist, masking, sampling, body capture) is handed to the running filter without a
//! restart. An invalid file is refused with its errors logged, and the filter keeps its settings.

use sentinel_host::{FilterSettings, TelemetryHost};
use std::path::PathBuf;
use std::time::Duration;

/// Polls `path` every `interval` on its own thread for as long as the process runs.
pub fn watch(path: PathBuf, mut current: sentinel_config::Config, host: TelemetryHost, interval: Duration) -> std::io::Result<()> {
    let mut last = std::fs::read(&path).ok();
    std::thread::Builder::new().name("telemetry-config-watch".into()).spawn(move || loop {
        std::thread::sleep(interval);
        let bytes = std::fs::read(&path).ok();
        if bytes == last {
            continue;
        }
        last = bytes;
        let new = match sentinel_config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                log::error!("telemetry: configuration refused, the filter keeps its settings:\n{e}");
                continue;
            }
        };
        if new.transport != current.transport || new.timeout != current.timeout {
            log::warn!("telemetry: transport and timeout-ms changes take effect at the next restart");
        }
        match host.reconfigure(&FilterSettings::from_agent_config(&new)) {
            Ok(version) => log::info!("telemetry: filter {version} now runs with the settings of {}", path.display()),
            Err(e) => log::error!("telemetry: new filter settings refused: {e}"),
        }
        current = new;
    })?;
    Ok(())
}
