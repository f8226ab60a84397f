//! What the proxy side and the collector agree on, in one crate that builds for both
//! `wasm32-wasip2` (the filter) and native targets (host, collector).
//!
//! - [`ascii`]: word-at-a-time ASCII and UTF-8 checks, for encoding and decoding strings.
//! - [`head`]: the packed buffer in which the host hands a request's strings and headers to the
//!   filter in one piece (one guest allocation instead of one per string).
//! - [`event`]: the event schema (v1), encoded as MessagePack by the filter and decoded by the
//!   collector, with the dotted names of the schema as nested maps.
//! - [`frame`]: how events travel on the unix socket: a stream hello, then length-prefixed frames.
//! - [`prometheus`]: the metrics text format every component serves.
//! - [`sampling`]: the consistent-by-request-id sampling decision shared by filter and collector.
//! - [`stats`]: the host's counters, sent to the collector to be served with its own.

pub mod ascii;
pub mod event;
pub mod frame;
pub mod head;
pub mod prometheus;
pub mod sampling;
pub mod stats;

pub use event::{Event, SCHEMA_VERSION};
