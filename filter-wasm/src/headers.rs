//! The header allowlist as the filter consults it on every header: one open-addressed table of
//! lower-case names, each carrying whether its value is masked. A header that is not listed is
//! usually rejected by one hash and one empty slot, without comparing any bytes.

use sentinel_wire::ascii::word;

/// What the table knows about a listed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// Dense index of the name (0..len), for per-name bookkeeping such as joining repeats.
    pub index: usize,
    /// The value is a credential: nothing of it leaves the proxy, but for `keeps_scheme`.
    pub masked: bool,
    /// A masked `Authorization` or `Proxy-Authorization`: its registered authentication scheme
    /// (`Bearer`, `Basic`, ...) may stay in front of the mask. No other header has a scheme.
    pub keeps_scheme: bool,
}

/// The headers whose value starts with an authentication scheme (RFC 9110 §11.6).
const SCHEMED: [&[u8]; 2] = [b"authorization", b"proxy-authorization"];

/// Allowlisted header names (case-insensitive) with their masking flag.
#[derive(Debug, Clone)]
pub struct HeaderTable {
    names: Vec<Box<[u8]>>,
    /// Each name as a MessagePack string (marker + lower-case bytes), written as is.
    encoded: Vec<Box<[u8]>>,
    masked: Vec<bool>,
    /// Slot → index + 1 into `names`; 0 is empty. Its length is a power of two, at least four
    /// times the number of names, so probes stay short and an empty slot always exists.
    slots: Vec<u16>,
    shift: u32,
}

impl HeaderTable {
    /// Builds the table from the allowed names; names in `masked` are masked when allowed.
    /// Duplicates and case differences collapse into one entry.
    pub fn new<A: AsRef<str>, M: AsRef<str>>(allowed: impl IntoIterator<Item = A>, masked: impl IntoIterator<Item = M>) -> Self {
        let masked: Vec<Vec<u8>> = masked.into_iter().map(|m| m.as_ref().to_ascii_lowercase().into_bytes()).collect();
        let mut names: Vec<Box<[u8]>> = Vec::new();
        for a in allowed {
            let n = a.as_ref().to_ascii_lowercase().into_bytes();
            if !n.is_empty() && !names.iter().any(|x| **x == *n) {
                names.push(n.into_boxed_slice());
            }
        }
        // At most u16::MAX - 1 names fit the slot encoding; an allowlist is a few dozen.
        names.truncate(u16::MAX as usize - 1);
        let bits = ((names.len() * 4).max(16)).next_power_of_two().trailing_zeros();
        let mut table = HeaderTable {
            masked: names.iter().map(|n| masked.iter().any(|m| **m == **n)).collect(),
            encoded: names.iter().map(|n| crate::encode::encoded_str(n).into_boxed_slice()).collect(),
            slots: vec![0; 1 << bits],
            shift: 32 - bits,
            names,
        };
        for i in 0..table.names.len() {
            let mut s = table.slot_of(&table.names[i]);
            while table.slots[s] != 0 {
                s = (s + 1) & (table.slots.len() - 1);
            }
            table.slots[s] = i as u16 + 1;
        }
        table
    }

    /// How many distinct names are listed.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The listed name at `index` as a MessagePack string, lower case.
    pub fn encoded(&self, index: usize) -> &[u8] {
        &self.encoded[index]
    }

    /// The entry for `name`, whatever its case, if it is listed.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<Listed> {
        if name.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut s = self.slot_of(name);
        loop {
            let i = usize::from(self.slots[s]);
            if i == 0 {
                return None;
            }
            let listed = &self.names[i - 1];
            if listed.len() == name.len() && (same_bytes(listed, name) || listed.eq_ignore_ascii_case(name)) {
                let masked = self.masked[i - 1];
                return Some(Listed { index: i - 1, masked, keeps_scheme: masked && SCHEMED.contains(&&**listed) });
            }
            s = (s + 1) & mask;
        }
    }

    /// A case-insensitive hash of the length, first, middle and last bytes (non-empty `name`).
    #[inline]
    fn slot_of(&self, name: &[u8]) -> usize {
        let lower = |b: u8| u32::from(b | 0x20);
        let n = name.len();
        let x = (n as u32) ^ lower(name[0]) << 8 ^ lower(name[n / 2]) << 16 ^ lower(name[n - 1]) << 24;
        (x.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }
}

/// Byte equality of two slices of the same length, eight bytes per step (in wasm, `==` on slices
/// is a byte-at-a-time `memcmp`, and each loop turn also pays the epoch-deadline check).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    // Whole words, then the last eight bytes as one overlapping word.
    let mut i = 0;
    while i + 8 <= n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listed_names_in_any_case_and_nothing_else() {
        let t = HeaderTable::new(["Authorization", "host", "HOST", "x-forwarded-for"], ["authorization"]);
        assert_eq!(t.len(), 3);
        let auth = t.get(b"AUTHORIZATION").unwrap();
        assert!(auth.masked);
        assert_eq!(t.get(b"authorization"), Some(auth));
        assert_eq!(t.get(b"Host").map(|l| l.masked), Some(false));
        assert_eq!(t.encoded(auth.index), b"\xadauthorization");
        assert!(t.get(b"X-Forwarded-For").is_some());
        for miss in [&b"hos"[..], b"hostx", b"", b"cookie", b"x-forwarded-fo", b"h\xffst"] {
            assert_eq!(t.get(miss), None, "{:?}", String::from_utf8_lossy(miss));
        }
    }

    #[test]
    fn byte_equality_sees_every_byte() {
        for len in 0..30 {
            let a: Vec<u8> = (0..len as u8).collect();
            assert!(same_bytes(&a, &a.clone()));
            for i in 0..len {
                let mut b = a.clone();
                b[i] ^= 0x40;
                assert!(!same_bytes(&a, &b), "len {len} differs at {i}");
            }
        }
        assert!(!same_bytes(b"abc", b"abcd"));
    }

    #[test]
    fn every_name_of_a_long_list_is_found_with_its_own_index() {
        let names: Vec<String> = (0..500).map(|i| format!("x-header-{i}")).collect();
        let t = HeaderTable::new(&names, &names[..10]);
        let mut seen = vec![false; t.len()];
        for (i, n) in names.iter().enumerate() {
            let l = t.get(n.to_uppercase().as_bytes()).unwrap();
            assert_eq!(l.masked, i < 10);
            assert!(!seen[l.index], "index {} given twice", l.index);
            seen[l.index] = true;
        }
        assert_eq!(t.get(b"x-header-500"), None);
    }
}
