use super::*;
use std::path::Path;
use std::sync::atomic::AtomicBool;

fn line(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(40)).into_bytes()
}

fn cfg(dir: &Path) -> WalConfig {
    WalConfig { segment_bytes: 1_000, max_bytes: 1 << 20, ..WalConfig::new(dir) }
}

#[test]
fn a_quarter_of_the_cap_is_kept_for_reuse_within_bounds() {
    let c = |segment_bytes: u64, max_bytes: u64| WalConfig { segment_bytes, max_bytes, ..WalConfig::new("d") }.spares();
    assert_eq!(c(64 << 20, 1 << 30), 4, "the defaults");
    assert_eq!(c(64 << 20, 128 << 20), 1, "at least one");
    assert_eq!(c(1 << 20, 1 << 40), 8, "at most eight");
}

/// Appends `n` one-event records numbered from `from`.
fn append(w: &mut Writer, from: u64, n: u64) {
    let stop = AtomicBool::new(false);
    for i in from..from + n {
        let l = line(i);
        w.append(std::iter::once(Payload::new(&l, 1)), &stop).unwrap();
    }
}

fn numbers(b: &ReadBatch) -> Vec<u64> {
    b.lines().map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["n"].as_u64().unwrap()).collect()
}

fn read_all(r: &mut Reader) -> ReadBatch {
    let mut b = ReadBatch::default();
    r.read(u64::MAX, usize::MAX, &mut b).unwrap();
    b
}

fn open(c: WalConfig) -> (Wal, Writer, Arc<Metrics>) {
    let m = Arc::new(Metrics::default());
    let (wal, w) = Wal::open(c, m.clone()).unwrap();
    (wal, w, m)
}

#[test]
fn records_read_back_in_order_across_segments_and_delivered_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    let mut r = wal.attach("file");
    append(&mut w, 0, 60);
    assert!(m.wal.segments.load(Relaxed) > 3, "1000-byte segments roll");
    let b = read_all(&mut r);
    assert_eq!(numbers(&b), (0..60).collect::<Vec<_>>());
    assert_eq!((b.first, b.end, b.events), (0, 60, 60));
    let before = files(dir.path());
    wal.commit("file", b.end);
    let after = files(dir.path());
    assert_eq!(after.iter().filter(|n| n.ends_with(".wal")).count(), 1, "only the writer's segment is left (had {before:?})");
    let spares = after.iter().filter(|n| n.ends_with(".spare")).count();
    let delivered = before.iter().filter(|n| n.ends_with(".wal")).count() - 1;
    assert_eq!(spares, delivered.min(cfg(dir.path()).spares()), "delivered segments wait for reuse, up to the limit: {after:?}");
    assert_eq!(after.len(), 1 + spares + 1, "and the cursor folder, nothing else: {after:?}");
    assert_eq!(m.wal.spare_segments.load(Relaxed), spares as u64);
    assert_eq!(wal.lag("file"), 0);
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// The bytes of one record of `line(i)` for a small `i`.
fn record_len() -> usize {
    record::HEADER_LEN + line(0).len()
}

#[test]
fn delivered_segments_are_reused_and_every_record_reads_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    let mut r = wal.attach("s");
    let mut seen = Vec::new();
    for round in 0..40 {
        append(&mut w, round * 7, 7);
        let b = read_all(&mut r);
        seen.extend(numbers(&b));
        wal.commit("s", b.end);
        let names = files(dir.path());
        assert!(names.len() <= 2 + cfg(dir.path()).spares() + 1, "files stay bounded: {names:?}");
    }
    assert_eq!(seen, (0..280).collect::<Vec<_>>());
    let recycled = m.wal.recycled_segments.load(Relaxed);
    assert!(recycled >= 10, "1000-byte segments roll every ~13 records and reuse delivered files: {recycled}");
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 0);
}

