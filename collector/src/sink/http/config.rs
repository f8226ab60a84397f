//! The HTTP sink's settings, checked before it starts.

use sentinel_config::HttpSink;

/// What the HTTP sink sends where.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub sink: HttpSink,
}

impl HttpSettings {
    /// Refuses settings a request could never be built from (a header name or value that is
    /// not valid HTTP), so the error shows at start and not as endless retries.
    pub fn check(sink: &HttpSink) -> Result<HttpSettings, String> {
        reqwest::Url::parse(&sink.url).map_err(|e| format!("url {:?}: {e}", sink.url))?;
        for (k, v) in sink.headers.iter().map(|(k, v)| (k, v.expose())).chain([(&sink.signature_header, "x")]) {
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("{k:?} is not a valid header name"))?;
            reqwest::header::HeaderValue::from_str(v).map_err(|_| format!("the value of header {k:?} is not valid in HTTP"))?;
        }
        Ok(HttpSettings { sink: sink.clone() })
    }
}
