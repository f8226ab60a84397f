//! The unix-socket listener proxies connect to. Each connection is read by its own task: the
//! hello is checked, frames are parsed, and the event frames of each read go to the pipeline
//! workers as one batch. The same task writes acknowledgements back as batches become durable. A peer that breaks the framing is disconnected; an invalid event or an
//! oversized frame is counted and skipped. One bad peer never disturbs another.

use super::ack::AckTracker;
use super::Frames;
use crate::metrics::{Malformed, Metrics};
use sentinel_wire::frame::{self, FrameKind, HEADER_LEN};
use sentinel_wire::stats::HostStats;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use std::sync::Arc;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

/// Settings of the unix-socket listener.
#[derive(Debug, Clone)]
pub struct UnixIngestConfig {
    pub path: PathBuf,
    /// File mode of the socket; 0660 lets the proxy's group connect and nobody else.
    pub mode: u32,
    pub max_frame_bytes: usize,
    pub peers: PeerPolicy,
    /// Most bytes of frames read from every connection and not yet in the log: past it,
    /// connections stop being read (backpressure) until the log takes some.
    pub queue_bytes: usize,
    /// Most connections at once; more are refused (counted).
    pub max_connections: usize,
    /// A connection that sends nothing this long is closed (a proxy sends its counters every
    /// few seconds, and reconnects when it has events).
    pub idle_timeout: Duration,
}

