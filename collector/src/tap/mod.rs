//! A live view of the events passing the collector, for an operator at a terminal (like
//! `vector tap`). Each [`Stage`] offers its batches to the [`TapHub`]; when nobody taps a stage,
//! that is one check and nothing else (the pipeline renders events for a stage only while a
//! session watches it). Each tap session gets its own bounded view and filters on its own
//! task: a slow or busy tap loses events for itself (counted), never for the pipeline.

pub mod client;
pub mod filter;

use crate::ingest::Batch;
use crate::metrics::Metrics;
use bytes::Bytes;
use filter::Filter;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc};

/// Where a tap watches events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// As the proxy sent them (decoded, before anything is added).
    Decoded,
    /// After enrichment (geo, asn, device, threat).
    Enriched,
    /// As the sinks receive them: after redaction (`redacted` names it too).
    Processed,
}

/// The stages a tap can watch, by name (the first is the default).
pub const STAGES: &[(&str, Stage)] =
    &[("processed", Stage::Processed), ("decoded", Stage::Decoded), ("enriched", Stage::Enriched), ("redacted", Stage::Processed)];

/// Where batches are offered to taps, one channel per stage.
#[derive(Clone)]
pub struct TapHub {
    tx: [broadcast::Sender<Arc<Batch>>; 3],
}

impl Default for TapHub {
    fn default() -> Self {
        // Batches kept for a session that falls behind; past this it skips (counted as lagged).
        TapHub { tx: std::array::from_fn(|_| broadcast::channel(256).0) }
    }
}

/// What a session asked for.
#[derive(Debug, Clone)]
pub struct TapRequest {
    pub filter: Filter,
    /// Most events a second sent to this session; 0 means no limit.
    pub rate: u32,
    pub stage: Stage,
}

impl TapHub {
    /// True when a session watches `stage`: the pipeline renders events there only then.
    pub fn watching(&self, stage: Stage) -> bool {
        self.tx[stage as usize].receiver_count() > 0
    }

    /// Offers a batch to the taps of `stage`, if any: never waits.
    pub fn offer(&self, stage: Stage, batch: &Arc<Batch>) {
        if self.watching(stage) {
            let _ = self.tx[stage as usize].send(batch.clone());
        }
    }

    /// Starts a session; its matching events arrive on the returned receiver as NDJSON lines.
    /// The session ends when the receiver is dropped.
    pub fn open(&self, req: TapRequest, metrics: Arc<Metrics>) -> mpsc::Receiver<Bytes> {
        let mut rx = self.tx[req.stage as usize].subscribe();
        let (out, lines) = mpsc::channel::<Bytes>(1024);
        tokio::spawn(async move {
            metrics.tap_sessions.fetch_add(1, Relaxed);
            let mut bucket = TokenBucket::new(req.rate);
            loop {
                let batch = tokio::select! {
                    _ = out.closed() => break,
                    b = rx.recv() => b,
                };
                let batch = match batch {
                    Ok(b) => b,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        metrics.tap_lagged_batches.fetch_add(n, Relaxed);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                for line in crate::wal::Lines::new(&batch.lines) {
                    // Without conditions every event matches: no need to parse it.
                    let matches = req.filter.is_empty()
                        || serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|e| req.filter.matches(&e));
                    if !matches {
                        continue;
                    }
                    if !bucket.take() {
                        metrics.tap_rate_limited.fetch_add(1, Relaxed);
                        continue;
                    }
                    let mut l = line.to_vec();
                    l.push(b'\n');
                    if out.try_send(Bytes::from(l)).is_err() {
                        metrics.tap_slow_client.fetch_add(1, Relaxed);
                    }
                }
            }
            metrics.tap_sessions.fetch_sub(1, Relaxed);
        });
        lines
    }
}

/// At most `rate` events a second, with a burst of one second's worth.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        TokenBucket { rate: f64::from(rate), tokens: f64::from(rate), at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Reads `filter`, `rate` and `stage` from a query string (`application/x-www-form-urlencoded`).
pub fn parse_query(query: &str) -> Result<TapRequest, String> {
    let mut filter = Filter::parse("").map_err(|e| e.to_string())?;
    let mut rate = 0;
    let mut stage = Stage::Processed;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "filter" => filter = Filter::parse(&v).map_err(|e| e.to_string())?,
            "rate" => rate = v.parse().map_err(|_| format!("rate {v:?} is not a whole number of events a second"))?,
            "stage" => match STAGES.iter().find(|(name, _)| *name == v) {
                Some((_, s)) => stage = *s,
                None => {
                    let names: Vec<&str> = STAGES.iter().map(|(n, _)| *n).collect();
                    return Err(format!("unknown stage {v:?}: this collector has {}", names.join(", ")));
                }
            },
            other => return Err(format!("unknown tap parameter {other:?}")),
        }
    }
    Ok(TapRequest { filter, rate, stage })
}

/// `+` and `%XX` decoding; malformed escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `percent_decode`'s inverse for a query value.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_through_the_encoding() {
        let f = "http.response.status_code >= 500 and url.path contains \"/a b\"";
        let req = parse_query(&format!("filter={}&rate=10&stage=processed", percent_encode(f))).unwrap();
        assert_eq!(req.rate, 10);
        assert_eq!(req.filter, Filter::parse(f).unwrap());
        assert_eq!(req.stage, Stage::Processed);
        assert_eq!(parse_query("stage=enriched").unwrap().stage, Stage::Enriched);
        assert!(parse_query("stage=redacted-ish").unwrap_err().contains("unknown stage"));
        assert!(parse_query("rate=fast").is_err());
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%+1%41"), "% 1A", "a bad escape is kept, + is a space");
    }

    #[test]
    fn the_bucket_limits_to_its_rate() {
        let mut b = TokenBucket::new(5);
        assert_eq!((0..20).filter(|_| b.take()).count(), 5);
        let mut unlimited = TokenBucket::new(0);
        assert!((0..1000).all(|_| unlimited.take()));
    }
}
