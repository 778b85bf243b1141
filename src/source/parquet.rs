//! Parquet sources: the declared columns checked against the file's Arrow types before polars sees
//! them, read in slices of a batch through one open descriptor; and the run's own Parquet files read
//! back.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;
use polars_arrow::datatypes::ArrowDataType;

use super::inputs::TrackedFile;
use super::{Batch, Origin, SourceColumn, read_ahead, text_columns};
use crate::error::{Error, Result};
use crate::permit::ColumnType;

/// Polars messages can quote data; keep only their first clause, which names the kind of failure.
fn redact_polars(e: &PolarsError) -> String {
    let s = e.to_string();
    s.split([':', '\n']).next().unwrap_or("").trim().to_string()
}

/// Reads a Parquet source in slices of `batch_rows`; returns the file, hashed whole (the decoder
/// reads it by its path, so it is hashed apart, and checked unchanged once every slice is read).
pub(super) fn read_parquet(
    path: &Path,
    columns: &[SourceColumn],
    batch_rows: usize,
    each: &mut impl FnMut(Batch) -> Result<()>,
) -> Result<TrackedFile> {
    let mut tracked = TrackedFile::open(path)
        .map_err(|e| Error::input(path, "file", format!("cannot open source: {e}")))?;
    tracked
        .hash_rest()
        .map_err(|e| Error::input(path, "file", format!("cannot read source: {e}")))?;
    // Every read goes through the descriptor that was hashed: a file put in its place meanwhile is
    // not read (and `finish` refuses a file changed in place).
    let total = check_parquet(path, tracked.file(), columns)?;
    for (offset, len) in slices(total, batch_rows) {
        each(read_parquet_slice(
            path,
            tracked.file(),
            columns,
            offset,
            len,
            total,
        )?)?;
    }
    Ok(tracked)
}

/// `(offset, rows)` of each batch of a Parquet file of `total` rows. One slice per batch, so that
/// memory is bounded by the batch, not the file: the reader decodes only the row groups a slice
/// overlaps.
fn slices(total: usize, batch_rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..total)
        .step_by(batch_rows)
        .map(move |offset| (offset, batch_rows.min(total - offset)))
}

/// Checks a Parquet source's schema against the declared columns; returns its row count.
pub(super) fn check_parquet(path: &Path, file: &File, columns: &[SourceColumn]) -> Result<usize> {
    let file = duplicate(path, file)?;
    let unreadable = |e: PolarsError| {
        Error::input(
            path,
            "footer",
            format!("not a readable Parquet file: {}", redact_polars(&e)),
        )
    };
    let mut reader = ParquetReader::new(file);
    let schema = reader.schema().map_err(unreadable)?;
    for c in columns {
        let (field, fits) = declared_field(path, &schema, &c.name, c.column_type)?;
        if !fits {
            return Err(Error::input(
                path,
                format!("column `{}`", c.name),
                format!(
                    "is {} in the file but declared {:?}; fix the permit's type or the extract",
                    arrow_type_name(field.dtype()),
                    c.column_type
                ),
            ));
        }
    }
    reader.num_rows().map_err(unreadable)
}

/// The Parquet field of a declared column, and whether its type can be read as `declared`; an
/// error for a column missing from the file or of a type no permit can declare.
fn declared_field<'a>(
    path: &Path,
    schema: &'a polars_arrow::datatypes::ArrowSchema,
    name: &str,
    declared: ColumnType,
) -> Result<(&'a polars_arrow::datatypes::Field, bool)> {
    let Some(field) = schema.get(name) else {
        return Err(Error::input(
            path,
            format!("column `{name}`"),
            "declared column is not in the file",
        ));
    };
    // Judged on the Arrow type: polars cannot represent some Parquet types (it panics converting
    // a struct, a map or a decimal without their features).
    match arrow_type_fits(field.dtype(), declared) {
        Some(fits) => Ok((field, fits)),
        None => Err(Error::input(
            path,
            format!("column `{name}`"),
            format!(
                "is {} in the file, a type a permit cannot declare; export it as text, a number, \
                 a date, a datetime or a boolean",
                arrow_type_name(field.dtype())
            ),
        )),
    }
}

