//! The host's own counters as it sends them to the collector every few seconds, so they can be
//! scraped where the events arrive: a proxy that embeds the host need not serve HTTP itself.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One snapshot of a host's counters (totals since it started).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostStats {
    /// Who sent it: unique per proxy process (`name-pid` unless configured).
    pub proxy: String,
    /// The filter build serving.
    pub filter_version: String,
    pub calls: u64,
    pub emitted: u64,
    pub sampled_out: u64,
    pub traps: u64,
    pub deadline_hits: u64,
    pub instantiate_failures: u64,
    pub skipped: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Events dropped on the proxy side, by reason (`queue_full`, `oversized`, …).
    pub dropped: BTreeMap<String, u64>,
    pub sent_frames: u64,
    pub queue_bytes: u64,
}

impl HostStats {
    /// MessagePack with field names, so either side may add fields.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<HostStats, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_missing_fields() {
        let mut s = HostStats { proxy: "p-1".into(), calls: 7, ..Default::default() };
        s.dropped.insert("queue_full".into(), 3);
        assert_eq!(HostStats::decode(&s.encode()).unwrap(), s);
        let partial = rmp_serde::to_vec_named(&BTreeMap::from([("proxy", "p-2")])).unwrap();
        assert_eq!(HostStats::decode(&partial).unwrap().proxy, "p-2");
        assert!(HostStats::decode(b"\xc1").is_err());
    }
}
