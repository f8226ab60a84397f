//! The local file sink: NDJSON, one event a line, into a file that rotates by size and age.
//! It is the embedded default: it needs no server and nothing it accepted is lost on shutdown.

mod config;
mod service;

pub use config::FileSinkConfig;
pub use service::FileService;
