//! The declared columns of a CSV batch, cut out of its text at the field ends the scan found and
//! parsed into their declared types, a block of rows at a time: every column of a block is filled
//! while the block's text is in cache (cutting a column at a time reads the whole batch's text once
//! per column). Blocks are filled in parallel, each into its own rows of whole-batch buffers.

use std::borrow::Cow;

use polars::prelude::*;
use polars_arrow::array::View;
use polars_arrow::bitmap::Bitmap;
use rayon::prelude::*;

use crate::kernels::values;
use crate::permit::ColumnType;
use crate::source::text_column::{OwnValues, SharedText};

/// Rows per block: about 200 KB of text, which stays in a core's L2 cache while its columns are cut.
const BLOCK_ROWS: usize = 2048;

/// How a batch's fields are found and read.
pub struct Fields<'a> {
    pub text: &'a SharedText,
    /// Fields per record.
    pub per_record: usize,
    /// Where each field of each record ends (its delimiter or line break), record after record.
    pub ends: &'a [u32],
    pub records: usize,
    pub quote: Option<char>,
    /// Field texts that stand for a missing value.
    pub nulls: &'a [String],
}

/// A column to cut: its field's place in a record, its name, type and (date) format.
pub struct Wanted<'a> {
    pub field: usize,
    pub name: &'a str,
    pub column_type: ColumnType,
    pub format: &'a str,
    /// This column's own texts that stand for a missing value (beside the source's).
    pub nulls: &'a [String],
}

/// What a value must be in a column of this type, for an error message.
/// Spellings of "no value" that extracts write where a typed value is expected.
const MISSING_SPELLINGS: &[&str] = &[
    "null", "na", "n/a", "#n/a", "nan", "none", "nil", "\\n", "-", ".", "?", "missing",
];

/// A hint for a value that does not parse but reads like a usual spelling of "missing" (said
/// without showing the value): it belongs in `null_values`.
pub fn missing_hint(value: &str) -> &'static str {
    let v = value.trim();
    if MISSING_SPELLINGS.iter().any(|m| m.eq_ignore_ascii_case(v)) {
        "; it reads like a spelling of \"missing\": list it under the source's or the column's \
         null_values"
    } else {
        ""
    }
}

pub fn rule(column_type: ColumnType, format: &str) -> String {
    match column_type {
        ColumnType::String | ColumnType::Text => "text".into(),
        ColumnType::Date => format!("a date in format `{format}`"),
        ColumnType::Datetime => format!("a datetime in format `{format}`"),
        ColumnType::Year => "a year (YYYY)".into(),
        ColumnType::YearMonth => "a year and month (YYYYMM or YYYY-MM)".into(),
        ColumnType::Integer => "an integer".into(),
        ColumnType::Float if format == "," => "a finite number with a decimal comma".into(),
        ColumnType::Float => "a finite number".into(),
        ColumnType::Boolean => "a boolean (true/false, 1/0, yes/no)".into(),
    }
}

/// A column's values for the whole batch.
enum Values {
    Text(Vec<View>),
    Day(Vec<i32>),
    Micros(Vec<i64>),
    Integer(Vec<i64>),
    Float(Vec<f64>),
    Boolean(Vec<bool>),
}

