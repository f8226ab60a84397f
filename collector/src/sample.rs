//! The sampling stage: after decoding, before the costly stages. It applies the configured rate
//! again, consistently by request id with the same hash as the filter, so an event the filter
//! kept is kept here too (a proxy that did not head-sample is sampled here); and, when
//! configured, a dynamic sampler that gives each key (route + method + status class by
//! default) its own rate so the total aims at a target events/s while rare keys stay whole (in
//! the manner of Honeycomb's EMA sampler).
//!
//! Because every decision is "keep when the id's point is below the rate" with one hash, a
//! kept event stands for `1 / min(rates it passed)` requests: `sampling.rate` is set to that, and
//! re-weighted counts stay unbiased.

use arc_swap::ArcSwap;
use sentinel_config::{DynamicSampling, Sampling};
use sentinel_wire::event::Event;
use sentinel_wire::sampling::keep;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// `sampling.reason` of events the dynamic sampler kept below rate 1.
pub const REASON_DYNAMIC: &str = "dynamic";
/// `sampling.reason` of events the collector's fixed rate kept (the proxy had not sampled them).
pub const REASON_COLLECTOR_RATE: &str = "collector_rate";

/// The dynamic sampler's state, shared by the workers.
struct Dynamic {
    cfg: DynamicSampling,
    /// Keep-fraction per key for the current interval; keys not in it are kept whole.
    rates: ArcSwap<HashMap<String, f64>>,
    /// Events seen per key in the current interval, and the moving average of past intervals.
    counts: Mutex<Interval>,
}

/// Per-key event counts of the interval that began at `.2`, and the per-key moving average of
/// the intervals before it.
type Interval = (HashMap<String, u64>, HashMap<String, f64>, Instant);

/// The configured sampling, shared by the workers.
pub struct Sampler {
    cfg: Sampling,
    dynamic: Option<Dynamic>,
}

/// Events one call dropped, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub rate: u64,
    pub dynamic: u64,
}

/// What one worker keeps between batches: the dynamic sampler's counts not yet merged.
#[derive(Default)]
pub struct SampleScratch {
    counts: HashMap<String, u64>,
}

impl Sampler {
    pub fn new(cfg: &Sampling) -> Sampler {
        Sampler {
            cfg: cfg.clone(),
            dynamic: cfg.dynamic.as_ref().map(|d| Dynamic {
                cfg: d.clone(),
                rates: ArcSwap::from_pointee(HashMap::new()),
                counts: Mutex::new((HashMap::new(), HashMap::new(), Instant::now())),
            }),
        }
    }

    /// True when the stage can drop nothing (rate 1, no dynamic sampler).
    pub fn is_pass_through(&self) -> bool {
        self.cfg.rate >= 1.0 && self.dynamic.is_none()
    }

    fn is_kept_error(&self, status: u16) -> bool {
        (status >= 500 && self.cfg.always_sample_errors) || ((400..500).contains(&status) && self.cfg.always_sample_client_errors)
    }

    /// Keeps or drops each event of a batch, rewriting `sampling.*` of the kept ones.
    pub fn sample(&self, events: &mut Vec<Event<'_>>, scratch: &mut SampleScratch) -> Dropped {
        if self.is_pass_through() {
            return Dropped::default();
        }
        let rates = self.dynamic.as_ref().map(|d| d.rates.load_full());
        let before = events.len();
        let (mut by_rate, mut by_dynamic) = (0u64, 0u64);
        events.retain_mut(|ev| {
            let key = self.dynamic.as_ref().map(|d| key_of(ev, &d.cfg.key));
            if let Some(k) = &key {
                match scratch.counts.get_mut(k) {
                    Some(n) => *n += 1,
                    None => drop(scratch.counts.insert(k.clone(), 1)),
                }
            }
            if self.is_kept_error(ev.http.response.status_code) {
                return true;
            }
            // The fraction this event was already kept at (1 unless the proxy sampled it).
            let kept_at = if ev.sampling.rate > 1.0 { 1.0 / ev.sampling.rate } else { 1.0 };
            let fixed = self.cfg.rate;
            let dynamic = match (&rates, &key) {
                (Some(r), Some(k)) => r.get(k).copied().unwrap_or(1.0),
                _ => 1.0,
            };
            let target = fixed.min(dynamic);
            if target >= kept_at {
                return true;
            }
            if !keep(ev.event.id.as_bytes(), target) {
                if dynamic < fixed { by_dynamic += 1 } else { by_rate += 1 }
                return false;
            }
            ev.sampling.rate = 1.0 / target;
            ev.sampling.reason = Cow::Borrowed(if dynamic < fixed { REASON_DYNAMIC } else { REASON_COLLECTOR_RATE });
            true
        });
        debug_assert_eq!(before as u64, events.len() as u64 + by_rate + by_dynamic);
        if let Some(d) = &self.dynamic {
            d.merge(scratch, Instant::now());
        }
        Dropped { rate: by_rate, dynamic: by_dynamic }
    }

