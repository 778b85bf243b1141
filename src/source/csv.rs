//! CSV sources: the dialect (delimiter, quote, how strictly quotes are read), the scan that finds
//! records and fields and checks their structure in one pass, and the reader that turns a file
//! into batches of declared columns.

use std::io::Read;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::csv_columns::{Fields, Wanted};
use super::inputs::TrackedFile;
use super::text_column::SharedText;
use super::{Batch, Origin, SourceColumn};
use crate::error::{Error, Result};
use crate::permit::{QuoteInField, SourceSpec, TextEncoding};

/// Bytes read from a CSV file per chunk (grown when a single record is longer).
const CHUNK_BYTES: usize = 16 << 20;

/// The line offset in `text` (whole records, already scanned once) where record `row` starts.
pub(super) fn record_start_line(text: &[u8], dialect: Dialect, row: usize) -> u64 {
    let mut scan = Scan::new(dialect.unbounded());
    scan.advance(text, None, row);
    scan.record_line
}

/// A CSV source's syntax: what separates and quotes fields, and how strictly quotes are read.
///
/// The rules are RFC 4180's, made explicit: a quote opens a field only as the field's first
/// byte; inside a quoted field a quote is doubled (`""`) or closes the field, and the closing
/// quote is followed by the delimiter or the line end. A quote anywhere else in an unquoted field
/// is an error, or literal text when the permit says so. A carriage return ends a line only right
/// before its line feed; elsewhere it must be inside a quoted field (a CR-only file is refused,
/// never read as one long record).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: Option<u8>,
    /// A quote inside an unquoted field is text (`quote_in_field = "literal"`).
    pub literal_quotes: bool,
    /// The longest quoted field accepted, in bytes.
    pub max_quoted_bytes: usize,
}

impl Dialect {
    pub fn of(spec: &SourceSpec) -> Dialect {
        Dialect {
            delimiter: spec.delimiter as u8,
            quote: spec.quote.bytes().next(),
            literal_quotes: spec.quote_in_field == QuoteInField::Literal,
            max_quoted_bytes: spec.max_quoted_field_bytes,
        }
    }

    /// The same syntax without the length bound, to scan text that passed it once already
    /// (transcoding can lengthen a field).
    fn unbounded(self) -> Dialect {
        Dialect {
            max_quoted_bytes: usize::MAX,
            ..self
        }
    }
}

