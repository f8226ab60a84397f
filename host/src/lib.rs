//! What a proxy embeds to run the telemetry filter: one wasmtime engine, the filter component
//! compiled once (and cached on disk), an instance per filter thread with a CPU deadline and a
//! memory limit, hot reload of the `.wasm`, and the bounded non-blocking channel to the collector.
//!
//! The proxy builds an [`Exchange`] per finished request and hands it to
//! [`TelemetryHost::on_request`], which only queues it: the filter runs on the host's filter
//! thread, in batches of whatever has accumulated. That call never fails and never blocks: a
//! filter that traps, loops or runs out of memory is contained and counted (fail-open), and a
//! full queue drops the request's event with a counter rather than wait.

mod bindings {
    wasmtime::component::bindgen!({ world: "filter", path: "../wit", additional_derives: [PartialEq] });
}
mod channel;
mod compile;
mod config;
mod deadline;
mod filter_thread;
mod handoff;
mod metrics;
mod reload;
mod ring;
mod runtime;
mod splice;
mod ticker;
mod host;

pub use bindings::sentinel::telemetry::types::{Exchange, FilterConfig, Outcome};
pub use channel::ChannelConfig;
pub use config::{FilterSettings, HostConfig};
pub use deadline::thread_cpu_time;
pub use host::{HostError, TelemetryHost};
pub use metrics::{DropReason, Metrics};
pub use reload::watch_file;
pub use sentinel_wire::head::{HeadWriter, Tag};
