//! The event as one line of JSON, written straight from the schema: what every sink of the
//! collector ships. Byte for byte what `serde_json` writes for the same [`Event`] (a test holds
//! the two together), without its per-field dispatch: keys are written as prepared literals and
//! strings are copied whole unless they hold a byte JSON must escape.

use super::*;
use crate::ascii;

/// What JSON writes for the bytes that must be escaped: a letter for `\b \t \n \f \r \" \\`,
/// `u` for the other control characters (`\u00XX`), 0 for bytes written as they are.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// The high bit set in each byte of `w` JSON must escape (a control character, `"` or `\\`);
/// the lowest flag is exact (see [`ascii::below`]).
#[inline(always)]
fn escapes(w: u64) -> u64 {
    ascii::below(w, 0x20) | ascii::equal(w, b'"') | ascii::equal(w, b'\\')
}

/// Where the first byte JSON must escape is, eight bytes a step: strings are most of a line,
/// and a table lookup per byte was a third of the encoding.
#[inline(always)]
fn first_escape(b: &[u8]) -> Option<usize> {
    let (words, tail) = b.as_chunks::<8>();
    for (i, w) in words.iter().enumerate() {
        let m = escapes(u64::from_le_bytes(*w));
        if m != 0 {
            return Some(i * 8 + (m.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter().position(|&c| ESCAPE[c as usize] != 0).map(|p| words.len() * 8 + p)
}

/// True when every byte of `b` is ASCII and none needs escaping: the one pass a string of a
/// forwarded frame takes when it is checked as text and written as JSON at once.
#[inline(always)]
fn plain(b: &[u8]) -> bool {
    let special = |w: u64| escapes(w) | (w & ascii::HIGH);
    // Short strings are read as overlapping pieces padded with a byte that needs nothing (not
    // copied into a padded word: a store and a wider load of it stall the CPU).
    let pad = |w: u64, bytes: u32| w | (ascii::splat(b'a') << (8 * bytes));
    let n = b.len();
    let m = if let Some(last) = b.last_chunk::<8>() {
        let (words, _) = b.as_chunks::<8>();
        words.iter().fold(special(u64::from_le_bytes(*last)), |m, w| m | special(u64::from_le_bytes(*w)))
    } else if let (Some(first), Some(last)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        special(pad(u32::from_le_bytes(*first).into(), 4)) | special(pad(u32::from_le_bytes(*last).into(), 4))
    } else if n > 0 {
        special(pad(u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16, 3))
    } else {
        0
    };
    m == 0
}

impl Event<'_> {
    /// Appends the event as JSON and a newline: one NDJSON line.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        let mut j = Json(out);
        j.0.push(b'{');
        j.key(k!("schema_version")).str(&self.schema_version);
        j.key(k!("event")).open();
        j.key(k!("id")).str(&self.event.id);
        j.key(k!("start_ns")).uint(self.event.start_ns);
        j.key(k!("end_ns")).uint(self.event.end_ns);
        j.close();
        j.key(k!("http")).open();
        let r = &self.http.request;
        j.key(k!("request")).open().key(k!("method")).str(&r.method);
        j.headers(&r.header).body(&r.body).close();
        let r = &self.http.response;
        j.key(k!("response")).open().key(k!("status_code")).uint(r.status_code.into());
        j.headers(&r.header).body(&r.body).close();
        j.opt_str(k!("route"), &self.http.route);
        j.close();
        let u = &self.url;
        j.key(k!("url")).open();
        j.opt_str(k!("scheme"), &u.scheme).opt_str(k!("domain"), &u.domain);
        j.key(k!("path")).str(&u.path).opt_str(k!("query"), &u.query).close();
        j.network_and_client(self.network.as_ref(), &self.client);
        if let Some(t) = &self.tls {
            j.key(k!("tls")).open();
            if let Some(p) = &t.protocol {
                j.key(k!("protocol")).protocol(p);
            }
            j.opt_str(k!("cipher"), &t.cipher).opt_str(k!("server_name"), &t.server_name).close();
        }
        if let Some(u) = &self.upstream {
            j.key(k!("upstream")).open().opt_str(k!("address"), &u.address);
            j.key(k!("attempts")).uint(u.attempts.into());
            if let Some(s) = u.status_code {
                j.key(k!("status_code")).uint(s.into());
            }
            j.close();
        }
        let t = &self.timing;
        j.key(k!("timing")).open().opt_f64(k!("ttfb_ms"), t.ttfb_ms).key(k!("total_ms")).f64(t.total_ms);
        j.opt_f64(k!("upstream_ms"), t.upstream_ms).opt_f64(k!("upstream_connect_ms"), t.upstream_connect_ms).close();
        if let Some(s) = &self.sentinel {
            j.sentinel(s);
        }
        parts::all(self, j.0);
        j.key(k!("sampling")).open().key(k!("rate")).f64(self.sampling.rate);
        j.key(k!("reason")).str(&self.sampling.reason).close();
        j.redaction(self);
        j.key(k!("filter")).open().key(k!("version")).str(&self.filter.version).close();
        if let Some(c) = &self.collector {
            j.key(k!("collector")).open().key(k!("host")).str(&c.host).close();
        }
        j.close();
        // The object's trailing separator becomes the line's end.
        if let Some(last) = j.0.last_mut() {
            *last = b'\n';
        }
    }
}

/// A JSON writer in which every value is followed by a comma; closing a container turns the
/// comma after its last member into the bracket (or adds the bracket when it is empty).
pub(super) struct Json<'o>(pub(super) &'o mut Vec<u8>);

impl Json<'_> {
    #[inline(always)]
    pub(super) fn key(&mut self, k: &'static [u8]) -> &mut Self {
        self.0.extend_from_slice(k);
        self
    }

    #[inline(always)]
    pub(super) fn open(&mut self) -> &mut Self {
        self.0.push(b'{');
        self
    }

    #[inline(always)]
    pub(super) fn close(&mut self) -> &mut Self {
        self.end(b'}')
    }

    /// Closes a container: the comma after its last member becomes `close`; with no member
    /// the last byte is its opening bracket and `close` follows it.
    #[inline(always)]
    pub(super) fn end(&mut self, close: u8) -> &mut Self {
        match self.0.last_mut() {
            Some(last) if *last == b',' => *last = close,
            _ => self.0.push(close),
        }
        self.0.push(b',');
        self
    }

    #[inline(always)]
    pub(super) fn str(&mut self, s: &str) -> &mut Self {
        let b = s.as_bytes();
        self.0.reserve(b.len() + 3);
        self.0.push(b'"');
        match first_escape(b) {
            None => self.0.extend_from_slice(b),
            Some(first) => self.escaped(b, first),
        }
        self.0.extend_from_slice(b"\",");
        self
    }

    /// A string value given as MessagePack bytes: written as [`Json::str`] writes it, or `None`
    /// when the bytes are not UTF-8 (what the decoder refuses).
    #[inline(always)]
    pub(super) fn text(&mut self, b: &[u8]) -> Option<&mut Self> {
        self.text_str(b)?;
        Some(self)
    }

    /// [`Json::text`], and the bytes as text (what a stage reads) when they are.
    #[inline(always)]
    pub(super) fn text_str<'b>(&mut self, b: &'b [u8]) -> Option<&'b str> {
        if plain(b) {
            self.0.reserve(b.len() + 3);
            self.0.push(b'"');
            self.0.extend_from_slice(b);
            self.0.extend_from_slice(b"\",");
            // SAFETY: `plain` holds only for ASCII, which is valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(b) })
        } else {
            let s = std::str::from_utf8(b).ok()?;
            self.str(s);
            Some(s)
        }
    }

    /// The string from the first byte that needs escaping on.
    #[cold]
    #[inline(never)]
    fn escaped(&mut self, b: &[u8], first: usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.0.extend_from_slice(&b[..first]);
        let mut start = first;
        for (i, &c) in b.iter().enumerate().skip(first) {
            let e = ESCAPE[c as usize];
            if e == 0 {
                continue;
            }
            self.0.extend_from_slice(&b[start..i]);
            if e == b'u' {
                self.0.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 0xf) as usize]]);
            } else {
                self.0.extend_from_slice(&[b'\\', e]);
            }
            start = i + 1;
        }
        self.0.extend_from_slice(&b[start..]);
    }

    #[inline(always)]
    fn opt_str<S: AsRef<str>>(&mut self, k: &'static [u8], v: &Option<S>) -> &mut Self {
        if let Some(v) = v {
            self.key(k).str(v.as_ref());
        }
        self
    }

    fn strs<S: AsRef<str>>(&mut self, v: &[S]) -> &mut Self {
        self.0.push(b'[');
        for s in v {
            self.str(s.as_ref());
        }
        self.end(b']')
    }

    #[inline(always)]
    pub(super) fn uint(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self.0.push(b',');
        self
    }

    #[inline(always)]
    pub(super) fn bool(&mut self, v: bool) -> &mut Self {
        self.0.extend_from_slice(if v { b"true," } else { b"false," });
        self
    }

    /// Finite floats in shortest round-trip form, as `serde_json` writes them; NaN and
    /// infinities, which JSON cannot carry, as `null`.
    #[inline(always)]
    fn float<F: zmij::Float>(&mut self, v: F, finite: bool) -> &mut Self {
        if finite {
            self.0.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
        } else {
            self.0.extend_from_slice(b"null");
        }
        self.0.push(b',');
        self
    }

    #[inline(always)]
    pub(super) fn f64(&mut self, v: f64) -> &mut Self {
        self.float(v, v.is_finite())
    }

    pub(super) fn f32(&mut self, v: f32) -> &mut Self {
        self.float(v, v.is_finite())
    }

    #[inline(always)]
    fn opt_f64(&mut self, k: &'static [u8], v: Option<f64>) -> &mut Self {
        if let Some(v) = v {
            self.key(k).f64(v);
        }
        self
    }

    fn headers(&mut self, h: &Headers<'_>) -> &mut Self {
        if !h.is_empty() {
            self.key(k!("header")).open();
            for (name, value) in &h.0 {
                // A header name is a key, written as a string is.
                self.str(name);
                let colon = self.0.len() - 1;
                self.0[colon] = b':';
                self.str(value);
            }
            self.close();
        }
        self
    }

    fn body(&mut self, b: &Body<'_>) -> &mut Self {
        self.key(k!("body")).open().key(k!("size")).uint(b.size).opt_str(k!("content"), &b.content);
        if b.truncated {
            self.key(k!("truncated")).bool(true);
        }
        self.close()
    }

    fn protocol(&mut self, p: &Protocol<'_>) -> &mut Self {
        self.open().key(k!("version")).str(&p.version).close()
    }

    /// `network` (when there is one) and `client`, which follow each other in the line.
    pub(super) fn network_and_client(&mut self, network: Option<&Network<'_>>, client: &Client<'_>) {
        if let Some(n) = network {
            self.key(k!("network")).open();
            if let Some(p) = &n.protocol {
                self.key(k!("protocol")).protocol(p);
            }
            if let Some(p) = &n.peer {
                self.key(k!("peer")).open().key(k!("address")).str(&p.address).close();
            }
            self.close();
        }
        self.key(k!("client")).open();
        self.key(k!("address")).str(&client.address).key(k!("port")).uint(client.port.into()).close();
    }

    /// `redaction`, when the collector's redaction changed something.
    pub(super) fn redaction(&mut self, ev: &Event<'_>) {
        if let Some(r) = &ev.redaction {
            self.key(k!("redaction")).open().key(k!("fields")).strs(&r.fields).close();
        }
    }

    fn sentinel(&mut self, s: &Sentinel<'_>) {
        self.key(k!("sentinel")).open().opt_str(k!("decision"), &s.decision);
        if let Some(r) = s.risk_score {
            self.key(k!("risk_score")).f32(r);
        }
        if !s.rules.is_empty() {
            self.key(k!("rules")).strs(&s.rules);
        }
        if !s.agents.is_empty() {
            self.key(k!("agents")).0.push(b'[');
            for a in &s.agents {
                self.open().key(k!("name")).str(&a.name).key(k!("verdict")).str(&a.verdict);
                self.key(k!("duration_ms")).f64(a.duration_ms).close();
            }
            self.end(b']');
        }
        self.close();
    }

    fn geo(&mut self, g: &Geo) {
        self.key(k!("geo")).open();
        if let Some(c) = &g.continent {
            self.key(k!("continent")).open().key(k!("code")).str(&c.code).close();
        }
        for (k, place) in [(k!("country"), &g.country), (k!("region"), &g.region)] {
            if let Some(p) = place {
                self.key(k).open().opt_str(k!("iso_code"), &p.iso_code).opt_str(k!("name"), &p.name).close();
            }
        }
        if let Some(l) = &g.locality {
            self.key(k!("locality")).open().key(k!("name")).str(&l.name).close();
        }
        self.opt_str(k!("postal_code"), &g.postal_code).opt_str(k!("timezone"), &g.timezone);
        if let Some(l) = &g.location {
            self.key(k!("location")).open().key(k!("lat")).f64(l.lat).key(k!("lon")).f64(l.lon).close();
        }
        self.close();
    }

    fn threat(&mut self, t: &Threat) {
        self.key(k!("threat")).open();
        self.key(k!("known_bad")).bool(t.known_bad).key(k!("tor_exit")).bool(t.tor_exit);
        self.key(k!("proxy")).bool(t.proxy).key(k!("hosting")).bool(t.hosting);
        if !t.lists.is_empty() {
            self.key(k!("lists")).strs(&t.lists);
        }
        self.key(k!("score")).uint(t.score.into()).close();
    }
}

