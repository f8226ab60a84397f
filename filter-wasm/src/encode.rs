//! Writes the event map straight into MessagePack with `rmp`'s encoder, from slices of the packed
//! head, without building an intermediate [`sentinel_wire::Event`]. The output is the map the
//! `Event` type (rmp-serde) reads; the tests decode it with that type to hold the two together.

use rmp::encode as mp;
use rmp::encode::ByteBuf;
use std::borrow::Cow;

/// Appends MessagePack values to a buffer. `ByteBuf` is rmp's infallible writer (its errors are
/// `Infallible`, so the results dropped here cannot be errors).
pub struct Writer<'b>(pub &'b mut ByteBuf);


/// Bytes as text: borrowed when valid UTF-8, replacement characters otherwise.
pub fn text(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

impl Writer<'_> {
    pub fn map(&mut self, len: u32) -> &mut Self {
        let _ = mp::write_map_len(self.0, len);
        self
    }

    pub fn array(&mut self, len: u32) -> &mut Self {
        let _ = mp::write_array_len(self.0, len);
        self
    }

    /// A key known to be valid UTF-8.
    pub fn key(&mut self, k: &str) -> &mut Self {
        let _ = mp::write_str(self.0, k);
        self
    }

    /// A string value from bytes (invalid UTF-8 is replaced, as the schema requires text).
    pub fn str(&mut self, v: &[u8]) -> &mut Self {
        let _ = mp::write_str(self.0, &text(v));
        self
    }

    /// A string made of parts, written without joining them first.
    pub fn str_parts(&mut self, parts: &[&[u8]]) -> &mut Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let _ = mp::write_str_len(self.0, len as u32);
        for p in parts {
            self.0.as_mut_vec().extend_from_slice(p);
        }
        self
    }

    pub fn uint(&mut self, v: u64) -> &mut Self {
        let _ = mp::write_uint(self.0, v);
        self
    }

    pub fn f64(&mut self, v: f64) -> &mut Self {
        let _ = mp::write_f64(self.0, v);
        self
    }

    pub fn f32(&mut self, v: f32) -> &mut Self {
        let _ = mp::write_f32(self.0, v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        let _ = mp::write_bool(self.0, v);
        self
    }
}
