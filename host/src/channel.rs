//! The channel from the request path to the collector: a queue bounded in bytes and in frames
//! that never blocks the caller, and a sender thread that batches frames onto the collector's unix
//! socket, reconnecting with backoff. Every event that does not make it is counted by reason.

use crate::metrics::{DropReason, Metrics};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use sentinel_wire::frame::{self, FrameKind};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the sender sleeps when the queue is empty.
const IDLE_TICK: Duration = Duration::from_millis(1);

/// Bounds and timing of the channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The collector's unix socket.
    pub socket_path: PathBuf,
    /// Most bytes of events waiting in memory; past it new events are dropped (`queue_full`).
    pub capacity_bytes: usize,
    /// Most events waiting in memory.
    pub capacity_frames: usize,
    /// Largest event sent; larger ones are dropped (`oversized`). Match the collector's limit.
    pub max_frame_bytes: usize,
    /// Bytes gathered into one socket write.
    pub batch_bytes: usize,
    /// First and longest wait between reconnection attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A write that makes no progress for this long counts as failed.
    pub write_timeout: Duration,
}

impl ChannelConfig {
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        ChannelConfig {
            socket_path: socket_path.into(),
            capacity_bytes: 64 << 20,
            capacity_frames: 256 * 1024,
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            batch_bytes: 256 << 10,
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_secs(1),
            write_timeout: Duration::from_secs(2),
        }
    }
}

/// The producer side, cloned into every filter instance. `push` is wait-free apart from the
/// queue's own CAS loop.
#[derive(Clone)]
pub(crate) struct Producer {
    tx: Sender<Vec<u8>>,
    metrics: Arc<Metrics>,
    capacity_bytes: u64,
    max_frame_bytes: usize,
}

impl Producer {
    /// Queues one encoded event; false (and a counted drop) when it cannot be queued.
    pub fn push(&self, event: Vec<u8>) -> bool {
        let len = event.len() as u64;
        if event.len() > self.max_frame_bytes {
            self.metrics.drop_event(DropReason::Oversized, 1);
            return false;
        }
        let before = self.metrics.queue_bytes.fetch_add(len, Relaxed);
        if before + len > self.capacity_bytes {
            self.metrics.queue_bytes.fetch_sub(len, Relaxed);
            self.metrics.drop_event(DropReason::QueueFull, 1);
            return false;
        }
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_bytes.fetch_sub(len, Relaxed);
                self.metrics.drop_event(DropReason::QueueFull, 1);
                false
            }
        }
    }
}

