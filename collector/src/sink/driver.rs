//! What every sink shares: read the log from the sink's cursor, gather a batch (by size, bytes
//! and flush interval), hand it to the sink's [`Service`], retry failures with exponential
//! backoff and jitter behind a circuit breaker, and move the cursor only once the batch is
//! delivered. Each sink runs this on its own thread, so a slow or dead one never stalls another.

use crate::metrics::SinkMetrics;
use crate::sink::latency::Pending;
use crate::wal::{Lines, ReadBatch, Reader};
use sentinel_config::Delivery;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why a batch was not delivered.
#[derive(Debug)]
pub enum SendError {
    /// Worth trying again (a network error, a 5xx, a broker away); `after` is the server's
    /// own hint (Retry-After).
    Retry { reason: String, after: Option<Duration> },
    /// The destination refused these events for good (a 4xx); retrying cannot help. The batch
    /// is counted as dropped and the sink moves on.
    Reject { reason: String },
    /// Batches reported [`Delivered::Staged`] were lost at the destination before they became
    /// durable (a half-written Parquet file had to be abandoned): read the log again from the
    /// last committed point.
    Restart { reason: String },
}

/// Where a delivered batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The destination holds it (and everything staged before it) for good: commit.
    Durable,
    /// Written into something not yet complete (an open Parquet file): the log keeps it until
    /// a later `send`, `idle` or `close` answers `Durable`.
    Staged,
    /// Durable, except `dropped` events the destination refused for good one by one (each
    /// too large for it on its own): counted as dropped, the rest as written.
    DurableExcept { dropped: u64 },
}

impl SendError {
    pub fn retry(reason: impl Into<String>) -> SendError {
        SendError::Retry { reason: reason.into(), after: None }
    }
}

/// The I/O half of a sink.
#[allow(async_fn_in_trait)]
pub trait Service {
    /// Delivers one batch; returns once the destination has it (acknowledged, written,
    /// committed), not before.
    async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError>;

    /// Called when the sink stops after its last batch: flush and sync what needs it, and
    /// say whether everything staged is now durable.
    async fn close(&mut self) -> Result<Delivered, SendError> {
        Ok(Delivered::Durable)
    }

    /// Called when no batch came for a while (time-based rotation and the like): says whether
    /// everything staged is now durable, or was lost (`Restart`).
    async fn idle(&mut self) -> Result<Delivered, SendError> {
        Ok(Delivered::Durable)
    }
}

/// The circuit breaker's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed,
    /// No attempts until then.
    Open(Instant),
    /// The cooldown is over: the next attempt decides.
    HalfOpen,
}

