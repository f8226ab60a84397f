//! The redaction stage, the last before the sinks: nothing a sink sees (and nothing the
//! write-ahead log will store) carries the personal or secret data it finds. By field: the values
//! of deny-listed query parameters and headers. By content ([`detect`]): e-mail addresses, card
//! numbers, JWTs, bearer/basic credentials, cloud and SaaS keys, private keys, password fields,
//! US SSNs, IBANs and phone numbers in the URL path and query, header values, captured bodies and
//! the user agent, both as written and as decoded ([`decode`]: `%XX`, double escapes, `+`), so
//! what a browser percent-encodes is found too and replaced in the encoded text. Each detector
//! masks, removes or replaces with a keyed hash (HMAC-SHA256, so joins still work). Client
//! addresses can be truncated (IPv4 /24, IPv6 /48) after enrichment used them: the client's,
//! the peer's, and every hop of `X-Forwarded-For`, `Forwarded` and `X-Real-IP`.
//! `redaction.fields` lists what was changed.

pub mod decode;
pub mod detect;

use crate::cache::Cache;
use detect::{Kind, Span};
use hmac::{Hmac, Mac};
use sentinel_config::{Redaction as RedactionConfig, RedactionMode};
use sentinel_wire::event::transcode::Text;
use sentinel_wire::event::{Event, Redaction};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Texts remembered as clean per worker and generation (two generations of this many).
const CLEAN_TEXTS: usize = 4096;
/// Texts shorter than this are scanned every time (cheaper than a lookup); longer ones are not
/// remembered (a bound on the cache's memory).
const REMEMBERED_LEN: std::ops::Range<usize> = 24..512;

/// Numbers each [`Redactor`] made, so a worker knows when its clean texts were judged by
/// another configuration.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// What one worker keeps between events: the detectors' span buffer, and the texts it found
/// clean (header values such as the user agent, `Accept` or `Referer` repeat across requests,
/// and scanning them again would find nothing again).
#[derive(Debug)]
pub struct Scratch {
    spans: Vec<Span>,
    /// The decoded forms of the text being scanned, and what the detectors found in one.
    forms: Vec<decode::Decoded>,
    found: Vec<Span>,
    clean: Cache<String, bool>,
    /// The [`Redactor`] generation whose answers `clean` holds.
    generation: u64,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch { spans: Vec::new(), forms: Vec::new(), found: Vec::new(), clean: Cache::new(CLEAN_TEXTS), generation: 0 }
    }
}

impl Scratch {
    /// The memory's hit and miss counts now, so an event redacted again is counted once.
    pub fn mark(&self) -> (u64, u64) {
        (self.clean.hits, self.clean.misses)
    }

    /// Puts the counts back where `mark` found them.
    pub fn undo(&mut self, mark: (u64, u64)) {
        (self.clean.hits, self.clean.misses) = mark;
    }

    /// Takes the memory's hit and miss counts since the last call, for publishing.
    pub fn take_counts(&mut self) -> (u64, u64) {
        self.clean.take_counts()
    }
}

/// The configured redaction, shared by the workers.
#[derive(Debug, Clone)]
pub struct Redactor {
    kinds: Vec<Kind>,
    modes: Vec<(Kind, RedactionMode)>,
    field_mode: RedactionMode,
    query_params: Vec<String>,
    headers: Vec<String>,
    key: Vec<u8>,
    anonymize_ip: bool,
    /// The password detector runs: query parameters named like passwords are replaced too.
    passwords: bool,
    generation: u64,
}

/// Headers whose values are client addresses (lists of them, for the first two).
const ADDRESS_HEADERS: [&str; 4] = ["x-forwarded-for", "forwarded", "x-real-ip", "x-client-ip"];

impl Redactor {
    /// `None` when redaction is off.
    pub fn new(cfg: &Option<RedactionConfig>) -> Option<Redactor> {
        let c = cfg.as_ref()?;
        let kinds: Vec<Kind> = c.detectors.iter().filter_map(|d| Kind::of(d)).collect();
        Some(Redactor {
            passwords: kinds.contains(&Kind::Password),
            kinds,
            modes: c.detector_modes.iter().filter_map(|(d, m)| Some((Kind::of(d)?, *m))).collect(),
            field_mode: c.mode,
            query_params: c.query_params.iter().map(|s| s.to_ascii_lowercase()).collect(),
            headers: c.headers.iter().map(|s| s.to_ascii_lowercase()).collect(),
            key: c.hash_key.as_ref().map(|k| k.expose().as_bytes().to_vec()).unwrap_or_default(),
            anonymize_ip: c.anonymize_client_ip,
            generation: GENERATION.fetch_add(1, Relaxed),
        })
    }

