//! The permit file: a typed model of what one data permit allows, parsed from TOML and validated.
//!
//! Everything a run does comes from here: which sources to read with which explicit schema, which rows
//! belong to the cohort, what happens to each column, which keys and pseudonymisation domains to use,
//! and where the delivery goes. Columns the permit does not name are never read into a delivery.
//! Relative paths are relative to the permit file's folder. Keys are named by source (file or
//! environment variable), never written in the permit.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kernels::hex;
use crate::kernels::pseudonymise::{Encoding, PseudonymFormat};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermitSpec {
    pub permit: PermitInfo,
    pub output: OutputSpec,
    #[serde(default)]
    pub keys: BTreeMap<String, KeySource>,
    #[serde(default)]
    pub domains: BTreeMap<String, DomainSpec>,
    #[serde(default)]
    pub pseudonyms: PseudonymSpec,
    pub opt_out: Option<OptOutSpec>,
    pub date_shift: Option<DateShiftSpec>,
    pub tokens: Option<TokenSpec>,
    /// Access bodies only: the holders' deliveries this permit links (run with `ehds-prep link`).
    pub linkage: Option<LinkageSpec>,
    pub datasets: Vec<DatasetSpec>,
}

/// A linking permit's `[linkage]` section: which verified deliveries are linked on which pseudonym,
/// which person attributes are compared across them, and how the linkage report is masked.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkageSpec {
    /// The holders' linkage domain, as named in their manifests (all must share its key and context).
    pub domain: String,
    /// The expected fingerprint of the linkage key (as `keygen` printed it); checked when given.
    pub key_fingerprint: Option<String>,
    /// The expected pseudonym version of the deliveries; checked when given.
    pub pseudonym_version: Option<String>,
    /// Counts from 1 to `small_counts - 1` are shown as "< small_counts" in the linkage report that
    /// goes with the delivery (a linkage report can itself disclose). 0 or 1 masks nothing.
    #[serde(default = "default_small_counts")]
    pub small_counts: u64,
    /// A file outside the delivery for the access body, with the same report unmasked.
    pub exact_report: Option<PathBuf>,
    pub sources: Vec<LinkSourceSpec>,
    /// Person attributes compared across sources, and offered to the linked person table.
    #[serde(default)]
    pub attributes: Vec<AttributeSpec>,
}

fn default_small_counts() -> u64 {
    10
}

/// One holder's delivery.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkSourceSpec {
    /// A short name (`hospital`) used in the report and in attribute references.
    pub name: String,
    /// The delivery folder (with its `manifest.json`).
    pub delivery: PathBuf,
    /// The column that carries the person's linkage pseudonym in each table.
    #[serde(default = "default_person_pseudonym")]
    pub person: String,
    /// The tables (datasets of the delivery) that are linked; all of them by default.
    pub tables: Option<Vec<String>>,
}

fn default_person_pseudonym() -> String {
    "person_pseudonym".into()
}

/// A person attribute held by several sources (sex, birth year): compared for consistency, and
/// delivered in the linked person table as the first value found in the order of `columns`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeSpec {
    pub name: String,
    /// `source.table.column` references, in order of preference.
    pub columns: Vec<String>,
}

/// Who asked for what, as written on the approved permit.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermitInfo {
    pub id: String,
    pub purpose: String,
    pub holder: String,
    pub recipient: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The delivery folder; created by the run, replaced atomically on a rerun.
    pub dir: PathBuf,
    /// Rows read, transformed and written per batch (bounds memory); also the Parquet row-group size.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// A JSON-lines file that receives one record per run (outcome, counts, durations, CPU time).
    pub audit_log: Option<PathBuf>,
    /// Counts from 1 to `small_counts - 1` are shown as "< small_counts" in `report.html`, for a
    /// delivery whose readable report goes to the researcher (`report.json` stays exact for the
    /// access body). A linking permit masks with `linkage.small_counts` unless this is set.
    pub small_counts: Option<u64>,
}

/// Polars' own row-group size. Smaller batches than 1M rows also keep the stages of a run (read,
/// transform, profile, write) busy together sooner and longer: on the 10M-row comparison job
/// 1M-row batches took about 10 % longer and 60 % more memory.
fn default_batch_rows() -> usize {
    1 << 18
}

/// Where a key comes from: exactly one of a file or an environment variable.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySource {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    /// Accept a key file that group or others can read (refused by default).
    #[serde(default)]
    pub allow_readable_by_others: bool,
}

/// A pseudonymisation domain: pseudonyms of different domains cannot be joined.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// The name of the key (under `[keys]`) the domain's sub-key is derived from.
    pub key: String,
    /// The HKDF context; holders that must produce linkable pseudonyms use the same key and context.
    /// Defaults to `<permit id>/<domain name>`; one given must start with `<permit id>/`, so that two
    /// permits never share a domain.
    pub context: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PseudonymSpec {
    /// A label recorded in the delivery so that consumers know which pseudonym scheme they hold.
    #[serde(default = "default_pseudonym_version")]
    pub version: String,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default = "default_bits")]
    pub bits: u16,
}

impl Default for PseudonymSpec {
    fn default() -> Self {
        PseudonymSpec {
            version: default_pseudonym_version(),
            encoding: Encoding::Hex,
            bits: default_bits(),
        }
    }
}

fn default_pseudonym_version() -> String {
    "v1".into()
}
fn default_bits() -> u16 {
    128
}

impl PseudonymSpec {
    pub fn format(&self) -> PseudonymFormat {
        PseudonymFormat {
            encoding: self.encoding,
            bits: self.bits,
        }
    }
}

/// People who refused secondary use: one identifier per line; their rows are removed from every dataset.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutSpec {
    pub file: PathBuf,
    /// How the listed identifiers are normalised and validated (as the datasets' person columns).
    #[serde(default)]
    pub identifier: IdentifierSpec,
    pub pattern: Option<String>,
    /// An entry that is not a valid identifier: `fail` stops the run naming its line (the
    /// default: a refusal that matches nobody delivers the person); `keep` keeps it as written,
    /// counted in the summary and the reports.
    #[serde(default)]
    pub on_invalid: OptOutInvalid,
}

/// What an invalid opt-out entry does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptOutInvalid {
    #[default]
    Fail,
    Keep,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// The delivered table's name (`<name>.parquet`).
    pub name: String,
    /// The column that identifies the person (used for opt-out and, later, for counting persons).
    pub person: Option<String>,
    pub source: SourceSpec,
    pub columns: Vec<ColumnSpec>,
    #[serde(default)]
    pub cohort: Vec<FilterSpec>,
    #[serde(default)]
    pub composites: Vec<CompositeSpec>,
    /// Re-identification thresholds; the generalised columns with a `hierarchy` or `levels` are the
    /// quasi-identifiers.
    pub privacy: Option<PrivacySpec>,
    /// How `describe` presents the holder dataset in the national catalogue (HealthDCAT-AP).
    pub catalogue: Option<CatalogueSpec>,
}

