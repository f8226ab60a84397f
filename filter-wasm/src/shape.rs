//! Turns one exchange into one event: sampling, header allowlist and masking, body caps, and
//! the MessagePack map of the schema, written in one pass from the packed head.

use crate::encode::Writer;
use crate::headers::{HeaderTable, Listed};
use crate::key;
use crate::Exchange;
use sentinel_wire::event::SCHEMA_VERSION;
use sentinel_wire::head::{Entry, HeadReader, Tag};
use sentinel_wire::sampling;

/// The filter's settings, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    headers: HeaderTable,
    rate: f64,
    keep_server_errors: bool,
    keep_client_errors: bool,
    body_cap: usize,
}

/// Headers kept when the host gives no allowlist.
pub const DEFAULT_ALLOWLIST: &[&str] = &[
    "host",
    "user-agent",
    "referer",
    "content-type",
    "content-length",
    "accept",
    "accept-language",
    "x-forwarded-for",
    "x-request-id",
    "authorization",
    "location",
];

/// Headers whose values are masked when the host gives no list.
pub const DEFAULT_MASKED: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"];

impl Default for Settings {
    fn default() -> Self {
        Settings {
            headers: HeaderTable::new(DEFAULT_ALLOWLIST, DEFAULT_MASKED),
            rate: 1.0,
            keep_server_errors: true,
            keep_client_errors: false,
            body_cap: 0,
        }
    }
}

impl Settings {
    /// Validates the host's config. Empty lists mean the defaults; masked names always include the
    /// default credential headers (a config cannot unmask them by omission).
    pub fn from_config(
        allow: Vec<String>,
        masked: Vec<String>,
        rate: f64,
        keep_server_errors: bool,
        keep_client_errors: bool,
        body_cap: u32,
    ) -> Result<Settings, String> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("sample-rate must be between 0 and 1, got {rate}"));
        }
        let mut s = Settings::default();
        let masked = DEFAULT_MASKED.iter().map(|m| m.to_string()).chain(masked);
        s.headers = if allow.is_empty() { HeaderTable::new(DEFAULT_ALLOWLIST, masked) } else { HeaderTable::new(&allow, masked) };
        s.rate = rate;
        s.keep_server_errors = keep_server_errors;
        s.keep_client_errors = keep_client_errors;
        s.body_cap = body_cap as usize;
        Ok(s)
    }
}

/// Shapes exchanges into encoded events, reusing its buffers between calls.
pub struct Shaper {
    settings: Settings,
    buf: Vec<u8>,
    kept: Vec<Kept>,
    /// Per listed name and direction: the call it was last kept in and where, so a repeated
    /// header is joined without searching (`generation` tells this call's entries from stale ones).
    seen: Vec<(u32, u32)>,
    generation: u32,
}

/// A byte range of the packed head (kept as offsets so the buffer can be reused across calls).
#[derive(Debug, Clone, Copy)]
struct Span(u32, u32);

impl Span {
    fn of(head: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - head.as_ptr() as usize;
        Span(start as u32, part.len() as u32)
    }

    fn get(self, head: &[u8]) -> &[u8] {
        &head[self.0 as usize..(self.0 + self.1) as usize]
    }
}

/// How a kept header's value is written.
#[derive(Debug)]
enum Value {
    Plain(Span),
    /// Masked: the auth scheme (if any) followed by ` ***`, else `***`.
    Masked(Option<Span>),
    /// A repeated header: the values joined with `, `.
    Joined(String),
}

/// One header that passed the allowlist.
#[derive(Debug)]
struct Kept {
    response: bool,
    /// Index of the name in the header table, which holds it encoded and lower case.
    name: usize,
    value: Value,
}

/// The HTTP authentication schemes IANA registers (matched in any case, as RFC 9110 says).
const AUTH_SCHEMES: [&[u8]; 14] = [
    b"Basic", b"Bearer", b"Concealed", b"Digest", b"DPoP", b"GNAP", b"HOBA", b"Mutual", b"Negotiate", b"OAuth", b"PrivateToken", b"SCRAM-SHA-1",
    b"SCRAM-SHA-256", b"vapid",
];

