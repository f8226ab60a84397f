//! One segment file read front to back: what start-up recovery scans and what each sink's
//! reader follows. Records are checked against their checksum; a record that fails is skipped
//! by its length when that length is plausible, and ends the segment when it is not.
//!
//! Segment files are recycled (see [`super::writer`]), so what follows the last record may be
//! the writer's end marker (a header of zeros) or records of the file's earlier life, whose
//! sequence numbers are all below the segment's first: either one ends the segment cleanly.

use crate::direct_io::{self as direct, BlockReader};
use super::record::{self, Header, HEADER_LEN, SEGMENT_MAGIC};
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
}

impl SegmentReader {
    /// Opens the segment that starts at `first`, readable up to byte `end` (see
    /// [`SegmentReader::set_readable`]), and checks its magic; a file without it is not a
    /// segment of ours. `direct` reads it around the page cache where the file system allows.
    pub fn open(path: &Path, first: u64, end: u64, direct: bool) -> std::io::Result<SegmentReader> {
        let (file, _) = direct::open(OpenOptions::new().read(true), path, direct)?;
        let mut file = BlockReader::new(file, end);
        let mut magic = [0u8; SEGMENT_MAGIC.len()];
        file.read_exact(&mut magic)?;
        if magic != SEGMENT_MAGIC {
            return Err(std::io::Error::new(ErrorKind::InvalidData, format!("{} is not a sentinel log segment", path.display())));
        }
        Ok(SegmentReader { file, first, offset: SEGMENT_MAGIC.len() as u64 })
    }

    /// Where the next record starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next record, its payload appended to `out`; `out` is left as it was unless a
    /// record is returned.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> std::io::Result<Next> {
        let mut h = [0u8; HEADER_LEN];
        match read_full(&mut self.file, &mut h)? {
            0 => return Ok(Next::End { torn: false }),
            n if n < HEADER_LEN => return Ok(Next::End { torn: true }),
            _ => {}
        }
        if h == [0; HEADER_LEN] {
            return Ok(Next::End { torn: false }); // the writer's end marker
        }
        let Some(header) = record::header(&h) else { return Ok(Next::End { torn: true }) };
        let at = out.len();
        out.resize(at + header.len, 0);
        let torn = match read_full(&mut self.file, &mut out[at..]) {
            Ok(n) => n < header.len,
            Err(e) => {
                out.truncate(at);
                return Err(e);
            }
        };
        let next = if torn {
            Next::End { torn: true }
        } else if !record::verify(&header, &out[at..]) {
            self.offset += (HEADER_LEN + header.len) as u64;
            Next::Corrupt
        } else if header.seq < self.first {
            Next::End { torn: false } // written in the file's earlier life
        } else {
            self.offset += (HEADER_LEN + header.len) as u64;
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

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
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
