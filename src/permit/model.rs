//! The permit's model: the sections and options of the file, as serde types with their defaults,
//! and its JSON Schema.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// How the sources linked on CLKs are matched (required when one is).
    pub clk: Option<ClkLinkSpec>,
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
    /// How this source's persons are linked: `pseudonym` (default), on the holders' shared
    /// linkage pseudonym; or `clk`, for a holder without the identifier, by matching its CLKs to
    /// the other sources' (`[linkage.clk]`).
    #[serde(default)]
    pub link_on: LinkOn,
    /// `table.column`: the CLK of each person in this delivery (`[[datasets.clk]]` of the holder's
    /// permit); required with `link_on = "clk"`, and on a pseudonym-linked source whose persons
    /// the CLK sources are matched to.
    pub clk: Option<String>,
}

/// How a source's persons are linked to the other sources'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LinkOn {
    #[default]
    Pseudonym,
    Clk,
}

/// Fuzzy linkage of the `link_on = "clk"` sources: Sørensen–Dice similarity of CLKs, anonlink's
/// greedy one-to-one solver.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClkLinkSpec {
    /// Two persons' CLKs match when their Dice coefficient is at least this (0 to 1).
    pub threshold: f64,
    /// Compare only the pairs that agree on every sampled bit of at least one band (Hamming LSH),
    /// for millions of records; without it every pair of two parties is compared.
    pub blocking: Option<ClkBlockingSpec>,
}

/// Hamming LSH blocking of CLKs: `bands` bands of `bits` sampled bit positions each.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClkBlockingSpec {
    /// 1 to 256.
    pub bands: usize,
    /// 1 to 64 bit positions per band.
    pub bits: usize,
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
    /// Persons a dataset's privacy model suppresses leave every other dataset of the delivery,
    /// unless this says why they may stay (the reason goes to the manifest).
    pub keep_persons_suppressed_elsewhere: Option<String>,
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
    /// Entries keep the case of their letters (as the person columns that say so).
    pub case_sensitive: Option<bool>,
    /// When the datasets' person is a composite: the columns of its parts, in the order each
    /// entry gives them (`BEN_NIR_PSA;BEN_RNG_GEM`), each normalised as the person columns of
    /// that name.
    pub parts: Option<Vec<String>>,
    /// What separates an entry's parts (default `;`).
    pub separator: Option<char>,
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
    /// The column that identifies the person (for the opt-out list, date shifts, counting persons
    /// and one fate), or the name of one of this dataset's `composites` when one column is not
    /// enough (SNDS: BEN_NIR_PSA + BEN_RNG_GEM, since twins share the first).
    pub person: Option<String>,
    /// For a table without a person column (dispensings, PMSI stays): its person is the person of
    /// the row of another dataset with the same join key.
    pub person_via: Option<PersonViaSpec>,
    pub source: SourceSpec,
    pub columns: Vec<ColumnSpec>,
    #[serde(default)]
    pub cohort: Vec<FilterSpec>,
    #[serde(default)]
    pub composites: Vec<CompositeSpec>,
    /// Cryptographic long-term keys of the dataset's persons, for fuzzy linkage at the access
    /// body (`[[datasets.clk]]`).
    #[serde(default, rename = "clk")]
    pub clks: Vec<ClkSpec>,
    /// Re-identification thresholds; the generalised columns with a `hierarchy` or `levels` are the
    /// quasi-identifiers.
    pub privacy: Option<PrivacySpec>,
    /// k^m-anonymity of a set-valued attribute: this dataset's rows are events of persons, and the
    /// codes of one generalised column over a person's rows are one set (the diagnoses of their
    /// stays); any m of them must match k persons.
    pub set_valued: Option<SetValuedSpec>,
    /// How `describe` presents the holder dataset in the national catalogue (HealthDCAT-AP).
    pub catalogue: Option<CatalogueSpec>,
    /// Why this dataset may deliver no row; without it an empty delivery fails the run.
    pub allow_empty: Option<String>,
    /// The largest share of the rows in the cohort whose identifiers may be rejected before the
    /// run fails (default 1: only when every one is).
    pub max_rejected_share: Option<f64>,
    /// Why this dataset is read only for what other datasets need of it (a profile attribute, a
    /// person-level cohort, the person a join key finds) and not delivered.
    pub read_only: Option<String>,
}

