//! What the write-ahead log costs: appending processed batches (100 events of ~1 KB, the size
//! of one socket read) with fsync per batch against fsync per interval, in the same run, and a
//! sink's reader draining what was appended. Events/s = batch events / time per batch. A second
//! group times the same work in CPU time of the thread (what it costs a core, waits for the disk
//! left out), with the log's I/O around the page cache (`bypass`, the default) and through it.
//!
//! Run: `make bench-wal`. The fsync figure depends on the disk under `target/`.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, Criterion, Throughput};
use sentinel_collector::metrics::Metrics;
use sentinel_collector::wal::{Fsync, Payload, ReadBatch, Wal, WalConfig};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const EVENTS: u32 = 100;

/// A processed batch: `EVENTS` NDJSON lines of about 1 KB.
fn batch() -> Vec<u8> {
    let mut lines = Vec::new();
    for i in 0..EVENTS {
        lines.extend_from_slice(format!("{{\"event\":{{\"id\":\"req-{i:08}\",\"start_ns\":1795000000000000000}},\"pad\":\"{}\"}}\n", "x".repeat(960)).as_bytes());
    }
    lines
}

/// The daemon's defaults for `fsync`: direct I/O when every group is synced, the page cache
/// otherwise (see `page-cache` in docs/configuration.md).
fn config(dir: &std::path::Path, fsync: Fsync) -> WalConfig {
    WalConfig { segment_bytes: 64 << 20, max_bytes: 64 << 30, fsync, direct_io: fsync == Fsync::Batch, ..WalConfig::new(dir) }
}

/// One append, synced per the policy, then read back and committed by a sink that keeps up (so
/// delivered segments are recycled as in production).
fn append_and_drain(wal: &Wal, writer: &mut sentinel_collector::wal::Writer, reader: &mut sentinel_collector::wal::Reader, read: &mut ReadBatch, lines: &[u8]) {
    let stop = AtomicBool::new(false);
    writer.append(std::iter::once(Payload::new(lines, EVENTS)), &stop).expect("append");
    writer.tick();
    read.clear();
    reader.read(u64::MAX, usize::MAX, read).expect("read");
    wal.commit("bench", read.end);
}

/// CPU time of the calling thread, in nanoseconds.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Shows CPU nanoseconds as µs, and throughput as events per CPU-second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e3);
        "µs CPU"
    }
    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n as f64,
        };
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "events/CPU-s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The log's CPU per batch (fsync per batch, the default) with direct I/O and through the page
/// cache, in one run.
fn cpu(c: &mut Criterion<ThreadCpu>) {
    let lines = batch();
    let mut g = c.benchmark_group("wal_cpu");
    g.throughput(Throughput::Elements(u64::from(EVENTS)));
    g.measurement_time(Duration::from_secs(5));
    for (name, direct_io) in [("page_cache_bypass", true), ("page_cache_keep", false)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, mut writer) = Wal::open(WalConfig { direct_io, ..config(dir.path(), Fsync::Batch) }, Arc::new(Metrics::default())).expect("open");
        let mut reader = wal.attach("bench");
        let mut read = ReadBatch::default();
        g.bench_function(name, |b| b.iter(|| append_and_drain(&wal, &mut writer, &mut reader, &mut read, &lines)));
    }
    g.finish();
}

fn append(c: &mut Criterion) {
    let lines = batch();
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(u64::from(EVENTS)));
    g.measurement_time(Duration::from_secs(5));
    // "off": an interval longer than the run, so no fsync happens while it is timed.
    for (name, fsync) in [("fsync_per_batch", Fsync::Batch), ("fsync_per_second", Fsync::Interval(Duration::from_secs(1))), ("fsync_off", Fsync::Interval(Duration::from_secs(3600)))] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, mut writer) = Wal::open(config(dir.path(), fsync), Arc::new(Metrics::default())).expect("open");
        let mut reader = wal.attach("bench");
        let mut read = ReadBatch::default();
        g.bench_function(name, |b| b.iter(|| append_and_drain(&wal, &mut writer, &mut reader, &mut read, &lines)));
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}

fn main() {
    benches();
    cpu_benches();
    Criterion::default().configure_from_args().final_summary();
}
