//! The log's one writer: appends a group of batches as records in one write, applies the size
//! cap's policy, syncs per the fsync policy, and only then publishes the records to the sinks.
//!
//! Segments start in a spare file when one waits (see [`super::collect`]). Such a file still
//! holds its earlier life past the writer's position, so every group is written followed by an
//! end marker (a header of zeros) that the next group overwrites, and a closed segment is cut
//! to its records. Whatever a reader finds past the marker after a crash has sequence numbers
//! below the segment's first and ends the segment too.

use crate::direct_io::{self as direct, BlockAppender};
use super::record::{self, Payload, HEADER_LEN, SEGMENT_MAGIC};
use super::{segment, Fsync, Segment, Wal, WalError, WhenFull};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The writer gave up waiting for space because the collector is stopping; the batches were
/// not written (and so not acknowledged).
#[derive(Debug, PartialEq, Eq)]
pub struct Stopping;

/// Appends records to the newest segment. Owned by one thread.
pub struct Writer {
    wal: Wal,
    file: File,
    /// The active segment's last partial block and the group being written after it.
    out: BlockAppender,
    /// Bytes in the active segment.
    bytes: u64,
    next: u64,
    records: Vec<(u64, u32)>,
    /// Written but not yet synced (interval policy).
    dirty: bool,
    last_sync: Instant,
    /// The cap was hit and the writer is waiting (counted once per episode).
    blocked: bool,
    /// A sync of the active segment failed: what it held past its last good sync cannot be
    /// trusted, so the next append starts a new segment instead of syncing this one again.
    poisoned: bool,
    publish: watch::Sender<u64>,
}

/// Starts the segment whose first record is `first`, in a spare file when one waits. Returns
/// the file, where its appends go (after the magic), and whether it is written with direct I/O.
fn create(wal: &Wal, first: u64) -> Result<(File, BlockAppender, Segment, bool), WalError> {
    let dir = &wal.shared.cfg.dir;
    let direct_io = wal.shared.cfg.direct_io;
    let path = segment::path(dir, first);
    let err = |source| WalError::Segment { path: path.clone(), source };
    let reused = wal.take_spare().and_then(|spare| match reuse(&spare, &path, direct_io) {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::debug!("cannot reuse buffer segment file {} ({e}); starting a new one", spare.display());
            let _ = std::fs::remove_file(&spare);
            None
        }
    });
    let mut out = BlockAppender::new(&[], 0);
    out.stage(&SEGMENT_MAGIC);
    let (file, is_direct) = match reused {
        Some(opened) => {
            wal.shared.metrics.wal.recycled_segments.fetch_add(1, Relaxed);
            opened
        }
        None => {
            let (file, is_direct) = direct::open(OpenOptions::new().create(true).truncate(true).write(true), &path, direct_io).map_err(err)?;
            out.write(&file, SEGMENT_MAGIC.len() as u64).map_err(err)?;
            file.sync_all().map_err(err)?;
            (file, is_direct)
        }
    };
    // The new name must be durable before any record in the file is acknowledged.
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| WalError::Dir { dir: dir.clone(), source })?;
    let seg = Segment { first, path: path.clone(), bytes: SEGMENT_MAGIC.len() as u64, records: Vec::new() };
    Ok((file, out, seg, is_direct))
}

/// Renames a spare to `path` and opens it for writing over its old records; the magic goes in
/// with the first group (the whole first block is rewritten then).
fn reuse(spare: &Path, path: &Path, direct_io: bool) -> std::io::Result<(File, bool)> {
    std::fs::rename(spare, path)?;
    direct::open(OpenOptions::new().write(true), path, direct_io)
}

