//! The CSV reader against an independent parser (the `csv` crate) on any bytes: a file with a
//! three-column header and the fuzzer's bytes as its records, read in both quote modes. Either the
//! reader refuses the file with an error, or it gives exactly the records the `csv` crate gives:
//! never different records without a word (a merged record would carry an identifier into
//! another column).
//!
//! Where the two disagree by design, the reader errs: it refuses empty lines, bare carriage
//! returns, text after a closing quote, invalid UTF-8 and NUL bytes, and (in the default mode) a
//! quote inside an unquoted field, all of which the `csv` crate reads one way or another.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use ehds_prep::permit::{QuoteInField, SourceSpec};
use libfuzzer_sys::fuzz_target;

fn workspace() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ehds-prep-fuzz-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

const COLUMNS: [&str; 3] = ["a", "b", "c"];

/// The records as the `csv` crate reads them (header excluded), or `None` if it refuses them.
fn independent(text: &[u8]) -> Option<Vec<Vec<Vec<u8>>>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text);
    reader
        .byte_records()
        .map(|r| r.ok().map(|r| r.iter().map(<[u8]>::to_vec).collect()))
        .collect()
}

/// The records as the engine's reader reads them, or `None` if it refuses the file.
fn ours(path: &PathBuf, mode: QuoteInField, max_quoted: usize) -> Option<Vec<Vec<Vec<u8>>>> {
    let spec = SourceSpec {
        null_values: Vec::new(),
        quote_in_field: mode,
        max_quoted_field_bytes: max_quoted,
        ..SourceSpec::csv(vec![path.clone()])
    };
    let names: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut rows: Vec<Vec<Vec<u8>>> = Vec::new();
    let input = ehds_prep::source::Input::files(&spec, &spec.files);
    ehds_prep::source::read_text(input, &names, 5, |df| {
        let columns: Vec<Vec<Vec<u8>>> = df
            .columns()
            .iter()
            .map(|c| {
                c.str()
                    .expect("text columns")
                    .iter()
                    .map(|v| v.expect("no null values are declared").as_bytes().to_vec())
                    .collect()
            })
            .collect();
        for r in 0..df.height() {
            rows.push(columns.iter().map(|c| c[r].clone()).collect());
        }
        Ok(())
    })
    .ok()?;
    Some(rows)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mode_literal = mode & 1 == 1;
    // Small bounds sometimes, so that over-long quoted fields are reached.
    let max_quoted = if mode & 2 == 2 { 16 } else { 1 << 20 };
    let mut text = b"a,b,c\n".to_vec();
    text.extend_from_slice(body);
    let path = workspace().join("input.csv");
    std::fs::write(&path, &text).unwrap();
    let mode = if mode_literal {
        QuoteInField::Literal
    } else {
        QuoteInField::Error
    };
    if let Some(read) = ours(&path, mode, max_quoted) {
        let expected = independent(&text);
        assert_eq!(
            Some(&read),
            expected.as_ref(),
            "the reader gave other records than the csv crate for {:?}",
            String::from_utf8_lossy(&text)
        );
    }
});
