//! Reads the KDL document into a [`Config`], node by node, collecting every error with its
//! position. Unknown nodes and properties are errors with a did-you-mean; a value of the wrong
//! type or range says what was expected.

use crate::document::Document;
use crate::env::{expand, ExpandError, Secret};
use crate::error::{ConfigError, ConfigErrors};
use crate::model::*;
use kdl::{KdlEntry, KdlNode, KdlValue};
use std::path::PathBuf;
use std::time::Duration;

mod sinks;

const AGENT: &[&str] = &[
    "type", "transport", "events", "timeout-ms", "failure-mode", "filter", "sampling", "enrichment", "redaction", "sink", "buffer", "metrics", "log",
];
const TRANSPORT: &[&str] = &["path", "max-frame-bytes", "write-interval-ms", "allowed-uids", "allowed-gids"];
const FILTER: &[&str] = &["header-allow", "mask-header", "body-capture-bytes", "threads"];
const SAMPLING: &[&str] = &["rate", "always-sample-errors", "always-sample-client-errors", "dynamic"];
const DYNAMIC: &[&str] = &["target-events-per-sec", "key", "adjust-interval-secs"];
const ENRICHMENT: &[&str] = &["geoip", "asn", "device-detection", "threat-intel", "client-ip", "address-cache-size", "reload-interval-secs"];
const GEOIP: &[&str] = &["database", "layout", "field"];
const ASN: &[&str] = &["database", "csv"];
const DEVICE: &[&str] = &["regexes", "cache-size"];
const THREAT: &[&str] = &["list", "anonymous-ip", "hosting-asns", "proxy-asns", "weights"];
const REDACTION: &[&str] = &["detectors", "mode", "detector", "query-params", "headers", "hash-key", "anonymize-client-ip"];
const CLIENT_IP: &[&str] = &["trusted-proxies", "header"];
const WEIGHTS: &[&str] = &["known-bad", "tor-exit", "proxy", "hosting"];
const METRICS: &[&str] = &["listen", "tap-token", "tap-unredacted"];
const LOG: &[&str] = &["level", "format"];

pub fn read(doc: &Document<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let mut r = Reader { text: doc.text, env, errors: Vec::new() };
    let mut config = Config::default();
    let agents: Vec<&KdlNode> = doc.kdl.nodes().iter().filter(|n| r.known(n, &["agent"], "at the top level")).collect();
    match agents.as_slice() {
        [] => r.errors.push(ConfigError::at(doc.text, 0, "no `agent` block").help("start with `agent \"telemetry\" { … }`")),
        [agent, rest @ ..] => {
            for extra in rest {
                r.error(extra.span().offset(), "only one `agent` block is allowed per file");
            }
            r.agent(agent, &mut config);
        }
    }
    if r.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors { file: String::new(), errors: r.errors })
    }
}

/// The detector names as `choice` options.
fn detector_choices() -> Vec<(&'static str, &'static str)> {
    Redaction::DETECTORS.iter().map(|d| (*d, *d)).collect()
}

struct Reader<'a> {
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

/// The closest known name, if one is close enough to be a likely typo.
fn did_you_mean<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn kind_of(v: &KdlValue) -> &'static str {
    match v {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "an integer",
        KdlValue::Float(_) => "a number",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "#null",
    }
}

