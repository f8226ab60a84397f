//! The ClickHouse sink's settings and the table's DDL.

use sentinel_config::ClickHouseSink;

/// The shipped table definition, with `{table}` for the table's name.
const TABLE_SQL: &str = include_str!("table.sql");

/// The DDL creating `table` (if it does not exist).
pub fn table_ddl(table: &str) -> String {
    TABLE_SQL.lines().filter(|l| !l.starts_with("--")).collect::<Vec<_>>().join("\n").replace("{table}", table)
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct ClickHouseSettings {
    pub sink: ClickHouseSink,
}

impl ClickHouseSettings {
    /// Refuses names that would need quoting (they go into SQL as identifiers).
    pub fn check(sink: &ClickHouseSink) -> Result<ClickHouseSettings, String> {
        for (what, name) in [("database", &sink.database), ("table", &sink.table)] {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || name.as_bytes()[0].is_ascii_digit() {
                return Err(format!("{what} name {name:?} must be letters, digits and `_`, not starting with a digit"));
            }
        }
        Ok(ClickHouseSettings { sink: sink.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ddl_names_the_table_and_keeps_no_comments() {
        let ddl = table_ddl("events");
        assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS events ("), "{ddl}");
        assert!(!ddl.contains("--"));
        assert!(ddl.contains("ReplacingMergeTree"));
    }

    #[test]
    fn names_that_would_need_quoting_are_refused() {
        let mut s = ClickHouseSink { url: "http://x".into(), database: "default".into(), table: "events".into(), username: None, password: None, create_table: true };
        assert!(ClickHouseSettings::check(&s).is_ok());
        s.table = "events; DROP TABLE x".into();
        assert!(ClickHouseSettings::check(&s).unwrap_err().contains("table name"));
    }
}
