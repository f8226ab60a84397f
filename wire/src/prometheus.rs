//! The Prometheus text exposition format (0.0.4), written by the host and the collector alike so
//! every component's `/metrics` reads the same.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A latency histogram with fixed buckets, recorded with relaxed atomics (no lock on the path
/// that records) and rendered in seconds.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in microseconds; the last bucket is +Inf.
    bounds_us: &'static [u64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

/// Bounds from 100 µs to 10 s, for I/O such as a sink's batch write.
pub const IO_BUCKETS_US: &[u64] = &[100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Self {
        Histogram { bounds_us, counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(), sum_us: AtomicU64::new(0) }
    }

    pub fn record(&self, d: Duration) {
        let (i, us) = self.bucket(d);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// The bucket `d` falls in, and `d` in microseconds.
    fn bucket(&self, d: Duration) -> (usize, u64) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        (self.bounds_us.partition_point(|b| *b < us), us)
    }

    /// Records many observations, counted apart and added to the shared counts once per
    /// bucket (a batch's worth of per-event times, without two atomic additions each).
    pub fn record_all(&self, ds: impl Iterator<Item = Duration>) {
        let mut counts = vec![0u64; self.counts.len()];
        let mut sum = 0u64;
        for d in ds {
            let (i, us) = self.bucket(d);
            counts[i] += 1;
            sum = sum.saturating_add(us);
        }
        for (shared, n) in self.counts.iter().zip(counts).filter(|(_, n)| *n > 0) {
            shared.fetch_add(n, Relaxed);
        }
        self.sum_us.fetch_add(sum, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(IO_BUCKETS_US)
    }
}

/// Accumulates metric families into one exposition text.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Escapes a label value (`\`, `"` and newlines).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// One family: `kind` is `counter` or `gauge`; each row is (`{labels}` or "", value).
    pub fn family(&mut self, name: &str, help: &str, kind: &str, rows: &[(&str, u64)]) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(self.out, "{name}{labels} {v}");
        }
        self
    }

    /// A single unlabelled counter.
    pub fn counter(&mut self, name: &str, help: &str, v: u64) -> &mut Self {
        self.family(name, help, "counter", &[("", v)])
    }

    /// A single unlabelled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, v: u64) -> &mut Self {
        self.family(name, help, "gauge", &[("", v)])
    }

    /// A family with one label whose values are given with their counts.
    pub fn labelled(&mut self, name: &str, help: &str, kind: &str, label: &str, rows: &[(&str, u64)]) -> &mut Self {
        let rows: Vec<(String, u64)> = rows.iter().map(|(l, v)| (format!("{{{label}=\"{}\"}}", escape(l)), *v)).collect();
        let rows: Vec<(&str, u64)> = rows.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        self.family(name, help, kind, &rows)
    }

    /// A histogram family with one label; each row is a label value and its histogram.
    pub fn histograms(&mut self, name: &str, help: &str, label: &str, rows: &[(&str, &Histogram)]) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (value, h) in rows {
            let l = format!("{label}=\"{}\"", escape(value));
            let mut cumulative = 0;
            for (i, c) in h.counts.iter().enumerate() {
                cumulative += c.load(Relaxed);
                let le = h.bounds_us.get(i).map_or("+Inf".to_string(), |b| (*b as f64 / 1e6).to_string());
                let _ = writeln!(self.out, "{name}_bucket{{{l},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(self.out, "{name}_sum{{{l}}} {}", h.sum_us.load(Relaxed) as f64 / 1e6);
            let _ = writeln!(self.out, "{name}_count{{{l}}} {cumulative}");
        }
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_in_seconds() {
        static B: &[u64] = &[1_000, 10_000];
        let h = Histogram::new(B);
        for ms in [0, 1, 5, 20] {
            h.record(Duration::from_millis(ms));
        }
        let mut e = Exposition::new();
        e.histograms("x_seconds", "X.", "sink", &[("file", &h)]);
        assert_eq!(
            e.finish(),
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{sink=\"file\",le=\"0.001\"} 2\n\
             x_seconds_bucket{sink=\"file\",le=\"0.01\"} 3\n\
             x_seconds_bucket{sink=\"file\",le=\"+Inf\"} 4\n\
             x_seconds_sum{sink=\"file\"} 0.026\n\
             x_seconds_count{sink=\"file\"} 4\n"
        );
    }

    #[test]
    fn renders_families() {
        let mut e = Exposition::new();
        e.counter("a_total", "A.", 3).labelled("b_total", "B.", "counter", "reason", &[("x\"y", 1)]);
        assert_eq!(
            e.finish(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n# HELP b_total B.\n# TYPE b_total counter\nb_total{reason=\"x\\\"y\"} 1\n"
        );
    }
}
