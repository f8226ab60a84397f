//! Files written and read around the page cache (`O_DIRECT`). The log's bytes are written once
//! and read once, by the sinks, soon after, and the file sink's output is not read back at all;
//! passing them through the page cache costs a copy into pages the kernel must first find, and
//! crowds out what other programs cache. Direct I/O moves whole aligned blocks between the
//! device and these buffers.
//!
//! The log's writer keeps the file's last, partial block in memory and writes it again,
//! completed, with the next group; what follows the data in the last block is zeros, which a
//! reader takes for the end marker. Where the file system refuses `O_DIRECT` (tmpfs, some
//! network file systems) the same code runs on a plain file descriptor.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The alignment direct I/O needs of offsets, lengths and memory here: the page size, which
/// covers every logical block size in use.
pub const BLOCK: usize = 4096;

#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

/// A byte buffer whose start is block-aligned and whose capacity is whole blocks.
struct AlignedBuf {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBuf {
    fn new() -> AlignedBuf {
        AlignedBuf { blocks: Vec::new(), len: 0 }
    }

    fn with_blocks(n: usize) -> AlignedBuf {
        AlignedBuf { blocks: vec![Block([0; BLOCK]); n], len: 0 }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn all(&self) -> &[u8] {
        // SAFETY: `Block` is `repr(C)` over a byte array, so the vector's storage is
        // `blocks.len() * BLOCK` initialized bytes.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.blocks.len() * BLOCK) }
    }

    fn all_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `all`, and the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), self.blocks.len() * BLOCK) }
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        let need = end.div_ceil(BLOCK);
        if need > self.blocks.len() {
            self.blocks.resize(need.max(self.blocks.len() * 2), Block([0; BLOCK]));
        }
        let start = self.len;
        self.all_mut()[start..end].copy_from_slice(bytes);
        self.len = end;
    }

    /// The bytes written so far.
    fn bytes(&self) -> &[u8] {
        &self.all()[..self.len]
    }

    /// Keeps only `bytes[from..]`, moved to the start.
    fn keep_from(&mut self, from: usize) {
        let len = self.len;
        self.all_mut().copy_within(from..len, 0);
        self.len = len - from;
    }

    /// The bytes written so far followed by zeros up to the next block boundary.
    fn padded(&mut self) -> &[u8] {
        let end = self.len.next_multiple_of(BLOCK);
        let len = self.len;
        self.all_mut()[len..end].fill(0);
        &self.all()[..end]
    }
}

/// Opens `path` for direct I/O when `direct` and the file system allows it; plainly otherwise.
/// Returns whether the descriptor is direct.
pub fn open(opts: &mut OpenOptions, path: &Path, direct: bool) -> std::io::Result<(File, bool)> {
    if direct {
        match opts.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {} // not supported here
            Err(e) => return Err(e),
        }
    }
    Ok((opts.open(path)?, false))
}

/// Turns direct I/O off for `file` (kept open): for a device whose blocks are larger than
/// [`BLOCK`], which refuses our writes with `EINVAL` though it accepted the open.
pub fn stop_direct(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor `file` owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `io` once more without direct I/O if direct I/O refused it.
fn retry_plain<T>(file: &File, mut io: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    match io() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!("direct I/O refused ({e}); going on through the page cache");
            stop_direct(file)?;
            io()
        }
        other => other,
    }
}

/// Appends to a file in whole blocks: what is staged is written from the start of the block
/// holding the file's current end, that block's earlier bytes first.
pub struct BlockAppender {
    /// The last partial block's bytes, then what is staged after them.
    buf: AlignedBuf,
    /// File offset of `buf[0]` (a block boundary).
    base: u64,
}

impl BlockAppender {
    /// Appends after byte `end` of a file whose last partial block holds `tail` (the bytes from
    /// the block boundary before `end` up to it).
    pub fn new(tail: &[u8], end: u64) -> BlockAppender {
        debug_assert_eq!(tail.len() as u64, end % BLOCK as u64, "the tail is the last partial block");
        let mut buf = AlignedBuf::new();
        buf.extend_from_slice(tail);
        BlockAppender { buf, base: end - end % BLOCK as u64 }
    }