/// The registered authentication scheme a credential value starts with (`Bearer` in
/// `Bearer abc`), if it has one and something follows it. Any other first word is part of the
/// secret (`hunter2 topsecret`) and is masked with the rest.
fn scheme(value: &[u8]) -> Option<&[u8]> {
    let start = value.iter().position(|b| *b != b' ')?;
    let v = &value[start..];
    let end = v.iter().position(|b| *b == b' ')?;
    let s = &v[..end];
    AUTH_SCHEMES.iter().any(|r| r.eq_ignore_ascii_case(s)).then_some(s)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Fields of the packed head the event needs, borrowed from it.
#[derive(Default)]
struct Fields<'a> {
    method: &'a [u8],
    scheme: Option<&'a [u8]>,
    authority: Option<&'a [u8]>,
    path: &'a [u8],
    query: Option<&'a [u8]>,
    route: Option<&'a [u8]>,
    protocol: Option<&'a [u8]>,
    client_address: &'a [u8],
    tls_protocol: Option<&'a [u8]>,
    tls_cipher: Option<&'a [u8]>,
    tls_server_name: Option<&'a [u8]>,
    upstream_address: Option<&'a [u8]>,
    decision: Option<&'a [u8]>,
    rules: Vec<&'a [u8]>,
    agents: Vec<(&'a [u8], &'a [u8], u32)>,
}

impl Shaper {
    pub fn new(settings: Settings) -> Self {
        let seen = vec![(0, 0); settings.headers.len() * 2];
        Shaper { settings, buf: Vec::new(), kept: Vec::with_capacity(16), seen, generation: 0 }
    }

    /// The sampling decision: `None` to leave the request out, else (weight, reason).
    fn sample(&self, id: &[u8], status: u16) -> Option<(f64, &'static str)> {
        let s = &self.settings;
        if s.rate >= 1.0 {
            Some((1.0, sampling::reason::ALL))
        } else if (status >= 500 && s.keep_server_errors) || ((400..500).contains(&status) && s.keep_client_errors) {
            Some((1.0, sampling::reason::ERROR))
        } else if sampling::keep(id, s.rate) {
            Some((1.0 / s.rate, sampling::reason::HEAD_RATE))
        } else {
            None
        }
    }

    /// Records an allowlisted header, masking it if listed and joining repeats.
    fn keep_header(&mut self, head: &[u8], response: bool, listed: Listed, value: &[u8]) {
        let new = match (listed.masked, listed.keeps_scheme) {
            (false, _) => Value::Plain(Span::of(head, value)),
            (true, true) => Value::Masked(scheme(value).map(|s| Span::of(head, s))),
            (true, false) => Value::Masked(None),
        };
        let seen = &mut self.seen[listed.index * 2 + usize::from(response)];
        if seen.0 != self.generation {
            *seen = (self.generation, self.kept.len() as u32);
            self.kept.push(Kept { response, name: listed.index, value: new });
            return;
        }
        let k = &mut self.kept[seen.1 as usize];
        let mut joined = String::new();
        for v in [&k.value, &new] {
            if !joined.is_empty() {
                joined.push_str(", ");
            }
            match v {
                Value::Plain(s) => joined.push_str(&String::from_utf8_lossy(s.get(head))),
                Value::Masked(Some(s)) => {
                    joined.push_str(&String::from_utf8_lossy(s.get(head)));
                    joined.push_str(" ***");
                }
                Value::Masked(None) => joined.push_str("***"),
                Value::Joined(j) => joined.push_str(j),
            }
        }
        k.value = Value::Joined(joined);
    }

