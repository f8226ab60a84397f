//! The one configuration of the telemetry agent, written in KDL in the shape of the proxy's own
//! agent blocks (`agent "telemetry" { transport … sampling … sink … }`). This crate turns a file
//! into a validated [`Config`] or into every error it holds, each with its line, column, what was
//! expected and, where known, the fix. KDL v2 is read, and v1 (`true` instead of `#true`) too.
//!
//! The collector reads all of it; the part that shapes events inside the proxy ([`FilterPart`])
//! is what the host hands to the filter.

mod document;
mod env;
mod error;
pub mod ip;
mod model;
mod schema;

pub use env::Secret;
pub use error::{ConfigError, ConfigErrors};
pub use model::{
    ClientIp, Config, DeviceDetection, DynamicSampling, Enrichment, EventKind, GeoIp, GeoLayout, AsnData, ThreatIntel, ThreatList, ThreatKind, ThreatWeights, FailureMode, FileSink, FilterPart, KafkaSink, Buffer, ClickHouseSink, Delivery, FileFormat, FsyncPolicy, HttpSink, ObjectFormat, S3Sink, ValueFormat, WhenFull, LogFormat, Redaction, RedactionMode, Logging, Metrics, Sampling, Sink,
    SinkKind, Transport,
};

/// Reads and validates a configuration file.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single(ConfigError::unplaced(format!("cannot read {}: {e}", path.display()))))?;
    parse(&path.display().to_string(), &text)
}

/// Parses and validates configuration text; `name` is how errors refer to it (a file name).
pub fn parse(name: &str, text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(name, text, &|k| std::env::var(k).ok())
}

/// As [`parse`], with environment variables looked up through `env` (tests pass their own).
pub fn parse_with_env(name: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let doc = document::parse(name, text)?;
    schema::read(&doc, env).map_err(|errors| errors.named(name))
}