/// One block's rows of a column's values.
enum Slots<'a> {
    Text(&'a mut [View]),
    Day(&'a mut [i32]),
    Micros(&'a mut [i64]),
    Integer(&'a mut [i64]),
    Float(&'a mut [f64]),
    Boolean(&'a mut [bool]),
}

impl Values {
    fn new(column_type: ColumnType, rows: usize) -> Values {
        match column_type {
            ColumnType::String | ColumnType::Text => Values::Text(vec![View::default(); rows]),
            ColumnType::Date | ColumnType::Year | ColumnType::YearMonth => {
                Values::Day(vec![0; rows])
            }
            ColumnType::Datetime => Values::Micros(vec![0; rows]),
            ColumnType::Integer => Values::Integer(vec![0; rows]),
            ColumnType::Float => Values::Float(vec![0.0; rows]),
            ColumnType::Boolean => Values::Boolean(vec![false; rows]),
        }
    }

    fn blocks(&mut self) -> Vec<Slots<'_>> {
        match self {
            Values::Text(v) => v.chunks_mut(BLOCK_ROWS).map(Slots::Text).collect(),
            Values::Day(v) => v.chunks_mut(BLOCK_ROWS).map(Slots::Day).collect(),
            Values::Micros(v) => v.chunks_mut(BLOCK_ROWS).map(Slots::Micros).collect(),
            Values::Integer(v) => v.chunks_mut(BLOCK_ROWS).map(Slots::Integer).collect(),
            Values::Float(v) => v.chunks_mut(BLOCK_ROWS).map(Slots::Float).collect(),
            Values::Boolean(v) => v.chunks_mut(BLOCK_ROWS).map(Slots::Boolean).collect(),
        }
    }
}

/// What a block leaves to do after it is filled: text fields rebuilt without their doubled quotes
/// (column, row, value), and its first value that does not parse (row, column).
#[derive(Default)]
struct BlockOutcome {
    rebuilt: Vec<(usize, usize, String)>,
    bad: Option<(usize, usize)>,
}

impl Fields<'_> {
    /// Record r's field f: borrowed from the text, or rebuilt when quoted with doubled quotes;
    /// `None` when it is one of the null texts. A line's carriage return is not part of its last
    /// field.
    #[inline]
    fn get(&self, r: usize, f: usize) -> Option<Cow<'_, str>> {
        let at = r * self.per_record + f;
        let start = match at {
            0 => 0,
            _ => self.ends[at - 1] as usize + 1,
        };
        let end = self.ends[at] as usize;
        let bytes = &self.text.as_bytes()[start..end];
        // SAFETY: the text is UTF-8 and a field starts after and ends before an ASCII byte (the
        // delimiter, a line break; the permit requires an ASCII delimiter), or at the text's ends:
        // char boundaries all, so the field is UTF-8 too (no boundary check needed per field). The
        // fuzz target `csv_run` runs with the assertion below.
        debug_assert!(
            self.text.as_str().is_char_boundary(start) && self.text.as_str().is_char_boundary(end)
        );
        let mut value = unsafe { std::str::from_utf8_unchecked(bytes) };
        if f + 1 == self.per_record {
            value = value.strip_suffix('\r').unwrap_or(value);
        }
        let value = match self.quote {
            Some(q) if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) => {
                unquote(&value[1..value.len() - 1], q)
            }
            _ => Cow::Borrowed(value),
        };
        (!self.nulls.iter().any(|n| *n == *value)).then_some(value)
    }

    /// The `wanted` columns; for the first value that does not parse, its column (index into
    /// `wanted`), row and the rule it breaks.
    pub fn columns(&self, wanted: &[Wanted]) -> Result<Vec<Column>, (usize, usize, String)> {
        let rows = self.records;
        let mut values: Vec<Values> = wanted
            .iter()
            .map(|w| Values::new(w.column_type, rows))
            .collect();
        let mut valid: Vec<Vec<bool>> = vec![vec![false; rows]; wanted.len()];
        // Transposed: for each block, every column's rows of it.
        let mut blocks: Vec<Vec<(Slots, &mut [bool])>> = Vec::new();
        for (column, valid) in values.iter_mut().zip(valid.iter_mut()) {
            let slots = column
                .blocks()
                .into_iter()
                .zip(valid.chunks_mut(BLOCK_ROWS));
            for (b, slot) in slots.enumerate() {
                if blocks.len() == b {
                    blocks.push(Vec::with_capacity(wanted.len()));
                }
                blocks[b].push(slot);
            }
        }
        let outcomes: Vec<BlockOutcome> = blocks
            .into_par_iter()
            .enumerate()
            .map(|(b, slots)| self.fill_block(b * BLOCK_ROWS, wanted, slots))
            .collect();
        if let Some((row, j)) = outcomes.iter().filter_map(|o| o.bad).min() {
            let w = &wanted[j];
            let value = self.get(row, w.field);
            let hint = value.as_deref().map_or("", missing_hint);
            return Err((j, row, format!("{}{hint}", rule(w.column_type, w.format))));
        }
        let mut own: Vec<OwnValues> = wanted.iter().map(|_| OwnValues::default()).collect();
        for (j, row, value) in outcomes.into_iter().flat_map(|o| o.rebuilt) {
            if let Values::Text(views) = &mut values[j] {
                views[row] = self
                    .text
                    .view(&value)
                    .unwrap_or_else(|| own[j].view(&value));
            }
        }
        Ok(values
            .into_iter()
            .zip(valid)
            .zip(own)
            .zip(wanted)
            .map(|(((values, valid), own), w)| {
                let validity = valid.contains(&false).then(|| Bitmap::from_iter(valid));
                let name: PlSmallStr = w.name.into();
                let series = match values {
                    // SAFETY: the views were made by `self.text.view` or `own.view`.
                    Values::Text(views) => unsafe {
                        self.text.views_column(name, views, own, validity)
                    },
                    Values::Day(v) => Int32Chunked::from_vec_validity(name, v, validity)
                        .into_date()
                        .into_series(),
                    Values::Micros(v) => Int64Chunked::from_vec_validity(name, v, validity)
                        .into_datetime(TimeUnit::Microseconds, None)
                        .into_series(),
                    Values::Integer(v) => {
                        Int64Chunked::from_vec_validity(name, v, validity).into_series()
                    }
                    Values::Float(v) => {
                        Float64Chunked::from_vec_validity(name, v, validity).into_series()
                    }
                    Values::Boolean(v) => {
                        let present = |i: usize| validity.as_ref().is_none_or(|m| m.get_bit(i));
                        let v = v.iter().enumerate().map(|(i, &v)| present(i).then_some(v));
                        BooleanChunked::from_iter_options(name, v).into_series()
                    }
                };
                series.into_column()
            })
            .collect())
    }

    /// Fills every column's rows of the block starting at row `first`.
    fn fill_block(
        &self,
        first: usize,
        wanted: &[Wanted],
        slots: Vec<(Slots, &mut [bool])>,
    ) -> BlockOutcome {
        let mut outcome = BlockOutcome::default();
        for (j, (slot, valid)) in slots.into_iter().enumerate() {
            let w = &wanted[j];
            let field = |i: usize| {
                self.get(first + i, w.field)
                    .filter(|v| !w.nulls.iter().any(|n| *n == **v))
            };
            let bad = match slot {
                Slots::Text(views) => {
                    for (i, (view, valid)) in views.iter_mut().zip(valid.iter_mut()).enumerate() {
                        let Some(value) = field(i) else { continue };
                        *valid = true;
                        match value {
                            Cow::Borrowed(v) => {
                                *view = self.text.view(v).expect("fields lie in the text")
                            }
                            Cow::Owned(v) => outcome.rebuilt.push((j, first + i, v)),
                        }
                    }
                    None
                }
                Slots::Day(out) => match w.column_type {
                    ColumnType::Year => parse_into(out, valid, field, values::parse_year),
                    ColumnType::YearMonth => {
                        parse_into(out, valid, field, values::parse_year_month)
                    }
                    _ => parse_into(out, valid, field, values::date_parser(w.format)),
                },
                Slots::Micros(out) => {
                    parse_into(out, valid, field, values::datetime_parser(w.format))
                }
                Slots::Integer(out) => parse_into(out, valid, field, values::parse_integer),
                Slots::Float(out) => parse_into(out, valid, field, values::float_parser(w.format)),
                Slots::Boolean(out) => parse_into(out, valid, field, values::parse_boolean),
            };
            if let Some(i) = bad {
                let candidate = (first + i, j);
                outcome.bad = Some(outcome.bad.map_or(candidate, |b| b.min(candidate)));
            }
        }
        outcome
    }
}

/// Parses each present field (trimmed) into `out`, marking it in `valid`; the block's first row
/// that does not parse, if any.
#[inline]
fn parse_into<'t, T>(
    out: &mut [T],
    valid: &mut [bool],
    field: impl Fn(usize) -> Option<Cow<'t, str>>,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<usize> {
    for (i, (out, valid)) in out.iter_mut().zip(valid.iter_mut()).enumerate() {
        let Some(value) = field(i) else { continue };
        *out = match parse(values::trimmed(&value)) {
            Some(parsed) => parsed,
            None => return Some(i),
        };
        *valid = true;
    }
    None
}

