//! Settings of the file sink.

use std::path::PathBuf;
use std::time::Duration;

/// Where and how the file sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// Directory of the output files; created if missing.
    pub dir: PathBuf,
    /// The active file is `<dir>/<prefix>.ndjson`; rotated ones `<prefix>-<UTC time>-<seq>.ndjson`.
    pub prefix: String,
    /// Rotate once the active file holds this many bytes.
    pub max_bytes: u64,
    /// Rotate once the active file is this old.
    pub max_age: Duration,
    /// Rotated files kept; older ones are deleted (0 keeps all).
    pub max_files: usize,
}

impl FileSinkConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSinkConfig {
            dir: dir.into(),
            prefix: "events".into(),
            max_bytes: 256 << 20,
            max_age: Duration::from_secs(3600),
            max_files: 24,
        }
    }

    /// The settings a `sink "file"` block asks for.
    pub fn from_model(f: &sentinel_config::FileSink) -> FileSinkConfig {
        FileSinkConfig { max_bytes: f.rotate_bytes, max_age: f.rotate_after, max_files: f.keep_files, ..FileSinkConfig::new(&f.dir) }
    }

    /// The file being written now.
    pub fn active_path(&self) -> PathBuf {
        self.dir.join(format!("{}.ndjson", self.prefix))
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.prefix.is_empty() || self.prefix.contains('/') {
            return Err(format!("file sink prefix {:?} must be a non-empty file name", self.prefix));
        }
        if self.max_bytes == 0 {
            return Err("file sink max-bytes must be greater than 0".into());
        }
        Ok(())
    }
}