/// Drives one sink until the log's writer is gone and everything is delivered, or `stop`
/// turns true (then the batch in hand stays in the log for the next run).
pub async fn run<S: Service>(mut service: S, mut reader: Reader, delivery: Delivery, metrics: Arc<SinkMetrics>, mut stop: watch::Receiver<bool>) {
    let id = reader.sink_id().to_string();
    let mut batch = ReadBatch::default();
    let mut jitter = Jitter::new(&id);
    let mut circuit = Circuit::Closed;
    let mut failures: u32 = 0;
    // The last committed point, and the end of what was delivered but is not durable yet.
    let mut settled = reader.position();
    let mut staged: Option<u64> = None;
    let mut ages = Pending::default();
    // Where this batch's end times start among the pending ones.
    let mut batch_ages;
    'sink: loop {
        // Gather: wait for a first record, then fill up until full or the interval is over.
        let opened = Instant::now();
        batch_ages = ages.len();
        loop {
            if let Err(e) = read_noting(&mut reader, &delivery, &mut batch, &mut ages) {
                tracing::error!(sink = %id, "reading the buffer failed: {e}");
                if sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                    break 'sink;
                }
                continue;
            }
            let full = is_full(&batch, &delivery);
            let due = !batch.is_empty() && opened.elapsed() >= delivery.flush_interval;
            if full || due {
                break;
            }
            let wait = if batch.is_empty() { Duration::from_secs(1) } else { delivery.flush_interval.saturating_sub(opened.elapsed()) };
            tokio::select! {
                more = reader.wait() => if !more && !reader.has_more() {
                    if batch.is_empty() {
                        break 'sink; // the writer is gone and everything was delivered
                    }
                    break;
                },
                _ = tokio::time::sleep(wait) => if batch.is_empty() {
                    match service.idle().await {
                        Ok(Delivered::Durable | Delivered::DurableExcept { .. }) => if let Some(end) = staged.take() {
                            settle(&reader, end, &mut settled);
                            ages.record(&metrics.delivery_seconds.0);
                        },
                        Ok(Delivered::Staged) => {}
                        Err(e) => replay(&mut reader, settled, &mut staged, &mut ages, &metrics, &format!("{e:?}")),
                    }
                    reader.wal().store_cursor(&id);
                },
                _ = stop.changed() => break 'sink,
            }
        }
        // Deliver, retrying until done or refused for good.
        loop {
            if let Circuit::Open(until) = circuit {
                if sleep_or_stop(until.saturating_duration_since(Instant::now()), &mut stop).await {
                    break 'sink;
                }
                circuit = Circuit::HalfOpen;
                metrics.circuit_open.store(2, Relaxed);
            }
            let started = Instant::now();
            let result = tokio::select! {
                r = service.send(&batch) => r,
                _ = stop.changed() => break 'sink,
            };
            match result {
                Ok(delivered) => {
                    metrics.batch_seconds.record(started.elapsed());
                    let dropped = match delivered {
                        Delivered::DurableExcept { dropped } => dropped.min(batch.events),
                        _ => 0,
                    };
                    if dropped > 0 {
                        metrics.rejected_batches.fetch_add(1, Relaxed);
                        metrics.events_dropped.fetch_add(dropped, Relaxed);
                    }
                    metrics.events_written.fetch_add(batch.events - dropped, Relaxed);
                    metrics.bytes_written.fetch_add(batch.lines.len() as u64, Relaxed);
                    if circuit != Circuit::Closed {
                        tracing::info!(sink = %id, "the sink is delivering again; circuit closed");
                    }
                    circuit = Circuit::Closed;
                    metrics.circuit_open.store(0, Relaxed);
                    failures = 0;
                    match delivered {
                        Delivered::Durable | Delivered::DurableExcept { .. } => {
                            staged = None;
                            settle(&reader, batch.end, &mut settled);
                            ages.record(&metrics.delivery_seconds.0);
                        }
                        Delivered::Staged => staged = Some(batch.end),
                    }
                    break;
                }
                Err(SendError::Reject { reason }) => {
                    tracing::error!(sink = %id, events = batch.events, "the destination refused a batch for good; dropped: {reason}");
                    metrics.rejected_batches.fetch_add(1, Relaxed);
                    metrics.events_dropped.fetch_add(batch.events, Relaxed);
                    ages.truncate(batch_ages);
                    // Past it, unless earlier batches still wait to become durable.
                    match staged {
                        Some(_) => staged = Some(batch.end),
                        None => settle(&reader, batch.end, &mut settled),
                    }
                    break;
                }
                Err(SendError::Restart { reason }) => {
                    replay(&mut reader, settled, &mut staged, &mut ages, &metrics, &reason);
                    metrics.retries.fetch_add(1, Relaxed);
                    batch.clear();
                    failures += 1;
                    if sleep_or_stop(backoff(&delivery, failures, &mut jitter), &mut stop).await {
                        break 'sink;
                    }
                    continue 'sink;
                }
                Err(SendError::Retry { reason, after }) => {
                    // The server's hint is honoured up to the sink's longest wait: a Retry-After
                    // of a day (or of 2^64 seconds) must not stop the sink.
                    let after = after.map(|a| a.min(delivery.retry_max));
                    failures += 1;
                    metrics.write_errors.fetch_add(1, Relaxed);
                    let backoff = backoff(&delivery, failures, &mut jitter).max(after.unwrap_or_default());
                    if circuit == Circuit::HalfOpen || failures >= delivery.breaker_failures {
                        let cooldown = delivery.breaker_cooldown.max(after.unwrap_or_default());
                        if circuit != Circuit::HalfOpen {
                            tracing::warn!(sink = %id, failures, "circuit open for {cooldown:?} after repeated failures: {reason}");
                        }
                        circuit = Circuit::Open(Instant::now() + cooldown);
                        metrics.circuit_open.store(1, Relaxed);
                    } else {
                        tracing::warn!(sink = %id, attempt = failures, "delivery failed, retrying in {backoff:?}: {reason}");
                        metrics.retries.fetch_add(1, Relaxed);
                        if sleep_or_stop(backoff, &mut stop).await {
                            break 'sink;
                        }
                    }
                }
            }
        }
        batch.clear();
    }
    // A batch gathered or in flight when the sink stopped was not delivered.
    ages.truncate(batch_ages);
    if let Ok(Delivered::Durable | Delivered::DurableExcept { .. }) = service.close().await {
        if let Some(end) = staged {
            settle(&reader, end, &mut settled);
            ages.record(&metrics.delivery_seconds.0);
        }
    }
}

/// Bytes read from the buffer at a time while a batch fills: each piece's end times are noted
/// while its lines are still in the CPU's cache (a whole batch, megabytes, is not).
const NOTE_BYTES: usize = 128 << 10;

/// A batch at the sink's size or byte limit goes out without waiting for the interval.
fn is_full(batch: &ReadBatch, delivery: &Delivery) -> bool {
    batch.events >= delivery.batch_size as u64 || batch.lines.len() >= delivery.batch_bytes
}