impl Reader<'_> {
    fn error(&mut self, offset: usize, message: impl Into<String>) -> &mut ConfigError {
        self.errors.push(ConfigError::at(self.text, offset, message));
        self.errors.last_mut().expect("just pushed")
    }

    /// True when `node` is one of `known`; else records an unknown-node error.
    fn known(&mut self, node: &KdlNode, known: &[&str], place: &str) -> bool {
        let name = node.name().value();
        if known.contains(&name) {
            return true;
        }
        let e = self.error(node.span().offset(), format!("unknown node `{name}` {place}"));
        e.help = Some(match did_you_mean(name, known) {
            Some(k) => format!("did you mean `{k}`?"),
            None => format!("expected one of: {}", known.join(", ")),
        });
        false
    }

    /// The child nodes of a block, each checked against `known`; a name given twice is an error
    /// unless it is in `repeatable`.
    fn children<'n>(&mut self, node: &'n KdlNode, known: &[&str], repeatable: &[&str]) -> Vec<&'n KdlNode> {
        let place = format!("in `{}`", node.name().value());
        let mut seen: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for child in node.children().map(|d| d.nodes()).unwrap_or_default() {
            if !self.known(child, known, &place) {
                continue;
            }
            let name = child.name().value();
            if seen.contains(&name) && !repeatable.contains(&name) {
                let e = self.error(child.span().offset(), format!("`{name}` is given twice in `{}`", node.name().value()));
                e.help = Some("keep one of them".into());
                continue;
            }
            seen.push(name);
            out.push(child);
        }
        out
    }

    /// Positional arguments; properties other than `allowed_props` are errors.
    fn args<'n>(&mut self, node: &'n KdlNode, allowed_props: &[&str]) -> Vec<&'n KdlEntry> {
        let mut args = Vec::new();
        for e in node.entries() {
            match e.name() {
                None => args.push(e),
                Some(p) if allowed_props.contains(&p.value()) => {}
                Some(p) => {
                    let what = format!("`{}` takes no property `{}`", node.name().value(), p.value());
                    let err = self.error(e.span().offset(), what);
                    if let Some(k) = did_you_mean(p.value(), allowed_props) {
                        err.help = Some(format!("did you mean `{k}=`?"));
                    }
                }
            }
        }
        args
    }

    fn no_children(&mut self, node: &KdlNode) {
        if node.children().is_some_and(|c| !c.nodes().is_empty()) {
            let msg = format!("`{}` takes a value, not a block", node.name().value());
            self.error(node.span().offset(), msg);
        }
    }

    /// Exactly one positional value; `example` is a valid one, for the help text.
    fn one<'n>(&mut self, node: &'n KdlNode, expected: &str, example: &str) -> Option<&'n KdlEntry> {
        self.no_children(node);
        let args = self.args(node, &[]);
        match args.as_slice() {
            [one] => Some(one),
            [] => {
                let e = self.error(node.span().offset(), format!("`{}` needs a value: {expected}", node.name().value()));
                e.help = Some(format!("for example `{} {example}`", node.name().value()));
                None
            }
            [_, extra, ..] => {
                let msg = format!("`{}` takes one value ({expected}), got {}", node.name().value(), args.len());
                self.error(extra.span().offset(), msg);
                None
            }
        }
    }

    fn wrong(&mut self, node: &KdlNode, entry: &KdlEntry, expected: &str) {
        let msg = format!("`{}`: expected {expected}, got {} `{}`", node.name().value(), kind_of(entry.value()), entry.value());
        let e = self.error(entry.span().offset(), msg);
        if matches!(entry.value(), KdlValue::String(_)) && expected.contains("integer") {
            e.help = Some("write numbers without quotes".into());
        }
    }

    /// A string value with `${VAR}` expanded.
    fn string_of(&mut self, node: &KdlNode, entry: &KdlEntry) -> Option<String> {
        let KdlValue::String(s) = entry.value() else {
            self.wrong(node, entry, "a string");
            return None;
        };
        match expand(s, self.env) {
            Ok(v) => Some(v),
            Err(ExpandError::Unset(var)) => {
                let e = self.error(entry.span().offset(), format!("environment variable `{var}` is not set"));
                e.help = Some(format!("export {var} before starting, or write `$${{{var}}}` for a literal `${{`"));
                None
            }
            Err(ExpandError::Malformed) => {
                let e = self.error(entry.span().offset(), "malformed `${…}`: expected `${NAME}` with letters, digits and `_`");
                e.help = Some("write `$${` for a literal `${`".into());
                None
            }
        }
    }

    fn string(&mut self, node: &KdlNode) -> Option<String> {
        let e = self.one(node, "a string", "\"…\"")?;
        self.string_of(node, e)
    }

    /// A list node's values: at least one (an error showing `example` otherwise), no children.
    fn values<'n>(&mut self, node: &'n KdlNode, what: &str, example: &str) -> Vec<&'n KdlEntry> {
        self.no_children(node);
        let args = self.args(node, &[]);
        if args.is_empty() {
            let e = self.error(node.span().offset(), format!("`{}` needs at least one {what}", node.name().value()));
            e.help = Some(format!("for example `{} {example}`", node.name().value()));
        }
        args
    }

    fn strings(&mut self, node: &KdlNode) -> Vec<String> {
        let args = self.values(node, "value", "\"a\" \"b\"");
        args.into_iter().filter_map(|e| self.string_of(node, e)).collect()
    }

    /// One or more user or group ids (`allowed-uids 0 998`).
    fn ids(&mut self, node: &KdlNode) -> Vec<u32> {
        let mut ids = Vec::new();
        for e in self.values(node, "id", "998") {
            match e.value() {
                KdlValue::Integer(i) if (0..=i128::from(u32::MAX)).contains(i) => ids.push(*i as u32),
                _ => self.wrong(node, e, "an integer id from 0 to 4294967295"),
            }
        }
        ids
    }

    /// A boolean; a bare node (`geoip`) means true. Accepts KDL v2 `#true` and v1 `true`.
    fn boolean(&mut self, node: &KdlNode) -> Option<bool> {
        self.no_children(node);
        self.bool_args(node)
    }

    /// The boolean argument of a node (none means true).
    fn bool_args(&mut self, node: &KdlNode) -> Option<bool> {
        let args = self.args(node, &[]);
        match args.as_slice() {
            [] => Some(true),
            [e] => match e.value() {
                KdlValue::Bool(b) => Some(*b),
                KdlValue::String(s) if s == "true" || s == "false" => {
                    let msg = format!("`{}`: expected a boolean, got the string \"{s}\"", node.name().value());
                    let err = self.error(e.span().offset(), msg);
                    err.help = Some(format!("write #{s} (or {s} in KDL v1), without quotes"));
                    None
                }
                _ => {
                    self.wrong(node, e, "a boolean (#true or #false)");
                    None
                }
            },
            [_, extra, ..] => {
                let msg = format!("`{}` takes one boolean", node.name().value());
                self.error(extra.span().offset(), msg);
                None
            }
        }
    }

    fn integer(&mut self, node: &KdlNode, min: u64, max: u64) -> Option<u64> {
        let expected = format!("an integer from {min} to {max}");
        let e = self.one(node, &expected, &min.max(1).min(max).to_string())?;
        match e.value() {
            KdlValue::Integer(i) if *i >= min as i128 && *i <= max as i128 => Some(*i as u64),
            _ => {
                self.wrong(node, e, &expected);
                None
            }
        }
    }

    fn number(&mut self, node: &KdlNode, min: f64, max: f64) -> Option<f64> {
        let expected = format!("a number from {min} to {max}");
        let e = self.one(node, &expected, &max.to_string())?;
        let v = match e.value() {
            KdlValue::Float(f) => *f,
            KdlValue::Integer(i) => *i as f64,
            _ => f64::NAN,
        };
        if v >= min && v <= max {
            Some(v)
        } else {
            self.wrong(node, e, &expected);
            None
        }
    }

    /// One of a fixed set of strings.
    fn choice<T: Copy>(&mut self, node: &KdlNode, entry: &KdlEntry, options: &[(&str, T)]) -> Option<T> {
        let s = self.string_of(node, entry)?;
        if let Some((_, v)) = options.iter().find(|(k, _)| *k == s) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
        let msg = format!("`{}`: unknown value \"{s}\"", node.name().value());
        let e = self.error(entry.span().offset(), msg);
        e.help = Some(match did_you_mean(&s, &names) {
            Some(k) => format!("did you mean \"{k}\"?"),
            None => format!("expected one of: {}", names.join(", ")),
        });
        None
    }

    fn agent(&mut self, agent: &KdlNode, c: &mut Config) {
        let args = self.args(agent, &[]);
        match args.as_slice() {
            [name] => {
                if let Some(n) = self.string_of(agent, name) {
                    c.name = n;
                }
            }
            _ => {
                let e = self.error(agent.span().offset(), "`agent` needs one name");
                e.help = Some("write `agent \"telemetry\" { … }`".into());
            }
        }
        for n in self.children(agent, AGENT, &["sink"]) {
            match n.name().value() {
                "type" => {
                    if let Some(e) = self.one(n, "\"telemetry\"", "\"telemetry\"") {
                        self.choice(n, e, &[("telemetry", ())]);
                    }
                }
                "transport" => self.transport(n, &mut c.transport),
                "events" => {
                    self.no_children(n);
                    let args = self.args(n, &[]);
                    if args.is_empty() {
                        self.error(n.span().offset(), "`events` needs at least one kind").help =
                            Some("for example `events \"request_headers\" \"response_headers\"`".into());
                    }
                    c.events = args.into_iter().filter_map(|e| self.choice(n, e, &EventKind::ALL)).collect();
                }
                "timeout-ms" => {
                    if let Some(ms) = self.integer(n, 1, 60_000) {
                        c.timeout = Duration::from_millis(ms);
                    }
                }
                "failure-mode" => {
                    if let Some(e) = self.one(n, "\"open\" or \"closed\"", "\"open\"") {
                        if let Some(m) = self.choice(n, e, &[("open", FailureMode::Open), ("closed", FailureMode::Closed)]) {
                            c.failure_mode = m;
                        }
                    }
                }
                "filter" => self.filter(n, &mut c.filter),
                "sampling" => self.sampling(n, &mut c.sampling),
                "enrichment" => self.enrichment(n, &mut c.enrichment),
                "redaction" => c.redaction = self.redaction(n),
                "sink" => {
                    if let Some(s) = self.sink(n) {
                        if c.sinks.iter().any(|x| x.id == s.id) {
                            let e = self.error(n.span().offset(), format!("two sinks are both called `{}`", s.id));
                            e.help = Some(format!("give one of them an id: `sink \"{}\" id=\"{}-2\" {{ … }}`", n.name().value(), s.id));
                        } else {
                            c.sinks.push(s);
                        }
                    }
                }
                "buffer" => self.buffer(n, &mut c.buffer),
                "metrics" => {
                    self.args(n, &[]);
                    for m in self.children(n, METRICS, &[]) {
                        match m.name().value() {
                            "tap-token" => {
                                c.metrics.tap_token = self.string(m).map(Secret::new);
                                continue;
                            }
                            "tap-unredacted" => {
                                c.metrics.tap_unredacted = self.boolean(m).unwrap_or(false);
                                continue;
                            }
                            _ => {}
                        }
                        let Some(s) = self.string(m) else { continue };
                        match s.parse() {
                            Ok(a) => c.metrics.listen = Some(a),
                            Err(_) => {
                                let at = m.entries().first().map_or(m.span().offset(), |e| e.span().offset());
                                self.error(at, format!("`listen`: \"{s}\" is not an address")).help =
                                    Some("write an IP and a port, e.g. \"127.0.0.1:9464\"".into());
                            }
                        }
                    }
                }
                "log" => {
                    self.args(n, &[]);
                    for l in self.children(n, LOG, &[]) {
                        match l.name().value() {
                            "level" => {
                                if let Some(s) = self.string(l) {
                                    c.log.level = s;
                                }
                            }
                            _ => {
                                if let Some(e) = self.one(l, "\"text\" or \"json\"", "\"text\"") {
                                    if let Some(f) = self.choice(l, e, &[("text", LogFormat::Text), ("json", LogFormat::Json)]) {
                                        c.log.format = f;
                                    }
                                }
                            }
                        }
                    }
                }
                _ => unreachable!("children() only returns known names"),
            }
        }
        let wants_body = c.events.iter().any(|e| matches!(e, EventKind::RequestBody | EventKind::ResponseBody));
        if c.filter.body_capture_bytes > 0 && !wants_body {
            self.error(agent.span().offset(), "`filter` captures body bytes but `events` asks for no body").help =
                Some("add \"request_body\" and/or \"response_body\" to `events`, or set `body-capture-bytes 0`".into());
        }
    }

    fn transport(&mut self, n: &KdlNode, t: &mut Transport) {
        if let [kind] = self.args(n, &[]).as_slice() {
            self.choice(n, kind, &[("unix_socket", ())]);
        } else {
            self.error(n.span().offset(), "`transport` needs its kind").help = Some("write `transport \"unix_socket\" { path \"…\" }`".into());
        }
        for c in self.children(n, TRANSPORT, &[]) {
            match c.name().value() {
                "path" => {
                    if let Some(p) = self.string(c) {
                        t.socket_path = p.into();
                    }
                }
                "allowed-uids" => t.allowed_uids = self.ids(c),
                "allowed-gids" => t.allowed_gids = self.ids(c),
                "write-interval-ms" => {
                    if let Some(v) = self.integer(c, 1, 1000) {
                        t.write_interval = Duration::from_millis(v);
                    }
                }
                _ => {
                    if let Some(v) = self.integer(c, 1024, 64 << 20) {
                        t.max_frame_bytes = v as usize;
                    }
                }
            }
        }
    }

    fn filter(&mut self, n: &KdlNode, f: &mut FilterPart) {
        self.args(n, &[]);
        for c in self.children(n, FILTER, &[]) {
            match c.name().value() {
                "header-allow" => f.header_allowlist = self.strings(c).into_iter().map(|s| s.to_ascii_lowercase()).collect(),
                "mask-header" => f.masked_headers = self.strings(c).into_iter().map(|s| s.to_ascii_lowercase()).collect(),
                "threads" => {
                    if let Some(v) = self.integer(c, 1, 64) {
                        f.threads = v as usize;
                    }
                }
                _ => {
                    if let Some(v) = self.integer(c, 0, 1 << 20) {
                        f.body_capture_bytes = v as u32;
                    }
                }
            }
        }
    }

    fn sampling(&mut self, n: &KdlNode, s: &mut Sampling) {
        self.args(n, &[]);
        for c in self.children(n, SAMPLING, &[]) {
            match c.name().value() {
                "rate" => {
                    if let Some(v) = self.number(c, 0.0, 1.0) {
                        s.rate = v;
                    }
                }
                "always-sample-errors" => {
                    if let Some(b) = self.boolean(c) {
                        s.always_sample_errors = b;
                    }
                }
                "dynamic" => s.dynamic = self.dynamic(c),
                _ => {
                    if let Some(b) = self.boolean(c) {
                        s.always_sample_client_errors = b;
                    }
                }
            }
        }
    }

    fn dynamic(&mut self, n: &KdlNode) -> Option<DynamicSampling> {
        self.args(n, &[]);
        let mut d = DynamicSampling {
            target_events_per_sec: 0.0,
            key: DynamicSampling::DEFAULT_KEY.iter().map(|s| s.to_string()).collect(),
            adjust_interval: Duration::from_secs(15),
        };
        for c in self.children(n, DYNAMIC, &[]) {
            match c.name().value() {
                "target-events-per-sec" => d.target_events_per_sec = self.number(c, 1.0, 1e9).unwrap_or(d.target_events_per_sec),
                "adjust-interval-secs" => d.adjust_interval = self.integer(c, 1, 3600).map_or(d.adjust_interval, Duration::from_secs),
                _ => {
                    self.no_children(c);
                    let entries = self.args(c, &[]);
                    let mut key = Vec::new();
                    for e in entries {
                        let Some(f) = self.string_of(c, e) else { continue };
                        if DynamicSampling::KEY_FIELDS.contains(&f.as_str()) {
                            key.push(f);
                        } else {
                            let err = self.error(e.span().offset(), format!("`key`: \"{f}\" cannot be part of a sampling key"));
                            err.help = Some(match did_you_mean(&f, DynamicSampling::KEY_FIELDS) {
                                Some(k) => format!("did you mean \"{k}\"?"),
                                None => format!("expected some of: {}", DynamicSampling::KEY_FIELDS.join(", ")),
                            });
                        }
                    }
                    if !key.is_empty() {
                        d.key = key;
                    }
                }
            }
        }
        if d.target_events_per_sec <= 0.0 {
            self.error(n.span().offset(), "`dynamic` needs `target-events-per-sec`").help =
                Some("for example `dynamic { target-events-per-sec 1000; }`".into());
            return None;
        }
        Some(d)
    }

    fn redaction(&mut self, n: &KdlNode) -> Option<Redaction> {
        if self.switch(n) != Some(true) {
            return None;
        }
        let mut r = Redaction::default();
        let mut key_at = None;
        for c in self.children(n, REDACTION, &["detector"]) {
            match c.name().value() {
                "detectors" => {
                    self.no_children(c);
                    let entries = self.args(c, &[]);
                    r.detectors = entries.into_iter().filter_map(|e| self.choice(c, e, &detector_choices()).map(str::to_string)).collect();
                }
                "mode" => {
                    if let Some(e) = self.one(c, "\"mask\", \"remove\" or \"hash\"", "\"mask\"") {
                        r.mode = self.choice(c, e, &RedactionMode::ALL).unwrap_or(r.mode);
                    }
                }
                "detector" => {
                    self.no_children(c);
                    let args = self.args(c, &["mode"]);
                    let ([name], Some(mode)) = (args.as_slice(), c.entry("mode")) else {
                        self.error(c.span().offset(), "`detector` takes a detector and `mode=`").help =
                            Some("for example `detector \"email\" mode=\"hash\"`".into());
                        continue;
                    };
                    let d = self.choice(c, name, &detector_choices());
                    let m = self.choice(c, mode, &RedactionMode::ALL);
                    if let (Some(d), Some(m)) = (d, m) {
                        r.detector_modes.push((d.to_string(), m));
                    }
                }
                "query-params" => r.query_params = self.strings(c),
                "headers" => r.headers = self.strings(c).into_iter().map(|h| h.to_ascii_lowercase()).collect(),
                "hash-key" => {
                    key_at = Some(c.span().offset());
                    r.hash_key = self.string(c).map(Secret::new);
                }
                _ => r.anonymize_client_ip = self.boolean(c).unwrap_or(r.anonymize_client_ip),
            }
        }
        let hashes = r.mode == RedactionMode::Hash || r.detector_modes.iter().any(|(_, m)| *m == RedactionMode::Hash);
        if hashes && r.hash_key.as_ref().is_none_or(|k| k.expose().len() < 16) {
            self.error(key_at.unwrap_or(n.span().offset()), "`hash` mode needs a `hash-key` of at least 16 characters").help =
                Some("for example `hash-key \"${REDACTION_KEY}\"` with the key in the environment".into());
        }
        Some(r)
    }

    /// An enricher switch: `geoip`, `geoip #false`, or `geoip { … }` (a block turns it on).
    fn switch(&mut self, node: &KdlNode) -> Option<bool> {
        self.bool_args(node)
    }

    fn paths(&mut self, node: &KdlNode) -> Vec<PathBuf> {
        self.strings(node).into_iter().map(PathBuf::from).collect()
    }

    fn enrichment(&mut self, n: &KdlNode, e: &mut Enrichment) {
        self.args(n, &[]);
        for c in self.children(n, ENRICHMENT, &[]) {
            match c.name().value() {
                "client-ip" => self.client_ip(c, &mut e.client_ip),
                "address-cache-size" => e.address_cache_size = self.integer(c, 0, 10_000_000).map_or(e.address_cache_size, |v| v as usize),
                "reload-interval-secs" => {
                    if let Some(v) = self.integer(c, 1, 86_400) {
                        e.reload_interval = Duration::from_secs(v);
                    }
                }
                name => {
                    if self.switch(c) != Some(true) {
                        continue;
                    }
                    match name {
                        "geoip" => e.geoip = Some(self.geoip(c)),
                        "asn" => e.asn = Some(self.asn(c)),
                        "device-detection" => e.device_detection = Some(self.device(c)),
                        _ => e.threat_intel = self.threat(c),
                    }
                }
            }
        }
    }

    fn geoip(&mut self, n: &KdlNode) -> GeoIp {
        let mut g = GeoIp { databases: Vec::new(), layout: GeoLayout::GeoIp2, fields: Vec::new() };
        let mut dbip = false;
        for c in self.children(n, GEOIP, &["field"]) {
            match c.name().value() {
                "database" => g.databases = self.paths(c),
                "layout" => {
                    if let Some(e) = self.one(c, "\"geoip2\", \"dbip\" or \"flat\"", "\"geoip2\"") {
                        match self.choice(c, e, &[("geoip2", 0), ("dbip", 1), ("flat", 2)]) {
                            Some(0) => g.layout = GeoLayout::GeoIp2,
                            Some(1) => (g.layout, dbip) = (GeoLayout::Flat, true),
                            Some(_) => g.layout = GeoLayout::Flat,
                            None => {}
                        }
                    }
                }
                _ => {
                    self.no_children(c);
                    let args = self.args(c, &[]);
                    let [target, key] = args.as_slice() else {
                        self.error(c.span().offset(), "`field` takes a schema field and a record key").help =
                            Some("for example `field \"geo.country.iso_code\" \"country_code\"`".into());
                        continue;
                    };
                    let (Some(t), Some(k)) = (self.string_of(c, target), self.string_of(c, key)) else { continue };
                    if !GeoLayout::TARGETS.contains(&t.as_str()) {
                        let e = self.error(target.span().offset(), format!("`field`: \"{t}\" is not a geo field"));
                        e.help = Some(match did_you_mean(&t, GeoLayout::TARGETS) {
                            Some(k) => format!("did you mean \"{k}\"?"),
                            None => format!("expected one of: {}", GeoLayout::TARGETS.join(", ")),
                        });
                        continue;
                    }
                    g.fields.push((t, k));
                }
            }
        }
        if g.databases.is_empty() {
            g.databases.push(default_paths::GEOIP_CITY.into());
        }
        if dbip {
            for (t, k) in GeoLayout::DBIP_FIELDS {
                if !g.fields.iter().any(|(x, _)| x == t) {
                    g.fields.push((t.to_string(), k.to_string()));
                }
            }
        }
        if g.layout == GeoLayout::Flat && g.fields.is_empty() {
            self.error(n.span().offset(), "`geoip` with `layout \"flat\"` needs at least one `field`").help =
                Some("map record keys to geo fields, e.g. `field \"geo.country.iso_code\" \"country_code\"`, or use `layout \"dbip\"`".into());
        }
        g
    }

    fn asn(&mut self, n: &KdlNode) -> AsnData {
        let mut a = AsnData { databases: Vec::new(), csv: Vec::new() };
        for c in self.children(n, ASN, &[]) {
            match c.name().value() {
                "database" => a.databases = self.paths(c),
                _ => a.csv = self.paths(c),
            }
        }
        if a.databases.is_empty() && a.csv.is_empty() {
            a.databases.push(default_paths::GEOIP_ASN.into());
        }
        a
    }

    fn device(&mut self, n: &KdlNode) -> DeviceDetection {
        let mut d = DeviceDetection { regexes: default_paths::UAP_REGEXES.into(), cache_size: 10_000 };
        for c in self.children(n, DEVICE, &[]) {
            match c.name().value() {
                "regexes" => {
                    if let Some(p) = self.string(c) {
                        d.regexes = p.into();
                    }
                }
                _ => d.cache_size = self.integer(c, 0, 10_000_000).map_or(d.cache_size, |v| v as usize),
            }
        }
        d
    }

    fn threat(&mut self, n: &KdlNode) -> Option<ThreatIntel> {
        let mut t = ThreatIntel { lists: Vec::new(), anonymous_ip: Vec::new(), hosting_asns: Vec::new(), proxy_asns: Vec::new(), weights: ThreatWeights::default() };
        for c in self.children(n, THREAT, &["list"]) {
            match c.name().value() {
                "list" => {
                    self.no_children(c);
                    let args = self.args(c, &["kind"]);
                    let [name, path] = args.as_slice() else {
                        self.error(c.span().offset(), "`list` takes a name and a file").help =
                            Some("for example `list \"tor\" \"/var/lib/sentinel/tor-exits.txt\" kind=\"tor-exit\"`".into());
                        continue;
                    };
                    let (Some(name), Some(path)) = (self.string_of(c, name), self.string_of(c, path)) else { continue };
                    let kind = match c.entry("kind") {
                        Some(e) => match self.choice(c, e, &ThreatKind::ALL) {
                            Some(k) => k,
                            None => continue,
                        },
                        None => ThreatKind::KnownBad,
                    };
                    if t.lists.len() == 64 {
                        self.error(c.span().offset(), "at most 64 threat lists").help = Some("merge lists of the same kind into one file".into());
                        continue;
                    }
                    if t.lists.iter().any(|l| l.name == name) {
                        self.error(c.span().offset(), format!("two threat lists are both called `{name}`")).help = Some("give each list its own name".into());
                        continue;
                    }
                    t.lists.push(ThreatList { name, path: path.into(), kind });
                }
                "anonymous-ip" => t.anonymous_ip = self.paths(c),
                "hosting-asns" => t.hosting_asns = self.paths(c),
                "proxy-asns" => t.proxy_asns = self.paths(c),
                _ => {
                    self.no_children(c);
                    self.args(c, WEIGHTS);
                    for e in c.entries() {
                        let Some(name) = e.name().map(|n| n.value()) else {
                            self.error(e.span().offset(), "`weights` takes properties").help =
                                Some("for example `weights known-bad=60 tor-exit=40 proxy=25 hosting=10`".into());
                            continue;
                        };
                        let v = match e.value() {
                            KdlValue::Integer(i) if (0..=100).contains(i) => *i as u32,
                            _ => {
                                self.wrong(c, e, "an integer from 0 to 100");
                                continue;
                            }
                        };
                        match name {
                            "known-bad" => t.weights.known_bad = v,
                            "tor-exit" => t.weights.tor_exit = v,
                            "proxy" => t.weights.proxy = v,
                            "hosting" => t.weights.hosting = v,
                            _ => {}
                        }
                    }
                }
            }
        }
        if t.lists.is_empty() && t.anonymous_ip.is_empty() && t.hosting_asns.is_empty() && t.proxy_asns.is_empty() {
            // A bare `threat-intel` reads the two lists operators most often keep.
            t.lists.push(ThreatList { name: "tor-exits".into(), path: default_paths::TOR_EXITS.into(), kind: ThreatKind::TorExit });
            t.lists.push(ThreatList { name: "known-bad".into(), path: default_paths::KNOWN_BAD.into(), kind: ThreatKind::KnownBad });
        }
        Some(t)
    }

    fn client_ip(&mut self, n: &KdlNode, c: &mut ClientIp) {
        self.args(n, &[]);
        for child in self.children(n, CLIENT_IP, &[]) {
            match child.name().value() {
                "header" => {
                    if let Some(h) = self.string(child) {
                        c.header = h.to_ascii_lowercase();
                    }
                }
                _ => {
                    self.no_children(child);
                    let entries = self.args(child, &[]);
                    c.trusted_proxies.clear();
                    for e in entries {
                        let Some(v) = self.string_of(child, e) else { continue };
                        match crate::ip::parse_range(&v) {
                            Ok(_) => c.trusted_proxies.push(v),
                            Err(msg) => {
                                self.error(e.span().offset(), format!("`trusted-proxies`: {msg}")).help =
                                    Some("write addresses or CIDR blocks, e.g. \"10.0.0.0/8\" \"192.0.2.10\"".into());
                            }
                        }
                    }
                }
            }
        }
    }
}
