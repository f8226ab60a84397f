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

/// GETs `http://addr/metrics` and parses it.
pub async fn scrape(addr: &str) -> anyhow::Result<Samples> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = client.get(format!("http://{addr}/metrics").parse()?).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Samples::parse(&String::from_utf8_lossy(&body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sums_families() {
        let s = Samples::parse("# HELP a x\na_total 3\nb_total{r=\"x\"} 1\nb_total{r=\"y\"} 2\nbb_total 9\n");
        assert_eq!(s.get("a_total"), 3.0);
        assert_eq!(s.sum("b_total"), 3.0);
        assert_eq!(s.get("missing"), 0.0);
    }
}