impl UnixIngestConfig {
    /// The defaults for everything but the path.
    pub fn new(path: impl Into<PathBuf>) -> UnixIngestConfig {
        UnixIngestConfig {
            path: path.into(),
            mode: 0o660,
            max_frame_bytes: 1 << 20,
            peers: PeerPolicy::default(),
            queue_bytes: 64 << 20,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Which peers may connect, checked against the credentials the kernel records for the
/// connecting process (SO_PEERCRED), so a process that can reach the socket file but runs as
/// another user is still turned away. Empty lists: no check beyond the socket's mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl PeerPolicy {
    /// True when nothing is listed: the socket's mode alone decides who connects.
    pub fn is_open(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// True when a peer running as `uid`/`gid` may connect: its uid or its gid is listed.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        self.is_open() || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("socket path {0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("another collector is already listening on {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
}

/// Binds the socket, replacing a stale one left by a dead collector, and sets its mode.
pub fn bind(cfg: &UnixIngestConfig) -> Result<UnixListener, IngestError> {
    let path = &cfg.path;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(IngestError::NotASocket(path.clone()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(IngestError::InUse(path.clone()));
        }
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let bind_err = |source| IngestError::Bind { path: path.clone(), source };
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(cfg.mode)).map_err(bind_err)?;
    Ok(listener)
}

/// Accepts connections until `shutdown` turns true, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    cfg: UnixIngestConfig,
    tx: mpsc::Sender<Frames>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let budget = Arc::new(tokio::sync::Semaphore::new(cfg.queue_bytes.clamp(1, tokio::sync::Semaphore::MAX_PERMITS)));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if !peer_allowed(&stream, &cfg.peers) {
                        metrics.connections_refused.fetch_add(1, Relaxed);
                        continue;
                    }
                    if tasks.len() >= cfg.max_connections {
                        tracing::warn!("refused a connection: {} are open, the most allowed", cfg.max_connections);
                        metrics.connections_refused.fetch_add(1, Relaxed);
                        continue;
                    }
                    metrics.connections.fetch_add(1, Relaxed);
                    let conn = Connection {
                        peer: std::sync::Mutex::new(None),
                        tx: tx.clone(),
                        metrics: metrics.clone(),
                        max_frame: cfg.max_frame_bytes,
                        acks: Arc::new(AckTracker::default()),
                        seen: AtomicU64::new(0),
                        issued: AtomicU64::new(0),
                        budget: budget.clone(),
                        max_budget: cfg.queue_bytes.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
                        idle_timeout: cfg.idle_timeout,
                    };
                    tasks.spawn(conn.run(stream, shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!("accept on {} failed: {e}", cfg.path.display());
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    remove_socket(&cfg.path);
    while tasks.join_next().await.is_some() {}
}

/// Checks a new connection's credentials against the policy; logs a refusal with who it was.
fn peer_allowed(stream: &UnixStream, peers: &PeerPolicy) -> bool {
    if peers.is_open() {
        return true; // no credentials to read
    }
    match stream.peer_cred() {
        Ok(cred) if peers.allows(cred.uid(), cred.gid()) => true,
        Ok(cred) => {
            let pid = cred.pid().map_or_else(|| "?".to_string(), |p| p.to_string());
            tracing::warn!(
                "refused a connection from pid {pid} (uid {}, gid {}): not in transport's allowed-uids/allowed-gids",
                cred.uid(),
                cred.gid()
            );
            false
        }
        Err(e) => {
            tracing::warn!("refused a connection whose credentials cannot be read: {e}");
            false
        }
    }
}

fn remove_socket(path: &Path) {
    if std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false) {
        let _ = std::fs::remove_file(path);
    }
}

struct Connection {
    /// The proxy on the other end, once it has sent its counters.
    peer: std::sync::Mutex<Option<String>>,
    tx: mpsc::Sender<Frames>,
    metrics: Arc<Metrics>,
    max_frame: usize,
    acks: Arc<AckTracker>,
    /// Event frames read on this connection (what acknowledgements count), and how many of
    /// them have been handed on with an acknowledgement.
    seen: AtomicU64,
    issued: AtomicU64,
    /// Bytes allowed between every connection's socket and the log (see `queue_bytes`).
    budget: Arc<tokio::sync::Semaphore>,
    max_budget: usize,
    idle_timeout: Duration,
}

/// Room for the next read at the end of `buf`, at most [`super::READ_BYTES`] of it: the socket
/// is read straight into the buffer the frames are parsed in (and handed over from).
fn room(buf: &mut Vec<u8>) -> bytes::buf::Limit<&mut Vec<u8>> {
    buf.reserve(super::READ_BYTES);
    bytes::BufMut::limit(buf, super::READ_BYTES)
}

/// How long a closing connection waits for its last batches to become durable, so the proxy
/// hears about them rather than resending them.
const FINAL_ACK_WAIT: Duration = Duration::from_secs(2);

/// Where the parser is in the stream.
enum State {
    Hello,
    Frames,
    /// Throwing away the rest of an oversized frame.
    Skipping(usize),
}

impl Connection {
    async fn run(self, stream: UnixStream, mut shutdown: watch::Receiver<bool>) {
        self.metrics.connections_active.fetch_add(1, Relaxed);
        let (mut rd, mut wr) = stream.into_split();
        let mut buf: Vec<u8> = Vec::with_capacity(super::READ_BYTES);
        let mut state = State::Hello;
        let mut sent = 0;
        let mut stopping = false;
        loop {
            let n = tokio::select! {
                _ = shutdown.changed() => {
                    // Take in what the peer already wrote before closing, so it is not lost.
                    self.drain_buffered(&mut rd, &mut buf, &mut state).await;
                    stopping = true;
                    break;
                }
                _ = self.acks.changed.notified() => {
                    if !self.send_ack(&mut wr, &mut sent).await {
                        break;
                    }
                    continue;
                }
                r = tokio::time::timeout(self.idle_timeout, async { rd.read_buf(&mut room(&mut buf)).await }) => match r {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => n,
                    Err(_) => {
                        tracing::info!("closing a connection idle for {:?}", self.idle_timeout);
                        self.metrics.connections_idle_closed.fetch_add(1, Relaxed);
                        break;
                    }
                },
            };
            if !self.ingest(n, &mut buf, &mut state).await {
                break;
            }
        }
        if stopping {
            let _ = tokio::time::timeout(FINAL_ACK_WAIT, async {
                while !self.acks.settled() {
                    self.acks.changed.notified().await;
                }
            })
            .await;
            self.send_ack(&mut wr, &mut sent).await;
        }
        self.metrics.connections_active.fetch_sub(1, Relaxed);
        if let Some(p) = self.peer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.metrics.forget_host(&p);
        }
    }

    /// The budget's size (permits are never added beyond it).
    fn budget_total(&self) -> usize {
        self.max_budget
    }

    /// Tells the peer how many of its event frames are durable, if that grew. False when the
    /// peer is gone.
    async fn send_ack(&self, wr: &mut OwnedWriteHalf, sent: &mut u64) -> bool {
        let acked = self.acks.acked();
        if acked <= *sent {
            return true;
        }
        *sent = acked;
        self.metrics.acks_sent.fetch_add(1, Relaxed);
        wr.write_all(&frame::ack_frame(acked)).await.is_ok()
    }

    /// Reads and processes whatever the socket holds right now, without waiting for more.
    async fn drain_buffered(&self, stream: &mut OwnedReadHalf, buf: &mut Vec<u8>, state: &mut State) {
        loop {
            match stream.try_read_buf(&mut room(buf)) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !self.ingest(n, buf, state).await {
                        break;
                    }
                }
            }
        }
    }

