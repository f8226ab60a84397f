//! Random events for the tests of the fast decoder and the JSON writer: every optional part
//! present or absent, text with escapes and non-ASCII, so both are held to serde's results.

use super::*;

/// A small deterministic generator, so a failure names a reproducible case.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn coin(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }
    pub fn text(&mut self) -> Cow<'static, str> {
        const WORDS: [&str; 8] = ["", "a", "GET", "/products/42", "Zürich", "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0", "x\"y\\z\n", "日本語のテキスト"];
        WORDS[(self.next() % 8) as usize].into()
    }
    pub fn opt_text(&mut self) -> Option<Cow<'static, str>> {
        self.coin().then(|| self.text())
    }
}

/// An event with every optional part present or absent at random (the filter's fields only:
/// the collector's own are left to the serde path by design).
pub fn random_event(rng: &mut Rng) -> Event<'static> {
    let headers = |rng: &mut Rng| Headers((0..rng.next() % 4).map(|_| (rng.text(), rng.text())).collect());
    let body = |rng: &mut Rng| Body { size: rng.next(), content: rng.opt_text(), truncated: rng.coin() };
    let protocol = |rng: &mut Rng| Protocol { version: rng.text() };
    Event {
        schema_version: SCHEMA_VERSION.into(),
        event: EventInfo { id: rng.text(), start_ns: rng.next() << 20, end_ns: u64::MAX - rng.next() },
        http: Http {
            request: HttpRequest { method: rng.text(), header: headers(rng), body: body(rng) },
            response: HttpResponse { status_code: (rng.next() % 600) as u16, header: headers(rng), body: body(rng) },
            route: rng.opt_text(),
        },
        url: Url { scheme: rng.opt_text(), domain: rng.opt_text(), path: rng.text(), query: rng.opt_text() },
        network: rng.coin().then(|| Network {
            protocol: rng.coin().then(|| protocol(rng)),
            peer: rng.coin().then(|| Peer { address: rng.text().into_owned() }),
        }),
        client: Client { address: rng.text(), port: rng.next() as u16 },
        tls: rng.coin().then(|| Tls { protocol: rng.coin().then(|| protocol(rng)), cipher: rng.opt_text(), server_name: rng.opt_text() }),
        upstream: rng.coin().then(|| Upstream {
            address: rng.opt_text(),
            attempts: rng.next() as u32,
            status_code: rng.coin().then(|| rng.next() as u16),
        }),
        timing: Timing {
            ttfb_ms: rng.coin().then(|| rng.next() as f64 / 7.0),
            total_ms: rng.next() as f64 / 3.0,
            upstream_ms: rng.coin().then_some(0.5),
            upstream_connect_ms: rng.coin().then_some(1e-9),
        },
        sentinel: rng.coin().then(|| Sentinel {
            decision: rng.opt_text(),
            risk_score: rng.coin().then(|| rng.next() as f32 / 11.0),
            rules: (0..rng.next() % 3).map(|_| rng.text()).collect(),
            agents: (0..rng.next() % 3)
                .map(|_| AgentVerdict { name: rng.text(), verdict: rng.text(), duration_ms: rng.next() as f64 / 13.0 })
                .collect(),
        }),
        sampling: Sampling { rate: rng.next() as f64, reason: rng.text() },
        filter: FilterInfo { version: rng.text() },
        ..Default::default()
    }
}

/// Runs `check` on damaged copies of `count` random frames: every truncation, and every byte
/// replaced in turn by values that change what a MessagePack marker means (and by itself with
/// its low bit flipped). Returns how many `check` answered for, and how many it was given.
pub fn damaged_frames(rng: &mut Rng, count: usize, mut check: impl FnMut(&[u8]) -> bool) -> (usize, usize) {
    let (mut answered, mut cases) = (0, 0);
    for _ in 0..count {
        let mut frame = Vec::new();
        random_event(rng).encode_into(&mut frame).expect("a random event encodes");
        for cut in 0..frame.len() {
            cases += 1;
            answered += usize::from(check(&frame[..cut]));
        }
        for i in 0..frame.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xca, 0xcb, 0xcc, 0xcd, 0xd9, 0xde, 0xff, frame[i] ^ 0x01] {
                let mut damaged = frame.clone();
                damaged[i] = v;
                cases += 1;
                answered += usize::from(check(&damaged));
            }
        }
    }
    (answered, cases)
}

/// A random event as the collector leaves it: the filter's fields plus every enrichment,
/// each present or absent.
pub fn random_enriched_event(rng: &mut Rng) -> Event<'static> {
    let mut e = random_event(rng);
    let place = |rng: &mut Rng| Place { iso_code: rng.opt_text().map(Cow::into_owned), name: rng.opt_text().map(Cow::into_owned) };
    e.geo = rng.coin().then(|| {
        Arc::new(Geo {
            continent: rng.coin().then(|| Code { code: rng.text().into_owned() }),
            country: rng.coin().then(|| place(rng)),
            region: rng.coin().then(|| place(rng)),
            locality: rng.coin().then(|| Named { name: rng.text().into_owned() }),
            postal_code: rng.opt_text().map(Cow::into_owned),
            timezone: rng.opt_text().map(Cow::into_owned),
            location: rng.coin().then(|| Location { lat: rng.next() as f64 / 1e7 - 90.0, lon: -(rng.next() as f64) / 3e6 }),
        })
    });
    e.asn = rng.coin().then(|| Arc::new(Asn { number: rng.next() as u32, organization: rng.opt_text().map(Cow::into_owned) }));
    e.device = rng.coin().then(|| {
        Arc::new(Device { kind: rng.text().into_owned(), brand: rng.opt_text().map(Cow::into_owned), model: rng.opt_text().map(Cow::into_owned) })
    });
    e.user_agent = rng.coin().then(|| UserAgent {
        original: rng.text(),
        name: rng.opt_text().map(|t| t.as_ref().into()),
        version: rng.opt_text().map(|t| t.as_ref().into()),
        is_bot: rng.coin(),
    });
    e.os = rng.coin().then(|| Arc::new(Os { name: rng.text().into_owned(), version: rng.opt_text().map(Cow::into_owned) }));
    e.threat = rng.coin().then(|| {
        Arc::new(Threat {
            known_bad: rng.coin(),
            tor_exit: rng.coin(),
            proxy: rng.coin(),
            hosting: rng.coin(),
            lists: (0..rng.next() % 3).map(|_| rng.text().into_owned()).collect(),
            score: (rng.next() % 101) as u32,
        })
    });
    e.redaction = rng.coin().then(|| Redaction { fields: (0..rng.next() % 3).map(|_| rng.text().into_owned()).collect() });
    e.collector = rng.coin().then(|| CollectorInfo { host: rng.text() });
    e
}