    fn mode(&self, kind: Kind) -> RedactionMode {
        self.modes.iter().find(|(k, _)| *k == kind).map_or(self.field_mode, |(_, m)| *m)
    }

    /// What replaces a value: a mask naming what it was, nothing, or a keyed hash.
    fn replacement(&self, mode: RedactionMode, what: &str, value: &str) -> String {
        match mode {
            RedactionMode::Mask => format!("[REDACTED:{what}]"),
            RedactionMode::Remove => String::new(),
            RedactionMode::Hash => {
                let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                mac.update(value.as_bytes());
                let digest = mac.finalize().into_bytes();
                let mut out = String::with_capacity(21);
                out.push_str("hmac:");
                for b in &digest[..8] {
                    out.push_str(&format!("{b:02x}"));
                }
                out
            }
        }
    }

    /// Fills `s.spans` with what the detectors find in `text`; false (and maybe no scan) when
    /// the text is clean.
    fn find(&self, text: &str, s: &mut Scratch) -> bool {
        if !REMEMBERED_LEN.contains(&text.len()) {
            self.detect(text, &mut s.spans, &mut s.forms, &mut s.found);
            return !s.spans.is_empty();
        }
        let mut scanned = false;
        let clean = s.clean.get_or_insert(text, || {
            scanned = true;
            self.detect(text, &mut s.spans, &mut s.forms, &mut s.found);
            s.spans.is_empty()
        });
        if !clean && !scanned {
            self.detect(text, &mut s.spans, &mut s.forms, &mut s.found);
        }
        !clean
    }

    /// What the detectors find in `text` as written and in each of its decoded forms, as
    /// spans of `text`, sorted; overlapping spans are merged into one.
    fn detect(&self, text: &str, spans: &mut Vec<Span>, forms: &mut Vec<decode::Decoded>, found: &mut Vec<Span>) {
        let t = text.as_bytes();
        detect::find(t, &self.kinds, spans);
        if !decode::is_encoded(t) {
            return;
        }
        decode::forms(t, forms);
        if forms.is_empty() {
            return;
        }
        for f in forms.iter() {
            detect::find(&f.bytes, &self.kinds, found);
            for sp in found.iter() {
                // Decoded spans start and end at ASCII bytes, which map to `%` or to an ASCII
                // byte of the text; the widening is for safety, never a cut inside a character.
                let (mut start, mut end) = (f.origin[sp.start], f.origin[sp.end]);
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                spans.push(Span { start, end, kind: sp.kind });
            }
        }
        spans.sort_by_key(|sp| (sp.start, std::cmp::Reverse(sp.end)));
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for sp in spans.drain(..) {
            match merged.last_mut() {
                Some(last) if sp.start < last.end => last.end = last.end.max(sp.end),
                _ => merged.push(sp),
            }
        }
        *spans = merged;
    }