/// The members the collector's enrichers add, written apart so that a caller can keep an
/// address's `geo`, `asn` and `threat` JSON for its next events. Each appends members followed
/// by commas, as every member inside [`Event::write_json_line`]'s object is; in the order
/// `geo_asn`, `agent`, `threat` they are that line's members from `geo` to `threat`.
pub mod parts {
    use super::{Asn, Event, Geo, Json, Threat};

    /// Every member from `geo` to `threat`, from the event.
    pub fn all(ev: &Event<'_>, out: &mut Vec<u8>) {
        geo_asn(ev.geo.as_deref(), ev.asn.as_deref(), out);
        agent(ev, out);
        threat(ev.threat.as_deref(), out);
    }

    /// `geo` and `asn`, when there.
    pub fn geo_asn(geo: Option<&Geo>, asn: Option<&Asn>, out: &mut Vec<u8>) {
        let mut j = Json(out);
        if let Some(g) = geo {
            j.geo(g);
        }
        if let Some(a) = asn {
            j.key(k!("asn")).open().key(k!("number")).uint(a.number.into()).opt_str(k!("organization"), &a.organization).close();
        }
    }

    /// `device`, `user_agent` and `os`, when there.
    pub fn agent(ev: &Event<'_>, out: &mut Vec<u8>) {
        let mut j = Json(out);
        if let Some(d) = &ev.device {
            j.key(k!("device")).open().key(k!("type")).str(&d.kind);
            j.opt_str(k!("brand"), &d.brand).opt_str(k!("model"), &d.model).close();
        }
        if let Some(u) = &ev.user_agent {
            j.key(k!("user_agent")).open().key(k!("original")).str(&u.original);
            j.opt_str(k!("name"), &u.name).opt_str(k!("version"), &u.version);
            j.key(k!("is_bot")).bool(u.is_bot).close();
        }
        if let Some(o) = &ev.os {
            j.key(k!("os")).open().key(k!("name")).str(&o.name).opt_str(k!("version"), &o.version).close();
        }
    }

