//! The stages an event passes between ingest and the sinks, in order: decode the MessagePack
//! frame into the schema (a frame that is not a valid event is counted and skipped), sample
//! ([`crate::sample`]), enrich ([`crate::enrich`]), redact ([`crate::redact`]), stamp
//! `collector.host`, encode the NDJSON line the sinks write ([`Event::write_json_line`]). When
//! sampling keeps everything and no tap watches decoded or enriched events, each line is
//! written in one pass from its frame instead, the same bytes: with no other stage on, as it
//! is read ([`transcode`]); with enrichers or redaction, with them acting on the way
//! (`one_pass.rs`). The stages run on a pool of worker threads ([`workers`]), never on the
//! async reactor, one batch of frames at a time.

mod one_pass;
pub mod workers;

use crate::enrich::{Enrichers, EnrichmentHandle, Scratch};
use crate::redact::{self, Redactor};
use crate::sample::{SampleScratch, SamplingHandle};
use arc_swap::ArcSwap;
use crate::ingest::{Batch, Frames};
use crate::metrics::{Malformed, Metrics};
use crate::tap::{Stage, TapHub};
use sentinel_wire::event::{transcode, CollectorInfo, Event};
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// The stages' settings in force: read by the workers once per batch, replaced by reloads.
#[derive(Clone)]
pub struct Live {
    pub sampling: Arc<SamplingHandle>,
    pub enrichment: Arc<EnrichmentHandle>,
    pub redaction: Arc<ArcSwap<Option<Redactor>>>,
}

/// The stages, shared by every worker.
pub struct Pipeline {
    host: String,
    live: Live,
    taps: TapHub,
    metrics: Arc<Metrics>,
}

/// What one worker keeps between batches: each stage's caches and pending counts.
#[derive(Default)]
pub struct WorkerScratch {
    pub sample: SampleScratch,
    pub enrich: Scratch,
    pub redact: redact::Scratch,
}

impl Pipeline {
    pub fn new(host: String, live: Live, taps: TapHub, metrics: Arc<Metrics>) -> Self {
        Pipeline { host, live, taps, metrics }
    }

    /// Runs every stage over one batch of frames and returns the NDJSON lines of the events
    /// that made it through. Taps of the decoded and enriched stages get their own rendering,
    /// only while a session watches them.
    pub fn process(&self, frames: &Frames, scratch: &mut WorkerScratch) -> Batch {
        #[cfg(test)]
        if frames.iter().any(|f| f == tests::PANIC_FRAME) {
            panic!("a stage panicked (the tests' frame)");
        }
        let enrichers = self.live.enrichment.current();
        let sampler = self.live.sampling.current();
        let mut out = Batch { lines: Vec::with_capacity(frames.payload_bytes() * 3), ..Batch::default() };
        let redaction = self.live.redaction.load();
        // No stage needs the decoded event: each line in one pass.
        let stages_idle = sampler.is_pass_through() && enrichers.is_inert() && redaction.is_none();
        let watched = self.taps.watching(Stage::Decoded) || self.taps.watching(Stage::Enriched);
        if stages_idle && !watched {
            self.forward(frames, &mut out);
            return out;
        }
        if sampler.is_pass_through() && !watched {
            self.one_pass(frames, &enrichers, redaction.as_ref().as_ref(), scratch, &mut out);
            return out;
        }
        // Stage by stage over the whole batch: each stage's code and data stay hot, and each
        // is timed once per batch.
        let t0 = Instant::now();
        let mut events: Vec<Event<'_>> = Vec::with_capacity(frames.len());
        events.extend(frames.iter().filter_map(|frame| self.decode(frame)));
        self.tap(Stage::Decoded, &events);
        let t1 = Instant::now();
        let dropped = sampler.sample(&mut events, &mut scratch.sample);
        self.metrics.sampled_out_rate.fetch_add(dropped.rate, Relaxed);
        self.metrics.sampled_out_dynamic.fetch_add(dropped.dynamic, Relaxed);
        self.metrics.sampling_keys.store(sampler.sampled_keys() as u64, Relaxed);
        let t_sampled = Instant::now();
        for event in &mut events {
            enrichers.enrich(event, &mut scratch.enrich);
            self.stamp(event);
        }
        self.tap(Stage::Enriched, &events);
        let t_enriched = Instant::now();
        if let Some(r) = redaction.as_ref() {
            let mut redacted = 0;
            for event in &mut events {
                r.redact(event, &mut scratch.redact);
                redacted += u64::from(event.redaction.is_some());
            }
            self.metrics.events_redacted.fetch_add(redacted, Relaxed);
            let (hits, misses) = scratch.redact.take_counts();
            self.metrics.redaction_memory[0].fetch_add(hits, Relaxed);
            self.metrics.redaction_memory[1].fetch_add(misses, Relaxed);
        }
        let t2 = Instant::now();
        for event in &events {
            event.write_json_line(&mut out.lines);
        }
        out.events = events.len() as u64;
        let t3 = Instant::now();
        let [decode_t, sample_t, enrich_t, redact_t, encode_t, ..] = &self.metrics.stage_seconds;
        decode_t.record(t1 - t0);
        sample_t.record(t_sampled - t1);
        enrich_t.record(t_enriched - t_sampled);
        redact_t.record(t2 - t_enriched);
        encode_t.record(t3 - t2);
        scratch.enrich.publish(&self.metrics.enrich);
        self.metrics.events_received.fetch_add(out.events, Relaxed);
        out
    }

