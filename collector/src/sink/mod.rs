//! Sinks: where processed events end up. Each sink has a folder that reads alike:
//! `config.rs` (the user-facing settings and their checks) and `sink.rs` (writing and driving).

pub mod file;