/// How a table reaches its person: through a join key to another dataset of the permit (DCIR's
/// dispensings to claims on the 9-column key; PMSI's B table to the C table on ETA_NUM + RSA_NUM).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonViaSpec {
    /// The dataset that names the person (its `person`).
    pub dataset: String,
    /// The join key: columns declared, under the same names, in both datasets (compared as the
    /// text of their declared types). Delivered only if this dataset's columns say so.
    pub keys: Vec<String>,
    /// Deliver the person as a pseudonym column of this name…
    pub deliver_as: Option<String>,
    /// …in this domain.
    pub domain: Option<String>,
}

impl DatasetSpec {
    /// Whether the dataset's rows belong to persons it can name: a person column, or one reached
    /// through a join key.
    pub fn has_person(&self) -> bool {
        self.person.is_some() || self.person_via.is_some()
    }

    /// The composite that `person` names, when the person is made of several columns.
    pub fn person_composite(&self) -> Option<&CompositeSpec> {
        let person = self.person.as_deref()?;
        self.composites.iter().find(|x| x.name == person)
    }

    /// The columns that name the person: `person` itself, or its composite's inputs.
    pub fn person_columns(&self) -> Vec<&str> {
        match (self.person_composite(), &self.person) {
            (Some(x), _) => x.inputs.iter().map(String::as_str).collect(),
            (None, Some(p)) => vec![p.as_str()],
            (None, None) => Vec::new(),
        }
    }
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
    /// The publisher's name; default: the permit's holder. Its contact point is `contact_email`.
    pub publisher: Option<String>,
    /// The health data access body (`healthdcatap:hdab`); default: the permit's recipient.
    pub access_body: Option<String>,
    /// The access body's e-mail address; default: none, its contact point is then `access_url`.
    pub access_body_email: Option<String>,
    /// Where a data user applies for access (the distribution's `dcat:accessURL`, and the access
    /// body's contact page).
    pub access_url: String,
    /// The dataset's type (`dct:type`): a code of the EU Dataset Type Named Authority List
    /// (`STATISTICAL`…) or its IRI.
    pub dataset_type: String,
    /// Health categories (`healthdcatap:healthCategory`, at least one): codes of the Article 51
    /// EHDS vocabulary of HealthDCAT-AP Release 8 (`EHRS`, `HRAD`, `MRMR`…) or their IRIs.
    pub health_categories: Vec<String>,
    /// How the data came to be (`dct:provenance`).
    pub provenance: String,
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
    /// c of recursive (c,ℓ)-diversity (`l_diversity = "recursive"`).
    pub c: Option<f64>,
    /// t-closeness: the distance between a class's sensitive distribution and the dataset's is at
    /// most t.
    pub t: Option<f64>,
    #[serde(default)]
    pub t_closeness: TClosenessKind,
    /// The sensitive column's hierarchy for hierarchical t-closeness: an ARX CSV file…
    pub sensitive_hierarchy: Option<PathBuf>,
    /// …or built-in levels.
    pub sensitive_levels: Option<Vec<String>>,
    /// Average re-identification risk: the mean over delivered rows of 1 / their class's size at
    /// most this (EMA Policy 0070 and Health Canada use 0.09), or a table `{ average, highest,
    /// records_at_risk }` that also bounds the share of rows whose risk exceeds `highest`. The
    /// smallest classes are suppressed until it holds.
    pub average_risk: Option<AverageRiskSpec>,
    /// k-map: every delivered class stands for at least k persons of the population the dataset
    /// samples, estimated from the population's size (ARX's k-map with an estimator), or counted in
    /// the dataset itself when only `research_subset` rows are delivered.
    pub k_map: Option<KMapSpec>,
    /// The research subset: a CSV file of rows of the dataset (its header names delivered columns,
    /// its values as read before generalisation), matched row for row in the order read. Only
    /// these rows are delivered; the whole dataset is the population that `delta_presence` and a
    /// `k_map` without `population` count in.
    pub research_subset: Option<ResearchSubsetSpec>,
    /// δ-presence: in every class of the population, the share of rows that are delivered (in the
    /// research subset) lies between `min` and `max`.
    pub delta_presence: Option<DeltaPresenceSpec>,
    /// Sample uniqueness: at most this share of delivered rows in classes of one person (one row
    /// without a person column); the smallest classes are suppressed until it holds.
    pub sample_uniqueness: Option<f64>,
    /// Population uniqueness: at most `threshold` of the population the dataset samples unique on
    /// the delivered quasi-identifiers, as an estimator judges from the classes' sizes; the
    /// smallest classes are suppressed until it holds.
    pub population_uniqueness: Option<PopulationUniquenessSpec>,
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
    /// A best-effort search for lattices too large to search whole: stop after `nodes`
    /// transformations (reproducible) or `seconds`, deliver the best found, and report the gap to
    /// a lower bound of the optimum. Without it the search is exact, however long it takes.
    pub search_budget: Option<SearchBudgetSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchBudgetSpec {
    pub nodes: Option<u64>,
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResearchSubsetSpec {
    pub path: PathBuf,
    /// The file's field separator (default `,`).
    #[serde(default = "default_subset_delimiter")]
    pub delimiter: char,
}

fn default_subset_delimiter() -> char {
    ','
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeltaPresenceSpec {
    pub min: f64,
    pub max: f64,
}

/// `k_map`: k, and the population's size with the estimator of population class sizes and the
/// significance; without `population`, classes are counted in the dataset (the population) of
/// which only the `research_subset` is delivered.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KMapSpec {
    pub k: u32,
    /// Persons in the population the dataset is a sample of.
    pub population: Option<u64>,
    /// `poisson` or `zero-truncated-poisson` (default).
    #[serde(default)]
    pub estimator: KMapEstimator,
    /// The accepted probability that a class stands for fewer than k persons (default 0.01).
    #[serde(default = "default_k_map_significance")]
    pub significance: f64,
}

fn default_k_map_significance() -> f64 {
    0.01
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KMapEstimator {
    Poisson,
    #[default]
    ZeroTruncatedPoisson,
}

/// `population_uniqueness`: the bound, the population's size and the estimator.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PopulationUniquenessSpec {
    /// The largest share of the population that may be unique.
    pub threshold: f64,
    /// Persons in the population the dataset is a sample of.
    pub population: u64,
    /// `pitman`, `zayatz`, `snb` or `dankar` (default).
    #[serde(default)]
    pub estimator: UniquenessEstimator,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UniquenessEstimator {
    Pitman,
    Zayatz,
    Snb,
    #[default]
    Dankar,
}

/// `average_risk`: a bound alone, or with a bound on the rows at high risk.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum AverageRiskSpec {
    Average(f64),
    Bounds(AverageRiskBounds),
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AverageRiskBounds {
    /// The bound on the average risk.
    pub average: f64,
    /// A row's risk (1 / class size) above which it counts as at risk…
    pub highest: f64,
    /// …and the largest share of delivered rows that may be at risk.
    pub records_at_risk: f64,
}

/// The largest `m` of `set_valued`: the search packs an itemset's codes four to a 128-bit key.
pub const MAX_SET_VALUED_M: usize = 4;

/// k^m-anonymity of the set of codes each person holds in a column of an event dataset: whatever
/// m codes an attacker knows of a person, at least k persons hold them. The codes are generalised
/// along the column's `levels` or `hierarchy` (a cut of the hierarchy: every occurrence of a code
/// alike), and the persons still holding a rare set are suppressed from every table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetValuedSpec {
    /// The generalised column (with `levels` or `hierarchy`) whose codes make each person's set.
    pub column: String,
    /// At least this many persons hold any m codes released of a person.
    pub k: u32,
    /// How many codes of a person an attacker is assumed to know (1 to `MAX_SET_VALUED_M`).
    pub m: usize,
    /// Share of the dataset's persons that may be suppressed (0 to 1).
    #[serde(default)]
    pub suppression_limit: f64,
    /// (k, k^m)-anonymity: the dataset (one row per person, with `[datasets.privacy]`) whose
    /// classes the sets are counted within, so that a person's quasi-identifiers there and m of
    /// their codes still match k persons.
    pub within: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LDiversityKind {
    #[default]
    Distinct,
    Entropy,
    /// Recursive (c,ℓ)-diversity: the most frequent value rarer than c times the values beyond
    /// the ℓ − 1 most frequent.
    Recursive,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TClosenessKind {
    /// Equal ground distance between any two values.
    #[default]
    Equal,
    /// Ground distance from the sensitive column's hierarchy.
    Hierarchical,
    /// Ground distance from the values' order (numeric, else by text): |i − j| / (m − 1).
    Ordered,
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
    /// ARX's non-monotonic discernibility: kept classes |E|², suppressed rows × all rows.
    #[serde(rename = "discernibility-with-suppression")]
    DiscernibilityWithSuppression,
    /// ARX's loss metric: the domain share each value covers, geometric mean over columns.
    #[serde(rename = "loss")]
    Loss,
    /// Sum of the generalisation levels.
    #[serde(rename = "height")]
    Height,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Csv,
    Parquet,
    /// The person table `ehds-prep link` builds from the linked deliveries (linking permits only):
    /// `person_pseudonym`, each `[[linkage.attributes]]` by name, and `in_<source>` flags.
    Linked,
    /// A PostgreSQL query or table, read from one snapshot of the database for the whole run.
    Postgres,
}

/// How a PostgreSQL connection is protected (`sslmode`). Unlike libpq's `require`, every mode that
/// uses TLS verifies the server's certificate and name: identifying data never crosses a channel
/// an impostor could hold.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS (a unix socket, or a loopback address on the holder's own machine).
    Disable,
    /// TLS when the server offers it, verified; else plain.
    #[default]
    Prefer,
    /// TLS or no connection, verified.
    Require,
    /// `require`, as libpq names the mode that verifies the certificate and host name.
    VerifyFull,
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
    /// The decimal separator of float columns, `.` or `,` (a column may override it).
    #[serde(default = "default_decimal")]
    pub decimal: char,
    /// A quote that does not open a field (`U0"9`): an error naming its place (RFC 4180, the
    /// default), or literal text of the field.
    #[serde(default)]
    pub quote_in_field: QuoteInField,
    /// The longest quoted field accepted, in bytes: a quote left open would otherwise swallow the
    /// records after it into one field.
    #[serde(default = "default_max_quoted_field_bytes")]
    pub max_quoted_field_bytes: usize,
    /// PostgreSQL: the environment variable holding the connection string (libpq's
    /// `key=value` form or a `postgresql://` URL), never written in the permit.
    #[serde(default)]
    pub connection_env: Option<String>,
    /// PostgreSQL: a file holding the connection string, readable by its owner only.
    #[serde(default)]
    pub connection_file: Option<PathBuf>,
    /// PostgreSQL: the query whose rows are the extract (a `SELECT`; read only).
    #[serde(default)]
    pub query: Option<String>,
    /// PostgreSQL: the table whose rows are the extract, `schema.table` or `table`.
    #[serde(default)]
    pub table: Option<String>,
    /// PostgreSQL: whether the connection uses TLS.
    #[serde(default)]
    pub sslmode: SslMode,
    /// PostgreSQL: PEM certificates of the authorities the server's certificate is checked
    /// against, beside the system's.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
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
            decimal: default_decimal(),
            quote_in_field: QuoteInField::default(),
            max_quoted_field_bytes: default_max_quoted_field_bytes(),
            connection_env: None,
            connection_file: None,
            query: None,
            table: None,
            sslmode: SslMode::default(),
            sslrootcert: None,
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
fn default_decimal() -> char {
    '.'
}
fn default_date_format() -> String {
    "%Y-%m-%d".into()
}
fn default_datetime_format() -> String {
    "%Y-%m-%d %H:%M:%S".into()
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, JsonSchema)]
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
    /// A year alone (`YYYY`), as extracts write a partial date; delivered as an integer.
    Year,
    /// A year and month (`YYYYMM` or `YYYY-MM`); delivered as `YYYY-MM`.
    #[serde(rename = "year_month")]
    YearMonth,
    Boolean,
}

impl ColumnType {
    /// A date, a datetime or a partial date: what a person's keyed shift moves.
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            ColumnType::Date | ColumnType::Datetime | ColumnType::Year | ColumnType::YearMonth
        )
    }

