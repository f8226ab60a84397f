//! The collector's counters, shared by every part and rendered at `/metrics`.

use sentinel_wire::prometheus::{Exposition, Histogram};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use sentinel_wire::stats::HostStats;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// Most proxies whose counters are served at once (one per connection).
const MAX_HOSTS: usize = 256;
/// Longest label value taken from a peer, and most drop reasons kept per proxy.
const MAX_LABEL_BYTES: usize = 128;
const MAX_DROP_REASONS: usize = 16;

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

/// Why a frame or connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The connection did not open with the STEL hello.
    BadHello,
    /// A frame header named an unknown kind or was empty: the framing is lost, the peer is cut.
    BadFrame,
    /// The frame's payload was not a valid event.
    BadEvent,
    /// A pipeline stage panicked on the batch holding the frame: the batch was dropped (and
    /// acknowledged, so the connection goes on), each of its frames counted here.
    Panic,
}

impl Malformed {
    pub const ALL: [Malformed; 4] = [Malformed::BadHello, Malformed::BadFrame, Malformed::BadEvent, Malformed::Panic];

    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::BadHello => "bad_hello",
            Malformed::BadFrame => "bad_frame",
            Malformed::BadEvent => "bad_event",
            Malformed::Panic => "pipeline_panic",
        }
    }
}

/// The enrichers, as metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enricher {
    Geo,
    Asn,
    Device,
    Threat,
}

impl Enricher {
    pub const ALL: [Enricher; 4] = [Enricher::Geo, Enricher::Asn, Enricher::Device, Enricher::Threat];

    pub fn name(self) -> &'static str {
        match self {
            Enricher::Geo => "geo",
            Enricher::Asn => "asn",
            Enricher::Device => "device",
            Enricher::Threat => "threat",
        }
    }
}

/// The enrichment stage's caches, as metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    UserAgent,
    Address,
}

/// The enrichment stage's counters: results by enricher (`hit`: data found, `miss`: none for
/// this address or agent, `error`: the data could not be read), the caches, and data file
/// reloads.
#[derive(Debug, Default)]
pub struct EnrichMetrics {
    lookups: [[AtomicU64; 3]; 4],
    /// Cache hits and misses, by [`CacheKind`].
    cache: [[AtomicU64; 2]; 2],
    pub data_reloads_ok: AtomicU64,
    pub data_reloads_failed: AtomicU64,
}

impl EnrichMetrics {
    /// Adds one worker's `[hit, miss, error]` counts for an enricher.
    pub fn add(&self, e: Enricher, counts: &[u64; 3]) {
        for (slot, n) in self.lookups[e as usize].iter().zip(counts) {
            if *n > 0 {
                slot.fetch_add(*n, Relaxed);
            }
        }
    }

    pub fn add_cache(&self, c: CacheKind, hits: u64, misses: u64) {
        for (slot, n) in self.cache[c as usize].iter().zip([hits, misses]) {
            if n > 0 {
                slot.fetch_add(n, Relaxed);
            }
        }
    }

    /// Lookups of one enricher with one result (`0` hit, `1` miss, `2` error).
    pub fn lookups(&self, e: Enricher, result: usize) -> u64 {
        self.lookups[e as usize][result].load(Relaxed)
    }

    fn render(&self, e: &mut Exposition) {
        let mut rows = Vec::new();
        for en in Enricher::ALL {
            for (i, result) in ["hit", "miss", "error"].iter().enumerate() {
                rows.push((format!("{{enricher=\"{}\",result=\"{result}\"}}", en.name()), self.lookups(en, i)));
            }
        }
        let rows: Vec<(&str, u64)> = rows.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        let g = |a: &AtomicU64| a.load(Relaxed);
        let mut cache = Vec::new();
        for (i, kind) in ["user_agent", "address"].iter().enumerate() {
            for (j, result) in ["hit", "miss"].iter().enumerate() {
                cache.push((format!("{{cache=\"{kind}\",result=\"{result}\"}}"), g(&self.cache[i][j])));
            }
        }
        let cache: Vec<(&str, u64)> = cache.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        e.family("sentinel_collector_enrich_lookups_total", "Enrichment results per event, by enricher: data found (hit), none (miss), lookup failed (error).", "counter", &rows)
            .family("sentinel_collector_enrich_cache_total", "Enrichment cache lookups, by cache and result.", "counter", &cache)
            .labelled("sentinel_collector_enrich_data_reloads_total", "Enrichment data file reloads, by result.", "counter", "result", &[("ok", g(&self.data_reloads_ok)), ("failed", g(&self.data_reloads_failed))]);
    }
}

