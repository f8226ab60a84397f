//! Turns one exchange into one event: sampling, header allowlist and masking, body caps, encoding.

use crate::Exchange;
use sentinel_wire::event::*;
use sentinel_wire::head::{Entry, HeadReader, Tag};
use sentinel_wire::sampling;
use std::borrow::Cow;

/// A set of lower-case header names, bucketed by length so a lookup is one or two `memcmp`s
/// instead of a case-insensitive compare against every entry.
#[derive(Debug, Clone, Default)]
pub struct NameSet {
    by_len: Vec<Vec<Box<[u8]>>>,
}

impl NameSet {
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> NameSet {
        let mut set = NameSet::default();
        for n in names {
            let n = n.as_ref().to_ascii_lowercase().into_bytes();
            if set.by_len.len() <= n.len() {
                set.by_len.resize(n.len() + 1, Vec::new());
            }
            if !set.by_len[n.len()].iter().any(|x| **x == *n) {
                set.by_len[n.len()].push(n.into_boxed_slice());
            }
        }
        set
    }

    /// True when `name` is in the set, whatever its case.
    pub fn contains(&self, name: &[u8]) -> bool {
        let Some(bucket) = self.by_len.get(name.len()) else { return false };
        if name.iter().any(u8::is_ascii_uppercase) {
            bucket.iter().any(|x| x.eq_ignore_ascii_case(name))
        } else {
            bucket.iter().any(|x| **x == *name)
        }
    }
}

/// The filter's settings, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    allow: NameSet,
    masked: NameSet,
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
            allow: NameSet::new(DEFAULT_ALLOWLIST),
            masked: NameSet::new(DEFAULT_MASKED),
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
        if !allow.is_empty() {
            s.allow = NameSet::new(&allow);
        }
        s.masked = NameSet::new(DEFAULT_MASKED.iter().map(|m| m.to_string()).chain(masked));
        s.rate = rate;
        s.keep_server_errors = keep_server_errors;
        s.keep_client_errors = keep_client_errors;
        s.body_cap = body_cap as usize;
        Ok(s)
    }
}

/// Shapes exchanges into encoded events, reusing its buffer between calls.
pub struct Shaper {
    settings: Settings,
    buf: Vec<u8>,
}

/// Bytes as text, borrowed when valid UTF-8 (the common case: `from_utf8` is much cheaper than
/// the chunked walk of `from_utf8_lossy`), replacement characters otherwise.
fn text(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `Bearer abc` → `Bearer ***`; a value without a scheme → `***`.
fn mask(value: &[u8]) -> Cow<'static, str> {
    let v = String::from_utf8_lossy(value);
    match v.trim_start().split_once(' ') {
        Some((scheme, _)) if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Cow::Owned(format!("{scheme} ***"))
        }
        _ => Cow::Borrowed("***"),
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

fn push_header<'a>(headers: &mut Headers<'a>, name: &'a [u8], value: Cow<'a, str>) {
    if let Some((_, v)) = headers.0.iter_mut().find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name)) {
        let joined = format!("{v}, {value}");
        *v = Cow::Owned(joined);
    } else {
        let name = if name.iter().any(u8::is_ascii_uppercase) {
            Cow::Owned(String::from_utf8_lossy(name).to_ascii_lowercase())
        } else {
            text(name)
        };
        headers.0.push((name, value));
    }
}

