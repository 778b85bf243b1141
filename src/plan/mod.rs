//! Compiles a validated permit into a plan of small operators per dataset (read, type, filter, opt-out,
//! pseudonymise, generalise, write), with keys loaded and domain sub-keys derived.

pub mod birth;
pub mod opt_out;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::kernels::clk::{FeatureKeys, LinkageSchema};
use crate::kernels::dateshift::DateShifter;
use crate::kernels::identifier::{Checked, IdentifierKind, IdentifierRule};
use crate::kernels::keys::SecretKey;
use crate::kernels::levels::{Coding, LevelRule, ValueKind};
use crate::kernels::mapping::{Dictionary, Unmapped};
use crate::kernels::mask::MaskRule;
use crate::kernels::pseudonymise::Pseudonymiser;
use crate::kernels::tokens::Tokeniser;
use crate::kernels::values::parse_date;
use crate::permit::{
    Action, Aggregate, AverageRiskSpec, ClkSpec, CohortValue, ColumnSpec, ColumnType, DatasetSpec,
    FilterSpec, GeneraliseRule, IdentifierSpec, InvalidPolicy, KMapEstimator, LDiversityKind,
    MetricName, Permit, PrivacySpec, ResearchSubsetSpec, ShiftKeyedOn, SourceFormat, SourceSpec,
    TClosenessKind, UniquenessEstimator, UnmappedPolicy,
};
pub use crate::plan::opt_out::OptOut;
use crate::privacy::anonymise::{
    AnonymisationPlan, HierarchySource, QuasiIdentifier, SensitivePlan, SuppressedRows,
};
use crate::privacy::hierarchy::Hierarchy;
use crate::privacy::lattice::Budget;
use crate::privacy::subset::ResearchSubset;
use crate::privacy::table::{
    AverageRisk, DeltaPresence, Estimator, HighestRisk, KMap, LDiversity, Metric, Models,
    PopulationUniqueness, TCloseness,
};
use crate::source::SourceColumn;
use crate::source::inputs::{self, InputRecord};

/// A pseudonymisation domain, keyed. Only its fingerprint and context are ever written out.
pub struct Domain {
    pub name: String,
    pub context: String,
    pub key_name: String,
    /// Fingerprint of the holder's key (not of the derived sub-key), comparable across holders.
    pub key_fingerprint: String,
    pub pseudonymiser: Pseudonymiser,
}

pub struct Plan {
    pub permit: Permit,
    /// The files compiling the plan read (opt-out list, hierarchies, dictionaries), as read.
    pub inputs: Vec<InputRecord>,
    pub domains: BTreeMap<String, Domain>,
    pub opt_out: Option<OptOut>,
    pub date_shifter: Option<DateShifter>,
    /// Shifts are drawn from the first part of a composite person (`[date_shift] keyed_on`).
    pub shift_by_first_part: bool,
    pub tokeniser: Option<Tokeniser>,
    pub datasets: Vec<DatasetPlan>,
    /// The source files read for what datasets need of each other (a profile, a person-level
    /// cohort, the person of a join key), as each pass read them: recorded in the manifest, and
    /// compared with the same files' reads for their own delivery.
    pub scanned: std::sync::Mutex<Vec<InputRecord>>,
    /// The database of the permit's PostgreSQL sources (one snapshot for the whole run).
    pub database: Option<std::sync::Arc<crate::source::postgres::Database>>,
}

impl Plan {
    /// How many identifier parts draw a person's date shift: those of the permit's composite
    /// person, or 1 (one column, or a composite's first part by `keyed_on = "first_part"`).
    pub fn shift_key_parts(&self) -> usize {
        match self
            .permit
            .spec
            .datasets
            .iter()
            .find_map(|d| d.person_composite())
        {
            Some(x) if !self.shift_by_first_part => x.inputs.len(),
            _ => 1,
        }
    }
}

pub struct DatasetPlan {
    pub name: String,
    pub source: SourceSpec,
    pub files: Vec<PathBuf>,
    /// The run's database, for a PostgreSQL source.
    pub database: Option<std::sync::Arc<crate::source::postgres::Database>>,
    /// Columns read from the source, in declaration order, with their types and date formats.
    pub read: Vec<ReadColumn>,
    pub cohort: Vec<Filter>,
    /// Cohort conditions on delivered values; a filter's column is a position in `steps`.
    pub delivered_cohort: Vec<Filter>,
    /// Delivered date columns compared with their persons' birth dates.
    pub birth_echoes: Vec<birth::BirthEcho>,
    /// Position in `read` of the person column and how it is normalised, for the opt-out check;
    /// for a table that reaches its person through a join key, the position just after `read`,
    /// where the engine puts the person it finds.
    pub person: Option<(usize, IdentifierRule)>,
    /// How a table without a person column finds it: its parent's rows by join key.
    pub person_via: Option<PersonVia>,
    /// A person named by several columns (twins share BEN_NIR_PSA; BEN_RNG_GEM tells them apart):
    /// the parts' positions in `read` and rules; the engine joins their normal forms just after
    /// `read` (`identifier::join_parts`).
    pub person_parts: Vec<(usize, IdentifierRule)>,
    /// One step per delivered column, in delivery order.
    pub steps: Vec<Step>,
    /// Delivered free-text columns and the permit's reason for each.
    pub free_text_kept: Vec<(String, String)>,
    /// Columns the permit declares and drops (undeclared columns are not read at all).
    pub dropped: Vec<String>,
    /// The privacy models and quasi-identifiers, when the permit sets thresholds for this dataset.
    pub anonymisation: Option<AnonymisationPlan>,
    /// k^m-anonymity of the set of codes each person holds in one column (`set_valued`).
    pub set_valued: Option<SetValuedPlan>,
    /// Why the dataset may deliver no row (an empty delivery fails the run otherwise).
    pub allow_empty: Option<String>,
    /// The largest share of the cohort's rows that may be rejected (1: all but the last).
    pub max_rejected_share: f64,
    /// Read only for what other datasets need of it; never delivered.
    pub read_only: bool,
}

/// A set-valued attribute: the codes of `output` over each person's rows (persons told apart by the
/// delivered `person_output`), generalised along `source` to meet `model`.
pub struct SetValuedPlan {
    pub column: String,
    pub output: String,
    pub person_output: String,
    pub source: HierarchySource,
    pub model: crate::privacy::set_valued::Model,
    /// (k, k^m): the dataset (a position in the plan's) whose classes the sets are counted within.
    pub within: Option<usize>,
}

pub struct ReadColumn {
    pub name: String,
    pub column_type: ColumnType,
    /// How its text is written: the chrono format of a date or datetime, the decimal separator
    /// of a float.
    pub format: String,
    /// The column's own values meaning "missing", read as null.
    pub null_values: Vec<String>,
    /// Whether a shifted date may look like a sentinel (the permit says why).
    pub unusual_dates: bool,
    /// Columns of the row (positions in `read`) and the values one must hold for this column's
    /// value to count; otherwise it is missing.
    pub valid_when: Vec<(usize, HashSet<String>)>,
    /// A person-level attribute the engine computes from another dataset (not in the source).
    pub profile: Option<Box<ProfileColumn>>,
}

/// A person's attribute drawn from another dataset of the same persons: an aggregate of one of
/// its columns over the person's rows in its cohort.
pub struct ProfileColumn {
    /// The dataset (a position in the plan's datasets) and its column (a position in its `read`).
    pub dataset: usize,
    pub column: usize,
    pub aggregate: Aggregate,
    pub prefixes: Vec<String>,
    /// Person (normalised) → the earliest or latest day, or 1 for a person who has a code: built
    /// by one pass over the dataset the first time a batch needs it (the error, in words).
    pub values: std::sync::OnceLock<std::result::Result<HashMap<String, i32>, String>>,
}

