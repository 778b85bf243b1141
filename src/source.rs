//! Holder extracts: reading CSV and Parquet sources in bounded batches, in the permit's explicit schema.
//!
//! CSV files are cut into chunks at record boundaries by a quote-aware scan, which also checks the
//! record structure (field counts, unbalanced quotes) and the text encoding, so that every structural
//! error names its file, line and record. Latin-1 and Windows-1252 are transcoded to UTF-8 per chunk.
//! The scan also notes where every field ends, so the declared columns are then cut out of the chunk
//! block of rows by block ([`crate::csv_columns`]) and converted to their declared types by the
//! `values` kernels, text columns as views of the chunk: no type is ever inferred, and the text is
//! scanned once.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::csv_columns::{Fields, Wanted, rule};
use crate::error::{Error, Result};
use crate::permit::{ColumnType, SourceFormat, SourceSpec, TextEncoding};
use crate::text_column::SharedText;

/// Bytes read from a CSV file per chunk (grown when a single record is longer).
const CHUNK_BYTES: usize = 16 << 20;

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
    /// For CSV, the batch's UTF-8 text, to find the line of any record in it.
    text: Option<SharedText>,
    quote: Option<u8>,
}

impl Origin {
    /// "record R (line L)" of the batch's row `row`.
    pub fn place(&self, row: usize) -> String {
        let record = self.first_record + row as u64;
        match &self.text {
            Some(text) => {
                let lines = record_start_lines(text.as_bytes(), self.quote, row + 1);
                format!("record {record}, line {}", self.first_line + lines[row])
            }
            None => format!("row {record}"),
        }
    }
}

/// Relative line offsets of the first `n` records of `text`.
fn record_start_lines(text: &[u8], quote: Option<u8>, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let (mut line, mut in_quotes, mut at_start) = (0u64, false, true);
    for &b in text {
        if out.len() == n {
            break;
        }
        if at_start {
            out.push(line);
            at_start = false;
        }
        if Some(b) == quote {
            in_quotes = !in_quotes;
        } else if b == b'\n' {
            line += 1;
            at_start = !in_quotes;
        }
    }
    out
}

/// A column to read: its name in the source, its declared type and, for dates and datetimes, the
/// chrono format its text is parsed with.
#[derive(Debug, Clone)]
pub struct SourceColumn {
    pub name: String,
    pub column_type: ColumnType,
    pub format: String,
}

/// Text values in their declared type; for the first value that does not parse, its row and the
/// rule it breaks ("a date in format `%Y-%m-%d`").
pub fn typed_from_text<'a>(
    name: PlSmallStr,
    text: impl Iterator<Item = Option<&'a str>>,
    column_type: ColumnType,
    format: &str,
) -> std::result::Result<Series, (usize, String)> {
    use crate::values;
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
        ColumnType::Float => values::parse_floats(text)
            .map(|v| Float64Chunked::from_iter_options(name, v.into_iter()).into_series())
            .map_err(|row| (row, rule(column_type, format)))?,
        ColumnType::Boolean => values::parse_booleans(text)
            .map(|v| BooleanChunked::from_iter_options(name, v.into_iter()).into_series())
            .map_err(|row| (row, rule(column_type, format)))?,
    })
}

