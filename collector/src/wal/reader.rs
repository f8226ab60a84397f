//! One sink's view of the log: reads whole records from its position up to what the writer
//! has published, crossing segments, and follows the floor up when `drop_oldest` deleted
//! records it had not read.

use super::segment::{Next, SegmentReader};
use super::Wal;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::watch;

/// Records read for delivery: their NDJSON lines back to back, and the position after them.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Sequence number of the first record read (meaningful when `records > 0`).
    pub first: u64,
    /// The cursor to commit once these are delivered.
    pub end: u64,
    pub records: u32,
    pub events: u64,
    pub lines: Vec<u8>,
}

impl ReadBatch {
    pub fn clear(&mut self) {
        self.records = 0;
        self.events = 0;
        self.lines.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The events, one JSON document each.
    pub fn lines(&self) -> Lines<'_> {
        Lines::new(&self.lines)
    }
}

/// The non-empty lines of a batch, found with a vectorised newline search (a byte-by-byte split
/// cost every sink a pass over each ~1 KB line).
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    /// The lines of any NDJSON text.
    pub fn new(text: &'a [u8]) -> Self {
        Lines { rest: text }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (line, rest) = match memchr::memchr(b'\n', self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            if !line.is_empty() {
                return Some(line);
            }
        }
        None
    }
}

/// Reads the log for one sink.
pub struct Reader {
    wal: Wal,
    id: String,
    next: u64,
    seg: Option<(u64, SegmentReader)>,
    durable: watch::Receiver<u64>,
    /// `next`, shared with the log (see `State::read`).
    read: Arc<AtomicU64>,
}

/// A sink that stops leaves its cursor file up to date.
impl Drop for Reader {
    fn drop(&mut self) {
        self.close_segment();
        self.wal.store_cursor(&self.id);
    }
}

impl Reader {
    pub(super) fn new(wal: Wal, id: String, next: u64, durable: watch::Receiver<u64>, read: Arc<AtomicU64>) -> Reader {
        Reader { wal, id, next, seg: None, durable, read }
    }

    pub fn sink_id(&self) -> &str {
        &self.id
    }

    /// The log this reader reads.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The next sequence number this reader will read.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Reads again from `next` (at or after the sink's cursor: the log still holds it).
    pub fn rewind(&mut self, next: u64) {
        self.next = next;
        self.close_segment();
        self.read.store(next, Relaxed);
    }

    /// Lets go of the open segment (and so of the log's pin on it).
    fn close_segment(&mut self) {
        if self.seg.take().is_some() {
            self.wal.unpin(&self.id);
        }
    }

    /// True when the writer has published records this reader has not read.
    pub fn has_more(&self) -> bool {
        *self.durable.borrow() > self.next
    }

    /// Waits until there is something to read; returns false once the writer is gone and
    /// everything it wrote has been read.
    pub async fn wait(&mut self) -> bool {
        loop {
            if self.has_more() {
                return true;
            }
            if self.durable.changed().await.is_err() {
                return self.has_more();
            }
        }
    }

    /// Appends whole records to `out` until it holds `max_events` events or `max_bytes` bytes
    /// (at least one record if any is readable), or nothing more is published.
    ///
    /// The segment being read is pinned for the call, so the log never hands its file to the
    /// writer meanwhile. Between calls the reader keeps the file open unpinned; a segment that
    /// was retired in between is let go at the next call (its records were all delivered).
    pub fn read(&mut self, max_events: u64, max_bytes: usize, out: &mut ReadBatch) -> std::io::Result<()> {
        if let Some((first, seg)) = &mut self.seg {
            match self.wal.pin(&self.id, *first) {
                Some(written) => seg.set_readable(written),
                None => self.seg = None,
            }
        }
        let result = self.read_records(max_events, max_bytes, out);
        self.wal.unpin(&self.id);
        // Published on every exit, errors included: what `out` holds is in the sink's hands.
        self.read.store(self.next, Relaxed);
        result
    }

    fn read_records(&mut self, max_events: u64, max_bytes: usize, out: &mut ReadBatch) -> std::io::Result<()> {
        let durable = *self.durable.borrow();
        if out.records == 0 {
            out.end = self.next;
        }
        while self.next < durable && (out.records == 0 || (out.events < max_events && out.lines.len() < max_bytes)) {
            let floor = self.wal.floor();
            if self.next < floor {
                self.next = floor;
                self.close_segment();
                out.end = out.end.max(floor);
                continue;
            }
            let (first, seg) = match &mut self.seg {
                Some((first, seg)) => (*first, seg),
                None => {
                    let Some((first, opened)) = self.wal.open_segment(&self.id, self.next) else { break };
                    let seg = match opened {
                        Ok(s) => s,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            // Just dropped (the floor moved), or lost while still listed: then
                            // it is forgotten, so this never spins.
                            self.wal.forget_missing(first);
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let (_, seg) = self.seg.insert((first, seg));
                    (first, seg)
                }
            };
            let at = out.lines.len();
            match seg.next_into(&mut out.lines)? {
                Next::Record(h) if h.seq < self.next => out.lines.truncate(at), // before this reader's position
                Next::Record(h) if h.seq >= durable => {
                    // Written but not yet published: come back to it from the start next time.
                    out.lines.truncate(at);
                    self.close_segment();
                    break;
                }
                Next::Record(h) => {
                    if out.records == 0 {
                        out.first = h.seq;
                    }
                    out.records += 1;
                    out.events += u64::from(h.events);
                    self.next = h.seq + 1;
                    out.end = self.next;
                }
                Next::Corrupt => {
                    self.wal.shared.metrics.wal.corrupt_records.fetch_add(1, Relaxed);
                    tracing::warn!(sink = %self.id, "a corrupt buffer record skipped");
                }
                Next::End { torn } => {
                    if torn {
                        self.wal.shared.metrics.wal.corrupt_records.fetch_add(1, Relaxed);
                    }
                    match self.wal.after(first) {
                        Some(next_first) => {
                            self.next = self.next.max(next_first);
                            out.end = out.end.max(self.next);
                            self.close_segment();
                        }
                        None => {
                            // The end of the writer's segment: published records are all read.
                            self.close_segment();
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_the_non_empty_pieces_between_newlines() {
        let lines = |text: &[u8]| ReadBatch { lines: text.to_vec(), ..ReadBatch::default() }.lines().map(<[u8]>::to_vec).collect::<Vec<_>>();
        assert_eq!(lines(b"{\"a\":1}\n\n{\"b\":2}\n{\"c\":3}"), [b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec(), b"{\"c\":3}".to_vec()]);
        assert_eq!(lines(b"one\n"), [b"one".to_vec()]);
        assert!(lines(b"").is_empty());
        assert!(lines(b"\n\n").is_empty());
    }
}
