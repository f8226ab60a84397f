//! The write-ahead log between the pipeline and the sinks: what makes "accepted" mean durable.
//!
//! Processed batches (already redacted: nothing else ever touches disk) are appended as
//! checksummed records to segment files, synced per the fsync policy, and only then
//! acknowledged to the proxies. Every sink reads the log through its own [`Reader`] and moves
//! its own cursor once a batch is delivered; a segment every sink is past is kept as a spare
//! (up to a quarter of the cap, see [`WalConfig::spares`]) for the writer to reuse, or else
//! deleted. Reusing a file writes over pages the page cache already holds and blocks the file
//! system already allocated, so a sync need not commit new metadata (PostgreSQL recycles its
//! log for the same reason).
//! A size cap bounds the log, with an explicit policy past it: `block` (stop acknowledging, so
//! proxies hold and then drop with a counter) or `drop_oldest` (delete the oldest segment, counted
//! per sink). Damage is counted and skipped, never fatal: a corrupt record costs that record (the
//! next good header is found by its own checksum), a segment that cannot be read at all is set
//! aside and every sink moves past it, and a sink whose cursor file cannot be read starts again
//! from the oldest record (duplicates, never loss).

pub mod cursor;
pub mod intake;
mod reader;
pub mod record;
mod segment;
mod writer;

pub use reader::{Lines, ReadBatch, Reader};
pub use record::Payload;
pub use writer::{AppendError, Stopping, Writer};

use crate::metrics::Metrics;
use segment::{Next, SegmentReader};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::watch;

/// How often at most a delivering sink's cursor file is rewritten. A crash can make a sink
/// deliver up to this much again (duplicates, never loss); the file is also brought up to date
/// when the sink goes idle and when it stops. Rewriting it on every batch cost a fifth of the
/// collector's CPU at 15k events/s.
const CURSOR_STORE_EVERY: Duration = Duration::from_millis(100);

/// What the writer does when the log is at its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for the sinks to free space; meanwhile nothing new is acknowledged.
    Block,
    /// Delete the oldest segment, whether or not every sink has it; the loss is counted.
    DropOldest,
}

/// When appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every group of batches, before they are acknowledged.
    Batch,
    /// At most this long after a write; batches are acknowledged once written (they survive
    /// the process dying, not the machine).
    Interval(Duration),
}

/// Settings of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this many bytes.
    pub segment_bytes: u64,
    /// Most bytes of segments kept, spares included; at least two segments' worth.
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: Fsync,
    /// Segments written and read with direct I/O (around the page cache) where the file system
    /// allows it; see [`crate::direct_io`].
    pub direct_io: bool,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig { dir: dir.into(), segment_bytes: 64 << 20, max_bytes: 1 << 30, when_full: WhenFull::Block, fsync: Fsync::Batch, direct_io: true }
    }

    /// Most delivered segments kept for reuse: a quarter of the cap's worth, 1 to 8. When the
    /// sinks keep up, one is waiting at each roll; the rest cover sinks that fell a few
    /// segments behind in a burst (4 with the defaults).
    pub fn spares(&self) -> usize {
        usize::try_from(self.max_bytes / 4 / self.segment_bytes.max(1)).unwrap_or(8).clamp(1, 8)
    }
}

/// Why the log cannot be opened.
#[derive(Debug, Error)]
pub enum WalError {
    #[error("buffer directory {}: {source}", dir.display())]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error("buffer segment {}: {source}", path.display())]
    Segment { path: PathBuf, source: std::io::Error },
}

/// One segment as the log keeps track of it.
#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    bytes: u64,
    /// `(seq, events)` of every good record, in order.
    records: Vec<(u64, u32)>,
}

impl Segment {
    /// One past the last record's sequence number.
    fn end(&self) -> u64 {
        self.records.last().map_or(self.first, |r| r.0 + 1)
    }