    /// Rewrites `text` with every detected span replaced; `None` when nothing was found.
    fn scrub(&self, text: &str, scratch: &mut Scratch) -> Option<String> {
        if !self.find(text, scratch) {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for s in scratch.spans.iter() {
            out.push_str(&text[at..s.start]);
            out.push_str(&self.replacement(self.mode(s.kind), s.kind.name(), &text[s.start..s.end]));
            at = s.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// Whether a query parameter's name (as sent, or decoded) is deny-listed, or names a
    /// password when that detector runs.
    fn denied_param(&self, name: &str, s: &mut Scratch) -> bool {
        let listed = |n: &[u8]| self.query_params.iter().any(|d| d.as_bytes().eq_ignore_ascii_case(n)) || (self.passwords && detect::secret_name(n));
        if listed(name.as_bytes()) {
            return true;
        }
        decode::forms(name.as_bytes(), &mut s.forms);
        s.forms.iter().any(|f| listed(&f.bytes))
    }

    /// The query with deny-listed parameters' values replaced and the others (names and values)
    /// scrubbed.
    fn query(&self, q: &str, s: &mut Scratch) -> Option<String> {
        // Most queries hold nothing to redact: find that out without building a copy.
        let denied = q.split('&').any(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            self.denied_param(name, s)
        });
        if !denied && !self.find(q, s) {
            return None;
        }
        let mut changed = false;
        let mut out = String::with_capacity(q.len());
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (name, value) = match pair.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (pair, None),
            };
            match self.scrub(name, s) {
                Some(scrubbed) => {
                    out.push_str(&scrubbed);
                    changed = true;
                }
                None => out.push_str(name),
            }
            let Some(v) = value else { continue };
            out.push('=');
            if !v.is_empty() && self.denied_param(name, s) {
                out.push_str(&self.replacement(self.field_mode, "query-param", v));
                changed = true;
            } else if let Some(scrubbed) = self.scrub(v, s) {
                out.push_str(&scrubbed);
                changed = true;
            } else {
                out.push_str(v);
            }
        }
        changed.then_some(out)
    }

    /// A header's value with a deny-listed header's value replaced, the addresses in
    /// `X-Forwarded-For`, `Forwarded` and `X-Real-IP` anonymized when addresses are, anything
    /// else scrubbed; `None` when unchanged.
    fn header(&self, name: &str, value: &str, s: &mut Scratch) -> Option<String> {
        if self.headers.iter().any(|d| d == name) {
            (!value.is_empty() && !value.ends_with("***")).then(|| self.replacement(self.field_mode, "header", value))
        } else if self.anonymize_ip && ADDRESS_HEADERS.contains(&name) {
            let anonymized = if name == "forwarded" { anonymize_forwarded(value) } else { anonymize_list(value) };
            // Whatever else the header carries is still scrubbed.
            match (self.scrub(&anonymized, s), anonymized != value) {
                (Some(scrubbed), _) => Some(scrubbed),
                (None, true) => Some(anonymized),
                (None, false) => None,
            }
        } else {
            self.scrub(value, s)
        }
    }

    /// The path with each segment scrubbed on its own (as written and decoded): a `/` ends
    /// a value, and `%2F` inside a segment is part of one.
    fn path(&self, path: &str, s: &mut Scratch) -> Option<String> {
        // A path as written reads the same whole or segment by segment (every detector stops at
        // a `/`, but the base64 of an AWS secret, which a whole path keeps in one piece): it is
        // read whole, and remembered clean. Only decoding can put a `/` or a space inside one.
        if !decode::is_encoded(path.as_bytes()) {
            return self.scrub(path, s);
        }
        let mut out: Option<String> = None;
        let mut at = 0;
        for segment in path.split('/') {
            let scrubbed = if segment.len() < 8 { None } else { self.scrub(segment, s) };
            match (scrubbed, &mut out) {
                (Some(new), Some(o)) => o.push_str(&new),
                (Some(new), None) => {
                    let mut o = String::with_capacity(path.len());
                    o.push_str(&path[..at]);
                    o.push_str(&new);
                    out = Some(o);
                }
                (None, Some(o)) => o.push_str(segment),
                (None, None) => {}
            }
            at += segment.len() + 1;
            if at <= path.len() {
                if let Some(o) = &mut out {
                    o.push('/');
                }
            }
        }
        out
    }

    /// What to write instead of `value`, the text at `at`; `None` when it stays. Callers start
    /// each batch with [`Redactor::begin`].
    pub fn text(&self, at: Text<'_>, value: &str, s: &mut Scratch) -> Option<String> {
        match at {
            Text::Path => self.path(value, s),
            Text::RequestBody | Text::ResponseBody => self.scrub(value, s),
            Text::Query => self.query(value, s),
            Text::RequestHeader(name) | Text::ResponseHeader(name) => self.header(name, value, s),
        }
    }

    /// Makes `scratch` fit to serve this configuration: clean texts another one judged are
    /// forgotten.
    pub fn begin(&self, scratch: &mut Scratch) {
        if scratch.generation != self.generation {
            scratch.clean.clear(CLEAN_TEXTS);
            scratch.generation = self.generation;
        }
    }

