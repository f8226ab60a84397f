//! A call's deadline is CPU time the filter uses, not time its thread spends waiting for a CPU:
//! on a crowded machine a worker thread is descheduled for longer than the deadline, and a
//! healthy filter must not lose that request's event for it. A filter that really loops is
//! still interrupted.

mod support;

use sentinel_host::{thread_cpu_time, HostConfig, TelemetryHost};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::{drain_socket, exchange, filter_path};

/// The tests here time calls: one at a time, so they do not crowd each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Pins the calling thread to one CPU.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it for cpu < 1024;
    // pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "sched_setaffinity");
    }
}

/// Threads that spin on `cpu` until `stop`, so whoever else runs there waits its turn.
fn crowd(cpu: usize, n: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to(cpu);
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

/// The slowest of a run of calls: wall-clock time, and CPU time of the calling thread.
#[derive(Debug, Default)]
struct Slowest {
    wall: Duration,
    cpu: Duration,
}

/// Times one call.
fn timed_call(host: &TelemetryHost, i: u64, slowest: &mut Slowest) -> (Duration, Duration) {
    let (t, c) = (Instant::now(), thread_cpu_time());
    host.on_request(&exchange(i));
    let (wall, cpu) = (t.elapsed(), thread_cpu_time() - c);
    slowest.wall = slowest.wall.max(wall);
    slowest.cpu = slowest.cpu.max(cpu);
    (wall, cpu)
}

/// Runs `calls` filter calls on a thread that shares its CPU with three spinning threads.
fn crowded_calls(host: &TelemetryHost, calls: u64) -> Slowest {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = crowd(cpu, 3, stop.clone());
    let slowest = std::thread::scope(|s| {
        s.spawn(|| {
            pin_to(cpu);
            let mut slowest = Slowest::default();
            for i in 0..calls {
                timed_call(host, i, &mut slowest);
            }
            slowest
        })
        .join()
        .expect("caller thread")
    });
    stop.store(true, Relaxed);
    for t in spinners {
        let _ = t.join();
    }
    slowest
}

#[test]
fn a_descheduled_call_still_emits_its_event() {
    // 2 ms: well under a scheduler timeslice, so with four threads on one CPU the caller is
    // preempted mid-call many times over the run.
    let running = start("sentinel_filter.wasm", Duration::from_millis(2));
    let host = &running.host;
    let calls = 30_000;
    let slowest = crowded_calls(host, calls);
    let m = host.metrics();
    assert!(slowest.wall > Duration::from_millis(3), "the caller was never held off its CPU past the deadline ({slowest:?}); the test proves nothing");
    assert_eq!(m.deadline_hits.load(Relaxed), 0, "calls interrupted although the filter used little CPU ({slowest:?})");
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
    let slowest = crowded_calls(host, calls);
    let m = host.metrics();
    assert_eq!(m.deadline_hits.load(Relaxed), calls, "every looping call is interrupted");
    assert_eq!(m.emitted.load(Relaxed), 0);
    // A call gets more time only while its thread waits for the CPU: what it runs stays within
    // the cap of four deadlines (plus a rebuilt instance's setup), and it always ends.
    assert!(slowest.cpu < deadline * 4 + Duration::from_millis(2), "slowest looping call {slowest:?}");
    assert!(slowest.wall < Duration::from_secs(1), "slowest looping call {slowest:?}");
    host.shutdown(Duration::from_secs(1));
}

#[test]
fn a_looping_filter_on_its_own_cpu_is_interrupted_close_to_its_deadline() {
    let deadline = Duration::from_millis(10);
    let running = start("filter-fault-loop.wasm", deadline);
    let host = &running.host;
    let mut slowest = Slowest::default();
    let mut runs: Vec<(Duration, Duration)> = (0..10).map(|i| timed_call(host, i, &mut slowest)).collect();
    runs.sort();
    assert_eq!(host.metrics().deadline_hits.load(Relaxed), 10);
    // Never cut short of the deadline; and what a looping call runs is the deadline plus about
    // one check window (a quarter of it). CPU time, not wall-clock: the machine may be busy.
    let (wall, cpu) = runs[5];
    assert!(wall >= deadline, "median looping call {wall:?}");
    assert!(cpu < deadline * 2, "median looping call ran {cpu:?} of CPU");
}
