//! Holder extracts: reading CSV and Parquet sources in bounded batches, in the permit's explicit schema.
//!
//! CSV files are cut into chunks at record boundaries by a quote-aware scan, which also checks the
//! record structure (field counts, unbalanced quotes) and the text encoding, so that every structural
//! error names its file, line and record. Latin-1 and Windows-1252 are transcoded to UTF-8 per chunk.
//! The scan also notes where every field ends, so the declared columns are then cut out of the chunk
//! block of rows by block ([`crate::source::csv_columns`]) and converted to their declared types by the
//! `values` kernels, text columns as views of the chunk: no type is ever inferred, and the text is
//! scanned once.

mod csv;
pub mod csv_columns;
pub mod inputs;
mod parquet;
pub mod postgres;
pub mod text_column;

pub use csv::Dialect;
use csv::{CsvSource, record_start_line};
use parquet::{check_parquet, read_parquet, read_parquet_slice};
pub use parquet::{parquet_row_count, read_parquet_frames, read_parquet_text};

use std::fs::File;
use std::path::PathBuf;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::permit::{ColumnType, SourceFormat, SourceSpec};
use crate::source::csv_columns::rule;
use crate::source::inputs::InputRecord;
use crate::source::text_column::SharedText;

/// Where a dataset's rows are read from: its files, or, for a PostgreSQL source, the run's
/// database.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub spec: &'a SourceSpec,
    pub files: &'a [PathBuf],
    pub database: Option<&'a postgres::Database>,
}

impl<'a> Input<'a> {
    /// Files of a source (no database).
    pub fn files(spec: &'a SourceSpec, files: &'a [PathBuf]) -> Self {
        Input {
            spec,
            files,
            database: None,
        }
    }

    /// The database of a PostgreSQL source.
    fn database(&self) -> Result<&'a postgres::Database> {
        self.database
            .ok_or_else(|| Error::Internal("a PostgreSQL source read without its database".into()))
    }
}

/// A batch of source rows with every declared column present, named as declared.
pub struct Batch {
    pub df: DataFrame,
    pub origin: Origin,
}

/// Where a batch's rows came from, to name the place of a bad value.
pub struct Origin {
    pub file: PathBuf,
    /// 1-based number of the batch's first data record in its file.
    pub first_record: u64,
    /// 1-based line of that record.
    pub first_line: u64,
    /// Bytes of the source file the batch covers (for progress against the file's size).
    pub source_bytes: u64,
    /// For CSV, the batch's UTF-8 text and its dialect, to find the line of any record in it.
    text: Option<(SharedText, Dialect)>,
}

impl Origin {
    /// "record R (line L)" of the batch's row `row`.
    pub fn place(&self, row: usize) -> String {
        let record = self.first_record + row as u64;
        match &self.text {
            Some((text, dialect)) => {
                let line = record_start_line(text.as_bytes(), *dialect, row);
                format!("record {record}, line {}", self.first_line + line)
            }
            None => format!("row {record}"),
        }
    }
}

/// A column to read: its name in the source, its declared type and, for dates and datetimes, the
/// chrono format its text is parsed with.
#[derive(Debug, Clone)]
pub struct SourceColumn {
    pub name: String,
    pub column_type: ColumnType,
    pub format: String,
    /// Texts of this column that stand for a missing value (CSV), beside the source's.
    pub null_values: Vec<String>,
}

/// Text values in their declared type; for the first value that does not parse, its row and the
/// rule it breaks ("a date in format `%Y-%m-%d`").
pub fn typed_from_text<'a>(
    name: PlSmallStr,
    text: impl Iterator<Item = Option<&'a str>>,
    column_type: ColumnType,
    format: &str,
) -> std::result::Result<Series, (usize, String)> {
    use crate::kernels::values;
    Ok(match column_type {
        ColumnType::String | ColumnType::Text => {
            StringChunked::from_iter_options(name, text).into_series()
        }
        ColumnType::Date => values::parse_dates(text, format)
            .map(|v| {
                Int32Chunked::from_iter_options(name, v.into_iter())
                    .into_date()
                    .into_series()
            })
            .map_err(|row| (row, rule(column_type, format)))?,
        ColumnType::Year | ColumnType::YearMonth => {
            let parse = match column_type {
                ColumnType::Year => values::parse_year,
                _ => values::parse_year_month,
            };
            let days =
                values::parse_each(text, parse).map_err(|row| (row, rule(column_type, format)))?;
            Int32Chunked::from_iter_options(name, days.into_iter())
                .into_date()
                .into_series()
        }
        ColumnType::Datetime => values::parse_datetimes(text, format)
            .map(|v| {
                Int64Chunked::from_iter_options(name, v.into_iter())
                    .into_datetime(TimeUnit::Microseconds, None)
                    .into_series()
            })
            .map_err(|row| (row, rule(column_type, format)))?,
        ColumnType::Integer => values::parse_integers(text)
            .map(|v| Int64Chunked::from_iter_options(name, v.into_iter()).into_series())
            .map_err(|row| (row, rule(column_type, format)))?,
        ColumnType::Float => values::parse_each(text, values::float_parser(format))
            .map(|v| Float64Chunked::from_iter_options(name, v.into_iter()).into_series())
            .map_err(|row| (row, rule(column_type, format)))?,
        ColumnType::Boolean => values::parse_booleans(text)
            .map(|v| BooleanChunked::from_iter_options(name, v.into_iter()).into_series())
            .map_err(|row| (row, rule(column_type, format)))?,
    })
}