    /// Shapes one exchange; returns the encoded event, or `None` when sampled out.
    pub fn shape(&mut self, ex: &Exchange, version: &str) -> Option<&[u8]> {
        let head: &[u8] = &ex.head;
        // The host writes the request id first; find it without walking the whole head.
        let id: &[u8] = match HeadReader::new(head).next() {
            Some(Ok(Entry::Field(Tag::RequestId, v))) => v,
            _ => HeadReader::new(head)
                .filter_map(Result::ok)
                .find_map(|e| match e {
                    Entry::Field(Tag::RequestId, v) => Some(v),
                    _ => None,
                })
                .unwrap_or(b""),
        };
        let (weight, reason) = self.sample(id, ex.status)?;

        let mut f = Fields::default();
        self.kept.clear();
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.seen.fill((0, 0));
            self.generation = 1;
        }
        for entry in HeadReader::new(head) {
            let Ok(entry) = entry else { break };
            match entry {
                Entry::Field(tag, v) => match tag {
                    Tag::Method => f.method = v,
                    Tag::Scheme => f.scheme = Some(v),
                    Tag::Authority => f.authority = Some(host_of(v)),
                    Tag::Path => f.path = v,
                    Tag::Query => f.query = Some(v),
                    Tag::Route => f.route = Some(v),
                    Tag::Protocol => f.protocol = Some(v),
                    Tag::ClientAddress => f.client_address = v,
                    Tag::TlsProtocol => f.tls_protocol = Some(v),
                    Tag::TlsCipher => f.tls_cipher = Some(v),
                    Tag::TlsServerName => f.tls_server_name = Some(v),
                    Tag::UpstreamAddress => f.upstream_address = Some(v),
                    Tag::Decision => f.decision = Some(v),
                    Tag::Rule => f.rules.push(v),
                    _ => {}
                },
                Entry::Header { response, name, value } => {
                    if let Some(listed) = self.settings.headers.get(name) {
                        self.keep_header(head, response, listed, value);
                    }
                }
                Entry::Agent { name, verdict, duration_us } => f.agents.push((name, verdict, duration_us)),
            }
        }

        let body_cap = self.settings.body_cap;
        let event = Shaped { ex, head, id, fields: f, kept: &self.kept, headers: &self.settings.headers, body_cap, weight, reason, version };
        let mut size = event.size_bound();
        loop {
            if self.buf.len() < size {
                self.buf.resize(size, 0);
            }
            let mut w = Writer::new(&mut self.buf);
            event.write(&mut w);
            if !w.overflowed() {
                let n = w.len();
                return Some(&self.buf[..n]);
            }
            // Only text with invalid UTF-8 (replaced by U+FFFD, up to 3 bytes per input byte)
            // can outgrow the bound.
            size = size.saturating_mul(3);
        }
    }
}

/// Everything one event is written from, gathered before writing so its size can be bounded.
struct Shaped<'a> {
    ex: &'a Exchange,
    head: &'a [u8],
    id: &'a [u8],
    fields: Fields<'a>,
    kept: &'a [Kept],
    headers: &'a HeaderTable,
    body_cap: usize,
    weight: f64,
    reason: &'static str,
    version: &'a str,
}

