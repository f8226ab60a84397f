//! The host's own counters: what the proxy serves at its `/metrics`, and what it sends to the
//! collector every few seconds so the same families can be scraped where the events arrive (a
//! proxy that embeds the host need not serve HTTP itself). One renderer serves both.

use crate::prometheus::{escape, Exposition};
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
    pub sent_bytes: u64,
    /// Event frames the collector acknowledged as durable, and frames sent again after a
    /// reconnect because no acknowledgement had come.
    pub acked_frames: u64,
    pub resent_frames: u64,
    pub queue_bytes: u64,
    pub queue_frames: u64,
    pub instances_created: u64,
    /// 1 while connected to the collector.
    pub connected: u64,
    pub connects: u64,
    pub connect_failures: u64,
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

/// One row of a host family: an optional extra label (name, value) and the value.
type Row = (Option<(&'static str, String)>, u64);

/// Writes the host families for `hosts`. With `label_proxy`, every row also carries
/// `proxy="…"` (the collector serving several proxies); without, rows are as the proxy serves them.
pub fn render(hosts: &[&HostStats], label_proxy: bool, e: &mut Exposition) {
    let labels = |h: &HostStats, extra: Option<(&str, &str)>| -> String {
        let mut parts = Vec::new();
        if label_proxy {
            parts.push(format!("proxy=\"{}\"", escape(&h.proxy)));
        }
        if let Some((k, v)) = extra {
            parts.push(format!("{k}=\"{}\"", escape(v)));
        }
        if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
    };
    let mut family = |name: &str, help: &str, kind: &str, rows: &dyn Fn(&HostStats) -> Vec<Row>| {
        let rows: Vec<(String, u64)> = hosts
            .iter()
            .flat_map(|h| rows(h).into_iter().map(move |(l, v)| (labels(h, l.as_ref().map(|(k, v)| (*k, v.as_str()))), v)))
            .collect();
        let rows: Vec<(&str, u64)> = rows.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        e.family(name, help, kind, &rows);
    };
    let one = |v: u64| -> Vec<Row> { vec![(None, v)] };
    let by = |label: &'static str, rows: Vec<(&str, u64)>| -> Vec<Row> { rows.into_iter().map(|(k, v)| (Some((label, k.to_string())), v)).collect() };
    family("sentinel_filter_calls_total", "Filter calls made (one per finished request).", "counter", &|h| one(h.calls));
    family("sentinel_filter_outcomes_total", "What the filter did with each call.", "counter", &|h| {
        by("outcome", vec![("emitted", h.emitted), ("sampled_out", h.sampled_out)])
    });
    family("sentinel_filter_faults_total", "Filter calls that failed; the request was untouched (fail-open).", "counter", &|h| {
        by("kind", vec![("trap", h.traps), ("deadline", h.deadline_hits), ("instantiate", h.instantiate_failures)])
    });
    family("sentinel_filter_skipped_total", "Calls skipped while a faulting filter backs off.", "counter", &|h| one(h.skipped));
    family("sentinel_filter_instances_created_total", "Filter instances built.", "counter", &|h| one(h.instances_created));
    family("sentinel_filter_reloads_total", "Filter reloads by result.", "counter", &|h| by("result", vec![("ok", h.reloads_ok), ("failed", h.reloads_failed)]));
    family("sentinel_filter_info", "The filter version serving.", "gauge", &|h| by("version", vec![(h.filter_version.as_str(), 1)]));
    family("sentinel_channel_dropped_total", "Events that did not reach the collector, by reason.", "counter", &|h| {
        by("reason", h.dropped.iter().map(|(r, v)| (r.as_str(), *v)).collect())
    });
    family("sentinel_channel_sent_frames_total", "Frames written to the collector socket.", "counter", &|h| one(h.sent_frames));
    family("sentinel_channel_sent_bytes_total", "Bytes written to the collector socket.", "counter", &|h| one(h.sent_bytes));
    family("sentinel_channel_acked_frames_total", "Event frames the collector acknowledged as durable.", "counter", &|h| one(h.acked_frames));
    family("sentinel_channel_resent_frames_total", "Event frames sent again after a reconnect (unacknowledged before it).", "counter", &|h| one(h.resent_frames));
    family("sentinel_channel_queue_bytes", "Bytes waiting in the queue.", "gauge", &|h| one(h.queue_bytes));
    family("sentinel_channel_queue_frames", "Frames waiting in the queue, or sent and not yet acknowledged.", "gauge", &|h| one(h.queue_frames));
    family("sentinel_channel_connected", "1 while connected to the collector.", "gauge", &|h| one(h.connected));
    family("sentinel_channel_connects_total", "Successful connections to the collector.", "counter", &|h| one(h.connects));
    family("sentinel_channel_connect_failures_total", "Failed attempts to connect to the collector.", "counter", &|h| one(h.connect_failures));
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

    #[test]
    fn the_same_families_render_with_and_without_the_proxy_label() {
        let mut a = HostStats { proxy: "p\"1".into(), filter_version: "0.1.0".into(), calls: 5, traps: 1, ..Default::default() };
        a.dropped.insert("queue_full".into(), 2);
        let b = HostStats { proxy: "p2".into(), calls: 7, ..Default::default() };
        let mut e = Exposition::new();
        render(&[&a], false, &mut e);
        let own = e.finish();
        assert!(own.contains("\nsentinel_filter_calls_total 5\n"), "{own}");
        assert!(own.contains("\nsentinel_filter_faults_total{kind=\"trap\"} 1\n"));
        assert!(own.contains("\nsentinel_channel_dropped_total{reason=\"queue_full\"} 2\n"));
        assert!(own.contains("\nsentinel_filter_info{version=\"0.1.0\"} 1\n"));
        let mut e = Exposition::new();
        render(&[&a, &b], true, &mut e);
        let all = e.finish();
        assert_eq!(all.matches("# TYPE sentinel_filter_calls_total counter").count(), 1, "one family, a row per proxy");
        assert!(all.contains("\nsentinel_filter_calls_total{proxy=\"p\\\"1\"} 5\n"), "{all}");
        assert!(all.contains("\nsentinel_filter_calls_total{proxy=\"p2\"} 7\n"));
        assert!(all.contains("\nsentinel_filter_faults_total{proxy=\"p2\",kind=\"trap\"} 0\n"));
    }
}
