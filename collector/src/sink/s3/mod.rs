//! The S3 sink: gzip NDJSON or Parquet objects under hive-style partitions of each event's start time
//! (`<prefix>/dt=YYYY-MM-DD/hour=HH/`), in any S3-compatible store (custom endpoint,
//! path-style keys), uploaded in parts past a size. Object keys are derived from the batch's
//! place in the log, so a retried batch overwrites its own objects instead of duplicating them.

mod config;
mod service;

pub use config::S3Settings;
pub use service::S3Service;