/// Reads every file of one dataset's source, batch by batch, one batch ahead of `each` (see
/// [`read_ahead`]). Batches reach `each` in file order.
pub fn read_batches(
    spec: &SourceSpec,
    files: &[PathBuf],
    columns: &[SourceColumn],
    batch_rows: usize,
    each: impl FnMut(Batch) -> Result<()>,
) -> Result<()> {
    read_ahead(
        |send| {
            files.iter().try_for_each(|file| match spec.format {
                SourceFormat::Csv => {
                    CsvSource::open(spec, file, columns, batch_rows)?.for_each(&mut &mut *send)
                }
                // A linked person table is a Parquet file `link` wrote.
                SourceFormat::Parquet | SourceFormat::Linked => {
                    read_parquet(file, columns, batch_rows, &mut &mut *send)
                }
            })
        },
        each,
    )
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

/// Checks that a source file opens, that the declared columns are present, and returns its first rows
/// (up to 1000) to type-check.
pub fn check_sample(
    spec: &SourceSpec,
    file: &Path,
    columns: &[SourceColumn],
) -> Result<Option<Batch>> {
    match spec.format {
        SourceFormat::Csv => CsvSource::open(spec, file, columns, 1000)?.next_batch(),
        SourceFormat::Parquet | SourceFormat::Linked => {
            let total = check_parquet(file, columns)?;
            (total > 0)
                .then(|| read_parquet_slice(file, columns, 0, total.min(1000), total))
                .transpose()
        }
    }
}

struct CsvSource<'a> {
    spec: &'a SourceSpec,
    path: PathBuf,
    file: File,
    quote: Option<u8>,
    delimiter: u8,
    /// Column names of the file (from its header, or the declared columns in order).
    header: Vec<String>,
    /// Positions of the declared columns in the file, in declaration order.
    projection: Vec<usize>,
    columns: Vec<SourceColumn>,
    pending: Vec<u8>,
    eof: bool,
    records_done: u64,
    lines_done: u64,
    batch_rows: usize,
}

impl<'a> CsvSource<'a> {
    fn open(
        spec: &'a SourceSpec,
        path: &Path,
        columns: &[SourceColumn],
        batch_rows: usize,
    ) -> Result<Self> {
        let file = File::open(path)
            .map_err(|e| Error::input(path, "file", format!("cannot open source: {e}")))?;
        let mut src = CsvSource {
            spec,
            path: path.into(),
            file,
            quote: spec.quote.bytes().next(),
            delimiter: spec.delimiter as u8,
            header: Vec::new(),
            projection: Vec::new(),
            columns: columns.to_vec(),
            pending: Vec::new(),
            eof: false,
            records_done: 0,
            lines_done: 0,
            batch_rows,
        };
        src.read_header()?;
        Ok(src)
    }

    fn err(&self, at: impl Into<String>, message: impl Into<String>) -> Error {
        Error::input(&self.path, at, message)
    }

    /// Appends up to `want` more bytes to `pending`, noting the end of the file.
    fn fill(&mut self, want: usize) -> Result<()> {
        let before = self.pending.len();
        // Room for the whole chunk first: `read_to_end` would otherwise grow the buffer by probing.
        self.pending.reserve(want);
        // `read_to_end` grows the buffer without zeroing it first.
        (&mut self.file)
            .take(want as u64)
            .read_to_end(&mut self.pending)
            .map_err(|e| self.err("file", format!("read failed: {e}")))?;
        self.eof = self.pending.len() - before < want;
        Ok(())
    }

