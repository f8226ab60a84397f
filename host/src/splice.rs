//! Writes ring bytes to the collector's socket without copying them on the proxy's CPU.
//!
//! A plain `write` copies every frame into socket buffers the kernel allocates for it, and by
//! the time the sender runs (once per write interval) the ring's bytes have left the cache:
//! that copy was the sender's whole cost, 0.3–0.7 µs of the proxy's CPU per request. Here
//! `vmsplice` lends the ring's pages to a pipe by reference and `splice` moves those references
//! into the socket; the collector's read is then the only copy, on its own CPU.
//!
//! Lending is sound because of how the ring is released: the sender frees ring bytes only when
//! the collector acknowledges their frames, and it acknowledges only what it has read, so no
//! byte lent to the kernel is overwritten while the kernel may still hand it out. Where the
//! kernel refuses (no `vmsplice`, or a socket that cannot take spliced pages), the writer falls
//! back to ordinary writes for good, and says so once.
//!
//! Unlike `write` on a socket (which Rust's standard library sends with `MSG_NOSIGNAL`),
//! `splice` into a socket whose peer has gone raises SIGPIPE, whose default action kills the
//! process. A proxy may run with that default, so the writer blocks SIGPIPE on the thread that
//! uses it (the channel's sender thread) and discards the one a broken connection leaves pending.

use std::cell::Cell;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Pipe capacity asked for: a whole default batch (256 KiB) moves in one `vmsplice`/`splice`
/// pair. If the system refuses it, the default (64 KiB) only means more pairs.
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Writes byte slices to a socket, lending pages where the kernel allows it.
pub(crate) struct SocketWriter {
    /// Read and write ends of the pipe pages pass through; made on first use, and dropped after
    /// a failed write (pages it still holds belong to a connection that is gone).
    pipe: Option<(OwnedFd, OwnedFd)>,
    zero_copy: bool,
}

impl SocketWriter {
    pub fn new() -> SocketWriter {
        SocketWriter { pipe: None, zero_copy: true }
    }

    /// True while writes lend pages rather than copy (false once the kernel has refused).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Writes all of `parts`, in order, blocking as `write_all` does (the socket's write
    /// timeout applies). After an error the connection must be dropped: an unknown part of the
    /// bytes may have gone.
    pub fn write_all(&mut self, conn: &mut UnixStream, parts: &[&[u8]]) -> io::Result<()> {
        if self.zero_copy && !block_sigpipe_on_this_thread() {
            log::info!("telemetry: cannot block SIGPIPE on the sender thread; copying into the collector socket instead");
            self.zero_copy = false;
        }
        let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        while !parts.is_empty() {
            if !self.zero_copy {
                for p in &parts {
                    conn.write_all(p)?;
                }
                return Ok(());
            }
            match self.lend(conn, &parts) {
                Ok(n) => advance(&mut parts, n),
                Err(Lend::Refused(e)) => {
                    log::info!("telemetry: the kernel cannot splice into the collector socket ({e}); copying instead");
                    self.zero_copy = false;
                    self.pipe = None;
                }
                Err(Lend::Failed(e)) => {
                    self.pipe = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Moves up to a pipe's worth of `parts` into the socket; returns how many bytes went.
    fn lend(&mut self, conn: &UnixStream, parts: &[&[u8]]) -> Result<usize, Lend> {
        if self.pipe.is_none() {
            self.pipe = Some(pipe().map_err(Lend::Refused)?);
        }
        let Some((read, write)) = self.pipe.as_ref() else { return Ok(0) };
        let iov: Vec<libc::iovec> =
            parts.iter().take(16).map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() }).collect();
        // SAFETY: each iovec describes a live slice borrowed for this call; vmsplice only reads
        // them (taking page references, see the module doc for why the bytes stay unchanged
        // until the collector has read them).
        let lent = unsafe { libc::vmsplice(write.as_raw_fd(), iov.as_ptr(), iov.len(), 0) };
        if lent < 0 {
            let e = io::Error::last_os_error();
            return Err(if refused(&e) { Lend::Refused(e) } else { Lend::Failed(e) });
        }
        let lent = lent as usize;
        let mut moved = 0;
        while moved < lent {
            // SAFETY: plain file descriptors owned by this writer and the caller; no offsets.
            let n = unsafe {
                libc::splice(read.as_raw_fd(), std::ptr::null_mut(), conn.as_raw_fd(), std::ptr::null_mut(), lent - moved, libc::SPLICE_F_MOVE)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.raw_os_error() == Some(libc::EPIPE) {
                    discard_pending_sigpipe();
                }
                // Refused before anything moved: the lent pages are still in the pipe, which is
                // dropped; the caller copies the same bytes instead.
                if moved == 0 && refused(&e) {
                    return Err(Lend::Refused(e));
                }
                return Err(Lend::Failed(e));
            }
            if n == 0 {
                return Err(Lend::Failed(io::Error::new(io::ErrorKind::WriteZero, "the collector socket took no bytes")));
            }
            moved += n as usize;
        }
        Ok(lent)
    }
}

enum Lend {
    /// The kernel cannot do this at all; copy from now on.
    Refused(io::Error),
    /// The write itself failed (peer gone, timeout).
    Failed(io::Error),
}

/// Errors that mean "not supported here" rather than "this connection failed".
fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EBADF))
}