    /// The event in `frame`; a frame that is not one is counted and skipped. What the collector
    /// itself adds (`geo` to `threat`, `redaction`, `collector`) is dropped from the frame: a
    /// proxy cannot make an event claim a country, a clean threat record or a redaction that
    /// did not happen, even where that enricher is off.
    fn decode<'f>(&self, frame: &'f [u8]) -> Option<Event<'f>> {
        Event::decode(frame)
            .inspect_err(|e| {
                tracing::debug!("skipping frame: {e}");
                self.metrics.malformed(Malformed::BadEvent);
            })
            .ok()
            .map(|mut e| {
                drop_collector_fields(&mut e);
                e
            })
    }

    /// `collector.host`: which collector wrote the event.
    fn stamp<'e>(&'e self, event: &mut Event<'e>) {
        event.collector = Some(CollectorInfo { host: Cow::Borrowed(&self.host) });
    }

    /// Forwarding: each frame's line in one pass, or, for a frame not in the filters' shape,
    /// decoded and encoded (the same line).
    fn forward(&self, frames: &Frames, out: &mut Batch) {
        let t0 = Instant::now();
        for frame in frames.iter() {
            if transcode::json_line(frame, Some(&self.host), &mut out.lines) {
                out.events += 1;
            } else if let Some(mut event) = self.decode(frame) {
                self.stamp(&mut event);
                event.write_json_line(&mut out.lines);
                out.events += 1;
            }
        }
        let [.., forward_t, _] = &self.metrics.stage_seconds;
        forward_t.record(t0.elapsed());
        self.metrics.events_received.fetch_add(out.events, Relaxed);
    }

    /// Every stage in one pass per frame ([`one_pass`]); a frame not in the filters' shape is
    /// decoded and takes the stages as usual.
    fn one_pass(&self, frames: &Frames, enrichers: &Arc<Enrichers>, redactor: Option<&Redactor>, scratch: &mut WorkerScratch, out: &mut Batch) {
        let t0 = Instant::now();
        if let Some(r) = redactor {
            r.begin(&mut scratch.redact);
        }
        let mut redacted = 0;
        for frame in frames.iter() {
            let changed = match one_pass::OnePass::line(frame, enrichers, redactor, scratch, &self.host, &mut out.lines) {
                Some(changed) => changed,
                None => {
                    let Some(mut event) = self.decode(frame) else { continue };
                    enrichers.enrich(&mut event, &mut scratch.enrich);
                    self.stamp(&mut event);
                    if let Some(r) = redactor {
                        r.redact(&mut event, &mut scratch.redact);
                    }
                    event.write_json_line(&mut out.lines);
                    event.redaction.is_some()
                }
            };
            out.events += 1;
            redacted += u64::from(changed);
        }
        if redactor.is_some() {
            self.metrics.events_redacted.fetch_add(redacted, Relaxed);
            let (hits, misses) = scratch.redact.take_counts();
            self.metrics.redaction_memory[0].fetch_add(hits, Relaxed);
            self.metrics.redaction_memory[1].fetch_add(misses, Relaxed);
        }
        let [.., one_pass_t] = &self.metrics.stage_seconds;
        one_pass_t.record(t0.elapsed());
        scratch.enrich.publish(&self.metrics.enrich);
        self.metrics.events_received.fetch_add(out.events, Relaxed);
    }

    /// Renders the events for the taps of `stage`, only while a session watches it.
    fn tap(&self, stage: Stage, events: &[Event<'_>]) {
        if !self.taps.watching(stage) {
            return;
        }
        let mut batch = Batch::default();
        for e in events {
            e.write_json_line(&mut batch.lines);
        }
        batch.events = events.len() as u64;
        self.taps.offer(stage, &Arc::new(batch));
    }
}

