//! The HTTP sink's I/O: one POST per batch.

use super::HttpSettings;
use crate::sink::driver::{Delivered, SendError, Service};
use crate::wal::ReadBatch;
use flate2::write::GzEncoder;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use sha2::Sha256;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Posts batches to one endpoint.
pub struct HttpService {
    settings: HttpSettings,
    client: reqwest::Client,
    headers: HeaderMap,
    /// Prefix of the idempotency key: the same batch retried carries the same key.
    key_prefix: String,
    /// How far the batch in hand got when the endpoint refused it as too large (413) and it
    /// was split: a retry goes on from there instead of sending delivered parts again.
    split: Option<Split>,
}

/// A batch being delivered in parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    /// The batch (its log positions).
    first: u64,
    end: u64,
    /// Lines delivered or dropped so far, lines per part now, lines dropped alone.
    done: usize,
    part: usize,
    dropped: u64,
}

/// Most bytes of a refusing response's body that are read (and logged): an endpoint that
/// answers an error with an endless body costs no more than this.
const BODY_SHOWN: usize = 256;

impl HttpService {
    pub fn new(settings: HttpSettings, sink_id: &str, host: &str) -> Result<HttpService, String> {
        // Redirects are never followed: a 301/302/303 turns a POST into a bodiless GET (a batch
        // "delivered" as nothing), and a 307/308 to another host would carry the configured
        // secret headers and the signature there. A 3xx is a failed attempt, named in the log.
        let client = reqwest::Client::builder()
            .timeout(settings.sink.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        if settings.sink.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        for (k, v) in &settings.sink.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("{k:?} is not a valid header name"))?;
            let mut value = HeaderValue::from_str(v.expose()).map_err(|_| format!("the value of header {k:?} is not valid in HTTP"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(HttpService { settings, client, headers, key_prefix: format!("{host}/{sink_id}/"), split: None })
    }

    fn body(&self, lines: &[u8]) -> std::io::Result<Vec<u8>> {
        if !self.settings.sink.gzip {
            return Ok(lines.to_vec());
        }
        let mut gz = GzEncoder::new(Vec::with_capacity(lines.len() / 4), flate2::Compression::fast());
        gz.write_all(lines)?;
        gz.finish()
    }

    /// POSTs `lines` under idempotency key `key`.
    async fn post(&self, lines: &[u8], key: String) -> Result<(), Refusal> {
        let body = self.body(lines).map_err(|e| Refusal::Retry(SendError::retry(format!("compressing the batch failed: {e}"))))?;
        let mut req = self.client.post(&self.settings.sink.url).headers(self.headers.clone());
        if let Some(hmac) = &self.settings.sink.hmac_key {
            req = req.header(self.settings.sink.signature_header.as_str(), signature(hmac.expose().as_bytes(), &body));
        }
        req = req.header("idempotency-key", key);
        let mut resp = req.body(body).send().await.map_err(|e| Refusal::Retry(SendError::retry(format!("POST {} failed: {e}", self.settings.sink.url))))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let after = retry_after(resp.headers(), SystemTime::now());
        let location = resp.headers().get(LOCATION).map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
        let shown = first_bytes(&mut resp, BODY_SHOWN).await;
        let url = &self.settings.sink.url;
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(Refusal::TooLarge(format!("{url} answered {status}: {shown}")));
        }
        if status.is_redirection() {
            let to = location.as_deref().unwrap_or("(no Location)");
            return Err(Refusal::Retry(SendError::Retry { reason: format!("{url} answered {status} redirecting to {to}; redirects are not followed (configure the final URL): {shown}"), after }));
        }
        let reason = format!("{url} answered {status}: {shown}");
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
            Err(Refusal::Retry(SendError::Retry { reason, after }))
        } else {
            Err(Refusal::Retry(SendError::Reject { reason }))
        }
    }
}

/// Why one POST failed.
enum Refusal {
    /// 413: the body was too large for the endpoint; smaller parts may pass.
    TooLarge(String),
    /// Anything else, as the driver should see it.
    Retry(SendError),
}

