//! Parquet, as written by the file and S3 sinks: one flat row per event ([`EventRow`], the same
//! shape as the ClickHouse table), typed columns as `schema.txt` declares them (timestamps,
//! unsigned integers, booleans, optional numbers, lists for headers, rules and agents), zstd
//! pages, one row group per call to [`ParquetWriter::write_events`].
//!
//! A Parquet file is readable only once its footer is written ([`ParquetWriter::finish`]), so the
//! sinks count events as delivered only from then on.

mod columns;

use crate::sink::row::{parse_lines, EventRow};
use columns::{Columns, FitError, Values};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{SchemaDescriptor, Type};
use std::io::Write;
use std::sync::Arc;

/// The schema of the files, in Parquet's message syntax.
pub const SCHEMA: &str = include_str!("schema.txt");

/// Why events could not be written as Parquet.
#[derive(Debug, thiserror::Error)]
pub enum ParquetWriteError {
    #[error("writing Parquet failed: {0}")]
    Parquet(#[from] ParquetError),
    #[error(transparent)]
    Fit(#[from] FitError),
}

fn schema() -> Result<Arc<Type>, ParquetError> {
    parquet::schema::parser::parse_message_type(SCHEMA).map(Arc::new)
}

/// Writes events into one Parquet file on `W`, a row group at a time.
pub struct ParquetWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    columns: Columns,
    rows: u64,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// Starts a file (writes its magic bytes).
    pub fn new(out: W) -> Result<ParquetWriter<W>, ParquetWriteError> {
        let schema = schema()?;
        let columns = Columns::new(&SchemaDescriptor::new(schema.clone()));
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_created_by(format!("sentinel-collector {}", env!("CARGO_PKG_VERSION")))
            .build();
        let file = SerializedFileWriter::new(out, schema, Arc::new(props))?;
        Ok(ParquetWriter { file, columns, rows: 0 })
    }

    /// Writes the events of NDJSON `lines` as one row group; returns how many were written
    /// (a line that is not an event is logged and skipped).
    pub fn write_lines<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>, sink: &str) -> Result<usize, ParquetWriteError> {
        let events = parse_lines(lines, sink);
        self.columns.clear();
        for e in &events {
            if let Err(err) = self.columns.push(&EventRow::from_event(e)) {
                self.columns.clear();
                return Err(err.into());
            }
        }
        self.flush_row_group()?;
        Ok(events.len())
    }

    fn flush_row_group(&mut self) -> Result<(), ParquetWriteError> {
        if self.columns.rows == 0 {
            return Ok(());
        }
        let mut group = self.file.next_row_group()?;
        for col in &self.columns.columns {
            let Some(mut w) = group.next_column()? else {
                return Err(ParquetError::General(format!("the schema has no column for `{}`", col.name)).into());
            };
            let def = (!col.def.is_empty()).then_some(col.def.as_slice());
            let rep = (!col.rep.is_empty()).then_some(col.rep.as_slice());
            match &col.values {
                Values::Bool(v) => w.typed::<BoolType>().write_batch(v, def, rep)?,
                Values::Int32(v) => w.typed::<Int32Type>().write_batch(v, def, rep)?,
                Values::Int64(v) => w.typed::<Int64Type>().write_batch(v, def, rep)?,
                Values::Float(v) => w.typed::<FloatType>().write_batch(v, def, rep)?,
                Values::Double(v) => w.typed::<DoubleType>().write_batch(v, def, rep)?,
                Values::Bytes(v) => w.typed::<ByteArrayType>().write_batch(v, def, rep)?,
            };
            w.close()?;
        }
        group.close()?;
        self.rows += self.columns.rows as u64;
        self.columns.clear();
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written to `W` so far (the footer not included).
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Writes the footer; the file is complete and `W` is handed back.
    pub fn finish(self) -> Result<W, ParquetWriteError> {
        Ok(self.file.into_inner()?)
    }
}

/// A whole Parquet file in memory holding the events of `lines` (for object stores).
pub fn encode<'a>(lines: impl Iterator<Item = &'a [u8]>, sink: &str) -> Result<Vec<u8>, ParquetWriteError> {
    let mut w = ParquetWriter::new(Vec::new())?;
    w.write_lines(lines, sink)?;
    w.finish()
}

#[cfg(test)]
mod tests;