/// This machine's host name, for `collector.host`.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Clears the parts of an event only the collector writes.
fn drop_collector_fields(e: &mut Event<'_>) {
    e.geo = None;
    e.asn = None;
    e.device = None;
    e.user_agent = None;
    e.os = None;
    e.threat = None;
    e.redaction = None;
    e.collector = None;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::enrich::mmdb::tests::data;
    use sentinel_config::{Enrichment, GeoIp, GeoLayout};

    /// A frame that makes [`Pipeline::process`] panic, to test that a panic is contained.
    pub(crate) const PANIC_FRAME: &[u8] = b"make a stage panic";

    #[test]
    fn what_only_the_collector_writes_is_dropped_from_a_frame() {
        let mut ev = Event { event: sentinel_wire::event::EventInfo { id: "x".into(), start_ns: 1, end_ns: 2 }, ..Default::default() };
        ev.client.address = "192.0.2.1".into();
        ev.geo = Some(Arc::new(sentinel_wire::event::Geo { country: Some(sentinel_wire::event::Place { iso_code: Some("ZZ".into()), name: None }), ..Default::default() }));
        ev.threat = Some(Arc::new(sentinel_wire::event::Threat { score: 0, ..Default::default() }));
        ev.redaction = Some(sentinel_wire::event::Redaction { fields: vec!["url.path".into()] });
        let mut f = Vec::new();
        ev.encode_into(&mut f).unwrap();
        // Forwarding only, and with every stage on: neither keeps what the frame claimed.
        for redaction in [None, sentinel_config::Config::default().redaction] {
            let (p, _) = with_redaction(&sentinel_config::Config::default().enrichment, &redaction);
            let mut frames = Frames::default();
            frames.push(&f);
            let batch = p.process(&frames, &mut WorkerScratch::default());
            let line: serde_json::Value = serde_json::from_slice(batch.lines.split(|b| *b == b'\n').next().unwrap()).unwrap();
            assert!(line.get("geo").is_none() && line.get("threat").is_none() && line.get("redaction").is_none(), "{line}");
            assert_eq!(line["collector"]["host"], "h1");
        }
    }

    fn pipeline(enrichment: &Enrichment) -> (Pipeline, Arc<Metrics>) {
        with_redaction(enrichment, &sentinel_config::Config::default().redaction)
    }

    pub(crate) fn with_redaction(enrichment: &Enrichment, redaction: &Option<sentinel_config::Redaction>) -> (Pipeline, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let handle = Arc::new(EnrichmentHandle::start(enrichment, metrics.enrich.clone()).unwrap());
        let sampling = Arc::new(SamplingHandle::new(&sentinel_config::Config::default().sampling));
        let redaction = Arc::new(ArcSwap::from_pointee(Redactor::new(redaction)));
        (Pipeline::new("h1".into(), Live { sampling, enrichment: handle, redaction }, TapHub::default(), metrics.clone()), metrics)
    }

    fn frame(id: &str, client: &str) -> Vec<u8> {
        let mut ev = Event { event: sentinel_wire::event::EventInfo { id: id.into(), start_ns: 1, end_ns: 2 }, ..Default::default() };
        ev.client.address = client.into();
        let mut f = Vec::new();
        ev.encode_into(&mut f).unwrap();
        f
    }

    #[test]
    fn valid_frames_become_lines_and_garbage_is_counted() {
        let (p, metrics) = pipeline(&sentinel_config::Config::default().enrichment);
        let mut frames = Frames::default();
        frames.push(&frame("a", "192.0.2.1"));
        frames.push(b"\xc1\xc1garbage");
        frames.push(&frame("b", "192.0.2.2"));
        let batch = p.process(&frames, &mut WorkerScratch::default());
        assert_eq!(batch.events, 2);
        let lines: Vec<serde_json::Value> = batch.lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"]["id"], "a");
        assert_eq!(lines[1]["collector"]["host"], "h1");
        assert_eq!(metrics.malformed_count(Malformed::BadEvent), 1);
        assert_eq!(metrics.events_received.load(Relaxed), 2);
    }

    #[test]
    fn a_forwarding_pipeline_writes_in_one_pass_what_the_stages_write() {
        let enrichment = sentinel_config::Config::default().enrichment;
        let (forward, metrics) = with_redaction(&enrichment, &None);
        let mut frames = Frames::default();
        frames.push(&frame("a", "192.0.2.1"));
        frames.push(b"\xc1\xc1garbage");
        // Decodable, not in the filters' shape (an unknown field first): decoded and encoded.
        let b = frame("b", "192.0.2.2");
        let mut odd = vec![b[0] + 1, 0xa5, b'n', b'e', b'w', b'e', b'r', 0x07];
        odd.extend_from_slice(&b[1..]);
        frames.push(&odd);
        let batch = forward.process(&frames, &mut WorkerScratch::default());
        assert_eq!(batch.events, 2);
        assert_eq!(metrics.malformed_count(Malformed::BadEvent), 1);
        // The same frames through every stage (a tap on decoded events keeps the stages on).
        let (staged, staged_metrics) = with_redaction(&enrichment, &None);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _in_runtime = runtime.enter();
        let request = crate::tap::TapRequest { filter: crate::tap::filter::Filter::parse("").unwrap(), rate: 0, stage: Stage::Decoded };
        let _tap = staged.taps.open(request, staged_metrics.clone());
        let reference = staged.process(&frames, &mut WorkerScratch::default());
        assert_eq!(String::from_utf8_lossy(&batch.lines), String::from_utf8_lossy(&reference.lines));
        assert!(String::from_utf8_lossy(&batch.lines).contains(r#""collector":{"host":"h1"}}"#));
        let text = metrics.render_prometheus();
        assert!(text.contains("sentinel_collector_stage_seconds_count{stage=\"forward\"} 1"), "{text}");
        assert!(text.contains("sentinel_collector_stage_seconds_count{stage=\"decode\"} 0"), "{text}");
        assert!(staged_metrics.render_prometheus().contains("sentinel_collector_stage_seconds_count{stage=\"forward\"} 0"));
    }

    #[test]
    fn a_reload_that_turns_redaction_on_ends_forwarding_at_the_next_batch() {
        let (p, metrics) = with_redaction(&sentinel_config::Config::default().enrichment, &None);
        let mut ev = Event { event: sentinel_wire::event::EventInfo { id: "a".into(), ..Default::default() }, ..Default::default() };
        ev.http.request.header.0.push(("referer".into(), "https://x.example/?mail=jane@example.org".into()));
        let mut f = Vec::new();
        ev.encode_into(&mut f).unwrap();
        let mut frames = Frames::default();
        frames.push(&f);
        let forwarded = p.process(&frames, &mut WorkerScratch::default());
        assert!(String::from_utf8_lossy(&forwarded.lines).contains("jane@example.org"));
        // What a reload does: the redaction settings in force are replaced.
        p.live.redaction.store(Arc::new(Redactor::new(&sentinel_config::Config::default().redaction)));
        let redacted = p.process(&frames, &mut WorkerScratch::default());
        let text = String::from_utf8_lossy(&redacted.lines);
        assert!(!text.contains("jane@example.org") && text.contains("[REDACTED:email]"), "{text}");
        let m = metrics.render_prometheus();
        assert!(m.contains("sentinel_collector_stage_seconds_count{stage=\"forward\"} 1"), "{m}");
        assert!(m.contains("sentinel_collector_stage_seconds_count{stage=\"one_pass\"} 1"), "{m}");
    }

    #[test]
    fn redaction_remembers_clean_texts_and_counts_its_memory() {
        let (p, metrics) = pipeline(&sentinel_config::Config::default().enrichment);
        let mut frames = Frames::default();
        for (id, referer) in [("a", "https://shop.example/products/42"), ("b", "https://shop.example/products/42"), ("c", "https://x.example/?mail=jane@example.org")] {
            let mut ev = Event { event: sentinel_wire::event::EventInfo { id: id.into(), ..Default::default() }, ..Default::default() };
            ev.http.request.header.0.push(("referer".into(), referer.into()));
            let mut f = Vec::new();
            ev.encode_into(&mut f).unwrap();
            frames.push(&f);
        }
        let mut scratch = WorkerScratch::default();
        let batch = p.process(&frames, &mut scratch);
        assert!(String::from_utf8_lossy(&batch.lines).contains("mail=[REDACTED:email]"));
        // The clean referer: scanned once, then found; the dirty one: scanned.
        assert_eq!((metrics.redaction_memory[0].load(Relaxed), metrics.redaction_memory[1].load(Relaxed)), (1, 2));
        let text = metrics.render_prometheus();
        assert!(text.contains("sentinel_collector_redaction_memory_total{result=\"hit\"} 1"), "{text}");
    }

    #[test]
    fn a_forwarded_client_address_is_written_as_an_address_is() {
        let mut cfg = sentinel_config::Config::default().enrichment;
        cfg.client_ip.trusted_proxies = vec!["10.0.0.0/8".into()];
        let (p, _) = pipeline(&cfg);
        let mut frames = Frames::default();
        for chain in ["198.51.100.7, 203.0.113.9", "[2001:DB8:0::7]:80", "192.0.2.4:5555", "10.1.1.1"] {
            let mut ev = Event { event: sentinel_wire::event::EventInfo { id: chain.into(), ..Default::default() }, ..Default::default() };
            ev.client.address = "10.0.0.2".into();
            ev.http.request.header.0.push(("x-forwarded-for".into(), chain.into()));
            let mut f = Vec::new();
            ev.encode_into(&mut f).unwrap();
            frames.push(&f);
        }
        let batch = p.process(&frames, &mut WorkerScratch::default());
        let lines: Vec<serde_json::Value> = batch.lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        let clients: Vec<&str> = lines.iter().map(|l| l["client"]["address"].as_str().unwrap()).collect();
        assert_eq!(clients, ["203.0.113.9", "2001:db8::7", "192.0.2.4", "10.1.1.1"]);
        assert!(lines.iter().all(|l| l["network"]["peer"]["address"] == "10.0.0.2"));
    }

    #[test]
    fn enrichment_adds_geo_and_counts_lookups() {
        let mut cfg = sentinel_config::Config::default().enrichment;
        cfg.geoip = Some(GeoIp { databases: vec![data("maxmind-test/GeoIP2-City-Test.mmdb")], layout: GeoLayout::GeoIp2, fields: vec![] });
        let (p, metrics) = pipeline(&cfg);
        let mut frames = Frames::default();
        frames.push(&frame("a", "81.2.69.160"));
        frames.push(&frame("b", "10.0.0.1"));
        let batch = p.process(&frames, &mut WorkerScratch::default());
        let text = String::from_utf8(batch.lines).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["geo"]["country"]["iso_code"], "GB");
        assert_eq!(first["geo"]["locality"]["name"], "London");
        let second: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert!(second.get("geo").is_none());
        use crate::metrics::Enricher;
        assert_eq!((metrics.enrich.lookups(Enricher::Geo, 0), metrics.enrich.lookups(Enricher::Geo, 1)), (1, 1));
    }
}