impl Shaper {
    pub fn new(settings: Settings) -> Self {
        Shaper { settings, buf: Vec::with_capacity(1024) }
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

    fn body<'a>(&self, size: u64, captured: &'a [u8]) -> Body<'a> {
        if self.settings.body_cap == 0 || captured.is_empty() {
            return Body { size, content: None, truncated: false };
        }
        let n = captured.len().min(self.settings.body_cap);
        Body { size, content: Some(text(&captured[..n])), truncated: (n as u64) < size }
    }

    /// Shapes one exchange; returns the encoded event, or `None` when sampled out.
    pub fn shape(&mut self, ex: &Exchange, version: &str) -> Option<&[u8]> {
        let head = HeadReader::new(&ex.head);
        // The host writes the request id first; find it without walking the whole head.
        let id: &[u8] = match HeadReader::new(&ex.head).next() {
            Some(Ok(Entry::Field(Tag::RequestId, v))) => v,
            _ => HeadReader::new(&ex.head)
                .filter_map(Result::ok)
                .find_map(|e| match e {
                    Entry::Field(Tag::RequestId, v) => Some(v),
                    _ => None,
                })
                .unwrap_or(b""),
        };
        let (weight, reason) = self.sample(id, ex.status)?;

        let mut ev = Event {
            schema_version: SCHEMA_VERSION.into(),
            event: EventInfo { id: text(id), start_ns: ex.start_ns, end_ns: ex.end_ns },
            sampling: Sampling { rate: weight, reason: reason.into() },
            filter: FilterInfo { version: version.into() },
            timing: Timing {
                ttfb_ms: ex.ttfb_us.map(ms),
                total_ms: ex.end_ns.saturating_sub(ex.start_ns) as f64 / 1e6,
                upstream_ms: ex.upstream_us.map(ms),
                upstream_connect_ms: ex.upstream_connect_us.map(ms),
            },
            ..Default::default()
        };
        ev.http.request.body = self.body(ex.request_body_size, &ex.request_body);
        ev.http.response.status_code = ex.status;
        ev.http.response.body = self.body(ex.response_body_size, &ex.response_body);
        ev.client.port = ex.client_port;
        let mut tls = Tls::default();
        let mut upstream = Upstream { attempts: ex.upstream_attempts, status_code: ex.upstream_status, address: None };
        let mut sentinel = Sentinel { risk_score: ex.risk_score, ..Default::default() };

        for entry in head {
            let Ok(entry) = entry else { break };
            match entry {
                Entry::Field(tag, v) => match tag {
                    Tag::Method => ev.http.request.method = text(v),
                    Tag::Scheme => ev.url.scheme = Some(text(v)),
                    Tag::Authority => ev.url.domain = Some(text(host_of(v))),
                    Tag::Path => ev.url.path = text(v),
                    Tag::Query => ev.url.query = Some(text(v)),
                    Tag::Route => ev.http.route = Some(text(v)),
                    Tag::Protocol => ev.network = Some(Network { protocol: Protocol { version: text(v) } }),
                    Tag::ClientAddress => ev.client.address = text(v),
                    Tag::TlsProtocol => tls.protocol = Some(Protocol { version: text(v) }),
                    Tag::TlsCipher => tls.cipher = Some(text(v)),
                    Tag::TlsServerName => tls.server_name = Some(text(v)),
                    Tag::UpstreamAddress => upstream.address = Some(text(v)),
                    Tag::Decision => sentinel.decision = Some(text(v)),
                    Tag::Rule => sentinel.rules.push(text(v)),
                    _ => {}
                },
                Entry::Header { response, name, value } => {
                    if !self.settings.allow.contains(name) {
                        continue;
                    }
                    let value = if self.settings.masked.contains(name) { mask(value) } else { text(value) };
                    let headers = if response { &mut ev.http.response.header } else { &mut ev.http.request.header };
                    push_header(headers, name, value);
                }
                Entry::Agent { name, verdict, duration_us } => sentinel.agents.push(AgentVerdict {
                    name: text(name),
                    verdict: text(verdict),
                    duration_ms: ms(duration_us.into()),
                }),
            }
        }
        if tls != Tls::default() {
            ev.tls = Some(tls);
        }
        if upstream.attempts > 0 || upstream.address.is_some() {
            ev.upstream = Some(upstream);
        }
        if sentinel != Sentinel::default() {
            ev.sentinel = Some(sentinel);
        }

        self.buf.clear();
        ev.encode_into(&mut self.buf).ok()?;
        Some(&self.buf)
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
        Some(serde_json::to_value(Event::decode(&bytes).unwrap()).unwrap())
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
    fn name_set_ignores_case() {
        let s = NameSet::new(["Authorization", "host"]);
        assert!(s.contains(b"authorization") && s.contains(b"AUTHORIZATION") && s.contains(b"Host"));
        assert!(!s.contains(b"hos") && !s.contains(b"hostx") && !s.contains(b""));
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
    }
}
