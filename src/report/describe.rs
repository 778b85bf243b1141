//! Catalogue descriptions (`describe`): a holder dataset described in HealthDCAT-AP, the EHDS profile
//! of DCAT-AP, as JSON-LD. People write the catalogue entry in the permit's `[datasets.catalogue]`;
//! the figures are measured from the extract in one streaming pass: records, unique individuals,
//! temporal coverage, typical age range, and per column W3C DQV quality measurements (completeness,
//! validity against the column's declared type or identifier rule, date ranges, uniqueness of the
//! person identifier).
//!
//! The description is meant for a public catalogue, and public statistics are disclosure too, so
//! it publishes no value of the data and no figure a few people decide: nothing at all (no count,
//! no range, no share) for a dataset of fewer than `small_counts` persons (default 10; records
//! without a person column); never a minimum or maximum, but ranges whose bounds have at least
//! `small_counts` records beyond them (the 1st and 99th percentiles of dates, the 5th and 95th of
//! ages, by nearest rank, and never nearer the ends than the `small_counts`-th record), widened to
//! whole years; identifiers are only counted.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use chrono::Datelike;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::kernels::identifier::{Checked, IdentifierRule, PART_SEPARATOR};
use crate::kernels::values;
use crate::permit::{CatalogueSpec, ColumnType, DatasetSpec, Permit, SourceFormat};
use crate::report::vocabulary::{self, Concept};
use crate::source;

/// What one column of the extract looks like, measured.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ColumnProfile {
    pub name: String,
    /// Non-missing values.
    pub present: u64,
    /// Present values that fail the column's type or identifier rule.
    pub invalid: u64,
    /// Valid days (dates and datetimes, days since 1970-01-01) and their records.
    pub dates: BTreeMap<i32, u64>,
}

/// The measured figures of a dataset.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Profile {
    pub records: u64,
    pub columns: Vec<ColumnProfile>,
    /// Distinct valid person identifiers, and valid identifiers in all.
    pub persons: Option<(u64, u64)>,
    /// The days of the temporal columns and their records.
    pub temporal: BTreeMap<i32, u64>,
    /// The records' ages in whole years, and their records.
    pub ages: BTreeMap<i32, u64>,
}

impl Profile {
    /// Persons (records, without a person column): what the small-count rule counts.
    pub fn people(&self) -> u64 {
        self.persons.map_or(self.records, |(distinct, _)| distinct)
    }
}

/// How a column's values are checked.
enum Validator {
    Text,
    Identifier(IdentifierRule),
    Integer,
    /// A float with its decimal separator.
    Float(String),
    Boolean,
    Date(String),
    Datetime(String),
    /// A year or a year and month, read as its first day.
    Partial(fn(&str) -> Option<i32>),
}

impl Validator {
    /// Whether `s` is valid, and its day for dates and datetimes; `None` for an identifier that
    /// stands for none (a placeholder).
    fn check(&self, s: &str, normal: &mut String) -> Option<(bool, Option<i32>)> {
        let s = s.trim();
        Some(match self {
            Validator::Text => (true, None),
            Validator::Identifier(rule) => match rule.check_into(Some(s), normal) {
                Checked::Missing => return None,
                checked => (checked == Checked::Valid, None),
            },
            Validator::Integer => (s.parse::<i64>().is_ok(), None),
            Validator::Float(separator) => (values::float_parser(separator)(s).is_some(), None),
            Validator::Boolean => (values::parse_boolean(s).is_some(), None),
            Validator::Date(format) => match values::parse_date(s, format) {
                Some(d) if values::day_in_range(d) => (true, Some(d)),
                _ => (false, None),
            },
            Validator::Datetime(format) => match values::parse_datetime(s, format) {
                Some(t) if values::day_in_range(values::datetime_day(t)) => {
                    (true, Some(values::datetime_day(t)))
                }
                _ => (false, None),
            },
            Validator::Partial(parse) => match parse(s) {
                Some(d) => (true, Some(d)),
                None => (false, None),
            },
        })
    }
}

/// A dataset's catalogue entry, checked: its dataset, the entry, and the entry's dataset type and
/// health categories resolved in their vocabularies.
struct Entry<'a> {
    dataset: &'a DatasetSpec,
    catalogue: &'a CatalogueSpec,
    dataset_type: Concept,
    health_categories: Vec<Concept>,
}