    /// Redacts one event in place, with the worker's `scratch`.
    pub fn redact(&self, ev: &mut Event<'_>, scratch: &mut Scratch) {
        self.begin(scratch);
        let mut touched = Touched::default();
        let mut one = |at: Text<'_>, value: &mut Cow<'_, str>, touched: &mut Touched| {
            if let Some(new) = self.text(at, value, scratch) {
                *value = Cow::Owned(new);
                touched.note(at);
            }
        };
        one(Text::Path, &mut ev.url.path, &mut touched);
        if let Some(q) = &mut ev.url.query {
            one(Text::Query, q, &mut touched);
        }
        for (name, value) in ev.http.request.header.0.iter_mut() {
            one(Text::RequestHeader(name), value, &mut touched);
        }
        for (name, value) in ev.http.response.header.0.iter_mut() {
            one(Text::ResponseHeader(name), value, &mut touched);
        }
        if let Some(b) = &mut ev.http.request.body.content {
            one(Text::RequestBody, b, &mut touched);
        }
        if let Some(b) = &mut ev.http.response.body.content {
            one(Text::ResponseBody, b, &mut touched);
        }
        self.finish(ev, touched, scratch);
    }

    /// The rest of an event's redaction once its texts are done (`touched` says what changed):
    /// the user agent enrichment copied, the client address, and `redaction.fields`.
    pub fn finish(&self, ev: &mut Event<'_>, touched: Touched, scratch: &mut Scratch) {
        let mut fields = touched.fields();
        // `user_agent.original` is the User-Agent header's text: when the header was clean, the
        // clean-text memory answers for it without a second scan.
        if let Some(ua) = &mut ev.user_agent {
            if let Some(new) = self.scrub(&ua.original, scratch) {
                ua.original = Cow::Owned(new);
                fields.push("user_agent.original".into());
            }
        }
        if self.anonymize_ip {
            if let Some(a) = anonymize(&ev.client.address) {
                if a != ev.client.address {
                    ev.client.address = Cow::Owned(a);
                    fields.push("client.address".into());
                }
            }
            if let Some(peer) = ev.network.as_mut().and_then(|n| n.peer.as_mut()) {
                if let Some(a) = anonymize(&peer.address) {
                    if a != peer.address {
                        peer.address = a;
                        fields.push("network.peer.address".into());
                    }
                }
            }
        }
        if !fields.is_empty() {
            ev.redaction = Some(Redaction { fields });
        }
    }
}

/// The texts redaction changed in one event, noted in any order and listed in the schema's:
/// the path, the query, request then response headers, request then response bodies.
#[derive(Debug, Default)]
pub struct Touched {
    path: bool,
    query: bool,
    request_headers: Vec<String>,
    response_headers: Vec<String>,
    request_body: bool,
    response_body: bool,
}

impl Touched {
    pub fn note(&mut self, at: Text<'_>) {
        match at {
            Text::Path => self.path = true,
            Text::Query => self.query = true,
            Text::RequestHeader(name) => self.request_headers.push(format!("http.request.header.{name}")),
            Text::ResponseHeader(name) => self.response_headers.push(format!("http.response.header.{name}")),
            Text::RequestBody => self.request_body = true,
            Text::ResponseBody => self.response_body = true,
        }
    }

    fn fields(self) -> Vec<String> {
        let mut fields = Vec::new();
        if self.path {
            fields.push("url.path".into());
        }
        if self.query {
            fields.push("url.query".into());
        }
        fields.extend(self.request_headers);
        fields.extend(self.response_headers);
        if self.request_body {
            fields.push("http.request.body.content".into());
        }
        if self.response_body {
            fields.push("http.response.body.content".into());
        }
        fields
    }
}

/// Each comma-separated address of a list (`X-Forwarded-For`) anonymized, ports and brackets
/// kept; what is not an address stays as it is.
fn anonymize_list(value: &str) -> String {
    let mut changed = false;
    let hops: Vec<String> = value
        .split(',')
        .map(|h| {
            let h = h.trim();
            match anonymize_hop(h) {
                Some(a) if a != h => {
                    changed = true;
                    a
                }
                _ => h.to_string(),
            }
        })
        .collect();
    if changed { hops.join(", ") } else { value.to_string() }
}