    /// Takes up to `max_records` whole records from the front of the pending bytes, reading more as needed,
    /// and checks their structure (field counts once the header is known, closed quotes, no empty
    /// lines). Returns the raw bytes (file encoding), the number of records and of line breaks.
    fn take_records(&mut self, max_records: usize) -> Result<Option<Records>> {
        let expected = (!self.header.is_empty()).then_some(self.header.len());
        let mut scan = Scan::default();
        // The field ends of a full batch, reserved at once rather than grown (and copied) by doubling.
        scan.field_ends.reserve(
            max_records
                .saturating_mul(expected.unwrap_or(1))
                .min(1 << 26),
        );
        loop {
            scan.advance(
                &self.pending,
                self.quote,
                self.delimiter,
                expected,
                max_records,
            );
            if let Some(problem) = scan.problem.take() {
                return Err(self.structure_error(problem));
            }
            let complete = scan.records == max_records;
            if complete || self.eof {
                let mut end = scan.end;
                if !complete && end < self.pending.len() {
                    // A last record without a final line break.
                    if scan.in_quotes {
                        let line = self.lines_done + scan.quote_opened_at_line + 1;
                        return Err(self.err(
                            format!("line {line}"),
                            "a quoted field opened on this line is not closed before the end of the file",
                        ));
                    }
                    scan.end_record(self.pending.len(), &self.pending, expected);
                    if let Some(problem) = scan.problem.take() {
                        return Err(self.structure_error(problem));
                    }
                    end = self.pending.len();
                }
                if end == 0 {
                    return Ok(None);
                }
                // Copy the batch out at its size: handing over the whole buffer would carry its
                // capacity (a chunk or more) along with every batch in flight.
                let batch = self.pending[..end].to_vec();
                self.pending.drain(..end);
                return Ok(Some(Records {
                    text: batch,
                    records: scan.records,
                    lines: scan.lines,
                    field_ends: scan.field_ends,
                }));
            }
            if self.pending.len() > u32::MAX as usize - CHUNK_BYTES {
                return Err(self.err(
                    format!("line {}", self.lines_done + scan.record_line + 1),
                    "a batch holds more than 4 GiB of text: lower `batch_rows` in [output]",
                ));
            }
            // One chunk at a time: what is read past the batch is moved to the buffer's front.
            self.fill(CHUNK_BYTES)?;
        }
    }

    fn structure_error(&self, problem: Problem) -> Error {
        let record = self.records_done + problem.record as u64 + 1;
        let line = self.lines_done + problem.line + 1;
        match problem.fields {
            0 => self.err(format!("line {line}"), "empty line inside the data"),
            n => self.err(
                format!("record {record}, line {line}"),
                format!(
                    "{n} fields where the header has {}; is the delimiter `{}` right?",
                    self.header.len(),
                    self.delimiter as char
                ),
            ),
        }
    }

