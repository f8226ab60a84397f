//! The request-path cost of telemetry: what a proxy worker pays per finished request. Measured
//! through the real host, the real filter component and the real channel (its sender thread
//! writes to a unix socket that a reader thread drains), for a request with 20 headers.
//!
//! Baselines in the same run: building the exchange (the proxy's own share) and a call whose
//! event is sampled out (host call + guest, no encode or queue push). After criterion, a plain
//! loop times single calls to report p50/p99 against the budget (median ≤ 2 µs, p99 ≤ 10 µs).

use criterion::{criterion_group, Criterion};
use sentinel_host::{thread_cpu_time, Exchange, HostConfig, TelemetryHost};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::{drain_socket, exchange, filter_path};

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

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = host(dir.path(), 1.0);
    let sampled_out = host(dir.path(), 0.0);
    // An instance rebuilt before every call: what a recycle (every N calls, after a fault, after
    // a reload) costs the request thread that pays for it.
    let rebuilt = host_with(filter_path("sentinel_filter.wasm"), dir.path(), "rebuilt", 1.0, |c| c.recycle_after_calls = 1);
    let ex = exchange(7);
    let mut g = c.benchmark_group("request_path_20_headers");
    g.bench_function("baseline_build_exchange", |b| b.iter(|| black_box(exchange(black_box(7)))));
    g.bench_function("on_request_sampled_out", |b| b.iter(|| sampled_out.on_request(black_box(&ex))));
    g.bench_function("on_request_emit", |b| b.iter(|| full.on_request(black_box(&ex))));
    g.bench_function("on_request_emit_fresh_instance", |b| b.iter(|| rebuilt.on_request(black_box(&ex))));
    g.finish();
    rebuilt.shutdown(Duration::from_secs(1));

    // Single-call distribution for the p99 budget (criterion reports means and medians only),
    // and CPU time: this thread's per call, and the sender thread's per event sent.
    let calls = 200_000u32;
    let sent_before = full.metrics().sent_frames.load(std::sync::atomic::Ordering::Relaxed);
    let sender_before = sender_cpu();
    let cpu_before = thread_cpu_time();
    let mut samples = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let t = Instant::now();
        full.on_request(black_box(&ex));
        samples.push(t.elapsed());
    }
    let cpu_per_call = (thread_cpu_time() - cpu_before) / calls;
    std::thread::sleep(Duration::from_millis(200));
    let sent = full.metrics().sent_frames.load(std::sync::atomic::Ordering::Relaxed) - sent_before;
    let sender_per_event = (sender_cpu() - sender_before).as_nanos() as f64 / sent.max(1) as f64;
    println!(
        "on_request_emit CPU: {:?} per call on the request thread, {:.0} ns per event on the sender thread ({} events)",
        cpu_per_call, sender_per_event, sent
    );
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let m = full.metrics();
    println!(
        "on_request_emit single calls: p50 {:?} p90 {:?} p99 {:?} p99.9 {:?}; emitted {} dropped {}",
        p(0.5),
        p(0.9),
        p(0.99),
        p(0.999),
        m.emitted.load(std::sync::atomic::Ordering::Relaxed),
        m.dropped_total()
    );
    cold_caches(&full, &sampled_out, &ex);
    full.shutdown(Duration::from_secs(1));
    sampled_out.shutdown(Duration::from_secs(1));
    if let Ok(pair) = std::env::var("SENTINEL_BENCH_AB") {
        compare_filters(dir.path(), &pair, &ex);
    }
}

/// The request path as a proxy meets it: between two calls the proxy's own work (parsing,
/// sockets, the upstream) has pushed the filter's code and memory out of the caches. Here 1 MiB
/// of writes between calls stands in for that work; its own time, measured alone in the same
/// rounds, is subtracted.
fn cold_caches(emit: &TelemetryHost, sampled_out: &TelemetryHost, ex: &Exchange) {
    let mut other_work = vec![0u64; 1 << 17];
    let m = interleaved_medians(9, 5_000, 3, |run, k| {
        for (i, x) in other_work.iter_mut().enumerate().step_by(8) {
            *x = x.wrapping_add(k ^ i as u64);
        }
        match run {
            1 => sampled_out.on_request(black_box(ex)),
            2 => emit.on_request(black_box(ex)),
            _ => {}
        }
    });
    println!(
        "cold caches (1 MiB of other work between calls, {:.0} ns alone, subtracted): sampled out {:.0} ns, emit {:.0} ns per call",
        m[0],
        m[1] - m[0],
        m[2] - m[0]
    );
    black_box(&other_work);
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
fn compare_filters(dir: &std::path::Path, pair: &str, ex: &Exchange) {
    let Some((a, b)) = pair.split_once(',') else {
        eprintln!("SENTINEL_BENCH_AB wants two paths separated by a comma");
        return;
    };
    let hosts = [host_with(a.into(), dir, "a", 1.0, |_| {}), host_with(b.into(), dir, "b", 1.0, |_| {})];
    let (rounds, calls) = (30, 20_000);
    let m = interleaved_medians(rounds, calls, 2, |run, _| hosts[run].on_request(black_box(ex)));
    println!("A/B over {rounds} alternating rounds of {calls} calls: A {a} {:.0} ns, B {b} {:.0} ns, B/A {:.3}", m[0], m[1], m[1] / m[0]);
    for h in hosts {
        h.shutdown(Duration::from_secs(1));
    }
}

/// CPU time of the host's sender threads so far (from /proc, in clock ticks of 10 ms).
fn sender_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "telemetry-sende" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the ")" of comm: state is field 3; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(total * 1_000_000_000 / hz)
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
