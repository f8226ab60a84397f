//! What the write-ahead log costs: appending processed batches (100 events of ~1 KB, the size
//! of one socket read) with fsync per batch against fsync per interval, in the same run, and a
//! sink's reader draining what was appended. Events/s = batch events / time per batch.
//!
//! Run: `make bench-wal`. The fsync figure depends on the disk under `target/`.

use criterion::{criterion_group, Criterion, Throughput};
use sentinel_collector::metrics::Metrics;
use sentinel_collector::wal::{Fsync, ReadBatch, Wal, WalConfig};
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

fn config(dir: &std::path::Path, fsync: Fsync) -> WalConfig {
    WalConfig { segment_bytes: 64 << 20, max_bytes: 64 << 30, fsync, ..WalConfig::new(dir) }
}

fn append(c: &mut Criterion) {
    let lines = batch();
    let stop = AtomicBool::new(false);
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(u64::from(EVENTS)));
    g.measurement_time(Duration::from_secs(5));
    // "off": an interval longer than the run, so no fsync happens while it is timed.
    for (name, fsync) in [("fsync_per_batch", Fsync::Batch), ("fsync_per_second", Fsync::Interval(Duration::from_secs(1))), ("fsync_off", Fsync::Interval(Duration::from_secs(3600)))] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, mut writer) = Wal::open(config(dir.path(), fsync), Arc::new(Metrics::default())).expect("open");
        // A sink that keeps up, so delivered segments are deleted as in production.
        let mut reader = wal.attach("bench");
        let mut read = ReadBatch::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                writer.append(std::iter::once((&lines[..], EVENTS)), &stop).expect("append");
                writer.tick();
                read.clear();
                reader.read(u64::MAX, usize::MAX, &mut read).expect("read");
                wal.commit("bench", read.end);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