pub(super) struct CsvSource<'a> {
    spec: &'a SourceSpec,
    path: PathBuf,
    file: TrackedFile,
    dialect: Dialect,
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
    pub(super) fn open(
        spec: &'a SourceSpec,
        path: &Path,
        columns: &[SourceColumn],
        batch_rows: usize,
    ) -> Result<Self> {
        let file = TrackedFile::open_hashed_apart(path)
            .map_err(|e| Error::input(path, "file", format!("cannot open source: {e}")))?;
        let mut src = CsvSource {
            spec,
            path: path.into(),
            file,
            dialect: Dialect::of(spec),
            header: Vec::new(),
            projection: Vec::new(),
            columns: columns.to_vec(),
            pending: Vec::new(),
            eof: false,
            records_done: 0,
            lines_done: 0,
            batch_rows,
        };
        src.check_start()?;
        src.read_header()?;
        Ok(src)
    }

    fn err(&self, at: impl Into<String>, message: impl Into<String>) -> Error {
        Error::input(&self.path, at, message)
    }

    /// Appends up to `want` more bytes to `pending`, noting the end of the file. A NUL byte, never
    /// part of text, stops the read here, with its cause.
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
        if let Some(at) = memchr::memchr(0, &self.pending[before..]) {
            return Err(self.nul_error(before + at));
        }
        Ok(())
    }

    /// The error for a NUL byte at `at` in `pending`, naming what it most likely is: UTF-16 without
    /// a byte-order mark, padding at the end of the file, or binary data.
    fn nul_error(&mut self, at: usize) -> Error {
        let line =
            self.lines_done + memchr::memchr_iter(b'\n', &self.pending[..at]).count() as u64 + 1;
        let head = &self.pending[..self.pending.len().min(64)];
        let every_other_nul =
            |parity: usize| head.len() >= 4 && head.iter().skip(parity).step_by(2).all(|&b| b == 0);
        if self.lines_done == 0 && (every_other_nul(0) || every_other_nul(1)) {
            return self.err(
                "line 1",
                "every other byte is NUL: the file is UTF-16 without a byte-order mark; convert it to UTF-8",
            );
        }
        // Padding: NULs from here to the end of the file (read on, a chunk at a time, while they are).
        let mut padding = self.pending[at..].iter().all(|&b| b == 0);
        let mut nul_bytes = (self.pending.len() - at) as u64;
        let mut chunk = vec![0u8; 1 << 20];
        while padding && !self.eof {
            match self.file.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    padding = chunk[..n].iter().all(|&b| b == 0);
                    nul_bytes += n as u64;
                }
                Err(_) => padding = false,
            }
        }
        if padding {
            return self.err(
                format!("line {line}"),
                format!(
                    "the file ends in {nul_bytes} NUL bytes: padding left by an interrupted copy or a \
                     pre-allocated file; cut the file where its data ends"
                ),
            );
        }
        self.err(
            format!("line {line}"),
            "NUL byte in the text: binary data or a damaged export",
        )
    }

    /// What the file's first bytes say it is: compressed, an archive, Parquet, UTF-16, or text with
    /// a byte-order mark (dropped, or an error when it contradicts the declared encoding).
    fn check_start(&mut self) -> Result<()> {
        const UTF16: &str = "UTF-16 (it starts with a UTF-16 byte-order mark); convert it to UTF-8";
        const NOT_TEXT: [(&[u8], &str); 7] = [
            (b"\x1f\x8b", "gzip-compressed: decompress it (gunzip) first"),
            (
                b"\x28\xb5\x2f\xfd",
                "zstd-compressed: decompress it (unzstd) first",
            ),
            (b"\xfd7zXZ\x00", "xz-compressed: decompress it (unxz) first"),
            (
                b"PK\x03\x04",
                "a zip archive: extract the CSV from it first",
            ),
            (
                b"7z\xbc\xaf\x27\x1c",
                "a 7-Zip archive: extract the CSV from it first",
            ),
            (b"\xff\xfe", UTF16),
            (b"\xfe\xff", UTF16),
        ];
        // Read the start without the NUL check of `fill`: compressed files hold NULs.
        let mut start = [0u8; 8];
        let n = (&mut self.file)
            .take(8)
            .read(&mut start)
            .map_err(|e| self.err("file", format!("read failed: {e}")))?;
        let start = &start[..n];
        self.pending.extend_from_slice(start);
        let bzip2 =
            start.len() >= 4 && start.starts_with(b"BZh") && (b'1'..=b'9').contains(&start[3]);
        let parquet = start.len() >= 5 && start.starts_with(b"PAR1") && start[4] < 0x20;
        let what = NOT_TEXT
            .iter()
            .find(|(magic, _)| start.starts_with(magic))
            .map(|(_, what)| *what)
            .or(bzip2.then_some("bzip2-compressed: decompress it (bunzip2) first"))
            .or(parquet.then_some("a Parquet file: set format = \"parquet\" in the source"));
        if let Some(what) = what {
            return Err(self.err("line 1", format!("the file is {what}")));
        }
        if self.pending.starts_with(b"\xEF\xBB\xBF") {
            if self.spec.encoding != TextEncoding::Utf8 {
                return Err(self.err(
                    "line 1",
                    format!(
                        "the file starts with a UTF-8 byte-order mark, but the source is declared {}: \
                         set encoding = \"utf-8\"",
                        self.spec.encoding.name()
                    ),
                ));
            }
            self.pending.drain(..3);
        }
        if let Some(at) = memchr::memchr(0, &self.pending) {
            return Err(self.nul_error(at));
        }
        Ok(())
    }

    /// Takes up to `max_records` whole records from the front of the pending bytes, reading more as needed,
    /// and checks their structure (field counts once the header is known, closed quotes, no empty
    /// lines). Returns the raw bytes (file encoding), the number of records and of line breaks.
    fn take_records(&mut self, max_records: usize) -> Result<Option<Records>> {
        let expected = (!self.header.is_empty()).then_some(self.header.len());
        let mut scan = Scan::new(self.dialect);
        // The field ends of a full batch, reserved at once rather than grown (and copied) by doubling.
        scan.field_ends.reserve(
            max_records
                .saturating_mul(expected.unwrap_or(1))
                .min(1 << 26),
        );
        loop {
            scan.advance(&self.pending, expected, max_records);
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
                if let Some(problem) = scan.bare_carriage_return(&self.pending[..end]) {
                    return Err(self.structure_error(problem));
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
        let field = self.field_name(problem.field);
        let at = if self.spec.header && self.header.is_empty() {
            format!("line {line} (the header), {field}")
        } else {
            format!("record {record}, line {line}, {field}")
        };
        let dialect = self.dialect;
        let message = match problem.fault {
            Fault::EmptyLine => {
                return self.err(format!("line {line}"), "empty line inside the data");
            }
            Fault::FieldCount(n) => {
                return self.err(
                    format!("record {record}, line {line}"),
                    format!(
                        "{n} fields where the header has {}; is the delimiter `{}` right?",
                        self.header.len(),
                        dialect.delimiter as char
                    ),
                );
            }
            Fault::QuoteInsideField => "a quote inside a field that does not start with one \
                 (RFC 4180 quotes whole fields only); if the export writes quotes as text, set \
                 `quote_in_field = \"literal\"` in the source"
                .to_string(),
            Fault::TextAfterQuote => "text after the closing quote of a quoted field (a quote \
                 inside a quoted field is written twice: `\"\"`)"
                .to_string(),
            Fault::QuotedTooLong => format!(
                "a quoted field runs past {} bytes: a quote left open? (raise \
                 `max_quoted_field_bytes` in the source if fields this long are real)",
                dialect.max_quoted_bytes
            ),
            Fault::BareCarriageReturn => "a carriage return that does not end a line, outside \
                 quotes: the file may have CR-only (classic Mac) line ends; convert them to LF or \
                 CRLF"
                .to_string(),
        };
        self.err(at, message)
    }

    /// A field by its declared column name when the permit declares the file's column there, by
    /// its position otherwise: a header cell may be data (a file exported without its header), so
    /// it is never repeated.
    fn field_name(&self, field: usize) -> String {
        match self.header.get(field) {
            Some(name) if self.columns.iter().any(|c| &c.name == name) => {
                format!("column `{name}`")
            }
            _ => format!("field {}", field + 1),
        }
    }

    fn read_header(&mut self) -> Result<()> {
        if self.spec.header {
            let Some(Records { text: raw, .. }) = self.take_records(1)? else {
                return Err(self.err("line 1", "the file is empty; a header line was expected"));
            };
            let line = self.decode(raw, 1)?;
            self.header = split_record(line.trim_end_matches(['\n', '\r']), self.dialect);
            self.records_done = 0;
            self.lines_done = line.matches('\n').count() as u64;
            let mut seen = std::collections::HashMap::new();
            for (i, h) in self.header.iter().enumerate() {
                if h.is_empty() {
                    return Err(self.err(
                        format!("line 1, field {}", i + 1),
                        "empty column name in the header",
                    ));
                }
                if let Some(first) = seen.insert(h.as_str(), i) {
                    // Named by the permit's declaration only: a header cell may be data.
                    let declared = self
                        .columns
                        .iter()
                        .find(|c| &c.name == h)
                        .map_or(String::new(), |c| {
                            format!(" (declared column `{}`)", c.name)
                        });
                    return Err(self.err(
                        format!("line 1 (the header), fields {} and {}", first + 1, i + 1),
                        format!(
                            "two header fields have the same name{declared}; if the file has no \
                             header line, set `header = false` in the source"
                        ),
                    ));
                }
            }
        } else {
            self.header = self.columns.iter().map(|c| c.name.clone()).collect();
        }
        self.projection = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let Some(pos) = self.header.iter().position(|h| h == &c.name) else {
                let delim = self.dialect.delimiter as char;
                let hint = if self.header.len() == 1
                    && self.header[0].contains([';', ',', '\t', '|'])
                {
                    format!(" (the header is one field: is the delimiter `{delim}` right?)")
                } else if let Some(field) = self.header.iter().position(|h| same_name(h, &c.name)) {
                    format!(
                        " (header field {} is the same name written with other Unicode characters: \
                         accents decomposed (NFD, as some systems export), full-width letters or \
                         invisible characters; names must match exactly: convert the header to NFC \
                         or write the name as the file does)",
                        field + 1
                    )
                } else if let Some(field) = self
                    .header
                    .iter()
                    .position(|h| h.to_lowercase() == c.name.to_lowercase())
                {
                    // A column name is a name, not an identifier: showing it leaks nothing.
                    format!(
                        " (header field {} is `{}`, the same name in another case: names match \
                         exactly; declare it as the file writes it)",
                        field + 1,
                        self.header[field]
                    )
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

    pub(super) fn next_batch(&mut self) -> Result<Option<Batch>> {
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
        let source_bytes = raw.len() as u64;
        let utf8 = self.spec.encoding == TextEncoding::Utf8;
        let text = SharedText::new(self.decode(raw, first_line)?);
        // Transcoding leaves every ASCII byte (quote, delimiter, line break) but moves the others:
        // the fields of a transcoded batch are found again in its UTF-8 text.
        let field_ends = if utf8 {
            field_ends
        } else {
            let mut scan = Scan::new(self.dialect.unbounded());
            let fields = self.header.len();
            scan.advance(text.as_bytes(), Some(fields), records);
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
            text: Some((text, self.dialect)),
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

    /// Hands every batch to `each`; returns the file, read to its end.
    pub(super) fn for_each(
        mut self,
        each: &mut impl FnMut(Batch) -> Result<()>,
    ) -> Result<TrackedFile> {
        while let Some(batch) = self.next_batch()? {
            each(batch)?;
        }
        Ok(self.file)
    }

    /// The declared columns of a batch in their declared types, cut out of `shared` at the field
    /// ends the scan found (see [`crate::source::csv_columns`]): no second scan of the text. A quoted field
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
            quote: self.dialect.quote.map(char::from),
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
                nulls: &c.null_values,
            })
            .collect();
        let columns = fields.columns(&wanted);
        Ok(columns.map(|columns| DataFrame::new(records, columns).expect("equal lengths")))
    }
}

/// A record whose structure is wrong: its index in the scan, the line offset of the fault, the
/// field it is in (0-based) and what is wrong.
#[derive(Debug, PartialEq)]
struct Problem {
    record: usize,
    line: u64,
    field: usize,
    fault: Fault,
}

#[derive(Debug, PartialEq)]
enum Fault {
    EmptyLine,
    /// The record has this many fields, not the header's number.
    FieldCount(usize),
    QuoteInsideField,
    TextAfterQuote,
    QuotedTooLong,
    BareCarriageReturn,
}

/// Finds record boundaries in a growing buffer in one pass, remembering where it stopped: only the
/// delimiters, quotes and line breaks are visited (memchr), fields are counted and the quoting
/// rules of [`Dialect`] checked on the way.
#[derive(Debug)]
struct Scan {
    dialect: Dialect,
    pos: usize,
    /// End of the last complete record.
    end: usize,
    records: usize,
    lines: u64,
    in_quotes: bool,
    /// Where the current quoted field's opening quote is, and the line breaks before it.
    quote_opened: usize,
    quote_opened_at_line: u64,
    /// The last quote that closed a quoted section of the current field.
    closed_at: Option<usize>,
    /// Where the current field starts.
    field_start: usize,
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
    fn new(dialect: Dialect) -> Scan {
        Scan {
            dialect,
            pos: 0,
            end: 0,
            records: 0,
            lines: 0,
            in_quotes: false,
            quote_opened: 0,
            quote_opened_at_line: 0,
            closed_at: None,
            field_start: 0,
            delimiters: 0,
            record_line: 0,
            problem: None,
            field_ends: Vec::new(),
        }
    }

    fn fail(&mut self, line: u64, fault: Fault) {
        self.problem = Some(Problem {
            record: self.records,
            line,
            field: self.delimiters,
            fault,
        });
    }

    /// Scans on from where it stopped, until `max_records` whole records, a structural problem, or the end
    /// of `buf`. With `expected`, every record must have that many fields.
    fn advance(&mut self, buf: &[u8], expected: Option<usize>, max_records: usize) {
        if self.records >= max_records || self.problem.is_some() {
            return;
        }
        let Dialect {
            delimiter,
            quote,
            literal_quotes,
            max_quoted_bytes,
        } = self.dialect;
        // Without a quote character, search for the delimiter twice: it is then never taken for a quote.
        let q = quote.unwrap_or(delimiter);
        for at in memchr::memchr3_iter(q, delimiter, b'\n', &buf[self.pos..]) {
            let at = self.pos + at;
            let b = buf[at];
            if Some(b) == quote {
                if self.in_quotes {
                    self.in_quotes = false;
                    self.closed_at = Some(at);
                    if at - self.quote_opened > max_quoted_bytes {
                        self.fail(self.quote_opened_at_line, Fault::QuotedTooLong);
                        return;
                    }
                } else if at == self.field_start {
                    self.in_quotes = true;
                    self.quote_opened = at;
                    self.quote_opened_at_line = self.lines;
                } else if self.closed_at == Some(at - 1) {
                    // `""` inside a quoted field: the field goes on.
                    self.in_quotes = true;
                } else if self.closed_at.is_some() {
                    self.fail(self.lines, Fault::TextAfterQuote);
                    return;
                } else if !literal_quotes {
                    self.fail(self.lines, Fault::QuoteInsideField);
                    return;
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
                if self.closed_at.is_some_and(|c| at != c + 1) {
                    self.fail(self.lines, Fault::TextAfterQuote);
                    return;
                }
                self.delimiters += 1;
                self.field_ends.push(at as u32);
                self.field_start = at + 1;
                self.closed_at = None;
            }
        }
        self.pos = buf.len();
        if self.in_quotes && buf.len() - self.quote_opened > max_quoted_bytes {
            self.fail(self.quote_opened_at_line, Fault::QuotedTooLong);
        }
    }

    /// Closes the record that ends at `end` (after its line break, if any).
    fn end_record(&mut self, end: usize, buf: &[u8], expected: Option<usize>) {
        let record = &buf[self.end..end];
        let body = record.strip_suffix(b"\n").unwrap_or(record);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let body_end = self.end + body.len();
        let fields = self.delimiters + 1;
        if self.closed_at.is_some_and(|c| c + 1 != body_end) {
            let line = self.lines - u64::from(record.ends_with(b"\n"));
            self.fail(line, Fault::TextAfterQuote);
        } else if body.is_empty() {
            self.fail(self.record_line, Fault::EmptyLine);
        } else if expected.is_some_and(|e| e != fields) {
            // A CR-only file reads as one long record: say so rather than count its fields.
            let ends = &self.field_ends[self.field_ends.len() - self.delimiters..];
            let quote = self.dialect.quote;
            match bare_carriage_return(buf, self.end, body_end, ends, quote) {
                Some((at, field)) => {
                    let before = memchr::memchr_iter(b'\n', &buf[self.end..at]).count();
                    self.problem = Some(Problem {
                        record: self.records,
                        line: self.record_line + before as u64,
                        field,
                        fault: Fault::BareCarriageReturn,
                    });
                }
                None => self.fail(self.record_line, Fault::FieldCount(fields)),
            }
        } else {
            self.records += 1;
            self.end = end;
            self.delimiters = 0;
            self.field_start = end;
            self.closed_at = None;
            self.record_line = self.lines;
            let last_field_end = if record.ends_with(b"\n") {
                end - 1
            } else {
                end
            };
            self.field_ends.push(last_field_end as u32);
        }
    }

    /// The first carriage return of the scanned records (`text`) that neither ends a line nor
    /// lies inside a quoted field.
    fn bare_carriage_return(&self, text: &[u8]) -> Option<Problem> {
        let per_record = (self.field_ends.len() / self.records.max(1)).max(1);
        let quote = self.dialect.quote;
        let (at, index) = bare_carriage_return(text, 0, text.len(), &self.field_ends, quote)?;
        Some(Problem {
            record: index / per_record,
            line: memchr::memchr_iter(b'\n', &text[..at]).count() as u64,
            field: index % per_record,
            fault: Fault::BareCarriageReturn,
        })
    }
}

/// The first carriage return in `text[from..to]` that neither ends a line (right before its line
/// feed, or at the end of the text) nor lies inside a quoted field, with the index of its field
/// in `ends` (the ends of the fields from `from` on).
fn bare_carriage_return(
    text: &[u8],
    from: usize,
    to: usize,
    ends: &[u32],
    quote: Option<u8>,
) -> Option<(usize, usize)> {
    memchr::memchr_iter(b'\r', &text[from..to]).find_map(|at| {
        let at = from + at;
        if matches!(text.get(at + 1), Some(b'\n') | None) {
            return None;
        }
        let index = ends.partition_point(|&e| (e as usize) < at);
        let start = match index {
            0 => from,
            i => ends[i - 1] as usize + 1,
        };
        if quote.is_some_and(|q| text[start] == q) {
            return None;
        }
        Some((at, index))
    })
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

/// Whether two column names are the same once both are in Unicode compatibility form (NFKC)
/// without invisible characters: a header written with decomposed accents or full-width letters.
fn same_name(a: &str, b: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    let visible = |s: &str| -> String {
        s.nfkc()
            .filter(|c| !matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}'))
            .collect()
    };
    a != b && visible(a) == visible(b)
}

/// Splits one record (its text without the line end) into unquoted, trimmed fields (for the
/// header), by the same scan as the data.
fn split_record(line: &str, dialect: Dialect) -> Vec<String> {
    let mut scan = Scan::new(dialect.unbounded());
    scan.advance(line.as_bytes(), None, 1);
    if scan.records == 0 {
        scan.end_record(line.len(), line.as_bytes(), None);
    }
    let mut start = 0;
    scan.field_ends
        .iter()
        .map(|&end| {
            let field = &line[start..end as usize];
            start = end as usize + 1;
            let field = match dialect.quote.map(char::from) {
                Some(q) if field.len() >= 2 && field.starts_with(q) && field.ends_with(q) => {
                    crate::source::csv_columns::unquote(&field[1..field.len() - 1], q).into_owned()
                }
                _ => field.to_string(),
            };
            field.trim().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permit::ColumnType;

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
                p.with_separator(source.dialect.delimiter)
                    .with_quote_char(source.dialect.quote)
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
                delimiter,
                encoding,
                null_values,
                ..SourceSpec::csv(vec![path.clone()])
            };
            // Declared out of file order, one column left out.
            let columns: Vec<SourceColumn> = ["c", "a"]
                .iter()
                .map(|n| SourceColumn {
                    name: n.to_string(),
                    column_type: ColumnType::String,
                    format: String::new(),
                    null_values: Vec::new(),
                })
                .collect();
            let mut source = CsvSource::open(&spec, &path, &columns, 7).unwrap();
            let mut batches = 0;
            while let Some(batch) = source.next_batch().unwrap() {
                let expected =
                    polars_columns(&source, batch.origin.text.as_ref().unwrap().0.as_bytes());
                assert_eq!(batch.df, expected, "seed {seed}, batch {batches}:\n{text}");
                batches += 1;
            }
            assert_eq!(batches, rows.div_ceil(7), "seed {seed}");
        }
    }

    const STRICT: Dialect = Dialect {
        delimiter: b',',
        quote: Some(b'"'),
        literal_quotes: false,
        max_quoted_bytes: 1 << 20,
    };

    fn scan(text: &[u8], dialect: Dialect, fields: usize) -> Scan {
        let mut s = Scan::new(dialect);
        s.advance(text, Some(fields), usize::MAX);
        if s.problem.is_none() && s.end < text.len() && !s.in_quotes {
            s.end_record(text.len(), text, Some(fields));
        }
        s
    }

    fn fault(text: &[u8], dialect: Dialect, fields: usize) -> Option<(usize, u64, usize, Fault)> {
        let s = scan(text, dialect, fields);
        let bare = s.bare_carriage_return(&text[..s.end]);
        let p = s.problem.or(bare)?;
        Some((p.record, p.line, p.field, p.fault))
    }

    #[test]
    fn header_split_handles_quotes() {
        let semicolon = Dialect {
            delimiter: b';',
            ..STRICT
        };
        assert_eq!(
            split_record(r#"a;"b;c";"d""e""#, semicolon),
            vec!["a", "b;c", "d\"e"]
        );
        let bare = Dialect {
            quote: None,
            ..STRICT
        };
        assert_eq!(split_record("x,y", bare), vec!["x", "y"]);
        let literal = Dialect {
            literal_quotes: true,
            ..STRICT
        };
        assert_eq!(split_record(r#"a"b,"c""#, literal), vec!["a\"b", "c"]);
    }

    #[test]
    fn record_lines_skip_embedded_line_breaks() {
        let text = b"a,\"x\ny\"\nb,c\nd,e\n";
        let lines: Vec<u64> = (0..3).map(|r| record_start_line(text, STRICT, r)).collect();
        assert_eq!(lines, vec![0, 2, 3]);
        // A literal quote inside a field opens nothing: the next record is on the next line.
        let literal = Dialect {
            literal_quotes: true,
            ..STRICT
        };
        let text = b"a,U0\"9\nb,U\"10\nc,d\n";
        let lines: Vec<u64> = (0..3)
            .map(|r| record_start_line(text, literal, r))
            .collect();
        assert_eq!(lines, vec![0, 1, 2]);
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_never_merges_records() {
        // The leak of issue 18: the quote of `U0"9` opened a section that swallowed the next
        // record (and its NIR) into a kept column.
        let text = b"185057800608491,U0\"9\n255081416802538,U\"10\n";
        assert_eq!(
            fault(text, STRICT, 2),
            Some((0, 0, 1, Fault::QuoteInsideField))
        );
        let literal = Dialect {
            literal_quotes: true,
            ..STRICT
        };
        let s = scan(text, literal, 2);
        assert_eq!((s.records, s.problem), (2, None));
        assert_eq!(s.field_ends, vec![15, 20, 36, 41]);
        // A quote that opens a field is a quote in either mode.
        let s = scan(b"a,\"x,\ny\"\n", literal, 2);
        assert_eq!((s.records, s.lines, s.problem), (1, 2, None));
    }

    #[test]
    fn a_closing_quote_is_followed_by_a_delimiter_or_the_line_end() {
        for text in [
            &b"a,\"x\"y\n"[..],
            b"\"x\" ,b\n",
            b"a,\"x\"\"\"y\"z\n",
            b"a,\"x\" \r\n",
            b"a,\"x\"y",
        ] {
            let (record, _, field, fault) = fault(text, STRICT, 2).expect("refused");
            assert_eq!(
                (record, fault),
                (0, Fault::TextAfterQuote),
                "{}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(field, usize::from(text[0] != b'"'));
        }
        for text in [
            &b"a,\"x\"\n"[..],
            b"\"x\",b\r\n",
            b"a,\"x\"\"y\"\"\"\n",
            b"a,\"\"",
            b"a,\"x\"\r",
        ] {
            assert_eq!(
                fault(text, STRICT, 2),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn a_quoted_field_is_bounded() {
        let small = Dialect {
            max_quoted_bytes: 10,
            ..STRICT
        };
        let within = b"a,\"123456789\"\n";
        assert_eq!(fault(within, small, 2), None);
        let closed_late = b"x,y\na,\"1234567890\nb\"\n";
        assert_eq!(
            fault(closed_late, small, 2),
            Some((1, 1, 1, Fault::QuotedTooLong))
        );
        // Never closed: refused as soon as the buffer holds more than the bound.
        let mut s = Scan::new(small);
        s.advance(b"x,y\na,\"12345", Some(2), usize::MAX);
        assert_eq!(s.problem, None);
        s.advance(b"x,y\na,\"123456789012", Some(2), usize::MAX);
        assert_eq!(
            s.problem.map(|p| (p.record, p.line, p.fault)),
            Some((1, 1, Fault::QuotedTooLong))
        );
    }

    #[test]
    fn a_carriage_return_ends_a_line_only_before_its_line_feed() {
        // CR-only line ends: refused where the first bare CR is, never read as one record.
        let mac = b"185057800608491,1985-05-12\r255081416802538,1955-08-01\r";
        assert_eq!(
            fault(mac, STRICT, 2),
            Some((0, 0, 1, Fault::BareCarriageReturn))
        );
        let mut s = Scan::new(STRICT);
        s.advance(mac, None, 1);
        s.end_record(mac.len(), mac, None);
        assert_eq!(
            s.bare_carriage_return(mac)
                .map(|p| (p.record, p.field, p.fault)),
            Some((0, 1, Fault::BareCarriageReturn))
        );
        let one_field = b"a\rb\nc\n";
        assert_eq!(
            fault(one_field, STRICT, 1),
            Some((0, 0, 0, Fault::BareCarriageReturn))
        );
        assert_eq!(
            fault(b"a,b\nc,d\re\n", STRICT, 2),
            Some((1, 1, 1, Fault::BareCarriageReturn))
        );
        // Inside quotes a CR is text; before the line feed it ends the line.
        assert_eq!(fault(b"a,\"b\rc\"\r\nd,e\r\n", STRICT, 2), None);
    }

    #[test]
    fn scan_stops_at_record_boundaries_and_counts_fields() {
        let buf = b"a,\"1\n,2\"\nb,3\r\nc,4";
        let mut s = Scan::new(STRICT);
        s.advance(buf, Some(2), 2);
        assert_eq!((s.records, s.end, s.lines, s.problem), (2, 14, 3, None));
        let mut s = Scan::new(STRICT);
        s.advance(buf, Some(2), 10);
        assert_eq!((s.records, s.end, s.pos), (2, 14, buf.len()));
        let bare = Dialect {
            quote: None,
            ..STRICT
        };
        let mut s = Scan::new(bare);
        s.advance(b"a,b\nc\n\nd,e\n", Some(2), 10);
        assert_eq!(
            s.problem,
            Some(Problem {
                record: 1,
                line: 1,
                field: 0,
                fault: Fault::FieldCount(1)
            })
        );
        let mut s = Scan::new(bare);
        s.advance(b"a,b\n\r\nd,e\n", Some(2), 10);
        assert_eq!(
            s.problem,
            Some(Problem {
                record: 1,
                line: 1,
                field: 0,
                fault: Fault::EmptyLine
            })
        );
    }
}