/// Bytes sent on `conn` that the peer has not yet read (or dropped by closing): while it is not
/// zero, the peer may still read pages lent on this connection. Counted by the kernel as the
/// sender's socket memory in use, so it reaches zero only once every buffer has been freed.
pub(crate) fn unread_bytes(conn: &UnixStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ for a socket; libc names only the former) writes one int
    // through the pointer; the descriptor is an open socket.
    if unsafe { libc::ioctl(conn.as_raw_fd(), libc::TIOCOUTQ, &mut n) } < 0 {
        return 0;
    }
    n.max(0) as usize
}

thread_local! {
    static SIGPIPE_BLOCKED: Cell<bool> = const { Cell::new(false) };
}

fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset adds a valid signal to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

/// Blocks SIGPIPE for the calling thread (once per thread); false if that failed.
fn block_sigpipe_on_this_thread() -> bool {
    SIGPIPE_BLOCKED.with(|blocked| {
        if !blocked.get() {
            let set = sigpipe_set();
            // SAFETY: a valid, initialised signal set; the old mask is not wanted.
            let ok = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } == 0;
            blocked.set(ok);
        }
        blocked.get()
    })
}

/// Takes the SIGPIPE a failed splice left pending on this thread (where it is blocked), so it
/// is never delivered later.
fn discard_pending_sigpipe() {
    let set = sigpipe_set();
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid set and timeout; with a zero timeout this only takes a signal already pending.
    unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A smaller pipe still works, in more steps.
    // SAFETY: fcntl on a descriptor just opened.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    Ok((read, write))
}

