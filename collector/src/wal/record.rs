//! The on-disk shape of one log record: a checksummed header and the NDJSON lines of one
//! processed batch. Segment files open with [`SEGMENT_MAGIC`], then records back to back:
//!
//! ```text
//! payload_len:u32-LE  crc32:u32-LE  seq:u64-LE  events:u32-LE  payload
//! ```
//!
//! The CRC-32 covers `seq`, `events` and the payload, so a torn or flipped record is never
//! taken for data.

/// First bytes of every segment file (format version in the last byte).
pub const SEGMENT_MAGIC: [u8; 8] = *b"STELWAL1";
/// Bytes of a record header.
pub const HEADER_LEN: usize = 20;
/// Largest payload a record may claim; anything larger is corruption (a pipeline batch is one
/// socket read's worth of events, far below this).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// A record's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub crc: u32,
    pub seq: u64,
    pub events: u32,
}

/// One batch's lines as the log takes them, with their CRC-32 computed by whoever wrote them,
/// while they were still in that core's cache: the log writer then never reads the lines again
/// for the checksum (it only combines this one with the header's fields).
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    pub lines: &'a [u8],
    pub events: u32,
    /// `crc32fast::hash(lines)`.
    pub crc: u32,
}

impl<'a> Payload<'a> {
    /// `lines` checksummed here.
    pub fn new(lines: &'a [u8], events: u32) -> Self {
        Payload { lines, events, crc: crc32fast::hash(lines) }
    }
}

/// The header of the record that carries `payload` as record `seq`.
pub fn encode_header(seq: u64, payload: &Payload<'_>) -> [u8; HEADER_LEN] {
    let (events, len) = (payload.events, payload.lines.len());
    let mut fields = crc32fast::Hasher::new();
    fields.update(&seq.to_le_bytes());
    fields.update(&events.to_le_bytes());
    // The same CRC as one pass over seq, events and the lines (what `verify` computes).
    fields.combine(&crc32fast::Hasher::new_with_initial_len(payload.crc, len as u64));
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..8].copy_from_slice(&fields.finalize().to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..].copy_from_slice(&events.to_le_bytes());
    h
}

/// Appends one record to `out`.
#[cfg(test)]
pub fn encode(out: &mut Vec<u8>, seq: u64, events: u32, payload: &[u8]) {
    out.extend_from_slice(&encode_header(seq, &Payload::new(payload, events)));
    out.extend_from_slice(payload);
}

/// Reads a header; `None` when its length is impossible (the stream cannot be followed past it).
pub fn header(h: &[u8; HEADER_LEN]) -> Option<Header> {
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let len = u32_at(0) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&h[8..16]);
    Some(Header { len, crc: u32_at(4), seq: u64::from_le_bytes(seq), events: u32_at(16) })
}

/// True when `payload` is what `h` was written with.
pub fn verify(h: &Header, payload: &[u8]) -> bool {
    checksum(h.seq, h.events, payload) == h.crc
}

fn checksum(seq: u64, events: u32, payload: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&seq.to_le_bytes());
    c.update(&events.to_le_bytes());
    c.update(payload);
    c.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(buf: &[u8]) -> (Header, &[u8]) {
        let h = header(buf[..HEADER_LEN].try_into().unwrap()).unwrap();
        (h, &buf[HEADER_LEN..HEADER_LEN + h.len])
    }

    #[test]
    fn a_record_reads_back_and_any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode(&mut buf, 42, 2, b"{\"a\":1}\n{\"a\":2}\n");
        let (h, p) = split(&buf);
        assert_eq!((h.seq, h.events, p), (42, 2, &b"{\"a\":1}\n{\"a\":2}\n"[..]));
        assert!(verify(&h, p));
        for bit in [4 * 8, 8 * 8 + 3, 16 * 8, (HEADER_LEN + 5) * 8 + 1] {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let (h, p) = split(&bad);
            assert!(!verify(&h, p), "flipping bit {bit} went unnoticed");
        }
    }

    #[test]
    fn a_checksum_combined_from_the_lines_crc_equals_one_pass_over_the_record() {
        for lines in [&b""[..], b"{}\n", &[b'x'; 70_001][..]] {
            let h = header(&encode_header(7, &Payload::new(lines, 3))).unwrap();
            assert_eq!(h.crc, checksum(7, 3, lines), "{} bytes", lines.len());
            assert!(verify(&h, lines));
        }
        // A CRC that does not belong to the lines makes a record that fails verification.
        let wrong = Payload { crc: crc32fast::hash(b"other"), ..Payload::new(b"{\"a\":1}\n", 1) };
        assert!(!verify(&header(&encode_header(1, &wrong)).unwrap(), wrong.lines));
    }

    #[test]
    fn an_impossible_length_is_refused() {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(header(&h), None);
    }
}