    fn read_header(&mut self) -> Result<()> {
        if self.spec.header {
            let Some(Records { text: mut raw, .. }) = self.take_records(1)? else {
                return Err(self.err("line 1", "the file is empty; a header line was expected"));
            };
            if raw.starts_with(b"\xFF\xFE") || raw.starts_with(b"\xFE\xFF") {
                return Err(self.err(
                    "line 1",
                    "the file is UTF-16 (it starts with a UTF-16 byte-order mark); convert it to UTF-8",
                ));
            }
            if self.spec.encoding == TextEncoding::Utf8 && raw.starts_with(b"\xEF\xBB\xBF") {
                raw.drain(..3);
            }
            let line = self.decode(raw, 1)?;
            self.header = split_record(
                line.trim_end_matches(['\n', '\r']),
                self.delimiter,
                self.quote,
            );
            self.records_done = 0;
            self.lines_done = line.matches('\n').count() as u64;
            let mut seen = std::collections::HashSet::new();
            for (i, h) in self.header.iter().enumerate() {
                if h.is_empty() {
                    return Err(self.err(
                        format!("line 1, field {}", i + 1),
                        "empty column name in the header",
                    ));
                }
                if !seen.insert(h.as_str()) {
                    return Err(self.err(
                        format!("line 1, column `{h}`"),
                        "column name appears twice in the header",
                    ));
                }
            }
        } else {
            self.header = self.columns.iter().map(|c| c.name.clone()).collect();
        }
        self.projection = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let Some(pos) = self.header.iter().position(|h| h == &c.name) else {
                let delim = self.delimiter as char;
                let hint =
                    if self.header.len() == 1 && self.header[0].contains([';', ',', '\t', '|']) {
                        format!(" (the header is one field: is the delimiter `{delim}` right?)")
                    } else {
                        String::new()
                    };
                return Err(self.err(
                    "line 1",
                    format!("declared column `{}` is not in the header{hint}", c.name),
                ));
            };
            self.projection.push(pos);
        }
        Ok(())
    }

    /// Converts raw file bytes to UTF-8, naming the line of the first undecodable byte.
    fn decode(&self, raw: Vec<u8>, first_line: u64) -> Result<String> {
        match self.spec.encoding {
            TextEncoding::Utf8 => match String::from_utf8(raw) {
                Ok(text) => Ok(text),
                Err(e) => {
                    let raw = e.as_bytes();
                    let upto = &raw[..e.utf8_error().valid_up_to()];
                    let line = first_line + upto.iter().filter(|&&b| b == b'\n').count() as u64;
                    let col = upto.len()
                        - upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)
                        + 1;
                    Err(self.err(
                        format!("line {line}, byte {col}"),
                        "invalid UTF-8; if the file is Latin-1 or Windows-1252, set `encoding` in the source",
                    ))
                }
            },
            TextEncoding::Latin1 => Ok(raw.iter().map(|&b| char::from(b)).collect()),
            TextEncoding::Windows1252 => {
                let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&raw);
                Ok(text.into_owned())
            }
        }
    }

    fn next_batch(&mut self) -> Result<Option<Batch>> {
        let Some(Records {
            text: raw,
            records,
            lines,
            field_ends,
        }) = self.take_records(self.batch_rows)?
        else {
            if self.records_done == 0 {
                return Err(self.err(
                    "line 2",
                    "the file has no data rows (a header only); an empty extract is refused, as it is \
                     almost always a failed export",
                ));
            }
            return Ok(None);
        };
        let first_line = self.lines_done + 1;
        if let Some(at) = memchr::memchr(0, &raw) {
            let line = first_line + raw[..at].iter().filter(|&&b| b == b'\n').count() as u64;
            return Err(self.err(
                format!("line {line}"),
                "NUL byte in the text: binary data or a damaged export",
            ));
        }
        let source_bytes = raw.len() as u64;
        let utf8 = self.spec.encoding == TextEncoding::Utf8;
        let text = SharedText::new(self.decode(raw, first_line)?);
        // Transcoding leaves every ASCII byte (quote, delimiter, line break) but moves the others:
        // the fields of a transcoded batch are found again in its UTF-8 text.
        let field_ends = if utf8 {
            field_ends
        } else {
            let mut scan = Scan::default();
            let fields = self.header.len();
            scan.advance(
                text.as_bytes(),
                self.quote,
                self.delimiter,
                Some(fields),
                records,
            );
            if scan.records < records {
                scan.end_record(text.as_bytes().len(), text.as_bytes(), Some(fields));
            }
            scan.field_ends
        };
        let parsed = self.parse(&text, &field_ends, records)?;
        let origin = Origin {
            file: self.path.clone(),
            first_record: self.records_done + 1,
            first_line,
            source_bytes,
            quote: self.quote,
            text: Some(text),
        };
        let df = parsed.map_err(|(column, row, rule)| {
            Error::input(
                &self.path,
                format!(
                    "{}, column `{}`",
                    origin.place(row),
                    self.columns[column].name
                ),
                format!("value is not {rule} (value not shown)"),
            )
        })?;
        self.records_done += records as u64;
        self.lines_done += lines;
        Ok(Some(Batch { df, origin }))
    }

    fn for_each(mut self, each: &mut impl FnMut(Batch) -> Result<()>) -> Result<()> {
        while let Some(batch) = self.next_batch()? {
            each(batch)?;
        }
        Ok(())
    }

    /// The declared columns of a batch in their declared types, cut out of `shared` at the field
    /// ends the scan found (see [`crate::csv_columns`]): no second scan of the text. A quoted field
    /// loses its quotes and its doubled quotes; a field equal to a null value is null; a line's
    /// carriage return is not part of its last field. For a value that does not parse: its column,
    /// row and the rule it breaks.
    fn parse(
        &self,
        shared: &SharedText,
        field_ends: &[u32],
        records: usize,
    ) -> Result<std::result::Result<DataFrame, (usize, usize, String)>> {
        let fields = self.header.len();
        if field_ends.len() != records * fields {
            return Err(Error::Internal(format!(
                "{}: the scan found {} fields for {records} records of {fields}",
                self.path.display(),
                field_ends.len()
            )));
        }
        let fields = Fields {
            text: shared,
            per_record: fields,
            ends: field_ends,
            records,
            quote: self.quote.map(char::from),
            nulls: &self.spec.null_values,
        };
        let wanted: Vec<Wanted> = self
            .projection
            .iter()
            .zip(&self.columns)
            .map(|(&field, c)| Wanted {
                field,
                name: &c.name,
                column_type: c.column_type,
                format: &c.format,
            })
            .collect();
        let columns = fields.columns(&wanted);
        Ok(columns.map(|columns| DataFrame::new(records, columns).expect("equal lengths")))
    }
}

