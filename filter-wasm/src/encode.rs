//! Writes MessagePack values straight into a byte buffer. The event map is written in one pass
//! from the packed head (see `shape`), without an intermediate [`sentinel_wire::Event`].
//!
//! Why by hand: every marker here is one to five bytes, and going through a generic writer cost
//! about 20% of a filter call in wasm (profiled). The output is plain MessagePack; the tests decode
//! it with the `Event` type (rmp-serde), which is the schema's reference, field by field.

use sentinel_wire::ascii::is_ascii;

/// `s` as a MessagePack string, marker included.
pub fn encoded_str(s: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; s.len() + 5];
    let mut w = Writer::new(&mut buf);
    w.raw_str(s);
    let n = w.len();
    buf.truncate(n);
    buf
}

/// A map key with its MessagePack marker, made at compile time by [`key!`].
#[derive(Clone, Copy)]
pub struct Key(pub &'static [u8]);

/// `key!("name")`: the fixstr bytes of a map key (at most 31 bytes), built at compile time so
/// writing a key is one fixed-size copy.
#[macro_export]
macro_rules! key {
    ($k:literal) => {{
        const BYTES: [u8; $k.len() + 1] = {
            let s = $k.as_bytes();
            assert!(s.len() <= 31, "map keys are written as fixstr");
            let mut a = [0u8; $k.len() + 1];
            a[0] = 0xa0 | s.len() as u8;
            let mut i = 0;
            while i < s.len() {
                a[i + 1] = s[i];
                i += 1;
            }
            a
        };
        $crate::encode::Key(&BYTES)
    }};
}

/// Writes MessagePack values into a buffer sized beforehand. It never panics: a value that does
/// not fit sets [`Writer::overflowed`] and the caller retries with a larger buffer (only text
/// that needed UTF-8 replacement can outgrow the estimate).
pub struct Writer<'b> {
    out: &'b mut [u8],
    pos: usize,
    overflowed: bool,
}

impl<'b> Writer<'b> {
    pub fn new(out: &'b mut [u8]) -> Self {
        Writer { out, pos: 0, overflowed: false }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// True when something did not fit and the output is incomplete.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    #[inline(always)]
    fn put(&mut self, b: &[u8]) {
        let end = self.pos + b.len();
        match self.out.get_mut(self.pos..end) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.pos = end;
            }
            None => self.overflowed = true,
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        match self.out.get_mut(self.pos) {
            Some(dst) => {
                *dst = b;
                self.pos += 1;
            }
            None => self.overflowed = true,
        }
    }

    /// A length-prefixed header: the fix form when `len` fits in `fix_max`, else the 8/16/32-bit
    /// forms whose markers are given (`m8` may be 0 for kinds without an 8-bit form).
    #[inline(always)]
    fn len_marker(&mut self, len: usize, fix: u8, fix_max: usize, m8: u8, m16: u8, m32: u8) {
        if len <= fix_max {
            self.byte(fix | len as u8);
        } else if m8 != 0 && len <= 0xff {
            self.put(&[m8, len as u8]);
        } else if len <= 0xffff {
            let l = (len as u16).to_be_bytes();
            self.put(&[m16, l[0], l[1]]);
        } else {
            let l = (len as u32).to_be_bytes();
            self.put(&[m32, l[0], l[1], l[2], l[3]]);
        }
    }

    #[inline]
    pub fn map(&mut self, len: u32) -> &mut Self {
        self.len_marker(len as usize, 0x80, 15, 0, 0xde, 0xdf);
        self
    }

    #[inline]
    pub fn array(&mut self, len: u32) -> &mut Self {
        self.len_marker(len as usize, 0x90, 15, 0, 0xdc, 0xdd);
        self
    }

    /// Bytes already encoded as MessagePack, written as they are.
    #[inline(always)]
    pub fn encoded(&mut self, bytes: &[u8]) -> &mut Self {
        self.put(bytes);
        self
    }

    /// A map key, marker included (see [`key!`]).
    #[inline(always)]
    pub fn key(&mut self, k: Key) -> &mut Self {
        self.put(k.0);
        self
    }

    #[inline(always)]
    fn raw_str(&mut self, s: &[u8]) -> &mut Self {
        self.len_marker(s.len(), 0xa0, 31, 0xd9, 0xda, 0xdb);
        self.put(s);
        self
    }