    /// Keys the dynamic sampler gives a rate below 1 now.
    pub fn sampled_keys(&self) -> usize {
        self.dynamic.as_ref().map_or(0, |d| d.rates.load().len())
    }
}

impl Dynamic {
    /// Adds a worker's counts; at the end of an interval, recomputes the rates.
    fn merge(&self, scratch: &mut SampleScratch, now: Instant) {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (counts, ema, since) = &mut *guard;
        for (k, n) in scratch.counts.drain() {
            *counts.entry(k).or_default() += n;
        }
        let elapsed = now.duration_since(*since);
        if elapsed < self.cfg.adjust_interval {
            return;
        }
        *since = now;
        // Moving average of per-key counts per interval: old keys fade out over a few intervals.
        const ALPHA: f64 = 0.5;
        for v in ema.values_mut() {
            *v *= 1.0 - ALPHA;
        }
        let scale = self.cfg.adjust_interval.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
        for (k, n) in counts.drain() {
            *ema.entry(k).or_default() += ALPHA * n as f64 * scale;
        }
        ema.retain(|_, v| *v >= 0.5);
        let goal = self.cfg.target_events_per_sec * self.cfg.adjust_interval.as_secs_f64();
        self.rates.store(Arc::new(rates_for(ema, goal)));
    }
}

/// Keep-fractions per key for expected per-interval counts, aiming at `goal` kept in all. The
/// goal is shared out by the logarithm of each key's count: busy keys are sampled hardest, a key
/// seen about once per interval keeps everything. Keys kept whole are left out of the map.
fn rates_for(counts: &HashMap<String, f64>, goal: f64) -> HashMap<String, f64> {
    let total: f64 = counts.values().sum();
    if total <= goal {
        return HashMap::new();
    }
    let log_sum: f64 = counts.values().map(|c| c.max(1.0).log10()).sum();
    if log_sum <= 0.0 {
        return HashMap::new();
    }
    let per_log = goal / log_sum;
    counts
        .iter()
        .filter_map(|(k, &c)| {
            let goal_for_key = (c.max(1.0).log10() * per_log).max(1.0);
            let fraction = goal_for_key / c;
            (fraction < 1.0).then(|| (k.clone(), fraction))
        })
        .collect()
}

/// An event's key: the configured fields' values joined by `|`.
fn key_of(ev: &Event<'_>, fields: &[String]) -> String {
    let mut key = String::with_capacity(48);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        let status = ev.http.response.status_code;
        match f.as_str() {
            "http.route" => key.push_str(ev.http.route.as_deref().unwrap_or("")),
            "http.request.method" => key.push_str(&ev.http.request.method),
            "status_class" => {
                key.push(char::from(b'0' + (status / 100 % 10) as u8));
                key.push_str("xx");
            }
            "http.response.status_code" => key.push_str(&status.to_string()),
            "url.domain" => key.push_str(ev.url.domain.as_deref().unwrap_or("")),
            "url.path" => key.push_str(&ev.url.path),
            _ => {}
        }
    }
    key
}

/// The sampler in force, replaced on reload between batches.
pub struct SamplingHandle(ArcSwap<Sampler>);

impl SamplingHandle {
    pub fn new(cfg: &Sampling) -> Self {
        SamplingHandle(ArcSwap::from_pointee(Sampler::new(cfg)))
    }

    pub fn current(&self) -> Arc<Sampler> {
        self.0.load_full()
    }