/// Polars messages can quote data; keep only their first clause, which names the kind of failure.
fn redact_polars(e: &PolarsError) -> String {
    let s = e.to_string();
    s.split([':', '\n']).next().unwrap_or("").trim().to_string()
}

/// A record whose structure is wrong: its index in the scan, the line offset where it starts, and its
/// field count (0 for an empty line).
#[derive(Debug, PartialEq)]
struct Problem {
    record: usize,
    line: u64,
    fields: usize,
}

/// Finds record boundaries in a growing buffer in one pass, remembering where it stopped: only the
/// delimiters, quotes and line breaks are visited (memchr), and fields are counted on the way.
#[derive(Debug, Default)]
struct Scan {
    pos: usize,
    /// End of the last complete record.
    end: usize,
    records: usize,
    lines: u64,
    in_quotes: bool,
    /// Line breaks before the quote that opened the current quoted field.
    quote_opened_at_line: u64,
    /// Delimiters seen so far in the current record.
    delimiters: usize,
    /// Line breaks before the current record.
    record_line: u64,
    problem: Option<Problem>,
    /// Where each field of the scanned records ends (its delimiter or line break), so that the
    /// columns are cut out of the text without scanning it again.
    field_ends: Vec<u32>,
}

impl Scan {
    /// Scans on from where it stopped, until `max_records` whole records, a structural problem, or the end
    /// of `buf`. With `expected`, every record must have that many fields.
    fn advance(
        &mut self,
        buf: &[u8],
        quote: Option<u8>,
        delimiter: u8,
        expected: Option<usize>,
        max_records: usize,
    ) {
        if self.records >= max_records || self.problem.is_some() {
            return;
        }
        // Without a quote character, search for the delimiter twice: it is then never taken for a quote.
        let q = quote.unwrap_or(delimiter);
        for at in memchr::memchr3_iter(q, delimiter, b'\n', &buf[self.pos..]) {
            let at = self.pos + at;
            let b = buf[at];
            if Some(b) == quote {
                self.in_quotes = !self.in_quotes;
                if self.in_quotes {
                    self.quote_opened_at_line = self.lines;
                }
            } else if b == b'\n' {
                self.lines += 1;
                if !self.in_quotes {
                    self.end_record(at + 1, buf, expected);
                    if self.records >= max_records || self.problem.is_some() {
                        self.pos = at + 1;
                        return;
                    }
                }
            } else if !self.in_quotes {
                self.delimiters += 1;
                self.field_ends.push(at as u32);
            }
        }
        self.pos = buf.len();
    }

    /// Closes the record that ends at `end` (after its line break, if any).
    fn end_record(&mut self, end: usize, buf: &[u8], expected: Option<usize>) {
        let body = &buf[self.end..end];
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let fields = self.delimiters + 1;
        if body.is_empty() {
            self.problem = Some(Problem {
                record: self.records,
                line: self.record_line,
                fields: 0,
            });
        } else if expected.is_some_and(|e| e != fields) {
            self.problem = Some(Problem {
                record: self.records,
                line: self.record_line,
                fields,
            });
        } else {
            self.records += 1;
            self.end = end;
            self.delimiters = 0;
            self.record_line = self.lines;
            let last_field_end = if buf[..end].ends_with(b"\n") {
                end - 1
            } else {
                end
            };
            self.field_ends.push(last_field_end as u32);
        }
    }
}

