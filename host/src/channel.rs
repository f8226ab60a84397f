//! The channel from the request path to the collector: one byte-bounded ring per filter
//! instance (see [`crate::ring`]) that never blocks the caller, and a sender thread that drains
//! the rings onto the collector's unix socket in batches, reconnecting with backoff. Frames stay
//! in their ring until the collector acknowledges them as durable, and are sent again after a
//! reconnect; so the ring's bound is also the bound on unacknowledged frames. Every event that
//! does not make it is counted by reason.

use crate::metrics::{DropReason, Metrics};
use crate::ring::{self, Consumer, Refused, Ring};
use crate::splice::{self, SocketWriter};
use crossbeam_channel::{unbounded, Receiver, Sender};
use sentinel_wire::frame::{self, FrameKind};
use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How often the sender looks for acknowledgements while a ring fills up waiting for them.
const ACK_POLL: Duration = Duration::from_millis(1);

/// Bounds and timing of the channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The collector's unix socket.
    pub socket_path: PathBuf,
    /// Most bytes of framed events waiting per worker thread (each filter instance has its own
    /// ring of this size); past it new events are dropped (`queue_full`). At least 64 KiB.
    pub capacity_bytes: usize,
    /// Largest event sent; larger ones are dropped (`oversized`). Match the collector's limit.
    pub max_frame_bytes: usize,
    /// Bytes gathered from one ring into one socket write.
    pub batch_bytes: usize,
    /// How long the sender waits between writes unless a ring holds a full batch or is half
    /// full: events gather meanwhile, so a busy proxy writes (and wakes the collector) once per
    /// interval, not once per event.
    pub write_interval: Duration,
    /// First and longest wait between reconnection attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A write that makes no progress for this long counts as failed.
    pub write_timeout: Duration,
    /// How often the host's counters are sent to the collector (and once on each connect).
    pub stats_interval: Duration,
    /// Names this proxy in the counters the collector serves (`proxy` label).
    pub instance_name: String,
}

impl ChannelConfig {
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        ChannelConfig {
            socket_path: socket_path.into(),
            capacity_bytes: 16 << 20,
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            batch_bytes: 256 << 10,
            write_interval: sentinel_config::Transport::DEFAULT_WRITE_INTERVAL,
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_secs(1),
            write_timeout: Duration::from_secs(2),
            stats_interval: Duration::from_secs(5),
            instance_name: default_instance_name(),
        }
    }
}

/// `program-pid`: unique per process on a host, stable for its life.
fn default_instance_name() -> String {
    let exe = std::env::current_exe().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    format!("{}-{}", exe.unwrap_or_else(|| "proxy".into()), std::process::id())
}

/// Hands out a producer per filter instance and tells the sender about its ring. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Queues {
    new_rings: Sender<Arc<Ring>>,
    /// The sender thread, woken when a ring is half full.
    sender: Thread,
    metrics: Arc<Metrics>,
    capacity_bytes: usize,
    max_frame_bytes: usize,
}

impl Queues {
    /// A producer with a fresh ring. If the ring cannot be allocated or the sender has stopped,
    /// the producer counts every event it is given as dropped.
    pub fn producer(&self) -> Producer {
        let ring = Ring::new(self.capacity_bytes).filter(|r| self.new_rings.send(r.clone()).is_ok());
        Producer {
            ring: ring.map(|r| ring::Producer::new(r, self.max_frame_bytes)),
            metrics: self.metrics.clone(),
            sender: self.sender.clone(),
        }
    }
}

/// One filter instance's end of the channel. `push` never blocks and never allocates.
pub(crate) struct Producer {
    ring: Option<ring::Producer>,
    metrics: Arc<Metrics>,
    sender: Thread,
}

impl Producer {
    /// Queues one encoded event; false (and a counted drop) when it cannot be queued.
    #[inline]
    pub fn push(&self, event: &[u8]) -> bool {
        let refused = match &self.ring {
            Some(r) => match r.push(FrameKind::Event, event) {
                Ok(()) => {
                    // A burst (the filter thread works in batches) must not overflow the ring
                    // while the sender sleeps out its interval.
                    if r.crossed_half() {
                        self.sender.unpark();
                    }
                    return true;
                }
                Err(e) => e,
            },
            None => Refused::Closed,
        };
        let reason = match refused {
            Refused::Oversized => DropReason::Oversized,
            Refused::Full => DropReason::QueueFull,
            Refused::Closed => DropReason::Shutdown,
        };
        self.metrics.drop_event(reason, 1);
        false
    }
}

