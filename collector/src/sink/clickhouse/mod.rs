//! The ClickHouse sink: RowBinary inserts (lz4-compressed, over HTTP, with the `clickhouse`
//! crate) of large batches into the table whose DDL ships here (`table.sql`), created on request.
//! Retries of a batch carry the same insert deduplication token on servers that support it
//! (22.2+), and the table is a ReplacingMergeTree keyed by `event_id`, so a duplicate from a
//! crash or a retry collapses even on servers that do not.

mod config;
mod service;

pub use config::{table_ddl, ClickHouseSettings};
pub use service::ClickHouseService;