/// Whole records taken from the front of a CSV file's pending bytes.
struct Records {
    /// The records' bytes, in the file's encoding.
    text: Vec<u8>,
    records: usize,
    /// Line breaks in `text`.
    lines: u64,
    /// Where each field ends in `text` (see [`Scan`]).
    field_ends: Vec<u32>,
}

/// Splits one record into unquoted fields (for the header).
fn split_record(line: &str, delimiter: u8, quote: Option<u8>) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut in_quotes = false;
    let mut prev_quote = false;
    for c in line.chars() {
        let is_quote = quote.is_some_and(|q| c == q as char);
        if is_quote {
            if !in_quotes && prev_quote {
                fields.last_mut().unwrap().push(c); // "" inside a quoted field
            }
            in_quotes = !in_quotes;
            prev_quote = true;
            continue;
        }
        prev_quote = false;
        if !in_quotes && c == delimiter as char {
            fields.push(String::new());
        } else {
            fields.last_mut().unwrap().push(c);
        }
    }
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

fn read_parquet(
    path: &Path,
    columns: &[SourceColumn],
    batch_rows: usize,
    each: &mut impl FnMut(Batch) -> Result<()>,
) -> Result<()> {
    let total = check_parquet(path, columns)?;
    for (offset, len) in slices(total, batch_rows) {
        each(read_parquet_slice(path, columns, offset, len, total)?)?;
    }
    Ok(())
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
fn check_parquet(path: &Path, columns: &[SourceColumn]) -> Result<usize> {
    let file = File::open(path)
        .map_err(|e| Error::input(path, "file", format!("cannot open source: {e}")))?;
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
        let Some(field) = schema.get(c.name.as_str()) else {
            return Err(Error::input(
                path,
                format!("column `{}`", c.name),
                "declared column is not in the file",
            ));
        };
        let dtype = DataType::from_arrow_field(field);
        let fits = dtype == DataType::String
            || matches!(
                (c.column_type, &dtype),
                (
                    ColumnType::Integer,
                    DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8
                ) | (ColumnType::Float, DataType::Float64 | DataType::Float32)
                    | (ColumnType::Date, DataType::Date)
                    | (ColumnType::Datetime, DataType::Datetime(..))
                    | (ColumnType::Boolean, DataType::Boolean)
            );
        if !fits {
            return Err(Error::input(
                path,
                format!("column `{}`", c.name),
                format!(
                    "is {dtype} in the file but declared {:?}; fix the permit's type or the extract",
                    c.column_type
                ),
            ));
        }
    }
    reader.num_rows().map_err(unreadable)
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
        })
        .collect()
}

/// Reads named columns of `files` as text, batch by batch, whatever their declared types: CSV
/// through `spec`, Parquet (or a linked person table) column by column. For `assess` and
/// `describe`, which judge values themselves.
pub fn read_text(
    spec: &SourceSpec,
    files: &[PathBuf],
    names: &[String],
    batch_rows: usize,
    mut each: impl FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    match spec.format {
        SourceFormat::Csv => read_batches(spec, files, &text_columns(names), batch_rows, |b| {
            each(b.df)
        }),
        SourceFormat::Parquet | SourceFormat::Linked => files
            .iter()
            .try_for_each(|f| read_parquet_text(f, names, batch_rows, &mut each)),
    }
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
    let mut reader = ParquetReader::new(file);
    let unreadable = |e: PolarsError| {
        Error::input(
            path,
            "footer",
            format!("not a readable Parquet file: {}", redact_polars(&e)),
        )
    };
    let schema = reader.schema().map_err(unreadable)?;
    if let Some(missing) = names.iter().find(|n| schema.get(n.as_str()).is_none()) {
        return Err(Error::input(
            path,
            format!("column `{missing}`"),
            "column is not in the file",
        ));
    }
    let total = reader.num_rows().map_err(unreadable)?;
    read_ahead(
        |send| {
            for (offset, len) in slices(total, batch_rows) {
                let batch = read_parquet_slice(path, &columns, offset, len, total)?;
                let text = batch
                    .df
                    .columns()
                    .iter()
                    .map(|c| c.cast(&DataType::String))
                    .collect::<PolarsResult<Vec<_>>>()?;
                send(DataFrame::new(len, text)?)?;
            }
            Ok(())
        },
        each,
    )
}

