//! What telemetry costs, per finished request with 20 headers, through the real host, the real
//! filter component and the real channel (its sender writes to a unix socket a reader drains).
//!
//! - `hand_off`: what the proxy's own thread pays — the head written into a recycled buffer and
//!   the exchange queued for the filter thread — against building the same exchange into a
//!   fresh buffer (`baseline_build_exchange`), in the same run.
//! - `filter_thread_*`: the filter thread's cost per event (guest, encode, queue push), timed as
//!   batches of 1,024 exchanges handed off and waited for, as a busy proxy feeds it.
//!
//! After criterion, plain loops report the hand-off's p50/p99 and each thread's CPU per event.

use criterion::{criterion_group, Criterion};
use sentinel_host::{thread_cpu_time, DropReason, HeadWriter, HostConfig, TelemetryHost};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::{drain_socket, exchange_with, filter_path, named_threads_cpu, named_threads_cpu_since};

/// Exchanges handed off between two waits: well under the queue's bound, so none is dropped.
const BATCH: u64 = 1024;

fn host(dir: &std::path::Path, rate: f64) -> TelemetryHost {
    host_with(filter_path("sentinel_filter.wasm"), dir, &format!("r{rate}"), rate, |_| {})
}

fn host_with(filter: PathBuf, dir: &std::path::Path, name: &str, rate: f64, tune: impl FnOnce(&mut HostConfig)) -> TelemetryHost {
    std::fs::create_dir_all(dir.join(name)).expect("bench dir");
    let mut cfg = HostConfig::new(filter, drain_socket(&dir.join(name)));
    cfg.watch_interval = None;
    cfg.filter.sample_rate = rate;
    tune(&mut cfg);
    TelemetryHost::start(cfg).expect("run `make filters` first")
}

/// Hands `n` exchanges to `host` as a proxy thread does; returns the time that took.
fn hand_off(host: &TelemetryHost, n: u64) -> Duration {
    let t = Instant::now();
    for i in 0..n {
        host.on_request(exchange_with(host.head_writer(), black_box(i)));
    }
    t.elapsed()
}