    /// Applies new settings; unchanged settings keep the running sampler (and its learned rates).
    pub fn reconfigure(&self, cfg: &Sampling) {
        if self.0.load().cfg != *cfg {
            self.0.store(Arc::new(Sampler::new(cfg)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_wire::event::{EventInfo, Sampling as EventSampling};
    use sentinel_wire::sampling::reason;
    use std::time::Duration;

    fn event(id: String, route: &'static str, status: u16, edge_rate: f64) -> Event<'static> {
        let mut e = Event { event: EventInfo { id: id.into(), start_ns: 1, end_ns: 2 }, ..Default::default() };
        e.http.route = Some(route.into());
        e.http.request.method = "GET".into();
        e.http.response.status_code = status;
        e.sampling = EventSampling { rate: 1.0 / edge_rate, reason: if edge_rate < 1.0 { reason::HEAD_RATE } else { reason::ALL }.into() };
        e
    }

    fn config(rate: f64, dynamic: Option<f64>) -> Sampling {
        Sampling {
            rate,
            always_sample_errors: true,
            always_sample_client_errors: false,
            dynamic: dynamic.map(|t| DynamicSampling {
                target_events_per_sec: t,
                key: DynamicSampling::DEFAULT_KEY.iter().map(|s| s.to_string()).collect(),
                adjust_interval: Duration::from_secs(1),
            }),
        }
    }

    #[test]
    fn events_the_proxy_kept_are_kept_again_at_the_same_rate() {
        let s = Sampler::new(&config(0.25, None));
        // What the filter would have kept at 0.25: exactly the ids below the same threshold.
        let mut events: Vec<Event> = (0..20_000).map(|i| format!("req-{i}")).filter(|id| keep(id.as_bytes(), 0.25)).map(|id| event(id, "/a", 200, 0.25)).collect();
        let n = events.len();
        s.sample(&mut events, &mut SampleScratch::default());
        assert_eq!(events.len(), n, "never dropped again for rate");
        assert!(events.iter().all(|e| e.sampling.rate == 4.0 && e.sampling.reason == reason::HEAD_RATE));
    }

    #[test]
    fn unsampled_events_are_sampled_and_reweighted() {
        let s = Sampler::new(&config(0.1, None));
        let mut events: Vec<Event> = (0..50_000).map(|i| event(format!("r{i}"), "/a", if i % 100 == 0 { 503 } else { 200 }, 1.0)).collect();
        let dropped = s.sample(&mut events, &mut SampleScratch::default());
        let errors = events.iter().filter(|e| e.http.response.status_code == 503).count();
        assert_eq!(errors, 500, "every 5xx is kept");
        let weighted: f64 = events.iter().filter(|e| e.http.response.status_code == 200).map(|e| e.sampling.rate).sum();
        assert!((weighted - 49_500.0).abs() / 49_500.0 < 0.03, "re-weighted {weighted} vs 49500");
        assert_eq!(dropped.rate as usize + events.len(), 50_000);
    }

    #[test]
    fn dynamic_sampling_aims_at_the_target_and_reweights_within_five_percent() {
        // Three keys: a hot one (80%), a warm one (19.9%), a rare one (~0.1%).
        let s = Sampler::new(&config(1.0, Some(1000.0)));
        let mut scratch = SampleScratch::default();
        let mut kept_weight: HashMap<&str, f64> = HashMap::new();
        let mut truth: HashMap<&str, f64> = HashMap::new();
        let mut kept = 0usize;
        let mut id = 0u64;
        let mut dropped = 0;
        let start = s.dynamic.as_ref().map(|d| d.counts.lock().unwrap().2).unwrap();
        for second in 0..8u64 {
            let mut batch = Vec::new();
            for i in 0..20_000u64 {
                let route = match i % 1000 {
                    0 => "/rare",
                    1..=199 => "/warm",
                    _ => "/hot",
                };
                id += 1;
                batch.push(event(format!("e{id}"), route, 200, 1.0));
                *truth.entry(route).or_default() += if second >= 2 { 1.0 } else { 0.0 };
            }
            dropped += s.sample(&mut batch, &mut scratch).dynamic;
            // The sampler's clock, moved by hand: one batch a second.
            if let Some(d) = &s.dynamic {
                d.merge(&mut scratch, start + Duration::from_secs(second + 1));
            }
            if second >= 2 {
                kept += batch.len();
                for e in &batch {
                    let r: &str = match e.http.route.as_deref() {
                        Some("/rare") => "/rare",
                        Some("/warm") => "/warm",
                        _ => "/hot",
                    };
                    *kept_weight.entry(r).or_default() += e.sampling.rate;
                }
            }
        }
        // Six measured seconds at a target of 1000/s: within a quarter of 6000 kept.
        assert!((4500..=7500).contains(&kept), "kept {kept}");
        for route in ["/hot", "/warm", "/rare"] {
            let (w, t) = (kept_weight[route], truth[route]);
            assert!((w - t).abs() / t < 0.05, "{route}: re-weighted {w} vs true {t}");
        }
        assert!(dropped > 100_000);
    }

    #[test]
    fn rare_keys_are_kept_whole() {
        let mut counts = HashMap::new();
        counts.insert("hot".to_string(), 100_000.0);
        counts.insert("rare".to_string(), 1.0);
        let r = rates_for(&counts, 1000.0);
        assert!(r["hot"] < 0.02);
        assert!(!r.contains_key("rare"));
        assert!(rates_for(&counts, 1e6).is_empty(), "under the goal nothing is sampled");
    }
}