/// The catalogue entry of a holder dataset: what people write; `describe` measures the rest.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSpec {
    /// The dataset's persistent IRI in the catalogue (`dct:identifier` and the node's `@id`).
    pub identifier: String,
    pub title: String,
    pub description: String,
    /// At least one keyword (`dcat:keyword`).
    pub keywords: Vec<String>,
    /// The contact point's e-mail address (`dcat:contactPoint`).
    pub contact_email: String,
    /// The publisher's name; default: the permit's holder.
    pub publisher: Option<String>,
    /// The health data access body (`healthdcatap:hdab`); default: the permit's recipient.
    pub access_body: Option<String>,
    /// Where a data user applies for access (the distribution's `dcat:accessURL`).
    pub access_url: String,
    /// Health categories (`healthdcatap:healthCategory`), as IRIs of the EHDS categories vocabulary.
    #[serde(default)]
    pub health_categories: Vec<String>,
    /// How the data came to be (`dct:provenance`).
    pub provenance: Option<String>,
    /// Date or datetime columns whose range is the temporal coverage; default: every date and
    /// datetime column except `birth_date`.
    pub temporal: Option<Vec<String>>,
    /// The birth-date column, for the typical age range (5th to 95th percentile of records).
    pub birth_date: Option<String>,
    /// Ages are taken at this date column of each record (or a fixed `YYYY-MM-DD`); default: the end
    /// of the temporal coverage.
    pub age_at: Option<String>,
    /// A public description is disclosure too: a dataset of fewer persons publishes no figure,
    /// and every range leaves at least this many records beyond each bound (default 10).
    #[serde(default = "default_catalogue_small_counts")]
    pub small_counts: u64,
}

fn default_catalogue_small_counts() -> u64 {
    10
}

/// The privacy models a dataset must meet, and how the search may get there.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// k-anonymity: every class holds at least k persons (rows when the dataset has no `person`).
    pub k: Option<u32>,
    /// The sensitive column (a delivered, not generalised column) for ℓ-diversity and t-closeness.
    pub sensitive: Option<String>,
    /// ℓ-diversity: at least ℓ distinct sensitive values per class, or an entropy of at least log ℓ.
    pub l: Option<f64>,
    #[serde(default)]
    pub l_diversity: LDiversityKind,
    /// t-closeness: the distance between a class's sensitive distribution and the dataset's is at
    /// most t.
    pub t: Option<f64>,
    #[serde(default)]
    pub t_closeness: TClosenessKind,
    /// The sensitive column's hierarchy for hierarchical t-closeness: an ARX CSV file…
    pub sensitive_hierarchy: Option<PathBuf>,
    /// …or built-in levels.
    pub sensitive_levels: Option<Vec<String>>,
    /// Share of rows that may be suppressed (0 to 1); a transformation suppressing more is refused.
    #[serde(default)]
    pub suppression_limit: f64,
    #[serde(default)]
    pub suppressed: SuppressedRows,
    /// The information-loss metric the search minimises.
    #[serde(default)]
    pub metric: MetricName,
    /// Prosecutor risk above which a row counts as at risk in the report (default 0.2, i.e. 1/5).
    pub risk_threshold: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LDiversityKind {
    #[default]
    Distinct,
    Entropy,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TClosenessKind {
    /// Equal ground distance between any two values.
    #[default]
    Equal,
    /// Ground distance from the sensitive column's hierarchy.
    Hierarchical,
}

/// What happens to the rows of classes that violate a model.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SuppressedRows {
    /// Left out of the delivery.
    #[default]
    Remove,
    /// Delivered with every quasi-identifier set to `*`.
    Blank,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
pub enum MetricName {
    /// Non-uniform entropy, monotonic variant (ARX's default class of metric).
    #[default]
    #[serde(rename = "entropy")]
    Entropy,
    /// Non-uniform entropy including the entropy of suppressed rows.
    #[serde(rename = "entropy-with-suppression")]
    EntropyWithSuppression,
    /// DM*: sum of squared class sizes.
    #[serde(rename = "discernibility")]
    Discernibility,
    /// Average equivalence class size.
    #[serde(rename = "aecs")]
    Aecs,
    /// Mean generalisation height.
    #[serde(rename = "precision")]
    Precision,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Csv,
    Parquet,
    /// The person table `ehds-prep link` builds from the linked deliveries (linking permits only):
    /// `person_pseudonym`, each `[[linkage.attributes]]` by name, and `in_<source>` flags.
    Linked,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
pub enum TextEncoding {
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "latin-1")]
    Latin1,
    #[serde(rename = "windows-1252")]
    Windows1252,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub format: SourceFormat,
    /// The extract's files (none for a linked source).
    #[serde(default)]
    pub files: Vec<PathBuf>,
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// The quote character; `""` for none.
    #[serde(default = "default_quote")]
    pub quote: String,
    #[serde(default = "default_true")]
    pub header: bool,
    #[serde(default)]
    pub encoding: TextEncoding,
    /// Field texts read as null (after the field is unquoted).
    #[serde(default = "default_null_values")]
    pub null_values: Vec<String>,
    /// The default chrono format of date columns (a column may override it).
    #[serde(default = "default_date_format")]
    pub date_format: String,
    /// The default chrono format of datetime columns (a column may override it).
    #[serde(default = "default_datetime_format")]
    pub datetime_format: String,
    /// A quote that does not open a field (`U0"9`): an error naming its place (RFC 4180, the
    /// default), or literal text of the field.
    #[serde(default)]
    pub quote_in_field: QuoteInField,
    /// The longest quoted field accepted, in bytes: a quote left open would otherwise swallow the
    /// records after it into one field.
    #[serde(default = "default_max_quoted_field_bytes")]
    pub max_quoted_field_bytes: usize,
}

/// How a quote character inside an unquoted field is read.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuoteInField {
    /// Stop the run, naming the file, record, line and field.
    #[default]
    Error,
    /// Part of the field's text, as many spreadsheet exports mean it.
    Literal,
}

fn default_max_quoted_field_bytes() -> usize {
    1 << 20
}

impl SourceSpec {
    /// A CSV source of `files` with every option at its default (comma, double quote, header,
    /// UTF-8).
    pub fn csv(files: Vec<PathBuf>) -> SourceSpec {
        SourceSpec {
            format: SourceFormat::Csv,
            files,
            delimiter: default_delimiter(),
            quote: default_quote(),
            header: true,
            encoding: TextEncoding::default(),
            null_values: default_null_values(),
            date_format: default_date_format(),
            datetime_format: default_datetime_format(),
            quote_in_field: QuoteInField::default(),
            max_quoted_field_bytes: default_max_quoted_field_bytes(),
        }
    }
}

impl TextEncoding {
    /// The name a permit gives it.
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "utf-8",
            TextEncoding::Latin1 => "latin-1",
            TextEncoding::Windows1252 => "windows-1252",
        }
    }
}

