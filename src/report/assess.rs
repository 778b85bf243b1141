//! Risk assessment of any extract or delivery, without a permit (`assess --input`): the equivalence
//! classes of the named quasi-identifiers as the file holds them, counted in persons when a person
//! column is named, with prosecutor risk, and journalist and marketer risk against a population file.

use std::path::{Path, PathBuf};

use foldhash::HashMap;
use polars::prelude::{Column, PolarsResult, StringChunked};

use crate::error::{Error, Result};
use crate::permit::{SourceFormat, SourceSpec, TextEncoding};
use crate::privacy::risk::{ClassSize, RiskSummary, TextClassCounter};
use crate::source;

pub struct AssessSpec {
    pub input: PathBuf,
    pub quasi_identifiers: Vec<String>,
    pub person: Option<String>,
    pub k: Option<u32>,
    pub risk_threshold: f64,
    /// A file of the whole population (same quasi-identifier columns), for journalist and marketer risk.
    pub population: Option<PathBuf>,
    /// For CSV files.
    pub delimiter: char,
    pub encoding: TextEncoding,
}

/// Reads `path` (Parquet by its extension, CSV otherwise) and counts the classes of `columns[..q]`,
/// with `person` among the columns when given.
fn count(spec: &AssessSpec, path: &Path, person: Option<&str>) -> Result<TextClassCounter> {
    let q = spec.quasi_identifiers.len();
    let mut names = spec.quasi_identifiers.clone();
    names.extend(person.map(str::to_string));
    let mut counter = TextClassCounter::default();
    let add = |df: polars::prelude::DataFrame| -> Result<()> {
        let columns: Vec<&StringChunked> = df
            .columns()
            .iter()
            .map(Column::str)
            .collect::<PolarsResult<_>>()?;
        counter.add(&columns[..q], columns.get(q).copied(), None);
        Ok(())
    };
    let parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let source = SourceSpec {
        format: if parquet {
            SourceFormat::Parquet
        } else {
            SourceFormat::Csv
        },
        delimiter: spec.delimiter,
        encoding: spec.encoding,
        ..SourceSpec::csv(vec![path.to_path_buf()])
    };
    source::read_text(
        source::Input::files(&source, &source.files),
        &names,
        1 << 20,
        add,
    )?;
    Ok(counter)
}

/// The risk figures of the file's classes.
pub fn assess_file(spec: &AssessSpec) -> Result<RiskSummary> {
    let named = spec.quasi_identifiers.iter().chain(&spec.person);
    let mut seen = std::collections::HashSet::new();
    for name in named {
        if !seen.insert(name) {
            return Err(Error::Usage(format!(
                "column `{name}` is named twice (quasi-identifiers and the person column are \
                 distinct columns)"
            )));
        }
    }
    if spec.quasi_identifiers.is_empty() {
        return Err(Error::Usage("name at least one quasi-identifier".into()));
    }
    let sample = count(spec, &spec.input, spec.person.as_deref())?;
    let population = spec
        .population
        .as_ref()
        .map(|p| count(spec, p, None))
        .transpose()?;
    let population: Option<HashMap<Vec<Option<&str>>, u64>> = population
        .as_ref()
        .map(|p| p.classes().map(|(key, c)| (key, c.records)).collect());
    let classes = sample.classes().map(|(key, c)| ClassSize {
        records: c.records,
        size: if spec.person.is_some() {
            c.size_in_persons()
        } else {
            c.records
        },
        population: population
            .as_ref()
            .map(|p| p.get(&key).copied().unwrap_or(0)),
    });
    Ok(RiskSummary::of(
        classes,
        spec.person.is_some(),
        spec.k.map(u64::from),
        spec.risk_threshold,
    ))
}
