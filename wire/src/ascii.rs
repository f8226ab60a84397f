//! Word-at-a-time byte checks shared by the filter (encoding) and the collector (decoding and
//! the NDJSON encoder's escape search): almost every string in an event is ASCII and needs no
//! escaping, and proving that eight bytes a step spares a check per byte.

/// The eight bytes of `b` at `i` as one little-endian word (the caller keeps `i + 8 <= len`).
#[inline(always)]
pub fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]])
}

/// A word holding byte `b` eight times.
#[inline(always)]
pub const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// The high bit of every byte of a word.
pub const HIGH: u64 = splat(0x80);

/// The high bit set in each byte of `w` that is below `n` (`n` at most 0x80). A subtraction's
/// borrow can also flag a byte after (above) a flagged one, never before it: the lowest flag
/// is exact, and no flag means no such byte.
#[inline(always)]
pub fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(splat(n)) & !w & HIGH
}

/// The high bit set in each byte of `w` equal to `c`; the lowest flag is exact, as in [`below`].
#[inline(always)]
pub fn equal(w: u64, c: u8) -> u64 {
    below(w ^ splat(c), 1)
}

/// True when every byte is ASCII, eight bytes per step with the tail read as one overlapping
/// word (wasm has native 64-bit integers too, and few loop turns mean few epoch-deadline checks
/// in the filter).
#[inline]
pub fn is_ascii(b: &[u8]) -> bool {
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