/// The running channel: where producers come from, and the sender thread.
pub(crate) struct Channel {
    queues: Queues,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Channel {
    pub fn start(config: ChannelConfig, metrics: Arc<Metrics>) -> std::io::Result<Channel> {
        let (tx, rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let (capacity_bytes, max_frame_bytes) = (config.capacity_bytes, config.max_frame_bytes);
        let sender = SenderLoop {
            config,
            new_rings: rx,
            rings: Vec::new(),
            next_ring_id: 0,
            metrics: metrics.clone(),
            stop: stop.clone(),
            conn: None,
            backoff: Duration::ZERO,
            stats_due: Instant::now(),
            in_flight: VecDeque::new(),
            conn_sent: 0,
            ack_buf: Vec::new(),
            writer: SocketWriter::new(),
            draining: None,
        };
        let thread = std::thread::Builder::new().name("telemetry-sender".into()).spawn(move || sender.run())?;
        let queues = Queues { new_rings: tx, sender: thread.thread().clone(), metrics, capacity_bytes, max_frame_bytes };
        Ok(Channel { queues, stop, thread: Some(thread) })
    }

    pub fn queues(&self) -> Queues {
        self.queues.clone()
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
    new_rings: Receiver<Arc<Ring>>,
    /// Each ring's consumer with an id that stays put while rings come and go.
    rings: Vec<(u64, Consumer)>,
    next_ring_id: u64,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    conn: Option<UnixStream>,
    backoff: Duration,
    /// When the counters are next sent.
    stats_due: Instant,
    /// Batches written on this connection and not yet acknowledged, in the order written.
    in_flight: VecDeque<InFlight>,
    /// Event frames written on this connection (what the collector's acknowledgements count).
    conn_sent: u64,
    /// Bytes of acknowledgement frames read but not yet whole.
    ack_buf: Vec<u8>,
    /// Writes batches by lending the ring's pages to the socket (see [`crate::splice`]).
    writer: SocketWriter,
    /// A connection given up on (a write timed out, the peer sent garbage) while the collector
    /// may still read what was lent on it. Its bytes are ring pages, and acknowledgements on a
    /// new connection would let the producer rewrite them under that reader; so no new
    /// connection is made until this one has been read or closed by the collector.
    draining: Option<UnixStream>,
}

/// A batch written to the socket, waiting for its acknowledgement.
struct InFlight {
    ring: u64,
    end: usize,
    frames: u64,
    /// `conn_sent` once this batch was written: acknowledged when the count reaches it.
    upto: u64,
}

impl SenderLoop {
    fn adopt_new_rings(&mut self) {
        for r in self.new_rings.try_iter() {
            self.rings.push((self.next_ring_id, Consumer::new(r)));
            self.next_ring_id += 1;
        }
    }

    fn run(mut self) {
        let mut stop_at: Option<Instant> = None;
        let mut tried_at_stop = false;
        loop {
            self.adopt_new_rings();
            // Rings whose instance is gone and that are drained (and acknowledged) are done with.
            self.rings.retain(|(_, c)| !(c.ring().producer_gone() && c.ring().waiting().0 == 0));
            let (bytes, frames) = self.waiting();
            self.metrics.queue_bytes.store(bytes as u64, Relaxed);
            self.metrics.queue_frames.store(frames, Relaxed);
            if self.stop.load(Relaxed) && stop_at.is_none() {
                stop_at = Some(Instant::now() + Duration::from_millis(1500));
            }
            if let Some(at) = stop_at {
                if frames == 0 || Instant::now() >= at {
                    break;
                }
            }
            if self.conn.is_none() {
                // Stopping unconnected: one attempt more (this thread may be stopped before its
                // first try, with the collector there), then what is left is counted below.
                if stop_at.is_some() && std::mem::replace(&mut tried_at_stop, true) {
                    break;
                }
                if !self.drained() {
                    continue; // drained() has slept a step
                }
                if !self.connect() {
                    continue; // connect() has slept its backoff
                }
            }
            // Poll rather than block: waking a blocked sender would make pushes pay a syscall.
            // Sleeping between writes costs 100 wake-ups a second and at most 10 ms of latency,
            // and turns one write (and one collector wake-up) per event into one per interval.
            if Instant::now() >= self.stats_due {
                self.send_stats();
            }
            let mut more_waiting = false;
            for i in 0..self.rings.len() {
                more_waiting |= self.send_batch(i);
            }
            self.read_acks();
            if !more_waiting {
                // A producer whose ring reaches half full ends the wait early.
                std::thread::park_timeout(self.pause());
            }
        }
        // Whatever is still queued (or unacknowledged) will never be sent; refuse further
        // pushes, then count it.
        self.adopt_new_rings();
        for (_, c) in &self.rings {
            c.ring().close_consumer();
        }
        let (_, left) = self.waiting();
        if left > 0 {
            self.metrics.drop_event(DropReason::Shutdown, left);
        }
        self.metrics.queue_bytes.store(0, Relaxed);
        self.metrics.queue_frames.store(0, Relaxed);
        self.metrics.connected.store(0, Relaxed);
    }

    /// How long to wait before the next turn: the write interval, or [`ACK_POLL`] while a ring is
    /// a quarter full. This thread only waits when it has nothing left to send, so what fills a
    /// ring then is frames sent and not yet acknowledged; their space comes back only when this
    /// thread reads the acknowledgements. A producer wakes it once per crossing of half full, so
    /// a fast one (hundreds of thousands of events a second) would fill the rest of its ring
    /// while this thread slept out the interval with the acknowledgements unread in its socket.
    fn pause(&self) -> Duration {
        let pressing = self.rings.iter().any(|(_, c)| c.ring().waiting().0 >= c.ring().capacity() / 4);
        if pressing {
            ACK_POLL.min(self.config.write_interval)
        } else {
            self.config.write_interval
        }
    }

    /// Bytes and frames waiting in all rings (unsent or unacknowledged).
    fn waiting(&self) -> (usize, u64) {
        self.rings.iter().map(|(_, c)| c.ring().waiting()).fold((0, 0), |(b, f), (b2, f2)| (b + b2, f + f2))
    }

    /// The connection is gone: what was sent and not acknowledged goes again on the next one.
    fn disconnect(&mut self) {
        if let Some(old) = self.conn.take() {
            if self.writer.zero_copy() && splice::unread_bytes(&old) > 0 {
                log::warn!("telemetry: waiting for the collector to read or close the old connection before reconnecting");
                self.draining = Some(old);
            }
        }
        self.metrics.connected.store(0, Relaxed);
        let unacked: u64 = self.in_flight.drain(..).map(|b| b.frames).sum();
        self.metrics.resent_frames.fetch_add(unacked, Relaxed);
        for (_, c) in &mut self.rings {
            c.rewind();
        }
        self.conn_sent = 0;
        self.ack_buf.clear();
    }

    /// True when no abandoned connection still holds lent bytes the collector has not read;
    /// otherwise sleeps a step (see `draining`).
    fn drained(&mut self) -> bool {
        let Some(old) = &self.draining else { return true };
        if splice::unread_bytes(old) == 0 {
            self.draining = None;
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
        false
    }

    /// Reads whatever acknowledgements the collector has written, without waiting, and
    /// releases the batches they cover. A closed or broken connection is dropped.
    fn read_acks(&mut self) {
        let Some(conn) = self.conn.as_ref() else { return };
        let mut chunk = [0u8; 4096];
        let mut latest = None;
        loop {
            // SAFETY: `chunk` is valid for writes of its length; MSG_DONTWAIT never blocks.
            let n = unsafe { libc::recv(conn.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len(), libc::MSG_DONTWAIT) };
            if n == 0 {
                log::warn!("telemetry: the collector closed the connection; unacknowledged events will be sent again");
                self.disconnect();
                return;
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted {
                    break;
                }
                log::warn!("telemetry: reading from the collector failed ({e}), reconnecting");
                self.disconnect();
                return;
            }
            self.ack_buf.extend_from_slice(&chunk[..n as usize]);
            while self.ack_buf.len() >= frame::ACK_FRAME_LEN {
                let h: [u8; frame::HEADER_LEN] = self.ack_buf[..frame::HEADER_LEN].try_into().unwrap_or_default();
                match frame::read_header(&h) {
                    Ok(h) if h.kind == FrameKind::Ack && h.len == 8 => {
                        latest = frame::read_ack(&self.ack_buf[frame::HEADER_LEN..frame::ACK_FRAME_LEN]);
                        self.ack_buf.drain(..frame::ACK_FRAME_LEN);
                    }
                    _ => {
                        log::warn!("telemetry: the collector sent something other than an acknowledgement; reconnecting");
                        self.disconnect();
                        return;
                    }
                }
            }
        }
        let Some(acked) = latest else { return };
        while let Some(b) = self.in_flight.front_mut() {
            let first = b.upto - b.frames;
            if acked <= first {
                break;
            }
            let Some((_, c)) = self.rings.iter_mut().find(|(id, _)| *id == b.ring) else {
                self.in_flight.pop_front();
                continue;
            };
            if acked >= b.upto {
                c.release_to(b.end, b.frames);
                self.metrics.acked_frames.fetch_add(b.frames, Relaxed);
                self.in_flight.pop_front();
            } else {
                // The acknowledgement ends inside this batch: release its first frames.
                let n = acked - first;
                c.release_frames(n);
                b.frames -= n;
                self.metrics.acked_frames.fetch_add(n, Relaxed);
                break;
            }
        }
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
                self.stats_due = Instant::now();
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

    /// Writes the host's counters as one frame; a failure drops the connection like any write.
    fn send_stats(&mut self) {
        self.stats_due = Instant::now() + self.config.stats_interval;
        let Some(conn) = self.conn.as_mut() else { return };
        let mut frame = Vec::new();
        frame::write_frame(&mut frame, FrameKind::Stats, &self.metrics.snapshot(&self.config.instance_name).encode());
        if let Err(e) = conn.write_all(&frame) {
            log::warn!("telemetry: collector write failed ({e}), reconnecting");
            self.disconnect();
        }
    }

    /// Writes one batch of whole frames from ring `i` to the socket; true when it was a full
    /// batch (more may be waiting right away). The frames stay in the ring until acknowledged;
    /// a failed write reconnects and sends them again.
    fn send_batch(&mut self, i: usize) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        let (id, c) = &mut self.rings[i];
        let Some(batch) = c.peek(self.config.batch_bytes) else { return false };
        let full = batch.end - batch.start >= self.config.batch_bytes;
        let (a, b) = c.bytes(&batch);
        let len = (a.len() + b.len()) as u64;
        let written = self.writer.write_all(conn, &[a, b]);
        match written {
            Ok(()) => {
                c.mark_sent(&batch);
                self.conn_sent += batch.frames;
                self.in_flight.push_back(InFlight { ring: *id, end: batch.end, frames: batch.frames, upto: self.conn_sent });
                self.metrics.sent_frames.fetch_add(batch.frames, Relaxed);
                self.metrics.sent_bytes.fetch_add(len, Relaxed);
            }
            Err(e) => {
                log::warn!("telemetry: collector write failed ({e}); reconnecting, unacknowledged events will be sent again");
                self.disconnect();
            }
        }
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel whose collector never appears, so nothing drains the rings.
    fn stuck(capacity_bytes: usize) -> (Channel, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ChannelConfig::new(dir.path().join("nobody-listens.sock"));
        cfg.capacity_bytes = capacity_bytes;
        cfg.max_frame_bytes = 1000;
        let metrics = Arc::new(Metrics::default());
        (Channel::start(cfg, metrics.clone()).unwrap(), metrics)
    }

    fn eventually(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !what() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        what()
    }

    #[test]
    fn the_byte_bound_drops_and_counts() {
        let (ch, m) = stuck(ring::MIN_RING_BYTES);
        let p = ch.queues().producer();
        let event = [0u8; 995];
        let accepted = (0..100).filter(|_| p.push(&event)).count();
        assert_eq!(accepted, ring::MIN_RING_BYTES / 1000, "each frame takes its 5-byte header too");
        assert_eq!(m.dropped(DropReason::QueueFull), 100 - accepted as u64);
        assert!(eventually(|| m.queue_bytes.load(Relaxed) == accepted as u64 * 1000));
    }

    #[test]
    fn each_instance_has_its_own_bound() {
        let (ch, m) = stuck(ring::MIN_RING_BYTES);
        let (p1, p2) = (ch.queues().producer(), ch.queues().producer());
        let event = [0u8; 995];
        let first = (0..100).filter(|_| p1.push(&event)).count();
        assert!(p2.push(&event), "a full ring does not starve another instance");
        assert!(eventually(|| m.queue_frames.load(Relaxed) == first as u64 + 1));
    }

    #[test]
    fn the_waiting_gauge_shows_the_backlog_while_the_collector_is_away() {
        let (ch, m) = stuck(1 << 20);
        let p = ch.queues().producer();
        for _ in 0..3 {
            assert!(p.push(&[1u8; 10]));
        }
        assert!(eventually(|| m.queue_frames.load(Relaxed) == 3));
    }

    #[test]
    fn shutdown_without_a_collector_counts_what_is_left_and_refuses_more() {
        let (mut ch, m) = stuck(1 << 20);
        let p = ch.queues().producer();
        for _ in 0..5 {
            assert!(p.push(&[1u8; 10]));
        }
        ch.shutdown(Duration::from_secs(5));
        assert_eq!(m.dropped(DropReason::Shutdown), 5);
        assert!(!p.push(&[1u8; 10]));
        assert!(!ch.queues().producer().push(&[1u8; 10]));
        assert_eq!(m.dropped(DropReason::Shutdown), 7);
    }

    #[test]
    fn oversized_events_are_refused() {
        let (ch, m) = stuck(1 << 20);
        assert!(!ch.queues().producer().push(&[0u8; 1001]));
        assert_eq!(m.dropped(DropReason::Oversized), 1);
        assert_eq!(m.queue_bytes.load(Relaxed), 0);
    }

    /// A channel whose collector socket the test listens on, with `configure` applied.
    fn listening(configure: impl FnOnce(&mut ChannelConfig)) -> (tempfile::TempDir, std::os::unix::net::UnixListener, Channel, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let metrics = Arc::new(Metrics::default());
        let mut cfg = ChannelConfig::new(&path);
        configure(&mut cfg);
        let ch = Channel::start(cfg, metrics.clone()).unwrap();
        (dir, listener, ch, metrics)
    }

    /// The hello a new connection starts with, read from the collector's side.
    fn read_hello(r: &mut impl std::io::Read) -> std::io::Result<[u8; 5]> {
        let mut hello = [0u8; 5];
        r.read_exact(&mut hello)?;
        Ok(hello)
    }

    /// One frame, read from the collector's side (its header decoded as the collector does):
    /// its kind and its payload.
    fn read_frame(r: &mut impl std::io::Read) -> std::io::Result<(FrameKind, Vec<u8>)> {
        let mut h = [0u8; frame::HEADER_LEN];
        r.read_exact(&mut h)?;
        let header = frame::read_header(&h).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let mut payload = vec![0u8; header.len];
        r.read_exact(&mut payload)?;
        Ok((header.kind, payload))
    }

    #[test]
    fn counters_then_frames_reach_a_listening_collector_after_the_hello() {
        let (_dir, listener, ch, metrics) = listening(|cfg| cfg.instance_name = "proxy-a".into());
        let (p1, p2) = (ch.queues().producer(), ch.queues().producer());
        assert!(p1.push(b"event-one"));
        assert!(p2.push(b"event-two"));
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_hello(&mut conn).unwrap(), frame::HELLO);
        let mut frames = Vec::new();
        while frames.iter().filter(|(k, _)| *k == FrameKind::Event).count() < 2 {
            frames.push(read_frame(&mut conn).unwrap());
        }
        assert_eq!(frames[0].0, FrameKind::Stats, "the counters go first on a new connection");
        assert_eq!(sentinel_wire::stats::HostStats::decode(&frames[0].1).unwrap().proxy, "proxy-a");
        let mut events: Vec<&[u8]> = frames.iter().filter(|(k, _)| *k == FrameKind::Event).map(|(_, p)| p.as_slice()).collect();
        events.sort();
        assert_eq!(events, [&b"event-one"[..], &b"event-two"[..]]);
        assert!(eventually(|| metrics.sent_frames.load(Relaxed) == 2), "only events count as sent frames");
    }

    /// Reads the hello and then event payloads from a peer until `n` events came (counter
    /// frames are skipped).
    fn read_events(conn: &mut UnixStream, n: usize) -> Vec<Vec<u8>> {
        assert_eq!(read_hello(conn).unwrap(), frame::HELLO);
        let mut events = Vec::new();
        while events.len() < n {
            let (kind, payload) = read_frame(conn).unwrap();
            if kind == FrameKind::Event {
                events.push(payload);
            }
        }
        events
    }

    #[test]
    fn no_new_connection_while_the_collector_may_still_read_pages_lent_on_the_old_one() {
        let (_dir, listener, ch, metrics) = listening(|cfg| cfg.write_timeout = Duration::from_millis(100));
        let p = ch.queues().producer();
        // Far more than the socket holds, so a write blocks and times out unread.
        let event = |i: u32| {
            let mut e = vec![7u8; 900];
            e[..4].copy_from_slice(&i.to_be_bytes());
            e
        };
        for i in 0..8_000 {
            assert!(p.push(&event(i)));
        }
        let (mut first, _) = listener.accept().unwrap();
        // Gave up: not connected, or (were it to reconnect at once) connected a second time.
        let gave_up = || metrics.connected.load(Relaxed) == 0 || metrics.connects.load(Relaxed) >= 2;
        assert!(eventually(gave_up), "the write timed out and the sender gave up on the connection");
        listener.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(listener.accept().is_err(), "reconnected while the old connection still held unread lent pages");
        // The collector reads what is queued on the old connection (every frame whole and
        // unchanged), and the sender lets it go and reconnects.
        first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_hello(&mut first).unwrap(), frame::HELLO);
        let mut events = 0;
        while let Ok((kind, payload)) = read_frame(&mut first) {
            if kind == FrameKind::Event {
                assert!(payload == event(events), "event {events} arrived changed or out of order");
                events += 1;
            }
        }
        assert!(events > 0);
        listener.set_nonblocking(false).unwrap();
        let (mut second, _) = listener.accept().unwrap();
        second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(!read_events(&mut second, 10).is_empty(), "events flow on the new connection");
    }

    #[test]
    fn a_steady_producer_is_not_starved_by_acknowledgements_left_unread() {
        // 18 MB/s into a 1 MiB ring: ~55 ms of events, about one write interval. The collector
        // stand-in acknowledges everything it has read whenever it catches up; what must keep up
        // is the sender reading those acknowledgements, not only sending.
        let (_dir, listener, ch, metrics) = listening(|cfg| cfg.capacity_bytes = 1 << 20);
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut acks = conn.try_clone().unwrap();
            let mut r = std::io::BufReader::with_capacity(1 << 20, conn);
            read_hello(&mut r).unwrap();
            let mut events = 0u64;
            while let Ok((kind, _)) = read_frame(&mut r) {
                events += u64::from(kind == FrameKind::Event);
                if r.buffer().is_empty() && acks.write_all(&frame::ack_frame(events)).is_err() {
                    break;
                }
            }
        });
        let p = ch.queues().producer();
        let event = [5u8; 895];
        let until = Instant::now() + Duration::from_millis(1500);
        let mut pushed = 0u64;
        while Instant::now() < until {
            for _ in 0..10 {
                if p.push(&event) {
                    pushed += 1;
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        assert_eq!(metrics.dropped(DropReason::QueueFull), 0, "events dropped with the collector keeping up ({pushed} pushed)");
        assert!(pushed > 10_000, "the producer ran: {pushed}");
    }

    #[test]
    fn unacknowledged_frames_are_kept_and_sent_again_after_a_reconnect() {
        let (_dir, listener, ch, metrics) = listening(|_| ());
        let p = ch.queues().producer();
        for e in [&b"e1"[..], b"e2", b"e3"] {
            assert!(p.push(e));
        }
        let (mut first, _) = listener.accept().unwrap();
        first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_events(&mut first, 3), [b"e1".to_vec(), b"e2".to_vec(), b"e3".to_vec()]);
        // Only the first is durable; then the collector goes away.
        first.write_all(&frame::ack_frame(1)).unwrap();
        assert!(eventually(|| metrics.acked_frames.load(Relaxed) == 1));
        // The gauge follows the counter on the sender's next turn.
        assert!(eventually(|| metrics.queue_frames.load(Relaxed) == 2), "the other two wait for their acknowledgement: {}", metrics.queue_frames.load(Relaxed));
        drop(first);
        let (mut second, _) = listener.accept().unwrap();
        second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_events(&mut second, 2), [b"e2".to_vec(), b"e3".to_vec()], "sent again, in order");
        assert_eq!(metrics.resent_frames.load(Relaxed), 2);
        second.write_all(&frame::ack_frame(2)).unwrap();
        assert!(eventually(|| metrics.queue_frames.load(Relaxed) == 0 && metrics.acked_frames.load(Relaxed) == 3));
        assert_eq!(metrics.dropped_total(), 0, "nothing was lost on the way");
    }
}
