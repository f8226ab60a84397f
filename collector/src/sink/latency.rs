//! How old events are when their destination has them: from the end of the request (the
//! event's `event.end_ns`, the proxy's clock) to the moment the sink's destination acknowledged
//! it (durably: for Parquet files, once the file is finished). Recorded per event in
//! `sentinel_collector_sink_delivery_seconds`.

use memchr::memmem;
use sentinel_wire::prometheus::Histogram;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where to look for the end time: the schema puts `event` second, so it is near the start.
const SCAN: usize = 256;

/// `event.end_ns` of an NDJSON event line, found without parsing the line.
pub fn end_ns(line: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"end_ns\":";
    // A vectorised substring search (comparing a window at every position cost ~0.5 µs a line),
    // built once: building it for every line was half of the search's cost.
    static FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(KEY));
    let head = &line[..line.len().min(SCAN)];
    let at = FINDER.find(head)? + KEY.len();
    line[at..].iter().take_while(|b| b.is_ascii_digit()).fold(None, |acc: Option<u64>, b| Some(acc.unwrap_or(0).saturating_mul(10).saturating_add(u64::from(b - b'0'))))
}

/// End times of events delivered but not yet recorded.
#[derive(Debug, Default)]
pub struct Pending {
    ends: Vec<u64>,
}

impl Pending {
    /// Notes the events of a batch that reached its destination (maybe not yet durably).
    pub fn note<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>) {
        self.ends.extend(lines.filter_map(end_ns));
    }

    /// Everything noted is durable now: record each event's age.
    pub fn record(&mut self, into: &Histogram) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        into.record_all(self.ends.drain(..).map(|end| std::time::Duration::from_nanos(now.saturating_sub(end))));
    }

    /// End times noted so far.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Forgets what was noted after the first `n` (a batch that will not be delivered).
    pub fn truncate(&mut self, n: usize) {
        self.ends.truncate(n);
    }

    /// What was noted will be delivered again (and noted again).
    pub fn forget(&mut self) {
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_time_is_read_from_the_line() {
        let line = br#"{"schema_version":"1","event":{"id":"ab","start_ns":17,"end_ns":1795000000123456789},"http":{}}"#;
        assert_eq!(end_ns(line), Some(1_795_000_000_123_456_789));
        assert_eq!(end_ns(br#"{"schema_version":"1","event":{"id":"ab"}}"#), None);
        assert_eq!(end_ns(b""), None);
        assert_eq!(end_ns(br#"{"event":{"end_ns":x}}"#), None);
    }

    #[test]
    fn recorded_ages_land_in_the_histogram_once() {
        let h = Histogram::new(crate::metrics::DELIVERY_BUCKETS_US);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let lines = [format!(r#"{{"event":{{"end_ns":{}}}}}"#, now - 2_000_000_000), format!(r#"{{"event":{{"end_ns":{}}}}}"#, now)];
        let mut p = Pending::default();
        p.note(lines.iter().map(|l| l.as_bytes()));
        p.record(&h);
        p.record(&h);
        let mut e = sentinel_wire::prometheus::Exposition::new();
        e.histograms("d", "d", "sink", &[("s", &h)]);
        let text = e.finish();
        assert!(text.contains("d_count{sink=\"s\"} 2"), "{text}");
        // One event is about 2 s old: its bucket is above 1 s.
        assert!(text.contains("d_bucket{sink=\"s\",le=\"1\"} 1"), "{text}");
    }
}