/// Hands off and waits for `iters` exchanges in batches: the filter thread's time per event.
fn through_filter(host: &TelemetryHost, iters: u64) -> Duration {
    let t = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        hand_off(host, n);
        assert!(host.flush(Duration::from_secs(30)), "the filter thread keeps up");
        left -= n;
    }
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = host(dir.path(), 1.0);
    let sampled_out = host(dir.path(), 0.0);
    // An instance rebuilt before every call: what a recycle (every N calls, after a fault, after
    // a reload) costs the filter thread.
    let rebuilt = host_with(filter_path("sentinel_filter.wasm"), dir.path(), "rebuilt", 1.0, |c| c.recycle_after_calls = 1);
    let mut g = c.benchmark_group("request_path_20_headers");
    g.bench_function("baseline_build_exchange", |b| b.iter(|| black_box(exchange_with(HeadWriter::with_capacity(1024), black_box(7)))));
    g.bench_function("hand_off", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                spent += hand_off(&full, n);
                full.flush(Duration::from_secs(30));
                left -= n;
            }
            spent
        })
    });
    g.bench_function("filter_thread_sampled_out", |b| b.iter_custom(|iters| through_filter(&sampled_out, iters)));
    g.bench_function("filter_thread_emit", |b| b.iter_custom(|iters| through_filter(&full, iters)));
    g.bench_function("filter_thread_emit_fresh_instance", |b| b.iter_custom(|iters| through_filter(&rebuilt, iters)));
    g.finish();
    rebuilt.shutdown(Duration::from_secs(1));

    // Single hand-offs for the p99 budget (criterion reports means and medians only), and CPU
    // per event of each thread: the calling (proxy) thread, the filter thread, the sender.
    let events = 200 * BATCH;
    let sent_before = full.metrics().sent_frames.load(std::sync::atomic::Ordering::Relaxed);
    let (filter_before, sender_before) = (named_threads_cpu("sentinel-filter"), named_threads_cpu("telemetry-sende"));
    let mut request_cpu = Duration::ZERO;
    let mut samples = Vec::with_capacity(events as usize);
    for b in 0..events / BATCH {
        let cpu = thread_cpu_time();
        for i in 0..BATCH {
            let t = Instant::now();
            full.on_request(exchange_with(full.head_writer(), black_box(b * BATCH + i)));
            samples.push(t.elapsed());
        }
        request_cpu += thread_cpu_time() - cpu;
        full.flush(Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(200));
    let sent = full.metrics().sent_frames.load(std::sync::atomic::Ordering::Relaxed) - sent_before;
    let per = |d: Duration, n: u64| d.as_nanos() as f64 / n.max(1) as f64;
    println!(
        "CPU per event: {:.0} ns on the proxy's thread (hand-off), {:.0} ns on the filter thread, {:.0} ns on the sender thread ({} events sent)",
        per(request_cpu, events),
        per(named_threads_cpu_since("sentinel-filter", &filter_before), events),
        per(named_threads_cpu_since("telemetry-sende", &sender_before), sent),
        sent
    );
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let m = full.metrics();
    println!(
        "hand-off single calls: p50 {:?} p90 {:?} p99 {:?} p99.9 {:?}; emitted {} dropped {} (ring full {}, filter backlog {}); connects {}, resent {}",
        p(0.5),
        p(0.9),
        p(0.99),
        p(0.999),
        m.emitted.load(std::sync::atomic::Ordering::Relaxed),
        m.dropped_total(),
        m.dropped(DropReason::QueueFull),
        m.dropped(DropReason::FilterBacklog),
        m.connects.load(std::sync::atomic::Ordering::Relaxed),
        m.resent_frames.load(std::sync::atomic::Ordering::Relaxed)
    );
    full.shutdown(Duration::from_secs(1));
    sampled_out.shutdown(Duration::from_secs(1));
    if let Ok(pair) = std::env::var("SENTINEL_BENCH_AB") {
        compare_filters(dir.path(), &pair);
    }
}

/// Times `runs` variants of a call (`call(run, k)` for call number `k`) over `rounds` rounds of
/// `calls` calls each, the variants taking turns in a rotating order so machine noise hits them
/// alike; the median nanoseconds per call of each.
fn interleaved_medians(rounds: usize, calls: u64, runs: usize, mut call: impl FnMut(usize, u64)) -> Vec<f64> {
    let mut per_call = vec![Vec::with_capacity(rounds); runs];
    for round in 0..rounds {
        for j in 0..runs {
            let run = (round + j) % runs;
            let t = Instant::now();
            for k in 0..calls {
                call(run, k);
            }
            per_call[run].push(t.elapsed().as_nanos() as f64 / calls as f64);
        }
    }
    per_call
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// `SENTINEL_BENCH_AB=a.wasm,b.wasm`: two filter builds timed in alternating rounds in one run,
/// so a change to the filter is judged by a ratio rather than by numbers from noisy separate runs.
fn compare_filters(dir: &std::path::Path, pair: &str) {
    let Some((a, b)) = pair.split_once(',') else {
        eprintln!("SENTINEL_BENCH_AB wants two paths separated by a comma");
        return;
    };
    let hosts = [host_with(a.into(), dir, "a", 1.0, |_| {}), host_with(b.into(), dir, "b", 1.0, |_| {})];
    let (rounds, batches) = (30, 20);
    let m = interleaved_medians(rounds, batches, 2, |run, _| {
        through_filter(&hosts[run], BATCH);
    });
    let per = |v: f64| v / BATCH as f64;
    println!(
        "A/B over {rounds} alternating rounds of {} events: A {a} {:.0} ns, B {b} {:.0} ns, B/A {:.3}",
        batches * BATCH,
        per(m[0]),
        per(m[1]),
        m[1] / m[0]
    );
    for h in hosts {
        h.shutdown(Duration::from_secs(1));
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
