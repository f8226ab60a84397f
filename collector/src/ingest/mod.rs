//! Ingest: listeners that receive frames from proxies and hand processed batches to the sinks.

pub mod unix;

/// Processed records from one read of one connection: NDJSON lines and how many there are.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<u8>,
    pub events: u64,
}