fn default_delimiter() -> char {
    ','
}
fn default_quote() -> String {
    "\"".into()
}
fn default_true() -> bool {
    true
}
fn default_null_values() -> Vec<String> {
    vec![String::new()]
}
fn default_date_format() -> String {
    "%Y-%m-%d".into()
}
fn default_datetime_format() -> String {
    "%Y-%m-%d %H:%M:%S".into()
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    /// Free text (notes, comments, names): dropped unless the permit keeps it with a `reason`.
    Text,
    Integer,
    Float,
    Date,
    /// A date and time of day, without time zone (stored in microseconds).
    Datetime,
    Boolean,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Pseudonymise,
    Generalise,
    Drop,
    /// Move dates by the person's keyed shift (needs `[date_shift]` and the dataset's `person`).
    Shift,
    /// Keep the first/last characters (`keep_first`, `keep_last`) and mask the rest (`mask_char`).
    Mask,
    /// Replace every value by `value`.
    Replace,
    /// Make every value null.
    Blank,
    /// Map values through a `dictionary` file.
    Map,
    /// Reversible AES-SIV token for a trusted third party (needs `[tokens]`).
    Tokenise,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdentifierSpec {
    /// French NIR with its control key.
    Nir,
    /// The column's `pattern` (a regular expression over the normalised value).
    Pattern,
    /// Any non-empty value.
    #[default]
    Any,
    /// A pseudonym of an ehds-prep delivery (hex or base64url), taken exactly as written: how an
    /// access body re-pseudonymises the holders' linkage pseudonyms.
    Pseudonym,
}

/// What happens to a row whose identifier is invalid (or missing).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InvalidPolicy {
    /// The row is left out of the delivery and counted.
    RejectRow,
    /// The row is delivered with a null pseudonym.
    Null,
    /// The run stops with an error naming the column and record (never the value).
    Fail,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GeneraliseRule {
    /// A date to its year (integer).
    Year,
    /// A date to its month (`YYYY-MM`).
    Month,
    /// A string to its first `prefix` characters.
    Prefix,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    pub action: Action,
    /// The delivered column's name, if not `name`.
    pub rename: Option<String>,
    /// Date format of this column, overriding the source's `date_format`.
    pub format: Option<String>,
    /// Identifier kind, for pseudonymised, person and composite columns.
    pub identifier: Option<IdentifierSpec>,
    pub pattern: Option<String>,
    pub domain: Option<String>,
    pub on_invalid: Option<InvalidPolicy>,
    pub on_missing: Option<InvalidPolicy>,
    pub rule: Option<GeneraliseRule>,
    pub prefix: Option<usize>,
    /// A quasi-identifier's hierarchy as an ARX CSV file (one row per value, level 0 first).
    pub hierarchy: Option<PathBuf>,
    /// The hierarchy file's delimiter (default `;`, as ARX writes them).
    pub hierarchy_delimiter: Option<char>,
    /// A quasi-identifier's levels above the value itself, coarsest last (`*` is added on top).
    pub levels: Option<Vec<String>>,
    /// Generalise the age in whole years at this date column (or `YYYY-MM-DD`) instead of the date.
    pub age_at: Option<String>,
    /// Numbers at or above `top` are coded `≥top`; below `bottom`, `<bottom` (at every level).
    pub top: Option<f64>,
    pub bottom: Option<f64>,
    /// The highest level the search may choose for this quasi-identifier.
    pub max_level: Option<u8>,
    /// The level this quasi-identifier must have (the search does not move it).
    pub level: Option<u8>,
    pub keep_first: Option<usize>,
    pub keep_last: Option<usize>,
    pub mask_char: Option<char>,
    /// The constant of `replace`.
    pub value: Option<String>,
    /// The dictionary file of `map`.
    pub dictionary: Option<PathBuf>,
    pub on_unmapped: Option<UnmappedPolicy>,
    pub fallback: Option<String>,
    /// Why a free-text column is delivered; required to deliver one.
    pub reason: Option<String>,
    /// The coding system of the column's values (`ICD-10`, `ATC`, `SNOMED-CT`, `LOINC`,
    /// `INSEE-COG`), for the catalogue description.
    pub coding: Option<CodingSystem>,
    /// What the column holds, for the catalogue description.
    pub description: Option<String>,
}

/// Coding systems a catalogue description can name (`healthdcatap:hasCodingSystem`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum CodingSystem {
    #[serde(rename = "ICD-10")]
    Icd10,
    #[serde(rename = "ATC")]
    Atc,
    #[serde(rename = "SNOMED-CT")]
    SnomedCt,
    #[serde(rename = "LOINC")]
    Loinc,
    #[serde(rename = "INSEE-COG")]
    InseeCog,
}

/// What `map` does with a value its dictionary lacks.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnmappedPolicy {
    #[default]
    Fail,
    Null,
    Fallback,
}

/// Keyed per-person date shifting.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DateShiftSpec {
    /// The domain (under `[domains]`) whose key derives the shifts.
    pub domain: String,
    pub min_days: i32,
    pub max_days: i32,
}

/// Reversible tokens (off unless this section is present).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// The key (under `[keys]`) shared with the access body or trusted third party.
    pub key: String,
    /// Associated data bound into every token; defaults to the permit id.
    pub context: Option<String>,
}

impl ColumnSpec {
    pub fn output_name(&self) -> &str {
        self.rename.as_deref().unwrap_or(&self.name)
    }

    /// A generalised column whose level the privacy search chooses.
    pub fn is_quasi_identifier(&self) -> bool {
        self.action == Action::Generalise && (self.hierarchy.is_some() || self.levels.is_some())
    }
}

/// A pseudonym of several columns together (e.g. NIR + birth date + sex).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompositeSpec {
    pub name: String,
    pub inputs: Vec<String>,
    pub domain: String,
    pub on_invalid: Option<InvalidPolicy>,
    pub on_missing: Option<InvalidPolicy>,
}

/// One cohort condition; a row is in the cohort when it meets all of them. A null never meets one.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    pub column: String,
    /// Inclusive lower bound (a date as `YYYY-MM-DD`, or a number).
    pub from: Option<String>,
    /// Inclusive upper bound.
    pub to: Option<String>,
    /// The value must be one of these.
    pub values: Option<Vec<String>>,
    /// The value must start with one of these.
    pub prefixes: Option<Vec<String>>,
}

/// A dataset name that makes a file name of its own: it cannot be hidden (`.x`), hold a path, or
/// collide with the engine's own files (`manifest.json`, `.<name>.pass1.parquet` spills…), which
/// all have a dot where a dataset's name cannot.
fn is_dataset_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The JSON Schema of the permit file, for editors that validate TOML against a schema.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PermitSpec)).expect("a schema is JSON")
}

/// A parsed and validated permit, with its location and a hash of its text.
#[derive(Debug, Clone)]
pub struct Permit {
    pub spec: PermitSpec,
    pub path: PathBuf,
    /// SHA-256 of the permit file's bytes, recorded in every delivery.
    pub sha256: String,
}

