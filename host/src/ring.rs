//! One filter instance's queue to the sender thread: a single-producer, single-consumer ring of
//! wire frames, bounded in bytes. A push is one copy into memory allocated up front and one
//! release store: no lock, no compare-and-swap, no allocation, and no cache line shared with
//! another worker thread, so the request path never waits and worker threads never contend.
//!
//! The frames sit in the ring exactly as they go on the socket (`len kind payload`), so the
//! sender hands the ring's own pages to the socket (see [`crate::splice`]) without copying them
//! again. That is why space is given back only on the collector's acknowledgement: until then
//! the collector may still be reading these very bytes.

use crossbeam_utils::CachePadded;
use sentinel_wire::frame::{FrameKind, HEADER_LEN};
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::{Acquire, Relaxed, Release}};
use std::sync::Arc;

/// Smallest ring: room for a few frames of the largest usual event.
pub(crate) const MIN_RING_BYTES: usize = 64 << 10;

/// The shared part of a ring. Positions count bytes ever written or read, so `tail - head` is
/// what waits; the byte at position `p` lives at `p % cap`.
pub(crate) struct Ring {
    data: NonNull<u8>,
    cap: usize,
    /// Written by the producer only: bytes and frames pushed so far.
    tail: CachePadded<AtomicUsize>,
    pushed: AtomicU64,
    /// Written by the consumer only: bytes and frames taken so far.
    head: CachePadded<AtomicUsize>,
    popped: AtomicU64,
    /// The producer is gone: once drained, the ring can be forgotten.
    producer_gone: AtomicBool,
    /// The consumer is gone: pushes would never be read, so they are refused.
    consumer_gone: AtomicBool,
}

