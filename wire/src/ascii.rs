//! Word-at-a-time byte checks shared by the filter (encoding) and the collector (decoding):
//! almost every string in an event is ASCII, and proving that eight bytes a step spares the
//! general UTF-8 check.

/// The eight bytes of `b` at `i` as one little-endian word (the caller keeps `i + 8 <= len`).
#[inline(always)]
pub fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]])
}

/// True when every byte is ASCII, eight bytes per step with the tail read as one overlapping
/// word (wasm has native 64-bit integers too, and few loop turns mean few epoch-deadline checks
/// in the filter).
#[inline]
pub fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    if n < 8 {
        let mut acc = 0u8;
        for &x in b {
            acc |= x;
        }
        return acc & 0x80 == 0;
    }
    let (words, _) = b.as_chunks::<8>();
    let mut acc = word(b, n - 8);
    for w in words {
        acc |= u64::from_le_bytes(*w);
    }
    acc & HIGH == 0
}

/// `b` as text: the ASCII check first, the full UTF-8 check only when a high byte is present.
#[inline]
pub fn utf8(b: &[u8]) -> Option<&str> {
    if is_ascii(b) {
        // SAFETY: ASCII is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_check_sees_every_byte() {
        for len in 0..40 {
            let mut v = vec![b'a'; len];
            assert!(is_ascii(&v));
            for i in 0..len {
                v[i] = 0xc3;
                assert!(!is_ascii(&v), "len {len} high byte at {i}");
                v[i] = b'a';
            }
        }
    }

    #[test]
    fn text_is_checked_in_full_when_not_ascii() {
        assert_eq!(utf8(b"plain"), Some("plain"));
        assert_eq!(utf8("Zürich, long enough to take words".as_bytes()), Some("Zürich, long enough to take words"));
        assert_eq!(utf8(b"bad \xc3 sequence in a longer string"), None);
        assert_eq!(utf8(b"\xff"), None);
    }
}
