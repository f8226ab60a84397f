//! The ClickHouse sink's I/O: one INSERT per batch.

use super::{table_ddl, ClickHouseSettings};
use crate::sink::row::{parse_lines, EventRow};
use crate::sink::driver::{Delivered, SendError, Service};
use crate::wal::ReadBatch;
use clickhouse::Client;

/// Inserts into one table.
pub struct ClickHouseService {
    settings: ClickHouseSettings,
    client: Client,
    /// The table is there (created or checked) and the server's version known.
    ready: bool,
    /// The server understands `insert_deduplication_token` (22.2 and later).
    dedup_token: bool,
    /// Prefix of the per-batch token: the same records always give the same token.
    token_prefix: String,
}

impl ClickHouseService {
    pub fn new(settings: ClickHouseSettings, sink_id: &str, host: &str) -> ClickHouseService {
        let s = &settings.sink;
        let mut client = Client::default().with_url(&s.url).with_database(&s.database).with_validation(false);
        if let Some(u) = &s.username {
            client = client.with_user(u);
        }
        if let Some(p) = &s.password {
            client = client.with_password(p.expose());
        }
        ClickHouseService { settings, client, ready: false, dedup_token: false, token_prefix: format!("{host}/{sink_id}/") }
    }

    async fn prepare(&mut self) -> Result<(), SendError> {
        let url = &self.settings.sink.url;
        let version: String = self.client.query("SELECT version()").fetch_one().await.map_err(|e| SendError::retry(format!("cannot reach ClickHouse at {url}: {e}")))?;
        self.dedup_token = major_minor(&version) >= (22, 2);
        if self.settings.sink.create_table {
            self.client.query(&table_ddl(&self.settings.sink.table)).execute().await.map_err(|e| SendError::retry(format!("creating table `{}` failed: {e}", self.settings.sink.table)))?;
        }
        tracing::info!(version = %version, dedup_token = self.dedup_token, "ClickHouse sink connected to {url}");
        self.ready = true;
        Ok(())
    }
}

/// `(major, minor)` of a version string such as `18.16.1` or `24.3.2.23`.
fn major_minor(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Errors about the data itself will fail the same way again: refuse the batch.
fn classify(e: clickhouse::error::Error, table: &str) -> SendError {
    let text = e.to_string();
    if ["Cannot parse", "TYPE_MISMATCH", "CANNOT_PARSE", "Code: 27.", "Code: 53."].iter().any(|m| text.contains(m)) {
        SendError::Reject { reason: format!("ClickHouse refused the batch: {text}") }
    } else {
        SendError::retry(format!("inserting into `{table}` failed: {text}"))
    }
}

impl Service for ClickHouseService {
    async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError> {
        if !self.ready {
            self.prepare().await?;
        }
        let table = self.settings.sink.table.as_str();
        let events = parse_lines(batch.lines(), "ClickHouse");
        let mut insert = self.client.insert::<EventRow<'_>>(table).await.map_err(|e| classify(e, table))?;
        if self.dedup_token {
            insert = insert.with_setting("insert_deduplication_token", format!("{}{}-{}", self.token_prefix, batch.first, batch.end));
        }
        for e in &events {
            insert.write(&EventRow::from_event(e)).await.map_err(|e| classify(e, table))?;
        }
        insert.end().await.map_err(|e| {
            // A missing table is a setting to fix, not bad data: keep retrying, and say so.
            if e.to_string().contains("doesn't exist") || e.to_string().contains("UNKNOWN_TABLE") {
                self.ready = false;
                return SendError::retry(format!("table `{}.{table}` does not exist; create it (collector/src/sink/clickhouse/table.sql) or set `create-table #true`", self.settings.sink.database));
            }
            classify(e, table)
        })?;
        Ok(Delivered::Durable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(major_minor("18.16.1") < (22, 2));
        assert!(major_minor("24.3.2.23") >= (22, 2));
        assert!(major_minor("22.2.1") >= (22, 2));
        assert_eq!(major_minor("garbage"), (0, 0));
    }
}
