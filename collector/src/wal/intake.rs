//! The thread that takes the pipeline's processed batches into the log: it gathers what is
//! waiting into one group, appends it (one write, one fsync), and then acknowledges every batch
//! of the group to its proxy. A failing disk is retried, never skipped: batches that are not
//! durable are not acknowledged.

use super::{AppendError, Payload, Writer};
use crate::ingest::Batch;
use crate::metrics::Metrics;
use crate::tap::{Stage, TapHub};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most batches and bytes gathered into one append.
const GROUP_BATCHES: usize = 512;
const GROUP_BYTES: usize = 16 << 20;
/// How often an idle writer wakes to apply the interval fsync policy.
const TICK: Duration = Duration::from_millis(50);

/// Starts the intake thread. It ends once every sender of `batches` is gone and what they sent
/// is written (or, if `stop` is set while the log is full, given up unacknowledged).
pub fn spawn(mut writer: Writer, batches: Receiver<Batch>, taps: TapHub, stop: Arc<AtomicBool>, metrics: Arc<Metrics>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("wal-writer".into()).spawn(move || {
        let mut group: Vec<Batch> = Vec::with_capacity(GROUP_BATCHES);
        loop {
            let first = match batches.recv_timeout(TICK) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => {
                    writer.tick();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut bytes = first.lines.len();
            group.push(first);
            while group.len() < GROUP_BATCHES && bytes < GROUP_BYTES {
                match batches.try_recv() {
                    Ok(b) => {
                        bytes += b.lines.len();
                        group.push(b);
                    }
                    Err(_) => break,
                }
            }
            if taps.watching(Stage::Processed) {
                for b in &group {
                    taps.offer(Stage::Processed, &Arc::new(Batch { lines: b.lines.clone(), events: b.events, lines_crc: b.lines_crc, ack: None, held: None }));
                }
            }
            if !append(&mut writer, &group, &stop, &metrics) {
                group.clear(); // stopping at the cap: not durable, so not acknowledged
                continue;
            }
            for b in group.drain(..) {
                if let Some(a) = b.ack {
                    a.complete();
                }
            }
            writer.tick();
        }
        writer.sync();
    })
}

/// Appends the group, retrying on I/O errors; false when it was given up.
fn append(writer: &mut Writer, group: &[Batch], stop: &AtomicBool, metrics: &Metrics) -> bool {
    loop {
        let items = group.iter().map(|b| {
            let events = u32::try_from(b.events).unwrap_or(u32::MAX);
            b.lines_crc.map_or_else(|| Payload::new(&b.lines, events), |crc| Payload { lines: &b.lines, events, crc })
        });
        match writer.append(items, stop) {
            Ok(()) => return true,
            Err(AppendError::Stopping(_)) => return false,
            Err(e) => {
                metrics.wal.write_errors.fetch_add(1, Relaxed);
                tracing::error!("{e}; retrying in 1 s (nothing is acknowledged meanwhile)");
                for _ in 0..20 {
                    if stop.load(Relaxed) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}