    /// A year or a year and month.
    pub fn is_partial_date(self) -> bool {
        matches!(self, ColumnType::Year | ColumnType::YearMonth)
    }

    /// A permit's date for a column of this type (a cohort bound), as days since 1970-01-01:
    /// `YYYY-MM-DD`, or a partial date in its own form (the first day of its period).
    pub fn parse_day(self, text: &str) -> Option<i32> {
        use crate::kernels::values;
        match self {
            ColumnType::Year => values::parse_year(text),
            ColumnType::YearMonth => values::parse_year_month(text),
            _ => values::parse_date(text, "%Y-%m-%d"),
        }
    }
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
    /// The decimal separator of this float column (`.` or `,`), overriding the source's.
    pub decimal: Option<char>,
    /// Values of this column that mean "missing" (sentinels such as `1600-01-01`), read as null
    /// before any transformation, beside the source's `null_values` (in Parquet, compared with
    /// the value's text: `1600-01-01`, `0`).
    pub null_values: Option<Vec<String>>,
    /// Why a shifted date column may hold dates outside 1850–2199, or one date for half its rows
    /// (what a sentinel looks like); without it such a column stops the run.
    pub unusual_dates: Option<String>,
    /// The column this one derives from (`birth_date`, or `dataset.column` of another dataset):
    /// an observation start date that is the birth date, an age that is the birth date seen from
    /// another date. It may not release that column more finely than the column's own table.
    pub derives_from: Option<String>,
    /// A person-level attribute drawn from another dataset of the same persons (the first visit,
    /// whether they have a diabetes code): computed by the engine for each row's person, never
    /// read from the source. With `levels`, a quasi-identifier of the persons' profile.
    pub profile: Option<ProfileSpec>,
    /// Conditions on other columns of the row for this column's value to count: on a row that
    /// fails one, the value is taken as missing (PMSI's return code `NIR_RET` other than "0"
    /// marks a stay whose person could not be chained; `DAT_RET` a date that is not one).
    pub valid_when: Option<Vec<ConditionSpec>>,
    /// A shifted partial date (year, year_month): the date or datetime column of the same row it
    /// is the year or month of; it is delivered as the year (month) of that date once shifted.
    pub part_of: Option<String>,
    /// Why this date is delivered unshifted in a permit that shifts dates (a birth date released
    /// as a band, say): an unshifted date beside shifted ones of the same person can narrow the
    /// person's shift, so without a reason the permit is refused.
    pub unshifted: Option<String>,
    /// Identifier kind, for pseudonymised, person and composite columns.
    pub identifier: Option<IdentifierSpec>,
    pub pattern: Option<String>,
    /// The identifier's letters keep their case (systems whose identifiers differ by case alone);
    /// by default they are upper-cased. Not for NIRs.
    pub case_sensitive: Option<bool>,
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
    /// Numbers at or above `top` are coded `>=top` (ASCII); below `bottom`, `<bottom` (at every level).
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

/// A column of the same row and the values (as text, trimmed) it must hold.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    pub column: String,
    pub values: Vec<String>,
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

impl CodingSystem {
    /// The system's name, as a permit writes it.
    pub fn name(self) -> &'static str {
        match self {
            CodingSystem::Icd10 => "ICD-10",
            CodingSystem::Atc => "ATC",
            CodingSystem::SnomedCt => "SNOMED-CT",
            CodingSystem::Loinc => "LOINC",
            CodingSystem::InseeCog => "INSEE-COG",
        }
    }
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
    /// What draws a person's shift: the whole person (default), or, for a composite person, its
    /// first part alone, so that holders naming persons by that part alone (PMSI's NIR_ANO_17
    /// beside DCIR's BEN_NIR_PSA + BEN_RNG_GEM) shift the same person alike (twins then share
    /// their shift).
    #[serde(default)]
    pub keyed_on: ShiftKeyedOn,
}