    /// The file offset the next staged byte goes to.
    pub fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Stages bytes for the next write.
    pub fn stage(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Writes what is staged (padded with zeros to a block boundary) and keeps the new last
    /// partial block. On an error nothing is kept: [`BlockAppender::forget_after`] restores the
    /// state the caller cuts the file back to.
    pub fn write(&mut self, file: &File, keep_until: u64) -> std::io::Result<()> {
        let base = self.base;
        let block = self.buf.padded();
        retry_plain(file, || file.write_all_at(block, base))?;
        let new_base = keep_until - keep_until % BLOCK as u64;
        let from = usize::try_from(new_base - base).unwrap_or(usize::MAX);
        let keep = usize::try_from(keep_until - base).unwrap_or(usize::MAX);
        self.buf.len = keep;
        self.buf.keep_from(from);
        self.base = new_base;
        Ok(())
    }

    /// Writes the staged bytes' whole blocks only, and keeps the rest (the new last partial
    /// block) staged: for a file whose readers must never see padding, which gets that rest
    /// from a plain write ([`BlockAppender::staged_from`]). On an error nothing is kept.
    pub fn write_blocks(&mut self, file: &File) -> std::io::Result<()> {
        let full = self.buf.len / BLOCK * BLOCK;
        if full > 0 {
            let (blocks, base) = (&self.buf.bytes()[..full], self.base);
            retry_plain(file, || file.write_all_at(blocks, base))?;
            self.buf.keep_from(full);
            self.base += full as u64;
        }
        Ok(())
    }

    /// The staged bytes from file offset `from` on, and the offset they start at (at least the
    /// staged block's start).
    pub fn staged_from(&self, from: u64) -> (&[u8], u64) {
        let at = from.max(self.base);
        let skip = usize::try_from(at - self.base).unwrap_or(usize::MAX).min(self.buf.len);
        (&self.buf.bytes()[skip..], self.base + skip as u64)
    }

    /// Drops what was staged after file offset `end` (a failed write's group).
    pub fn forget_after(&mut self, end: u64) {
        self.buf.len = usize::try_from(end - self.base).unwrap_or(0).min(self.buf.len);
    }
}

/// Reads a file front to back through a block-aligned buffer, no further than `end` (see
/// `SegmentReader::set_readable` in the log). Bytes buffered beyond the readable end when
/// they were read are never handed out: the writer may have rewritten them since.
pub struct BlockReader {
    file: File,
    buf: AlignedBuf,
    /// File offset of `buf`'s first byte, and how many of its bytes may be handed out.
    start: u64,
    valid: usize,
    pos: u64,
    end: u64,
}

/// Bytes read from the file at once.
const READ_BLOCKS: usize = 64;

impl BlockReader {
    pub fn new(file: File, end: u64) -> BlockReader {
        BlockReader { file, buf: AlignedBuf::with_blocks(READ_BLOCKS), start: 0, valid: 0, pos: 0, end }
    }

    pub fn set_end(&mut self, end: u64) {
        self.end = end;
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let start = self.pos - self.pos % BLOCK as u64;
        let buf = self.buf.all_mut();
        let mut n = 0;
        while n < buf.len() {
            let file = &self.file;
            match retry_plain(file, || file.read_at(&mut buf[n..], start + n as u64)) {
                Ok(0) => break,
                // A direct read may stop at any block; go on until the buffer is full or the file ends.
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if n % BLOCK != 0 {
                break; // the end of the file
            }
        }
        self.start = start;
        self.valid = usize::try_from(self.end.saturating_sub(start)).unwrap_or(usize::MAX).min(n);
        Ok(())
    }
}

impl Read for BlockReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.end || out.is_empty() {
            return Ok(0);
        }
        let in_buf = |r: &BlockReader| r.pos >= r.start && r.pos < r.start + r.valid as u64;
        if !in_buf(self) {
            self.fill()?;
            if !in_buf(self) {
                return Ok(0);
            }
        }
        let at = (self.pos - self.start) as usize;
        let n = out.len().min(self.valid - at).min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.buf.all()[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut BlockReader) -> Vec<u8> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        v
    }