    /// Parses every complete frame in the buffer (`read` bytes of it just arrived) and hands
    /// the event frames to the pipeline with the buffer itself, keeping a copy of what follows
    /// them (frames of a small read are copied out instead), waiting while the pipeline's queue
    /// is full: backpressure. False when the connection must close.
    async fn ingest(&self, read: usize, buf: &mut Vec<u8>, state: &mut State) -> bool {
        self.metrics.bytes_received.fetch_add(read as u64, Relaxed);
        let mut frames = Frames::default();
        let (keep_going, pos) = self.parse(buf, state, &mut frames);
        if frames.is_empty() {
            buf.drain(..pos);
        } else if pos < super::READ_BYTES / 4 {
            // Little arrived: copy the frames out and keep the buffer, so a trickle of small
            // batches queued for the pipeline does not hold a read buffer each.
            frames.copy_from(&buf[..pos]);
            buf.drain(..pos);
        } else {
            // What follows the last whole frame (part of the next one) starts the next buffer.
            let mut next = Vec::with_capacity(buf.len() - pos + super::READ_BYTES);
            next.extend_from_slice(&buf[pos..]);
            frames.own(std::mem::replace(buf, next));
        }
        let seen = self.seen.load(Relaxed);
        if seen > self.issued.swap(seen, Relaxed) {
            let ack = self.acks.issue(seen);
            if frames.is_empty() {
                ack.complete(); // only oversized frames: skipped, and so handled
            } else {
                frames.ack = Some(ack);
            }
        }
        if !frames.is_empty() {
            // Waits while the frames already read fill the byte budget: backpressure, as when
            // the queue is full. One batch larger than the whole budget goes alone.
            let want = u32::try_from(frames.bytes().clamp(1, self.budget_total())).unwrap_or(u32::MAX);
            match self.budget.clone().acquire_many_owned(want).await {
                Ok(p) => frames.held = Some(p),
                Err(_) => return false,
            }
            self.metrics.pipeline_queue.fetch_add(1, Relaxed);
            if self.tx.send(frames).await.is_err() {
                self.metrics.pipeline_queue.fetch_sub(1, Relaxed);
                return false;
            }
        }
        keep_going
    }