/// Pipeline stages, as metric label values: the five an event passes one by one, `forward`,
/// the one pass from frame to line a batch takes when no stage needs the decoded event, and
/// `one_pass`, the same with enrichment or redaction acting on the way.
pub const STAGE_NAMES: [&str; 7] = ["decode", "sample", "enrich", "redact", "encode", "forward", "one_pass"];

/// All counters of one collector.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    /// Connections turned away by the transport's peer check.
    pub connections_refused: AtomicU64,
    /// Connections closed after sending nothing for the idle timeout.
    pub connections_idle_closed: AtomicU64,
    pub connections_active: AtomicU64,
    pub frames_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Events decoded and accepted into the pipeline.
    pub events_received: AtomicU64,
    malformed: [AtomicU64; 4],
    pub oversized: AtomicU64,
    /// Every sink that ever ran, by id; kept after a sink is removed so counters never go back.
    sinks: RwLock<Vec<(String, Arc<SinkMetrics>)>>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Tap sessions open now, and what they skipped: events over a session's rate, events its
    /// client was too slow to take, and batches the session fell behind on.
    pub tap_sessions: AtomicU64,
    pub tap_rate_limited: AtomicU64,
    pub tap_slow_client: AtomicU64,
    pub tap_lagged_batches: AtomicU64,
    /// Counter frames received from proxies, and the latest of each connected proxy.
    pub stats_frames: AtomicU64,
    /// Counter frames not served because [`MAX_HOSTS`] proxies already are.
    pub stats_refused: AtomicU64,
    hosts: Mutex<BTreeMap<String, HostStats>>,
    pub enrich: Arc<EnrichMetrics>,
    /// Time each pipeline stage spends on one batch, by stage.
    pub stage_seconds: [Histogram; 7],
    /// Events the redaction stage changed.
    pub events_redacted: AtomicU64,
    /// Texts redaction looked up in its workers' clean-text memory: found, not found.
    pub redaction_memory: [AtomicU64; 2],
    /// Events the collector's sampling left out, by reason (the fixed rate, the dynamic sampler).
    pub sampled_out_rate: AtomicU64,
    pub sampled_out_dynamic: AtomicU64,
    /// Keys the dynamic sampler currently samples below rate 1.
    pub sampling_keys: AtomicU64,
    /// Batches waiting for a pipeline worker.
    pub pipeline_queue: AtomicU64,
    pub wal: WalMetrics,
    /// Acknowledgement frames written to proxies.
    pub acks_sent: AtomicU64,
}

/// The write-ahead log's counters.
#[derive(Debug, Default)]
pub struct WalMetrics {
    /// Bytes (spares included) and live segment files on disk now.
    pub bytes: AtomicU64,
    pub segments: AtomicU64,
    /// Delivered segment files kept for reuse now, and segments started in a reused file.
    pub spare_segments: AtomicU64,
    pub recycled_segments: AtomicU64,
    pub appended_records: AtomicU64,
    pub appended_events: AtomicU64,
    /// Time of one fsync.
    pub fsync_seconds: Histogram,
    /// Records that failed their checksum (or could not be followed), skipped.
    pub corrupt_records: AtomicU64,
    /// Times the writer found the log at its cap and waited (`block`), and whether it waits now.
    pub full_blocked: AtomicU64,
    pub blocked: AtomicU64,
    /// Segments deleted at the cap before every sink had them (`drop_oldest`).
    pub dropped_segments: AtomicU64,
    /// Appends that failed (disk full, I/O error) and were retried.
    pub write_errors: AtomicU64,
}