// SAFETY: the producer writes only bytes in [tail, head + cap), which the consumer does not read
// until the release store of `tail` publishes them; the consumer reads only [head, tail), which
// the producer does not overwrite until the release store of `head` hands them back. Each
// position counter has a single writer. So `data` is never written and read at the same time.
unsafe impl Send for Ring {}
// SAFETY: as above; every shared field other than `data` is atomic.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring of `cap` bytes (at least [`MIN_RING_BYTES`]). The memory is mapped straight from
    /// the OS, which zeroes pages on first touch: a new ring costs the same few microseconds
    /// whatever its size (an instance rebuild makes one on the request thread), and an idle ring
    /// costs address space, not resident memory. (The allocator's `calloc` would zero a reused
    /// heap block by hand once its mmap threshold has risen past the ring's size: milliseconds.)
    pub fn new(cap: usize) -> Option<Arc<Ring>> {
        let cap = cap.max(MIN_RING_BYTES);
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no file,
        // no existing memory touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Arc::new(Ring {
            data: NonNull::new(ptr.cast::<u8>())?,
            cap,
            tail: CachePadded::new(AtomicUsize::new(0)),
            pushed: AtomicU64::new(0),
            head: CachePadded::new(AtomicUsize::new(0)),
            popped: AtomicU64::new(0),
            producer_gone: AtomicBool::new(false),
            consumer_gone: AtomicBool::new(false),
        }))
    }

    /// Bytes and frames waiting (a snapshot; either side may move on right after).
    pub fn waiting(&self) -> (usize, u64) {
        let frames = self.pushed.load(Acquire);
        let tail = self.tail.load(Acquire);
        let bytes = tail - self.head.load(Acquire);
        (bytes, frames.saturating_sub(self.popped.load(Relaxed)))
    }

    /// Bytes the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn producer_gone(&self) -> bool {
        self.producer_gone.load(Acquire)
    }

    /// Tells producers that nothing will read the ring any more.
    pub fn close_consumer(&self) {
        self.consumer_gone.store(true, Release);
    }

    /// Copies `bytes` into the ring at position `pos`, wrapping at the end.
    ///
    /// SAFETY: the caller is the ring's only producer and [pos, pos + len) is free space.
    unsafe fn copy_in(&self, pos: usize, bytes: &[u8]) {
        let start = pos % self.cap;
        let first = bytes.len().min(self.cap - start);
        // SAFETY: both ranges are inside the allocation of `cap` bytes (`first` ≤ cap - start,
        // the rest ≤ cap), and the caller guarantees nobody reads them meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.as_ptr().add(start), first);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), self.data.as_ptr(), bytes.len() - first);
        }
    }

    /// The published bytes in [from, to) as at most two slices (the second after wrapping).
    ///
    /// SAFETY: the caller is the ring's only consumer and head ≤ from ≤ to ≤ tail.
    unsafe fn slices(&self, from: usize, to: usize) -> (&[u8], &[u8]) {
        let start = from % self.cap;
        let len = to - from;
        let first = len.min(self.cap - start);
        // SAFETY: in bounds as in `copy_in`; published by the producer's release of `tail`
        // (acquired by the caller) and not reused until the consumer releases `head`.
        unsafe {
            (
                std::slice::from_raw_parts(self.data.as_ptr().add(start), first),
                std::slice::from_raw_parts(self.data.as_ptr(), len - first),
            )
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; no slices outlive the ring.
        unsafe { libc::munmap(self.data.as_ptr().cast(), self.cap) };
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The frame can never fit (larger than the frame limit or the ring).
    Oversized,
    /// Not enough free space now.
    Full,
    /// The sender has stopped.
    Closed,
}

/// The producing end, owned by one filter instance. Pushing takes `&self` (the positions are
/// cells) so a frame can be copied straight out of the guest's memory while the store is
/// borrowed; the type is `!Sync`, so only one thread ever pushes.
pub(crate) struct Producer {
    ring: Arc<Ring>,
    tail: Cell<usize>,
    pushed: Cell<u64>,
    /// The consumer's position when last read; refreshed only when the ring looks full (or,
    /// in `crossed_half`, half full).
    head_seen: Cell<usize>,
    /// `crossed_half` said so, and the consumer has not caught up below half since.
    past_half: Cell<bool>,
    max_frame_bytes: usize,
}

impl Producer {
    pub fn new(ring: Arc<Ring>, max_frame_bytes: usize) -> Producer {
        Producer { ring, tail: Cell::new(0), pushed: Cell::new(0), head_seen: Cell::new(0), past_half: Cell::new(false), max_frame_bytes }
    }

    /// True the first time the frames waiting fill half the ring since the consumer last had
    /// them below half: the moment to wake a consumer that only polls now and then.
    #[inline]
    pub fn crossed_half(&self) -> bool {
        let tail = self.tail.get();
        let half = self.ring.cap / 2;
        // `head_seen` lags the consumer, so this overestimates what waits: below half is sure.
        if tail - self.head_seen.get() < half {
            return false;
        }
        self.head_seen.set(self.ring.head.load(Acquire));
        if tail - self.head_seen.get() < half {
            self.past_half.set(false);
            return false;
        }
        !self.past_half.replace(true)
    }

    /// Appends one frame, or says why not.
    #[inline]
    pub fn push(&self, kind: FrameKind, payload: &[u8]) -> Result<(), Refused> {
        let ring = &*self.ring;
        let need = HEADER_LEN + payload.len();
        if payload.len() > self.max_frame_bytes || need > ring.cap {
            return Err(Refused::Oversized);
        }
        if ring.consumer_gone.load(Relaxed) {
            return Err(Refused::Closed);
        }
        let tail = self.tail.get();
        if tail + need - self.head_seen.get() > ring.cap {
            self.head_seen.set(ring.head.load(Acquire));
            if tail + need - self.head_seen.get() > ring.cap {
                return Err(Refused::Full);
            }
        }
        let len = (payload.len() as u32).to_be_bytes();
        let header = [len[0], len[1], len[2], len[3], kind as u8];
        // SAFETY: this is the ring's only producer (`Producer` is neither Clone nor Sync), and
        // the check above proved [tail, tail + need) free.
        unsafe {
            ring.copy_in(tail, &header);
            ring.copy_in(tail + HEADER_LEN, payload);
        }
        self.tail.set(tail + need);
        self.pushed.set(self.pushed.get() + 1);
        ring.pushed.store(self.pushed.get(), Relaxed);
        ring.tail.store(tail + need, Release);
        Ok(())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.ring.producer_gone.store(true, Release);
    }
}

/// The consuming end's view of one ring: what can be read now, frame by frame. Used only by
/// the sender thread, which holds the only `Consumer` of each ring. Frames are sent before
/// they are released: between `head` and `sent` lie frames written to the socket but not yet
/// acknowledged, kept so they can be sent again after a reconnect.
pub(crate) struct Consumer {
    ring: Arc<Ring>,
    head: usize,
    popped: u64,
    sent: usize,
}

/// A run of whole frames read from a ring, not yet released.
pub(crate) struct Batch {
    pub start: usize,
    pub end: usize,
    pub frames: u64,
}

impl Consumer {
    pub fn new(ring: Arc<Ring>) -> Consumer {
        Consumer { ring, head: 0, popped: 0, sent: 0 }
    }

    /// Marks `batch` as written to the socket: the next peek starts after it.
    pub fn mark_sent(&mut self, batch: &Batch) {
        self.sent = batch.end;
    }

    /// Sends everything unreleased again (after a reconnect).
    pub fn rewind(&mut self) {
        self.sent = self.head;
    }


    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Whole frames not yet sent, up to about `max_bytes` (always at least one frame if any).
    pub fn peek(&self, max_bytes: usize) -> Option<Batch> {
        let tail = self.ring.tail.load(Acquire);
        let start = self.sent;
        let mut end = start;
        let mut frames = 0;
        while end < tail && (frames == 0 || end - start < max_bytes) {
            let mut h = [0u8; HEADER_LEN];
            // SAFETY: sole consumer; the producer publishes whole frames, so a header that starts
            // before `tail` lies wholly before it.
            let (a, b) = unsafe { self.ring.slices(end, end + HEADER_LEN) };
            h[..a.len()].copy_from_slice(a);
            h[a.len()..].copy_from_slice(b);
            end += HEADER_LEN + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            frames += 1;
        }
        (frames > 0).then_some(Batch { start, end, frames })
    }

    /// The bytes of `batch` (at most two slices, in order).
    pub fn bytes(&self, batch: &Batch) -> (&[u8], &[u8]) {
        // SAFETY: sole consumer, and head ≤ batch.start ≤ batch.end ≤ tail (peek read them as
        // published, and nothing before them has been released past them).
        unsafe { self.ring.slices(batch.start, batch.end) }
    }

    /// Gives the space up to `end` (holding `frames` frames past the head) back to the
    /// producer. Releases come in order.
    pub fn release_to(&mut self, end: usize, frames: u64) {
        self.head = end;
        self.sent = self.sent.max(end);
        self.popped += frames;
        self.ring.popped.store(self.popped, Relaxed);
        self.ring.head.store(self.head, Release);
    }

    /// Gives back the space of the first `n` frames after the head (all of them sent).
    pub fn release_frames(&mut self, n: u64) {
        let mut end = self.head;
        for _ in 0..n {
            let mut h = [0u8; HEADER_LEN];
            // SAFETY: sole consumer; these frames were published and sent, so they lie
            // wholly before `sent` ≤ `tail`.
            let (a, b) = unsafe { self.ring.slices(end, end + HEADER_LEN) };
            h[..a.len()].copy_from_slice(a);
            h[a.len()..].copy_from_slice(b);
            end += HEADER_LEN + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        }
        self.release_to(end, n);
    }

    /// Gives the space of `batch` back to the producer.
    #[cfg(test)]
    pub fn release(&mut self, batch: Batch) {
        self.release_to(batch.end, batch.frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cap: usize) -> (Producer, Consumer) {
        let ring = Ring::new(cap).unwrap();
        (Producer::new(ring.clone(), 1 << 20), Consumer::new(ring))
    }

    fn drain(c: &mut Consumer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = c.peek(usize::MAX) {
            let (x, y) = c.bytes(&b);
            let mut all = x.to_vec();
            all.extend_from_slice(y);
            let mut rest = &all[..];
            while !rest.is_empty() {
                let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                assert_eq!(rest[4], FrameKind::Event as u8);
                out.push(rest[HEADER_LEN..HEADER_LEN + n].to_vec());
                rest = &rest[HEADER_LEN + n..];
            }
            c.release(b);
        }
        out
    }

    #[test]
    fn frames_come_out_in_order_across_the_wrap() {
        let (p, mut c) = pair(MIN_RING_BYTES);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        // Odd sizes so frames and headers straddle the end of the buffer many times.
        for i in 0..5000u32 {
            let payload: Vec<u8> = (0..(i % 997 + 1)).map(|j| (i + j) as u8).collect();
            if p.push(FrameKind::Event, &payload).is_err() {
                got.extend(drain(&mut c));
                p.push(FrameKind::Event, &payload).unwrap();
            }
            expected.push(payload);
        }
        got.extend(drain(&mut c));
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
        assert_eq!(c.ring().waiting(), (0, 0));
    }

    #[test]
    fn crossing_half_is_reported_once_until_the_consumer_catches_up() {
        let (p, mut c) = pair(MIN_RING_BYTES);
        let payload = vec![7u8; 1000];
        let at = (MIN_RING_BYTES / 2).div_ceil(HEADER_LEN + 1000) - 1; // the push that reaches half
        let mut crossings = Vec::new();
        let push = |i: usize, crossings: &mut Vec<usize>| {
            p.push(FrameKind::Event, &payload).expect("room");
            if p.crossed_half() {
                crossings.push(i);
            }
        };
        for i in 0..at + 10 {
            push(i, &mut crossings);
        }
        assert_eq!(crossings, [at], "once, when half the ring waits");
        let b = c.peek(usize::MAX).expect("frames");
        c.release(b);
        for i in 0..at + 10 {
            push(at + 10 + i, &mut crossings);
        }
        assert_eq!(crossings, [at, 2 * at + 10], "again once the consumer had caught up");
    }

    #[test]
    fn a_full_ring_refuses_until_space_is_released() {
        let (p, mut c) = pair(MIN_RING_BYTES);
        let payload = vec![7u8; 1000];
        let fit = (0..100).take_while(|_| p.push(FrameKind::Event, &payload).is_ok()).count();
        assert_eq!(fit, MIN_RING_BYTES / (HEADER_LEN + 1000));
        assert_eq!(p.push(FrameKind::Event, &payload), Err(Refused::Full));
        assert_eq!(c.ring().waiting(), (fit * 1005, fit as u64));
        let b = c.peek(3000).unwrap();
        assert_eq!(b.frames, 3, "batches stop at whole frames past the byte budget");
        c.release(b);
        assert!(p.push(FrameKind::Event, &payload).is_ok());
    }

    #[test]
    fn oversized_and_closed_are_refused() {
        let ring = Ring::new(MIN_RING_BYTES).unwrap();
        let p = Producer::new(ring.clone(), 100);
        assert_eq!(p.push(FrameKind::Event, &[0u8; 101]), Err(Refused::Oversized));
        let p = Producer::new(ring.clone(), 1 << 30);
        assert_eq!(p.push(FrameKind::Event, &vec![0u8; MIN_RING_BYTES]), Err(Refused::Oversized));
        ring.close_consumer();
        assert_eq!(p.push(FrameKind::Event, b"x"), Err(Refused::Closed));
        drop(p);
        assert!(ring.producer_gone());
    }

    #[test]
    fn a_producer_thread_and_a_consumer_thread_agree() {
        let (p, mut c) = pair(MIN_RING_BYTES);
        let n = 200_000u32;
        let t = std::thread::spawn(move || {
            let mut sent = 0u32;
            while sent < n {
                if p.push(FrameKind::Event, &sent.to_le_bytes()).is_ok() {
                    sent += 1;
                }
            }
        });
        let mut next = 0u32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while next < n && std::time::Instant::now() < deadline {
            for f in drain(&mut c) {
                assert_eq!(f, next.to_le_bytes());
                next += 1;
            }
        }
        t.join().unwrap();
        assert_eq!(next, n);
    }
}
