//! Each sink's cursor: the sequence number of the next record it has not yet delivered, kept in
//! `<buffer>/cursors/<sink id>` and replaced atomically (write, then rename), so a crash leaves
//! either the old or the new position, never a torn one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The cursor file of a sink. Ids are user-chosen: anything but `[A-Za-z0-9_.-]` is escaped.
pub fn path(dir: &Path, id: &str) -> PathBuf {
    let mut name = String::with_capacity(id.len() + 7);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') && !(name.is_empty() && b == b'.') {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".cursor");
    dir.join(name)
}

fn id_of(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".cursor")?;
    let mut bytes = Vec::with_capacity(stem.len());
    let mut it = stem.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

/// Every readable cursor in `dir`, and the ids whose cursor file cannot be read (those sinks
/// start again from the oldest record: duplicates, never loss; each is named in the log).
pub fn load_all(dir: &Path) -> std::io::Result<(BTreeMap<String, u64>, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut unreadable = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(id_of) else { continue };
        match std::fs::read_to_string(entry.path()).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(seq) => {
                out.insert(id, seq);
            }
            None => {
                tracing::warn!(sink = %id, "cursor file {} is unreadable; the sink restarts from the oldest buffered record", entry.path().display());
                unreadable.push(id);
            }
        }
    }
    Ok((out, unreadable))
}

/// Stores a cursor: a temporary file written and synced, renamed over the old one, the
/// directory synced, so a crash leaves the old or the new position, and the new one stays.
pub fn store(dir: &Path, id: &str, seq: u64) -> std::io::Result<()> {
    use std::io::Write;
    let p = path(dir, id);
    let tmp = p.with_extension("cursor.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{seq}\n").as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, &p)?;
    std::fs::File::open(dir)?.sync_all()
}

pub fn remove(dir: &Path, id: &str) {
    let _ = std::fs::remove_file(path(dir, id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_sink_id_round_trips_through_its_file_name() {
        let dir = tempfile::tempdir().unwrap();
        for (i, id) in ["kafka", "click house", "../etc/passwd", ".hidden", "é", "a%b"].iter().enumerate() {
            let p = path(dir.path(), id);
            assert_eq!(p.parent(), Some(dir.path()), "{id} stays inside the directory");
            store(dir.path(), id, i as u64 * 10).unwrap();
        }
        std::fs::write(dir.path().join("broken.cursor"), "x").unwrap();
        let (all, unreadable) = load_all(dir.path()).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(unreadable, ["broken"]);
        assert_eq!(all["../etc/passwd"], 20);
        assert_eq!(all["a%b"], 50);
        remove(dir.path(), "kafka");
        assert!(!load_all(dir.path()).unwrap().0.contains_key("kafka"));
    }
}