#[test]
fn a_crash_in_a_reused_segment_replays_its_own_records_and_not_the_files_earlier_life() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, mut w, m) = open(cfg(dir.path()));
        let mut r = wal.attach("s");
        // Fill and deliver segments until the writer's segment is a reused file, then put two
        // records in it: the rest of the file is its earlier life.
        let mut n = 0;
        while m.wal.recycled_segments.load(Relaxed) < 2 {
            append(&mut w, n, 1);
            n += 1;
            let b = read_all(&mut r);
            wal.commit("s", b.end);
        }
        append(&mut w, n, 2);
        let b = read_all(&mut r);
        assert_eq!(numbers(&b), vec![n, n + 1]);
        wal.commit("s", b.first); // delivered up to them, not them
        drop(r); // stores the cursor
        let active = files(dir.path()).into_iter().filter(|f| f.ends_with(".wal")).max().unwrap();
        let active_len = std::fs::metadata(dir.path().join(active)).unwrap().len() as usize;
        assert!(active_len > SEGMENT_MAGIC_LEN + 4 * record_len(), "the reused file holds more than its new records ({active_len} bytes)");
        std::mem::forget(w); // killed: no clean stop
    }
    let (wal, _w, m) = open(cfg(dir.path()));
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 0, "the earlier life is not corruption");
    let b = read_all(&mut wal.attach("s"));
    assert_eq!(b.events, 2, "exactly the two records written since the reuse: {:?}", numbers(&b));
}

#[test]
fn a_reader_holding_a_segment_whose_file_was_reused_reads_on_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    let mut r = wal.attach("s");
    // Records 0..13 fill the first segment; the reader reads them all and keeps it open.
    let per_segment = (1_000 - SEGMENT_MAGIC_LEN).div_ceil(record_len()) as u64;
    append(&mut w, 0, per_segment);
    assert_eq!(numbers(&read_all(&mut r)), (0..per_segment).collect::<Vec<_>>());
    append(&mut w, per_segment, 1); // the writer rolls to a new file
    wal.commit("s", per_segment); // the first segment is delivered: its file becomes a spare
    assert_eq!(m.wal.spare_segments.load(Relaxed), 1);
    // Fill the second segment and start a third in the first one's file, past its old length.
    append(&mut w, per_segment + 1, 2 * per_segment);
    assert_eq!(m.wal.recycled_segments.load(Relaxed), 1);
    let total = 3 * per_segment + 1;
    assert_eq!(numbers(&read_all(&mut r)), (per_segment..total).collect::<Vec<_>>(), "nothing skipped, nothing read twice");
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 0, "the reused file's new records were never read as the old segment's");
}

#[test]
fn reads_stop_at_the_size_limits_on_whole_records() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, mut w, _) = open(cfg(dir.path()));
    let mut r = wal.attach("s");
    append(&mut w, 0, 10);
    let mut b = ReadBatch::default();
    r.read(3, usize::MAX, &mut b).unwrap();
    assert_eq!(numbers(&b), vec![0, 1, 2]);
    b.clear();
    r.read(u64::MAX, 1, &mut b).unwrap();
    assert_eq!(numbers(&b), vec![3], "at least one record even past the byte limit");
    assert_eq!(b.end, 4);
}

#[test]
fn a_restart_resumes_each_sink_at_its_cursor_and_new_sinks_start_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, mut w, _) = open(cfg(dir.path()));
        let mut fast = wal.attach("fast");
        let _slow = wal.attach("slow");
        append(&mut w, 0, 30);
        let b = read_all(&mut fast);
        wal.commit("fast", b.end);
        let mut part = ReadBatch::default();
        let mut slow = wal.attach("slow");
        slow.read(10, usize::MAX, &mut part).unwrap();
        wal.commit("slow", part.end);
    }
    let (wal, mut w, m) = open(cfg(dir.path()));
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 0);
    let mut slow = wal.attach("slow");
    let mut fast = wal.attach("fast");
    let mut newcomer = wal.attach("new");
    assert_eq!(numbers(&read_all(&mut slow)), (10..30).collect::<Vec<_>>());
    assert!(read_all(&mut fast).is_empty());
    append(&mut w, 30, 2);
    assert_eq!(numbers(&read_all(&mut fast)), vec![30, 31], "sequence numbers continue after the restart");
    assert_eq!(numbers(&read_all(&mut newcomer)), vec![30, 31]);
}

#[test]
fn a_crash_redelivers_at_most_the_commits_of_the_last_moments_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, mut w, _) = open(WalConfig { segment_bytes: 1 << 20, ..cfg(dir.path()) });
        let mut r = wal.attach("s");
        append(&mut w, 0, 30);
        let mut b = ReadBatch::default();
        r.read(10, usize::MAX, &mut b).unwrap();
        std::thread::sleep(CURSOR_STORE_EVERY);
        wal.commit("s", b.end); // written: the last write is old enough
        wal.commit("s", 20); // right after: only in memory
        std::mem::forget(r); // killed: the reader never stops
    }
    let (wal, _w, _) = open(cfg(dir.path()));
    let mut r = wal.attach("s");
    assert_eq!(numbers(&read_all(&mut r)), (10..30).collect::<Vec<_>>(), "10..20 again, nothing lost");
    wal.commit("s", 25);
    drop(r); // a sink that stops writes its cursor
    let (wal, _w, _) = open(cfg(dir.path()));
    assert_eq!(numbers(&read_all(&mut wal.attach("s"))), (25..30).collect::<Vec<_>>());
}

