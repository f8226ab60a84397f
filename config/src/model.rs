//! The validated configuration: what every part of the agent reads. Defaults live here, so a
//! missing node and an absent block mean the same thing everywhere.

use crate::env::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole agent configuration (one `agent "telemetry" { … }` block).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The block's name (`agent "telemetry"`), used in logs and metrics labels.
    pub name: String,
    pub transport: Transport,
    /// Which parts of an exchange the proxy hands over.
    pub events: Vec<EventKind>,
    /// The proxy's budget for one call to the filter.
    pub timeout: Duration,
    pub failure_mode: FailureMode,
    pub filter: FilterPart,
    pub sampling: Sampling,
    pub enrichment: Enrichment,
    pub sinks: Vec<Sink>,
    pub metrics: Metrics,
    pub log: Logging,
}

/// Where proxies reach the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    pub socket_path: PathBuf,
    /// Largest frame accepted; larger ones are counted and skipped.
    pub max_frame_bytes: usize,
}

/// Parts of an exchange the proxy hands to the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    RequestHeaders,
    ResponseHeaders,
    RequestBody,
    ResponseBody,
}

impl EventKind {
    pub const ALL: [(&'static str, EventKind); 4] = [
        ("request_headers", EventKind::RequestHeaders),
        ("response_headers", EventKind::ResponseHeaders),
        ("request_body", EventKind::RequestBody),
        ("response_body", EventKind::ResponseBody),
    ];
}

/// What the proxy does when the agent cannot take an event: `open` lets the request go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    Open,
    Closed,
}

/// What the filter does inside the proxy: handed to it by the host.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPart {
    /// Headers kept (empty: the filter's defaults).
    pub header_allowlist: Vec<String>,
    /// Headers masked besides the built-in credential headers.
    pub masked_headers: Vec<String>,
    /// Body bytes captured per direction (0: none). Needs the matching `events`.
    pub body_capture_bytes: u32,
}

/// Head sampling (in the filter) and its error rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub rate: f64,
    /// Keep every 5xx whatever the rate.
    pub always_sample_errors: bool,
    /// Keep every 4xx too.
    pub always_sample_client_errors: bool,
}

/// Which enrichers run in the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrichment {
    pub geoip: bool,
    pub asn: bool,
    pub device_detection: bool,
    pub threat_intel: bool,
}

/// One output, named by its kind and an optional id (`sink "file" id="archive"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    /// Unique among sinks: the id, else the kind.
    pub id: String,
    pub kind: SinkKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    File(FileSink),
    Kafka(KafkaSink),
}

/// Rotating NDJSON files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    pub dir: PathBuf,
    pub rotate_bytes: u64,
    pub rotate_after: Duration,
    /// Rotated files kept (0: all).
    pub keep_files: usize,
}

/// A Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSink {
    pub brokers: Vec<String>,
    pub topic: String,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// The agent's own HTTP endpoint: `/metrics`, `/health/live`, `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub listen: Option<SocketAddr>,
}

/// The agent's own logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// A tracing filter (`info`, `sentinel_collector=debug`); `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "telemetry".into(),
            transport: Transport {
                socket_path: "/run/sentinel/telemetry.sock".into(),
                max_frame_bytes: 1 << 20,
            },
            events: vec![EventKind::RequestHeaders, EventKind::ResponseHeaders],
            timeout: Duration::from_millis(10),
            failure_mode: FailureMode::Open,
            filter: FilterPart { header_allowlist: Vec::new(), masked_headers: Vec::new(), body_capture_bytes: 0 },
            sampling: Sampling { rate: 1.0, always_sample_errors: true, always_sample_client_errors: false },
            enrichment: Enrichment { geoip: false, asn: false, device_detection: false, threat_intel: false },
            sinks: Vec::new(),
            metrics: Metrics { listen: None },
            log: Logging { level: "info".into(), format: LogFormat::Text },
        }
    }
}

impl FileSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink { dir: dir.into(), rotate_bytes: 256 << 20, rotate_after: Duration::from_secs(3600), keep_files: 24 }
    }
}