/// Whether a Parquet column of Arrow type `arrow` can be read as `declared`; `None` for a type
/// no permit can declare.
fn arrow_type_fits(arrow: &ArrowDataType, declared: ColumnType) -> Option<bool> {
    use ArrowDataType as A;
    let read_as = match arrow {
        A::Utf8 | A::LargeUtf8 | A::Utf8View => return Some(true),
        A::Int8 | A::Int16 | A::Int32 | A::Int64 => ColumnType::Integer,
        A::Float32 | A::Float64 => ColumnType::Float,
        A::Date32 => ColumnType::Date,
        A::Timestamp(..) => ColumnType::Datetime,
        A::Boolean => ColumnType::Boolean,
        A::Struct(_)
        | A::Map(..)
        | A::FixedSizeList(..)
        | A::Decimal(..)
        | A::Decimal32(..)
        | A::Decimal64(..)
        | A::Decimal256(..)
        | A::Float16
        | A::Int128
        | A::UInt128
        | A::Union(..)
        | A::Extension(..)
        | A::Unknown => return None,
        // Known to polars, but not a declared type (lists, binary, times, durations, unsigned
        // integers that may not fit, categories): refused by the declared type.
        _ => return Some(false),
    };
    // A partial date is written as a number (2019, 201903) as often as text, and a month as the
    // date of its first day (as ehds-prep delivers it).
    Some(
        read_as == declared
            || (matches!(read_as, ColumnType::Integer | ColumnType::Date)
                && declared.is_partial_date()),
    )
}

/// A short name of an Arrow type for a message.
fn arrow_type_name(arrow: &ArrowDataType) -> String {
    use ArrowDataType as A;
    match arrow {
        A::Struct(_) => "a struct".into(),
        A::Map(..) => "a map".into(),
        A::FixedSizeList(..) => "a fixed-size list".into(),
        A::Decimal(p, s) | A::Decimal32(p, s) | A::Decimal64(p, s) | A::Decimal256(p, s) => {
            format!("a decimal({p}, {s})")
        }
        A::Float16 => "a 16-bit float".into(),
        A::List(_) | A::LargeList(_) => "a list".into(),
        other => format!("{other:?}")
            .split(['(', ' '])
            .next()
            .unwrap_or("an unknown type")
            .to_lowercase(),
    }
}

/// Reads every column of a Parquet file the run wrote itself, as written, `batch_rows` rows at a
/// time; a missing file has no rows.
pub fn read_parquet_frames(
    path: &Path,
    batch_rows: usize,
    each: impl FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let unreadable = |e: PolarsError| Error::Internal(format!("{}: {e}", path.display()));
    let open = || File::open(path).map_err(|e| Error::output(path, e));
    let total = ParquetReader::new(open()?).num_rows().map_err(unreadable)?;
    read_ahead(
        |send| {
            for slice in slices(total, batch_rows) {
                let df = ParquetReader::new(open()?)
                    .with_slice(Some(slice))
                    .finish()
                    .map_err(unreadable)?;
                send(df)?;
            }
            Ok(())
        },
        each,
    )
}

/// The rows of a spilled Parquet file (0 when there is none), for a progress bar.
pub fn parquet_row_count(path: &Path) -> Result<u64> {
    if !path.exists() {
        return Ok(0);
    }
    let file = File::open(path).map_err(|e| Error::output(path, e))?;
    let rows = ParquetReader::new(file)
        .num_rows()
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    Ok(rows as u64)
}