    /// Events in records at or after `seq`.
    fn events_from(&self, seq: u64) -> u64 {
        let i = self.records.partition_point(|r| r.0 < seq);
        self.records[i..].iter().map(|r| u64::from(r.1)).sum()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first; the last one is the writer's.
    segments: VecDeque<Segment>,
    cursors: BTreeMap<String, u64>,
    /// Each sink's cursor as last written to its file, and when.
    stored: BTreeMap<String, (u64, Instant)>,
    /// How far each sink's reader has read: records between its cursor and here are in the
    /// sink's hands and get delivered even if their segment is dropped.
    read: BTreeMap<String, Arc<AtomicU64>>,
    /// The segment (by its first sequence number) each sink's reader has open: such a segment
    /// is deleted, never reused, since the reader could read the new records as old ones.
    pins: BTreeMap<String, u64>,
    /// Bytes of the live segments.
    bytes: u64,
    /// Delivered segment files waiting to be reused, and their bytes.
    spares: Vec<(PathBuf, u64)>,
    spare_bytes: u64,
}

impl State {
    /// Takes the newest spare out of the count; the caller reuses or deletes its file.
    fn pop_spare(&mut self) -> Option<PathBuf> {
        let (path, bytes) = self.spares.pop()?;
        self.spare_bytes -= bytes;
        Some(path)
    }
}

struct Shared {
    cfg: WalConfig,
    cursor_dir: PathBuf,
    state: Mutex<State>,
    /// Signalled whenever segments are deleted (a blocked writer waits on it).
    space: Condvar,
    /// One past the newest record sinks may read (the writer holds the sender; when it is
    /// gone, readers finish what is published and end).
    durable: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
}

/// A handle on the log, shared by the writer and every sink's reader. Cheap to clone.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
}