/// Reads every file of one dataset's source, batch by batch, one batch ahead of `each` (see
/// [`read_ahead`]). Batches reach `each` in file order. Returns each file's record (size,
/// modification time, SHA-256 of the bytes read), `role` naming what the files are; a file that
/// changed while it was read is an error.
///
/// A PostgreSQL source is read from the run's snapshot; it has no file to record (the manifest's
/// `database` section records its reads).
pub fn read_batches(
    input: Input<'_>,
    columns: &[SourceColumn],
    batch_rows: usize,
    role: &str,
    each: impl FnMut(Batch) -> Result<()>,
) -> Result<Vec<InputRecord>> {
    let (spec, files) = (input.spec, input.files);
    if spec.format == SourceFormat::Postgres {
        postgres::read_batches(input.database()?, spec, columns, batch_rows, role, each)?;
        return Ok(Vec::new());
    }
    let mut records = Vec::with_capacity(files.len());
    read_ahead(
        |send| {
            for file in files {
                let tracked = match spec.format {
                    SourceFormat::Csv => CsvSource::open(spec, file, columns, batch_rows)?
                        .for_each(&mut &mut *send)?,
                    // A linked person table is a Parquet file `link` wrote.
                    SourceFormat::Parquet | SourceFormat::Linked => {
                        read_parquet(file, columns, batch_rows, &mut &mut *send)?
                    }
                    SourceFormat::Postgres => unreachable!("read above"),
                };
                records.push(tracked.finish(role)?);
            }
            Ok(())
        },
        each,
    )?;
    Ok(records)
}

/// Runs `produce` on a thread of its own, one item ahead of `each`, so that reading (parsing,
/// decompressing) the next item overlaps with the work on this one. Items reach `each` in order; an
/// error of either side stops both, the producer's reported when it came first.
pub fn read_ahead<T: Send>(
    produce: impl FnOnce(&mut dyn FnMut(T) -> Result<()>) -> Result<()> + Send,
    mut each: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<T>>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut send = |item: T| {
                // A closed channel means the consumer stopped on an error of its own.
                sender
                    .send(Ok(item))
                    .map_err(|_| Error::Internal("batch consumer stopped".into()))
            };
            if let Err(e) = produce(&mut send) {
                let _ = sender.send(Err(e));
            }
        });
        // Dropping the receiver on an early return unblocks the producer, which then stops.
        for item in receiver {
            each(item?)?;
        }
        Ok(())
    })
}

/// Checks that a source opens (each of its files, or its database), that the declared columns are
/// present, and gives `each` the first rows (up to 1000) of each file, or of the database's
/// table or query, to type-check.
pub fn check_samples(
    input: Input<'_>,
    columns: &[SourceColumn],
    mut each: impl FnMut(Batch) -> Result<()>,
) -> Result<()> {
    let spec = input.spec;
    if spec.format == SourceFormat::Postgres {
        let sample = postgres::read_sample(input.database()?, spec, columns)?;
        return sample.map_or(Ok(()), each);
    }
    for file in input.files {
        let sample = match spec.format {
            SourceFormat::Csv => CsvSource::open(spec, file, columns, 1000)?.next_batch()?,
            SourceFormat::Parquet | SourceFormat::Linked => {
                let opened = File::open(file)
                    .map_err(|e| Error::input(file, "file", format!("cannot open source: {e}")))?;
                let total = check_parquet(file, &opened, columns)?;
                (total > 0)
                    .then(|| read_parquet_slice(file, &opened, columns, 0, total.min(1000), total))
                    .transpose()?
            }
            SourceFormat::Postgres => unreachable!("read above"),
        };
        if let Some(batch) = sample {
            each(batch)?;
        }
    }
    Ok(())
}

/// The values of text columns, column by column (a column of another type is an error).
pub fn str_values(columns: &[Column]) -> Result<Vec<Vec<Option<&str>>>> {
    columns
        .iter()
        .map(|c| Ok(c.str()?.iter().collect()))
        .collect()
}

/// `names` read as text, whatever their declared types.
fn text_columns(names: &[String]) -> Vec<SourceColumn> {
    names
        .iter()
        .map(|n| SourceColumn {
            name: n.clone(),
            column_type: ColumnType::String,
            format: String::new(),
            null_values: Vec::new(),
        })
        .collect()
}

/// Reads named columns of `files` as text, batch by batch, whatever their declared types: CSV
/// through `spec`, Parquet (or a linked person table) column by column. For `assess` and
/// `describe`, which judge values themselves.
pub fn read_text(
    input: Input<'_>,
    names: &[String],
    batch_rows: usize,
    mut each: impl FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    let (spec, files) = (input.spec, input.files);
    match spec.format {
        SourceFormat::Csv => {
            read_batches(input, &text_columns(names), batch_rows, "", |b| each(b.df)).map(drop)
        }
        SourceFormat::Postgres => postgres::read_text(
            input.database()?,
            spec,
            &text_columns(names),
            batch_rows,
            &mut each,
        ),
        SourceFormat::Parquet | SourceFormat::Linked => files
            .iter()
            .try_for_each(|f| read_parquet_text(f, names, batch_rows, &mut each)),
    }
}