/// The running channel: its producer handle and its sender thread.
pub(crate) struct Channel {
    producer: Producer,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Channel {
    pub fn start(config: ChannelConfig, metrics: Arc<Metrics>) -> std::io::Result<Channel> {
        let (tx, rx) = bounded(config.capacity_frames.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let producer = Producer {
            tx,
            metrics: metrics.clone(),
            capacity_bytes: config.capacity_bytes as u64,
            max_frame_bytes: config.max_frame_bytes,
        };
        let sender = SenderLoop { config, rx, metrics, stop: stop.clone(), conn: None, backoff: Duration::ZERO, buf: Vec::new() };
        let thread = std::thread::Builder::new().name("telemetry-sender".into()).spawn(move || sender.run())?;
        Ok(Channel { producer, stop, thread: Some(thread) })
    }

    pub fn producer(&self) -> Producer {
        self.producer.clone()
    }

    /// Stops the sender after it has tried to flush what is queued, for at most `grace`.
    pub fn shutdown(&mut self, grace: Duration) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + grace;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

struct SenderLoop {
    config: ChannelConfig,
    rx: Receiver<Vec<u8>>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    conn: Option<UnixStream>,
    backoff: Duration,
    buf: Vec<u8>,
}

impl SenderLoop {
    fn run(mut self) {
        let mut stop_at: Option<Instant> = None;
        loop {
            if self.stop.load(Relaxed) && stop_at.is_none() {
                stop_at = Some(Instant::now() + Duration::from_millis(1500));
            }
            if let Some(at) = stop_at {
                if self.rx.is_empty() || Instant::now() >= at {
                    break;
                }
            }
            if self.conn.is_none() {
                // The gauge must show the backlog during an outage, when it matters most.
                self.metrics.queue_frames.store(self.rx.len() as u64, Relaxed);
                if stop_at.is_some() {
                    break; // no collector to flush to: what is left is counted below
                }
                if !self.connect() {
                    continue; // connect() has slept its backoff
                }
            }
            // Poll rather than block: a blocked receiver makes every push pay a futex wake-up
            // (a syscall on the request path). Sleeping a tick when idle costs the sender 1000
            // wake-ups a second and adds at most a tick of delivery latency.
            let first = match self.rx.try_recv() {
                Ok(f) => f,
                Err(TryRecvError::Empty) => {
                    self.metrics.queue_frames.store(0, Relaxed);
                    std::thread::sleep(IDLE_TICK);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            };
            self.send_batch(first);
        }
        // Whatever is still queued will never be sent.
        let left = self.rx.try_iter().count() as u64;
        if left > 0 {
            self.metrics.drop_event(DropReason::Shutdown, left);
        }
        self.metrics.connected.store(0, Relaxed);
    }

    /// One connection attempt, respecting the backoff; true when connected.
    fn connect(&mut self) -> bool {
        match UnixStream::connect(&self.config.socket_path).and_then(|mut s| {
            s.set_write_timeout(Some(self.config.write_timeout))?;
            s.write_all(&frame::HELLO)?;
            Ok(s)
        }) {
            Ok(s) => {
                self.conn = Some(s);
                self.backoff = Duration::ZERO;
                self.metrics.connected.store(1, Relaxed);
                self.metrics.connects.fetch_add(1, Relaxed);
                true
            }
            Err(_) => {
                self.metrics.connect_failures.fetch_add(1, Relaxed);
                self.backoff = (self.backoff * 2).clamp(self.config.reconnect_min, self.config.reconnect_max);
                let wait = self.backoff;
                // Sleep the backoff in small steps so a stop request is seen quickly.
                let until = Instant::now() + wait;
                while Instant::now() < until && !self.stop.load(Relaxed) {
                    std::thread::sleep(Duration::from_millis(5).min(wait));
                }
                false
            }
        }
    }

    fn send_batch(&mut self, first: Vec<u8>) {
        self.buf.clear();
        let mut frames = 0u64;
        let mut bytes = 0u64;
        let mut next = Some(first);
        while let Some(ev) = next.take() {
            frame::write_frame(&mut self.buf, FrameKind::Event, &ev);
            frames += 1;
            bytes += ev.len() as u64;
            if self.buf.len() < self.config.batch_bytes {
                next = self.rx.try_recv().ok();
            }
        }
        self.metrics.queue_bytes.fetch_sub(bytes, Relaxed);
        self.metrics.queue_frames.store(self.rx.len() as u64, Relaxed);
        let Some(conn) = self.conn.as_mut() else {
            self.metrics.drop_event(DropReason::WriteFailed, frames);
            return;
        };
        match conn.write_all(&self.buf) {
            Ok(()) => {
                self.metrics.sent_frames.fetch_add(frames, Relaxed);
                self.metrics.sent_bytes.fetch_add(self.buf.len() as u64, Relaxed);
            }
            Err(e) => {
                log::warn!("telemetry: collector write failed ({e}); {frames} events dropped, reconnecting");
                self.metrics.drop_event(DropReason::WriteFailed, frames);
                self.metrics.connected.store(0, Relaxed);
                self.conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel whose collector never appears, so nothing drains the queue.
    fn stuck(capacity_bytes: usize, capacity_frames: usize) -> (Channel, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ChannelConfig::new(dir.path().join("nobody-listens.sock"));
        cfg.capacity_bytes = capacity_bytes;
        cfg.capacity_frames = capacity_frames;
        cfg.max_frame_bytes = 1000;
        let metrics = Arc::new(Metrics::default());
        (Channel::start(cfg, metrics.clone()).unwrap(), metrics)
    }

    #[test]
    fn the_byte_bound_drops_and_counts() {
        let (ch, m) = stuck(1000, 1000);
        let p = ch.producer();
        let accepted = (0..20).filter(|_| p.push(vec![0u8; 100])).count();
        assert_eq!(accepted, 10);
        assert_eq!(m.dropped(DropReason::QueueFull), 10);
        assert_eq!(m.queue_bytes.load(Relaxed), 1000);
    }

    #[test]
    fn the_frame_bound_drops_and_counts() {
        let (ch, m) = stuck(1 << 20, 3);
        let p = ch.producer();
        let accepted = (0..5).filter(|_| p.push(vec![1u8; 10])).count();
        assert_eq!(accepted, 3);
        assert_eq!(m.dropped(DropReason::QueueFull), 2);
        assert_eq!(m.queue_bytes.load(Relaxed), 30, "refused frames give their bytes back");
    }

    #[test]
    fn the_waiting_gauge_shows_the_backlog_while_the_collector_is_away() {
        let (ch, m) = stuck(1 << 20, 1000);
        let p = ch.producer();
        for _ in 0..3 {
            assert!(p.push(vec![1u8; 10]));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while m.queue_frames.load(Relaxed) != 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(m.queue_frames.load(Relaxed), 3);
    }

    #[test]
    fn shutdown_without_a_collector_counts_what_is_left() {
        let (mut ch, m) = stuck(1 << 20, 1000);
        let p = ch.producer();
        for _ in 0..5 {
            assert!(p.push(vec![1u8; 10]));
        }
        ch.shutdown(Duration::from_secs(5));
        assert_eq!(m.dropped(DropReason::Shutdown), 5);
    }

    #[test]
    fn oversized_events_are_refused() {
        let (ch, m) = stuck(1 << 20, 10);
        assert!(!ch.producer().push(vec![0u8; 1001]));
        assert_eq!(m.dropped(DropReason::Oversized), 1);
        assert_eq!(m.queue_bytes.load(Relaxed), 0);
    }

    #[test]
    fn frames_reach_a_listening_collector_after_the_hello() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let metrics = Arc::new(Metrics::default());
        let ch = Channel::start(ChannelConfig::new(&path), metrics.clone()).unwrap();
        assert!(ch.producer().push(b"event-one".to_vec()));
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = vec![0u8; 5 + 5 + 9];
        std::io::Read::read_exact(&mut conn, &mut got).unwrap();
        assert_eq!(&got[..5], &frame::HELLO);
        assert_eq!(&got[5..10], &[0, 0, 0, 9, FrameKind::Event as u8]);
        assert_eq!(&got[10..], b"event-one");
    }
}
