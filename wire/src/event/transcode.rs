//! A forwarding collector's one pass from frame to NDJSON line: when no stage needs the decoded
//! event (sampling keeps everything, no enricher, no redaction), the MessagePack frame is read
//! and its JSON written as it goes, without building an [`Event`] in between: each string is
//! checked as text and for bytes JSON must escape in one scan, and nothing is allocated but
//! the line.
//!
//! It answers only for frames in the shape filters write: the schema's fields in the schema's
//! order, optional ones absent rather than nil, keys as fixstr, every field the decoder would
//! otherwise default present. Anything else (unknown or reordered fields, nil, integers for
//! floats, a missing field) makes it step aside, and the caller decodes and encodes as usual.
//! Where it answers, its line is byte for byte what [`Event::decode`] followed by
//! [`Event::write_json_line`] gives (the tests below hold the two together on random,
//! filter-shaped and damaged frames).

use super::decode::Reader;
use super::json::Json;
use super::{parts, Client, Event, Network, Peer, Protocol};
use std::borrow::Cow;

/// Appends the NDJSON line of the event in `frame` to `out`, with `collector.host` set to
/// `collector_host` when given. False, with `out` as it was, when the frame must be decoded.
pub fn json_line(frame: &[u8], collector_host: Option<&str>, out: &mut Vec<u8>) -> bool {
    staged_line(frame, &mut Forward, collector_host, out)
}

/// [`json_line`] with a collector's stages at work: they read the request headers and the
/// client as the pass meets them, may replace any text redaction covers, and give the
/// `network` and `client` to write and the parts they add (`geo` to `threat`, `redaction`).
/// The line is what decoding, the same stages and encoding give. False, with `out` as it was,
/// when the frame must be decoded.
pub fn staged_line<'f, S: Stages<'f>>(frame: &'f [u8], stages: &mut S, collector_host: Option<&str>, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let done = Pass { r: Reader::new(frame), j: Json(out), s: stages }.event(collector_host).is_some();
    if !done {
        out.truncate(start);
    }
    done
}

/// A text field whose value redaction may replace, as the pass meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text<'n> {
    RequestHeader(&'n str),
    RequestBody,
    ResponseHeader(&'n str),
    ResponseBody,
    Path,
    Query,
}

/// What a collector's stages do in the one pass (see [`staged_line`]). The frame's strings
/// are lent for `'f`, so the stages keep what they need without copying it.
pub trait Stages<'f> {
    /// False for a pass that only forwards: no call is made, and the frame is written as read.
    const ACTIVE: bool = true;

    /// A request header, as the frame has it; every one comes before the client.
    fn request_header(&mut self, name: &'f str, value: &'f str);

    /// What to write instead of `value`, the text at `at`; `None` keeps it.
    fn redact(&mut self, at: Text<'_>, value: &'f str) -> Option<String>;

    /// The frame's `network` and `client`, when the pass reaches them (after every text
    /// redaction covers but the ones the stages add).
    fn client(&mut self, network: Option<Network<'f>>, client: Client<'f>);

    /// What the stages made of the event: its `network` and `client`, and the parts they
    /// add. Only those are read.
    fn staged(&self) -> Option<&Event<'f>>;

    /// Appends the members from `geo` to `threat` ([`parts`]): by default written from
    /// [`Stages::staged`]; stages that keep some of them as JSON write those as kept.
    fn write_enrichment(&self, out: &mut Vec<u8>) {
        if let Some(ev) = self.staged() {
            parts::all(ev, out);
        }
    }
}

/// The stages of a collector that only forwards: none.
struct Forward;

impl<'f> Stages<'f> for Forward {
    const ACTIVE: bool = false;
    fn request_header(&mut self, _: &'f str, _: &'f str) {}
    fn redact(&mut self, _: Text<'_>, _: &'f str) -> Option<String> {
        None
    }
    fn client(&mut self, _: Option<Network<'f>>, _: Client<'f>) {}
    fn staged(&self) -> Option<&Event<'f>> {
        None
    }
}