fn catalogue_of<'a>(permit: &'a Permit, name: &str) -> Result<Entry<'a>> {
    let at = |message: String| Error::Permit {
        file: permit.path.clone(),
        at: format!("datasets.{name}"),
        message,
    };
    let d = permit
        .spec
        .datasets
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| {
            at(format!(
                "no dataset `{name}` in this permit (it has {})",
                permit
                    .spec
                    .datasets
                    .iter()
                    .map(|d| format!("`{}`", d.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    if d.source.format == SourceFormat::Linked {
        return Err(at(
            "a linked person table is not a holder dataset: describe the holders' datasets".into(),
        ));
    }
    let c = d.catalogue.as_ref().ok_or_else(|| {
        at("has no [datasets.catalogue] section: `describe` needs its identifier, title, description, \
            keywords, contact_email and access_url"
            .into())
    })?;
    let column_of = |field: &str, column: &str, types: &[ColumnType]| -> Result<()> {
        match d.columns.iter().find(|x| x.name == column) {
            Some(x) if types.contains(&x.column_type) => Ok(()),
            Some(_) => Err(at(format!(
                "catalogue.{field}: column `{column}` is not a date or datetime"
            ))),
            None => Err(at(format!(
                "catalogue.{field}: no declared column `{column}`"
            ))),
        }
    };
    let dates = [ColumnType::Date, ColumnType::Datetime];
    for t in c.temporal.iter().flatten() {
        column_of("temporal", t, &dates)?;
    }
    if let Some(b) = &c.birth_date {
        column_of("birth_date", b, &dates)?;
    }
    if let Some(a) = &c.age_at
        && chrono::NaiveDate::parse_from_str(a, "%Y-%m-%d").is_err()
    {
        column_of("age_at", a, &dates)?;
    }
    if c.keywords.iter().all(|k| k.trim().is_empty()) {
        return Err(at("catalogue.keywords: give at least one keyword".into()));
    }
    if c.provenance.trim().is_empty() {
        return Err(at(
            "catalogue.provenance: say how the data came to be (HealthDCAT-AP requires it)".into(),
        ));
    }
    let (dataset_type, health_categories) = vocabularies(c).map_err(at)?;
    Ok(Entry {
        dataset: d,
        catalogue: c,
        dataset_type,
        health_categories,
    })
}

/// The entry's dataset type and health categories, resolved in their vocabularies; an error says
/// which field names what and what it may name.
fn vocabularies(c: &CatalogueSpec) -> std::result::Result<(Concept, Vec<Concept>), String> {
    let dataset_type = vocabulary::dataset_type(&c.dataset_type)
        .map_err(|e| format!("catalogue.dataset_type: {e}"))?;
    if c.health_categories.is_empty() {
        return Err(
            "catalogue.health_categories: give at least one health category \
                    (HealthDCAT-AP requires it), such as EHRS for data from electronic health \
                    records"
                .into(),
        );
    }
    let categories = c
        .health_categories
        .iter()
        .map(|h| vocabulary::health_category(h))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("catalogue.health_categories: {e}"))?;
    Ok((dataset_type, categories))
}

/// How each column's values are checked and read (dates into days, identifiers normalised).
fn validators(d: &DatasetSpec) -> Vec<Validator> {
    let source = &d.source;
    d.columns
        .iter()
        .map(|col| {
            let format = col.format.clone();
            match col.column_type {
                ColumnType::Date => {
                    Validator::Date(format.unwrap_or_else(|| source.date_format.clone()))
                }
                ColumnType::Datetime => {
                    Validator::Datetime(format.unwrap_or_else(|| source.datetime_format.clone()))
                }
                ColumnType::Year => Validator::Partial(values::parse_year),
                ColumnType::YearMonth => Validator::Partial(values::parse_year_month),
                ColumnType::Integer => Validator::Integer,
                ColumnType::Float => {
                    Validator::Float(col.decimal.unwrap_or(source.decimal).to_string())
                }
                ColumnType::Boolean => Validator::Boolean,
                ColumnType::String | ColumnType::Text => {
                    let person = d.person_columns().contains(&col.name.as_str());
                    if col.identifier.is_some() || person {
                        Validator::Identifier(crate::plan::column_rule(col))
                    } else {
                        Validator::Text
                    }
                }
            }
        })
        .collect()
}

/// The columns whose dates make the temporal coverage: those the catalogue names, or every date
/// column but the birth date.
fn temporal_columns(d: &DatasetSpec, c: &CatalogueSpec) -> Vec<usize> {
    let position = |column: &str| d.columns.iter().position(|x| x.name == column);
    match &c.temporal {
        Some(columns) => columns.iter().filter_map(|t| position(t)).collect(),
        None => d
            .columns
            .iter()
            .enumerate()
            .filter(|(_, x)| {
                matches!(x.column_type, ColumnType::Date | ColumnType::Datetime)
                    && c.birth_date.as_deref() != Some(x.name.as_str())
            })
            .map(|(i, _)| i)
            .collect(),
    }
}

/// Measures the dataset `name` of the permit in one pass over its files.
pub fn profile(permit: &Permit, name: &str) -> Result<Profile> {
    let Entry {
        dataset: d,
        catalogue: c,
        ..
    } = catalogue_of(permit, name)?;
    let source = &d.source;
    let validators = validators(d);
    let position = |column: &str| d.columns.iter().position(|x| x.name == column);
    // The person's columns (a composite's parts): a row names a person when all are valid.
    let person: Vec<usize> = d
        .person_columns()
        .into_iter()
        .filter_map(position)
        .collect();
    let mut person_parts: Vec<Option<String>> = vec![None; person.len()];
    let temporal = temporal_columns(d, c);
    let birth = c.birth_date.as_deref().and_then(position);
    let age_column = c.age_at.as_deref().and_then(position);
    let mut profile = Profile {
        columns: d
            .columns
            .iter()
            .map(|x| ColumnProfile {
                name: x.name.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    // Persons are counted through a 128-bit hash of the normalised identifier: never kept as text.
    let hasher = foldhash::quality::FixedState::with_seed(0x65686473);
    let second = foldhash::quality::FixedState::with_seed(0x70726570);
    let mut persons: foldhash::HashSet<u128> = Default::default();
    let mut valid_ids = 0u64;
    // Ages at a column, or birth days to take at the end of the coverage once it is known.
    let mut births: BTreeMap<i32, u64> = BTreeMap::new();
    let mut normal = String::new();
    let mut days_of_row = vec![None; d.columns.len()];
    let each = |df: polars::prelude::DataFrame| -> Result<()> {
        let rows = df.height();
        // A profile attribute is not in the source: it holds no value here.
        let mut read = source::str_values(df.columns())?.into_iter();
        let columns: Vec<Vec<Option<&str>>> = d
            .columns
            .iter()
            .map(|x| match x.profile {
                Some(_) => vec![None; rows],
                None => read.next().unwrap_or_default(),
            })
            .collect();
        profile.records += rows as u64;
        for row in 0..rows {
            person_parts.iter_mut().for_each(|p| *p = None);
            for (j, column) in columns.iter().enumerate() {
                days_of_row[j] = None;
                let Some(value) = column[row].filter(|v| !v.trim().is_empty()) else {
                    continue;
                };
                // What the run reads as missing holds no value here either: a sentinel, a value
                // its return code disowns, a placeholder identifier.
                let spec = &d.columns[j];
                let sentinel = spec.null_values.iter().flatten().any(|n| n == value);
                let disowned = spec.valid_when.iter().flatten().any(|w| {
                    let at = position(&w.column).expect("validated: declared column");
                    columns[at][row].is_none_or(|v| !w.values.iter().any(|x| x.trim() == v.trim()))
                });
                let Some((valid, day)) = (!sentinel && !disowned)
                    .then(|| validators[j].check(value, &mut normal))
                    .flatten()
                else {
                    continue;
                };
                let p = &mut profile.columns[j];
                p.present += 1;
                if !valid {
                    p.invalid += 1;
                    continue;
                }
                if let Some(day) = day {
                    days_of_row[j] = Some(day);
                    *p.dates.entry(day).or_default() += 1;
                }
                if let Some(part) = person.iter().position(|&p| p == j) {
                    person_parts[part] = Some(normal.clone());
                }
            }
            if !person.is_empty() && person_parts.iter().all(Option::is_some) {
                valid_ids += 1;
                let joined = person_parts.iter().flatten().map(String::as_str);
                let joined: Vec<&str> = joined.collect();
                let bytes = joined.join(&PART_SEPARATOR.to_string());
                let bytes = bytes.as_bytes();
                persons.insert(
                    (hasher.hash_one(bytes) as u128) << 64 | second.hash_one(bytes) as u128,
                );
            }
            for &t in &temporal {
                if let Some(day) = days_of_row[t] {
                    *profile.temporal.entry(day).or_default() += 1;
                }
            }
            if let Some(born) = birth.and_then(|b| days_of_row[b]) {
                match age_column {
                    Some(a) => {
                        if let Some(at) = days_of_row[a] {
                            *profile
                                .ages
                                .entry(values::age_in_years(born, at))
                                .or_default() += 1;
                        }
                    }
                    None => *births.entry(born).or_default() += 1,
                }
            }
        }
        Ok(())
    };
    let names: Vec<String> = d
        .columns
        .iter()
        .filter(|x| x.profile.is_none())
        .map(|x| x.name.clone())
        .collect();
    let files: Vec<_> = source.files.iter().map(|f| permit.resolve(f)).collect();
    let database = (source.format == SourceFormat::Postgres)
        .then(|| source::postgres::Database::open(source, |p| permit.resolve(p)))
        .transpose()?;
    let input = source::Input {
        spec: source,
        files: &files,
        database: database.as_ref(),
    };
    source::read_text(input, &names, permit.spec.output.batch_rows, each)?;
    if !person.is_empty() {
        profile.persons = Some((persons.len() as u64, valid_ids));
    }
    if age_column.is_none() && !births.is_empty() {
        let fixed = c
            .age_at
            .as_deref()
            .and_then(|a| chrono::NaiveDate::parse_from_str(a, "%Y-%m-%d").ok())
            .map(values::date_to_days);
        // The end of the coverage, to take ages at (not published as such).
        let end = profile.temporal.keys().next_back().copied();
        if let Some(at) = fixed.or(end) {
            for (&born, &n) in &births {
                *profile
                    .ages
                    .entry(values::age_in_years(born, at))
                    .or_default() += n;
            }
        }
    }
    Ok(profile)
}

/// A range of a histogram that no few records decide: its `percent`-th and `(100 − percent)`-th
/// percentiles by nearest rank, each with at least `small` records beyond it (the bound is the
/// `small`-th record from its end when the percentile is nearer). `None` for fewer than `2 × small`
/// records.
fn bounds(histogram: &BTreeMap<i32, u64>, percent: u64, small: u64) -> Option<(i32, i32)> {
    let total: u64 = histogram.values().sum();
    let small = small.max(1);
    if total < 2 * small {
        return None;
    }
    let rank = (total * percent).div_ceil(100).max(small);
    let at = |wanted: u64| {
        let mut seen = 0;
        for (&value, &n) in histogram {
            seen += n;
            if seen >= wanted {
                return value;
            }
        }
        *histogram.keys().next_back().expect("not empty")
    };
    Some((at(rank), at(total - rank + 1)))
}

/// The first day of the year of `day`, and the last day of the year of another.
fn year_start(day: i32) -> String {
    format!("{:04}-01-01", values::days_to_date(day).year())
}

fn year_end(day: i32) -> String {
    format!("{:04}-12-31", values::days_to_date(day).year())
}

fn xsd_type(t: ColumnType) -> &'static str {
    match t {
        ColumnType::String | ColumnType::Text => "string",
        ColumnType::Integer => "integer",
        ColumnType::Float => "double",
        ColumnType::Date => "date",
        ColumnType::Datetime => "dateTime",
        ColumnType::Year => "gYear",
        ColumnType::YearMonth => "gYearMonth",
        ColumnType::Boolean => "boolean",
    }
}

/// `name` as an IRI fragment: unreserved characters kept, the rest percent-encoded.
fn fragment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The quality metrics a description measures, defined in the document itself.
const METRICS: [(&str, &str, &str); 5] = [
    (
        "completeness",
        "Share of the column's records that hold a value (not empty, not a declared null value).",
        "completeness",
    ),
    (
        "validity",
        "Share of the column's values that pass its declared type's parser or its identifier \
         validator (a French NIR's control key, or the permit's pattern); 1 minus the share failing.",
        "accuracy",
    ),
    (
        "uniqueness",
        "Distinct valid person identifiers divided by valid person identifiers: 1 when every record \
         is a different person.",
        "uniqueness",
    ),
    (
        "date-range-start",
        "First day of the year of the 1st percentile of the column's valid dates (nearest rank, \
         and never before the small-count threshold's record): no single person's date decides it.",
        "consistency",
    ),
    (
        "date-range-end",
        "Last day of the year of the 99th percentile of the column's valid dates (nearest rank, and \
         never after the small-count threshold's record from the end).",
        "consistency",
    ),
];

const METRIC_BASE: &str = "urn:ehds-prep:quality-metric:";
const DIMENSION_BASE: &str = "urn:ehds-prep:quality-dimension:";

fn context() -> Value {
    json!({
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "dcatap": "http://data.europa.eu/r5r/",
        "healthdcatap": "http://healthdataportal.eu/ns/health#",
        "dqv": "http://www.w3.org/ns/dqv#",
        "foaf": "http://xmlns.com/foaf/0.1/",
        "vcard": "http://www.w3.org/2006/vcard/ns#",
        "csvw": "http://www.w3.org/ns/csvw#",
        "cv": "http://data.europa.eu/m8g/",
        "eli": "http://data.europa.eu/eli/ontology#",
        "skos": "http://www.w3.org/2004/02/skos/core#",
        "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
        "xsd": "http://www.w3.org/2001/XMLSchema#"
    })
}

fn typed(value: impl Into<Value>, xsd: &str) -> Value {
    json!({ "@value": value.into(), "@type": format!("xsd:{xsd}") })
}

fn iri(i: &str) -> Value {
    json!({ "@id": i })
}

/// The JSON-LD description of dataset `name`, from its catalogue entry and its measured profile.
/// The data quality measurements of the catalogue entry: completeness, validity and date range
/// per column, uniqueness of the person column.
fn measurements(
    d: &DatasetSpec,
    profile: &Profile,
    small: u64,
    column_iri: &impl Fn(&str) -> String,
) -> Vec<Value> {
    let share = |n: u64, of: u64| if of == 0 { 1.0 } else { n as f64 / of as f64 };
    let mut measurements = Vec::new();
    let mut measure = |metric: &str, column: &str, value: Value| {
        measurements.push(json!({
            "@type": "dqv:QualityMeasurement",
            "dqv:isMeasurementOf": iri(&format!("{METRIC_BASE}{metric}")),
            "dqv:computedOn": iri(&column_iri(column)),
            "dqv:value": value,
        }));
    };
    for p in &profile.columns {
        measure(
            "completeness",
            &p.name,
            typed(share(p.present, profile.records), "double"),
        );
        measure(
            "validity",
            &p.name,
            typed(share(p.present - p.invalid, p.present), "double"),
        );
        if let Some((lo, hi)) = bounds(&p.dates, 1, small) {
            measure("date-range-start", &p.name, typed(year_start(lo), "date"));
            measure("date-range-end", &p.name, typed(year_end(hi), "date"));
        }
    }
    // A measurement describes a column: a composite person has none of its own.
    let person = d.person.as_ref().filter(|_| d.person_composite().is_none());
    if let (Some(person), Some((distinct, valid))) = (person, profile.persons) {
        measure(
            "uniqueness",
            person,
            typed(share(distinct, valid), "double"),
        );
    }
    measurements
}

/// The dataset's variables as HealthDCAT-AP Release 8 describes them: a CSVW table group on the
/// dataset (`healthdcatap:hasVariables`), one table, one column per declared column with its
/// name, title, datatype and description. A coding system outside the Release 8 vocabulary is
/// named in the column's description.
fn variables(
    d: &DatasetSpec,
    c: &CatalogueSpec,
    id: &str,
    column_iri: &impl Fn(&str) -> String,
) -> Value {
    let columns: Vec<Value> = d
        .columns
        .iter()
        .map(|x| {
            let mut description = x
                .description
                .clone()
                .unwrap_or_else(|| format!("{} column `{}`", xsd_type(x.column_type), x.name));
            if let Some(coding) = x.coding
                && vocabulary::coding_system(coding).is_none()
            {
                description.push_str(&format!(" (coded in {})", coding.name()));
            }
            json!({
                "@id": column_iri(&x.name),
                "@type": "csvw:Column",
                "csvw:name": x.name,
                "csvw:title": x.name,
                "csvw:datatype": xsd_type(x.column_type),
                "dct:description": description,
            })
        })
        .collect();
    json!({
        "@id": format!("{id}#variables"),
        "@type": "csvw:TableGroup",
        "dct:title": format!("Variables of {}", c.title),
        "csvw:table": [{
            "@id": format!("{id}#table"),
            "@type": "csvw:Table",
            "dct:title": d.name,
            "csvw:column": columns,
        }],
    })
}

/// An agent (publisher, access body) with the one contact point HealthDCAT-AP asks of it.
fn agent(name: &str, email: Option<&str>, page: Option<&str>) -> Value {
    let mut contact = json!({ "@type": "cv:ContactPoint" });
    if let Some(email) = email {
        contact["cv:email"] = json!(email);
    }
    if let Some(page) = page {
        contact["cv:contactPage"] = iri(page);
    }
    json!({ "@type": "foaf:Agent", "foaf:name": name, "cv:contactPoint": contact })
}

/// The class DCAT-AP gives a distribution's format.
const MEDIA_TYPE: Option<&str> = Some("dct:MediaTypeOrExtent");

pub fn describe(permit: &Permit, name: &str, profile: &Profile) -> Result<Value> {
    let Entry {
        dataset: d,
        catalogue: c,
        dataset_type,
        health_categories: categories,
    } = catalogue_of(permit, name)?;
    let id = c.identifier.as_str();
    let column_iri = |column: &str| format!("{id}#column-{}", fragment(column));
    let ehds = "http://data.europa.eu/eli/reg/2025/327/oj";
    let small = c.small_counts;
    // Fewer than `small` persons: no figure at all (a share of a few records is a count).
    let figures = profile.people() >= small;
    let measurements = if figures {
        measurements(d, profile, small, &column_iri)
    } else {
        Vec::new()
    };
    let mut codings: Vec<Concept> = d
        .columns
        .iter()
        .filter_map(|x| x.coding.and_then(vocabulary::coding_system))
        .collect();
    codings.sort_by(|a, b| a.iri.cmp(&b.iri));
    codings.dedup();
    let format = match d.source.format {
        SourceFormat::Csv => vocabulary::eu("file-type", "CSV", "CSV", MEDIA_TYPE),
        // A database's rows reach the access body as the Parquet delivery.
        SourceFormat::Parquet | SourceFormat::Linked | SourceFormat::Postgres => {
            vocabulary::eu("file-type", "PARQUET", "Parquet", MEDIA_TYPE)
        }
    };
    let access_rights = vocabulary::eu(
        "access-right",
        "NON_PUBLIC",
        "non-public",
        Some("dct:RightsStatement"),
    );
    let theme = vocabulary::eu("data-theme", "HEAL", "Health", None);
    let holder = &permit.spec.permit;
    let mut dataset = json!({
        "@id": id,
        "@type": "dcat:Dataset",
        "dct:identifier": id,
        "dct:title": c.title,
        "dct:description": c.description,
        "dct:type": iri(&dataset_type.iri),
        "dcat:keyword": c.keywords,
        "dct:publisher": agent(
            c.publisher.as_deref().unwrap_or(&holder.holder),
            Some(&c.contact_email),
            None,
        ),
        "dcat:contactPoint": {
            "@type": "vcard:Kind",
            "vcard:hasEmail": iri(&format!("mailto:{}", c.contact_email)),
        },
        "healthdcatap:hdab": agent(
            c.access_body.as_deref().unwrap_or(&holder.recipient),
            c.access_body_email.as_deref(),
            Some(&c.access_url),
        ),
        "dct:accessRights": iri(&access_rights.iri),
        "dcatap:applicableLegislation": [iri(ehds)],
        "dcat:theme": [iri(&theme.iri)],
        "healthdcatap:healthCategory": categories.iter().map(|h| iri(&h.iri)).collect::<Vec<_>>(),
        "dct:provenance": { "@type": "dct:ProvenanceStatement", "rdfs:label": c.provenance },
        "healthdcatap:hasStructuredData": typed(true, "boolean"),
        "healthdcatap:hasVariables": variables(d, c, id, &column_iri),
        "dcat:distribution": [{
            "@id": format!("{id}#distribution"),
            "@type": "dcat:Distribution",
            "dcat:accessURL": iri(&c.access_url),
            "dcatap:applicableLegislation": [iri(ehds)],
            "dct:format": iri(&format.iri),
        }],
        "dqv:hasQualityMeasurement": measurements,
    });
    if !codings.is_empty() {
        dataset["healthdcatap:hasCodingSystem"] = codings.iter().map(|c| iri(&c.iri)).collect();
    }
    if figures {
        dataset["healthdcatap:numberOfRecords"] = typed(profile.records, "nonNegativeInteger");
        if let Some((distinct, _)) = profile.persons {
            dataset["healthdcatap:numberOfUniqueIndividuals"] =
                typed(distinct, "nonNegativeInteger");
        }
        if let Some((lo, hi)) = bounds(&profile.temporal, 1, small) {
            dataset["dct:temporal"] = json!({
                "@type": "dct:PeriodOfTime",
                "dcat:startDate": typed(year_start(lo), "date"),
                "dcat:endDate": typed(year_end(hi), "date"),
            });
        }
        if let Some((lo, hi)) = bounds(&profile.ages, 5, small) {
            dataset["healthdcatap:minTypicalAge"] = typed(lo.max(0), "nonNegativeInteger");
            dataset["healthdcatap:maxTypicalAge"] = typed(hi.max(0), "nonNegativeInteger");
        }
    }
    let mut graph = vec![dataset];
    // The concepts the description names, typed and labelled in their schemes, and the
    // legislation as a legal resource: what a validator that has not loaded the vocabularies
    // checks the values against.
    let mut concepts = vec![dataset_type, access_rights, theme, format];
    concepts.extend(categories);
    concepts.extend(codings);
    graph.extend(concepts.iter().map(Concept::node));
    graph.push(json!({ "@id": ehds, "@type": "eli:LegalResource" }));
    for (metric, definition, dimension) in METRICS {
        graph.push(json!({
            "@id": format!("{METRIC_BASE}{metric}"),
            "@type": "dqv:Metric",
            "skos:prefLabel": metric,
            "skos:definition": definition,
            "dqv:inDimension": iri(&format!("{DIMENSION_BASE}{dimension}")),
        }));
    }
    Ok(json!({ "@context": context(), "@graph": graph }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_percentiles_that_no_few_records_decide() {
        let ages: BTreeMap<i32, u64> = (0..100).map(|a| (a, 1)).collect();
        // Nearest rank: the 5th percentile of 100 records is the 5th record.
        assert_eq!(bounds(&ages, 5, 1), Some((4, 95)));
        // At least 10 records beyond each bound: the 10th from each end.
        assert_eq!(bounds(&ages, 5, 10), Some((9, 90)));
        assert_eq!(bounds(&ages, 1, 10), Some((9, 90)));
        // One extreme person never shows: 19 records at 40, one at 99.
        let skewed: BTreeMap<i32, u64> = [(40, 19), (99, 1)].into();
        assert_eq!(bounds(&skewed, 1, 10), Some((40, 40)));
        // Fewer than twice the threshold: no range at all.
        let few: BTreeMap<i32, u64> = [(30, 10), (50, 9)].into();
        assert_eq!(bounds(&few, 5, 10), None);
        assert_eq!(bounds(&BTreeMap::new(), 5, 1), None);
    }

    #[test]
    fn date_ranges_widen_to_whole_years() {
        let day = |y, m, d| values::date_to_days(chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap());
        assert_eq!(year_start(day(2024, 2, 17)), "2024-01-01");
        assert_eq!(year_end(day(2024, 2, 3)), "2024-12-31");
        assert_eq!(year_end(day(1969, 12, 31)), "1969-12-31");
    }

    #[test]
    fn column_names_become_iri_fragments() {
        assert_eq!(fragment("date de sortie/é"), "date%20de%20sortie%2F%C3%A9");
    }
}