    /// Appends of every size land in the file as if written plainly; the block past the end
    /// holds zeros (the log's end marker) whether or not the file system allowed direct I/O.
    #[test]
    fn appends_in_blocks_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let (file, _direct) = open(OpenOptions::new().create(true).truncate(true).read(true).write(true), &path, true).unwrap();
        let mut expect = b"MAGIC!!!".to_vec();
        let mut app = BlockAppender::new(&[], 0);
        app.stage(&expect);
        app.write(&file, expect.len() as u64).unwrap();
        let mut app = BlockAppender::new(&expect, expect.len() as u64); // as after a restart (8 bytes: all in the first block)
        for (i, size) in [1usize, 4095, 4096, 4097, 10, 70_000, 3, 8191].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..size).map(|k| (k * 7 + i + 1) as u8 | 1).collect();
            app.stage(&bytes);
            expect.extend_from_slice(&bytes);
            let end = app.end();
            assert_eq!(end, expect.len() as u64);
            app.write(&file, end).unwrap();
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(&on_disk[..expect.len()], &expect[..], "after append {i} of {size} bytes");
            assert!(on_disk[expect.len()..].iter().all(|&b| b == 0), "the rest of the block is zeros");
            assert_eq!(on_disk.len() % BLOCK, 0);
        }
        let (file, _) = open(OpenOptions::new().read(true), &path, true).unwrap();
        let mut r = BlockReader::new(file, expect.len() as u64);
        assert_eq!(read_all(&mut r), expect);
    }

    /// A reader never hands out bytes it buffered past the readable end of that moment, even
    /// after the end moves and the writer has rewritten them.
    #[test]
    fn a_reader_rereads_what_lay_past_the_readable_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let (file, _) = open(OpenOptions::new().create(true).truncate(true).read(true).write(true), &path, true).unwrap();
        let mut app = BlockAppender::new(&[], 0);
        app.stage(b"first");
        app.write(&file, 5).unwrap();
        let (rf, _) = open(OpenOptions::new().read(true), &path, true).unwrap();
        let mut r = BlockReader::new(rf, 5);
        assert_eq!(read_all(&mut r), b"first");
        app.stage(b"-second");
        app.write(&file, 12).unwrap();
        r.set_end(12);
        assert_eq!(read_all(&mut r), b"-second");
    }

    /// What a device with larger blocks gets: the same descriptor, direct I/O off, unaligned
    /// writes accepted.
    #[test]
    fn direct_io_can_be_turned_off_on_an_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let (file, _) = open(OpenOptions::new().create(true).truncate(true).write(true), &path, true).unwrap();
        stop_direct(&file).unwrap();
        file.write_all_at(b"unaligned", 3).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0unaligned");
    }

    /// Whole blocks only go out; the rest stays staged, and `staged_from` hands out just what
    /// the file does not hold yet.
    #[test]
    fn whole_blocks_go_out_and_the_partial_rest_stays_staged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let (file, _) = open(OpenOptions::new().create(true).truncate(true).write(true), &path, true).unwrap();
        let mut app = BlockAppender::new(&[], 0);
        app.stage(&[b'a'; 100]);
        app.write_blocks(&file).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "no whole block yet");
        assert_eq!(app.staged_from(0), (&[b'a'; 100][..], 0));
        let held = app.end();
        app.stage(&[b'b'; 5000]);
        app.write_blocks(&file).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), BLOCK as u64);
        let (rest, at) = app.staged_from(held);
        assert_eq!((rest.len(), at), (5100 - BLOCK, BLOCK as u64), "past the block just written");
        let (rest, at) = app.staged_from(0);
        assert_eq!((rest.len(), at), (5100 - BLOCK, BLOCK as u64));
    }

    #[test]
    fn a_failed_group_is_forgotten() {
        let mut app = BlockAppender::new(b"abc", 3);
        app.stage(b"defg");
        app.forget_after(3);
        assert_eq!((app.end(), app.buf.bytes()), (3, &b"abc"[..]));
    }
}