/// The reader over the frame and the writer of the line, in step, and the stages at work.
struct Pass<'a, 'o, 's, S> {
    r: Reader<'a>,
    j: Json<'o>,
    s: &'s mut S,
}

/// The pairs of a map not yet read.
struct Left(usize);

/// A field of the schema: its key in the frame (compared as bytes) and in the line.
#[derive(Clone, Copy)]
struct Field {
    name: &'static [u8],
    key: &'static [u8],
}

/// The [`Field`] named `$name`, written once.
macro_rules! f {
    ($name:literal) => {
        Field { name: $name.as_bytes(), key: k!($name) }
    };
}

impl<'a, S: Stages<'a>> Pass<'a, '_, '_, S> {
    /// Reads the next key when it is `f` (an optional field that is present); writes nothing.
    #[inline(always)]
    fn has(&mut self, left: &mut Left, f: Field) -> bool {
        let is = left.0 > 0 && self.r.key_is(f.name);
        left.0 -= usize::from(is);
        is
    }

    /// [`Pass::has`], and the key written to the line when the field is there.
    #[inline(always)]
    fn field(&mut self, left: &mut Left, f: Field) -> bool {
        let is = self.has(left, f);
        if is {
            self.j.key(f.key);
        }
        is
    }

    /// The next key, which must be `f` (a required field), read and written.
    #[inline(always)]
    fn need(&mut self, left: &mut Left, f: Field) -> Option<&mut Self> {
        self.field(left, f).then_some(self)
    }

    /// Opens a map of the frame and an object of the line: the frame's pairs to read.
    #[inline(always)]
    fn open(&mut self) -> Option<Left> {
        let n = self.r.map()?;
        self.j.open();
        Some(Left(n))
    }

    /// Closes a map of the frame and of the line; a pair not read (a field out of order, a
    /// duplicate, one the schema does not know) leaves the frame to the decoder.
    #[inline(always)]
    fn close(&mut self, left: Left) -> Option<()> {
        self.j.close();
        (left.0 == 0).then_some(())
    }

    #[inline(always)]
    fn text(&mut self) -> Option<()> {
        let b = self.r.raw_str()?;
        self.j.text(b).map(drop)
    }

    /// Text that redaction covers: written, then replaced when the stages say so. Returns the
    /// frame's text.
    #[inline(always)]
    fn redacted_text(&mut self, at: Text<'_>) -> Option<&'a str> {
        let start = self.j.0.len();
        let value = self.j.text_str(self.r.raw_str()?)?;
        if S::ACTIVE {
            if let Some(new) = self.s.redact(at, value) {
                self.j.0.truncate(start);
                self.j.str(&new);
            }
        }
        Some(value)
    }

    /// Text read and not written (yet).
    fn str(&mut self) -> Option<&'a str> {
        crate::ascii::utf8(self.r.raw_str()?)
    }

    /// A `{version}` map read and not written.
    fn read_version(&mut self) -> Option<Cow<'a, str>> {
        let mut m = Left(self.r.map()?);
        if !self.has(&mut m, f!("version")) {
            return None;
        }
        let v = self.str()?;
        (m.0 == 0).then_some(Cow::Borrowed(v))
    }

    /// `network`, read and not written.
    fn read_network(&mut self) -> Option<Network<'a>> {
        let mut m = Left(self.r.map()?);
        let mut n = Network::default();
        if self.has(&mut m, f!("protocol")) {
            n.protocol = Some(Protocol { version: self.read_version()? });
        }
        if self.has(&mut m, f!("peer")) {
            let mut p = Left(self.r.map()?);
            if !self.has(&mut p, f!("address")) {
                return None;
            }
            n.peer = Some(Peer { address: self.str()?.to_owned() });
            (p.0 == 0).then_some(())?;
        }
        (m.0 == 0).then_some(n)
    }

    /// `client`, read and not written.
    fn read_client(&mut self) -> Option<Client<'a>> {
        let mut m = Left(self.r.map()?);
        if !self.has(&mut m, f!("address")) {
            return None;
        }
        let address = Cow::Borrowed(self.str()?);
        if !self.has(&mut m, f!("port")) {
            return None;
        }
        let port = u16::try_from(self.r.uint()?).ok()?;
        (m.0 == 0).then_some(Client { address, port })
    }

    /// An unsigned integer of at most `max`.
    #[inline(always)]
    fn uint(&mut self, max: u64) -> Option<()> {
        let v = self.r.uint().filter(|v| *v <= max)?;
        self.j.uint(v);
        Some(())
    }

    #[inline(always)]
    fn f64(&mut self) -> Option<()> {
        let v = self.r.f64()?;
        self.j.f64(v);
        Some(())
    }

    /// Text when the field is there.
    #[inline(always)]
    fn opt_text(&mut self, left: &mut Left, f: Field) -> Option<()> {
        if self.field(left, f) {
            self.text()?;
        }
        Some(())
    }

    /// A float when the field is there.
    #[inline(always)]
    fn opt_f64(&mut self, left: &mut Left, f: Field) -> Option<()> {
        if self.field(left, f) {
            self.f64()?;
        }
        Some(())
    }

    fn event(mut self, collector_host: Option<&str>) -> Option<()> {
        let mut m = self.open()?;
        self.need(&mut m, f!("schema_version"))?.text()?;
        self.need(&mut m, f!("event"))?.event_info()?;
        self.need(&mut m, f!("http"))?.http()?;
        self.need(&mut m, f!("url"))?.url()?;
        // Read before written: the stages may change both (a trusted hop, an anonymized address).
        let network = if self.has(&mut m, f!("network")) { Some(self.read_network()?) } else { None };
        if !self.has(&mut m, f!("client")) {
            return None;
        }
        let client = self.read_client()?;
        if S::ACTIVE {
            self.s.client(network, client);
            if let Some(ev) = self.s.staged() {
                self.j.network_and_client(ev.network.as_ref(), &ev.client);
            }
        } else {
            self.j.network_and_client(network.as_ref(), &client);
        }
        if self.field(&mut m, f!("tls")) {
            self.tls()?;
        }
        if self.field(&mut m, f!("upstream")) {
            self.upstream()?;
        }
        self.need(&mut m, f!("timing"))?.timing()?;
        if self.field(&mut m, f!("sentinel")) {
            self.sentinel()?;
        }
        if S::ACTIVE {
            self.s.write_enrichment(self.j.0);
        }
        self.need(&mut m, f!("sampling"))?.sampling()?;
        if let Some(ev) = self.s.staged() {
            self.j.redaction(ev);
        }
        self.need(&mut m, f!("filter"))?.version()?;
        if let Some(host) = collector_host {
            self.j.key(k!("collector")).open().key(k!("host")).str(host).close();
        }
        self.close(m)?;
        // The object's trailing separator becomes the line's end.
        if let Some(last) = self.j.0.last_mut() {
            *last = b'\n';
        }
        Some(())
    }

    fn event_info(&mut self) -> Option<()> {
        let mut m = self.open()?;
        self.need(&mut m, f!("id"))?.text()?;
        self.need(&mut m, f!("start_ns"))?.uint(u64::MAX)?;
        self.need(&mut m, f!("end_ns"))?.uint(u64::MAX)?;
        self.close(m)
    }

    fn http(&mut self) -> Option<()> {
        let mut m = self.open()?;
        self.need(&mut m, f!("request"))?;
        let mut r = self.open()?;
        self.need(&mut r, f!("method"))?.text()?;
        self.headers(&mut r, true)?;
        self.body(&mut r, Text::RequestBody)?;
        self.close(r)?;
        self.need(&mut m, f!("response"))?;
        let mut r = self.open()?;
        self.need(&mut r, f!("status_code"))?.uint(u16::MAX.into())?;
        self.headers(&mut r, false)?;
        self.body(&mut r, Text::ResponseBody)?;
        self.close(r)?;
        self.opt_text(&mut m, f!("route"))?;
        self.close(m)
    }

    /// `header` when present; an empty map is left out, as the encoder leaves out no headers.
    fn headers(&mut self, m: &mut Left, request: bool) -> Option<()> {
        let header = f!("header");
        if !self.has(m, header) {
            return Some(());
        }
        let n = self.r.map()?;
        if n == 0 {
            return Some(());
        }
        self.j.key(header.key).open();
        for _ in 0..n {
            // A header name is a key, written as a string is.
            let name = self.j.text_str(self.r.raw_str()?)?;
            let colon = self.j.0.len() - 1;
            self.j.0[colon] = b':';
            if S::ACTIVE {
                let at = if request { Text::RequestHeader(name) } else { Text::ResponseHeader(name) };
                let value = self.redacted_text(at)?;
                if request {
                    self.s.request_header(name, value);
                }
            } else {
                self.text()?;
            }
        }
        self.j.close();
        Some(())
    }

    /// `body`, which the decoder would default when absent: required here. `truncated` is
    /// written only when true, as the encoder writes it.
    fn body(&mut self, m: &mut Left, at: Text<'_>) -> Option<()> {
        self.need(m, f!("body"))?;
        let mut b = self.open()?;
        self.need(&mut b, f!("size"))?.uint(u64::MAX)?;
        if self.field(&mut b, f!("content")) {
            self.redacted_text(at)?;
        }
        let truncated = f!("truncated");
        if self.has(&mut b, truncated) && self.r.bool()? {
            self.j.key(truncated.key).bool(true);
        }
        self.close(b)
    }

    fn url(&mut self) -> Option<()> {
        let mut m = self.open()?;
        self.opt_text(&mut m, f!("scheme"))?;
        self.opt_text(&mut m, f!("domain"))?;
        self.need(&mut m, f!("path"))?.redacted_text(Text::Path)?;
        if self.field(&mut m, f!("query")) {
            self.redacted_text(Text::Query)?;
        }
        self.close(m)
    }

    /// A `{version}` map: `network.protocol`, `tls.protocol` and `filter`.
    fn version(&mut self) -> Option<()> {
        let mut m = self.open()?;
        self.need(&mut m, f!("version"))?.text()?;
        self.close(m)
    }

    fn tls(&mut self) -> Option<()> {
        let mut m = self.open()?;
        if self.field(&mut m, f!("protocol")) {
            self.version()?;
        }
        self.opt_text(&mut m, f!("cipher"))?;
        self.opt_text(&mut m, f!("server_name"))?;
        self.close(m)
    }

    fn upstream(&mut self) -> Option<()> {
        let mut m = self.open()?;
        self.opt_text(&mut m, f!("address"))?;
        self.need(&mut m, f!("attempts"))?.uint(u32::MAX.into())?;
        if self.field(&mut m, f!("status_code")) {
            self.uint(u16::MAX.into())?;
        }
        self.close(m)
    }

    fn timing(&mut self) -> Option<()> {
        let mut m = self.open()?;
        self.opt_f64(&mut m, f!("ttfb_ms"))?;
        self.need(&mut m, f!("total_ms"))?.f64()?;
        self.opt_f64(&mut m, f!("upstream_ms"))?;
        self.opt_f64(&mut m, f!("upstream_connect_ms"))?;
        self.close(m)
    }

    fn sentinel(&mut self) -> Option<()> {
        let mut m = self.open()?;
        self.opt_text(&mut m, f!("decision"))?;
        if self.field(&mut m, f!("risk_score")) {
            let v = self.r.f32()?;
            self.j.f32(v);
        }
        // Empty lists are left out, as the encoder leaves them out.
        let rules = f!("rules");
        if self.has(&mut m, rules) {
            let n = self.r.array()?;
            if n > 0 {
                self.j.key(rules.key).0.push(b'[');
                for _ in 0..n {
                    self.text()?;
                }
                self.j.end(b']');
            }
        }
        let agents = f!("agents");
        if self.has(&mut m, agents) {
            let n = self.r.array()?;
            if n > 0 {
                self.j.key(agents.key).0.push(b'[');
                for _ in 0..n {
                    let mut a = self.open()?;
                    self.need(&mut a, f!("name"))?.text()?;
                    self.need(&mut a, f!("verdict"))?.text()?;
                    self.need(&mut a, f!("duration_ms"))?.f64()?;
                    self.close(a)?;
                }
                self.j.end(b']');
            }
        }
        self.close(m)
    }

    fn sampling(&mut self) -> Option<()> {
        let mut m = self.open()?;
        self.need(&mut m, f!("rate"))?.f64()?;
        self.need(&mut m, f!("reason"))?.text()?;
        self.close(m)
    }
}