/// `Forwarded` (RFC 7239): the `for=` and `by=` addresses of every element anonymized, quoted
/// or not, with ports and brackets kept; obfuscated names (`_hidden`) and `unknown` stay.
fn anonymize_forwarded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, element) in value.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, pair) in element.split(';').enumerate() {
            if j > 0 {
                out.push(';');
            }
            let Some((k, v)) = pair.split_once('=') else {
                out.push_str(pair);
                continue;
            };
            let key = k.trim();
            if !(key.eq_ignore_ascii_case("for") || key.eq_ignore_ascii_case("by")) {
                out.push_str(pair);
                continue;
            }
            let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
            let inner = if quoted { &v[1..v.len() - 1] } else { v };
            match anonymize_hop(inner) {
                Some(a) if quoted => out.push_str(&format!("{k}=\"{a}\"")),
                Some(a) => out.push_str(&format!("{k}={a}")),
                None => out.push_str(pair),
            }
        }
    }
    out
}

/// One address as proxies write it: bare, `v4:port`, `[v6]` or `[v6]:port`; anonymized with
/// its form kept.
fn anonymize_hop(hop: &str) -> Option<String> {
    if let Some(rest) = hop.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        return Some(format!("[{}]{after}", anonymize(addr)?));
    }
    if let Some(a) = anonymize(hop) {
        return Some(a);
    }
    let (addr, port) = hop.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    let v4: std::net::Ipv4Addr = addr.parse().ok()?;
    Some(format!("{}:{port}", anonymize(&v4.to_string())?))
}