#[test]
fn a_torn_tail_is_cut_and_a_corrupt_record_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, mut w, _) = open(WalConfig { segment_bytes: 1 << 20, ..cfg(dir.path()) });
        let _r = wal.attach("s");
        append(&mut w, 0, 5);
    }
    let seg = segment::path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let rec = record::HEADER_LEN + line(0).len();
    // Flip a payload byte of the second record, and tear the last one in half (the file's
    // last block is padded with zeros past the records).
    bytes[SEGMENT_MAGIC_LEN + rec + record::HEADER_LEN + 3] ^= 0x20;
    bytes.truncate(SEGMENT_MAGIC_LEN + 5 * rec - rec / 2);
    std::fs::write(&seg, &bytes).unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 2, "one flipped, one torn");
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, SEGMENT_MAGIC_LEN + 4 * rec, "the torn tail is cut off");
    let mut r = wal.attach("s");
    let b = read_all(&mut r);
    assert_eq!(numbers(&b), vec![0, 2, 3]);
    append(&mut w, 100, 1);
    assert_eq!(numbers(&read_all(&mut r)), vec![100]);
}

const SEGMENT_MAGIC_LEN: usize = record::SEGMENT_MAGIC.len();

#[test]
fn a_file_that_is_not_a_segment_is_set_aside_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment::path(dir.path(), 0), b"garbage").unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 1);
    assert!(dir.path().join("00000000000000000000.corrupt").exists());
    let mut r = wal.attach("s");
    append(&mut w, 0, 2);
    assert_eq!(numbers(&read_all(&mut r)), vec![0, 1]);
}

#[test]
fn drop_oldest_deletes_undelivered_segments_and_counts_each_sinks_loss() {
    let dir = tempfile::tempdir().unwrap();
    let c = WalConfig { max_bytes: 3_000, when_full: WhenFull::DropOldest, ..cfg(dir.path()) };
    let (wal, mut w, m) = open(c);
    let mut r = wal.attach("down");
    append(&mut w, 0, 200);
    assert!(m.wal.bytes.load(Relaxed) <= 3_000 + 1_000, "the cap holds: {}", m.wal.bytes.load(Relaxed));
    assert!(m.wal.dropped_segments.load(Relaxed) > 0);
    let lost = m.sink("down").events_dropped.load(Relaxed);
    let b = read_all(&mut r);
    assert_eq!(lost + b.events, 200, "every event is either delivered or counted as lost");
    assert_eq!(*numbers(&b).last().unwrap(), 199);
}

#[test]
fn records_a_sink_has_read_are_not_counted_lost_when_their_segment_goes() {
    let dir = tempfile::tempdir().unwrap();
    let c = WalConfig { max_bytes: 3_000, when_full: WhenFull::DropOldest, ..cfg(dir.path()) };
    let (wal, mut w, m) = open(c);
    let mut r = wal.attach("slow");
    append(&mut w, 0, 10);
    // The sink has these in hand (read, not yet committed) when the log drops their segment.
    let mut in_hand = ReadBatch::default();
    r.read(u64::MAX, usize::MAX, &mut in_hand).unwrap();
    assert_eq!(in_hand.events, 10);
    append(&mut w, 10, 200);
    assert!(m.wal.dropped_segments.load(Relaxed) > 0);
    let lost = m.sink("slow").events_dropped.load(Relaxed);
    let rest = read_all(&mut r);
    assert_eq!(in_hand.events + rest.events + lost, 210, "delivered once or counted lost, never both");
}