#[cfg(test)]
mod tests {
    use super::super::random::{damaged_frames, random_event, Rng};
    use super::super::*;
    use super::json_line;

    /// What the decoder and the writer give for `frame`: the line, or `None` for a frame the
    /// collector refuses.
    fn reference(frame: &[u8], host: Option<&str>) -> Option<Vec<u8>> {
        let mut ev = Event::decode(frame).ok()?;
        ev.collector = host.map(|h| CollectorInfo { host: h.into() });
        let mut line = Vec::new();
        ev.write_json_line(&mut line);
        Some(line)
    }

    /// Where the one pass answers, it answers as decode + encode do, and it appends to what the
    /// buffer held; where it does not, the buffer is as it was.
    fn agrees(frame: &[u8], host: Option<&str>) -> bool {
        let mut out = b"before\n".to_vec();
        let answered = json_line(frame, host, &mut out);
        if answered {
            let expected = reference(frame, host);
            assert_eq!(
                Some(String::from_utf8_lossy(&out[7..]).into_owned()),
                expected.map(|l| String::from_utf8_lossy(&l).into_owned()),
                "frame {frame:02x?}"
            );
        } else {
            assert_eq!(out, b"before\n", "a refused frame left output behind");
        }
        answered
    }

    #[test]
    fn every_event_in_the_filters_shape_takes_the_one_pass_and_matches_decode_and_encode() {
        let mut rng = Rng(11);
        for i in 0..3000 {
            let ev = random_event(&mut rng);
            let mut frame = Vec::new();
            ev.encode_into(&mut frame).unwrap();
            // serde writes the shape filters write: schema order, absent optional fields left
            // out (never nil), no empty header map, no `truncated: false`.
            let host = if i % 2 == 0 { Some("collector-1") } else { None };
            assert!(agrees(&frame, host), "event {ev:?}");
        }
    }

