//! Live reload of the configuration file: on SIGHUP, and when the file's content changes
//! (checked every `interval`). A valid file replaces the enrichment and the sinks (see
//! [`crate::daemon::Reload`]); an invalid one is refused, logged with its errors and counted, and the running setup stays.

use crate::config::{needs_restart, sink_specs};
use crate::metrics::Metrics;
use crate::daemon::Reload;
use sentinel_config::Config;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

/// Watches `path` until `shutdown`; `current` is the configuration the daemon started with.
pub async fn watch(
    path: PathBuf,
    mut current: Config,
    interval: Duration,
    reloads: mpsc::Sender<Reload>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut last = std::fs::read(&path).ok();
    let mut tick = tokio::time::interval(interval);
    loop {
        let forced = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = hup.recv() => true,
            _ = tick.tick() => false,
        };
        let bytes = std::fs::read(&path).ok();
        if !forced && bytes == last {
            continue;
        }
        let result = apply(&path, bytes.as_deref(), &current, &reloads).await;
        last = bytes;
        match result {
            Ok(new) => {
                metrics.reloads_ok.fetch_add(1, Relaxed);
                tracing::info!(config = %path.display(), sinks = new.sinks.len(), "configuration reloaded");
                current = new;
            }
            Err(e) => {
                metrics.reloads_failed.fetch_add(1, Relaxed);
                tracing::error!(config = %path.display(), "configuration refused, the running one stays:\n{e}");
            }
        }
    }
}

/// Applies the file's bytes (read once, for the change check and for this).
async fn apply(path: &std::path::Path, bytes: Option<&[u8]>, current: &Config, reloads: &mpsc::Sender<Reload>) -> Result<Config, String> {
    let bytes = bytes.ok_or_else(|| format!("cannot read {}", path.display()))?;
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{} is not UTF-8 text: {e}", path.display()))?;
    let new = sentinel_config::parse(&path.display().to_string(), text).map_err(|e| e.to_string())?;
    let sinks = sink_specs(&new)?;
    let (done, answer) = oneshot::channel();
    reloads.send(Reload { sinks, sampling: new.sampling.clone(), enrichment: new.enrichment.clone(), redaction: new.redaction.clone(), done }).await.map_err(|_| "the daemon is stopping".to_string())?;
    answer.await.map_err(|_| "the daemon is stopping".to_string())??;
    let fixed = needs_restart(current, &new);
    if !fixed.is_empty() {
        tracing::warn!("configuration: changes to {} take effect at the next restart", fixed.join(", "));
    }
    Ok(new)
}