    /// A string value from bytes (invalid UTF-8 is replaced, as the schema requires text).
    #[inline]
    pub fn str(&mut self, v: &[u8]) -> &mut Self {
        if is_ascii(v) {
            self.raw_str(v)
        } else {
            self.non_ascii_str(v)
        }
    }

    #[cold]
    #[inline(never)]
    fn non_ascii_str(&mut self, v: &[u8]) -> &mut Self {
        // Borrows `v` when it is valid UTF-8; replaces invalid sequences otherwise.
        self.raw_str(String::from_utf8_lossy(v).as_bytes())
    }

    /// A string made of parts (each valid UTF-8), written without joining them first.
    pub fn str_parts(&mut self, parts: &[&[u8]]) -> &mut Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.len_marker(len, 0xa0, 31, 0xd9, 0xda, 0xdb);
        for p in parts {
            self.put(p);
        }
        self
    }

    #[inline]
    pub fn uint(&mut self, v: u64) -> &mut Self {
        if v < 0x80 {
            self.byte(v as u8);
        } else if v <= 0xff {
            self.put(&[0xcc, v as u8]);
        } else if v <= 0xffff {
            let b = (v as u16).to_be_bytes();
            self.put(&[0xcd, b[0], b[1]]);
        } else if v <= 0xffff_ffff {
            let b = (v as u32).to_be_bytes();
            self.put(&[0xce, b[0], b[1], b[2], b[3]]);
        } else {
            let b = v.to_be_bytes();
            self.put(&[0xcf, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        }
        self
    }

    #[inline]
    pub fn f64(&mut self, v: f64) -> &mut Self {
        let b = v.to_be_bytes();
        self.put(&[0xcb, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        self
    }

    #[inline]
    pub fn f32(&mut self, v: f32) -> &mut Self {
        let b = v.to_be_bytes();
        self.put(&[0xca, b[0], b[1], b[2], b[3]]);
        self
    }

    #[inline]
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.byte(if v { 0xc3 } else { 0xc2 });
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
            let buf = written(|w| {
                w.str(s.as_bytes());
            });
            assert_eq!(rmp_serde::from_slice::<String>(&buf).unwrap(), s, "str of {len}");

            let buf = written(|w| {
                w.array(len as u32);
                for _ in 0..len {
                    w.bool(true);
                }
            });
            assert_eq!(rmp_serde::from_slice::<Vec<bool>>(&buf).unwrap().len(), len, "array of {len}");

            let buf = written(|w| {
                w.map(len.min(70_000) as u32);
                for i in 0..len {
                    w.uint(i as u64).uint(i as u64);
                }
            });
            let m: std::collections::BTreeMap<u64, u64> = rmp_serde::from_slice(&buf).unwrap();
            assert_eq!(m.len(), len, "map of {len}");
        }
        for v in [0u64, 127, 128, 255, 256, 65535, 65536, u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX] {
            let buf = written(|w| {
                w.uint(v);
            });
            assert_eq!(rmp_serde::from_slice::<u64>(&buf).unwrap(), v);
        }
        let buf = written(|w| {
            w.array(3).f64(1.25).f32(0.5).bool(false);
        });
        assert_eq!(rmp_serde::from_slice::<(f64, f32, bool)>(&buf).unwrap(), (1.25, 0.5, false));
        let buf = written(|w| {
            w.str(b"a\xffb");
        });
        assert_eq!(rmp_serde::from_slice::<String>(&buf).unwrap(), "a\u{fffd}b");
        let buf = written(|w| {
            w.key(crate::key!("caf\u{e9}")).str("na\u{ef}ve".as_bytes());
        });
        assert_eq!(rmp_serde::from_slice::<String>(&buf).unwrap(), "caf\u{e9}");
        assert_eq!(rmp_serde::from_slice::<String>(&buf[6..]).unwrap(), "na\u{ef}ve");
    }

    fn written(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut buf = vec![0u8; 1 << 20];
        let mut w = Writer::new(&mut buf);
        f(&mut w);
        assert!(!w.overflowed());
        let n = w.len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn what_does_not_fit_is_flagged_not_written_past_the_end() {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.str(b"1234567");
        assert!(!w.overflowed());
        assert_eq!(w.len(), 8);
        w.bool(true);
        assert!(w.overflowed());
        let mut w = Writer::new(&mut buf);
        w.str(b"123456789");
        assert!(w.overflowed());
        assert_eq!(w.len(), 1, "only the marker fitted");
    }
}