/// Up to `cap` bytes of a response's body, as text; the rest is never read.
async fn first_bytes(resp: &mut reqwest::Response, cap: usize) -> String {
    let mut got = Vec::new();
    while got.len() < cap {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c[..c.len().min(cap - got.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Retry-After as a wait from `now`: delay-seconds or an HTTP date (a date past is no wait).
/// Absurd values are read as they are; the driver caps every hint at the sink's longest wait.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time".
        return Some(v.parse::<u64>().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Byte offset of the end of line `n` (0-based count of lines from `from`), or the text's end.
fn after_lines(text: &[u8], from: usize, n: usize) -> usize {
    let mut at = from;
    for _ in 0..n {
        match memchr::memchr(b'\n', &text[at..]) {
            Some(i) => at += i + 1,
            None => return text.len(),
        }
    }
    at
}

impl Service for HttpService {
    async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError> {
        let key = format!("{}{}-{}", self.key_prefix, batch.first, batch.end);
        let lines = batch.events as usize;
        // A batch is sent whole, as one part; after a 413 in parts of half as many lines, and
        // a retry goes on from where the last attempt got.
        let mut split = match self.split.take() {
            Some(s) if s.first == batch.first && s.end == batch.end => s,
            _ => Split { first: batch.first, end: batch.end, done: 0, part: lines.max(1), dropped: 0 },
        };
        // Parts of `part` lines, halved again at each 413; a single event still too large is
        // refused for good (counted), the others go on.
        let text = &batch.lines[..];
        let mut at = after_lines(text, 0, split.done);
        while split.done < lines && at < text.len() {
            let n = split.part.min(lines - split.done);
            let end = after_lines(text, at, n);
            // The whole batch keeps the batch's key, so a receiver can drop a retry it stored.
            let part_key = if n == lines { key.clone() } else { format!("{key}/{}+{n}", split.done) };
            match self.post(&text[at..end], part_key).await {
                Ok(()) => {
                    split.done += n;
                    at = end;
                }
                Err(Refusal::TooLarge(reason)) if n > 1 => {
                    split.part = n.div_ceil(2);
                    tracing::debug!("parts of {n} events still too large, trying {}: {reason}", split.part);
                }
                Err(Refusal::TooLarge(reason)) => {
                    tracing::error!("one event is larger than the endpoint takes; dropped: {reason}");
                    split.dropped += 1;
                    split.done += 1;
                    at = end;
                }
                Err(Refusal::Retry(e)) => {
                    self.split = Some(split);
                    return Err(e);
                }
            }
        }
        self.split = None;
        Ok(if split.dropped > 0 { Delivered::DurableExcept { dropped: split.dropped } } else { Delivered::Durable })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let at = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            retry_after(&h, now)
        };
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        assert_eq!(at(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(at("18446744073709551000"), Some(Duration::from_secs(18446744073709551000)));
        assert_eq!(at("99999999999999999999999"), Some(Duration::MAX), "past u64 is still a number");
        assert_eq!(at("Wed, 21 Oct 2015 07:28:30 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(at("Tuesday, 20-Oct-15 07:28:00 GMT"), Some(Duration::ZERO), "a date past is no wait");
        assert_eq!(at("-5"), None);
        assert_eq!(at("soon"), None);
    }

    fn service(url: String) -> HttpService {
        let sink = sentinel_config::HttpSink {
            url,
            headers: Vec::new(),
            gzip: true,
            hmac_key: None,
            signature_header: "x-sentinel-signature".into(),
            timeout: Duration::from_secs(10),
        };
        HttpService::new(HttpSettings::check(&sink).unwrap(), "http", "h").unwrap()
    }

    fn batch(lines: &[String]) -> ReadBatch {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        ReadBatch { first: 0, end: 1, records: 1, events: lines.len() as u64, lines: text.into_bytes() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_413_halves_the_batch_and_an_event_too_large_alone_is_dropped_and_counted() {
        let receiver = sentinel_demo::receiver::Receiver::start(None).await.unwrap();
        receiver.refuse_over_bytes(2_000);
        let mut lines: Vec<String> = (0..40).map(|i| format!("{{\"n\":{i}}}")).collect();
        lines[17] = format!("{{\"n\":17,\"pad\":\"{}\"}}", "x".repeat(5_000));
        let mut s = service(receiver.url());
        let got = s.send(&batch(&lines)).await.unwrap();
        assert_eq!(got, Delivered::DurableExcept { dropped: 1 });
        let mut n: Vec<u64> = receiver.events().iter().map(|e| e["n"].as_u64().unwrap()).collect();
        n.sort_unstable();
        assert_eq!(n, (0..40).filter(|i| *i != 17).collect::<Vec<u64>>(), "every other event arrived once");
        assert!(receiver.seen().iter().all(|(m, p)| m == "POST" && p == "/ingest"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_split_batch_that_fails_midway_goes_on_from_where_it_got() {
        use sentinel_demo::receiver::Answer;
        let receiver = sentinel_demo::receiver::Receiver::start(None).await.unwrap();
        receiver.refuse_over(10);
        // The whole batch and its halves refused, the first part of 10 taken, the second met
        // by a 503.
        receiver.script_answers(&[Answer::status(413), Answer::status(413), Answer::pass(), Answer::status(503)]);
        let lines: Vec<String> = (0..40).map(|i| format!("{{\"n\":{i}}}")).collect();
        let b = batch(&lines);
        let mut s = service(receiver.url());
        assert!(matches!(s.send(&b).await, Err(SendError::Retry { .. })));
        assert_eq!(receiver.events().len(), 10);
        // The retry sends the three parts left, not the whole batch again.
        assert_eq!(s.send(&b).await.unwrap(), Delivered::Durable);
        let mut n: Vec<u64> = receiver.events().iter().map(|e| e["n"].as_u64().unwrap()).collect();
        n.sort_unstable();
        assert_eq!(n, (0..40).collect::<Vec<u64>>(), "each event once");
        assert_eq!(receiver.requests(), 7);
    }

    #[test]
    fn parts_end_at_line_ends() {
        let t = b"a\nbb\nccc\n";
        assert_eq!(after_lines(t, 0, 0), 0);
        assert_eq!(after_lines(t, 0, 2), 5);
        assert_eq!(after_lines(t, 2, 1), 5);
        assert_eq!(after_lines(t, 5, 9), t.len());
    }
}