#[test]
fn block_waits_for_a_sink_to_free_space_and_gives_up_when_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let c = WalConfig { max_bytes: 3_000, when_full: WhenFull::Block, ..cfg(dir.path()) };
    let (wal, mut w, m) = open(c);
    let mut r = wal.attach("slow");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut written = 0;
            for i in 0..200u64 {
                let l = line(i);
                match w.append(std::iter::once(Payload::new(&l, 1)), &stop) {
                    Ok(()) => written += 1,
                    Err(AppendError::Stopping(_)) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            written
        })
    };
    // Wait until the writer blocks, then deliver some and check it moves on.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while m.wal.blocked.load(Relaxed) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(m.wal.blocked.load(Relaxed), 1, "the writer blocks at the cap");
    let held = wal.durable();
    let b = read_all(&mut r);
    wal.commit("slow", b.end);
    while wal.durable() == held && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(wal.durable() > held, "space freed: the writer went on");
    stop.store(true, Relaxed);
    let written = writer.join().unwrap();
    assert!(written < 200, "stopping while blocked ends the wait");
    assert!(m.wal.bytes.load(Relaxed) <= 3_000);
    assert_eq!(m.sink("slow").events_dropped.load(Relaxed), 0, "block never loses what was written");
}

#[test]
fn interval_fsync_publishes_at_once_and_syncs_on_tick() {
    let dir = tempfile::tempdir().unwrap();
    let c = WalConfig { fsync: Fsync::Interval(Duration::ZERO), ..cfg(dir.path()) };
    let (wal, mut w, m) = open(c);
    let mut r = wal.attach("s");
    append(&mut w, 0, 3);
    assert_eq!(m.wal.fsync_seconds.count(), 0);
    assert_eq!(read_all(&mut r).events, 3);
    w.tick();
    assert_eq!(m.wal.fsync_seconds.count(), 1);
}

#[test]
fn a_removed_sink_stops_holding_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    let mut kept = wal.attach("kept");
    let _gone = wal.attach("gone");
    append(&mut w, 0, 60);
    let b = read_all(&mut kept);
    wal.commit("kept", b.end);
    assert!(m.wal.segments.load(Relaxed) > 1, "the other sink still holds them");
    wal.retain_sinks(&["kept"]);
    assert_eq!(m.wal.segments.load(Relaxed), 1);
    assert!(!cursor::path(&dir.path().join("cursors"), "gone").exists());
}

#[test]
fn the_intake_writes_readable_records_with_or_without_the_workers_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, w, m) = open(cfg(dir.path()));
    let mut r = wal.attach("file");
    let (tx, rx) = crossbeam_channel::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let intake = intake::spawn(w, rx, crate::tap::TapHub::default(), stop, m.clone()).unwrap();
    for i in 0..6u64 {
        let lines = line(i);
        // As a worker sends them (checksummed), and as any other sender would (not).
        let lines_crc = (i % 2 == 0).then(|| crc32fast::hash(&lines));
        tx.send(crate::ingest::Batch { lines, events: 1, lines_crc, ack: None, held: None }).unwrap();
    }
    drop(tx);
    intake.join().unwrap();
    let b = read_all(&mut r);
    assert_eq!(numbers(&b), (0..6).collect::<Vec<_>>(), "every record verified and read back");
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 0);
}

/// Writes `n` records from `from` in 1,000-byte segments with sink `s` attached and reading
/// nothing; returns the segment files' first sequence numbers.
fn segments_with(dir: &Path, n: u64) -> Vec<u64> {
    let (wal, mut w, _) = open(cfg(dir));
    let _r = wal.attach("s");
    append(&mut w, 0, n);
    drop(w);
    let mut firsts: Vec<u64> = files(dir).iter().filter_map(|f| segment::parse_name(f)).collect();
    firsts.sort_unstable();
    firsts
}

#[test]
fn a_damaged_middle_segment_is_skipped_and_every_sink_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let firsts = segments_with(dir.path(), 60);
    assert!(firsts.len() >= 4);
    let (lost_from, lost_to) = (firsts[1], firsts[2]);
    std::fs::write(segment::path(dir.path(), lost_from), b"not a segment any more").unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 1);
    let mut r = wal.attach("s");
    let got = numbers(&read_all(&mut r));
    let want: Vec<u64> = (0..60).filter(|n| !(lost_from..lost_to).contains(n)).collect();
    assert_eq!(got, want, "everything but the damaged segment, once");
    append(&mut w, 60, 1);
    assert_eq!(numbers(&read_all(&mut r)), [60], "and the sink goes on");
}

#[test]
fn a_sink_positioned_in_a_segment_that_disappears_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    let mut r = wal.attach("s");
    append(&mut w, 0, 60);
    let mut firsts: Vec<u64> = files(dir.path()).iter().filter_map(|f| segment::parse_name(f)).collect();
    firsts.sort_unstable();
    std::fs::remove_file(segment::path(dir.path(), firsts[0])).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let got = numbers(&read_all(&mut r));
        let _ = tx.send(got);
    });
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("the reader spun instead of moving on");
    assert_eq!(got, (firsts[1]..60).collect::<Vec<_>>());
    assert!(m.wal.corrupt_records.load(Relaxed) >= firsts[1], "the lost records are counted");
    drop(w);
    drop(wal);
}

