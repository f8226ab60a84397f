//! The on-disk shape of one log record: a checksummed header and the NDJSON lines of one
//! processed batch. Segment files open with [`SEGMENT_MAGIC`], then records back to back:
//!
//! ```text
//! payload_len:u32-LE  header_crc:u32-LE  seq:u64-LE  events:u32-LE  payload_crc:u32-LE  payload
//! ```
//!
//! The header's CRC-32 covers its other fields (the length included), so a flipped length is
//! caught before it is followed, and a reader can find the next good record by looking for the
//! next header that checks; the payload's CRC-32 covers the lines. Segments of the first format
//! (`STELWAL1`: a 20-byte header whose one CRC covers seq, events and payload but not the
//! length) are still read, so an upgrade loses nothing buffered.

/// First bytes of every segment file (format version in the last byte).
pub const SEGMENT_MAGIC: [u8; 8] = *b"STELWAL2";
/// The first format's magic.
pub const SEGMENT_MAGIC_V1: [u8; 8] = *b"STELWAL1";
/// Bytes of a record header.
pub const HEADER_LEN: usize = 24;
/// Bytes of a first-format record header.
pub const HEADER_LEN_V1: usize = 20;
/// Largest payload a record may claim; anything larger is corruption (a pipeline batch is one
/// socket read's worth of events, far below this).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// A record's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    /// The payload's CRC-32 (first format: the CRC of seq, events and payload).
    pub crc: u32,
    pub seq: u64,
    pub events: u32,
    pub v1: bool,
}

/// One batch's lines as the log takes them, with their CRC-32 computed by whoever wrote them,
/// while they were still in that core's cache: the log writer never reads the lines again.
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

/// The header's own CRC: over its bytes but the CRC field itself.
fn header_crc(h: &[u8; HEADER_LEN]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&h[..4]);
    c.update(&h[8..]);
    c.finalize()
}

/// The header of the record that carries `payload` as record `seq`.
pub fn encode_header(seq: u64, payload: &Payload<'_>) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&(payload.lines.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&payload.events.to_le_bytes());
    h[20..].copy_from_slice(&payload.crc.to_le_bytes());
    let crc = header_crc(&h);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one record to `out`.
/// Appends one record to `out`.
#[cfg(test)]
pub fn encode(out: &mut Vec<u8>, seq: u64, events: u32, payload: &[u8]) {
    out.extend_from_slice(&encode_header(seq, &Payload::new(payload, events)));
    out.extend_from_slice(payload);
}

fn u32_at(h: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]])
}

fn u64_at(h: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[i..i + 8]);
    u64::from_le_bytes(b)
}

/// Reads a header; `None` when it does not check (a damaged header, or no header at all).
pub fn header(h: &[u8; HEADER_LEN]) -> Option<Header> {
    let len = u32_at(h, 0) as usize;
    if len > MAX_PAYLOAD || u32_at(h, 4) != header_crc(h) {
        return None;
    }
    Some(Header { len, crc: u32_at(h, 20), seq: u64_at(h, 8), events: u32_at(h, 16), v1: false })
}

/// Reads a first-format header; `None` when its length is impossible.
pub fn header_v1(h: &[u8; HEADER_LEN_V1]) -> Option<Header> {
    let len = u32_at(h, 0) as usize;
    (len <= MAX_PAYLOAD).then(|| Header { len, crc: u32_at(h, 4), seq: u64_at(h, 8), events: u32_at(h, 16), v1: true })
}

/// True when `payload` is what `h` was written with.
pub fn verify(h: &Header, payload: &[u8]) -> bool {
    if h.v1 {
        let mut c = crc32fast::Hasher::new();
        c.update(&h.seq.to_le_bytes());
        c.update(&h.events.to_le_bytes());
        c.update(payload);
        return c.finalize() == h.crc;
    }
    crc32fast::hash(payload) == h.crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(buf: &[u8]) -> Option<(Header, &[u8])> {
        let h = header(buf[..HEADER_LEN].try_into().unwrap())?;
        Some((h, &buf[HEADER_LEN..(HEADER_LEN + h.len).min(buf.len())]))
    }

    #[test]
    fn a_record_reads_back_and_any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode(&mut buf, 42, 2, b"{\"a\":1}\n{\"a\":2}\n");
        let (h, p) = split(&buf).unwrap();
        assert_eq!((h.seq, h.events, p), (42, 2, &b"{\"a\":1}\n{\"a\":2}\n"[..]));
        assert!(verify(&h, p));
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let caught = match split(&bad) {
                None => true,
                Some((h, p)) => !verify(&h, p),
            };
            assert!(caught, "flipping bit {bit} went unnoticed");
        }
    }

    #[test]
    fn a_flipped_length_is_caught_by_the_header_alone() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 1, b"{}\n");
        for bit in 0..32 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(split(&bad).is_none(), "length bit {bit}");
        }
    }

    #[test]
    fn a_first_format_record_still_reads() {
        let lines = b"{\"old\":1}\n";
        let mut c = crc32fast::Hasher::new();
        c.update(&7u64.to_le_bytes());
        c.update(&1u32.to_le_bytes());
        c.update(lines);
        let mut h = [0u8; HEADER_LEN_V1];
        h[..4].copy_from_slice(&(lines.len() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&c.finalize().to_le_bytes());
        h[8..16].copy_from_slice(&7u64.to_le_bytes());
        h[16..].copy_from_slice(&1u32.to_le_bytes());
        let parsed = header_v1(&h).unwrap();
        assert_eq!((parsed.seq, parsed.events, parsed.len), (7, 1, lines.len()));
        assert!(verify(&parsed, lines));
        assert!(!verify(&parsed, b"{\"old\":2}\n"));
    }

    #[test]
    fn an_impossible_length_is_refused() {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(header(&h), None);
        let mut h1 = [0u8; HEADER_LEN_V1];
        h1[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(header_v1(&h1), None);
    }
}
