//! The HTTP sink's I/O: one POST per batch.

use super::HttpSettings;
use crate::sink::driver::{Delivered, SendError, Service};
use crate::wal::ReadBatch;
use flate2::write::GzEncoder;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use sha2::Sha256;
use std::io::Write;
use std::time::Duration;

/// Posts batches to one endpoint.
pub struct HttpService {
    settings: HttpSettings,
    client: reqwest::Client,
    headers: HeaderMap,
    /// Prefix of the idempotency key: the same batch retried carries the same key.
    key_prefix: String,
}

/// Most bytes of a refusing response's body that are logged.
const BODY_SHOWN: usize = 256;

impl HttpService {
    pub fn new(settings: HttpSettings, sink_id: &str, host: &str) -> Result<HttpService, String> {
        let client = reqwest::Client::builder().timeout(settings.sink.timeout).build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
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
        Ok(HttpService { settings, client, headers, key_prefix: format!("{host}/{sink_id}/") })
    }

    fn body(&self, lines: &[u8]) -> std::io::Result<Vec<u8>> {
        if !self.settings.sink.gzip {
            return Ok(lines.to_vec());
        }
        let mut gz = GzEncoder::new(Vec::with_capacity(lines.len() / 4), flate2::Compression::fast());
        gz.write_all(lines)?;
        gz.finish()
    }
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

/// Retry-After in seconds (the HTTP-date form is rare from APIs and read as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Service for HttpService {
    async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError> {
        let body = self.body(&batch.lines).map_err(|e| SendError::retry(format!("compressing the batch failed: {e}")))?;
        let mut req = self.client.post(&self.settings.sink.url).headers(self.headers.clone());
        if let Some(key) = &self.settings.sink.hmac_key {
            req = req.header(self.settings.sink.signature_header.as_str(), signature(key.expose().as_bytes(), &body));
        }
        // The same records always make the same batch key, so a receiver can drop a retry of
        // a batch it already stored.
        req = req.header("idempotency-key", format!("{}{}-{}", self.key_prefix, batch.first, batch.end));
        let resp = req.body(body).send().await.map_err(|e| SendError::retry(format!("POST {} failed: {e}", self.settings.sink.url)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Delivered::Durable);
        }
        let after = retry_after(resp.headers());
        let text = resp.bytes().await.unwrap_or_default();
        let shown = String::from_utf8_lossy(&text[..text.len().min(BODY_SHOWN)]).into_owned();
        let reason = format!("{} answered {status}: {shown}", self.settings.sink.url);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
            Err(SendError::Retry { reason, after })
        } else {
            Err(SendError::Reject { reason })
        }
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
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
    }
}
