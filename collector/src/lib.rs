//! The collector daemon's library: everything `sentinel-collector` runs, as parts that read in
//! the order data flows through them.
//!
//! - [`ingest`]: listeners that receive frames from proxies (the unix socket).
//! - [`pipeline`]: what happens to each event between ingest and sinks (decode, enrich, encode),
//!   on worker threads.
//! - [`sample`]: the collector's consistent and dynamic sampling.
//! - [`redact`]: PII and secrets removed before any sink sees an event.
//! - [`enrich`]: geo, ASN, device and threat data, and the client address they are looked up for.
//! - [`wal`]: the write-ahead log every processed batch is made durable in before it is
//!   acknowledged; each sink reads it from its own cursor.
//! - [`sink`]: where events end up (files, Kafka, ClickHouse, S3, HTTP), each on its own thread
//!   with batching, retries and a circuit breaker.
//! - [`huge_pages`]: the daemon's memory kept off transparent huge pages (allocation churn).
//! - [`direct_io`]: files written and read around the page cache in whole blocks (the log, and
//!   the file sink's output).
//! - [`cache`]: the bounded per-worker cache the enrichers and redaction keep their answers in.
//! - [`metrics`] and [`admin`]: the daemon's own counters and its HTTP endpoint.
//! - [`tap`]: a live, filtered view of the events passing through, for a terminal.
//! - [`config`] and [`reload`]: the daemon's settings from the KDL file, and live reload of it.
//! - [`daemon`]: assembles the parts and runs them until SIGTERM/SIGINT.

pub mod admin;
pub mod cache;
pub mod config;
pub mod daemon;
pub mod direct_io;
pub mod enrich;
pub mod huge_pages;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod redact;
pub mod reload;
pub mod sample;
pub mod sink;
pub mod tap;
pub mod utc;
pub mod wal;

pub use daemon::{Daemon, DaemonConfig, Reload, Summary};