impl Shaped<'_> {
    /// Bytes enough for the event unless text needs UTF-8 replacement: every string from the
    /// head is shorter than its entry there (whose 5-9 framing bytes cover the marker), plus
    /// keys and scalars, masks, joined values, captured bodies and the version.
    fn size_bound(&self) -> usize {
        let joined: usize = self
            .kept
            .iter()
            .map(|k| match &k.value {
                Value::Joined(j) => j.len() + 5,
                _ => 0,
            })
            .sum();
        let body = |b: &[u8]| b.len().min(self.body_cap) + 5;
        1024 + self.head.len()
            + 16 * self.kept.len()
            + joined
            + body(&self.ex.request_body)
            + body(&self.ex.response_body)
            + self.version.len()
            + 64 * (self.fields.rules.len() + self.fields.agents.len())
    }

    fn write(&self, w: &mut Writer) {
        let Shaped { ex, head, id, ref fields, kept, headers, body_cap, weight, reason, version } = *self;
        let f = fields;
        let has_tls = f.tls_protocol.is_some() || f.tls_cipher.is_some() || f.tls_server_name.is_some();
        let has_upstream = ex.upstream_attempts > 0 || f.upstream_address.is_some();
        let has_sentinel = f.decision.is_some() || ex.risk_score.is_some() || !f.rules.is_empty() || !f.agents.is_empty();
        let n = |b: bool| u32::from(b);
        w.map(8 + n(f.protocol.is_some()) + n(has_tls) + n(has_upstream) + n(has_sentinel));
        w.key(key!("schema_version")).str(SCHEMA_VERSION.as_bytes());
        w.key(key!("event")).map(3).key(key!("id")).str(id).key(key!("start_ns")).uint(ex.start_ns).key(key!("end_ns")).uint(ex.end_ns);

        let req_headers = kept.iter().filter(|k| !k.response).count() as u32;
        let resp_headers = kept.len() as u32 - req_headers;
        w.key(key!("http")).map(2 + n(f.route.is_some()));
        w.key(key!("request")).map(2 + n(req_headers > 0)).key(key!("method")).str(f.method);
        write_headers(w, head, headers, kept, false, req_headers);
        write_body(w, body_cap, ex.request_body_size, &ex.request_body);
        w.key(key!("response")).map(2 + n(resp_headers > 0)).key(key!("status_code")).uint(ex.status.into());
        write_headers(w, head, headers, kept, true, resp_headers);
        write_body(w, body_cap, ex.response_body_size, &ex.response_body);
        if let Some(r) = f.route {
            w.key(key!("route")).str(r);
        }

        w.key(key!("url")).map(1 + n(f.scheme.is_some()) + n(f.authority.is_some()) + n(f.query.is_some()));
        if let Some(v) = f.scheme {
            w.key(key!("scheme")).str(v);
        }
        if let Some(v) = f.authority {
            w.key(key!("domain")).str(v);
        }
        w.key(key!("path")).str(f.path);
        if let Some(v) = f.query {
            w.key(key!("query")).str(v);
        }
        if let Some(v) = f.protocol {
            w.key(key!("network")).map(1).key(key!("protocol")).map(1).key(key!("version")).str(v);
        }
        w.key(key!("client")).map(2).key(key!("address")).str(f.client_address).key(key!("port")).uint(ex.client_port.into());
        if has_tls {
            w.key(key!("tls")).map(n(f.tls_protocol.is_some()) + n(f.tls_cipher.is_some()) + n(f.tls_server_name.is_some()));
            if let Some(v) = f.tls_protocol {
                w.key(key!("protocol")).map(1).key(key!("version")).str(v);
            }
            if let Some(v) = f.tls_cipher {
                w.key(key!("cipher")).str(v);
            }
            if let Some(v) = f.tls_server_name {
                w.key(key!("server_name")).str(v);
            }
        }
        if has_upstream {
            w.key(key!("upstream")).map(1 + n(f.upstream_address.is_some()) + n(ex.upstream_status.is_some()));
            if let Some(v) = f.upstream_address {
                w.key(key!("address")).str(v);
            }
            w.key(key!("attempts")).uint(ex.upstream_attempts.into());
            if let Some(v) = ex.upstream_status {
                w.key(key!("status_code")).uint(v.into());
            }
        }
        w.key(key!("timing")).map(1 + n(ex.ttfb_us.is_some()) + n(ex.upstream_us.is_some()) + n(ex.upstream_connect_us.is_some()));
        if let Some(v) = ex.ttfb_us {
            w.key(key!("ttfb_ms")).f64(ms(v));
        }
        w.key(key!("total_ms")).f64(ex.end_ns.saturating_sub(ex.start_ns) as f64 / 1e6);
        if let Some(v) = ex.upstream_us {
            w.key(key!("upstream_ms")).f64(ms(v));
        }
        if let Some(v) = ex.upstream_connect_us {
            w.key(key!("upstream_connect_ms")).f64(ms(v));
        }
        if has_sentinel {
            w.key(key!("sentinel")).map(n(f.decision.is_some()) + n(ex.risk_score.is_some()) + n(!f.rules.is_empty()) + n(!f.agents.is_empty()));
            if let Some(v) = f.decision {
                w.key(key!("decision")).str(v);
            }
            if let Some(v) = ex.risk_score {
                w.key(key!("risk_score")).f32(v);
            }
            if !f.rules.is_empty() {
                w.key(key!("rules")).array(f.rules.len() as u32);
                for r in &f.rules {
                    w.str(r);
                }
            }
            if !f.agents.is_empty() {
                w.key(key!("agents")).array(f.agents.len() as u32);
                for (name, verdict, us) in &f.agents {
                    w.map(3).key(key!("name")).str(name).key(key!("verdict")).str(verdict).key(key!("duration_ms")).f64(ms((*us).into()));
                }
            }
        }
        w.key(key!("sampling")).map(2).key(key!("rate")).f64(weight).key(key!("reason")).str(reason.as_bytes());
        w.key(key!("filter")).map(1).key(key!("version")).str(version.as_bytes());
    }
}