/// What a person's date shift is drawn from.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShiftKeyedOn {
    #[default]
    Person,
    FirstPart,
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

/// Where a person-level attribute comes from: an aggregate of a column over the person's rows of
/// another dataset (those in its cohort).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    pub dataset: String,
    pub column: String,
    pub aggregate: Aggregate,
    /// For `has`: the codes or code prefixes one of the person's rows must start with.
    pub prefixes: Option<Vec<String>>,
}

/// How a person's rows make one value.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// The earliest date (a `date` column; null for a person without a row).
    First,
    /// The latest date.
    Last,
    /// Whether a row's code starts with one of `prefixes` (a `boolean` column).
    Has,
    /// How many of the person's rows hold a value in the column (an `integer` column, 0 for a
    /// person without one); the dataset must be `read_only`, or its rows would show the count.
    Count,
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

/// A cryptographic long-term key (CLK): the Bloom-filter encoding of a person's identifying
/// columns, as Data61's clkhash 0.18 makes it, delivered in one column.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClkSpec {
    /// The delivered column: the CLK in base64, as clkhash serialises it.
    pub name: String,
    /// The linkage schema, in clkhash's v3 JSON format.
    pub schema: PathBuf,
    /// The key of `[keys]` whose bytes are the CLK secret: one per permit, shared by the holders
    /// whose records are linked.
    pub key: String,
    /// One declared `string` column per feature of the schema, in its order (ignored features
    /// included); their text is encoded as clkhash reads a CSV cell, a missing value as "".
    pub columns: Vec<String>,
    /// A record the schema refuses (a value outside its format): `reject-row` (default), `null`
    /// or `fail`.
    pub on_invalid: Option<InvalidPolicy>,
}

