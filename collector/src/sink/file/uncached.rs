//! Appending output the collector never reads back without letting it pile up in the page
//! cache. Whole blocks go to disk with direct I/O (see [`crate::direct_io`]); the last, partial
//! block is written plainly, so the file always ends with the last byte delivered and a reader
//! tailing it never sees padding (the next direct write takes that block over, completed).
//! Where the file system refuses direct I/O, `pwritev2` with `RWF_DONTCACHE` (Linux 6.14 and
//! later) writes through the cache and drops the pages once written back; where that is
//! refused too, writes are plain ones.

use crate::direct_io::{self, BlockAppender, BLOCK};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An output file written around the page cache as far as the system allows.
pub struct Appender {
    file: File,
    uncached: bool,
    blocks: Option<Blocks>,
}

/// The direct-I/O side of an [`Appender`]: a second descriptor on the file, and its last
/// partial block (which the file also holds) with what is being appended after it.
struct Blocks {
    file: File,
    out: BlockAppender,
}

impl Blocks {
    /// Opens `path` (whose content is `file`'s) for direct writes, when the file system allows.
    fn open(path: &Path, file: &File) -> std::io::Result<Option<Blocks>> {
        let (direct, is_direct) = direct_io::open(OpenOptions::new().write(true), path, true)?;
        if !is_direct {
            return Ok(None);
        }
        let len = file.metadata()?.len();
        let base = len - len % BLOCK as u64;
        let mut tail = vec![0; (len - base) as usize];
        File::open(path)?.read_exact_at(&mut tail, base)?;
        Ok(Some(Blocks { file: direct, out: BlockAppender::new(&tail, len) }))
    }
}

impl Appender {
    /// Writes to `file` at its current position (its end, when opened to append); `uncached`
    /// asks for `RWF_DONTCACHE`.
    pub fn new(file: File, uncached: bool) -> Appender {
        Appender { file, uncached, blocks: None }
    }

    /// Also writes whole blocks with direct I/O, through a second descriptor on `path` (the
    /// file this appender writes), when `uncached` was asked for and the file system allows it.
    pub fn direct_blocks(mut self, path: &Path) -> Appender {
        if self.uncached {
            match Blocks::open(path, &self.file) {
                Ok(blocks) => self.blocks = blocks,
                Err(e) => tracing::debug!("no direct writes to {} ({e}); writing through the page cache", path.display()),
            }
        }
        self
    }

    /// One write through the uncached path (or a plain one where it is refused).
    fn write_uncached(&mut self, buf: &[u8]) -> std::io::Result<usize> {
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

    /// The file, to sync it.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Whole blocks directly and the rest plainly, or one `pwritev2` a call; `write_all` and
/// `BufWriter` do the rest.
impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(b) = self.blocks.as_mut() else { return self.write_uncached(buf) };
        let held = b.out.end();
        b.out.stage(buf);
        if let Err(e) = b.out.write_blocks(&b.file) {
            b.out.forget_after(held);
            return Err(e);
        }
        // The partial block's bytes the file does not hold yet (none of it, if a block was
        // just written over it).
        let (rest, at) = b.out.staged_from(held);
        self.file.write_all_at(rest, at)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    /// Every mode (direct blocks, uncached, plain) appends after what the file held, and after
    /// every write the file is exactly what was delivered: no padding a reader could see.
    #[test]
    fn appends_land_in_order_after_what_the_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, b"{\"old\":1}\n").unwrap();
        let mut want = b"{\"old\":1}\n".to_vec();
        for (direct, uncached) in [(true, true), (false, true), (false, false), (true, true)] {
            let file = OpenOptions::new().append(true).open(&path).unwrap();
            let mut a = Appender::new(file, uncached);
            if direct {
                a = a.direct_blocks(&path);
            }
            for (i, size) in [8usize, 300 << 10, 1, 4095, 4096, 4097, 12_000, 3].into_iter().enumerate() {
                let chunk: Vec<u8> = (0..size).map(|k| b'a' + ((k + i) % 26) as u8).collect();
                a.write_all(&chunk).unwrap();
                want.extend_from_slice(&chunk);
                let text = std::fs::read(&path).unwrap();
                assert_eq!(text.len(), want.len(), "direct {direct}, uncached {uncached}, write {i}");
                assert!(text == want, "direct {direct}, uncached {uncached}, write {i}: content differs");
            }
        }
    }
}
