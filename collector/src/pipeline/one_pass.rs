//! The stages in one pass: with sampling keeping everything and nobody watching decoded or
//! enriched events, each frame is written as its NDJSON line as it is read
//! ([`transcode::staged_line`]), and the enrichers and redaction act on the way: they read the
//! request headers and the client as the pass meets them, replace the texts redaction changes,
//! and add their parts at their places. No [`Event`] of the whole frame is built, and each
//! string is checked as text and for JSON escapes in one scan; the line is what decoding, the
//! stages and encoding give (the tests hold the two together).

use super::WorkerScratch;
use crate::enrich::{AddressFacts, Enrichers};
use crate::redact::{Redactor, Touched};
use sentinel_wire::event::transcode::{self, Stages, Text};
use sentinel_wire::event::{parts, Client, Event, Network};
use std::borrow::Cow;
use std::sync::Arc;

/// One event's stages, as the pass runs them.
pub struct OnePass<'s, 'f> {
    enrichers: &'s Arc<Enrichers>,
    redactor: Option<&'s Redactor>,
    scratch: &'s mut WorkerScratch,
    /// The first trusted-chain header and the first `User-Agent`, as the frame has them.
    chain: Option<&'f str>,
    user_agent: Option<&'f str>,
    touched: Touched,
    /// The parts the stages own: `network`, `client`, `geo` to `threat`, `redaction`.
    staged: Event<'f>,
    /// The facts the client's address was given, whose JSON the worker keeps.
    facts: Option<Arc<AddressFacts>>,
}

impl<'s, 'f> OnePass<'s, 'f> {
    /// Writes the line of `frame` to `out` with the stages at work. `None`, with `out` and the
    /// worker's counts as they were, when the frame is not in the filters' shape and must be
    /// decoded; else whether redaction changed the event.
    pub fn line(frame: &'f [u8], enrichers: &'s Arc<Enrichers>, redactor: Option<&'s Redactor>, scratch: &'s mut WorkerScratch, host: &str, out: &mut Vec<u8>) -> Option<bool> {
        let marks = (scratch.enrich.mark(), scratch.redact.mark());
        let mut pass = OnePass { enrichers, redactor, scratch, chain: None, user_agent: None, touched: Touched::default(), staged: Event::default(), facts: None };
        if transcode::staged_line(frame, &mut pass, Some(host), out) {
            return Some(pass.staged.redaction.is_some());
        }
        // The stages may have run on part of it: the decoder's path runs them again.
        pass.scratch.enrich.undo(&marks.0);
        pass.scratch.redact.undo(marks.1);
        None
    }
}

impl<'f> Stages<'f> for OnePass<'_, 'f> {
    fn request_header(&mut self, name: &'f str, value: &'f str) {
        if self.chain.is_none() && name == self.enrichers.client.header {
            self.chain = Some(value);
        }
        if self.user_agent.is_none() && name == "user-agent" {
            self.user_agent = Some(value);
        }
    }

    fn redact(&mut self, at: Text<'_>, value: &'f str) -> Option<String> {
        let new = self.redactor?.text(at, value, &mut self.scratch.redact)?;
        self.touched.note(at);
        Some(new)
    }

    fn client(&mut self, network: Option<Network<'f>>, client: Client<'f>) {
        self.staged.network = network;
        self.staged.client = client;
        let (chain, user_agent) = (self.chain.map(Cow::Borrowed), self.user_agent.map(Cow::Borrowed));
        self.facts = self.enrichers.enrich_from(&mut self.staged, chain, user_agent, &mut self.scratch.enrich);
        if let Some(r) = self.redactor {
            r.finish(&mut self.staged, std::mem::take(&mut self.touched), &mut self.scratch.redact);
        }
    }

