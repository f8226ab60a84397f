//! Writes MessagePack values straight into a byte buffer. The event map is written in one pass
//! from the packed head (see `shape`), without an intermediate [`sentinel_wire::Event`].
//!
//! Why by hand: every marker here is one to five bytes, and going through a generic writer cost
//! about 20% of a filter call in wasm (profiled). The output is plain MessagePack; the tests decode
//! it with the `Event` type (rmp-serde), which is the schema's reference, field by field.

use std::borrow::Cow;

/// Bytes as text: borrowed when valid UTF-8, replacement characters otherwise.
pub fn text(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// Appends MessagePack values to a buffer.
pub struct Writer<'b>(pub &'b mut Vec<u8>);

impl Writer<'_> {
    /// A length-prefixed header: the fix form when `len` fits in `fix_max`, else the 8/16/32-bit
    /// forms whose markers are given (`m8` may be 0 for kinds without an 8-bit form).
    #[inline]
    fn len_marker(&mut self, len: usize, fix: u8, fix_max: usize, m8: u8, m16: u8, m32: u8) {
        let b = &mut *self.0;
        if len <= fix_max {
            b.push(fix | len as u8);
        } else if m8 != 0 && len <= 0xff {
            b.extend_from_slice(&[m8, len as u8]);
        } else if len <= 0xffff {
            b.push(m16);
            b.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            b.push(m32);
            b.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    pub fn map(&mut self, len: u32) -> &mut Self {
        self.len_marker(len as usize, 0x80, 15, 0, 0xde, 0xdf);
        self
    }

    pub fn array(&mut self, len: u32) -> &mut Self {
        self.len_marker(len as usize, 0x90, 15, 0, 0xdc, 0xdd);
        self
    }

    /// A map key (static, valid UTF-8).
    #[inline]
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.raw_str(k.as_bytes())
    }

    #[inline]
    fn raw_str(&mut self, s: &[u8]) -> &mut Self {
        self.len_marker(s.len(), 0xa0, 31, 0xd9, 0xda, 0xdb);
        self.0.extend_from_slice(s);
        self
    }

    /// A string value from bytes (invalid UTF-8 is replaced, as the schema requires text).
    pub fn str(&mut self, v: &[u8]) -> &mut Self {
        match std::str::from_utf8(v) {
            Ok(_) => self.raw_str(v),
            Err(_) => self.raw_str(String::from_utf8_lossy(v).as_bytes()),
        }
    }

    /// A string made of parts (each valid UTF-8), written without joining them first.
    pub fn str_parts(&mut self, parts: &[&[u8]]) -> &mut Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.len_marker(len, 0xa0, 31, 0xd9, 0xda, 0xdb);
        for p in parts {
            self.0.extend_from_slice(p);
        }
        self
    }

    pub fn uint(&mut self, v: u64) -> &mut Self {
        let b = &mut *self.0;
        if v < 0x80 {
            b.push(v as u8);
        } else if v <= 0xff {
            b.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= 0xffff {
            b.push(0xcd);
            b.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            b.push(0xce);
            b.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            b.push(0xcf);
            b.extend_from_slice(&v.to_be_bytes());
        }
        self
    }

    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.push(0xcb);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.0.push(0xca);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.0.push(if v { 0xc3 } else { 0xc2 });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length class of every kind, checked against rmp-serde's reading of it.
    #[test]
    fn markers_match_what_rmp_serde_reads() {
        for len in [0usize, 1, 15, 16, 31, 32, 255, 256, 65535, 65536] {
            let s = "x".repeat(len);
            let mut buf = Vec::new();
            Writer(&mut buf).str(s.as_bytes());
            assert_eq!(rmp_serde::from_slice::<String>(&buf).unwrap(), s, "str of {len}");

            let mut buf = Vec::new();
            let mut w = Writer(&mut buf);
            w.array(len as u32);
            for _ in 0..len {
                w.bool(true);
            }
            assert_eq!(rmp_serde::from_slice::<Vec<bool>>(&buf).unwrap().len(), len, "array of {len}");

            let mut buf = Vec::new();
            let mut w = Writer(&mut buf);
            w.map(len.min(70_000) as u32);
            for i in 0..len {
                w.uint(i as u64).uint(i as u64);
            }
            let m: std::collections::BTreeMap<u64, u64> = rmp_serde::from_slice(&buf).unwrap();
            assert_eq!(m.len(), len, "map of {len}");
        }
        for v in [0u64, 127, 128, 255, 256, 65535, 65536, u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX] {
            let mut buf = Vec::new();
            Writer(&mut buf).uint(v);
            assert_eq!(rmp_serde::from_slice::<u64>(&buf).unwrap(), v);
        }
        let mut buf = Vec::new();
        Writer(&mut buf).array(3).f64(1.25).f32(0.5).bool(false);
        assert_eq!(rmp_serde::from_slice::<(f64, f32, bool)>(&buf).unwrap(), (1.25, 0.5, false));
        let mut buf = Vec::new();
        Writer(&mut buf).str(b"a\xffb");
        assert_eq!(rmp_serde::from_slice::<String>(&buf).unwrap(), "a\u{fffd}b");
    }
}