    /// Reads every complete unit in `buf`, noting event frames' payloads in `frames`. Returns
    /// false when the peer must be disconnected, and how many bytes were consumed.
    fn parse(&self, buf: &[u8], state: &mut State, frames: &mut Frames) -> (bool, usize) {
        let mut pos = 0;
        let ok = loop {
            let rest = &buf[pos..];
            match state {
                State::Hello => {
                    let Some(hello) = rest.get(..5) else { break true };
                    let hello: [u8; 5] = hello.try_into().unwrap_or_default();
                    if let Err(e) = frame::check_hello(&hello) {
                        tracing::warn!("disconnecting peer: {e}");
                        self.metrics.malformed(Malformed::BadHello);
                        break false;
                    }
                    pos += 5;
                    *state = State::Frames;
                }
                State::Skipping(left) => {
                    let n = (*left).min(rest.len());
                    pos += n;
                    *left -= n;
                    if *left > 0 {
                        break true;
                    }
                    *state = State::Frames;
                }
                State::Frames => {
                    let Some(h) = rest.get(..HEADER_LEN) else { break true };
                    let h: [u8; HEADER_LEN] = h.try_into().unwrap_or_default();
                    let header = match frame::read_header(&h) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!("disconnecting peer: {e}");
                            self.metrics.malformed(Malformed::BadFrame);
                            break false;
                        }
                    };
                    if header.len > self.max_frame {
                        self.metrics.oversized.fetch_add(1, Relaxed);
                        self.metrics.frames_received.fetch_add(1, Relaxed);
                        self.seen.fetch_add(1, Relaxed);
                        pos += HEADER_LEN;
                        *state = State::Skipping(header.len);
                        continue;
                    }
                    let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + header.len) else { break true };
                    if header.kind == FrameKind::Stats {
                        match HostStats::decode(payload) {
                            Ok(s) => {
                                // One set of counters per connection: a peer that changes its
                                // name replaces its own, it does not add another.
                                let mut peer = self.peer.lock().unwrap_or_else(|p| p.into_inner());
                                let served = self.metrics.host_stats(s);
                                if let Some(old) = peer.take().filter(|old| Some(old) != served.as_ref()) {
                                    self.metrics.forget_host(&old);
                                }
                                *peer = served;
                            }
                            Err(e) => {
                                tracing::debug!("skipping counters frame: {e}");
                                self.metrics.malformed(Malformed::BadEvent);
                            }
                        }
                        pos += HEADER_LEN + header.len;
                        continue;
                    }
                    if header.kind == FrameKind::Ack {
                        tracing::warn!("disconnecting peer: it sent an acknowledgement, which only collectors send");
                        self.metrics.malformed(Malformed::BadFrame);
                        break false;
                    }
                    self.metrics.frames_received.fetch_add(1, Relaxed);
                    self.seen.fetch_add(1, Relaxed);
                    frames.span(pos + HEADER_LEN, pos + HEADER_LEN + payload.len());
                    pos += HEADER_LEN + header.len;
                }
            }
        };
        (ok, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn me() -> (u32, u32) {
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        unsafe { (libc::getuid(), libc::getgid()) }
    }

    /// Starts a listener with `peers`, connects once as this process, and reports whether the
    /// collector kept the connection, with the accepted and refused counts.
    async fn connect_with(peers: PeerPolicy) -> (bool, u64, u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = UnixIngestConfig { peers, ..UnixIngestConfig::new(dir.path().join("t.sock")) };
        let listener = bind(&cfg).expect("bind");
        let metrics = Arc::new(Metrics::default());
        let (tx, _rx) = mpsc::channel(4);
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, cfg.clone(), tx, metrics.clone(), stop_rx));
        let mut conn = UnixStream::connect(&cfg.path).await.expect("connect");
        conn.write_all(&frame::HELLO).await.expect("hello");
        // A refused peer is hung up on at once; a kept one hears nothing until it sends events.
        let mut buf = [0u8; 16];
        let kept = match tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf)).await {
            Err(_) => true,
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(_)) => true,
        };
        let _ = stop_tx.send(true);
        drop(conn);
        let _ = server.await;
        (kept, metrics.connections.load(Relaxed), metrics.connections_refused.load(Relaxed))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_split_across_reads_reach_the_pipeline_whole_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let max = 200_000;
        let cfg = UnixIngestConfig { max_frame_bytes: max, ..UnixIngestConfig::new(dir.path().join("t.sock")) };
        let listener = bind(&cfg).expect("bind");
        let metrics = Arc::new(Metrics::default());
        let (tx, mut rx) = mpsc::channel::<Frames>(4);
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, cfg.clone(), tx, metrics.clone(), stop_rx));
        let received = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(mut frames) = rx.recv().await {
                all.extend(frames.iter().map(<[u8]>::to_vec));
                if let Some(a) = frames.ack.take() {
                    a.complete();
                }
            }
            all
        });
        // Payloads from 1 byte to past one read's worth, each byte telling which frame it is
        // in; every 50th frame is over the limit and must be skipped, not handed on.
        let mut stream = frame::HELLO.to_vec();
        let mut expected = Vec::new();
        for i in 0..400usize {
            let len = if i % 50 == 49 { max + 1 } else { [1, 17, 600, 4_095, 70_000, 150_000][i % 6] };
            let payload = vec![(i % 251) as u8; len];
            frame::write_frame(&mut stream, FrameKind::Event, &payload);
            if len <= max {
                expected.push(payload);
            }
        }
        let mut conn = UnixStream::connect(&cfg.path).await.expect("connect");
        // Writes of odd sizes with pauses, so reads end inside headers and payloads.
        let mut at = 0;
        for (n, size) in [1, 3, 19, 4_099, 65_537, 131_071].iter().cycle().enumerate() {
            if at >= stream.len() {
                break;
            }
            let end = (at + size).min(stream.len());
            conn.write_all(&stream[at..end]).await.expect("write");
            at = end;
            if n % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for _ in 0..500 {
            if metrics.frames_received.load(Relaxed) == 400 && metrics.oversized.load(Relaxed) == 8 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop_tx.send(true);
        drop(conn);
        let _ = server.await;
        let got = received.await.expect("receiver");
        assert_eq!(metrics.oversized.load(Relaxed), 8);
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(g == e, "frame {i}: {} bytes handed on, {} sent", g.len(), e.len());
        }
    }

    #[tokio::test]
    async fn peers_are_checked_by_uid_or_gid() {
        let (uid, gid) = me();
        let other = |id: u32| id.wrapping_add(4242);
        assert_eq!(connect_with(PeerPolicy::default()).await, (true, 1, 0), "no lists: no check");
        assert_eq!(connect_with(PeerPolicy { uids: vec![uid], gids: vec![] }).await, (true, 1, 0), "listed uid");
        assert_eq!(connect_with(PeerPolicy { uids: vec![other(uid)], gids: vec![gid] }).await, (true, 1, 0), "listed gid");
        assert_eq!(
            connect_with(PeerPolicy { uids: vec![other(uid)], gids: vec![other(gid)] }).await,
            (false, 0, 1),
            "neither listed: refused and counted"
        );
    }

    /// Starts a listener with `cfg`; returns the metrics, the pipeline's receiving end and a
    /// stopper.
    fn start(cfg: &UnixIngestConfig, queue: usize) -> (Arc<Metrics>, mpsc::Receiver<Frames>, watch::Sender<bool>) {
        let listener = bind(cfg).expect("bind");
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::channel(queue);
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(serve(listener, cfg.clone(), tx, metrics.clone(), stop_rx));
        (metrics, rx, stop_tx)
    }

    /// True when the collector closes `conn` within `wait`.
    async fn closed_within(conn: &mut UnixStream, wait: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(wait, conn.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_limited_in_number_and_idle_ones_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = UnixIngestConfig { max_connections: 2, idle_timeout: Duration::from_millis(300), ..UnixIngestConfig::new(dir.path().join("t.sock")) };
        let (metrics, _rx, _stop) = start(&cfg, 4);
        let mut a = UnixStream::connect(&cfg.path).await.expect("connect");
        let mut b = UnixStream::connect(&cfg.path).await.expect("connect");
        a.write_all(&frame::HELLO).await.expect("hello");
        b.write_all(&frame::HELLO).await.expect("hello");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = UnixStream::connect(&cfg.path).await.expect("connect");
        assert!(closed_within(&mut c, Duration::from_millis(200)).await, "a third connection is refused");
        assert_eq!(metrics.connections_refused.load(Relaxed), 1);
        // `a` keeps talking (counters), `b` says nothing: only `b` is closed.
        let mut stats = Vec::new();
        let s = HostStats { proxy: "p".into(), ..HostStats::default() };
        frame::write_frame(&mut stats, FrameKind::Stats, &s.encode());
        for _ in 0..6 {
            a.write_all(&stats).await.expect("a is open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed_within(&mut b, Duration::from_millis(500)).await, "the idle connection is closed");
        assert!(!closed_within(&mut a, Duration::from_millis(50)).await, "the talking one is not");
        assert_eq!(metrics.connections_idle_closed.load(Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_cannot_grow_the_served_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = UnixIngestConfig::new(dir.path().join("t.sock"));
        let (metrics, _rx, _stop) = start(&cfg, 4);
        let mut conn = UnixStream::connect(&cfg.path).await.expect("connect");
        let mut stream = frame::HELLO.to_vec();
        for i in 0..500 {
            let mut s = HostStats { proxy: format!("proxy-{i}-{}", "x".repeat(i)), ..HostStats::default() };
            for r in 0..100 {
                s.dropped.insert(format!("reason-{r}"), 1);
            }
            frame::write_frame(&mut stream, FrameKind::Stats, &s.encode());
        }
        conn.write_all(&stream).await.expect("write");
        for _ in 0..200 {
            if metrics.stats_frames.load(Relaxed) == 500 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.stats_frames.load(Relaxed), 500);
        assert_eq!(metrics.hosts_served(), 1, "one connection, one set of counters");
        let text = metrics.render_prometheus();
        assert!(text.lines().all(|l| l.len() < 600), "label values are cut");
        assert!(text.lines().filter(|l| l.contains("reason=\"reason-")).count() <= 16, "drop reasons are capped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_waiting_for_the_pipeline_are_bounded_in_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = 1 << 20;
        let cfg = UnixIngestConfig { queue_bytes: budget, ..UnixIngestConfig::new(dir.path().join("t.sock")) };
        // A queue with room for many batches: only the byte budget can stop ingest.
        let (metrics, mut rx, _stop) = start(&cfg, 10_000);
        let mut stream = frame::HELLO.to_vec();
        for _ in 0..400 {
            frame::write_frame(&mut stream, FrameKind::Event, &[7u8; 50_000]);
        }
        let mut conn = UnixStream::connect(&cfg.path).await.expect("connect");
        let writer = tokio::spawn(async move {
            let _ = conn.write_all(&stream).await;
            conn
        });
        // Nothing is processed: every batch handed on stays held.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut held = Vec::new();
        while let Ok(f) = rx.try_recv() {
            held.push(f);
        }
        let bytes: usize = held.iter().map(Frames::bytes).sum();
        assert!(bytes <= budget + (128 << 10), "{bytes} bytes waiting with a budget of {budget}");
        assert!(metrics.frames_received.load(Relaxed) < 400, "ingest stopped reading");
        // Once the pipeline takes them in (and lets go), the rest comes.
        let mut total: usize = held.iter().map(Frames::len).sum();
        drop(held);
        while total < 400 {
            let f = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("more frames came").expect("open");
            total += f.len();
        }
        let _ = writer.await;
    }
}
