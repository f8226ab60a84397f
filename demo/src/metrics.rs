//! Reads a component's `/metrics` (Prometheus text) into name → value, labels included in the
//! name as written (e.g. `sentinel_channel_dropped_total{reason="queue_full"}`).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;

/// Parsed samples of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub BTreeMap<String, f64>);

impl Samples {
    /// The value of one series, 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum of every series of a family (all label values).
    pub fn sum(&self, family: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == family || k.strip_prefix(family).is_some_and(|r| r.starts_with('{')))
            .map(|(_, v)| v)
            .sum()
    }

    /// The largest series of a family (all label values), 0 when absent.
    pub fn max(&self, family: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == family || k.strip_prefix(family).is_some_and(|r| r.starts_with('{')))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    }

    /// The cumulative buckets `(le, count)` of histogram `family` for the series with
    /// `labels` (e.g. `sink="kafka"`), in ascending `le`.
    pub fn buckets(&self, family: &str, labels: &str) -> Vec<(f64, f64)> {
        let head = format!("{family}_bucket{{{labels},le=\"");
        let mut out: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&head)?.strip_suffix("\"}")?;
                Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    pub fn parse(text: &str) -> Samples {
        let mut m = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            if let Some((name, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    m.insert(name.to_string(), v);
                }
            }
        }
        Samples(m)
    }
}

/// The `q` quantile of cumulative histogram buckets, interpolated linearly within the bucket
/// it falls in (as Prometheus' `histogram_quantile` does); NaN when there is no observation.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            let within = if count > prev.1 { (rank - prev.1) / (count - prev.1) } else { 0.0 };
            return prev.0 + (le - prev.0) * within;
        }
        prev = (le, count);
    }
    prev.0
}

/// GETs `http://addr/metrics` and parses it.
pub async fn scrape(addr: &str) -> anyhow::Result<Samples> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = client.get(format!("http://{addr}/metrics").parse()?).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Samples::parse(&String::from_utf8_lossy(&body)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let text = "h_bucket{sink=\"a\",le=\"0.1\"} 50\nh_bucket{sink=\"a\",le=\"1\"} 100\nh_bucket{sink=\"a\",le=\"+Inf\"} 100\nh_bucket{sink=\"b\",le=\"+Inf\"} 0\n";
        let s = super::Samples::parse(text);
        let b = s.buckets("h", "sink=\"a\"");
        assert_eq!(b.len(), 3);
        assert!((super::quantile(&b, 0.5) - 0.1).abs() < 1e-9);
        assert!((super::quantile(&b, 0.75) - 0.55).abs() < 1e-9);
        assert!(super::quantile(&s.buckets("h", "sink=\"b\""), 0.5).is_nan());
    }

    use super::*;

    #[test]
    fn parses_and_sums_families() {
        let s = Samples::parse("# HELP a x\na_total 3\nb_total{r=\"x\"} 1\nb_total{r=\"y\"} 2\nbb_total 9\n");
        assert_eq!(s.get("a_total"), 3.0);
        assert_eq!(s.sum("b_total"), 3.0);
        assert_eq!(s.get("missing"), 0.0);
    }
}