impl Permit {
    pub fn load(path: &Path) -> Result<Permit> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Permit {
            file: path.into(),
            at: "file".into(),
            message: format!("cannot read permit: {e}"),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Permit> {
        let err = |at: String, message: String| Error::Permit {
            file: path.into(),
            at,
            message,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| err(position(text, &e), e.message().into()))?;
        let spec: PermitSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            let place = if inner.span().is_some() {
                format!("{at} ({})", position(text, &inner))
            } else {
                at
            };
            err(place, inner.message().to_string())
        })?;
        let permit = Permit {
            spec,
            path: path.into(),
            sha256: hex::encode(&Sha256::digest(text.as_bytes())),
        };
        permit.validate()?;
        Ok(permit)
    }

    /// The folder relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir().join(p)
        }
    }

    pub fn output_dir(&self) -> PathBuf {
        self.resolve(&self.spec.output.dir)
    }

    /// Every file or folder the permit has a run read, with the key path that names it: the
    /// permit itself, key files, the opt-out list, sources, hierarchies, dictionaries and the
    /// deliveries a linking permit links. (A linked person table is made by the run.)
    pub fn inputs(&self) -> Vec<(String, PathBuf)> {
        let s = &self.spec;
        let mut out = vec![("the permit".to_string(), self.path.clone())];
        for (name, k) in &s.keys {
            if let Some(file) = &k.file {
                out.push((format!("keys.{name}.file"), self.resolve(file)));
            }
        }
        if let Some(o) = &s.opt_out {
            out.push(("opt_out.file".into(), self.resolve(&o.file)));
        }
        for (di, d) in s.datasets.iter().enumerate() {
            if d.source.format != SourceFormat::Linked {
                for (fi, f) in d.source.files.iter().enumerate() {
                    out.push((
                        format!("datasets[{di}].source.files[{fi}]"),
                        self.resolve(f),
                    ));
                }
            }
            for (ci, c) in d.columns.iter().enumerate() {
                for (field, path) in [("hierarchy", &c.hierarchy), ("dictionary", &c.dictionary)] {
                    if let Some(path) = path {
                        out.push((
                            format!("datasets[{di}].columns[{ci}].{field}"),
                            self.resolve(path),
                        ));
                    }
                }
            }
            if let Some(h) = d
                .privacy
                .as_ref()
                .and_then(|p| p.sensitive_hierarchy.as_ref())
            {
                out.push((
                    format!("datasets[{di}].privacy.sensitive_hierarchy"),
                    self.resolve(h),
                ));
            }
        }
        if let Some(l) = &s.linkage {
            for (si, source) in l.sources.iter().enumerate() {
                out.push((
                    format!("linkage.sources[{si}].delivery"),
                    self.resolve(&source.delivery),
                ));
            }
        }
        out
    }

    /// Loads the key the permit names `name` from its file or environment variable.
    pub fn load_key(&self, name: &str) -> Result<crate::kernels::keys::SecretKey> {
        use crate::kernels::keys::SecretKey;
        let source = &self.spec.keys[name];
        match (&source.file, &source.env) {
            (Some(file), None) => {
                SecretKey::from_private_file(&self.resolve(file), source.allow_readable_by_others)
            }
            (None, Some(var)) => SecretKey::from_env(var),
            _ => unreachable!("validated: exactly one key source"),
        }
    }

    /// The associated data bound into reversible tokens: `[tokens] context`, or the permit id.
    pub fn token_context(&self) -> Option<String> {
        let t = self.spec.tokens.as_ref()?;
        Some(
            t.context
                .clone()
                .unwrap_or_else(|| self.spec.permit.id.clone()),
        )
    }

    /// The HKDF context of a domain.
    pub fn domain_context(&self, name: &str) -> String {
        let d = &self.spec.domains[name];
        d.context
            .clone()
            .unwrap_or_else(|| format!("{}/{name}", self.spec.permit.id))
    }

    fn validate(&self) -> Result<()> {
        let s = &self.spec;
        let fail = |at: String, message: String| {
            Err(Error::Permit {
                file: self.path.clone(),
                at,
                message,
            })
        };
        let safe_name = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };

        if !safe_name(&s.permit.id) {
            return fail(
                "permit.id".into(),
                "must be non-empty and use only letters, digits, `_`, `-`, `.`".into(),
            );
        }
        if s.output.batch_rows == 0 {
            return fail("output.batch_rows".into(), "must be at least 1".into());
        }
        if ![128, 256].contains(&s.pseudonyms.bits) {
            return fail(
                "pseudonyms.bits".into(),
                format!("is {}; allowed: 128 or 256", s.pseudonyms.bits),
            );
        }
        for (name, k) in &s.keys {
            if k.file.is_some() == k.env.is_some() {
                return fail(
                    format!("keys.{name}"),
                    "give exactly one of `file` or `env`".into(),
                );
            }
        }
        // Contexts are bound to this permit: the property that two permits' pseudonyms cannot be
        // joined rests on their contexts, so a context naming another permit is refused.
        let own_context = |context: &str| {
            context
                .strip_prefix(s.permit.id.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty())
        };
        let context_rule = format!(
            "must start with this permit's id and a slash (`{}/…`): two permits' pseudonyms or \
             tokens must never be joinable",
            s.permit.id
        );
        for (name, d) in &s.domains {
            if !s.keys.contains_key(&d.key) {
                return fail(
                    format!("domains.{name}.key"),
                    format!("names key `{}`, not defined under [keys]", d.key),
                );
            }
            if d.context.as_deref().is_some_and(|c| !own_context(c)) {
                return fail(format!("domains.{name}.context"), context_rule);
            }
        }
        if s.tokens
            .as_ref()
            .and_then(|t| t.context.as_deref())
            .is_some_and(|c| !own_context(c))
        {
            return fail("tokens.context".into(), context_rule);
        }
        if let Some(ds) = &s.date_shift {
            if !s.domains.contains_key(&ds.domain) {
                return fail(
                    "date_shift.domain".into(),
                    format!("`{}` is not defined under [domains]", ds.domain),
                );
            }
            let pseudonym_domains = s.datasets.iter().flat_map(|d| {
                d.columns
                    .iter()
                    .filter_map(|c| c.domain.as_deref())
                    .chain(d.composites.iter().map(|x| x.domain.as_str()))
            });
            if pseudonym_domains.into_iter().any(|d| d == ds.domain) {
                return fail(
                    "date_shift.domain".into(),
                    format!(
                        "`{}` also makes pseudonyms; date shifts need a domain of their own",
                        ds.domain
                    ),
                );
            }
            if ds.min_days > ds.max_days || (ds.min_days, ds.max_days) == (0, 0) {
                return fail(
                    "date_shift".into(),
                    "need min_days ≤ max_days and at least one non-zero shift".into(),
                );
            }
            if ds.min_days < -36_500 || ds.max_days > 36_500 {
                return fail(
                    "date_shift".into(),
                    "shifts are limited to ±36,500 days".into(),
                );
            }
        }
        if let Some(t) = &s.tokens
            && !s.keys.contains_key(&t.key)
        {
            return fail(
                "tokens.key".into(),
                format!("names key `{}`, not defined under [keys]", t.key),
            );
        }
        if let Some(o) = &s.opt_out {
            check_pattern(o.identifier, o.pattern.as_deref(), "opt_out")
                .or_else(|m| fail("opt_out".into(), m))?;
        }
        if s.datasets.is_empty() {
            return fail(
                "datasets".into(),
                "at least one [[datasets]] is required".into(),
            );
        }
        if let Some(l) = &s.linkage {
            validate_linkage(l).or_else(|(field, m)| fail(format!("linkage{field}"), m))?;
        }
        let mut names = HashSet::new();
        for (di, d) in s.datasets.iter().enumerate() {
            let at = |rest: &str| format!("datasets[{di}]{rest}");
            if !is_dataset_name(&d.name) {
                return fail(
                    at(".name"),
                    "must start with a letter or digit and use only ASCII letters, digits, `_` and \
                     `-`, at most 64 of them (it names the delivered file `<name>.parquet`)"
                        .into(),
                );
            }
            // Case folded: on a case-insensitive file system two such names are one file.
            if !names.insert(d.name.to_ascii_lowercase()) {
                return fail(
                    at(".name"),
                    format!(
                        "dataset `{}` is defined twice (names differing only in case are one file on some systems)",
                        d.name
                    ),
                );
            }
            self.validate_source(&d.source, &at(".source"))?;
            let mut cols = HashSet::new();
            let mut outputs = HashSet::new();
            for (ci, c) in d.columns.iter().enumerate() {
                let at = |rest: &str| format!("datasets[{di}].columns[{ci}]{rest}");
                if !cols.insert(c.name.as_str()) {
                    return fail(
                        at(".name"),
                        format!("column `{}` is declared twice", c.name),
                    );
                }
                if c.action != Action::Drop && !outputs.insert(c.output_name()) {
                    return fail(
                        at(".rename"),
                        format!("two delivered columns are named `{}`", c.output_name()),
                    );
                }
                self.validate_column(c, d.person.as_deref())
                    .or_else(|(field, m)| fail(at(&field), m))?;
            }
            if !d.columns.iter().any(|c| c.action != Action::Drop) && d.composites.is_empty() {
                return fail(
                    at(".columns"),
                    "every column is dropped: the dataset would deliver nothing".into(),
                );
            }
            for (xi, x) in d.composites.iter().enumerate() {
                let at = |rest: &str| format!("datasets[{di}].composites[{xi}]{rest}");
                if !outputs.insert(x.name.as_str()) {
                    return fail(
                        at(".name"),
                        format!("two delivered columns are named `{}`", x.name),
                    );
                }
                if x.inputs.len() < 2 {
                    return fail(
                        at(".inputs"),
                        "a composite needs at least two input columns".into(),
                    );
                }
                for input in &x.inputs {
                    if !cols.contains(input.as_str()) {
                        return fail(
                            at(".inputs"),
                            format!("`{input}` is not a declared column of this dataset"),
                        );
                    }
                }
                if !s.domains.contains_key(&x.domain) {
                    return fail(
                        at(".domain"),
                        format!("`{}` is not defined under [domains]", x.domain),
                    );
                }
            }
            match &d.person {
                Some(p) if !cols.contains(p.as_str()) => {
                    return fail(
                        at(".person"),
                        format!("`{p}` is not a declared column of this dataset"),
                    );
                }
                None if s.opt_out.is_some() => {
                    return fail(
                        at(".person"),
                        "an opt-out list is set: every dataset must name its person column".into(),
                    );
                }
                _ => {}
            }
            let qis: Vec<&ColumnSpec> = d
                .columns
                .iter()
                .filter(|c| c.is_quasi_identifier())
                .collect();
            match &d.privacy {
                Some(p) => validate_privacy(p, d)
                    .or_else(|(field, m)| fail(at(&format!(".privacy.{field}")), m))?,
                None if !qis.is_empty() => {
                    return fail(
                        at(".privacy"),
                        format!(
                            "`{}` is a quasi-identifier (it has `hierarchy` or `levels`): add [datasets.privacy] with the models it must meet",
                            qis[0].name
                        ),
                    );
                }
                None => {}
            }
            for (ci, c) in d.columns.iter().enumerate() {
                let Some(at_column) = &c.age_at else { continue };
                let literal = chrono::NaiveDate::parse_from_str(at_column, "%Y-%m-%d").is_ok();
                let column = d.columns.iter().find(|r| &r.name == at_column);
                let is_date = column.is_some_and(|r| {
                    matches!(r.column_type, ColumnType::Date | ColumnType::Datetime)
                });
                if !literal && !is_date {
                    return fail(
                        format!("datasets[{di}].columns[{ci}].age_at"),
                        format!(
                            "`{at_column}` is neither a declared date column of this dataset nor a date YYYY-MM-DD"
                        ),
                    );
                }
            }
            for (fi, f) in d.cohort.iter().enumerate() {
                let at = format!("datasets[{di}].cohort[{fi}]");
                let Some(col) = d.columns.iter().find(|c| c.name == f.column) else {
                    return fail(
                        at + ".column",
                        format!("`{}` is not a declared column of this dataset", f.column),
                    );
                };
                validate_filter(f, col).or_else(|m| fail(at, m))?;
            }
        }
        Ok(())
    }

    fn validate_source(&self, src: &SourceSpec, at: &str) -> Result<()> {
        let fail = |field: &str, message: String| {
            Err(Error::Permit {
                file: self.path.clone(),
                at: format!("{at}.{field}"),
                message,
            })
        };
        if src.format == SourceFormat::Linked {
            if self.spec.linkage.is_none() {
                return fail(
                    "format",
                    "\"linked\" reads the person table of `ehds-prep link`: add a [linkage] section"
                        .into(),
                );
            }
            if !src.files.is_empty() {
                return fail(
                    "files",
                    "a linked source has no files: `ehds-prep link` builds it".into(),
                );
            }
            return Ok(());
        }
        if src.files.is_empty() {
            return fail("files", "at least one source file is required".into());
        }
        if !src.delimiter.is_ascii() || src.delimiter == '\n' || src.delimiter == '\r' {
            return fail(
                "delimiter",
                "must be one ASCII character other than a line break".into(),
            );
        }
        if src.quote.len() > 1 || !src.quote.is_ascii() {
            return fail(
                "quote",
                "must be one ASCII character, or \"\" for none".into(),
            );
        }
        if src.quote.starts_with(src.delimiter) {
            return fail("quote", "must differ from the delimiter".into());
        }
        check_date_format(&src.date_format, false).or_else(|m| fail("date_format", m))?;
        check_date_format(&src.datetime_format, true).or_else(|m| fail("datetime_format", m))
    }

    /// Checks one column's declaration; the error names the offending field (as `.field`).
    fn validate_column(
        &self,
        c: &ColumnSpec,
        person: Option<&str>,
    ) -> Result<(), (String, String)> {
        let s = &self.spec;
        let err = |field: &str, message: String| Err((format!(".{field}"), message));
        let a = c.action;
        // Each option belongs to some actions (or types) only.
        let options: [(&str, bool, &[Action]); 20] = [
            ("domain", c.domain.is_some(), &[Action::Pseudonymise]),
            (
                "on_invalid",
                c.on_invalid.is_some(),
                &[Action::Pseudonymise, Action::Tokenise],
            ),
            (
                "on_missing",
                c.on_missing.is_some(),
                &[Action::Pseudonymise, Action::Tokenise],
            ),
            ("rule", c.rule.is_some(), &[Action::Generalise]),
            ("prefix", c.prefix.is_some(), &[Action::Generalise]),
            ("hierarchy", c.hierarchy.is_some(), &[Action::Generalise]),
            (
                "hierarchy_delimiter",
                c.hierarchy_delimiter.is_some(),
                &[Action::Generalise],
            ),
            ("levels", c.levels.is_some(), &[Action::Generalise]),
            ("age_at", c.age_at.is_some(), &[Action::Generalise]),
            ("top", c.top.is_some(), &[Action::Generalise]),
            ("bottom", c.bottom.is_some(), &[Action::Generalise]),
            ("max_level", c.max_level.is_some(), &[Action::Generalise]),
            ("level", c.level.is_some(), &[Action::Generalise]),
            ("keep_first", c.keep_first.is_some(), &[Action::Mask]),
            ("keep_last", c.keep_last.is_some(), &[Action::Mask]),
            ("mask_char", c.mask_char.is_some(), &[Action::Mask]),
            ("value", c.value.is_some(), &[Action::Replace]),
            ("dictionary", c.dictionary.is_some(), &[Action::Map]),
            ("on_unmapped", c.on_unmapped.is_some(), &[Action::Map]),
            ("fallback", c.fallback.is_some(), &[Action::Map]),
        ];
        for (field, present, actions) in options {
            if present && !actions.contains(&a) {
                let names: Vec<String> = actions
                    .iter()
                    .map(|a| format!("\"{a:?}\"").to_lowercase())
                    .collect();
                return err(
                    field,
                    format!(
                        "`{field}` is only allowed with action = {}",
                        names.join(" or ")
                    ),
                );
            }
        }
        let temporal = matches!(c.column_type, ColumnType::Date | ColumnType::Datetime);
        if let Some(f) = &c.format {
            if !temporal {
                return err(
                    "format",
                    "`format` is only allowed on date and datetime columns".into(),
                );
            }
            check_date_format(f, c.column_type == ColumnType::Datetime)
                .map_err(|m| (".format".to_string(), m))?;
        }
        check_pattern(
            c.identifier.unwrap_or_default(),
            c.pattern.as_deref(),
            "column",
        )
        .map_err(|m| (".pattern".to_string(), m))?;
        if c.identifier.is_some() && c.column_type != ColumnType::String {
            return err(
                "identifier",
                "identifiers must be declared as type \"string\"".into(),
            );
        }
        let free_text = c.column_type == ColumnType::Text;
        if c.reason.is_some() && !free_text {
            return err(
                "reason",
                "`reason` is only allowed on free-text columns (type = \"text\")".into(),
            );
        }
        if free_text {
            if !matches!(
                a,
                Action::Drop | Action::Keep | Action::Mask | Action::Replace | Action::Blank
            ) {
                return err(
                    "action",
                    "a free-text column can be dropped, kept, masked, replaced or blanked".into(),
                );
            }
            if a != Action::Drop && c.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return err("reason", "free text is dropped unless the permit states why it is delivered: add `reason`".into());
            }
        }
        let text_like = matches!(c.column_type, ColumnType::String | ColumnType::Text);
        match a {
            Action::Keep | Action::Drop | Action::Blank => {}
            Action::Pseudonymise => {
                let Some(domain) = &c.domain else {
                    return err(
                        "domain",
                        "a pseudonymised column needs `domain`, one of [domains]".into(),
                    );
                };
                if !s.domains.contains_key(domain) {
                    return err(
                        "domain",
                        format!("`{domain}` is not defined under [domains]"),
                    );
                }
                if c.column_type != ColumnType::String {
                    return err(
                        "type",
                        "pseudonymised columns must be declared as type \"string\"".into(),
                    );
                }
            }
            Action::Tokenise => {
                if s.tokens.is_none() {
                    return err(
                        "action",
                        "reversible tokens are off: the permit must opt in with a [tokens] section"
                            .into(),
                    );
                }
                if c.column_type != ColumnType::String {
                    return err(
                        "type",
                        "tokenised columns must be declared as type \"string\"".into(),
                    );
                }
            }
            Action::Generalise if c.is_quasi_identifier() => {
                validate_quasi_identifier(c).map_err(|(f, m)| (format!(".{f}"), m))?;
            }
            Action::Generalise => {
                for (field, present) in [
                    ("hierarchy_delimiter", c.hierarchy_delimiter.is_some()),
                    ("age_at", c.age_at.is_some()),
                    ("top", c.top.is_some()),
                    ("bottom", c.bottom.is_some()),
                    ("max_level", c.max_level.is_some()),
                    ("level", c.level.is_some()),
                ] {
                    if present {
                        return err(
                            field,
                            format!(
                                "`{field}` belongs to a quasi-identifier: give `hierarchy` or `levels`"
                            ),
                        );
                    }
                }
                let allowed = match c.column_type {
                    ColumnType::Date | ColumnType::Datetime => {
                        &[GeneraliseRule::Year, GeneraliseRule::Month][..]
                    }
                    ColumnType::String => &[GeneraliseRule::Prefix][..],
                    _ => &[][..],
                };
                match c.rule {
                    None => {
                        return err("rule", "a generalised column needs `rule` (\"year\" or \"month\" for dates, \"prefix\" for strings), or, as a quasi-identifier, `hierarchy` or `levels`".into());
                    }
                    Some(r) if !allowed.contains(&r) => {
                        return err(
                            "rule",
                            format!(
                                "rule {r:?} does not apply to a {:?} column; allowed: {allowed:?}",
                                c.column_type
                            ),
                        );
                    }
                    Some(GeneraliseRule::Prefix) if c.prefix.unwrap_or(0) == 0 => {
                        return err(
                            "prefix",
                            "rule \"prefix\" needs `prefix`, the number of characters kept (≥ 1)"
                                .into(),
                        );
                    }
                    Some(r) if r != GeneraliseRule::Prefix && c.prefix.is_some() => {
                        return err(
                            "prefix",
                            "`prefix` is only allowed with rule = \"prefix\"".into(),
                        );
                    }
                    _ => {}
                }
            }
            Action::Shift => {
                if !temporal {
                    return err(
                        "action",
                        "only date and datetime columns can be shifted".into(),
                    );
                }
                if s.date_shift.is_none() {
                    return err(
                        "action",
                        "shifting dates needs a [date_shift] section (domain, min_days, max_days)"
                            .into(),
                    );
                }
                if person.is_none() {
                    return err(
                        "action",
                        "shifting dates needs the dataset's `person` column: shifts are per person"
                            .into(),
                    );
                }
            }
            Action::Mask => {
                if !text_like {
                    return err(
                        "action",
                        "only string and text columns can be masked".into(),
                    );
                }
                if c.keep_first.is_none() && c.keep_last.is_none() {
                    return err(
                        "keep_first",
                        "masking needs `keep_first` and/or `keep_last` (characters kept)".into(),
                    );
                }
            }
            Action::Replace => {
                if !text_like {
                    return err(
                        "action",
                        "only string and text columns can be replaced".into(),
                    );
                }
                if c.value.is_none() {
                    return err(
                        "value",
                        "`replace` needs `value`, the constant written instead".into(),
                    );
                }
            }
            Action::Map => {
                if c.column_type != ColumnType::String {
                    return err(
                        "type",
                        "mapped columns must be declared as type \"string\"".into(),
                    );
                }
                if c.dictionary.is_none() {
                    return err(
                        "dictionary",
                        "`map` needs `dictionary`, a CSV file of `from,to` lines".into(),
                    );
                }
                let fallback = c.on_unmapped == Some(UnmappedPolicy::Fallback);
                if fallback != c.fallback.is_some() {
                    return err(
                        "fallback",
                        "give `fallback` exactly when on_unmapped = \"fallback\"".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Checks a quasi-identifier's hierarchy options; the error names the offending field.
fn validate_quasi_identifier(c: &ColumnSpec) -> Result<(), (String, String)> {
    use crate::privacy::hierarchy::{LevelRule, ValueKind};
    let err = |field: &str, message: String| Err((field.to_string(), message));
    if c.rule.is_some() || c.prefix.is_some() {
        return err(
            "rule",
            "a quasi-identifier's levels come from `hierarchy` or `levels`, not `rule`/`prefix`"
                .into(),
        );
    }
    if c.hierarchy.is_some() == c.levels.is_some() {
        return err(
            "levels",
            "give exactly one of `hierarchy` (a file) or `levels`".into(),
        );
    }
    if c.hierarchy_delimiter.is_some() && c.hierarchy.is_none() {
        return err(
            "hierarchy_delimiter",
            "only allowed with `hierarchy`".into(),
        );
    }
    let temporal = matches!(c.column_type, ColumnType::Date | ColumnType::Datetime);
    if let Some(at) = &c.age_at {
        if !temporal {
            return err(
                "age_at",
                "an age is computed from a date or datetime column".into(),
            );
        }
        if at.trim().is_empty() {
            return err(
                "age_at",
                "name a date column or give a date as YYYY-MM-DD".into(),
            );
        }
    }
    if matches!(c.column_type, ColumnType::Text | ColumnType::Boolean) {
        return err(
            "type",
            "quasi-identifiers are string, integer, float, date or datetime columns".into(),
        );
    }
    let value_kind = match c.column_type {
        _ if c.age_at.is_some() => ValueKind::Number,
        ColumnType::Date | ColumnType::Datetime => ValueKind::Date,
        ColumnType::Integer | ColumnType::Float => ValueKind::Number,
        _ => ValueKind::Text,
    };
    if let Some(levels) = &c.levels {
        if levels.is_empty() {
            return err("levels", "list at least one level (e.g. [\"year\"])".into());
        }
        for (i, text) in levels.iter().enumerate() {
            let rule = LevelRule::parse(text).map_err(|m| ("levels".to_string(), m))?;
            let kind = rule.applies_to();
            if kind != ValueKind::Any && kind != value_kind {
                return err(
                    "levels",
                    format!(
                        "level `{text}` applies to {kind:?} values; this column's are {value_kind:?}"
                    ),
                );
            }
            if rule == LevelRule::Top && i + 1 != levels.len() {
                return err("levels", "`*` can only be the last level".into());
            }
        }
    }
    if c.top.is_some() || c.bottom.is_some() {
        if value_kind != ValueKind::Number || c.levels.is_none() {
            return err(
                "top",
                "`top`/`bottom` code numbers (and ages) with built-in levels".into(),
            );
        }
        if let (Some(b), Some(t)) = (c.bottom, c.top)
            && b >= t
        {
            return err("bottom", "`bottom` must be below `top`".into());
        }
    }
    if let (Some(level), Some(max)) = (c.level, c.max_level)
        && level > max
    {
        return err(
            "level",
            format!("pinned level {level} is above max_level {max}"),
        );
    }
    Ok(())
}

fn validate_privacy(p: &PrivacySpec, d: &DatasetSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((field.to_string(), message));
    if !d.columns.iter().any(ColumnSpec::is_quasi_identifier) {
        return err(
            "privacy",
            "no quasi-identifier: give some generalised column a `hierarchy` or `levels`".into(),
        );
    }
    if p.k.is_none() && p.l.is_none() && p.t.is_none() {
        return err("privacy", "give at least one model: `k`, `l` or `t`".into());
    }
    if p.k == Some(0) {
        return err("k", "must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&p.suppression_limit) {
        return err(
            "suppression_limit",
            "is a share of rows, from 0 to 1".into(),
        );
    }
    if let Some(r) = p.risk_threshold
        && !(r > 0.0 && r <= 1.0)
    {
        return err(
            "risk_threshold",
            "is a probability, above 0 and at most 1".into(),
        );
    }
    if let Some(l) = p.l
        && !(l >= 1.0 && l.is_finite())
    {
        return err("l", "must be at least 1".into());
    }
    if p.l_diversity == LDiversityKind::Distinct
        && let Some(l) = p.l
        && l.fract() != 0.0
    {
        return err("l", "distinct ℓ-diversity needs a whole ℓ".into());
    }
    if let Some(t) = p.t
        && !(0.0..=1.0).contains(&t)
    {
        return err("t", "must be from 0 to 1".into());
    }
    let needs_sensitive = p.l.is_some() || p.t.is_some();
    match (&p.sensitive, needs_sensitive) {
        (None, true) => {
            return err(
                "sensitive",
                "ℓ-diversity and t-closeness need `sensitive`".into(),
            );
        }
        (Some(_), false) => {
            return err(
                "sensitive",
                "`sensitive` is only used with `l` or `t`".into(),
            );
        }
        (Some(name), true) => match d.columns.iter().find(|c| &c.name == name) {
            None => {
                return err(
                    "sensitive",
                    format!("`{name}` is not a declared column of this dataset"),
                );
            }
            Some(c) if c.action == Action::Drop => {
                return err(
                    "sensitive",
                    format!("`{name}` is dropped: the sensitive column must be delivered"),
                );
            }
            Some(c) if c.is_quasi_identifier() => {
                return err(
                    "sensitive",
                    format!(
                        "`{name}` is a quasi-identifier; the sensitive column is not generalised"
                    ),
                );
            }
            _ => {}
        },
        (None, false) => {}
    }
    let hierarchical = p.t.is_some() && p.t_closeness == TClosenessKind::Hierarchical;
    let given =
        usize::from(p.sensitive_hierarchy.is_some()) + usize::from(p.sensitive_levels.is_some());
    if hierarchical && given != 1 {
        return err(
            "sensitive_hierarchy",
            "hierarchical t-closeness needs exactly one of `sensitive_hierarchy` or `sensitive_levels`".into(),
        );
    }
    if !hierarchical && given > 0 {
        return err(
            "sensitive_hierarchy",
            "a sensitive hierarchy is only used with t_closeness = \"hierarchical\"".into(),
        );
    }
    if let Some(levels) = &p.sensitive_levels {
        for text in levels {
            crate::privacy::hierarchy::LevelRule::parse(text)
                .map_err(|m| ("sensitive_levels".to_string(), m))?;
        }
    }
    Ok(())
}

/// The linked person table's own columns, which attributes may not shadow.
pub const LINKED_PERSON: &str = "person_pseudonym";

fn validate_linkage(l: &LinkageSpec) -> Result<(), (String, String)> {
    let err = |field: String, message: String| Err((field, message));
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if l.sources.is_empty() {
        return err(
            ".sources".into(),
            "name at least one [[linkage.sources]]".into(),
        );
    }
    if l.sources.len() > 16 {
        return err(
            ".sources".into(),
            "at most 16 sources can be linked in one run".into(),
        );
    }
    let mut names = HashSet::new();
    for (i, src) in l.sources.iter().enumerate() {
        if !name_ok(&src.name) {
            return err(
                format!(".sources[{i}].name"),
                "must be non-empty and use only letters, digits, `_`, `-`".into(),
            );
        }
        if !names.insert(src.name.as_str()) {
            return err(
                format!(".sources[{i}].name"),
                format!("source `{}` is named twice", src.name),
            );
        }
    }
    let mut attributes = HashSet::new();
    for (i, a) in l.attributes.iter().enumerate() {
        let at = |f: &str| format!(".attributes[{i}]{f}");
        let shadows = a.name == LINKED_PERSON || a.name.starts_with("in_");
        if !name_ok(&a.name) || shadows {
            return err(
                at(".name"),
                format!(
                    "must use only letters, digits, `_`, `-`, and differ from `{LINKED_PERSON}` and the `in_<source>` flags"
                ),
            );
        }
        if !attributes.insert(a.name.as_str()) {
            return err(
                at(".name"),
                format!("attribute `{}` is named twice", a.name),
            );
        }
        if a.columns.is_empty() {
            return err(
                at(".columns"),
                "name at least one `source.table.column`".into(),
            );
        }
        for c in &a.columns {
            let parts: Vec<&str> = c.splitn(3, '.').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return err(
                    at(".columns"),
                    format!("`{c}` is not of the form `source.table.column`"),
                );
            }
            if !names.contains(parts[0]) {
                return err(
                    at(".columns"),
                    format!("`{c}`: `{}` is not a [[linkage.sources]] name", parts[0]),
                );
            }
        }
    }
    Ok(())
}

fn check_pattern(kind: IdentifierSpec, pattern: Option<&str>, what: &str) -> Result<(), String> {
    match (kind, pattern) {
        (IdentifierSpec::Pattern, None) => Err(format!(
            "identifier = \"pattern\" needs `pattern` on the {what}"
        )),
        (IdentifierSpec::Pattern, Some(p)) => {
            crate::kernels::identifier::compile_pattern(p).map(drop)
        }
        (_, Some(_)) => Err("`pattern` is only allowed with identifier = \"pattern\"".into()),
        _ => Ok(()),
    }
}

/// Checks a date (`datetime` false) or datetime format: valid chrono, years of four digits (a
/// two-digit year's century is a guess), and an offset only in datetimes (kept as an instant in
/// UTC); a zone name (`%Z`) cannot be read.
fn check_date_format(format: &str, datetime: bool) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "`{format}` is not a valid date format (chrono strftime, e.g. \"%d/%m/%Y\")"
        ));
    }
    if format.contains("%y") {
        return Err(format!(
            "`{format}` reads two-digit years, whose century would be guessed: export years with \
             four digits and use %Y"
        ));
    }
    if format.contains("%Z") {
        return Err(format!(
            "`{format}` reads a time zone name, which does not fix an instant: export UTC offsets \
             (%z, `+02:00`) or UTC times"
        ));
    }
    if !datetime && crate::kernels::values::has_offset(format) {
        return Err(format!(
            "`{format}` reads a UTC offset, which a date does not have: declare the column a \
             datetime"
        ));
    }
    Ok(())
}