/// Reads named columns of a Parquet file as text, batch by batch (for re-checks and assessment).
pub fn read_parquet_text(
    path: &Path,
    names: &[String],
    batch_rows: usize,
    each: impl FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    let columns = text_columns(names);
    let file =
        File::open(path).map_err(|e| Error::input(path, "file", format!("cannot open: {e}")))?;
    let mut reader = ParquetReader::new(duplicate(path, &file)?);
    let unreadable = |e: PolarsError| {
        Error::input(
            path,
            "footer",
            format!("not a readable Parquet file: {}", redact_polars(&e)),
        )
    };
    let schema = reader.schema().map_err(unreadable)?;
    for name in names {
        // Any readable type is read as text here.
        declared_field(path, &schema, name, ColumnType::String)?;
    }
    let total = reader.num_rows().map_err(unreadable)?;
    read_ahead(
        |send| {
            for (offset, len) in slices(total, batch_rows) {
                let batch = read_parquet_slice(path, &file, &columns, offset, len, total)?;
                let text = batch
                    .df
                    .columns()
                    .iter()
                    .map(as_text)
                    .collect::<PolarsResult<Vec<_>>>()?;
                send(DataFrame::new(len, text)?)?;
            }
            Ok(())
        },
        each,
    )
}

/// A column as text, as polars' cast writes it; dates are formatted by
/// [`values::iso_date_into`], once per run of equal days (chrono's formatter, which the cast
/// calls for every row, took a twentieth of a `link` run).
fn as_text(c: &Column) -> PolarsResult<Column> {
    if c.dtype() != &DataType::Date {
        return c.cast(&DataType::String);
    }
    let days = c.as_materialized_series().to_physical_repr();
    let mut text = StringChunkedBuilder::new(c.name().clone(), c.len());
    let mut iso = String::new();
    let mut last = None;
    for day in days.i32()?.iter() {
        match day {
            None => text.append_null(),
            Some(day) => {
                if last != Some(day) {
                    crate::kernels::values::iso_date_into(day, &mut iso);
                    last = Some(day);
                }
                text.append_value(&iso);
            }
        }
    }
    Ok(text.finish().into_column())
}

/// Another descriptor of the open `file` (the decoder takes ownership of one per read).
fn duplicate(path: &Path, file: &File) -> Result<File> {
    file.try_clone()
        .map_err(|e| Error::input(path, "file", format!("cannot read source: {e}")))
}

pub(super) fn read_parquet_slice(
    path: &Path,
    file: &File,
    columns: &[SourceColumn],
    offset: usize,
    len: usize,
    total: usize,
) -> Result<Batch> {
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let file_bytes = file.metadata().map_or(0, |m| m.len());
    let df = ParquetReader::new(duplicate(path, file)?)
        .with_columns(Some(names.clone()))
        .with_slice(Some((offset, len)))
        .finish()
        .map_err(|e| {
            Error::input(
                path,
                format!("rows {}-{}", offset + 1, offset + len),
                format!("cannot read Parquet data: {}", redact_polars(&e)),
            )
        })?
        .select(names.iter().map(String::as_str))?;
    // A Parquet batch's share of the file, in proportion to its rows.
    let origin = Origin {
        file: path.into(),
        first_record: offset as u64 + 1,
        first_line: 0,
        source_bytes: file_bytes * len as u64 / total.max(1) as u64,
        text: None,
    };
    Ok(Batch { df, origin })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates read as text are polars' own text for them: runs, nulls, and years outside 0..=9999.
    #[test]
    fn dates_as_text_equal_polars_cast() {
        let days: Vec<Option<i32>> = [
            0, 0, -1, 19_782, 19_782, 19_783, -719_528, 2_932_896, 3_652_059, -800_000,
        ]
        .into_iter()
        .map(Some)
        .chain([None, Some(5), None])
        .collect();
        let column = Column::new("d".into(), days).cast(&DataType::Date).unwrap();
        let ours = as_text(&column).unwrap();
        let theirs = column.cast(&DataType::String).unwrap();
        assert!(
            ours.as_materialized_series()
                .equals_missing(theirs.as_materialized_series())
        );
        assert_eq!(ours.str().unwrap().get(3), Some("2024-02-29"));
        let other = Column::new("n".into(), [Some(1i64), None]);
        assert!(
            as_text(&other)
                .unwrap()
                .as_materialized_series()
                .equals_missing(
                    other
                        .cast(&DataType::String)
                        .unwrap()
                        .as_materialized_series()
                )
        );
    }
}