/// A quoted field's text without its doubled quotes.
pub fn unquote(inner: &str, quote: char) -> Cow<'_, str> {
    if !inner.contains(quote) {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(ch) = chars.next() {
        out.push(ch);
        if ch == quote && chars.peek() == Some(&quote) {
            chars.next();
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    /// A CSV text without quotes and its field ends, the way the scan records them.
    fn layout(rows: &[String]) -> (SharedText, Vec<u32>) {
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        let ends = text
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b',' || b == b'\n')
            .map(|(i, _)| i as u32)
            .collect();
        (SharedText::new(text), ends)
    }

    fn wanted() -> Vec<Wanted<'static>> {
        let w = |field, name, column_type| Wanted {
            nulls: &[],
            field,
            name,
            column_type,
            format: "%Y-%m-%d",
        };
        vec![
            w(2, "n", ColumnType::Integer),
            w(0, "t", ColumnType::String),
            w(1, "d", ColumnType::Date),
        ]
    }

    fn cut(rows: &[String]) -> Result<Vec<Column>, (usize, usize, String)> {
        let (text, ends) = layout(rows);
        let nulls = ["NA".to_string()];
        Fields {
            text: &text,
            per_record: 3,
            ends: &ends,
            records: rows.len(),
            quote: Some('"'),
            nulls: &nulls,
        }
        .columns(&wanted())
    }

    #[test]
    fn blocks_fill_every_row_of_every_column() {
        let n = 3 * BLOCK_ROWS + 5;
        let rows: Vec<String> = (0..n)
            .map(|i| match i % 7 {
                0 => "NA,NA,NA".to_string(),
                1 => format!("\"q\"\"{i}\",2024-02-29,{i}"),
                _ => format!("value number {i},2023-01-{:02}, {i} ", 1 + i % 28),
            })
            .collect();
        let columns = cut(&rows).unwrap();
        let ints: Vec<Option<i64>> = columns[0].i64().unwrap().iter().collect();
        let texts: Vec<Option<&str>> = columns[1].str().unwrap().iter().collect();
        let days: Vec<Option<i32>> = columns[2].date().unwrap().physical().iter().collect();
        for i in 0..n {
            let (t, d) = match i % 7 {
                0 => (None, None),
                1 => (Some(format!("q\"{i}")), Some("2024-02-29".to_string())),
                _ => (
                    Some(format!("value number {i}")),
                    Some(format!("2023-01-{:02}", 1 + i % 28)),
                ),
            };
            let expected_day =
                d.map(|d| values::date_to_days(NaiveDate::parse_from_str(&d, "%Y-%m-%d").unwrap()));
            assert_eq!(ints[i], (i % 7 != 0).then_some(i as i64), "row {i}");
            assert_eq!(texts[i].map(String::from), t, "row {i}");
            assert_eq!(days[i], expected_day, "row {i}");
        }
    }

    #[test]
    fn the_first_bad_value_in_row_order_is_reported() {
        let n = 3 * BLOCK_ROWS;
        let mut rows: Vec<String> = (0..n).map(|i| format!("t,2024-01-01,{i}")).collect();
        rows[2 * BLOCK_ROWS + 3] = "t,2024-01-01,x".into();
        rows[BLOCK_ROWS + 7] = "t,2024-13-01,1".into();
        assert_eq!(
            cut(&rows).unwrap_err(),
            (2, BLOCK_ROWS + 7, "a date in format `%Y-%m-%d`".into())
        );
        // Two bad values in one row: the first declared column's.
        rows[5] = "t,2024-02-30,y".into();
        assert_eq!(cut(&rows).unwrap_err(), (0, 5, "an integer".into()));
    }
}
