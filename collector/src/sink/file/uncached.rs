//! Appending output the collector never reads back without letting it pile up in the page
//! cache: `pwritev2` with `RWF_DONTCACHE` (Linux 6.14 and later) writes through the cache and
//! starts writeback at once, and the pages are dropped when it completes, so the next writes
//! reuse them instead of taking fresh memory. Where the kernel or file system refuses the flag,
//! writes are plain ones.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;

/// An output file written with `RWF_DONTCACHE` while the kernel accepts it.
pub struct Appender {
    file: File,
    uncached: bool,
}

impl Appender {
    /// Writes to `file` at its current position (its end, when opened to append); `uncached`
    /// asks for `RWF_DONTCACHE`.
    pub fn new(file: File, uncached: bool) -> Appender {
        Appender { file, uncached }
    }

    /// The file, to sync it.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// One `pwritev2` a call; `write_all` and `BufWriter` do the rest.
impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.uncached {
            let iov = libc::iovec { iov_base: buf.as_ptr().cast_mut().cast(), iov_len: buf.len() };
            // SAFETY: one iovec over `buf`, which outlives the call; offset -1 writes at (and
            // moves) the file position.
            let n = unsafe { libc::pwritev2(self.file.as_raw_fd(), &iov, 1, -1, libc::RWF_DONTCACHE) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) {
                return Err(e);
            }
            // An older kernel, or a file system without uncached writes: nothing was written,
            // so write plainly from here on.
            tracing::debug!("uncached writes refused ({e}); writing through the page cache");
            self.uncached = false;
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn appends_land_in_order_after_what_the_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, b"{\"old\":1}\n").unwrap();
        for uncached in [true, false] {
            let file = OpenOptions::new().append(true).open(&path).unwrap();
            let mut a = Appender::new(file, uncached);
            let big = vec![b'x'; 300 << 10];
            a.write_all(b"{\"a\":1}\n").unwrap();
            a.write_all(&big).unwrap();
            a.write_all(b"\n").unwrap();
        }
        let text = std::fs::read(&path).unwrap();
        let mut want = b"{\"old\":1}\n".to_vec();
        for _ in 0..2 {
            want.extend_from_slice(b"{\"a\":1}\n");
            want.extend(std::iter::repeat_n(b'x', 300 << 10));
            want.push(b'\n');
        }
        assert_eq!(text.len(), want.len());
        assert!(text == want);
    }
}