/// One cohort condition; a row is in the cohort when it meets all of them. A null never meets one.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// A condition on persons: `column` is a column of this dataset of the permit, and a row is
    /// in the cohort when its person has a row there that meets the condition (every row, in
    /// every table, of the persons with a diabetes code in `conditions`).
    pub dataset: Option<String>,
    pub column: String,
    /// Inclusive lower bound (a date as `"YYYY-MM-DD"`, or a number, written as one or as text).
    #[serde(default, deserialize_with = "text_or_number")]
    #[schemars(with = "Option<Bound>")]
    pub from: Option<String>,
    /// Inclusive upper bound.
    #[serde(default, deserialize_with = "text_or_number")]
    #[schemars(with = "Option<Bound>")]
    pub to: Option<String>,
    /// The value must be one of these.
    pub values: Option<Vec<String>>,
    /// The value must start with one of these.
    pub prefixes: Option<Vec<String>>,
    /// Whether the condition reads the value as read (`raw`, the default) or as delivered, after
    /// the column's action (an ATC prefix on a column mapped from CIP13 codes); required on a
    /// mapped column, where the two differ.
    pub on: Option<CohortValue>,
}

/// A cohort bound as the permit writes it: text (a date, a year) or a number (`from = 1930`).
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Bound {
    Text(String),
    Integer(i64),
    Number(f64),
}

/// A bound written as text or as a TOML number, kept as its text.
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Bound>::deserialize(d)?.map(|b| match b {
        Bound::Text(t) => t,
        Bound::Integer(i) => i.to_string(),
        Bound::Number(n) => n.to_string(),
    }))
}

/// Which value of a column a cohort condition reads.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CohortValue {
    Raw,
    Delivered,
}

/// The JSON Schema of the permit file, for editors that validate TOML against a schema.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PermitSpec)).expect("a schema is JSON")
}

/// The linked person table's own columns, which attributes may not shadow.
pub const LINKED_PERSON: &str = "person_pseudonym";
