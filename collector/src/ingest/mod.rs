//! Ingest: listeners that receive frames from proxies and hand them, a batch per read, to the
//! pipeline workers.

pub mod ack;
pub mod unix;

/// The most one socket read takes, so the most frames' bytes one batch for the pipeline holds.
pub const READ_BYTES: usize = 64 << 10;

use ack::Ack;

/// Event frames from one read of one connection: what ingest hands to the pipeline. Ingest
/// hands over the buffer it read into, and the frames are spans of it (their headers, and
/// any other frames, lie between them), so a frame's bytes are not copied on the way.
#[derive(Debug, Default)]
pub struct Frames {
    data: Vec<u8>,
    /// Where each event frame's payload lies in `data`.
    spans: Vec<(usize, usize)>,
    payload_bytes: usize,
    /// Completed once the frames' events are durable, so the proxy can forget them.
    pub ack: Option<Ack>,
    /// The frames' share of the bytes allowed between the socket and the log; given back when
    /// their batch is in the log (or dropped).
    pub held: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Frames {
    /// Appends a copy of `payload` (for frames that do not come from a read buffer).
    pub fn push(&mut self, payload: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.spans.push((start, self.data.len()));
        self.payload_bytes += payload.len();
    }

    /// Notes that bytes `start..end` of the buffer these frames will own are a payload.
    pub fn span(&mut self, start: usize, end: usize) {
        self.spans.push((start, end));
        self.payload_bytes += end - start;
    }

    /// Takes the buffer the spans point into.
    pub fn own(&mut self, data: Vec<u8>) {
        debug_assert!(self.data.is_empty() && self.spans.iter().all(|&(_, e)| e <= data.len()));
        self.data = data;
    }

    /// Copies the payloads the spans point to out of `buf`, back to back, instead of taking it
    /// (for a small read: a queued batch then holds only its payloads, not a read buffer).
    pub fn copy_from(&mut self, buf: &[u8]) {
        debug_assert!(self.data.is_empty());
        let spans = std::mem::take(&mut self.spans);
        self.data.reserve_exact(std::mem::take(&mut self.payload_bytes));
        for (start, end) in spans {
            self.push(&buf[start..end]);
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes of all payloads together.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Bytes these frames hold in memory (the buffer they own, or their payloads).
    pub fn bytes(&self) -> usize {
        self.data.capacity().max(self.payload_bytes)
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|&(s, e)| &self.data[s..e])
    }
}

/// Processed records: NDJSON lines and how many there are. What the pipeline hands to the log.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<u8>,
    pub events: u64,
    /// CRC-32 of `lines`, computed by the worker that wrote them while they are in its cache
    /// (the log's record checksum is built from it); without it the log writer computes it.
    pub lines_crc: Option<u32>,
    /// The acknowledgement of the frames this batch came from.
    pub ack: Option<Ack>,
    /// The frames' share of the byte budget, held until the batch is in the log.
    pub held: Option<tokio::sync::OwnedSemaphorePermit>,
}