impl WalMetrics {
    fn render(&self, e: &mut Exposition) {
        let g = |a: &AtomicU64| a.load(Relaxed);
        e.gauge("sentinel_collector_buffer_bytes", "Bytes of write-ahead log segments on disk, spares included.", g(&self.bytes))
            .gauge("sentinel_collector_buffer_segments", "Write-ahead log segment files on disk holding records.", g(&self.segments))
            .gauge("sentinel_collector_buffer_spare_segments", "Delivered segment files kept for the writer to reuse.", g(&self.spare_segments))
            .counter("sentinel_collector_buffer_recycled_segments_total", "Segments the writer started in a reused file instead of a new one.", g(&self.recycled_segments))
            .counter("sentinel_collector_buffer_records_total", "Records appended to the write-ahead log (one per processed batch).", g(&self.appended_records))
            .counter("sentinel_collector_buffer_events_total", "Events made durable in the write-ahead log.", g(&self.appended_events))
            .counter("sentinel_collector_buffer_corrupt_records_total", "Log records that failed their checksum or could not be read, skipped.", g(&self.corrupt_records))
            .counter("sentinel_collector_buffer_full_total", "Times the log reached its size cap with `when-full block` and the writer waited.", g(&self.full_blocked))
            .gauge("sentinel_collector_buffer_blocked", "1 while the writer waits for space (nothing new is acknowledged).", g(&self.blocked))
            .counter("sentinel_collector_buffer_dropped_segments_total", "Segments deleted at the cap before every sink had them (`when-full drop_oldest`).", g(&self.dropped_segments))
            .counter("sentinel_collector_buffer_write_errors_total", "Log appends that failed and were retried.", g(&self.write_errors))
            .histograms("sentinel_collector_buffer_fsync_seconds", "Time of one fsync of the log.", "log", &[("wal", &self.fsync_seconds)]);
    }
}

/// Bounds from 1 ms to 10 min: how old an event is when a sink has delivered it.
pub const DELIVERY_BUCKETS_US: &[u64] = &[
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000, 5_000_000,
    7_500_000, 10_000_000, 12_500_000, 15_000_000, 20_000_000, 30_000_000, 60_000_000, 120_000_000, 300_000_000, 600_000_000,
];

/// A histogram with [`DELIVERY_BUCKETS_US`].
#[derive(Debug)]
pub struct DeliveryHistogram(pub Histogram);

impl Default for DeliveryHistogram {
    fn default() -> Self {
        DeliveryHistogram(Histogram::new(DELIVERY_BUCKETS_US))
    }
}

/// One sink's counters.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub events_written: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Events accepted but lost because the sink could not write them.
    pub events_dropped: AtomicU64,
    pub write_errors: AtomicU64,
    pub files_rotated: AtomicU64,
    /// Time to deliver one batch (until the destination acknowledged it).
    pub batch_seconds: Histogram,
    /// Age of each event when its destination had it durably (request end → delivered).
    pub delivery_seconds: DeliveryHistogram,
    /// Log records the sink has not delivered yet.
    pub lag_records: AtomicU64,
    /// The circuit breaker: 0 closed, 1 open, 2 half-open (one trial batch).
    pub circuit_open: AtomicU64,
    /// Failed deliveries retried after a backoff, and batches refused for good.
    pub retries: AtomicU64,
    pub rejected_batches: AtomicU64,
}

impl Metrics {
    pub fn malformed(&self, why: Malformed) {
        self.malformed[why as usize].fetch_add(1, Relaxed);
    }

    pub fn malformed_count(&self, why: Malformed) -> u64 {
        self.malformed[why as usize].load(Relaxed)
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().map(|m| m.load(Relaxed)).sum()
    }