/// Drops the first `n` bytes of `parts`.
fn advance(parts: &mut Vec<&[u8]>, mut n: usize) {
    let mut i = 0;
    while i < parts.len() && n >= parts[i].len() {
        n -= parts[i].len();
        i += 1;
    }
    parts.drain(..i);
    if let Some(first) = parts.first_mut() {
        *first = &first[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn every_byte_arrives_in_order_across_parts_and_pipe_refills() {
        let (mut tx, mut rx) = UnixStream::pair().unwrap();
        // More than one pipe's worth, in parts of odd sizes, the last ones tiny.
        let parts: Vec<Vec<u8>> = [3 << 20, 1, 70_001, 0, 5, 1 << 20].iter().enumerate().map(|(i, &n)| pattern(n, i as u8)).collect();
        let expected: Vec<u8> = parts.concat();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        let mut w = SocketWriter::new();
        let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        w.write_all(&mut tx, &slices).unwrap();
        assert!(w.zero_copy(), "this kernel splices into unix sockets");
        drop(tx);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes changed or reordered on the way");
    }

    #[test]
    fn lent_bytes_are_read_from_the_ring_itself_so_the_ring_must_not_change_before_the_ack() {
        // The property the channel's release-on-acknowledgement rule protects: pages are lent,
        // not copied, so a byte changed after the write but before the read is what the reader
        // sees. (If this ever fails, the kernel copied: safe, merely slower.)
        let (mut tx, mut rx) = UnixStream::pair().unwrap();
        let mut page = vec![b'a'; 8192];
        let mut w = SocketWriter::new();
        w.write_all(&mut tx, &[&page]).unwrap();
        page[0] = b'Z';
        std::hint::black_box(&page);
        let mut got = [0u8; 1];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"Z", "the kernel copied instead of lending pages");
    }

    #[test]
    fn a_reader_that_stops_reading_fails_the_write_within_its_timeout() {
        let (mut tx, _rx) = UnixStream::pair().unwrap();
        tx.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
        let big = pattern(32 << 20, 7);
        let started = Instant::now();
        let mut w = SocketWriter::new();
        let e = w.write_all(&mut tx, &[&big]).expect_err("nobody reads 32 MiB");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert!(w.pipe.is_none(), "the failed write's pipe (with its lent pages) is dropped");
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_hang() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        drop(rx);
        let mut w = SocketWriter::new();
        let e = w.write_all(&mut tx, &[&pattern(100_000, 1)]).expect_err("peer closed");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    }

    #[test]
    fn a_closed_peer_does_not_kill_a_process_that_keeps_sigpipe_s_default_action() {
        // Run in a child process: SIGPIPE's default action is process-wide.
        if std::env::var_os("SENTINEL_SIGPIPE_CHILD").is_some() {
            // SAFETY: restoring the default action of a signal.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let (mut tx, rx) = UnixStream::pair().unwrap();
            drop(rx);
            let mut w = SocketWriter::new();
            let e = w.write_all(&mut tx, &[&pattern(100_000, 1)]).expect_err("peer closed");
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
            assert!(w.zero_copy(), "it spliced (and so would have raised SIGPIPE)");
            // SAFETY: sigpending fills the set it is given.
            let pending = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut set);
                libc::sigismember(&set, libc::SIGPIPE)
            };
            assert_eq!(pending, 0, "the SIGPIPE the failed splice raised is left pending");
            return;
        }
        let me = std::env::current_exe().unwrap();
        let out = std::process::Command::new(me)
            .args(["--exact", "splice::tests::a_closed_peer_does_not_kill_a_process_that_keeps_sigpipe_s_default_action", "--nocapture"])
            .env("SENTINEL_SIGPIPE_CHILD", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "child: {:?}\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran the test: {}", String::from_utf8_lossy(&out.stdout));
    }

    #[test]
    fn unread_bytes_fall_to_zero_once_the_peer_has_read_everything_or_closed() {
        let (mut tx, mut rx) = UnixStream::pair().unwrap();
        let mut w = SocketWriter::new();
        w.write_all(&mut tx, &[&pattern(50_000, 3)]).unwrap();
        assert!(unread_bytes(&tx) > 0);
        let mut got = vec![0u8; 49_999];
        rx.read_exact(&mut got).unwrap();
        assert!(unread_bytes(&tx) > 0, "one byte still unread");
        rx.read_exact(&mut got[..1]).unwrap();
        assert_eq!(unread_bytes(&tx), 0);

        let (mut tx, rx) = UnixStream::pair().unwrap();
        w.write_all(&mut tx, &[&pattern(50_000, 4)]).unwrap();
        assert!(unread_bytes(&tx) > 0);
        drop(rx);
        assert_eq!(unread_bytes(&tx), 0, "a closed peer's buffers are freed unread");
    }

    #[test]
    fn advance_skips_whole_and_partial_parts() {
        let (a, b, c) = (b"abc".as_slice(), b"de".as_slice(), b"fgh".as_slice());
        let mut p = vec![a, b, c];
        advance(&mut p, 4);
        assert_eq!(p, vec![b"e".as_slice(), c]);
        advance(&mut p, 1);
        assert_eq!(p, vec![c]);
        advance(&mut p, 3);
        assert!(p.is_empty());
    }
}
