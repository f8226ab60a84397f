//! The S3 sink's settings: the store's client, built from the config and, for what it leaves
//! out, the standard AWS environment variables.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, RetryConfig};
use sentinel_config::S3Sink;
use std::time::Duration;

/// The checked settings.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub sink: S3Sink,
}

impl S3Settings {
    pub fn check(sink: &S3Sink) -> Result<S3Settings, String> {
        let s = S3Settings { sink: sink.clone() };
        s.store()?;
        Ok(s)
    }

    /// The client. Its own retries are kept short: the sink's driver retries with backoff and
    /// a circuit breaker, and must hear about a failure promptly.
    pub fn store(&self) -> Result<AmazonS3, String> {
        let s = &self.sink;
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&s.bucket).with_region(&s.region).with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 1,
            retry_timeout: Duration::from_secs(30),
        });
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://")).with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret.expose());
        }
        b.build().map_err(|e| format!("S3 client settings: {e}"))
    }
}