fn validate_filter(f: &FilterSpec, col: &ColumnSpec) -> Result<(), String> {
    let range = f.from.is_some() || f.to.is_some();
    let kinds = [range, f.values.is_some(), f.prefixes.is_some()]
        .iter()
        .filter(|&&k| k)
        .count();
    if kinds != 1 {
        return Err("give exactly one of `from`/`to`, `values` or `prefixes`".into());
    }
    let t = col.column_type;
    if range {
        for bound in [&f.from, &f.to].into_iter().flatten() {
            let ok = match t {
                ColumnType::Date | ColumnType::Datetime => {
                    chrono::NaiveDate::parse_from_str(bound, "%Y-%m-%d").is_ok()
                }
                ColumnType::Integer => bound.parse::<i64>().is_ok(),
                ColumnType::Float => bound.parse::<f64>().is_ok(),
                _ => {
                    return Err(format!(
                        "`from`/`to` apply to date and number columns, not {t:?}"
                    ));
                }
            };
            if !ok {
                return Err(format!(
                    "bound `{bound}` is not a valid {t:?} (dates as \"YYYY-MM-DD\")"
                ));
            }
        }
    }
    if f.prefixes.is_some() && t != ColumnType::String {
        return Err("`prefixes` applies to string columns".into());
    }
    if f.values.is_some() && !matches!(t, ColumnType::String | ColumnType::Integer) {
        return Err("`values` applies to string and integer columns".into());
    }
    Ok(())
}