fn write_headers(w: &mut Writer, head: &[u8], table: &HeaderTable, kept: &[Kept], response: bool, count: u32) {
    if count == 0 {
        return;
    }
    w.key(key!("header")).map(count);
    for k in kept.iter().filter(|k| k.response == response) {
        w.encoded(table.encoded(k.name));
        match &k.value {
            Value::Plain(s) => w.str(s.get(head)),
            Value::Masked(Some(s)) => w.str_parts(&[s.get(head), b" ***"]),
            Value::Masked(None) => w.str(b"***"),
            Value::Joined(j) => w.str(j.as_bytes()),
        };
    }
}

/// `{size}`, plus the captured prefix and a truncation flag when body capture is on.
fn write_body(w: &mut Writer, cap: usize, size: u64, captured: &[u8]) {
    if cap == 0 || captured.is_empty() {
        w.key(key!("body")).map(1).key(key!("size")).uint(size);
        return;
    }
    let n = captured.len().min(cap);
    let truncated = (n as u64) < size;
    w.key(key!("body")).map(2 + u32::from(truncated)).key(key!("size")).uint(size).key(key!("content")).str(&captured[..n]);
    if truncated {
        w.key(key!("truncated")).bool(true);
    }
}

/// The host part of an authority: `example.com:8080` → `example.com`, `[::1]:80` → `::1`.
fn host_of(authority: &[u8]) -> &[u8] {
    let a = match authority.iter().rposition(|&b| b == b'@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    if a.first() == Some(&b'[') {
        return match a.iter().position(|&b| b == b']') {
            Some(end) => &a[1..end],
            None => a,
        };
    }
    match a.iter().rposition(|&b| b == b':') {
        Some(i) if a[i + 1..].iter().all(u8::is_ascii_digit) => &a[..i],
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_wire::head::HeadWriter;

    fn exchange(id: &str, status: u16, headers: &[(&str, &str)]) -> Exchange {
        let mut w = HeadWriter::new();
        w.field(Tag::RequestId, id.as_bytes())
            .field(Tag::Method, b"POST")
            .field(Tag::Path, b"/login")
            .field(Tag::Query, b"next=/")
            .field(Tag::ClientAddress, b"198.51.100.4");
        for (n, v) in headers {
            w.header(false, n.as_bytes(), v.as_bytes());
        }
        w.header(true, b"set-cookie", b"sid=SECRET-SESSION");
        w.header(true, b"content-type", b"text/html");
        Exchange {
            head: w.as_bytes().to_vec(),
            start_ns: 1_000,
            end_ns: 2_501_000,
            status,
            client_port: 40000,
            request_body_size: 11,
            response_body_size: 0,
            ttfb_us: Some(1500),
            upstream_us: Some(2000),
            upstream_connect_us: None,
            upstream_attempts: 1,
            upstream_status: Some(status),
            risk_score: None,
            request_body: b"hello world".to_vec(),
            response_body: vec![],
        }
    }

    fn shape(s: Settings, ex: &Exchange) -> Option<serde_json::Value> {
        let mut sh = Shaper::new(s);
        let bytes = sh.shape(ex, "t1")?.to_vec();
        Some(serde_json::to_value(sentinel_wire::Event::decode(&bytes).unwrap()).unwrap())
    }

    #[test]
    fn keeps_allowlisted_headers_and_masks_credentials() {
        let ex = exchange(
            "r1",
            200,
            &[
                ("Host", "shop.example"),
                ("Authorization", "Bearer eyJhbGciOi.SECRET"),
                ("Cookie", "sid=SECRET-SESSION"),
                ("X-Internal", "drop-me"),
                ("Accept", "text/html"),
                ("Accept", "application/json"),
            ],
        );
        let v = shape(Settings::default(), &ex).unwrap();
        let h = &v["http"]["request"]["header"];
        assert_eq!(h["host"], "shop.example");
        assert_eq!(h["authorization"], "Bearer ***");
        assert_eq!(h["accept"], "text/html, application/json");
        assert!(h.get("x-internal").is_none() && h.get("cookie").is_none());
        assert_eq!(v["http"]["request"]["method"], "POST");
        assert_eq!(v["url"]["path"], "/login");
        assert_eq!(v["client"]["address"], "198.51.100.4");
        assert_eq!(v["timing"]["ttfb_ms"], 1.5);
        assert_eq!(v["timing"]["total_ms"], 2.5);
        assert_eq!(v["filter"]["version"], "t1");
        assert!(!v.to_string().contains("SECRET"));
    }

    #[test]
    fn only_a_registered_scheme_of_an_authorization_header_survives_masking() {
        let s = Settings::from_config(
            vec!["authorization".into(), "proxy-authorization".into(), "x-api-key".into()],
            vec!["authorization".into(), "proxy-authorization".into(), "x-api-key".into()],
            1.0,
            true,
            false,
            0,
        )
        .unwrap();
        for (header, value, want) in [
            ("authorization", "Bearer SECRETabc", "Bearer ***"),
            ("authorization", "bAsIc U0VDUkVUOnB3", "bAsIc ***"),
            ("authorization", "Digest username=\"SECRET\", nonce=\"x\"", "Digest ***"),
            ("authorization", "SCRAM-SHA-256 SECRET", "SCRAM-SHA-256 ***"),
            ("proxy-authorization", "Negotiate SECRETtok", "Negotiate ***"),
            ("authorization", "hunter2 SECRET", "***"),
            ("authorization", "Token SECRET", "***"),
            ("authorization", "SECRET", "***"),
            ("authorization", "  Bearer", "***"),
            ("x-api-key", "live key SECRET", "***"),
            ("x-api-key", "Bearer SECRET", "***"),
        ] {
            let ex = exchange("r1", 200, &[(header, value)]);
            let v = shape(s.clone(), &ex).unwrap();
            assert_eq!(v["http"]["request"]["header"][header], want, "{header}: {value}");
            assert!(!v.to_string().contains("SECRET") && !v.to_string().contains("hunter2"), "{value}");
        }
    }

    #[test]
    fn masked_headers_stay_masked_even_when_allowlisted() {
        let s = Settings::from_config(vec!["cookie".into(), "x-token".into()], vec!["X-Token".into()], 1.0, true, false, 0)
            .unwrap();
        let ex = exchange("r1", 200, &[("cookie", "a=SECRET"), ("x-token", "SECRET")]);
        let v = shape(s, &ex).unwrap();
        assert_eq!(v["http"]["request"]["header"]["cookie"], "***");
        assert_eq!(v["http"]["request"]["header"]["x-token"], "***");
    }

    #[test]
    fn head_sampling_keeps_errors_and_weights_the_rest() {
        let s = Settings::from_config(vec![], vec![], 0.2, true, false, 0).unwrap();
        let mut kept = 0;
        for i in 0..10_000 {
            let id = format!("id-{i}");
            if let Some(v) = shape(s.clone(), &exchange(&id, 200, &[])) {
                kept += 1;
                assert_eq!(v["sampling"]["rate"], 5.0);
                assert_eq!(v["sampling"]["reason"], "head_rate");
            }
            let v = shape(s.clone(), &exchange(&id, 503, &[])).expect("5xx always kept");
            assert_eq!(v["sampling"]["reason"], "error");
        }
        assert!((1800..2200).contains(&kept), "kept {kept}");
    }

    #[test]
    fn bodies_are_capped_and_flagged() {
        let s = Settings::from_config(vec![], vec![], 1.0, true, false, 5).unwrap();
        let v = shape(s, &exchange("r", 200, &[])).unwrap();
        assert_eq!(v["http"]["request"]["body"]["content"], "hello");
        assert_eq!(v["http"]["request"]["body"]["truncated"], true);
        let v = shape(Settings::default(), &exchange("r", 200, &[])).unwrap();
        assert!(v["http"]["request"]["body"].get("content").is_none());
        assert_eq!(v["http"]["request"]["body"]["size"], 11);
    }

    #[test]
    fn every_schema_field_decodes_into_the_event_type() {
        use sentinel_wire::event::*;
        let mut w = HeadWriter::new();
        w.field(Tag::RequestId, b"id-1")
            .field(Tag::Method, b"GET")
            .field(Tag::Scheme, b"https")
            .field(Tag::Authority, b"Shop.example:8443")
            .field(Tag::Path, b"/p")
            .field(Tag::Route, b"/p/{id}")
            .field(Tag::Protocol, b"2")
            .field(Tag::ClientAddress, b"2001:db8::7")
            .field(Tag::TlsProtocol, b"1.3")
            .field(Tag::TlsCipher, b"TLS_AES_128_GCM_SHA256")
            .field(Tag::TlsServerName, b"shop.example")
            .field(Tag::UpstreamAddress, b"10.0.0.1:80")
            .field(Tag::Decision, b"challenge")
            .field(Tag::Rule, b"942100")
            .field(Tag::Rule, b"913100")
            .agent(b"waf", b"challenge", 1250)
            .header(false, b"Authorization", b"Bearer A")
            .header(false, b"authorization", b"token-without-scheme")
            .header(false, b"User-Agent", b"ua\xff");
        let mut ex = exchange("x", 200, &[]);
        ex.head = w.as_bytes().to_vec();
        ex.risk_score = Some(0.75);
        ex.upstream_connect_us = Some(250);
        let mut sh = Shaper::new(Settings::default());
        let bytes = sh.shape(&ex, "v9").unwrap().to_vec();
        let ev = Event::decode_reference(&bytes).expect("the Event type reads what the filter writes");
        assert_eq!(Event::decode_fast(&bytes).as_ref(), Some(&ev), "the collector's fast reader takes it, and agrees");
        let (mut line, mut one_pass) = (Vec::new(), Vec::new());
        ev.write_json_line(&mut line);
        assert!(transcode::json_line(&bytes, None, &mut one_pass), "a forwarding collector's one pass takes it");
        assert_eq!(String::from_utf8_lossy(&one_pass), String::from_utf8_lossy(&line));
        assert_eq!(ev.event, EventInfo { id: "id-1".into(), start_ns: 1_000, end_ns: 2_501_000 });
        assert_eq!(ev.http.route.as_deref(), Some("/p/{id}"));
        assert_eq!(ev.http.request.header.get("authorization"), Some("Bearer ***, ***"));
        assert_eq!(ev.http.request.header.get("user-agent"), Some("ua\u{fffd}"));
        assert_eq!(ev.url.domain.as_deref(), Some("Shop.example"));
        assert_eq!(ev.url.query, None);
        assert_eq!(ev.network.unwrap().protocol.unwrap().version, "2");
        assert_eq!(ev.client, Client { address: "2001:db8::7".into(), port: 40000 });
        let tls = ev.tls.unwrap();
        assert_eq!(tls.protocol.unwrap().version, "1.3");
        assert_eq!(tls.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(tls.server_name.as_deref(), Some("shop.example"));
        assert_eq!(ev.upstream.unwrap(), Upstream { address: Some("10.0.0.1:80".into()), attempts: 1, status_code: Some(200) });
        assert_eq!(ev.timing, Timing { ttfb_ms: Some(1.5), total_ms: 2.5, upstream_ms: Some(2.0), upstream_connect_ms: Some(0.25) });
        let s = ev.sentinel.unwrap();
        assert_eq!(s.decision.as_deref(), Some("challenge"));
        assert_eq!(s.risk_score, Some(0.75));
        assert_eq!(s.rules, vec!["942100", "913100"]);
        assert_eq!(s.agents, vec![AgentVerdict { name: "waf".into(), verdict: "challenge".into(), duration_ms: 1.25 }]);
        assert_eq!(ev.sampling, Sampling { rate: 1.0, reason: "all".into() });
        assert_eq!(ev.filter.version, "v9");
        assert_eq!(ev.schema_version, SCHEMA_VERSION);
    }


    #[test]
    fn domain_drops_the_port() {
        assert_eq!(host_of(b"shop.example:8443"), b"shop.example");
        assert_eq!(host_of(b"[2001:db8::1]:80"), b"2001:db8::1");
        assert_eq!(host_of(b"shop.example"), b"shop.example");
        assert_eq!(host_of(b"user@h:1"), b"h");
    }

    #[test]
    fn bad_rate_is_refused() {
        assert!(Settings::from_config(vec![], vec![], 1.5, true, false, 0).is_err());
    }

    #[test]
    fn truncated_head_still_gives_an_event() {
        let mut ex = exchange("r", 200, &[("host", "h")]);
        ex.head.truncate(ex.head.len() - 3);
        let v = shape(Settings::default(), &ex).unwrap();
        assert_eq!(v["url"]["path"], "/login");
    }
}

#[cfg(test)]
mod native_cost {
    use super::*;
    use sentinel_wire::head::HeadWriter;

    /// Not an assertion: prints what shaping one 20-header request costs natively, to compare
    /// with the component's cost in the host benchmark. Run with `--ignored --nocapture`.
    #[test]
    #[ignore]
    fn print_native_shape_cost() {
        let mut w = HeadWriter::new();
        w.field(Tag::RequestId, b"0192f0c1d2e3f4a5b6c7d8e9f0a1b2c3").field(Tag::Method, b"POST").field(Tag::Path, b"/api/orders/1");
        for i in 0..20 {
            let name = ["host", "user-agent", "accept", "authorization", "x-forwarded-for"][i % 5];
            let name = if i < 5 { name.to_string() } else { format!("x-other-{i}") };
            w.header(false, name.as_bytes(), b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36");
        }
        let ex = Exchange {
            head: w.as_bytes().to_vec(),
            start_ns: 1,
            end_ns: 2,
            status: 200,
            client_port: 1,
            request_body_size: 0,
            response_body_size: 0,
            ttfb_us: Some(1),
            upstream_us: Some(1),
            upstream_connect_us: None,
            upstream_attempts: 1,
            upstream_status: Some(200),
            risk_score: None,
            request_body: vec![],
            response_body: vec![],
        };
        let mut sh = Shaper::new(Settings::default());
        let n = 200_000;
        let t = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            bytes += sh.shape(std::hint::black_box(&ex), "v").map(|b| b.len()).unwrap_or(0);
        }
        println!("native shape+encode: {:?} per request ({} bytes each)", t.elapsed() / n, bytes / n as usize);
        let encoded = sh.shape(&ex, "v").unwrap().to_vec();
        let ev = sentinel_wire::Event::decode(&encoded).unwrap();
        let mut buf = Vec::with_capacity(1024);
        let t = std::time::Instant::now();
        for _ in 0..n {
            buf.clear();
            std::hint::black_box(&ev).encode_into(&mut buf).unwrap();
        }
        println!("native encode alone: {:?} per event", t.elapsed() / n);
    }
}