impl Wal {
    /// Opens (or creates) the log in `cfg.dir`, recovering what a previous run left: every
    /// segment is scanned, corrupt records are counted and skipped, a torn tail is cut off.
    /// Returns the handle and the one writer.
    pub fn open(cfg: WalConfig, metrics: Arc<Metrics>) -> Result<(Wal, Writer), WalError> {
        let dir_err = |source| WalError::Dir { dir: cfg.dir.clone(), source };
        let cursor_dir = cfg.dir.join("cursors");
        std::fs::create_dir_all(&cursor_dir).map_err(dir_err)?;
        let names: Vec<String> = std::fs::read_dir(&cfg.dir).map_err(dir_err)?.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
        let mut firsts: Vec<u64> = names.iter().filter_map(|n| segment::parse_name(n)).collect();
        firsts.sort_unstable();
        let (cursors, unreadable) = cursor::load_all(&cursor_dir).map_err(dir_err)?;
        let mut state = State { cursors, ..State::default() };
        for name in names.iter().filter(|n| segment::is_spare(n)) {
            let path = cfg.dir.join(name);
            match std::fs::metadata(&path) {
                Ok(m) if state.spares.len() < cfg.spares() && state.spare_bytes + m.len() <= cfg.max_bytes => {
                    state.spare_bytes += m.len();
                    state.spares.push((path, m.len()));
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        for (i, first) in firsts.iter().enumerate() {
            let next_first = firsts.get(i + 1).copied();
            if let Some(seg) = recover(&cfg, *first, next_first, &metrics)? {
                state.bytes += seg.bytes;
                state.segments.push_back(seg);
            }
        }
        let end = state.segments.back().map_or(0, Segment::end);
        // A sink whose cursor could not be read delivers everything still buffered again.
        let oldest = state.segments.front().map_or(end, |s| s.first);
        for id in unreadable {
            state.cursors.entry(id).or_insert(oldest);
        }
        let next = state.cursors.values().copied().max().unwrap_or(0).max(end);
        let (publish, durable) = watch::channel(next);
        let shared = Arc::new(Shared { cfg, cursor_dir, state: Mutex::new(state), space: Condvar::new(), durable, metrics });
        let wal = Wal { shared };
        let writer = Writer::start(wal.clone(), next, publish)?;
        {
            let st = wal.lock();
            wal.publish_files(&st);
        }
        Ok((wal, writer))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &WalConfig {
        &self.shared.cfg
    }

    /// One past the newest record sinks may read now.
    pub fn durable(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// Starts reading for sink `id` from its cursor. A sink never seen before starts at the
    /// end of the log: it gets what is accepted from now on.
    pub fn attach(&self, id: &str) -> Reader {
        let (start, read) = {
            let mut st = self.lock();
            let end = self.durable();
            let start = *st.cursors.entry(id.to_string()).or_insert(end);
            // A cursor past the end (the log was wiped) starts at the end.
            let start = start.min(end);
            st.cursors.insert(id.to_string(), start);
            let read = Arc::new(AtomicU64::new(start));
            st.read.insert(id.to_string(), read.clone());
            self.store(&mut st, id, start);
            (start, read)
        };
        Reader::new(self.clone(), id.to_string(), start, self.shared.durable.clone(), read)
    }

    /// Forgets sink `id` (it was removed from the configuration): it no longer holds segments.
    pub fn detach(&self, id: &str) {
        let mut st = self.lock();
        st.cursors.remove(id);
        st.stored.remove(id);
        st.read.remove(id);
        st.pins.remove(id);
        cursor::remove(&self.shared.cursor_dir, id);
        self.shared.metrics.sink(id).lag_records.store(0, Relaxed);
        self.collect(&mut st);
    }

    /// Forgets every cursor but those of `ids` (sinks removed while the collector was down).
    pub fn retain_sinks(&self, ids: &[&str]) {
        let stale: Vec<String> = self.lock().cursors.keys().filter(|k| !ids.contains(&k.as_str())).cloned().collect();
        for id in stale {
            tracing::info!(sink = %id, "the sink is no longer configured; its buffer cursor is removed");
            self.detach(&id);
        }
    }

    /// Sink `id` has delivered every record before `next`: its cursor moves, and segments every
    /// sink is past are deleted.
    pub fn commit(&self, id: &str, next: u64) {
        let due = {
            let mut st = self.lock();
            let Some(c) = st.cursors.get_mut(id) else { return };
            if next <= *c {
                return;
            }
            *c = next;
            let due = st.stored.get(id).is_none_or(|(_, at)| at.elapsed() >= CURSOR_STORE_EVERY);
            if due {
                st.stored.insert(id.to_string(), (next, Instant::now()));
            }
            self.collect(&mut st);
            self.publish_lag(&st, self.durable());
            due
        };
        // Written and synced outside the lock: the log's writer never waits for a sink's cursor.
        if due {
            if let Err(e) = cursor::store(&self.shared.cursor_dir, id, next) {
                tracing::warn!(sink = %id, "cannot store the sink's buffer cursor: {e}");
                self.lock().stored.remove(id);
            }
        }
    }

    /// Writes sink `id`'s cursor to its file if the file is behind (the sink went idle or
    /// stops).
    pub fn store_cursor(&self, id: &str) {
        let mut st = self.lock();
        let Some(&c) = st.cursors.get(id) else { return };
        if st.stored.get(id).is_none_or(|(s, _)| *s != c) {
            self.store(&mut st, id, c);
        }
    }

    fn store(&self, st: &mut State, id: &str, seq: u64) {
        match cursor::store(&self.shared.cursor_dir, id, seq) {
            Ok(()) => {
                st.stored.insert(id.to_string(), (seq, Instant::now()));
            }
            Err(e) => tracing::warn!(sink = %id, "cannot store the sink's buffer cursor: {e}"),
        }
    }

    /// Records sink `id` has not delivered yet.
    pub fn lag(&self, id: &str) -> u64 {
        let c = self.lock().cursors.get(id).copied().unwrap_or(0);
        self.durable().saturating_sub(c)
    }

    /// Sets every sink's lag gauge (records published and not yet delivered).
    fn publish_lag(&self, st: &State, durable: u64) {
        for (id, c) in &st.cursors {
            self.shared.metrics.sink(id).lag_records.store(durable.saturating_sub(*c), Relaxed);
        }
    }

    /// The oldest sequence number still in the log.
    fn floor(&self) -> u64 {
        let st = self.lock();
        st.segments.front().map_or_else(|| self.durable(), |s| s.first)
    }

    /// Opens, for sink `id`'s reader, the segment holding `seq` (the newest segment that starts
    /// at or before it) and pins it until [`Wal::unpin`]: opened under the lock, so the segment
    /// cannot become a spare between being found and being opened.
    fn open_segment(&self, id: &str, seq: u64) -> Option<(u64, std::io::Result<SegmentReader>)> {
        let mut st = self.lock();
        let s = st.segments.iter().rev().find(|s| s.first <= seq).or(st.segments.front())?;
        let first = s.first;
        let opened = SegmentReader::open(&s.path, first, s.bytes, self.shared.cfg.direct_io);
        if opened.is_ok() {
            st.pins.insert(id.to_string(), first);
        }
        Some((first, opened))
    }

    /// A listed segment's file is gone (removed by hand, or lost): it is dropped from the log,
    /// counted, and every sink moves past it.
    fn forget_missing(&self, first: u64) {
        let mut st = self.lock();
        let Some(i) = st.segments.iter().position(|s| s.first == first) else { return };
        if i + 1 == st.segments.len() {
            return; // the writer's own: its next append fails and says so
        }
        if let Some(s) = st.segments.remove(i) {
            tracing::error!("buffer segment {} is gone; its {} records are lost and every sink moves past them", s.path.display(), s.records.len());
            self.shared.metrics.wal.corrupt_records.fetch_add(s.records.len().max(1) as u64, Relaxed);
            st.bytes -= s.bytes;
            let end = s.end();
            let behind: Vec<String> = st.cursors.iter().filter(|(_, c)| **c < end && **c >= s.first).map(|(k, _)| k.clone()).collect();
            for id in behind {
                st.cursors.insert(id.clone(), end);
            }
            self.publish_files(&st);
        }
    }

    /// Pins, for sink `id`'s reader, the segment it kept open since its last read, and returns
    /// how many of its bytes are written; `None` when that segment was retired meanwhile (its
    /// file may now be a spare or another segment).
    fn pin(&self, id: &str, first: u64) -> Option<u64> {
        let mut st = self.lock();
        let written = st.segments.iter().find(|s| s.first == first)?.bytes;
        st.pins.insert(id.to_string(), first);
        Some(written)
    }

    /// Sink `id`'s reader is done with its segment for now.
    fn unpin(&self, id: &str) {
        self.lock().pins.remove(id);
    }

    /// A spare segment file for the writer, if one waits.
    fn take_spare(&self) -> Option<PathBuf> {
        self.lock().pop_spare()
    }

    /// The segment after the one starting at `first`, if any.
    fn after(&self, first: u64) -> Option<u64> {
        self.lock().segments.iter().find(|s| s.first > first).map(|s| s.first)
    }

    /// Retires segments every sink is past (never the writer's): kept as spares while fewer than
    /// [`WalConfig::spares`] wait and no reader has them open, deleted otherwise. Either way the
    /// bytes on disk do not grow, so the cap holds.
    fn collect(&self, st: &mut State) {
        let min = st.cursors.values().copied().min().unwrap_or(u64::MAX);
        let mut freed = false;
        while st.segments.len() > 1 && st.segments.front().is_some_and(|s| s.end() <= min) {
            if let Some(s) = st.segments.pop_front() {
                let keep = st.spares.len() < self.shared.cfg.spares() && !st.pins.values().any(|f| *f == s.first);
                if keep {
                    self.recycle(st, s);
                } else {
                    self.delete(st, s);
                }
                freed = true;
            }
        }
        if freed {
            self.shared.space.notify_all();
        }
    }

    /// Keeps a delivered segment's file for the writer to reuse (deleted if it cannot be moved).
    fn recycle(&self, st: &mut State, s: Segment) {
        let spare = segment::spare_path(&self.shared.cfg.dir, s.first);
        match std::fs::rename(&s.path, &spare) {
            Ok(()) => {
                st.bytes -= s.bytes;
                st.spare_bytes += s.bytes;
                st.spares.push((spare, s.bytes));
                self.publish_files(st);
            }
            Err(e) => {
                tracing::debug!("cannot keep buffer segment {} for reuse ({e}); deleting it", s.path.display());
                self.delete(st, s);
            }
        }
    }

    fn delete(&self, st: &mut State, s: Segment) {
        if let Err(e) = std::fs::remove_file(&s.path) {
            tracing::warn!("cannot delete buffer segment {}: {e}", s.path.display());
        }
        st.bytes -= s.bytes;
        self.publish_files(st);
    }

    /// Deletes one spare to make room under the cap; false when none is left.
    fn delete_spare(&self, st: &mut State) -> bool {
        let Some(path) = st.pop_spare() else { return false };
        let _ = std::fs::remove_file(&path);
        self.publish_files(st);
        true
    }

    /// Sets the gauges of bytes (spares included) and live segments on disk.
    fn publish_files(&self, st: &State) {
        let m = &self.shared.metrics.wal;
        m.bytes.store(st.bytes + st.spare_bytes, Relaxed);
        m.segments.store(st.segments.len() as u64, Relaxed);
        m.spare_segments.store(st.spares.len() as u64, Relaxed);
    }

    /// The `drop_oldest` policy: deletes the oldest segment even if sinks still need it. Each
    /// sink that had not delivered all of it counts the events it lost and moves past it.
    /// False when only the writer's segment is left.
    fn drop_oldest(&self, st: &mut State) -> bool {
        if st.segments.len() < 2 {
            return false;
        }
        let Some(s) = st.segments.pop_front() else { return false };
        let end = s.end();
        let ids: Vec<String> = st.cursors.iter().filter(|(_, c)| **c < end).map(|(k, _)| k.clone()).collect();
        for id in ids {
            let read = st.read.get(&id).map_or(0, |r| r.load(Relaxed));
            let lost = s.events_from(st.cursors[&id].max(read));
            self.shared.metrics.sink(&id).events_dropped.fetch_add(lost, Relaxed);
            tracing::warn!(sink = %id, events = lost, "buffer full (drop_oldest): the oldest segment was deleted before the sink delivered it");
            st.cursors.insert(id.clone(), end);
            self.store(st, &id, end);
        }
        self.shared.metrics.wal.dropped_segments.fetch_add(1, Relaxed);
        self.delete(st, s);
        true
    }
}

/// Scans one segment left by an earlier run (`next_first`: where the next one starts, `None`
/// for the last). A torn tail of the last segment is cut off so new records never follow
/// garbage; corrupt records are counted and skipped; records at or past the next segment's
/// first (copies a failed sync left behind before the writer moved on) are cut off. A segment
/// that cannot be read at all is set aside as `.corrupt`, counted, and not listed (`None`).
fn recover(cfg: &WalConfig, first: u64, next_first: Option<u64>, metrics: &Metrics) -> Result<Option<Segment>, WalError> {
    let path = segment::path(&cfg.dir, first);
    let last = next_first.is_none();
    let seg_err = |source| WalError::Segment { path: path.clone(), source };
    let mut seg = Segment { first, path: path.clone(), bytes: 0, records: Vec::new() };
    let mut r = match SegmentReader::open(&path, first, u64::MAX, cfg.direct_io) {
        Ok(r) => r,
        Err(e) => {
            // Not even a header: nothing in it can be read. Keep it out of the way, counted.
            tracing::error!("buffer segment {} is unreadable ({e}); set aside as .corrupt, and every sink moves past it", path.display());
            metrics.wal.corrupt_records.fetch_add(1, Relaxed);
            std::fs::rename(&path, path.with_extension("corrupt")).map_err(seg_err)?;
            return Ok(None);
        }
    };
    let mut payload = Vec::new();
    let cut_at = loop {
        payload.clear();
        let before = r.offset();
        match r.next_into(&mut payload).map_err(seg_err)? {
            Next::Record(h) if next_first.is_some_and(|n| h.seq >= n) => {
                tracing::warn!("buffer segment {}: records from {} on are also in the next segment; cut off", path.display(), h.seq);
                break Some(before);
            }
            Next::Record(h) => {
                if seg.records.last().is_some_and(|p| p.0 >= h.seq) {
                    // Out of order: not a record this log wrote here.
                    metrics.wal.corrupt_records.fetch_add(1, Relaxed);
                    continue;
                }
                seg.records.push((h.seq, h.events));
            }
            Next::Corrupt => {
                metrics.wal.corrupt_records.fetch_add(1, Relaxed);
                tracing::warn!("buffer segment {}: a corrupt record before byte {} skipped", path.display(), r.offset());
            }
            Next::End { torn } => {
                if torn {
                    metrics.wal.corrupt_records.fetch_add(1, Relaxed);
                    tracing::warn!("buffer segment {}: unreadable from byte {}{}", path.display(), r.offset(), if last { ", cut off" } else { "" });
                }
                // Cut a torn tail of the last segment so no new record follows garbage, and the
                // end marker or an earlier life's records after a clean end of any segment.
                break (last || !torn).then(|| r.offset());
            }
        }
    };
    if let Some(at) = cut_at {
        let len = std::fs::metadata(&path).map_err(seg_err)?.len();
        if len > at {
            let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(seg_err)?;
            f.set_len(at).map_err(seg_err)?;
            f.sync_all().map_err(seg_err)?;
        }
    }
    seg.bytes = std::fs::metadata(&path).map_err(seg_err)?.len();
    Ok(Some(seg))
}

#[cfg(test)]
mod tests;
