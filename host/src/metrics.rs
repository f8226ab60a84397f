//! Counters of the filter runtime and the channel, readable by the proxy and rendered in the
//! Prometheus text format (names in Prometheus conventions: `_total`, `_bytes`).

use sentinel_wire::prometheus::Exposition;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Why an event did not reach the collector socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was at its byte or frame bound.
    QueueFull,
    /// The event was larger than the largest frame the collector accepts.
    Oversized,
    /// The socket write failed (the collector went away mid-batch).
    WriteFailed,
    /// The host was shutting down and could not flush it in time.
    Shutdown,
    /// The finished request found the filter threads' queue full: the filter never saw it.
    FilterBacklog,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::Oversized,
        DropReason::WriteFailed,
        DropReason::Shutdown,
        DropReason::FilterBacklog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Oversized => "oversized",
            DropReason::WriteFailed => "write_failed",
            DropReason::Shutdown => "shutdown",
            DropReason::FilterBacklog => "filter_backlog",
        }
    }
}

/// A counter on its own cache line: the filter threads and the sender thread write different
/// counters, and sharing a line would make every update bounce it between cores.
pub type Counter = CachePadded<AtomicU64>;

/// All counters of one [`crate::TelemetryHost`]. Relaxed atomics: each is independent.
#[derive(Debug, Default)]
pub struct Metrics {
    pub calls: Counter,
    pub emitted: Counter,
    pub sampled_out: Counter,
    /// Calls skipped because the filter kept faulting (backoff).
    pub skipped: Counter,
    pub traps: Counter,
    pub deadline_hits: Counter,
    pub instantiate_failures: Counter,
    pub instances_created: Counter,
    pub reloads_ok: Counter,
    pub reloads_failed: Counter,
    drops: [Counter; 5],
    pub sent_frames: Counter,
    pub sent_bytes: Counter,
    pub acked_frames: Counter,
    pub resent_frames: Counter,
    pub queue_bytes: Counter,
    /// Frames waiting, as last seen by the sender thread (it owns this gauge).
    pub queue_frames: Counter,
    pub connected: Counter,
    pub connects: Counter,
    pub connect_failures: Counter,
    active_version: Mutex<String>,
}

impl Metrics {
    /// These counters as the collector receives them (see [`sentinel_wire::stats`]).
    pub fn snapshot(&self, proxy: &str) -> sentinel_wire::stats::HostStats {
        let g = |c: &Counter| c.load(Relaxed);
        sentinel_wire::stats::HostStats {
            proxy: proxy.to_string(),
            filter_version: self.active_version(),
            calls: g(&self.calls),
            emitted: g(&self.emitted),
            sampled_out: g(&self.sampled_out),
            traps: g(&self.traps),
            deadline_hits: g(&self.deadline_hits),
            instantiate_failures: g(&self.instantiate_failures),
            skipped: g(&self.skipped),
            reloads_ok: g(&self.reloads_ok),
            reloads_failed: g(&self.reloads_failed),
            dropped: DropReason::ALL.iter().map(|r| (r.as_str().to_string(), self.dropped(*r))).collect(),
            sent_frames: g(&self.sent_frames),
            sent_bytes: g(&self.sent_bytes),
            acked_frames: g(&self.acked_frames),
            resent_frames: g(&self.resent_frames),
            queue_bytes: g(&self.queue_bytes),
            queue_frames: g(&self.queue_frames),
            instances_created: g(&self.instances_created),
            connected: g(&self.connected),
            connects: g(&self.connects),
            connect_failures: g(&self.connect_failures),
        }
    }

    pub fn drop_event(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].fetch_add(n, Relaxed);
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Relaxed)
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().map(|d| d.load(Relaxed)).sum()
    }

    pub(crate) fn set_active_version(&self, v: &str) {
        if let Ok(mut g) = self.active_version.lock() {
            v.clone_into(&mut g);
        }
    }

    /// The version string of the filter currently serving.
    pub fn active_version(&self) -> String {
        self.active_version.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// The counters in the Prometheus text exposition format.
    /// The Prometheus text of these counters: the same families the collector serves for every
    /// connected proxy (one renderer, [`sentinel_wire::stats::render`]).
    pub fn render_prometheus(&self, proxy: &str) -> String {
        let mut e = Exposition::new();
        sentinel_wire::stats::render(&[&self.snapshot(proxy)], false, &mut e);
        e.finish()
    }
}