    /// `threat`, when there.
    pub fn threat(threat: Option<&Threat>, out: &mut Vec<u8>) {
        if let Some(t) = threat {
            Json(out).threat(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::random::{random_enriched_event, Rng};
    use super::*;

    #[test]
    fn lines_are_byte_for_byte_what_serde_json_writes() {
        let mut rng = Rng(5);
        let mut line = Vec::new();
        for _ in 0..3000 {
            let ev = random_enriched_event(&mut rng);
            line.clear();
            ev.write_json_line(&mut line);
            let mut reference = serde_json::to_vec(&ev).unwrap();
            reference.push(b'\n');
            assert_eq!(String::from_utf8_lossy(&line), String::from_utf8_lossy(&reference));
        }
    }

    #[test]
    fn control_characters_quotes_and_odd_floats_are_escaped_as_json_requires() {
        let mut ev = random_enriched_event(&mut Rng(6));
        ev.url.path = "/a\u{0}b\u{1f}\u{7f}\"\\\u{8}\u{9}\u{a}\u{c}\u{d}é".into();
        ev.timing.total_ms = f64::NAN;
        ev.timing.ttfb_ms = Some(f64::INFINITY);
        ev.sentinel = Some(Sentinel { risk_score: Some(f32::NEG_INFINITY), rules: vec![], agents: vec![], decision: Some(String::new().into()) });
        let mut line = Vec::new();
        ev.write_json_line(&mut line);
        let mut reference = serde_json::to_vec(&ev).unwrap();
        reference.push(b'\n');
        assert_eq!(String::from_utf8_lossy(&line), String::from_utf8_lossy(&reference));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["url"]["path"], "/a\u{0}b\u{1f}\u{7f}\"\\\u{8}\u{9}\u{a}\u{c}\u{d}é");
        assert!(v["timing"]["total_ms"].is_null());
    }

    #[test]
    fn the_word_scan_finds_the_first_byte_to_escape_wherever_it_is() {
        let by_table = |b: &[u8]| b.iter().position(|&c| ESCAPE[c as usize] != 0);
        // Backgrounds next to every threshold the word arithmetic uses, UTF-8 bytes included.
        for background in [b'a', 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xdc, 0xff] {
            for len in 0..26 {
                let mut v = vec![background; len];
                assert_eq!(first_escape(&v), by_table(&v));
                for i in 0..len {
                    for c in 0..=255u8 {
                        v[i] = c;
                        assert_eq!(first_escape(&v), by_table(&v), "byte {c:#x} at {i} of {len} on {background:#x}");
                        // A second byte to escape after it must not hide or move the first.
                        for j in [i + 1, i + 7, len - 1] {
                            if j > i && j < len {
                                let kept = v[j];
                                v[j] = b'"';
                                assert_eq!(first_escape(&v), by_table(&v), "{c:#x} at {i}, quote at {j}");
                                v[j] = kept;
                            }
                        }
                    }
                    v[i] = background;
                }
            }
        }
    }

    #[test]
    fn the_one_scan_for_plain_text_sees_every_byte() {
        let by_byte = |b: &[u8]| b.iter().all(|&c| c < 0x80 && ESCAPE[c as usize] == 0);
        for len in 0..26 {
            let mut v = vec![b'a'; len];
            assert!(plain(&v));
            for i in 0..len {
                for c in 0..=255u8 {
                    v[i] = c;
                    assert_eq!(plain(&v), by_byte(&v), "byte {c:#x} at {i} of {len}");
                }
                v[i] = b'a';
            }
        }
    }

    #[test]
    fn lines_append_to_what_the_buffer_holds() {
        let ev = random_enriched_event(&mut Rng(7));
        let mut out = b"previous line\n".to_vec();
        ev.write_json_line(&mut out);
        ev.write_json_line(&mut out);
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 4, "three lines and the empty rest after the last newline");
        assert_eq!(lines[0], b"previous line");
        assert_eq!(lines[1], lines[2]);
        assert_eq!(lines[3], b"");
    }
}