    #[test]
    fn long_text_with_escapes_and_non_ascii_anywhere_matches() {
        let mut rng = Rng(12);
        let base = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0.0.0";
        for len in 0..40usize {
            for c in ['"', '\\', '\n', '\u{1f}', '\u{7f}', 'é', '語'] {
                for at in [0, len / 2, len.saturating_sub(1)] {
                    let mut s: String = base.chars().cycle().take(len).collect();
                    if at <= s.len() && s.is_char_boundary(at) {
                        s.insert(at, c);
                    }
                    let mut ev = random_event(&mut rng);
                    ev.url.path = s.clone().into();
                    ev.http.request.header.0 = vec![(s.clone().into(), s.clone().into())];
                    let mut frame = Vec::new();
                    ev.encode_into(&mut frame).unwrap();
                    assert!(agrees(&frame, Some(&s)), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn damaged_frames_never_give_a_different_line() {
        let (answered, cases) = damaged_frames(&mut Rng(13), 20, |frame| agrees(frame, Some("h")));
        // A changed letter in a value keeps a frame valid: those must have been answered, and
        // alike; the rest were refused.
        assert!(answered > cases / 10, "{answered} of {cases} damaged frames answered");
    }

    #[test]
    fn frames_out_of_the_filters_shape_are_left_to_the_decoder() {
        let ev = random_event(&mut Rng(14));
        let answered = |ev: &Event<'_>| {
            let mut frame = Vec::new();
            ev.encode_into(&mut frame).unwrap();
            agrees(&frame, None)
        };
        assert!(answered(&ev));
        // Fields the collector adds: the decoder reads those (through serde).
        let mut enriched = ev.clone();
        enriched.collector = Some(CollectorInfo { host: "h".into() });
        assert!(!answered(&enriched));
        enriched.collector = None;
        enriched.redaction = Some(Redaction { fields: vec!["url.query".into()] });
        assert!(!answered(&enriched));

        // Reordered fields, an unknown field, a nil for an optional one: decodable, not the
        // filter's shape.
        #[derive(serde::Serialize)]
        struct Reordered<'a> {
            event: &'a EventInfo<'a>,
            schema_version: &'a str,
            http: &'a Http<'a>,
            url: &'a Url<'a>,
            client: &'a Client<'a>,
            timing: &'a Timing,
            sampling: &'a Sampling<'a>,
            filter: &'a FilterInfo<'a>,
            newer: Option<u8>,
        }
        let write = |r: &Reordered<'_>| {
            let mut frame = Vec::new();
            serde::Serialize::serialize(r, &mut rmp_serde::Serializer::new(&mut frame).with_struct_map()).unwrap();
            frame
        };
        let reordered = Reordered {
            event: &ev.event,
            schema_version: "1.1",
            http: &ev.http,
            url: &ev.url,
            client: &ev.client,
            timing: &ev.timing,
            sampling: &ev.sampling,
            filter: &ev.filter,
            newer: None,
        };
        let frame = write(&reordered);
        assert!(Event::decode(&frame).is_ok());
        assert!(!agrees(&frame, None));
    }

    #[test]
    fn garbage_is_refused() {
        for frame in [&b""[..], b"\x92\x01", &[0xc1; 16], b"\x80", b"\x81\xa3zzz\xc0"] {
            assert!(!agrees(frame, Some("h")));
        }
    }

    /// Writes the fuzzers' seed corpora (`fuzz/seeds/`): event frames in the filters' shape,
    /// some damaged, for `event_transcode`, and streams of them after the hello for `frames`.
    /// Run by `make fuzz`; ignored otherwise.
    #[test]
    #[ignore]
    fn fuzz_seeds() {
        use crate::frame::{self, FrameKind};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        let (events, streams) = (root.join("event_transcode"), root.join("frames"));
        std::fs::create_dir_all(&events).unwrap();
        std::fs::create_dir_all(&streams).unwrap();
        let mut rng = Rng(21);
        let mut stream = frame::HELLO.to_vec();
        for i in 0..300 {
            let ev = if i % 5 == 4 { super::super::random::random_enriched_event(&mut rng) } else { random_event(&mut rng) };
            let mut f = Vec::new();
            ev.encode_into(&mut f).unwrap();
            std::fs::write(events.join(format!("event-{i:03}")), &f).unwrap();
            frame::write_frame(&mut stream, FrameKind::Event, &f);
            if i % 20 == 19 {
                std::fs::write(streams.join(format!("stream-{i:03}")), &stream).unwrap();
                stream = frame::HELLO.to_vec();
            }
        }
        let stats = crate::stats::HostStats { proxy: "seed".into(), ..Default::default() };
        let mut s = frame::HELLO.to_vec();
        frame::write_frame(&mut s, FrameKind::Stats, &stats.encode());
        std::fs::write(streams.join("stats"), &s).unwrap();
    }
}