impl DatasetPlan {
    /// The columns read from the source: the declared ones but those the engine computes.
    pub fn source_columns(&self) -> Vec<SourceColumn> {
        self.read
            .iter()
            .filter(|c| c.profile.is_none())
            .map(|c| SourceColumn {
                name: c.name.clone(),
                column_type: c.column_type,
                format: c.format.clone(),
                null_values: c.null_values.clone(),
            })
            .collect()
    }

    /// What an error about the dataset's source as a whole names: its first file, or the server of
    /// a PostgreSQL source.
    pub fn source_name(&self) -> PathBuf {
        match (self.files.first(), &self.database) {
            (Some(file), _) => file.clone(),
            (None, Some(database)) => database.server().into(),
            (None, None) => PathBuf::new(),
        }
    }

    /// Where the dataset's rows are read from.
    pub fn input(&self) -> crate::source::Input<'_> {
        crate::source::Input {
            spec: &self.source,
            files: &self.files,
            database: self.database.as_deref(),
        }
    }
}

pub enum Filter {
    Range {
        column: usize,
        from: Option<f64>,
        to: Option<f64>,
    },
    Values {
        column: usize,
        values: HashSet<String>,
    },
    Prefixes {
        column: usize,
        prefixes: Vec<String>,
    },
    Persons(Box<PersonCondition>),
}

impl DatasetPlan {
    /// The step that delivers the person as it is, or as its pseudonym or token (a composite
    /// person: the pseudonym of its parts).
    pub fn person_step(&self) -> Option<&Step> {
        let (person, _) = self.person.as_ref()?;
        person_step(&self.steps, *person, &self.person_parts)
    }
}

/// The step of `steps` that delivers the person at `person` (or made of `parts`).
pub fn person_step<'s>(
    steps: &'s [Step],
    person: usize,
    parts: &[(usize, IdentifierRule)],
) -> Option<&'s Step> {
    let inputs: Vec<usize> = match parts {
        [] => vec![person],
        _ => parts.iter().map(|(at, _)| *at).collect(),
    };
    steps.iter().find(|s| match s {
        Step::Keep { input, .. } => inputs == [*input],
        Step::Identifier(i) => i.inputs == inputs,
        _ => false,
    })
}

/// A table's person found through a join key: the person of the row of dataset `parent` (a
/// position in the plan's datasets) with the same key.
pub struct PersonVia {
    pub parent: usize,
    /// The key's columns, positions in this dataset's `read` and in the parent's.
    pub keys: Vec<usize>,
    pub parent_keys: Vec<usize>,
    /// Key (its columns' texts, joined) → the parent row's person (normalised), built by one pass
    /// over the parent the first time a batch needs it (the error of that pass, in words).
    pub persons: std::sync::OnceLock<std::result::Result<HashMap<String, String>, String>>,
}

/// The row's person (the dataset's `person`) has a row in dataset `dataset` (a position in the
/// plan's datasets) that meets `condition` (over that dataset's columns).
pub struct PersonCondition {
    pub dataset: usize,
    pub condition: Filter,
    /// The persons meeting it, as normalised identifiers: found by one pass over the dataset the
    /// first time a batch needs them (the error of that pass, in words).
    pub persons: std::sync::OnceLock<std::result::Result<HashSet<String>, String>>,
}

pub enum Step {
    Keep {
        input: usize,
        output: String,
    },
    /// A pseudonym or a reversible token of one identifier or a composite.
    Identifier(IdentifierStep),
    /// A CLK of the person's identifying columns, for fuzzy linkage.
    Clk(ClkStep),
    Generalise {
        input: usize,
        output: String,
        rule: Generalisation,
    },
    /// Dates moved by the keyed shift of the row's person. A partial date (`to` set) is the year
    /// or month of the row's `date` once shifted, null where the partial date itself is missing.
    Shift {
        input: usize,
        output: String,
        person: usize,
        person_rule: IdentifierRule,
        /// The column whose dates are moved: `input` itself, or the date a partial date is part of.
        date: usize,
        to: Option<Generalisation>,
    },
    Mask {
        input: usize,
        output: String,
        rule: MaskRule,
    },
    Map {
        input: usize,
        output: String,
        dictionary: Dictionary,
        unmapped: Unmapped,
    },
    /// A quasi-identifier at level 0 (pass 1) before the search sets its level: as text, or a date
    /// kept as a date until it is coded (`anonymise::Level0`).
    QuasiIdentifier {
        input: usize,
        output: String,
        /// For an age: the date it is computed at.
        age_at: Option<AgeReference>,
    },
}

impl Step {
    /// The domain a pseudonymised column is in, `[tokens]` for a tokenised one, `[clk]` for a
    /// CLK (so that `link` never passes a holder's encodings on to a researcher); None otherwise.
    pub fn protection_domain(&self) -> Option<&str> {
        match self {
            Step::Identifier(i) => Some(match &i.protection {
                Protection::Pseudonym { domain } => domain.as_str(),
                Protection::Token => crate::delivery::TOKEN_DOMAIN,
            }),
            Step::Clk(_) => Some(crate::delivery::CLK_DOMAIN),
            _ => None,
        }
    }

    /// How the delivered values read where the column's type alone does not say: the types rule
    /// of `docs/permit.md` (a column's type and form depend on the permit alone, never on the
    /// level a search chooses), recorded per column in the manifest.
    pub fn value_form(&self, read: &[ReadColumn]) -> Option<&'static str> {
        let unit = match self {
            Step::QuasiIdentifier { .. } => return Some(QUASI_IDENTIFIER_FORM),
            Step::Generalise { rule, .. } => *rule,
            Step::Keep { input, .. } | Step::Shift { input, .. } => {
                partial_unit(read[*input].column_type)?
            }
            _ => return None,
        };
        match unit {
            Generalisation::Year => Some("the year, an integer"),
            Generalisation::Month => Some("the month, as the date of its first day"),
            Generalisation::Prefix(_) => None,
        }
    }
}

/// The names of a step's input columns, joined by `` `+` `` (to be quoted as one): a person a
/// table reaches by its join key, read after the declared columns, has none of its own.
pub fn input_names(inputs: &[usize], read: &[ReadColumn]) -> String {
    inputs
        .iter()
        .map(|&i| read.get(i).map_or("the person (by join key)", |c| &c.name))
        .collect::<Vec<_>>()
        .join("`+`")
}

/// The form of a quasi-identifier's values, whatever level the search chooses.
pub const QUASI_IDENTIFIER_FORM: &str = "text at every level: the value or its level's label \
     (`A-B` from A to B inclusive, `[A, B)` between fractional bounds, `<A` and `>=B` beyond the \
     coding bounds, `YYYY-MM`, `YYYY-Qn`, `YYYY-Www` or `YYYY` for dates); `*` where withheld \
     (at the top level, where missing values go too, and on a suppressed row); null where the \
     source has no value, below the top level";

/// The date an age is computed at.
#[derive(Debug, Clone, Copy)]
pub enum AgeReference {
    /// A date or datetime column of the same row.
    Column(usize),
    /// A fixed date (days since 1970-01-01).
    Date(i32),
}

/// How an identifier is protected.
pub enum Protection {
    /// HMAC pseudonym in a domain.
    Pseudonym { domain: String },
    /// AES-SIV token that the token key's holder can reverse.
    Token,
}

