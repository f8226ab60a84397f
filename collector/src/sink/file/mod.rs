//! The local file sink: NDJSON (one event a line) or Parquet (typed columns, zstd), into a file
//! that rotates by size and age. NDJSON is the embedded default: it needs no server and nothing
//! it accepted is lost on shutdown. A Parquet file is complete only once rotated, so its events
//! stay in the buffer until then; an unfinished one left by a crash is removed at start and its
//! events written again.

mod config;
mod ndjson;
mod parquet;
mod rotate;
mod uncached;

pub use config::FileSinkConfig;
pub use ndjson::NdjsonFileService;
pub use parquet::ParquetFileService;