    fn staged(&self) -> Option<&Event<'f>> {
        Some(&self.staged)
    }

    fn write_enrichment(&self, out: &mut Vec<u8>) {
        let Some(facts) = &self.facts else { return parts::all(&self.staged, out) };
        let (geo_asn, threat) = facts.json();
        out.extend_from_slice(geo_asn);
        parts::agent(&self.staged, out);
        out.extend_from_slice(threat);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::with_redaction;
    use super::super::{Pipeline, WorkerScratch};
    use crate::enrich::mmdb::tests::data;
    use crate::ingest::Frames;
    use crate::metrics::Metrics;
    use crate::tap::{Stage, TapRequest};
    use sentinel_config::{AsnData, Config, DeviceDetection, Enrichment, GeoIp, GeoLayout, Redaction, RedactionMode, Secret, ThreatIntel, ThreatKind, ThreatList, ThreatWeights};
    use sentinel_wire::event::{Body, Client, Event, EventInfo, Headers, HttpRequest, Network, Peer, Protocol, Sampling, Url, SCHEMA_VERSION};
    use std::sync::Arc;

    /// SplitMix64: a reproducible stream of choices.
    struct Rng(u64);
    impl Rng {
        fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            &from[((z ^ (z >> 31)) % from.len() as u64) as usize]
        }
    }

    /// Events that put something in every place the stages read or change: trusted and
    /// untrusted chains (IPv4, IPv6, ports, garbage), user agents (none, empty, with an
    /// address in them, non-ASCII), deny-listed and dirty headers, PII in path, query and
    /// bodies, text JSON must escape, a frame's own `network`.
    fn events(n: usize) -> Vec<Event<'static>> {
        let mut rng = Rng(5);
        let clients = ["10.0.0.2", "81.2.69.160", "2001:db8::1", "::ffff:81.2.69.160", "not-an-ip", "192.0.2.1", "89.160.20.112"];
        let chains = [None, Some("198.51.100.7, 203.0.113.9"), Some("[2001:DB8:0::7]:80"), Some("192.0.2.4:5555"), Some("10.1.1.1"), Some("garbage"), Some("81.2.69.160"), Some("2a02:ec80::1, 10.0.0.9")];
        let agents = [
            None,
            Some(""),
            Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"),
            Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"),
            Some("Googlebot/2.1 (+http://www.google.com/bot.html)"),
            Some("crawler (contact: ops@example.com)"),
            Some("Kl\u{e9}ient \"quoted\" \\ tab\there"),
        ];
        let paths = ["/products/42", "/users/jane@example.com/cards", "/caf\u{e9}/\"q\"\\x\n", "/a/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ", "/"];
        let queries = [None, Some("ref=home&page=2"), Some("access_token=abc123&q=1"), Some("card=4111111111111111&x"), Some("mail=bob@example.org&token=")];
        let bodies = [None, Some("{\"ssn\":\"123-45-6789\",\"n\":1}"), Some("plain text body"), Some("iban DE89370400440532013000 \u{1f600}")];
        let extra = [
            None,
            Some(("x-api-key", "k-123456")),
            Some(("authorization", "Bearer ***")),
            Some(("cookie", "session=abc")),
            Some(("referer", "https://x.test/?email=bob@example.org")),
            Some(("x-forwarded-for", "203.0.113.50")),
            Some(("user-agent", "second agent")),
        ];
        let networks = [None, Some(Network { protocol: Some(Protocol { version: "1.1".into() }), peer: None }), Some(Network { protocol: None, peer: Some(Peer { address: "10.9.9.9".into() }) })];
        (0..n)
            .map(|i| {
                let mut header = vec![("host".into(), "shop.example.com".into()), ("accept".into(), "text/html".into())];
                if let Some(c) = rng.pick(&chains) {
                    header.push(("x-forwarded-for".into(), (*c).into()));
                }
                if let Some(a) = rng.pick(&agents) {
                    header.push(("user-agent".into(), (*a).into()));
                }
                if let Some((name, value)) = rng.pick(&extra) {
                    header.push(((*name).into(), (*value).into()));
                }
                let mut ev = Event {
                    schema_version: SCHEMA_VERSION.into(),
                    event: EventInfo { id: format!("id-{i}").into(), start_ns: 1_795_000_000_000_000_000, end_ns: 1_795_000_000_002_500_000 },
                    ..Default::default()
                };
                ev.http.request = HttpRequest { method: "POST".into(), header: Headers(header), body: Body { size: 30, content: rng.pick(&bodies).map(Into::into), truncated: i % 7 == 0 } };
                ev.http.response.status_code = *rng.pick(&[200, 404, 503]);
                ev.http.response.header = Headers(vec![("set-cookie".into(), "sid=***".into()), ("content-type".into(), "application/json".into())]);
                ev.http.response.body.content = rng.pick(&bodies).map(Into::into);
                ev.url = Url { scheme: Some("https".into()), domain: Some("shop.example.com".into()), path: (*rng.pick(&paths)).into(), query: rng.pick(&queries).map(Into::into) };
                ev.network = rng.pick(&networks).clone();
                ev.client = Client { address: (*rng.pick(&clients)).into(), port: 51_234 };
                ev.timing.total_ms = 2.5;
                ev.sampling = Sampling { rate: 1.0, reason: "all".into() };
                ev.filter.version = "test-1".into();
                ev
            })
            .collect()
    }

    /// The frames of `events`, and every fifth one again out of the filters' shape, which the
    /// one pass leaves to the decoder: an unknown field first (refused before any stage ran)
    /// or last (refused after every stage ran, and counted).
    fn frames(events: &[Event<'_>]) -> Frames {
        const UNKNOWN: [u8; 7] = [0xa5, b'n', b'e', b'w', b'e', b'r', 0x07];
        let mut frames = Frames::default();
        for (i, ev) in events.iter().enumerate() {
            let mut f = Vec::new();
            ev.encode_into(&mut f).unwrap();
            frames.push(&f);
            if i % 5 == 0 {
                let mut odd = vec![f[0] + 1];
                if i % 10 == 0 {
                    odd.extend_from_slice(&UNKNOWN);
                    odd.extend_from_slice(&f[1..]);
                } else {
                    odd.extend_from_slice(&f[1..]);
                    odd.extend_from_slice(&UNKNOWN);
                }
                frames.push(&odd);
            }
        }
        frames
    }

    /// The metrics text without the stage timings (the two paths time different stages).
    fn counts(m: &Metrics) -> String {
        m.render_prometheus().lines().filter(|l| !l.contains("stage_seconds")).collect::<Vec<_>>().join("\n")
    }

    /// Runs `frames` through a pipeline taking the one pass and through one taking the stages
    /// one by one (a tap on decoded events keeps them on); both must write the same lines and
    /// count the same.
    fn agree(enrichment: &Enrichment, redaction: &Option<Redaction>, frames: &Frames) -> String {
        let (one, one_metrics) = with_redaction(enrichment, redaction);
        let (staged, staged_metrics): (Pipeline, Arc<Metrics>) = with_redaction(enrichment, redaction);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _in_runtime = runtime.enter();
        let request = TapRequest { filter: crate::tap::filter::Filter::parse("").unwrap(), rate: 0, stage: Stage::Decoded };
        let _tap = staged.taps.open(request, staged_metrics.clone());
        let (mut a, mut b) = (WorkerScratch::default(), WorkerScratch::default());
        // Twice: the second time the workers' caches answer.
        for _ in 0..2 {
            let (x, y) = (one.process(frames, &mut a), staged.process(frames, &mut b));
            assert_eq!(x.events, y.events);
            for (l, r) in String::from_utf8_lossy(&x.lines).lines().zip(String::from_utf8_lossy(&y.lines).lines()) {
                assert_eq!(l, r);
            }
            assert_eq!(x.lines, y.lines);
        }
        let m = one_metrics.render_prometheus();
        assert!(m.contains("sentinel_collector_stage_seconds_count{stage=\"one_pass\"} 2"), "{m}");
        assert!(m.contains("sentinel_collector_stage_seconds_count{stage=\"decode\"} 0"), "{m}");
        assert_eq!(counts(&one_metrics), counts(&staged_metrics));
        let (x, _) = (one.process(frames, &mut a), ());
        String::from_utf8(x.lines).unwrap()
    }

    fn full_enrichment(dir: &std::path::Path) -> Enrichment {
        let list = dir.join("bad.netset");
        std::fs::write(&list, "# test\n81.2.69.0/24\n2001:db8::/32\n").unwrap();
        let mut e = Config::default().enrichment;
        e.geoip = Some(GeoIp { databases: vec![data("maxmind-test/GeoIP2-City-Test.mmdb")], layout: GeoLayout::GeoIp2, fields: vec![] });
        e.asn = Some(AsnData { databases: vec![data("maxmind-test/GeoLite2-ASN-Test.mmdb")], csv: vec![] });
        e.device_detection = Some(DeviceDetection { regexes: data("uap-core/regexes.yaml"), cache_size: 100 });
        e.threat_intel = Some(ThreatIntel { lists: vec![ThreatList { name: "bad".into(), path: list, kind: ThreatKind::KnownBad }], anonymous_ip: vec![], hosting_asns: vec![], proxy_asns: vec![], weights: ThreatWeights::default() });
        e.client_ip.trusted_proxies = vec!["10.0.0.0/8".into()];
        e
    }

    #[test]
    fn every_stage_in_one_pass_writes_and_counts_what_the_stages_one_by_one_do() {
        let dir = tempfile::tempdir().unwrap();
        let frames = frames(&events(600));
        let text = agree(&full_enrichment(dir.path()), &Config::default().redaction, &frames);
        // The events did meet every stage.
        for needle in ["\"geo\":", "\"asn\":", "\"device\":", "\"threat\":", "\"peer\":{\"address\":\"10.0.0.2\"}", "[REDACTED:email]", "\"redaction\":{\"fields\":[", "\"collector\":{\"host\":\"h1\"}"] {
            assert!(text.contains(needle), "{needle} missing");
        }
        assert!(!text.contains("jane@example.com") && !text.contains("123-45-6789") && !text.contains("k-123456"));
    }

    #[test]
    fn keyed_hashes_and_anonymized_addresses_agree_too() {
        let mut redaction = Config::default().redaction.unwrap();
        redaction.mode = RedactionMode::Hash;
        redaction.hash_key = Some(Secret::new("k1"));
        redaction.anonymize_client_ip = true;
        let frames = frames(&events(300));
        let mut trusting = Config::default().enrichment;
        trusting.client_ip.trusted_proxies = vec!["10.0.0.0/8".into()];
        let text = agree(&trusting, &Some(redaction.clone()), &frames);
        assert!(text.contains("hmac:") && text.contains("\"client.address\""));
        // Enrichment alone, and redaction alone with nobody trusted.
        let dir = tempfile::tempdir().unwrap();
        agree(&full_enrichment(dir.path()), &None, &frames);
        agree(&Config::default().enrichment, &Some(redaction), &frames);
    }
}