/// A cryptographic long-term key of several source columns ([`crate::kernels::clk`]).
pub struct ClkStep {
    pub inputs: Vec<usize>,
    pub output: String,
    pub schema: LinkageSchema,
    pub keys: FeatureKeys,
    /// The linkage schema's file name and SHA-256, for the manifest.
    pub schema_file: String,
    pub schema_sha256: String,
    /// The CLK secret's fingerprint, for the manifest: CLKs of two secrets never match.
    pub key_fingerprint: String,
    pub on_invalid: InvalidPolicy,
}

pub struct IdentifierStep {
    pub inputs: Vec<usize>,
    pub rules: Vec<IdentifierRule>,
    pub protection: Protection,
    pub output: String,
    pub on_invalid: InvalidPolicy,
    pub on_missing: InvalidPolicy,
}

impl IdentifierStep {
    pub fn policy(&self, status: Checked) -> Option<InvalidPolicy> {
        match status {
            Checked::Valid => None,
            Checked::Invalid => Some(self.on_invalid),
            Checked::Missing => Some(self.on_missing),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Generalisation {
    Year,
    Month,
    Prefix(usize),
}

impl Step {
    pub fn output(&self) -> &str {
        match self {
            Step::Keep { output, .. }
            | Step::Generalise { output, .. }
            | Step::Shift { output, .. }
            | Step::Mask { output, .. }
            | Step::Map { output, .. }
            | Step::QuasiIdentifier { output, .. } => output,
            Step::Identifier(p) => &p.output,
            Step::Clk(c) => &c.output,
        }
    }

    /// Whether the step delivers source column `column` alone, through a fixed action.
    fn reads_only(&self, column: usize) -> bool {
        match self {
            Step::Keep { input, .. }
            | Step::Generalise { input, .. }
            | Step::Mask { input, .. }
            | Step::Map { input, .. } => *input == column,
            _ => false,
        }
    }

    /// A one-line account of what the step does, for the manifest and the report.
    pub fn describe(&self, read: &[ReadColumn]) -> String {
        match self {
            Step::Keep { input, .. } => format!("kept from `{}`", read[*input].name),
            Step::Clk(c) => format!(
                "CLK (Bloom-filter encoding, clkhash 0.18) of `{}` under linkage schema `{}` \
                 (SHA-256 {}) and the CLK secret of fingerprint {}, base64",
                input_names(&c.inputs, read),
                c.schema_file,
                c.schema_sha256,
                c.key_fingerprint
            ),
            Step::Identifier(p) => {
                let inputs = input_names(&p.inputs, read);
                let case = if p.rules.iter().any(IdentifierRule::preserves_case) {
                    "; letters' case kept"
                } else {
                    ""
                };
                let described = match &p.protection {
                    Protection::Pseudonym { domain } => {
                        format!("pseudonymised from `{inputs}` in domain `{domain}`")
                    }
                    Protection::Token => {
                        format!("reversible token (AES-SIV) of `{inputs}`")
                    }
                };
                described + case
            }
            Step::Shift {
                input, date, to, ..
            } => match to {
                None => format!(
                    "`{}` shifted by the person's keyed number of days",
                    read[*input].name
                ),
                Some(to) => format!(
                    "`{}` as the {} of `{}` shifted by the person's keyed number of days",
                    read[*input].name,
                    if matches!(to, Generalisation::Year) {
                        "year"
                    } else {
                        "year and month"
                    },
                    read[*date].name
                ),
            },
            Step::Mask { input, rule, .. } => {
                format!("`{}` {}", read[*input].name, rule.describe())
            }
            Step::Map {
                input, dictionary, ..
            } => format!(
                "`{}` mapped through dictionary {}",
                read[*input].name,
                dictionary
                    .file
                    .file_name()
                    .map_or_else(String::new, |f| f.to_string_lossy().to_string())
            ),
            Step::QuasiIdentifier { input, age_at, .. } => format!(
                "{}, generalised to the level the privacy search chooses",
                quasi_identifier_subject(*input, age_at, read)
            ),
            Step::Generalise { input, rule, .. } => {
                let r = match rule {
                    Generalisation::Year => "year".to_string(),
                    Generalisation::Month => "month".to_string(),
                    Generalisation::Prefix(n) => format!("first {n} characters"),
                };
                format!("generalised from `{}` to {r}", read[*input].name)
            }
        }
    }

    /// `describe`, with a quasi-identifier's level (in words) once the search has chosen it.
    pub fn describe_at_level(&self, read: &[ReadColumn], level: Option<&str>) -> String {
        match (self, level) {
            (Step::QuasiIdentifier { input, age_at, .. }, Some(level)) => format!(
                "{}, generalised to {level}",
                quasi_identifier_subject(*input, age_at, read)
            ),
            _ => self.describe(read),
        }
    }
}

/// "quasi-identifier `birth_date` as age at `admission_date`".
fn quasi_identifier_subject(
    input: usize,
    age_at: &Option<AgeReference>,
    read: &[ReadColumn],
) -> String {
    let age = match age_at {
        None => String::new(),
        Some(AgeReference::Column(c)) => format!(" as age at `{}`", read[*c].name),
        Some(AgeReference::Date(d)) => {
            format!(" as age at {}", crate::kernels::values::days_to_date(*d))
        }
    };
    format!("quasi-identifier `{}`{age}", read[input].name)
}

pub fn identifier_rule(spec: IdentifierSpec, pattern: Option<&str>) -> IdentifierRule {
    IdentifierRule::new(match spec {
        IdentifierSpec::Nir => IdentifierKind::Nir,
        IdentifierSpec::Any => IdentifierKind::Any,
        IdentifierSpec::Pseudonym => IdentifierKind::Pseudonym,
        IdentifierSpec::Pattern => IdentifierKind::Pattern(
            crate::kernels::identifier::compile_pattern(
                pattern.expect("validated: pattern present"),
            )
            .expect("validated: pattern compiles"),
        ),
    })
}

/// The identifier rule of a declared column: its kind and pattern, its letters' case kept if it
/// says so.
pub fn column_rule(c: &ColumnSpec) -> IdentifierRule {
    let rule = identifier_rule(c.identifier.unwrap_or_default(), c.pattern.as_deref());
    if c.case_sensitive == Some(true) {
        rule.preserving_case()
    } else {
        rule
    }
}

impl Plan {
    /// Loads keys, derives domains, reads the opt-out list and lays out each dataset's steps.
    pub fn compile(permit: Permit) -> Result<Plan> {
        check_paths(&permit)?;
        let spec = &permit.spec;
        let keys: BTreeMap<&str, SecretKey> = spec
            .keys
            .keys()
            .map(|name| Ok((name.as_str(), permit.load_key(name)?)))
            .collect::<Result<_>>()?;
        let format = spec.pseudonyms.format();
        let domains = spec
            .domains
            .iter()
            .map(|(name, d)| {
                let key = &keys[d.key.as_str()];
                let context = permit.domain_context(name);
                let domain = Domain {
                    name: name.clone(),
                    key_name: d.key.clone(),
                    key_fingerprint: key.fingerprint(),
                    pseudonymiser: Pseudonymiser::new(&key.domain_key(&context), format),
                    context,
                };
                (name.clone(), domain)
            })
            .collect();
        let mut inputs = Vec::new();
        let opt_out = spec
            .opt_out
            .as_ref()
            .map(|o| load_opt_out(&permit, o, &mut inputs))
            .transpose()?;
        let date_shifter = spec.date_shift.as_ref().map(|ds| {
            let d = &spec.domains[&ds.domain];
            let key = keys[d.key.as_str()].domain_key(&permit.domain_context(&ds.domain));
            DateShifter::new(key.expose(), ds.min_days, ds.max_days)
        });
        let tokeniser = spec
            .tokens
            .as_ref()
            .zip(permit.token_context())
            .map(|(t, context)| Tokeniser::new(&keys[t.key.as_str()], &context));
        let births = birth::birth_dates(spec);
        let database = spec
            .datasets
            .iter()
            .find(|d| d.source.format == SourceFormat::Postgres)
            .map(|d| crate::source::postgres::Database::open(&d.source, |p| permit.resolve(p)))
            .transpose()?
            .map(std::sync::Arc::new);
        let datasets = spec
            .datasets
            .iter()
            .enumerate()
            .map(|(di, d)| {
                let mut plan = compile_dataset(&permit, d, di, &keys, &mut inputs)?;
                plan.birth_echoes = birth::echoes(d, di, &births);
                if d.source.format == SourceFormat::Postgres {
                    plan.database = database.clone();
                }
                Ok(plan)
            })
            .collect::<Result<Vec<DatasetPlan>>>()?;
        check_within(&permit, &datasets)?;
        Ok(Plan {
            inputs,
            domains,
            opt_out,
            date_shifter,
            shift_by_first_part: spec
                .date_shift
                .as_ref()
                .is_some_and(|d| d.keyed_on == ShiftKeyedOn::FirstPart),
            tokeniser,
            datasets,
            permit,
            scanned: Default::default(),
            database,
        })
    }
}

impl Plan {
    /// The compiled plan in words, for `run --dry-run`: sources, cohort, column steps, keys by
    /// fingerprint only.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let spec = &self.permit.spec;
        let mut s = String::new();
        let p = &spec.permit;
        let _ = writeln!(
            s,
            "permit {} ({}): {} → {}",
            p.id, p.purpose, p.holder, p.recipient
        );
        let _ = writeln!(
            s,
            "output {} (batches of {} rows)",
            self.permit.output_dir().display(),
            spec.output.batch_rows
        );
        for d in self.domains.values() {
            let _ = writeln!(
                s,
                "domain {}: context \"{}\", key `{}` (fingerprint {})",
                d.name, d.context, d.key_name, d.key_fingerprint
            );
        }
        if let Some(o) = &self.opt_out {
            let _ = writeln!(
                s,
                "opt-out list {}: {} entries ({} not valid identifiers, kept as written)",
                o.file.display(),
                o.entries,
                o.invalid_entries
            );
        }
        if let Some(ds) = &spec.date_shift {
            let _ = writeln!(
                s,
                "date shift: domain `{}`, {}…{} days, never 0",
                ds.domain, ds.min_days, ds.max_days
            );
        }
        let _ = writeln!(
            s,
            "reversible tokens: {}",
            if spec.tokens.is_some() { "on" } else { "off" }
        );
        for (d, ds) in self.datasets.iter().zip(&spec.datasets) {
            let src = &d.source;
            let _ = writeln!(
                s,
                "dataset {}: {:?} {} (delimiter {:?}, encoding {:?}, header {})",
                d.name,
                src.format,
                d.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                src.delimiter,
                src.encoding,
                src.header
            );
            if let Some(person) = &ds.person {
                let _ = match ds.person_composite() {
                    Some(x) => writeln!(s, "  person: `{person}` ({})", x.inputs.join(" + ")),
                    None => writeln!(s, "  person: `{person}`"),
                };
            }
            for f in &ds.cohort {
                let rule = match (&f.from, &f.to, &f.values, &f.prefixes) {
                    (from, to, None, None) => format!(
                        "from {} to {}",
                        from.as_deref().unwrap_or("…"),
                        to.as_deref().unwrap_or("…")
                    ),
                    (_, _, Some(v), _) => format!("one of {v:?}"),
                    (_, _, _, Some(p)) => format!("starting with one of {p:?}"),
                };
                let on = match f.on {
                    Some(CohortValue::Delivered) => " (as delivered)",
                    _ => "",
                };
                let _ = writeln!(s, "  cohort: `{}`{on} {rule}", f.column);
            }
            for step in &d.steps {
                let _ = writeln!(s, "  column {}: {}", step.output(), step.describe(&d.read));
            }
            let dropped: String = d.dropped.iter().map(|c| format!("{c}, ")).collect();
            let _ = writeln!(
                s,
                "  dropped: {dropped}every column the permit does not declare"
            );
            for (column, reason) in &d.free_text_kept {
                let _ = writeln!(s, "  free text delivered: {column} ({reason})");
            }
        }
        s
    }
}

/// The tokeniser of a permit's `[tokens]` section, loading only the token key (the trusted third party
/// holds no other key of the permit).
pub fn tokeniser_for(permit: &Permit) -> Result<Tokeniser> {
    let spec = permit.spec.tokens.as_ref().ok_or_else(|| Error::Permit {
        file: permit.path.clone(),
        at: "tokens".into(),
        message: "the permit has no [tokens] section: it made no reversible tokens".into(),
    })?;
    let key = permit.load_key(&spec.key)?;
    let context = permit.token_context().expect("[tokens] is present");
    Ok(Tokeniser::new(&key, &context))
}

/// Checks, before anything is read, that the run cannot destroy what it reads: no input lies in
/// the output folder or in the hidden places beside it (a commit replaces them all), the audit log
/// and the exact linkage report are neither inputs nor inside the output (they would be replaced
/// with it), and no source file is listed twice in a dataset (its rows would be delivered twice).
pub fn check_paths(permit: &Permit) -> Result<()> {
    let fail = |at: String, message: String| Error::Permit {
        file: permit.path.clone(),
        at,
        message,
    };
    let output = crate::source::inputs::real_path(&permit.output_dir());
    let places = crate::delivery::OutputPlaces::of(&output)?;
    let replaced = [&output, &places.staging, &places.previous];
    let inputs: Vec<(String, PathBuf)> = permit
        .inputs()
        .into_iter()
        .map(|(what, path)| (what, crate::source::inputs::real_path(&path)))
        .collect();
    // What `link` writes in its work folder and reads back: made by this run, not replaced by it.
    let own_work = places.staging.join(crate::delivery::LINKAGE_WORK_DIR);
    for (what, path) in &inputs {
        if path.starts_with(&own_work) {
            continue;
        }
        if replaced.iter().any(|r| path.starts_with(r)) || path == &places.lock {
            return Err(fail(
                "output.dir".into(),
                format!(
                    "a run replaces {} and the hidden folders beside it, which hold `{what}` ({}); \
                     write the delivery to a folder of its own",
                    output.display(),
                    path.display()
                ),
            ));
        }
        if path.is_dir() && output.starts_with(path) {
            return Err(fail(
                "output.dir".into(),
                format!(
                    "lies inside `{what}` ({}); write the delivery elsewhere",
                    path.display()
                ),
            ));
        }
    }
    let spec = &permit.spec;
    let written = [
        ("output.audit_log", spec.output.audit_log.as_ref()),
        (
            "linkage.exact_report",
            spec.linkage.as_ref().and_then(|l| l.exact_report.as_ref()),
        ),
    ];
    for (at, path) in written {
        let Some(path) = path else { continue };
        let path = crate::source::inputs::real_path(&permit.resolve(path));
        if replaced.iter().any(|r| path.starts_with(r)) || path == places.lock {
            return Err(fail(
                at.into(),
                format!(
                    "is inside the output {}, which a rerun replaces; keep it outside the delivery",
                    output.display()
                ),
            ));
        }
        if let Some((what, _)) = inputs.iter().find(|(_, input)| input == &path) {
            return Err(fail(at.into(), format!("is `{what}`, which the run reads")));
        }
    }
    for di in 0..spec.datasets.len() {
        let prefix = format!("datasets[{di}].source.files[");
        let files: Vec<&PathBuf> = inputs
            .iter()
            .filter(|(what, _)| what.starts_with(&prefix))
            .map(|(_, path)| path)
            .collect();
        for (i, file) in files.iter().enumerate() {
            if let Some(j) = files[..i].iter().position(|f| f == file) {
                return Err(fail(
                    format!("datasets[{di}].source.files"),
                    format!("files [{j}] and [{i}] are the same file; each is read once"),
                ));
            }
        }
    }
    Ok(())
}

fn load_opt_out(
    permit: &Permit,
    spec: &crate::permit::OptOutSpec,
    inputs: &mut Vec<InputRecord>,
) -> Result<OptOut> {
    let rules = match &spec.parts {
        // Each part as the person columns of that name spell it (validated: all alike).
        Some(parts) => {
            let d = permit
                .spec
                .datasets
                .iter()
                .find(|d| d.person_composite().is_some())
                .expect("validated: a dataset whose person is these parts");
            parts
                .iter()
                .map(|p| column_rule(&d.columns[position(d, p)]))
                .collect()
        }
        None => {
            let rule = identifier_rule(spec.identifier, spec.pattern.as_deref());
            vec![match spec.case_sensitive {
                Some(true) => rule.preserving_case(),
                _ => rule,
            }]
        }
    };
    let file = permit.resolve(&spec.file);
    let (bytes, record) = inputs::read_whole(&file, "opt-out list")?;
    inputs.push(record);
    let separator = spec.separator.unwrap_or(';');
    OptOut::parse(&bytes, &file, &rules, separator, spec.on_invalid)
}

/// A column's position (in `read`, or just after it) and how its identifiers are normalised.
type RuledColumn = (usize, IdentifierRule);

/// The dataset's person: its person column, the parts of its composite person (joined by the
/// engine just after the columns read), or the person its join key finds in another dataset (put
/// there too, normalised by the parent's rule).
fn compile_person(
    permit: &Permit,
    d: &DatasetSpec,
) -> (Option<RuledColumn>, Vec<RuledColumn>, Option<PersonVia>) {
    if let Some(via) = &d.person_via {
        let datasets = &permit.spec.datasets;
        let parent = datasets
            .iter()
            .position(|x| x.name == via.dataset)
            .expect("validated: a dataset of the permit");
        let of = &datasets[parent];
        let plan = PersonVia {
            parent,
            keys: via.keys.iter().map(|k| position(d, k)).collect(),
            parent_keys: via.keys.iter().map(|k| position(of, k)).collect(),
            persons: std::sync::OnceLock::new(),
        };
        return (
            Some((d.columns.len(), person_rule(of))),
            Vec::new(),
            Some(plan),
        );
    }
    let columns = d.person_columns();
    match columns.as_slice() {
        [] => (None, Vec::new(), None),
        [one] if d.person_composite().is_none() => {
            let at = position(d, one);
            (Some((at, column_rule(&d.columns[at]))), Vec::new(), None)
        }
        parts => {
            let parts = parts
                .iter()
                .map(|p| position(d, p))
                .map(|at| (at, column_rule(&d.columns[at])))
                .collect();
            (Some((d.columns.len(), person_rule(d))), parts, None)
        }
    }
}

/// Where a declared column is among the dataset's columns.
fn position(d: &DatasetSpec, name: &str) -> usize {
    d.columns
        .iter()
        .position(|c| c.name == name)
        .expect("validated: declared column")
}

/// How the person of dataset `d` is normalised: by its person column's rule, or, for a composite
/// person, taken as the engine joined it.
fn person_rule(d: &DatasetSpec) -> IdentifierRule {
    match (d.person_composite(), &d.person) {
        (Some(_), _) => IdentifierRule::new(IdentifierKind::Joined),
        (None, Some(p)) => column_rule(&d.columns[position(d, p)]),
        (None, None) => unreachable!("validated: the dataset names its person"),
    }
}

/// The operator of one declared column (none for a dropped column); a mapped column's dictionary
/// is read here and recorded among the inputs.
fn compile_step(
    permit: &Permit,
    d: &DatasetSpec,
    i: usize,
    c: &ColumnSpec,
    person: Option<&(usize, IdentifierRule)>,
    inputs: &mut Vec<InputRecord>,
) -> Result<Option<Step>> {
    let index = |name: &str| position(d, name);
    let output = c.output_name().to_string();
    let step = match c.action {
        Action::Drop => return Ok(None),
        Action::Keep => Step::Keep { input: i, output },
        Action::Pseudonymise | Action::Tokenise => Step::Identifier(IdentifierStep {
            inputs: vec![i],
            rules: vec![column_rule(c)],
            protection: match c.action {
                Action::Tokenise => Protection::Token,
                _ => Protection::Pseudonym {
                    domain: c.domain.clone().expect("validated: domain present"),
                },
            },
            output,
            on_invalid: c.on_invalid.unwrap_or(InvalidPolicy::RejectRow),
            on_missing: c.on_missing.unwrap_or(InvalidPolicy::RejectRow),
        }),
        Action::Shift => {
            let (person, rule) = person.expect("validated: person column");
            Step::Shift {
                input: i,
                output,
                person: *person,
                person_rule: rule.clone(),
                date: c.part_of.as_deref().map_or(i, index),
                to: partial_unit(c.column_type),
            }
        }
        Action::Mask => Step::Mask {
            input: i,
            output,
            rule: MaskRule::Mask {
                first: c.keep_first.unwrap_or(0),
                last: c.keep_last.unwrap_or(0),
                with: c.mask_char.unwrap_or('*'),
            },
        },
        Action::Replace => Step::Mask {
            input: i,
            output,
            rule: MaskRule::Replace(c.value.clone().expect("validated: value present")),
        },
        Action::Blank => Step::Mask {
            input: i,
            output,
            rule: MaskRule::Blank,
        },
        Action::Map => {
            let file = permit.resolve(
                c.dictionary
                    .as_ref()
                    .expect("validated: dictionary present"),
            );
            let role = format!("dictionary of {}.{}", d.name, c.name);
            let (bytes, record) = inputs::read_whole(&file, &role)?;
            inputs.push(record);
            Step::Map {
                input: i,
                output,
                dictionary: Dictionary::parse(&bytes, &file)?,
                unmapped: match c.on_unmapped.unwrap_or_default() {
                    UnmappedPolicy::Fail => Unmapped::Fail,
                    UnmappedPolicy::Null => Unmapped::Null,
                    UnmappedPolicy::Fallback => {
                        Unmapped::Fallback(c.fallback.clone().expect("validated: fallback present"))
                    }
                },
            }
        }
        Action::Generalise if c.is_quasi_identifier() => {
            let age_at =
                c.age_at
                    .as_ref()
                    .map(|a| match d.columns.iter().position(|r| &r.name == a) {
                        Some(column) => AgeReference::Column(column),
                        None => {
                            AgeReference::Date(parse_date(a, "%Y-%m-%d").expect("validated date"))
                        }
                    });
            Step::QuasiIdentifier {
                input: i,
                output,
                age_at,
            }
        }
        Action::Generalise => {
            let rule = match c.rule.expect("validated: rule present") {
                GeneraliseRule::Year => Generalisation::Year,
                GeneraliseRule::Month => Generalisation::Month,
                GeneraliseRule::Prefix => {
                    Generalisation::Prefix(c.prefix.expect("validated: prefix present"))
                }
            };
            Step::Generalise {
                input: i,
                output,
                rule,
            }
        }
    };
    Ok(Some(step))
}

/// Where a profile attribute's values come from.
fn compile_profile(permit: &Permit, p: &crate::permit::ProfileSpec) -> Box<ProfileColumn> {
    let datasets = &permit.spec.datasets;
    let dataset = datasets
        .iter()
        .position(|x| x.name == p.dataset)
        .expect("validated: a dataset of the permit");
    Box::new(ProfileColumn {
        dataset,
        column: position(&datasets[dataset], &p.column),
        aggregate: p.aggregate,
        prefixes: p.prefixes.clone().unwrap_or_default(),
        values: std::sync::OnceLock::new(),
    })
}

/// The period a partial date column holds, which its delivered values are generalised to.
pub fn partial_unit(t: ColumnType) -> Option<Generalisation> {
    match t {
        ColumnType::Year => Some(Generalisation::Year),
        ColumnType::YearMonth => Some(Generalisation::Month),
        _ => None,
    }
}

/// A CLK step: its linkage schema read (and recorded as an input), one column per feature, and
/// the features' keys derived from the permit's key (loaded with the others).
fn compile_clk(
    permit: &Permit,
    d: &DatasetSpec,
    x: &ClkSpec,
    keys: &BTreeMap<&str, SecretKey>,
    inputs: &mut Vec<InputRecord>,
) -> Result<ClkStep> {
    let path = permit.resolve(&x.schema);
    let role = format!("linkage schema of {}.{}", d.name, x.name);
    let (bytes, record) = inputs::read_whole(&path, &role)?;
    let schema_sha256 = record.sha256.clone();
    inputs.push(record);
    let refuse = |message: String| Error::Permit {
        file: permit.path.clone(),
        at: format!("datasets.{}.clk.{}", d.name, x.name),
        message,
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| refuse(format!("linkage schema {}: not UTF-8", path.display())))?;
    let schema = LinkageSchema::from_json(&text)
        .map_err(|e| refuse(format!("linkage schema {}: {e}", path.display())))?;
    if schema.features.len() != x.columns.len() {
        return Err(refuse(format!(
            "the linkage schema has {} features ({}) and `columns` names {}: give one column per \
             feature, in the schema's order, ignored features included",
            schema.features.len(),
            schema
                .features
                .iter()
                .map(|f| f.identifier.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            x.columns.len()
        )));
    }
    let secret = &keys[x.key.as_str()];
    let key_fingerprint = secret.fingerprint();
    let keys = schema.keys(secret.expose());
    Ok(ClkStep {
        key_fingerprint,
        inputs: x.columns.iter().map(|c| position(d, c)).collect(),
        output: x.name.clone(),
        schema,
        keys,
        schema_file: path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().to_string()),
        schema_sha256,
        on_invalid: x.on_invalid.unwrap_or(InvalidPolicy::RejectRow),
    })
}

fn compile_dataset(
    permit: &Permit,
    d: &DatasetSpec,
    di: usize,
    keys: &BTreeMap<&str, SecretKey>,
    inputs: &mut Vec<InputRecord>,
) -> Result<DatasetPlan> {
    let read: Vec<ReadColumn> = d
        .columns
        .iter()
        .map(|c| ReadColumn {
            name: c.name.clone(),
            column_type: c.column_type,
            format: match c.column_type {
                ColumnType::Float => c.decimal.unwrap_or(d.source.decimal).to_string(),
                ColumnType::Datetime => c
                    .format
                    .clone()
                    .unwrap_or_else(|| d.source.datetime_format.clone()),
                _ => c
                    .format
                    .clone()
                    .unwrap_or_else(|| d.source.date_format.clone()),
            },
            null_values: c.null_values.clone().unwrap_or_default(),
            unusual_dates: c.unusual_dates.is_some(),
            valid_when: c
                .valid_when
                .iter()
                .flatten()
                .map(|w| {
                    let values = w.values.iter().map(|v| v.trim().to_string()).collect();
                    (position(d, &w.column), values)
                })
                .collect(),
            profile: c.profile.as_ref().map(|p| compile_profile(permit, p)),
        })
        .collect();
    let index = |name: &str| position(d, name);
    let (person, person_parts, person_via) = compile_person(permit, d);
    let mut steps = Vec::new();
    for (i, c) in d.columns.iter().enumerate() {
        steps.extend(compile_step(permit, d, i, c, person.as_ref(), inputs)?);
    }
    if let (Some(via), Some((at, rule))) = (&d.person_via, &person)
        && let (Some(name), Some(domain)) = (&via.deliver_as, &via.domain)
    {
        steps.push(Step::Identifier(IdentifierStep {
            inputs: vec![*at],
            rules: vec![rule.clone()],
            protection: Protection::Pseudonym {
                domain: domain.clone(),
            },
            output: name.clone(),
            on_invalid: InvalidPolicy::RejectRow,
            on_missing: InvalidPolicy::RejectRow,
        }));
    }
    for x in &d.clks {
        steps.push(Step::Clk(compile_clk(permit, d, x, keys, inputs)?));
    }
    for x in &d.composites {
        let inputs: Vec<usize> = x.inputs.iter().map(|n| index(n)).collect();
        steps.push(Step::Identifier(IdentifierStep {
            rules: inputs.iter().map(|&i| column_rule(&d.columns[i])).collect(),
            inputs,
            protection: Protection::Pseudonym {
                domain: x.domain.clone(),
            },
            output: x.name.clone(),
            on_invalid: x.on_invalid.unwrap_or(InvalidPolicy::RejectRow),
            on_missing: x.on_missing.unwrap_or(InvalidPolicy::RejectRow),
        }));
    }
    let (delivered, raw): (Vec<&FilterSpec>, Vec<&FilterSpec>) = d
        .cohort
        .iter()
        .partition(|f| f.on == Some(CohortValue::Delivered));
    let cohort = raw
        .into_iter()
        .map(|f| match &f.dataset {
            None => compile_filter(f, index(&f.column), &d.columns[index(&f.column)]),
            Some(name) => {
                let datasets = &permit.spec.datasets;
                let dataset = datasets.iter().position(|x| &x.name == name);
                let of = &datasets[dataset.expect("validated: a dataset of the permit")];
                let column = position(of, &f.column);
                Filter::Persons(Box::new(PersonCondition {
                    dataset: dataset.expect("found above"),
                    condition: compile_filter(f, column, &of.columns[column]),
                    persons: std::sync::OnceLock::new(),
                }))
            }
        })
        .collect();
    let delivered_cohort = delivered
        .into_iter()
        .map(|f| {
            let column = index(&f.column);
            let step = steps
                .iter()
                .position(|s| s.reads_only(column))
                .expect("validated: a delivered column of a fixed action");
            compile_filter(f, step, &d.columns[column])
        })
        .collect();
    let free_text_kept = d
        .columns
        .iter()
        .filter(|c| c.column_type == ColumnType::Text && c.action != Action::Drop)
        .map(|c| {
            (
                c.output_name().to_string(),
                c.reason.clone().expect("validated: reason present"),
            )
        })
        .collect();
    // The step delivering the person: what privacy classes and code sets count persons by.
    let delivered_person = person
        .as_ref()
        .and_then(|(at, _)| person_step(&steps, *at, &person_parts));
    let anonymisation = d
        .privacy
        .as_ref()
        .map(|p| compile_privacy(permit, d, p, delivered_person, di, inputs))
        .transpose()?;
    let set_valued = d
        .set_valued
        .as_ref()
        .map(|sv| compile_set_valued(permit, d, sv, delivered_person, di, inputs))
        .transpose()?;
    Ok(DatasetPlan {
        name: d.name.clone(),
        source: d.source.clone(),
        files: d.source.files.iter().map(|f| permit.resolve(f)).collect(),
        database: None,
        read,
        cohort,
        delivered_cohort,
        birth_echoes: Vec::new(),
        person,
        person_via,
        person_parts,
        steps,
        free_text_kept,
        dropped: d
            .columns
            .iter()
            .filter(|c| c.action == Action::Drop)
            .map(|c| c.name.clone())
            .collect(),
        anonymisation,
        set_valued,
        allow_empty: d.allow_empty.clone(),
        max_rejected_share: d.max_rejected_share.unwrap_or(1.0),
        read_only: d.read_only.is_some(),
    })
}

fn hierarchy_source(
    permit: &Permit,
    c: &ColumnSpec,
    file: Option<&PathBuf>,
    levels: Option<&Vec<String>>,
    role: String,
    inputs: &mut Vec<InputRecord>,
) -> Result<HierarchySource> {
    if let Some(file) = file {
        let path = permit.resolve(file);
        let (bytes, record) = inputs::read_whole(&path, &role)?;
        inputs.push(record);
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::input(&path, "file", "hierarchy file is not UTF-8"))?;
        let hierarchy = Hierarchy::parse_csv(&text, c.hierarchy_delimiter.unwrap_or(';'), &path)?;
        return Ok(HierarchySource::File { path, hierarchy });
    }
    let Some(levels) = levels else {
        return Ok(HierarchySource::Values);
    };
    let kind = match c.column_type {
        _ if c.age_at.is_some() => ValueKind::Number,
        ColumnType::Date | ColumnType::Datetime => ValueKind::Date,
        ColumnType::Integer | ColumnType::Float => ValueKind::Number,
        _ => ValueKind::Text,
    };
    Ok(HierarchySource::Levels {
        rules: levels
            .iter()
            .map(|l| LevelRule::parse(l).expect("validated level"))
            .collect(),
        coding: Coding {
            bottom: c.bottom,
            top: c.top,
        },
        kind,
    })
}

/// A set-valued attribute counted within another dataset's classes is matched to them by the
/// persons as both deliver them: in the same pseudonym domain (or both tokenised).
fn check_within(permit: &Permit, datasets: &[DatasetPlan]) -> Result<()> {
    for (di, d) in datasets.iter().enumerate() {
        let Some(w) = d.set_valued.as_ref().and_then(|sv| sv.within) else {
            continue;
        };
        let domain = d.person_step().and_then(Step::protection_domain);
        let theirs = datasets[w].person_step().and_then(Step::protection_domain);
        if domain.is_none() || domain != theirs {
            return Err(Error::Permit {
                file: permit.path.clone(),
                at: format!("datasets[{di}].set_valued.within"),
                message: format!(
                    "`{}` and `{}` must deliver their person pseudonymised in the same domain \
                     (or both tokenised): the sets are matched to the classes by it",
                    d.name, datasets[w].name
                ),
            });
        }
    }
    Ok(())
}

/// The set-valued attribute of dataset `d`; `person_step` delivers its person (the sets gather a
/// person's rows through that column).
fn compile_set_valued(
    permit: &Permit,
    d: &DatasetSpec,
    sv: &crate::permit::SetValuedSpec,
    person_step: Option<&Step>,
    di: usize,
    inputs: &mut Vec<InputRecord>,
) -> Result<SetValuedPlan> {
    let c = d
        .columns
        .iter()
        .find(|c| c.name == sv.column)
        .expect("validated: declared");
    let Some(person) = person_step else {
        return Err(Error::Permit {
            file: permit.path.clone(),
            at: format!("datasets[{di}].set_valued"),
            message: "the codes are gathered per person through the delivered person column: \
                      pseudonymise (or tokenise) the dataset's person"
                .into(),
        });
    };
    Ok(SetValuedPlan {
        column: c.name.clone(),
        output: c.output_name().to_string(),
        person_output: person.output().to_string(),
        source: hierarchy_source(
            permit,
            c,
            c.hierarchy.as_ref(),
            c.levels.as_ref(),
            format!("hierarchy of {}.{}", d.name, c.name),
            inputs,
        )?,
        model: crate::privacy::set_valued::Model {
            k: sv.k,
            m: sv.m,
            suppression_limit: sv.suppression_limit,
        },
        within: sv.within.as_ref().map(|w| {
            permit
                .spec
                .datasets
                .iter()
                .position(|x| &x.name == w)
                .expect("validated: a dataset")
        }),
    })
}

/// The privacy models of dataset `d`; `person_step` delivers its person (classes count persons
/// through that column).
fn compile_privacy(
    permit: &Permit,
    d: &DatasetSpec,
    p: &PrivacySpec,
    person_step: Option<&Step>,
    di: usize,
    inputs: &mut Vec<InputRecord>,
) -> Result<AnonymisationPlan> {
    let fail = |at: String, message: String| Error::Permit {
        file: permit.path.clone(),
        at,
        message,
    };
    let mut quasi_identifiers = Vec::new();
    for (ci, c) in d.columns.iter().enumerate() {
        if !c.is_quasi_identifier() {
            continue;
        }
        let source = hierarchy_source(
            permit,
            c,
            c.hierarchy.as_ref(),
            c.levels.as_ref(),
            format!("hierarchy of {}.{}", d.name, c.name),
            inputs,
        )?;
        let top = (source.height() - 1) as u8;
        for (field, level) in [("level", c.level), ("max_level", c.max_level)] {
            if let Some(l) = level
                && l > top
            {
                return Err(fail(
                    format!("datasets[{di}].columns[{ci}].{field}"),
                    format!("is {l}, but the hierarchy's levels go from 0 to {top}"),
                ));
            }
        }
        quasi_identifiers.push(QuasiIdentifier {
            column: c.name.clone(),
            output: c.output_name().to_string(),
            min: c.level.unwrap_or(0),
            max: c.level.or(c.max_level).unwrap_or(top),
            source,
            identifying: c.identifier.is_some() || d.person_columns().contains(&c.name.as_str()),
        });
    }
    let sensitive = match &p.sensitive {
        Some(name) => {
            let c = d
                .columns
                .iter()
                .find(|c| &c.name == name)
                .expect("validated: declared");
            Some(SensitivePlan {
                identifying: c.identifier.is_some()
                    || d.person_columns().contains(&c.name.as_str()),
                output: c.output_name().to_string(),
                source: hierarchy_source(
                    permit,
                    c,
                    p.sensitive_hierarchy.as_ref(),
                    p.sensitive_levels.as_ref(),
                    format!("sensitive hierarchy of {}.{}", d.name, c.name),
                    inputs,
                )?,
            })
        }
        None => None,
    };
    let person_output = match person_step {
        Some(s) => Some(s.output().to_string()),
        None if !d.has_person() => None,
        None => {
            let person = match (&d.person, &d.person_via) {
                (Some(person), _) => format!("`{person}`"),
                (None, via) => format!(
                    "the person of `{}` (person_via.deliver_as)",
                    via.as_ref().expect("a person").dataset
                ),
            };
            return Err(fail(
                format!("datasets[{di}].privacy"),
                format!(
                    "classes count persons through the delivered person column: pseudonymise (or tokenise) {person}"
                ),
            ));
        }
    };
    Ok(AnonymisationPlan {
        quasi_identifiers,
        sensitive,
        person_output,
        models: Models {
            k: p.k,
            l_diversity: p.l.map(|l| match p.l_diversity {
                LDiversityKind::Distinct => LDiversity::Distinct(l as u32),
                LDiversityKind::Entropy => LDiversity::Entropy(l),
                LDiversityKind::Recursive => LDiversity::Recursive {
                    c: p.c.expect("validated: recursive ℓ-diversity has c"),
                    l: l as u32,
                },
            }),
            t_closeness: p.t.map(|t| match p.t_closeness {
                TClosenessKind::Equal => TCloseness::Equal(t),
                TClosenessKind::Hierarchical => TCloseness::Hierarchical(t),
                TClosenessKind::Ordered => TCloseness::Ordered(t),
            }),
            average_risk: p.average_risk.map(|a| match a {
                AverageRiskSpec::Average(average) => AverageRisk {
                    average,
                    highest: None,
                },
                AverageRiskSpec::Bounds(b) => AverageRisk {
                    average: b.average,
                    highest: Some(HighestRisk {
                        risk: b.highest,
                        records_at_risk: b.records_at_risk,
                    }),
                },
            }),
            sample_uniqueness: p.sample_uniqueness,
            population_uniqueness: p.population_uniqueness.map(|u| PopulationUniqueness {
                threshold: u.threshold,
                population: u.population,
                estimator: match u.estimator {
                    UniquenessEstimator::Pitman => Estimator::Pitman,
                    UniquenessEstimator::Zayatz => Estimator::Zayatz,
                    UniquenessEstimator::Snb => Estimator::Snb,
                    UniquenessEstimator::Dankar => Estimator::Dankar,
                },
            }),
            k_map: p.k_map.and_then(|m| {
                Some(KMap {
                    k: m.k,
                    population: m.population?,
                    significance: m.significance,
                    zero_truncated: m.estimator == KMapEstimator::ZeroTruncatedPoisson,
                })
            }),
            population_k: p.k_map.filter(|m| m.population.is_none()).map(|m| m.k),
            delta_presence: p.delta_presence.map(|d| DeltaPresence {
                min: d.min,
                max: d.max,
            }),
            suppression_limit: p.suppression_limit,
        },
        metric: match p.metric {
            MetricName::Entropy => Metric::NueMono,
            MetricName::EntropyWithSuppression => Metric::Nue,
            MetricName::Discernibility => Metric::Discernibility,
            MetricName::Aecs => Metric::Aecs,
            MetricName::Precision => Metric::Precision,
            MetricName::DiscernibilityWithSuppression => Metric::DiscernibilityWithSuppression,
            MetricName::Loss => Metric::Loss,
            MetricName::Height => Metric::Height,
        },
        coverage: coverage(permit, d),
        subset: p
            .research_subset
            .as_ref()
            .map(|r| research_subset(permit, d, r, inputs))
            .transpose()?,
        budget: p.search_budget.map_or_else(Default::default, |b| Budget {
            nodes: b.nodes,
            seconds: b.seconds,
        }),
        suppressed: match p.suppressed {
            crate::permit::SuppressedRows::Remove => SuppressedRows::Remove,
            crate::permit::SuppressedRows::Blank => SuppressedRows::Blank,
        },
        risk_threshold: p.risk_threshold.unwrap_or(0.2),
    })
}

/// Reads `d`'s research subset file (recorded among the inputs); every column it names must be
/// delivered.
fn research_subset(
    permit: &Permit,
    d: &DatasetSpec,
    spec: &ResearchSubsetSpec,
    inputs: &mut Vec<InputRecord>,
) -> Result<std::sync::Arc<ResearchSubset>> {
    let path = permit.resolve(&spec.path);
    let (bytes, record) = inputs::read_whole(&path, &format!("research subset of {}", d.name))?;
    inputs.push(record);
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::input(&path, "file", "is not UTF-8 text".to_string()))?;
    let subset = ResearchSubset::parse(&text, spec.delimiter, &path)?;
    let delivered: Vec<&str> = d.columns.iter().map(|c| c.output_name()).collect();
    if let Some(unknown) = subset
        .columns
        .iter()
        .find(|c| !delivered.contains(&c.as_str()))
    {
        return Err(Error::input(
            &path,
            "line 1",
            format!(
                "names `{unknown}`, which is not a delivered column of `{}`",
                d.name
            ),
        ));
    }
    Ok(std::sync::Arc::new(subset))
}