#[test]
fn a_flipped_length_costs_one_record_not_the_rest_of_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, mut w, _) = open(WalConfig { segment_bytes: 1 << 20, ..cfg(dir.path()) });
        let _r = wal.attach("s");
        append(&mut w, 0, 10);
    }
    let seg = segment::path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    // The third record's length, made to point far past its payload.
    bytes[SEGMENT_MAGIC_LEN + 2 * record_len() + 1] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 1);
    let mut r = wal.attach("s");
    assert_eq!(numbers(&read_all(&mut r)), [0, 1, 3, 4, 5, 6, 7, 8, 9], "only the damaged record is lost");
    append(&mut w, 10, 1);
    assert_eq!(numbers(&read_all(&mut r)), [10]);
}

#[test]
fn an_unreadable_cursor_starts_its_sink_at_the_oldest_record_not_the_end() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, mut w, _) = open(cfg(dir.path()));
        let _r = wal.attach("s");
        append(&mut w, 0, 20);
    }
    std::fs::write(cursor::path(&dir.path().join("cursors"), "s"), b"\0\0garbage").unwrap();
    let (wal, _w, _) = open(cfg(dir.path()));
    assert_eq!(numbers(&read_all(&mut wal.attach("s"))), (0..20).collect::<Vec<_>>(), "the backlog is delivered, not skipped");
}

#[test]
fn a_failed_sync_is_never_trusted_and_no_record_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    {
        let (wal, mut w, _) = open(WalConfig { segment_bytes: 1 << 20, ..cfg(dir.path()) });
        let mut r = wal.attach("s");
        append(&mut w, 0, 3);
        let l = line(3);
        writer::FAIL_SYNC.with(|c| c.set(true));
        assert!(matches!(w.append(std::iter::once(Payload::new(&l, 1)), &stop), Err(AppendError::Io(_))), "not acknowledged");
        assert_eq!(numbers(&read_all(&mut r)), [0, 1, 2], "nothing unsynced is published");
        // The caller writes the group again: it goes to a new segment.
        w.append(std::iter::once(Payload::new(&l, 1)), &stop).unwrap();
        append(&mut w, 4, 2);
        assert_eq!(numbers(&read_all(&mut r)), [3, 4, 5]);
        assert_eq!(files(dir.path()).iter().filter(|f| f.ends_with(".wal")).count(), 2);
    }
    // What the failed group left in the first segment, had the cut not reached the disk.
    let first = segment::path(dir.path(), 0);
    let mut bytes = std::fs::read(&first).unwrap();
    record::encode(&mut bytes, 3, 1, &line(3));
    std::fs::write(&first, &bytes).unwrap();
    let (wal, _w, _) = open(cfg(dir.path()));
    assert_eq!(numbers(&read_all(&mut wal.attach("fresh-reader-from-0"))), Vec::<u64>::new(), "a new sink starts at the end");
    let c = cursor::path(&dir.path().join("cursors"), "s");
    std::fs::write(&c, "0\n").unwrap();
    let (wal, _w, _) = open(cfg(dir.path()));
    assert_eq!(numbers(&read_all(&mut wal.attach("s"))), (0..6).collect::<Vec<_>>(), "each record once, in order");
}

#[test]
fn a_segment_of_the_first_format_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = record::SEGMENT_MAGIC_V1.to_vec();
    for i in 0..3u64 {
        let l = line(i);
        let mut c = crc32fast::Hasher::new();
        c.update(&i.to_le_bytes());
        c.update(&1u32.to_le_bytes());
        c.update(&l);
        bytes.extend_from_slice(&(l.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&c.finalize().to_le_bytes());
        bytes.extend_from_slice(&i.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&l);
    }
    std::fs::write(segment::path(dir.path(), 0), &bytes).unwrap();
    std::fs::create_dir_all(dir.path().join("cursors")).unwrap();
    cursor::store(&dir.path().join("cursors"), "s", 0).unwrap();
    let (wal, mut w, m) = open(cfg(dir.path()));
    assert_eq!(m.wal.corrupt_records.load(Relaxed), 0);
    let mut r = wal.attach("s");
    append(&mut w, 3, 1);
    assert_eq!(numbers(&read_all(&mut r)), [0, 1, 2, 3], "the old records, then new ones in the new format");
}
