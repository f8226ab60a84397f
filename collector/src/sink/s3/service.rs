//! The S3 sink's I/O: one object per partition a batch touches, gzip NDJSON or Parquet.

use super::S3Settings;
use crate::sink::driver::{Delivered, SendError, Service};
use crate::utc::Civil;
use crate::wal::ReadBatch;
use flate2::write::GzEncoder;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use sentinel_config::ObjectFormat;
use std::collections::BTreeMap;
use std::io::Write;

/// Writes objects to one bucket.
pub struct S3Service {
    settings: S3Settings,
    store: AmazonS3,
    /// Part of every object name: which collector and sink wrote it.
    writer: String,
}

/// Just the field partitions come from.
#[derive(serde::Deserialize)]
struct Stamp {
    event: StampEvent,
}

#[derive(serde::Deserialize)]
struct StampEvent {
    start_ns: u64,
}

impl S3Service {
    pub fn new(settings: S3Settings, sink_id: &str, host: &str) -> Result<S3Service, String> {
        let store = settings.store()?;
        let writer: String = format!("{host}-{sink_id}").chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        Ok(S3Service { settings, store, writer })
    }

    /// The object key for the events of one partition of a batch.
    fn key(&self, partition: &str, batch: &ReadBatch) -> Path {
        let ext = match self.settings.sink.format {
            ObjectFormat::NdjsonGzip => "ndjson.gz",
            ObjectFormat::Parquet => "parquet",
        };
        let name = format!("{partition}/{}-{:020}-{:020}.{ext}", self.writer, batch.first, batch.end);
        let prefix = &self.settings.sink.prefix;
        Path::from(if prefix.is_empty() { name } else { format!("{prefix}/{name}") })
    }

    async fn upload(&self, key: &Path, body: Vec<u8>) -> Result<(), object_store::Error> {
        let part = self.settings.sink.multipart_bytes;
        if body.len() <= part {
            self.store.put(key, PutPayload::from(body)).await?;
            return Ok(());
        }
        let mut upload = self.store.put_multipart(key).await?;
        for chunk in body.chunks(part) {
            if let Err(e) = upload.put_part(PutPayload::from(chunk.to_vec())).await {
                let _ = upload.abort().await;
                return Err(e);
            }
        }
        upload.complete().await?;
        Ok(())
    }
}

/// Lines, newline-terminated, gzip-compressed.
fn gzip_lines(lines: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    for line in lines {
        gz.write_all(line)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

/// `dt=YYYY-MM-DD/hour=HH` of a time in ns.
pub fn partition(start_ns: u64) -> String {
    let c = Civil::from_unix(start_ns / 1_000_000_000);
    format!("dt={}/hour={:02}", c.date(), c.hour)
}

impl Service for S3Service {
    async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError> {
        let mut groups: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
        for line in batch.lines() {
            let start = serde_json::from_slice::<Stamp>(line).map(|s| s.event.start_ns).unwrap_or(0);
            groups.entry(partition(start)).or_default().push(line);
        }
        for (p, lines) in groups {
            let body = match self.settings.sink.format {
                ObjectFormat::NdjsonGzip => gzip_lines(&lines).map_err(|e| SendError::retry(format!("compressing failed: {e}")))?,
                ObjectFormat::Parquet => crate::sink::parquet::encode(lines.into_iter(), "S3").map_err(|e| SendError::Reject { reason: e.to_string() })?,
            };
            let key = self.key(&p, batch);
            self.upload(&key, body).await.map_err(|e| SendError::retry(format!("uploading s3://{}/{key} failed: {e}", self.settings.sink.bucket)))?;
        }
        Ok(Delivered::Durable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_hive_style_in_utc() {
        assert_eq!(partition(1_795_000_000 * 1_000_000_000), "dt=2026-11-18/hour=11");
        assert_eq!(partition(0), "dt=1970-01-01/hour=00");
    }
}
