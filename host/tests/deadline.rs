//! A call's deadline is CPU time the filter uses, not time its thread spends waiting for a CPU:
//! on a crowded machine the filter thread is descheduled for longer than the deadline, and a
//! healthy filter must not lose that request's event for it. A filter that really loops is
//! still interrupted.

mod support;

use sentinel_host::{HostConfig, TelemetryHost};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::{drain_socket, exchange, filter_path, thread_times};

/// The tests here time calls: one at a time, so they do not crowd each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Pins thread `tid` (0: the calling thread) to one CPU.
fn pin_to(tid: i32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it for cpu < 1024;
    // tid is a thread of this process or 0.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "sched_setaffinity");
    }
}

/// The host's one filter thread.
fn filter_thread(host: &TelemetryHost) -> i32 {
    let tids = host.filter_thread_ids();
    assert_eq!(tids.len(), 1, "one filter thread");
    tids[0]
}

/// Threads that spin on `cpu` until `stop`, so whoever else runs there waits its turn.
fn crowd(cpu: usize, n: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to(0, cpu);
                while !stop.load(Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect()
}

/// A host running `filter` under `deadline`, held by one test at a time.
struct Running {
    host: TelemetryHost,
    _dir: tempfile::TempDir,
    _one: MutexGuard<'static, ()>,
}

fn start(filter: &str, deadline: Duration) -> Running {
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = HostConfig::new(filter_path(filter), drain_socket(dir.path()));
    cfg.watch_interval = None;
    cfg.call_deadline = deadline;
    // Every fault is counted, none skipped: the test counts what each call did.
    cfg.fault_backoff_after = u32::MAX;
    let host = TelemetryHost::start(cfg).expect("run `make test-filters` first");
    Running { host, _dir: dir, _one: one }
}

/// What one call cost the filter thread: wall-clock time from hand-off to done, and CPU time.
fn timed_call(host: &TelemetryHost, tid: i32, i: u64) -> (Duration, Duration) {
    let (t, (cpu, _)) = (Instant::now(), thread_times(tid));
    host.on_request(exchange(i));
    assert!(host.flush(Duration::from_secs(10)), "the call ended");
    (t.elapsed(), thread_times(tid).0 - cpu)
}

/// Spinning threads share the filter thread's CPU while `run` runs; returns what `run` gave and
/// how long the filter thread waited for its CPU meanwhile.
fn crowded<T>(host: &TelemetryHost, run: impl FnOnce() -> T) -> (T, Duration) {
    let tid = filter_thread(host);
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    pin_to(tid, cpu);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = crowd(cpu, 3, stop.clone());
    let (_, waited_before) = thread_times(tid);
    let out = run();
    let (_, waited_after) = thread_times(tid);
    stop.store(true, Relaxed);
    for t in spinners {
        let _ = t.join();
    }
    (out, waited_after - waited_before)
}

#[test]
fn a_descheduled_call_still_emits_its_event() {
    // 2 ms: well under a scheduler timeslice, so with four threads on one CPU the filter thread
    // is preempted mid-call many times over the run.
    let running = start("sentinel_filter.wasm", Duration::from_millis(2));
    let host = &running.host;
    let calls = 30_000;
    let ((), waited) = crowded(host, || {
        for batch in 0..calls / 1000 {
            for i in 0..1000 {
                host.on_request(exchange(batch * 1000 + i));
            }
            assert!(host.flush(Duration::from_secs(60)), "the filter thread keeps up");
        }
    });
    let m = host.metrics();
    assert!(waited > Duration::from_millis(50), "the filter thread was never held off its CPU ({waited:?}); the test proves nothing");
    assert_eq!(m.deadline_hits.load(Relaxed), 0, "calls interrupted although the filter used little CPU (waited {waited:?})");
    assert_eq!(m.traps.load(Relaxed), 0);
    assert_eq!(m.emitted.load(Relaxed) + m.sampled_out.load(Relaxed) + m.dropped_total(), calls);
    host.shutdown(Duration::from_secs(1));
}

#[test]
fn a_looping_filter_is_interrupted_on_a_crowded_cpu_too() {
    let deadline = Duration::from_millis(4);
    let running = start("filter-fault-loop.wasm", deadline);
    let host = &running.host;
    let calls = 20;
    let tid = filter_thread(host);
    let (runs, _) = crowded(host, || (0..calls).map(|i| timed_call(host, tid, i)).collect::<Vec<_>>());
    let m = host.metrics();
    assert_eq!(m.deadline_hits.load(Relaxed), calls, "every looping call is interrupted");
    assert_eq!(m.emitted.load(Relaxed), 0);
    // A call gets more time only while its thread waits for the CPU: what it runs stays within
    // the cap of four deadlines (plus a rebuilt instance's setup), and it always ends.
    let slowest_cpu = runs.iter().map(|r| r.1).max().unwrap_or_default();
    let slowest_wall = runs.iter().map(|r| r.0).max().unwrap_or_default();
    assert!(slowest_cpu < deadline * 4 + Duration::from_millis(2), "slowest looping call ran {slowest_cpu:?}");
    assert!(slowest_wall < Duration::from_secs(1), "slowest looping call took {slowest_wall:?}");
    host.shutdown(Duration::from_secs(1));
}

#[test]
fn a_looping_filter_on_its_own_cpu_is_interrupted_close_to_its_deadline() {
    let deadline = Duration::from_millis(10);
    let running = start("filter-fault-loop.wasm", deadline);
    let host = &running.host;
    let tid = filter_thread(host);
    let mut runs: Vec<(Duration, Duration)> = (0..10).map(|i| timed_call(host, tid, i)).collect();
    runs.sort();
    assert_eq!(host.metrics().deadline_hits.load(Relaxed), 10);
    // Never cut short of the deadline; and what a looping call runs is the deadline plus about
    // one check window (a quarter of it). CPU time, not wall-clock: the machine may be busy.
    let (wall, cpu) = runs[5];
    assert!(wall >= deadline, "median looping call {wall:?}");
    assert!(cpu < deadline * 2, "median looping call ran {cpu:?} of CPU");
}
