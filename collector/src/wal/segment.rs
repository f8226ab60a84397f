//! One segment file read front to back: what start-up recovery scans and what each sink's
//! reader follows. Records are checked against their checksums: a record whose payload fails is
//! skipped by its length (which its header's own checksum vouches for); after a header that
//! fails, the reader looks for the next header that checks and goes on from there, so one
//! damaged record costs that record only.
//!
//! Segment files are recycled (see [`super::writer`]), so what follows the last record may be
//! the writer's end marker (a header of zeros) or records of the file's earlier life, whose
//! sequence numbers are all below the segment's first: either one ends the segment cleanly.

use crate::direct_io::{self as direct, BlockReader};
use super::record::{self, Header, HEADER_LEN, HEADER_LEN_V1, SEGMENT_MAGIC, SEGMENT_MAGIC_V1};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

/// A segment's file name for the first sequence number it holds.
pub fn file_name(first: u64) -> String {
    format!("{first:020}.wal")
}

/// The first sequence number a segment file name stands for.
pub fn parse_name(name: &str) -> Option<u64> {
    numbered(name, ".wal")
}

/// The 20-digit number before `suffix` in a file name of the log.
fn numbered(name: &str, suffix: &str) -> Option<u64> {
    name.strip_suffix(suffix).filter(|s| s.len() == 20).and_then(|s| s.parse().ok())
}

pub fn path(dir: &Path, first: u64) -> PathBuf {
    dir.join(file_name(first))
}

/// Where a delivered segment waits to be reused: out of the segments' name space, so start-up
/// never reads it as one.
pub fn spare_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.spare"))
}

/// True for a spare's file name.
pub fn is_spare(name: &str) -> bool {
    numbered(name, ".spare").is_some()
}

/// What comes next in a segment.
#[derive(Debug)]
pub enum Next {
    Record(Header),
    /// A record whose checksum does not match: skipped, its bytes consumed.
    Corrupt,
    /// Nothing more can be read: the end of the file, a torn last record, or a length that
    /// cannot be followed. `offset` is where the good part ends.
    End { torn: bool },
}

/// Reads one segment file sequentially.
pub struct SegmentReader {
    file: BlockReader,
    /// The first sequence number the file's name stands for: records below it are stale.
    first: u64,
    offset: u64,
    /// A segment of the first format (no header checksum: no looking for the next record).
    v1: bool,
    /// Bytes read past `offset` while looking for a good header after damage: read again
    /// before the file.
    ahead: Vec<u8>,
    /// The sequence number of the last good record read.
    last: Option<u64>,
}

/// Bytes read at a time while looking for the next good header.
const SCAN_CHUNK: usize = 64 << 10;

impl SegmentReader {
    /// Opens the segment that starts at `first`, readable up to byte `end` (see
    /// [`SegmentReader::set_readable`]), and checks its magic; a file without it is not a
    /// segment of ours. `direct` reads it around the page cache where the file system allows.
    pub fn open(path: &Path, first: u64, end: u64, direct: bool) -> std::io::Result<SegmentReader> {
        let (file, _) = direct::open(OpenOptions::new().read(true), path, direct)?;
        let mut file = BlockReader::new(file, end);
        let mut magic = [0u8; SEGMENT_MAGIC.len()];
        file.read_exact(&mut magic)?;
        if magic != SEGMENT_MAGIC && magic != SEGMENT_MAGIC_V1 {
            return Err(std::io::Error::new(ErrorKind::InvalidData, format!("{} is not a sentinel log segment", path.display())));
        }
        Ok(SegmentReader { file, first, offset: SEGMENT_MAGIC.len() as u64, v1: magic == SEGMENT_MAGIC_V1, ahead: Vec::new(), last: None })
    }

