//! Appending output the collector never reads back without letting it pile up in the page
//! cache. Whole blocks go to disk with direct I/O (see [`crate::direct_io`]); the last, partial
//! block is written plainly, so the file always ends with the last byte delivered and a reader
//! tailing it never sees padding (the next direct write takes that block over, completed).
//! Where the file system refuses direct I/O, `pwritev2` with `RWF_DONTCACHE` (Linux 6.14 and
//! later) writes through the cache and drops the pages once written back; where that is
//! refused too, writes are plain ones.

use crate::direct_io::{self, AlignedBuf, BLOCK};
use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An output file written around the page cache as far as the system allows.
pub struct Appender {
    file: File,
    uncached: bool,
    blocks: Option<Blocks>,
}

/// The direct-I/O side of an [`Appender`]: a second descriptor on the file, and the bytes of
/// its last partial block (at `base`, a block boundary), which the file also holds.
struct Blocks {
    file: File,
    tail: AlignedBuf,
    base: u64,
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
        let mut tail = AlignedBuf::new();
        let mut bytes = vec![0; (len - base) as usize];
        File::open(path)?.read_exact_at(&mut bytes, base)?;
        tail.extend_from_slice(&bytes);
        Ok(Some(Blocks { file: direct, tail, base }))
    }

    /// Writes the completed blocks of tail + `buf` directly; returns how many bytes at the end
    /// of `buf` are left for a plain write (those past the last full block and not yet in the
    /// file) and the file offset they go to. On an error the state is as before the call; part
    /// of `buf` may be in the file, except after `EINVAL` (direct I/O refused: nothing written).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<(usize, u64)> {
        let in_file = self.tail.len();
        self.tail.extend_from_slice(buf);
        let full = self.tail.len() / BLOCK * BLOCK;
        if full > 0 {
            if let Err(e) = self.file.write_all_at(&self.tail.bytes()[..full], self.base) {
                self.tail.keep_prefix(in_file);
                return Err(e);
            }
        }
        let at = full.max(in_file);
        let left = self.tail.len() - at;
        let at = self.base + at as u64;
        self.tail.keep_from(full);
        self.base += full as u64;
        Ok((left, at))
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
        if let Some(blocks) = self.blocks.as_mut() {
            match blocks.write(buf) {
                Ok((left, at)) => {
                    self.file.write_all_at(&buf[buf.len() - left..], at)?;
                    return Ok(buf.len());
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!("direct writes refused ({e}); writing through the page cache");
                    self.blocks = None;
                    // Writes from here on go where the descriptor stands: at the file's end.
                    self.file.seek(std::io::SeekFrom::End(0))?;
                }
                Err(e) => return Err(e),
            }
        }
        self.write_uncached(buf)
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