/// An address with its host part cleared: IPv4 to its /24, IPv6 to its /48.
pub fn anonymize(addr: &str) -> Option<String> {
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(std::net::Ipv4Addr::new(o[0], o[1], o[2], 0).to_string())
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_config::Secret;
    use sentinel_wire::event::{Body, Headers, HttpRequest, UserAgent};

    fn redactor(mode: RedactionMode, anonymize: bool) -> Redactor {
        let cfg = RedactionConfig { mode, hash_key: Some(Secret::new("k1")), anonymize_client_ip: anonymize, ..RedactionConfig::default() };
        Redactor::new(&Some(cfg)).unwrap()
    }

    fn event() -> Event<'static> {
        let mut e = Event::default();
        e.url.path = "/users/jane@example.com/cards".into();
        e.url.query = Some("access_token=abc123&q=call%20me&card=4111111111111111&page=2".into());
        e.http.request = HttpRequest {
            method: "GET".into(),
            header: Headers(vec![
                ("x-api-key".into(), "k-123456".into()),
                ("referer".into(), "https://x.test/?email=bob@example.org".into()),
                ("x-forwarded-for".into(), "203.0.113.77, 10.0.0.1".into()),
                ("user-agent".into(), "Mozilla/5.0 Chrome/124.0.0.0".into()),
            ]),
            body: Body { size: 40, content: Some("{\"ssn\":\"123-45-6789\",\"n\":1}".into()), truncated: false },
        };
        e.client.address = "203.0.113.77".into();
        e.user_agent = Some(UserAgent { original: "Mozilla/5.0 Chrome/124.0.0.0".into(), ..Default::default() });
        e
    }

    #[test]
    fn every_kind_of_place_is_redacted_and_listed() {
        let r = redactor(RedactionMode::Mask, true);
        let mut e = event();
        r.redact(&mut e, &mut Scratch::default());
        assert_eq!(e.url.path, "/users/[REDACTED:email]/cards");
        assert_eq!(e.url.query.as_deref(), Some("access_token=[REDACTED:query-param]&q=call%20me&card=[REDACTED:payment-card]&page=2"));
        assert_eq!(e.http.request.header.get("x-api-key"), Some("[REDACTED:header]"));
        assert_eq!(e.http.request.header.get("referer"), Some("https://x.test/?email=[REDACTED:email]"));
        assert_eq!(e.http.request.header.get("x-forwarded-for"), Some("203.0.113.0, 10.0.0.0"));
        assert_eq!(e.http.request.header.get("user-agent"), Some("Mozilla/5.0 Chrome/124.0.0.0"), "untouched");
        assert_eq!(e.http.request.body.content.as_deref(), Some("{\"ssn\":\"[REDACTED:us-ssn]\",\"n\":1}"));
        assert_eq!(e.client.address, "203.0.113.0");
        let fields = e.redaction.unwrap().fields;
        assert_eq!(
            fields,
            ["url.path", "url.query", "http.request.header.x-api-key", "http.request.header.referer", "http.request.header.x-forwarded-for", "http.request.body.content", "client.address"]
        );
    }

    #[test]
    fn hashes_are_keyed_and_stable_so_joins_work() {
        let r = redactor(RedactionMode::Hash, false);
        let (mut a, mut b) = (event(), event());
        r.redact(&mut a, &mut Scratch::default());
        r.redact(&mut b, &mut Scratch::default());
        assert!(a.url.path.starts_with("/users/hmac:") && a.url.path.len() == "/users/hmac:".len() + 16 + "/cards".len());
        assert_eq!(a.url.path, b.url.path, "same value, same hash");
        let mut other = redactor(RedactionMode::Hash, false);
        other.key = b"k2".to_vec();
        let mut c = event();
        other.redact(&mut c, &mut Scratch::default());
        assert_ne!(a.url.path, c.url.path, "another key, another hash");
        assert_eq!(a.client.address, "203.0.113.77", "anonymization is off");
    }

    #[test]
    fn the_user_agent_is_scrubbed_in_both_places() {
        let ua = "Mozilla/5.0 (contact: ops@example.com) Bearer abcdefghijkl1234";
        for (deny_header, ua_text) in [(false, ua), (true, ua), (false, "other agent, jane@example.org")] {
            let mut r = redactor(RedactionMode::Mask, false);
            if deny_header {
                r.headers.push("user-agent".into());
            }
            let mut e = Event::default();
            e.http.request.header = Headers(vec![("user-agent".into(), ua.into())]);
            e.user_agent = Some(UserAgent { original: ua_text.into(), ..Default::default() });
            r.redact(&mut e, &mut Scratch::default());
            let original = e.user_agent.as_ref().unwrap().original.to_string();
            let header = e.http.request.header.get("user-agent").unwrap();
            if deny_header {
                assert_eq!(header, "[REDACTED:header]");
                assert_eq!(original, "Mozilla/5.0 (contact: [REDACTED:email]) Bearer [REDACTED:bearer-basic]", "scrubbed by content");
            } else if ua_text == ua {
                assert_eq!(header, original);
                assert_eq!(original, "Mozilla/5.0 (contact: [REDACTED:email]) Bearer [REDACTED:bearer-basic]");
            } else {
                assert_eq!(original, "other agent, [REDACTED:email]", "a different text is scrubbed on its own");
            }
            let fields = e.redaction.unwrap().fields;
            assert_eq!(fields, ["http.request.header.user-agent", "user_agent.original"]);
        }
    }

    #[test]
    fn texts_remembered_clean_are_judged_again_by_a_new_configuration() {
        let referer = "https://shop.example/pay?card=4111 1111 1111 1111";
        let event = || {
            let mut e = Event::default();
            e.http.request.header = Headers(vec![("referer".into(), referer.into())]);
            e
        };
        let emails_only = RedactionConfig { detectors: vec!["email".into()], ..RedactionConfig::default() };
        let only = Redactor::new(&Some(emails_only)).unwrap();
        let all = redactor(RedactionMode::Mask, false);
        let mut scratch = Scratch::default();
        for _ in 0..3 {
            let mut e = event();
            only.redact(&mut e, &mut scratch);
            assert_eq!(e.http.request.header.get("referer"), Some(referer), "no card detector configured");
        }
        // The same worker, after a reload that enables every detector.
        for _ in 0..3 {
            let mut e = event();
            all.redact(&mut e, &mut scratch);
            assert_eq!(e.http.request.header.get("referer"), Some("https://shop.example/pay?card=[REDACTED:payment-card]"), "redacted every time");
        }
    }

    #[test]
    fn what_a_browser_encodes_is_found_and_replaced_in_the_encoded_text() {
        let r = redactor(RedactionMode::Mask, false);
        let mut s = Scratch::default();
        let q = |text: &str, s: &mut Scratch| r.text(Text::Query, text, s);
        assert_eq!(q("note=jane.doe%40example.org", &mut s).as_deref(), Some("note=[REDACTED:email]"));
        assert_eq!(q("cc=4111%201111%201111%201111&x=1", &mut s).as_deref(), Some("cc=[REDACTED:payment-card]&x=1"));
        assert_eq!(q("cc=4111+1111+1111+1111", &mut s).as_deref(), Some("cc=[REDACTED:payment-card]"));
        assert_eq!(q("tel=%2B1%20212%20555%200147", &mut s).as_deref(), Some("tel=[REDACTED:phone]"));
        assert_eq!(q("m=jane%2540example.org", &mut s).as_deref(), Some("m=[REDACTED:email]"), "double-encoded");
        assert_eq!(q("jane%40example.org=1", &mut s).as_deref(), Some("[REDACTED:email]=1"), "in a parameter's name");
        assert_eq!(q("pass%77ord=hunter2", &mut s).as_deref(), Some("pass%77ord=[REDACTED:query-param]"), "a deny-listed name, encoded");
        assert_eq!(q("q=caf%C3%A9+au+lait&n=%ZZ", &mut s), None, "clean text, decoded or not, stays as sent");
        let referer = "https://shop.example/p?u=jane%40example.org&ref=nav#top";
        assert_eq!(r.text(Text::RequestHeader("referer"), referer, &mut s).as_deref(), Some("https://shop.example/p?u=[REDACTED:email]&ref=nav#top"));
        let path = "/users/jane%40example.org/x%2Fy";
        assert_eq!(r.text(Text::Path, path, &mut s).as_deref(), Some("/users/[REDACTED:email]/x%2Fy"));
        assert_eq!(r.text(Text::Path, "/a/b/", &mut s), None);
        assert_eq!(r.text(Text::Path, "/x/4111111111111111/", &mut s).as_deref(), Some("/x/[REDACTED:payment-card]/"));
    }

    #[test]
    fn every_field_that_holds_an_address_is_anonymized() {
        let r = redactor(RedactionMode::Mask, true);
        let mut s = Scratch::default();
        let h = |name: &str, value: &str, s: &mut Scratch| r.text(Text::RequestHeader(name), value, s);
        assert_eq!(h("x-forwarded-for", "203.0.113.77:4711, [2001:db8:cafe::17]:443, unknown", &mut s).as_deref(), Some("203.0.113.0:4711, [2001:db8:cafe::]:443, unknown"));
        assert_eq!(
            h("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\", for=_hidden", &mut s).as_deref(),
            Some("for=192.0.2.0;proto=http;by=203.0.113.0, for=\"[2001:db8:cafe::]:4711\", for=_hidden")
        );
        assert_eq!(h("x-real-ip", "198.51.100.9", &mut s).as_deref(), Some("198.51.100.0"));
        assert_eq!(h("x-forwarded-for", "198.51.100.0", &mut s), None, "already anonymized");
        let mut e = Event::default();
        e.client.address = "198.51.100.9".into();
        e.network = Some(sentinel_wire::event::Network { protocol: None, peer: Some(sentinel_wire::event::Peer { address: "10.1.2.3".into() }) });
        r.redact(&mut e, &mut s);
        assert_eq!(e.network.as_ref().and_then(|n| n.peer.as_ref()).map(|p| p.address.as_str()), Some("10.1.2.0"));
        assert_eq!(e.redaction.unwrap().fields, ["client.address", "network.peer.address"]);
    }

    #[test]
    fn clean_events_are_untouched() {
        let r = redactor(RedactionMode::Remove, false);
        let mut e = Event::default();
        e.url.path = "/api/v1/orders/ORD-2024-000123".into();
        e.url.query = Some("page=2&sort=desc".into());
        r.redact(&mut e, &mut Scratch::default());
        assert_eq!(e.url.path, "/api/v1/orders/ORD-2024-000123");
        assert_eq!(e.url.query.as_deref(), Some("page=2&sort=desc"));
        assert!(e.redaction.is_none());
        assert_eq!(anonymize("2001:db8:1:2:3::9").as_deref(), Some("2001:db8:1::"));
    }
}