/// Fills `batch` from the buffer as far as there is to read and room, noting each piece's
/// end times in `ages` as it is read.
fn read_noting(reader: &mut Reader, delivery: &Delivery, batch: &mut ReadBatch, ages: &mut Pending) -> std::io::Result<()> {
    loop {
        let before = batch.lines.len();
        let result = reader.read(delivery.batch_size as u64, (before + NOTE_BYTES).min(delivery.batch_bytes), batch);
        ages.note(Lines::new(&batch.lines[before.min(batch.lines.len())..]));
        result?;
        if batch.lines.len() == before || is_full(batch, delivery) || !reader.has_more() {
            return Ok(());
        }
    }
}

/// Staged batches were lost at the destination: forget them and read again from `settled`.
fn replay(reader: &mut Reader, settled: u64, staged: &mut Option<u64>, ages: &mut Pending, metrics: &SinkMetrics, reason: &str) {
    tracing::warn!(sink = %reader.sink_id(), "staged events were lost at the destination; reading them again from the buffer: {reason}");
    metrics.write_errors.fetch_add(1, Relaxed);
    *staged = None;
    ages.forget();
    reader.rewind(settled);
}

/// Moves the sink's cursor: everything before `end` is delivered for good.
fn settle(reader: &Reader, end: u64, settled: &mut u64) {
    reader.wal().commit(reader.sink_id(), end);
    *settled = end;
}

/// Sleeps unless `stop` turns true first; true when stopping.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.changed() => true,
    }
}

/// The wait before retry `attempt` (1-based): doubling from the first wait up to the longest,
/// with "equal jitter" (half fixed, half random) so sinks that failed together do not retry
/// together.
fn backoff(d: &Delivery, attempt: u32, jitter: &mut Jitter) -> Duration {
    let exp = d.retry_initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(d.retry_max);
    exp / 2 + exp.mul_f64(jitter.next() * 0.5)
}

/// A small xorshift generator for jitter: no need for a cryptographic source here.
struct Jitter(u64);

impl Jitter {
    fn new(seed: &str) -> Jitter {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Jitter((t ^ h) | 1)
    }

    /// A number in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::wal::{Payload, Wal, WalConfig};
    use std::sync::atomic::AtomicBool;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A destination that refuses for good every batch holding a line marked `refuse`.
    #[derive(Default)]
    struct Refusing;

    impl Service for Refusing {
        async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError> {
            if batch.lines().any(|l| memchr::memmem::find(l, b"refuse").is_some()) {
                return Err(SendError::Reject { reason: "refused".into() });
            }
            Ok(Delivered::Durable)
        }
    }

    #[tokio::test]
    async fn each_delivered_event_has_its_age_recorded_once_and_a_refused_batch_none() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, mut writer) = Wal::open(WalConfig::new(dir.path()), Arc::new(Metrics::default())).unwrap();
        let reader = wal.attach("s");
        let end_ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        // 300 records of ten ~2 KB lines: batches of 1,000 events span many pieces read at a
        // time. Record 7 holds a refused line, so the first batch is refused.
        for r in 0..300 {
            let mut lines = String::new();
            for e in 0..10 {
                let mark = if r == 7 && e == 3 { "refuse" } else { "ok" };
                lines.push_str(&format!("{{\"event\":{{\"end_ns\":{end_ns}}},\"m\":\"{mark}\",\"pad\":\"{}\"}}\n", "x".repeat(2000)));
            }
            writer.append(std::iter::once(Payload::new(lines.as_bytes(), 10)), &AtomicBool::new(false)).unwrap();
        }
        drop(writer);
        let delivery = Delivery { batch_size: 1000, ..Delivery::defaults_for("file") };
        let metrics = Arc::new(SinkMetrics::default());
        let (_stop, stop) = watch::channel(false);
        tokio::time::timeout(Duration::from_secs(30), run(Refusing, reader, delivery, metrics.clone(), stop)).await.unwrap();
        assert_eq!(metrics.events_dropped.load(Relaxed), 1000);
        assert_eq!(metrics.events_written.load(Relaxed), 2000);
        assert_eq!(metrics.delivery_seconds.0.count(), 2000, "one age per delivered event");
    }

    #[test]
    fn backoff_doubles_up_to_the_longest_wait_with_bounded_jitter() {
        let d = Delivery { retry_initial: Duration::from_millis(100), retry_max: Duration::from_secs(2), ..Delivery::defaults_for("http") };
        let mut j = Jitter::new("t");
        for (attempt, exp) in [(1, 100), (2, 200), (3, 400), (5, 1600), (6, 2000), (40, 2000)] {
            let exp = Duration::from_millis(exp);
            for _ in 0..50 {
                let b = backoff(&d, attempt, &mut j);
                assert!(b >= exp / 2 && b <= exp, "attempt {attempt}: {b:?} outside [{:?}, {exp:?}]", exp / 2);
            }
        }
    }
}