    /// Keeps the latest counters a proxy sent.
    /// Serves a proxy's counters; returns the name they are served under (`None`: refused).
    pub fn host_stats(&self, mut s: HostStats) -> Option<String> {
        self.stats_frames.fetch_add(1, Relaxed);
        // Label values come from the peer: bounded in length and number, so no peer can make
        // the exposition (or this map) grow without end.
        cut(&mut s.proxy, MAX_LABEL_BYTES);
        cut(&mut s.filter_version, MAX_LABEL_BYTES);
        if s.dropped.len() > MAX_DROP_REASONS || s.dropped.keys().any(|k| k.len() > MAX_LABEL_BYTES) {
            s.dropped = std::mem::take(&mut s.dropped)
                .into_iter()
                .take(MAX_DROP_REASONS)
                .map(|(mut k, v)| {
                    cut(&mut k, MAX_LABEL_BYTES);
                    (k, v)
                })
                .collect();
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if hosts.len() >= MAX_HOSTS && !hosts.contains_key(&s.proxy) {
            self.stats_refused.fetch_add(1, Relaxed);
            return None;
        }
        let name = s.proxy.clone();
        hosts.insert(s.proxy.clone(), s);
        Some(name)
    }

    /// How many proxies' counters are served now.
    pub fn hosts_served(&self) -> usize {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Stops serving a proxy's counters (its connection closed).
    pub fn forget_host(&self, proxy: &str) {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).remove(proxy);
    }

    /// The connected proxies' counters: the families each proxy serves, with a `proxy` label.
    fn render_hosts(&self, e: &mut Exposition) {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let hosts: Vec<&HostStats> = hosts.values().collect();
        sentinel_wire::stats::render(&hosts, true, e);
    }

    /// The counters of sink `id`, created on first use.
    pub fn sink(&self, id: &str) -> Arc<SinkMetrics> {
        if let Some((_, m)) = self.sinks.read().unwrap_or_else(|p| p.into_inner()).iter().find(|(k, _)| k == id) {
            return m.clone();
        }
        let mut w = self.sinks.write().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = w.iter().find(|(k, _)| k == id) {
            return m.clone();
        }
        let m = Arc::new(SinkMetrics::default());
        w.push((id.to_string(), m.clone()));
        m
    }

    /// One counter summed over every sink.
    pub fn sum_sinks(&self, field: impl Fn(&SinkMetrics) -> &AtomicU64) -> u64 {
        self.sinks.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(_, m)| field(m).load(Relaxed)).sum()
    }

