//! Settings of the file sink.

use sentinel_config::FileFormat;
use std::path::PathBuf;
use std::time::Duration;

/// Where and how the file sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// Directory of the output files; created if missing.
    pub dir: PathBuf,
    /// The active file is `<dir>/<prefix>.ndjson` (or `<prefix>.parquet.partial`); rotated ones
    /// `<prefix>-<UTC time>-<seq>.ndjson` (or `.parquet`).
    pub prefix: String,
    pub format: FileFormat,
    /// Rotate once the active file holds this many bytes.
    pub max_bytes: u64,
    /// Rotate once the active file is this old.
    pub max_age: Duration,
    /// Rotated files kept; older ones are deleted (0 keeps all).
    pub max_files: usize,
    /// Parquet only: rotate once the open file's events took this many bytes in the buffer.
    /// They stay in the buffer until the file is complete, so this keeps a file from holding
    /// more than a share of the buffer's cap.
    pub max_staged_bytes: u64,
    /// Write with `RWF_DONTCACHE` where the kernel supports it (see `uncached`).
    pub drop_pages: bool,
}

impl FileSinkConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSinkConfig {
            dir: dir.into(),
            prefix: "events".into(),
            format: FileFormat::Ndjson,
            max_bytes: 256 << 20,
            max_age: Duration::from_secs(3600),
            max_files: 24,
            max_staged_bytes: 256 << 20,
            drop_pages: true,
        }
    }

    /// The settings a `sink "file"` block asks for, next to a buffer of `buffer_bytes`.
    pub fn from_model(f: &sentinel_config::FileSink, buffer_bytes: u64) -> FileSinkConfig {
        FileSinkConfig {
            format: f.format,
            max_bytes: f.rotate_bytes,
            max_age: f.rotate_after,
            max_files: f.keep_files,
            max_staged_bytes: (buffer_bytes / 4).max(1 << 20),
            drop_pages: f.drop_pages,
            ..FileSinkConfig::new(&f.dir)
        }
    }

    /// The extension of complete files.
    pub fn extension(&self) -> &'static str {
        match self.format {
            FileFormat::Ndjson => "ndjson",
            FileFormat::Parquet => "parquet",
        }
    }

    /// The file being written now (a Parquet one is not readable until it is rotated).
    pub fn active_path(&self) -> PathBuf {
        match self.format {
            FileFormat::Ndjson => self.dir.join(format!("{}.ndjson", self.prefix)),
            FileFormat::Parquet => self.dir.join(format!("{}.parquet.partial", self.prefix)),
        }
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