/// "line L, column C" of a TOML error's span.
fn position(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {col}")
        }
        None => "document".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A permit naming `context` for its domain (and for its tokens).
    fn with_context(context: &str) -> Result<Permit> {
        let text = format!(
            r#"
[permit]
id = "FR-2029-0042"
purpose = "p"
holder = "h"
recipient = "r"
[output]
dir = "out"
[keys.k]
file = "k.hex"
[domains.d]
key = "k"
context = {context:?}
[tokens]
key = "k"
context = {context:?}
[[datasets]]
name = "t"
[datasets.source]
format = "csv"
files = ["t.csv"]
[[datasets.columns]]
name = "id"
type = "string"
action = "pseudonymise"
domain = "d"
"#
        );
        Permit::parse(&text, Path::new("permit.toml"))
    }

    /// Generated contexts: exactly those that start with the permit's id and a slash, and go on,
    /// are accepted; another permit's context, a prefix of the id or the id alone never are.
    #[test]
    fn domains_and_tokens_belong_to_their_permit() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(3);
        let pieces = [
            "FR-2029-0042",
            "FR-2029-0043",
            "FR-2029-004",
            "FR-2029-00421",
            "/",
            "linkage",
            "researcher",
            "",
            " ",
            "fr-2029-0042",
            "é",
        ];
        for _ in 0..500 {
            let n = rng.random_range(1..5);
            let context: String = (0..n)
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            let own = context
                .strip_prefix("FR-2029-0042/")
                .is_some_and(|rest| !rest.is_empty());
            match with_context(&context) {
                Ok(_) => assert!(own, "{context:?} accepted"),
                Err(e) => {
                    assert!(!own, "{context:?} refused: {e}");
                    assert!(
                        e.to_string().contains("must start with this permit's id"),
                        "{e}"
                    );
                }
            }
        }
    }
}