impl Writer {
    /// Starts a fresh segment at `next` (segments of earlier runs are never appended to). An
    /// empty last segment of an earlier run is replaced.
    pub(super) fn start(wal: Wal, next: u64, publish: watch::Sender<u64>) -> Result<Writer, WalError> {
        {
            let mut st = wal.lock();
            if st.segments.back().is_some_and(|s| s.records.is_empty()) {
                if let Some(s) = st.segments.pop_back() {
                    wal.delete(&mut st, s);
                }
            }
        }
        let (file, out, seg, is_direct) = create(&wal, next)?;
        if wal.shared.cfg.direct_io && !is_direct {
            tracing::info!("the file system of {} refuses direct I/O: the buffer is written through the page cache", wal.shared.cfg.dir.display());
        }
        let bytes = seg.bytes;
        {
            let mut st = wal.lock();
            st.bytes += seg.bytes;
            st.segments.push_back(seg);
            wal.publish_files(&st);
        }
        Ok(Writer { wal, file, out, bytes, next, records: Vec::new(), dirty: false, last_sync: Instant::now(), blocked: false, poisoned: false, publish })
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Appends one record per non-empty batch, written at once, synced per
    /// the policy, then readable by the sinks. On an I/O error nothing of the group counts as
    /// written (the caller retries it); at the cap with `block`, waits for space unless `stop`.
    pub fn append<'a>(&mut self, batches: impl Iterator<Item = Payload<'a>>, stop: &AtomicBool) -> Result<(), AppendError> {
        if self.poisoned || self.bytes >= self.wal.shared.cfg.segment_bytes {
            self.roll().map_err(AppendError::Io)?;
        }
        self.records.clear();
        let mut seq = self.next;
        for payload in batches {
            if payload.events == 0 {
                continue;
            }
            self.out.stage(&record::encode_header(seq, &payload));
            self.out.stage(payload.lines);
            self.records.push((seq, payload.events));
            seq += 1;
        }
        if self.records.is_empty() {
            return Ok(());
        }
        let n = self.out.end() - self.bytes;
        self.out.stage(&[0; HEADER_LEN]); // the end marker
        if let Err(e) = self.make_room(n, stop) {
            self.out.forget_after(self.bytes);
            return Err(e);
        }
        let started = Instant::now();
        if let Err(e) = self.out.write(&self.file, self.bytes + n) {
            // Cut back whatever part of the group made it, so no later record follows garbage.
            self.out.forget_after(self.bytes);
            if self.file.set_len(self.bytes).is_err() {
                let _ = self.roll();
            }
            if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                // The disk is full: spare segments hold blocks that nothing needs. Give them
                // back so the retry (and the sinks' cursor files) can have them.
                let mut st = self.wal.lock();
                let mut freed = 0;
                while self.wal.delete_spare(&mut st) {
                    freed += 1;
                }
                if freed > 0 {
                    tracing::warn!("the buffer's disk is full: deleted {freed} spare segments to make room");
                }
            }
            return Err(AppendError::Io(e));
        }
        let m = &self.wal.shared.metrics.wal;
        match self.wal.shared.cfg.fsync {
            Fsync::Batch => {
                if let Err(e) = sync_data(&self.file) {
                    // After a failed fsync the page cache may hold pages the disk never got,
                    // now marked clean: syncing again could "succeed" without them (PostgreSQL's
                    // lesson). The group is not acknowledged; it is written again, whole, into
                    // a new segment, and what this one holds past its last good sync is cut
                    // off here and, should that not reach the disk either, at recovery (records
                    // at or past the next segment's first).
                    tracing::error!("syncing the buffer failed ({e}); the group is written again to a new segment");
                    self.out.forget_after(self.bytes);
                    let _ = self.file.set_len(self.bytes);
                    self.poisoned = true;
                    return Err(AppendError::Io(e));
                }
                m.fsync_seconds.record(started.elapsed());
                self.last_sync = Instant::now();
            }
            Fsync::Interval(_) => self.dirty = true,
        }
        self.bytes += n;
        self.next = seq;
        let events: u64 = self.records.iter().map(|r| u64::from(r.1)).sum();
        {
            let mut st = self.wal.lock();
            st.bytes += n;
            if let Some(active) = st.segments.back_mut() {
                active.bytes += n;
                active.records.extend_from_slice(&self.records);
            }
            self.wal.publish_files(&st);
        }
        m.appended_records.fetch_add(self.records.len() as u64, Relaxed);
        m.appended_events.fetch_add(events, Relaxed);
        self.publish.send_replace(self.next);
        self.wal.publish_lag(&self.wal.lock(), self.next);
        Ok(())
    }

    /// Syncs written records once the interval policy says so. Call it now and then.
    pub fn tick(&mut self) {
        if let Fsync::Interval(every) = self.wal.shared.cfg.fsync {
            if self.dirty && self.last_sync.elapsed() >= every {
                self.sync();
            }
        }
    }

    /// Forces everything written to disk (on shutdown).
    pub fn sync(&mut self) {
        if self.poisoned {
            return;
        }
        let started = Instant::now();
        match sync_data(&self.file) {
            Ok(()) => {
                self.wal.shared.metrics.wal.fsync_seconds.record(started.elapsed());
                self.dirty = false;
                self.last_sync = Instant::now();
            }
            Err(e) => {
                // With `fsync "interval"` these records were acknowledged once written: they
                // survive the collector's death but, now, maybe not the machine's. Say so, and
                // never trust this segment's pages to a second sync.
                tracing::error!("syncing the buffer failed ({e}): records written since the last sync may not survive a machine crash; the next append starts a new segment");
                self.wal.shared.metrics.wal.write_errors.fetch_add(1, Relaxed);
                self.poisoned = true;
            }
        }
    }

    /// Closes the active segment (cut to its records) and starts the next. A poisoned segment
    /// is cut without another sync (see `append`).
    fn roll(&mut self) -> std::io::Result<()> {
        if self.poisoned {
            let _ = self.file.set_len(self.bytes);
        } else {
            self.file.set_len(self.bytes)?;
            if let Err(e) = sync_data(&self.file) {
                self.poisoned = true;
                return Err(e);
            }
        }
        {
            // A segment left without records (its first group failed) is replaced, not kept
            // beside a new one of the same name.
            let mut st = self.wal.lock();
            if st.segments.back().is_some_and(|s| s.records.is_empty()) {
                if let Some(s) = st.segments.pop_back() {
                    st.bytes -= s.bytes;
                }
            }
        }
        let (file, out, seg, _) = create(&self.wal, self.next).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.file = file;
        self.out = out;
        self.bytes = seg.bytes;
        self.dirty = false;
        self.poisoned = false;
        let mut st = self.wal.lock();
        st.bytes += seg.bytes;
        st.segments.push_back(seg);
        self.wal.publish_files(&st);
        Ok(())
    }

    /// Applies the cap's policy until a group of `need` bytes fits (or nothing more can be
    /// freed). Spares go first: they hold nothing.
    fn make_room(&mut self, need: u64, stop: &AtomicBool) -> Result<(), AppendError> {
        let cfg = &self.wal.shared.cfg;
        let mut st = self.wal.lock();
        while st.bytes + st.spare_bytes + need > cfg.max_bytes {
            if self.wal.delete_spare(&mut st) {
                continue;
            }
            match cfg.when_full {
                WhenFull::DropOldest => {
                    if !self.wal.drop_oldest(&mut st) {
                        break;
                    }
                }
                WhenFull::Block => {
                    if st.segments.len() < 2 {
                        break; // only the writer's segment: nothing to wait for
                    }
                    if !self.blocked {
                        self.blocked = true;
                        self.wal.shared.metrics.wal.full_blocked.fetch_add(1, Relaxed);
                        self.wal.shared.metrics.wal.blocked.store(1, Relaxed);
                        tracing::warn!(bytes = st.bytes, max = cfg.max_bytes, "buffer full (block): waiting for the sinks; nothing new is acknowledged meanwhile");
                    }
                    if stop.load(Relaxed) {
                        return Err(AppendError::Stopping(Stopping));
                    }
                    st = self.wal.shared.space.wait_timeout(st, Duration::from_millis(100)).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
                }
            }
        }
        if self.blocked {
            self.blocked = false;
            self.wal.shared.metrics.wal.blocked.store(0, Relaxed);
        }
        Ok(())
    }
}

/// `fdatasync`, or the failure a test injected.
fn sync_data(f: &File) -> std::io::Result<()> {
    #[cfg(test)]
    if FAIL_SYNC.with(|c| c.replace(false)) {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    f.sync_data()
}

#[cfg(test)]
thread_local! {
    /// Makes the next sync on this thread fail with EIO.
    pub static FAIL_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Why a group was not appended.
#[derive(Debug)]
pub enum AppendError {
    Stopping(Stopping),
    Io(std::io::Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Stopping(_) => f.write_str("the collector is stopping while the buffer is full"),
            AppendError::Io(e) => write!(f, "writing the buffer failed: {e}"),
        }
    }
}