    pub fn render_prometheus(&self) -> String {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let malformed: Vec<(&str, u64)> = Malformed::ALL.iter().map(|m| (m.as_str(), self.malformed_count(*m))).collect();
        let mut e = Exposition::new();
        e.counter("sentinel_collector_connections_total", "Proxy connections accepted.", g(&self.connections))
            .counter("sentinel_collector_connections_refused_total", "Connections refused by the peer check (allowed-uids/allowed-gids) or the connection limit.", g(&self.connections_refused))
            .counter("sentinel_collector_connections_idle_closed_total", "Connections closed after sending nothing for the idle timeout.", g(&self.connections_idle_closed))
            .gauge("sentinel_collector_connections_active", "Proxy connections open now.", g(&self.connections_active))
            .counter("sentinel_collector_frames_received_total", "Event frames read from proxies.", g(&self.frames_received))
            .counter("sentinel_collector_stats_frames_total", "Counter frames read from proxies.", g(&self.stats_frames))
            .counter("sentinel_collector_stats_refused_total", "Counter frames not served: as many proxies as allowed already are.", g(&self.stats_refused))
            .counter("sentinel_collector_received_bytes_total", "Bytes read from proxies.", g(&self.bytes_received))
            .counter("sentinel_collector_events_received_total", "Events decoded and accepted.", g(&self.events_received))
            .labelled("sentinel_collector_malformed_total", "Frames or connections refused, by reason.", "counter", "reason", &malformed)
            .counter("sentinel_collector_oversized_frames_total", "Frames over the size limit, skipped.", g(&self.oversized))
            .counter("sentinel_collector_acks_sent_total", "Acknowledgement frames written to proxies (each covers every durable frame before it).", g(&self.acks_sent))
            .gauge("sentinel_collector_tap_sessions", "Tap sessions open.", g(&self.tap_sessions))
            .labelled(
                "sentinel_collector_tap_skipped_total",
                "What taps skipped so the pipeline never waits: events over the rate, events for a slow client, batches a session fell behind on.",
                "counter",
                "reason",
                &[("rate", g(&self.tap_rate_limited)), ("slow_client", g(&self.tap_slow_client)), ("lagged_batches", g(&self.tap_lagged_batches))],
            )
            .labelled("sentinel_collector_config_reloads_total", "Configuration reloads, by result.", "counter", "result", &[("ok", g(&self.reloads_ok)), ("failed", g(&self.reloads_failed))]);
        let sinks = self.sinks.read().unwrap_or_else(|p| p.into_inner());
        let by_sink = |f: fn(&SinkMetrics) -> &AtomicU64| -> Vec<(&str, u64)> { sinks.iter().map(|(id, m)| (id.as_str(), f(m).load(Relaxed))).collect() };
        e.labelled("sentinel_collector_events_written_total", "Events written, by sink.", "counter", "sink", &by_sink(|m| &m.events_written))
            .labelled("sentinel_collector_written_bytes_total", "Bytes written, by sink.", "counter", "sink", &by_sink(|m| &m.bytes_written))
            .labelled("sentinel_collector_events_dropped_total", "Accepted events lost, by sink.", "counter", "sink", &by_sink(|m| &m.events_dropped))
            .labelled("sentinel_collector_write_errors_total", "Failed sink writes, by sink.", "counter", "sink", &by_sink(|m| &m.write_errors))
            .labelled("sentinel_collector_files_rotated_total", "Output files rotated, by sink.", "counter", "sink", &by_sink(|m| &m.files_rotated))
            .labelled("sentinel_collector_sink_lag_records", "Buffered records a sink has not delivered yet, by sink.", "gauge", "sink", &by_sink(|m| &m.lag_records))
            .labelled("sentinel_collector_sink_circuit_state", "Circuit breaker by sink: 0 closed, 1 open, 2 half-open.", "gauge", "sink", &by_sink(|m| &m.circuit_open))
            .labelled("sentinel_collector_sink_retries_total", "Failed deliveries retried after a backoff, by sink.", "counter", "sink", &by_sink(|m| &m.retries))
            .labelled("sentinel_collector_sink_rejected_batches_total", "Batches a destination refused for good (dropped, counted in events_dropped), by sink.", "counter", "sink", &by_sink(|m| &m.rejected_batches));
        let latency: Vec<(&str, &Histogram)> = sinks.iter().map(|(id, m)| (id.as_str(), &m.batch_seconds)).collect();
        e.histograms("sentinel_collector_sink_batch_seconds", "Time to deliver one batch, by sink.", "sink", &latency);
        let ages: Vec<(&str, &Histogram)> = sinks.iter().map(|(id, m)| (id.as_str(), &m.delivery_seconds.0)).collect();
        e.histograms("sentinel_collector_sink_delivery_seconds", "Age of each event when its sink had delivered it durably (request end to acknowledgement), by sink.", "sink", &ages);
        drop(sinks);
        self.enrich.render(&mut e);
        self.wal.render(&mut e);
        let stages: Vec<(&str, &Histogram)> = STAGE_NAMES.iter().copied().zip(self.stage_seconds.iter()).collect();
        e.histograms("sentinel_collector_stage_seconds", "Time a pipeline stage spends on one batch, by stage.", "stage", &stages)
            .gauge("sentinel_collector_pipeline_queue_batches", "Batches waiting for a pipeline worker.", g(&self.pipeline_queue))
            .labelled("sentinel_collector_sampled_out_total", "Events the collector's sampling left out, by reason.", "counter", "reason", &[("rate", g(&self.sampled_out_rate)), ("dynamic", g(&self.sampled_out_dynamic))])
            .counter("sentinel_collector_events_redacted_total", "Events the redaction stage changed.", g(&self.events_redacted))
            .labelled(
                "sentinel_collector_redaction_memory_total",
                "Texts redaction looked up in its memory of texts found clean, by result (hit: not scanned again unless remembered dirty).",
                "counter",
                "result",
                &[("hit", g(&self.redaction_memory[0])), ("miss", g(&self.redaction_memory[1]))],
            )
            .gauge("sentinel_collector_sampling_keys", "Keys the dynamic sampler samples below rate 1 now.", g(&self.sampling_keys));
        self.render_hosts(&mut e);
        e.finish()
    }
}