    /// Reads from the bytes read ahead, then from the file.
    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ahead.is_empty() {
            return self.file.read(buf);
        }
        let n = buf.len().min(self.ahead.len());
        buf[..n].copy_from_slice(&self.ahead[..n]);
        self.ahead.drain(..n);
        Ok(n)
    }

    /// Reads until `buf` is full or the file ends; returns how many bytes were read.
    fn read_full(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.read_some(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// After a header that does not check (`bad`, already read at `offset`): finds the next
    /// header that does, with a sequence number after the last good record's, and leaves it to
    /// be read next; `offset` moves past the damage. False when none follows (`offset` stays
    /// where the damage starts).
    fn resync(&mut self, bad: &[u8]) -> std::io::Result<bool> {
        let mut window = bad[1..].to_vec();
        let mut skipped = 1usize;
        let mut chunk = vec![0u8; SCAN_CHUNK];
        loop {
            for i in 0..(window.len() + 1).saturating_sub(HEADER_LEN) {
                let Ok(cand) = <&[u8; HEADER_LEN]>::try_from(&window[i..i + HEADER_LEN]) else { break };
                let good = record::header(cand).filter(|h| h.seq >= self.first && self.last.is_none_or(|l| h.seq > l));
                if good.is_some() {
                    self.offset += (skipped + i) as u64;
                    let mut rest = window.split_off(i);
                    rest.append(&mut self.ahead);
                    self.ahead = rest;
                    return Ok(true);
                }
            }
            let keep_from = window.len().saturating_sub(HEADER_LEN - 1);
            skipped += keep_from;
            window.drain(..keep_from);
            let n = self.read_some(&mut chunk)?;
            if n == 0 {
                return Ok(false);
            }
            window.extend_from_slice(&chunk[..n]);
        }
    }

    /// Where the next record starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next record, its payload appended to `out`; `out` is left as it was unless a
    /// record is returned.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> std::io::Result<Next> {
        let hl = if self.v1 { HEADER_LEN_V1 } else { HEADER_LEN };
        let mut h = [0u8; HEADER_LEN];
        match self.read_full(&mut h[..hl])? {
            0 => return Ok(Next::End { torn: false }),
            n if n < hl => return Ok(Next::End { torn: true }),
            _ => {}
        }
        if h[..hl].iter().all(|b| *b == 0) {
            return Ok(Next::End { torn: false }); // the writer's end marker
        }
        let parsed = if self.v1 { record::header_v1(h[..HEADER_LEN_V1].try_into().unwrap_or(&[0; HEADER_LEN_V1])) } else { record::header(&h) };
        let Some(header) = parsed else {
            if self.v1 {
                return Ok(Next::End { torn: true });
            }
            // A damaged header: its length cannot be trusted. Go on from the next good one.
            return Ok(if self.resync(&h)? { Next::Corrupt } else { Next::End { torn: true } });
        };
        let at = out.len();
        out.resize(at + header.len, 0);
        let torn = match self.read_full(&mut out[at..]) {
            Ok(n) => n < header.len,
            Err(e) => {
                out.truncate(at);
                return Err(e);
            }
        };
        let next = if torn {
            Next::End { torn: true }
        } else if !record::verify(&header, &out[at..]) {
            self.offset += (hl + header.len) as u64;
            Next::Corrupt
        } else if header.seq < self.first {
            Next::End { torn: false } // written in the file's earlier life
        } else {
            self.offset += (hl + header.len) as u64;
            self.last = Some(header.seq);
            return Ok(Next::Record(header));
        };
        out.truncate(at);
        Ok(next)
    }

    /// Lets the reader read up to byte `end` of the file. Past what the writer has written the
    /// file holds bytes it will overwrite (its end marker, a reused file's earlier life), so a
    /// follower reads no further ahead than the records written when it looked.
    pub fn set_readable(&mut self, end: u64) {
        self.file.set_end(end);
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_sequence_order_and_parse_back() {
        assert_eq!(file_name(7), "00000000000000000007.wal");
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_name(&file_name(123_456)), Some(123_456));
        assert_eq!(parse_name("7.wal"), None);
        assert_eq!(parse_name("00000000000000000007.tmp"), None);
        let spare = spare_path(Path::new("d"), 7);
        let spare = spare.file_name().unwrap().to_str().unwrap();
        assert!(is_spare(spare) && parse_name(spare).is_none(), "a spare is never read as a segment");
        assert!(!is_spare(&file_name(7)));
    }

    #[test]
    fn a_file_without_the_magic_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(file_name(0));
        std::fs::write(&p, b"not a segment at all").unwrap();
        let err = SegmentReader::open(&p, 0, u64::MAX, true).err().unwrap();
        assert!(err.to_string().contains("not a sentinel log segment"), "{err}");
    }
}