fn read_parquet_slice(
    path: &Path,
    columns: &[SourceColumn],
    offset: usize,
    len: usize,
    total: usize,
) -> Result<Batch> {
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let file = File::open(path)
        .map_err(|e| Error::input(path, "file", format!("cannot open source: {e}")))?;
    let df = ParquetReader::new(file)
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
    let file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let origin = Origin {
        file: path.into(),
        first_record: offset as u64 + 1,
        first_line: 0,
        source_bytes: file_bytes * len as u64 / total.max(1) as u64,
        text: None,
        quote: None,
    };
    Ok(Batch { df, origin })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch text as polars' CSV reader parses it (every column text), the reference the
    /// engine's own field cutting is held to.
    fn polars_columns(source: &CsvSource, text: &[u8]) -> DataFrame {
        let schema: Schema = source
            .header
            .iter()
            .map(|h| Field::new(h.as_str().into(), DataType::String))
            .collect();
        let nulls: Vec<PlSmallStr> = source
            .spec
            .null_values
            .iter()
            .map(|s| s.as_str().into())
            .collect();
        let df = CsvReadOptions::default()
            .with_has_header(false)
            .with_schema(Some(std::sync::Arc::new(schema)))
            .with_projection(Some(std::sync::Arc::new(source.projection.clone())))
            .with_raise_if_empty(false)
            .map_parse_options(|p| {
                p.with_separator(source.delimiter)
                    .with_quote_char(source.quote)
                    .with_null_values(Some(NullValues::AllColumns(nulls.clone())))
                    .with_missing_is_null(source.spec.null_values.iter().any(String::is_empty))
            })
            .into_reader_with_file_handle(std::io::Cursor::new(text))
            .finish()
            .unwrap();
        let names: Vec<&str> = source.columns.iter().map(|c| c.name.as_str()).collect();
        df.select(names).unwrap()
    }

    /// A random field: plain text, empty, a null token, or quoted with delimiters, doubled quotes,
    /// line breaks and non-ASCII letters inside.
    fn random_field(rng: &mut rand::rngs::ChaCha8Rng) -> String {
        use rand::RngExt;
        let plain = [
            "x", "ab c", "é", "12.5", " lead", "trail ", "NA", "null-ish",
        ];
        match rng.random_range(0..6) {
            0 => String::new(),
            1 => "NA".into(),
            2 | 3 => plain[rng.random_range(0..plain.len())].into(),
            _ => {
                let inner = ["a", ";", ",", "\"\"", "\n", "\r\n", "é", " ", "NA"];
                let n = rng.random_range(0..5);
                let body: String = (0..n)
                    .map(|_| inner[rng.random_range(0..inner.len())])
                    .collect();
                format!("\"{body}\"")
            }
        }
    }

    #[test]
    fn columns_match_polars_csv_reader_on_random_text() {
        use rand::{RngExt, SeedableRng};
        let tmp = tempfile::tempdir().unwrap();
        for seed in 0..60u64 {
            let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
            let delimiter = [',', ';'][seed as usize % 2];
            let null_values = match seed % 3 {
                0 => vec![String::new()],
                1 => vec![String::new(), "NA".into()],
                _ => vec!["NA".into()],
            };
            let newline = if seed % 4 == 0 { "\r\n" } else { "\n" };
            let mut text = format!("a{delimiter}b{delimiter}c{newline}");
            let rows: usize = rng.random_range(1..40);
            for r in 0..rows {
                let fields: Vec<String> = (0..3).map(|_| random_field(&mut rng)).collect();
                text.push_str(&fields.join(&delimiter.to_string()));
                if r + 1 < rows || seed % 5 != 0 {
                    text.push_str(newline);
                }
            }
            let path = tmp.path().join(format!("{seed}.csv"));
            // Some files in Latin-1: their fields are found again after transcoding.
            let encoding = if seed % 3 == 2 {
                TextEncoding::Latin1
            } else {
                TextEncoding::Utf8
            };
            match encoding {
                TextEncoding::Latin1 => {
                    std::fs::write(&path, text.chars().map(|c| c as u8).collect::<Vec<u8>>())
                }
                _ => std::fs::write(&path, &text),
            }
            .unwrap();
            let spec = SourceSpec {
                format: SourceFormat::Csv,
                files: vec![path.clone()],
                delimiter,
                quote: "\"".into(),
                header: true,
                encoding,
                null_values,
                date_format: "%Y-%m-%d".into(),
                datetime_format: "%Y-%m-%d %H:%M:%S".into(),
            };
            // Declared out of file order, one column left out.
            let columns: Vec<SourceColumn> = ["c", "a"]
                .iter()
                .map(|n| SourceColumn {
                    name: n.to_string(),
                    column_type: ColumnType::String,
                    format: String::new(),
                })
                .collect();
            let mut source = CsvSource::open(&spec, &path, &columns, 7).unwrap();
            let mut batches = 0;
            while let Some(batch) = source.next_batch().unwrap() {
                let expected =
                    polars_columns(&source, batch.origin.text.as_ref().unwrap().as_bytes());
                assert_eq!(batch.df, expected, "seed {seed}, batch {batches}:\n{text}");
                batches += 1;
            }
            assert_eq!(batches, rows.div_ceil(7), "seed {seed}");
        }
    }

    #[test]
    fn header_split_handles_quotes() {
        assert_eq!(
            split_record(r#"a;"b;c";"d""e""#, b';', Some(b'"')),
            vec!["a", "b;c", "d\"e"]
        );
        assert_eq!(split_record("x,y", b',', None), vec!["x", "y"]);
    }

    #[test]
    fn record_lines_skip_embedded_line_breaks() {
        let text = b"a,\"x\ny\"\nb,c\nd,e\n";
        assert_eq!(record_start_lines(text, Some(b'"'), 3), vec![0, 2, 3]);
    }

    #[test]
    fn scan_stops_at_record_boundaries_and_counts_fields() {
        let buf = b"a,\"1\n,2\"\nb,3\r\nc,4";
        let mut s = Scan::default();
        s.advance(buf, Some(b'"'), b',', Some(2), 2);
        assert_eq!((s.records, s.end, s.lines, s.problem), (2, 14, 3, None));
        let mut s = Scan::default();
        s.advance(buf, Some(b'"'), b',', Some(2), 10);
        assert_eq!((s.records, s.end, s.pos), (2, 14, buf.len()));
        let mut s = Scan::default();
        s.advance(b"a,b\nc\n\nd,e\n", None, b',', Some(2), 10);
        assert_eq!(
            s.problem,
            Some(Problem {
                record: 1,
                line: 1,
                fields: 1
            })
        );
        let mut s = Scan::default();
        s.advance(b"a,b\n\r\nd,e\n", None, b',', Some(2), 10);
        assert_eq!(
            s.problem,
            Some(Problem {
                record: 1,
                line: 1,
                fields: 0
            })
        );
    }
}
