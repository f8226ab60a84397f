//! Ingest: listeners that receive frames from proxies and hand them, a batch per read, to the
//! pipeline workers.

pub mod ack;
pub mod unix;

/// The most one socket read takes, so the most frames' bytes one batch for the pipeline holds.
pub const READ_BYTES: usize = 64 << 10;

use ack::Ack;

/// Event frames from one read of one connection, stored back to back: what ingest hands to the
/// pipeline.
#[derive(Debug, Default)]
pub struct Frames {
    data: Vec<u8>,
    ends: Vec<usize>,
    /// Completed once the frames' events are durable, so the proxy can forget them.
    pub ack: Option<Ack>,
}

impl Frames {
    pub fn push(&mut self, payload: &[u8]) {
        self.data.extend_from_slice(payload);
        self.ends.push(self.data.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All payload bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(s, e)| &self.data[s..e])
    }
}

/// Processed records: NDJSON lines and how many there are. What the pipeline hands to the log.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<u8>,
    pub events: u64,
    /// The acknowledgement of the frames this batch came from.
    pub ack: Option<Ack>,
}
