//! The proxy's threads never run the filter: handing a request over costs the same whatever the
//! filter does, and what the filter thread cannot keep up with is counted, never waited for.

mod support;

use sentinel_host::{DropReason, HostConfig, TelemetryHost};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use support::{drain_socket, exchange, filter_path};

#[test]
fn a_looping_filter_never_holds_up_the_hand_off_and_the_overflow_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = HostConfig::new(filter_path("filter-fault-loop.wasm"), drain_socket(dir.path()));
    cfg.watch_interval = None;
    cfg.call_deadline = Duration::from_millis(10);
    cfg.fault_backoff_after = u32::MAX;
    cfg.handoff_capacity = 16;
    let host = TelemetryHost::start(cfg).expect("run `make test-filters` first");
    let n = 200u64;
    let t = Instant::now();
    for i in 0..n {
        host.on_request(exchange(i));
    }
    let handing_off = t.elapsed();
    // Each looping call holds the filter thread for 10 ms or more: running even a few of them
    // on this thread would take far longer than this.
    assert!(handing_off < Duration::from_millis(20), "200 hand-offs took {handing_off:?}");
    assert!(host.flush(Duration::from_secs(30)), "the filter thread works through the queue");
    let m = host.metrics();
    let backlog = m.dropped(DropReason::FilterBacklog);
    // At most the queue's 16 waited while a batch of at most 16 taken earlier was being run.
    assert!(backlog >= n - 32, "at most 2 x 16 were taken: {backlog} dropped");
    assert_eq!(m.calls.load(Relaxed) + backlog, n, "every request was run or counted as dropped");
    assert_eq!(m.deadline_hits.load(Relaxed), m.calls.load(Relaxed));
    host.shutdown(Duration::from_secs(1));
}

#[test]
fn shutdown_runs_the_filter_on_everything_handed_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = HostConfig::new(filter_path("sentinel_filter.wasm"), drain_socket(dir.path()));
    cfg.watch_interval = None;
    let host = TelemetryHost::start(cfg).expect("run `make filters` first");
    for i in 0..500 {
        host.on_request(exchange(i));
    }
    host.shutdown(Duration::from_secs(5));
    let m = host.metrics();
    assert_eq!(m.calls.load(Relaxed), 500);
    assert_eq!(m.emitted.load(Relaxed), 500);
    assert_eq!(m.dropped_total(), 0, "{}", host.metrics_text());
    // After shutdown nothing runs the filter: a late request is counted, not left in the queue.
    host.on_request(exchange(500));
    assert_eq!(m.dropped(DropReason::Shutdown), 1);
    assert_eq!(m.calls.load(Relaxed), 500);
}

#[test]
fn two_filter_threads_take_every_exchange_from_four_proxy_threads_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = HostConfig::new(filter_path("sentinel_filter.wasm"), drain_socket(dir.path()));
    cfg.watch_interval = None;
    cfg.filter_threads = 2;
    cfg.handoff_capacity = 1 << 16; // room for all of them: this test is about taking, not dropping
    let host = TelemetryHost::start(cfg).expect("run `make filters` first");
    let (threads, each) = (4u64, 5_000u64);
    std::thread::scope(|s| {
        for t in 0..threads {
            let host = &host;
            s.spawn(move || {
                for i in 0..each {
                    host.on_request(exchange(t * each + i));
                    if i % 500 == 0 {
                        std::thread::yield_now(); // let the filter threads take batches meanwhile
                    }
                }
            });
        }
    });
    assert!(host.flush(Duration::from_secs(30)), "the filter threads work through the queue");
    let m = host.metrics();
    let n = threads * each;
    assert_eq!(m.dropped_total(), 0, "{}", host.metrics_text());
    assert_eq!((m.calls.load(Relaxed), m.emitted.load(Relaxed)), (n, n), "every exchange filtered once");
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.acked_frames.load(Relaxed) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(m.acked_frames.load(Relaxed), n, "and every event reached the collector once");
    host.shutdown(Duration::from_secs(1));
}