/// What the privacy models of `d` cover: its quasi-identifiers (a profile attribute with its
/// source) and sensitive attribute; and every delivered date or code column of the delivery they do not, with how it is
/// delivered.
fn coverage(permit: &Permit, d: &DatasetSpec) -> crate::privacy::anonymise::Coverage {
    let sensitive = d.privacy.as_ref().and_then(|p| p.sensitive.as_deref());
    let mut covers: Vec<String> = d
        .columns
        .iter()
        .filter(|c| c.is_quasi_identifier())
        .map(|c| match &c.profile {
            None => format!("{}.{}", d.name, c.name),
            Some(p) => format!(
                "{}.{} ({} of {}.{})",
                d.name,
                c.name,
                format!("{:?}", p.aggregate).to_lowercase(),
                p.dataset,
                p.column
            ),
        })
        .collect();
    covers.extend(sensitive.map(|s| format!("{}.{s} (sensitive)", d.name)));
    let mut not_covered = Vec::new();
    for x in permit
        .spec
        .datasets
        .iter()
        .filter(|x| x.read_only.is_none())
    {
        for c in &x.columns {
            let dated_or_coded =
                c.column_type.is_temporal() || c.coding.is_some() || c.action == Action::Map;
            let covered = std::ptr::eq(x, d)
                && (c.is_quasi_identifier() || Some(c.name.as_str()) == sensitive);
            if c.action == Action::Drop || !dated_or_coded || covered {
                continue;
            }
            if let Some(sv) = x.set_valued.as_ref().filter(|sv| sv.column == c.name) {
                not_covered.push(format!(
                    "{}.{} (generalised; a k^m-anonymous set per person, k = {}, m = {})",
                    x.name, c.name, sv.k, sv.m
                ));
                continue;
            }
            let how = match c.action {
                Action::Shift => "shifted",
                Action::Generalise => "generalised",
                Action::Map => "mapped",
                Action::Keep => "kept",
                _ => "transformed",
            };
            not_covered.push(format!("{}.{} ({how})", x.name, c.name));
        }
    }
    crate::privacy::anonymise::Coverage {
        covers,
        not_covered,
    }
}

fn compile_filter(f: &FilterSpec, column: usize, c: &ColumnSpec) -> Filter {
    if let Some(values) = &f.values {
        return Filter::Values {
            column,
            values: values.iter().cloned().collect(),
        };
    }
    if let Some(prefixes) = &f.prefixes {
        return Filter::Prefixes {
            column,
            prefixes: prefixes.clone(),
        };
    }
    // Bounds were validated against the column's type; dates compare as days since 1970-01-01,
    // partial dates as the first day of their period.
    let bound = |b: &Option<String>| {
        b.as_ref().map(|b| match c.column_type {
            t if t.is_temporal() => t.parse_day(b).expect("validated date") as f64,
            _ => b.parse::<f64>().expect("validated number"),
        })
    };
    Filter::Range {
        column,
        from: bound(&f.from),
        to: bound(&f.to),
    }
}
