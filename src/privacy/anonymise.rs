//! Anonymisation of one dataset under its permit's privacy models: one read of the source, two passes.
//!
//! Pass 1 (`Profile`) sees every transformed batch and keeps only the distinct combinations of
//! quasi-identifier codes (with the person and sensitive value) and their counts, building rule-based
//! hierarchies from the values met; the engine spills the transformed batches. The lattice search then
//! picks the levels (`solve`). Pass 2 (`Solution::apply`) reads the spill, writes each quasi-identifier
//! at its chosen level and removes (or blanks) the rows of violating classes. When the levels are
//! pinned and k-anonymity is the only model, `EarlyRelease` delivers during pass 1 instead. After
//! writing, `recheck` counts the classes again from the Parquet file itself and refuses the delivery
//! if any class breaks a model.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use foldhash::{HashMap, HashSet, HashSetExt};
use rayon::prelude::*;
use std::time::Instant;

use chrono::NaiveDate;
use polars::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::kernels::levels::{self, Coding, LevelRule, TOP, Value, ValueKind};
use crate::kernels::values::date_to_days;
use crate::privacy::hierarchy::Hierarchy;
use crate::privacy::lattice::{self, Bounds};
use crate::privacy::risk::{ClassSize, RiskSummary, TextClassCounter};
use crate::privacy::subset::Matcher;
use crate::privacy::table::{
    self, Evaluation, Groups, KeptRisk, LDiversity, Levels, Metric, Models, NOBODY, Reached,
    Sensitive, Table, TableBuilder,
};
use crate::source::text_column::{TextIds, TextValue, by_run};

/// Where a hierarchy's levels come from.
pub enum HierarchySource {
    /// An ARX-format CSV file, loaded when the plan is compiled.
    File { path: PathBuf, hierarchy: Hierarchy },
    /// Built-in levels applied to the values the extract holds.
    Levels {
        rules: Vec<LevelRule>,
        coding: Coding,
        kind: ValueKind,
    },
    /// No generalisation: the values themselves (a sensitive column without hierarchy).
    Values,
}

impl HierarchySource {
    pub fn height(&self) -> usize {
        match self {
            HierarchySource::File { hierarchy, .. } => hierarchy.height(),
            HierarchySource::Levels { rules, .. } => {
                1 + rules.len() + usize::from(rules.last() != Some(&LevelRule::Top))
            }
            HierarchySource::Values => 1,
        }
    }

    /// What a level means, for reports: "level 2 of 0–4 (year)".
    pub fn describe(&self, level: u8) -> String {
        let what = match self {
            _ if level == 0 => "the value itself".to_string(),
            _ if level as usize + 1 == self.height() => "suppressed (*)".to_string(),
            HierarchySource::File { path, .. } => format!(
                "column {} of {}",
                level + 1,
                path.file_name()
                    .map_or_else(String::new, |f| f.to_string_lossy().to_string())
            ),
            HierarchySource::Levels { rules, .. } => rules[level as usize - 1].describe(),
            HierarchySource::Values => unreachable!("height 1"),
        };
        format!("level {level} of 0–{}: {what}", self.height() - 1)
    }
}

pub struct QuasiIdentifier {
    /// The source column, for messages.
    pub column: String,
    /// The delivered column.
    pub output: String,
    pub source: HierarchySource,
    pub min: u8,
    pub max: u8,
    /// An identifier (or the person column): its values never appear in a message.
    pub identifying: bool,
}

pub struct SensitivePlan {
    pub output: String,
    pub source: HierarchySource,
    pub identifying: bool,
}

/// What becomes of the rows of a class that violates a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuppressedRows {
    /// Left out of the delivery.
    Remove,
    /// Delivered with every quasi-identifier `*`.
    Blank,
}

/// A dataset's compiled `[privacy]` section.
pub struct AnonymisationPlan {
    pub quasi_identifiers: Vec<QuasiIdentifier>,
    pub sensitive: Option<SensitivePlan>,
    /// The delivered column that carries the person (pseudonym, token or kept), when persons count.
    pub person_output: Option<String>,
    pub models: Models,
    pub metric: Metric,
    pub suppressed: SuppressedRows,
    pub risk_threshold: f64,
    /// What the guarantee covers, across the delivery's tables.
    pub coverage: Coverage,
    /// A best-effort search's budget (unbounded by default: the optimum).
    pub budget: lattice::Budget,
    /// The research subset: only its rows are delivered, the dataset being the population.
    pub subset: Option<std::sync::Arc<crate::privacy::subset::ResearchSubset>>,
}

/// The attributes a dataset's privacy models are evaluated on (`dataset.column`, a profile
/// attribute with where it is drawn from), and the delivered date and code columns of any table
/// that they do not cover, each with how it is delivered.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Coverage {
    pub covers: Vec<String>,
    pub not_covered: Vec<String>,
}

/// The level-0 text a value is coded under: the value, or its top/bottom code.
fn level0_text<'a>(source: &HierarchySource, value: &'a str) -> Cow<'a, str> {
    if let HierarchySource::Levels {
        coding,
        kind: ValueKind::Number,
        ..
    } = source
        && let Ok(v) = value.parse::<f64>()
        && let Some(coded) = coding.coded(v)
    {
        return Cow::Owned(coded);
    }
    Cow::Borrowed(value)
}

/// Assigns level-0 codes to a column's values during pass 1.
enum Encoder<'a> {
    /// A hierarchy file; the flag says whether a value may be named in a message. Codes of short
    /// values are remembered by their views (one number to hash and compare, not a text).
    File(&'a Hierarchy, &'a Path, bool, foldhash::HashMap<u128, u32>),
    Grown {
        source: &'a HierarchySource,
        codes: TextIds,
        paths: Vec<(String, Vec<String>)>,
    },
}

impl<'a> Encoder<'a> {
    fn new(source: &'a HierarchySource, identifying: bool) -> Self {
        match source {
            HierarchySource::File { path, hierarchy } => {
                Encoder::File(hierarchy, path, !identifying, Default::default())
            }
            _ => Encoder::Grown {
                source,
                codes: Default::default(),
                paths: Vec::new(),
            },
        }
    }

    /// The value's code; an error message (without the value) when a rule or file cannot place it.
    fn encode(&mut self, value: Option<TextValue>) -> std::result::Result<u32, String> {
        let text = value.map_or("", |v| v.text);
        match self {
            Encoder::File(h, path, show, short) => {
                let key = value.and_then(TextValue::short_key);
                if let Some(c) = key.and_then(|k| short.get(&k)) {
                    return Ok(*c);
                }
                let code = h.code(text);
                if let (Some(k), Some(c)) = (key, code) {
                    short.insert(k, c);
                }
                code.ok_or_else(|| {
                    format!(
                        "value {} is not in hierarchy file {}",
                        match (text.is_empty(), *show) {
                            (true, _) => "(empty)".to_string(),
                            (false, true) => format!("`{text}`"),
                            (false, false) => "(not shown: an identifier)".to_string(),
                        },
                        path.display()
                    )
                })
            }
            Encoder::Grown {
                source,
                codes,
                paths,
            } => {
                let text = level0_text(source, text);
                let key = match (&text, value) {
                    (Cow::Borrowed(_), Some(value)) => value,
                    _ => TextValue::new(&text),
                };
                if let Some(c) = codes.get(key) {
                    return Ok(c);
                }
                let path = level_path(source, value.map(|_| text.as_ref()))?;
                let c = paths.len() as u32;
                codes.insert(key, c);
                paths.push((text.into_owned(), path));
                Ok(c)
            }
        }
    }

    fn into_hierarchy(self, name: &str) -> Result<Hierarchy> {
        match self {
            Encoder::File(h, ..) => Ok((*h).clone()),
            Encoder::Grown { paths, .. } => Hierarchy::from_paths(paths, name),
        }
    }
}

/// The 64-bit identity persons are told apart by in the profile (see [`TableBuilder`] for why a
/// collision is safe); a missing person is [`NOBODY`], which no class counts.
fn person_identity(text: Option<&str>) -> u64 {
    use std::hash::BuildHasher;
    match text {
        None => NOBODY,
        Some(text) => {
            let hash =
                foldhash::quality::FixedState::with_seed(0x5045_5253_4f4e_0001).hash_one(text);
            hash.max(NOBODY + 1)
        }
    }
}

impl HierarchySource {
    /// A text value's labels from itself up to `*`, for a set-valued attribute's tree; an error
    /// (without the value) when the rules or the file cannot place it.
    pub fn path_of(&self, text: &str) -> std::result::Result<Vec<String>, String> {
        let mut path = vec![text.to_string()];
        match self {
            HierarchySource::File {
                hierarchy,
                path: file,
            } => {
                let code = hierarchy.code(text).ok_or_else(|| {
                    format!("a value is not in hierarchy file {}", file.display())
                })?;
                path.extend((1..hierarchy.height()).map(|l| {
                    hierarchy
                        .label(l, hierarchy.generalise(code, l))
                        .to_string()
                }));
            }
            HierarchySource::Levels { .. } => path.extend(level_path(self, Some(text))?),
            HierarchySource::Values => {}
        }
        if path.len() == 1 || path.last().map(String::as_str) != Some(TOP) {
            path.push(TOP.into());
        }
        Ok(path)
    }
}

/// A level-0 value's labels at levels 1.. under built-in rules (nulls stay null up to `*`).
fn level_path(
    source: &HierarchySource,
    value: Option<&str>,
) -> std::result::Result<Vec<String>, String> {
    let HierarchySource::Levels {
        rules,
        coding,
        kind,
    } = source
    else {
        return Ok(Vec::new());
    };
    let top = usize::from(rules.last() != Some(&LevelRule::Top));
    // A null, or a top- or bottom-coded number, keeps its label at every level below `*`.
    let constant = |label: &str| {
        let mut path = vec![label.to_string(); rules.len()];
        path.extend(std::iter::repeat_n(TOP.to_string(), top));
        if let Some(last) = path.last_mut() {
            *last = TOP.into();
        }
        path
    };
    let Some(text) = value else {
        return Ok(constant(""));
    };
    let parsed = match kind {
        ValueKind::Date => Value::Date(
            NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d")
                .map(date_to_days)
                .map_err(|_| "not a date".to_string())?,
        ),
        ValueKind::Number => match text.parse::<f64>() {
            Ok(v) => Value::Number(v),
            // Typed numbers always parse: the text is a top or bottom code.
            Err(_) => return Ok(constant(text)),
        },
        _ => Value::Text(text),
    };
    let mut path = rules
        .iter()
        .map(|r| levels::apply(r, parsed, *coding))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    path.extend(std::iter::repeat_n(TOP.to_string(), top));
    Ok(path)
}

/// A column of level-0 values: text, or days (the transform keeps date quasi-identifiers as dates,
/// their text written here once per run of equal days rather than for every row).
enum Level0<'a> {
    Text(&'a StringChunked),
    Days(&'a Int32Chunked),
}

impl<'a> Level0<'a> {
    /// `column` as text or dates: a column of any other type (a kept integer) as its text.
    fn column(column: &Column) -> PolarsResult<Column> {
        match column.dtype() {
            DataType::Date | DataType::String => Ok(column.clone()),
            _ => column.cast(&DataType::String),
        }
    }

    /// A column from [`Level0::column`].
    fn of(column: &'a Column) -> PolarsResult<Self> {
        Ok(match column.dtype() {
            DataType::Date => Level0::Days(column.date()?.physical()),
            _ => Level0::Text(column.str()?),
        })
    }

    /// `code(row, value)` of every row, asked once per run of equal neighbours; a date's value is
    /// its ISO text.
    fn codes<E>(
        &self,
        mut code: impl FnMut(usize, Option<TextValue>) -> std::result::Result<u32, E>,
    ) -> std::result::Result<Vec<u32>, E> {
        let days = match self {
            Level0::Text(text) => return by_run(text, code),
            Level0::Days(days) => days,
        };
        let mut iso = String::with_capacity(10);
        let mut codes = Vec::with_capacity(days.len());
        crate::kernels::values::extend_by_run(&mut codes, days.iter(), |row, day| {
            let value = day.map(|day| {
                crate::kernels::values::iso_date_into(day, &mut iso);
                TextValue::new(&iso)
            });
            code(row, value)
        })?;
        Ok(codes)
    }
}

/// Pass 1: the distinct combinations of codes and how many rows hold each.
pub struct Profile<'a> {
    plan: &'a AnonymisationPlan,
    encoders: Vec<Encoder<'a>>,
    sensitive: Option<Encoder<'a>>,
    builder: TableBuilder,
    /// With a research subset: which rows are in it, and every row's quasi-identifiers (the
    /// population's table).
    subset: Option<(Matcher, TableBuilder)>,
}

/// A batch's level-0 codes: one column per quasi-identifier, then the sensitive value's when the
/// plan has one; and each row's person identity when the plan has a person column.
pub struct Coded {
    pub columns: Vec<Vec<u32>>,
    pub persons: Option<Vec<u64>>,
}

impl<'a> Profile<'a> {
    pub fn new(plan: &'a AnonymisationPlan) -> Self {
        Profile {
            plan,
            encoders: plan
                .quasi_identifiers
                .iter()
                .map(|q| Encoder::new(&q.source, q.identifying))
                .collect(),
            sensitive: plan
                .sensitive
                .as_ref()
                .map(|s| Encoder::new(&s.source, s.identifying)),
            builder: TableBuilder::new(plan.person_output.is_some()),
            subset: plan
                .subset
                .as_ref()
                .map(|s| (s.matcher(), TableBuilder::new(plan.person_output.is_some()))),
        }
    }

    /// Adds a transformed batch (quasi-identifiers still at level 0) read from `file`; `place` locates
    /// row r in it. Each column is encoded on its own thread (persons hashed alongside); then each
    /// row's codes are counted. Returns the batch's codes.
    pub fn add(
        &mut self,
        df: &DataFrame,
        file: &Path,
        place: impl Fn(usize) -> String,
    ) -> Result<Coded> {
        self.add_counted(df, file, place, None)
    }

    /// [`Profile::add`] for a batch whose row r stands for `rows[r]` rows of the dataset (a
    /// cluster's aggregated profile), or for one when `rows` is None.
    pub fn add_counted(
        &mut self,
        df: &DataFrame,
        file: &Path,
        place: impl Fn(usize) -> String,
        rows: Option<&[u32]>,
    ) -> Result<Coded> {
        let plan = self.plan;
        let mut names: Vec<&str> = plan
            .quasi_identifiers
            .iter()
            .map(|q| q.output.as_str())
            .collect();
        names.extend(plan.sensitive.as_ref().map(|s| s.output.as_str()));
        names.extend(plan.person_output.as_deref());
        // The sensitive column may be typed (a kept integer, a date): its text is what is counted.
        let columns: Vec<Column> = names
            .iter()
            .map(|n| Level0::column(df.column(n)?))
            .collect::<PolarsResult<_>>()?;
        let person_column = match plan.person_output {
            Some(_) => Some(columns.last().expect("the person column").str()?),
            None => None,
        };
        let coded = &columns[..columns.len() - usize::from(person_column.is_some())];
        let values: Vec<Level0> = coded.iter().map(Level0::of).collect::<PolarsResult<_>>()?;
        let encoders: Vec<&mut Encoder> = self
            .encoders
            .iter_mut()
            .chain(self.sensitive.as_mut())
            .collect();
        let (coded, persons) = rayon::join(
            || -> Vec<std::result::Result<Vec<u32>, (usize, String)>> {
                encoders
                    .into_par_iter()
                    .zip(values.par_iter())
                    .map(|(encoder, column)| {
                        column.codes(|r, v| encoder.encode(v).map_err(|m| (r, m)))
                    })
                    .collect()
            },
            || {
                person_column.map(|column| {
                    let Ok(persons) = by_run(column, |_, v| {
                        Ok::<_, std::convert::Infallible>(person_identity(v.map(|v| v.text)))
                    });
                    persons
                })
            },
        );
        let columns: Vec<Vec<u32>> = coded
            .into_iter()
            .zip(&names)
            .map(|(c, name)| {
                c.map_err(|(r, m)| Error::input(file, format!("{}, column `{name}`", place(r)), m))
            })
            .collect::<Result<_>>()?;
        let person = |r: usize| persons.as_ref().map_or(0, |p| p[r]);
        if let Some(rows) = rows {
            if self.subset.is_some() {
                return Err(Error::Internal(
                    "a research subset is matched row by row, not on counted rows".into(),
                ));
            }
            let mut tuple = vec![0; columns.len()];
            for (r, &n) in rows.iter().enumerate() {
                for (t, c) in tuple.iter_mut().zip(&columns) {
                    *t = c[r];
                }
                self.builder.add(&tuple, person(r), n);
            }
            return Ok(Coded { columns, persons });
        }
        if let Some((matcher, population)) = &mut self.subset {
            // Every row is the population's; the subset's rows also the delivered table's.
            let members = matcher.members(df)?;
            let q = plan.quasi_identifiers.len();
            let mut tuple = vec![0; columns.len()];
            for (r, &member) in members.iter().enumerate() {
                for (t, c) in tuple.iter_mut().zip(&columns) {
                    *t = c[r];
                }
                population.add(&tuple[..q], person(r), 1);
                if member {
                    self.builder.add(&tuple, person(r), 1);
                }
            }
            return Ok(Coded { columns, persons });
        }
        self.builder.add_batch(&columns, persons.as_deref());
        Ok(Coded { columns, persons })
    }

    /// The label at `level` of quasi-identifier `j`'s level-0 `code`, as the finished hierarchy will
    /// hold it.
    fn label(&self, j: usize, code: u32, level: usize) -> &str {
        match &self.encoders[j] {
            Encoder::File(h, ..) => h.label(level, code),
            Encoder::Grown { paths, .. } => {
                let (value, path) = &paths[code as usize];
                if level == 0 { value } else { &path[level - 1] }
            }
        }
    }

    /// The encoded table, with every hierarchy complete.
    pub fn finish(self) -> Result<Table> {
        let plan = self.plan;
        let hierarchies = self
            .encoders
            .into_iter()
            .zip(&plan.quasi_identifiers)
            .map(|(e, q)| e.into_hierarchy(&format!("levels of `{}`", q.column)))
            .collect::<Result<Vec<_>>>()?;
        let sensitive = self
            .sensitive
            .map(|e| e.into_hierarchy("sensitive levels"))
            .transpose()?
            .map(|hierarchy| Sensitive { hierarchy });
        let Some((matcher, population)) = self.subset else {
            return self.builder.finish(hierarchies, sensitive);
        };
        let unmatched = matcher.unmatched();
        if unmatched > 0 {
            return Err(Error::Privacy(format!(
                "{unmatched} rows of the research subset match no row of the dataset (as read, \
                 before generalisation, after the cohort and opt-out filters): the subset must be \
                 rows of the dataset"
            )));
        }
        let population = population.finish(hierarchies.clone(), None)?;
        let mut table = self.builder.finish(hierarchies, sensitive)?;
        table.attach_population(population);
        Ok(table)
    }
}

/// The chosen transformation and everything pass 2 and the report need.
pub struct Solution {
    pub table: Table,
    pub optimum: Evaluation,
    /// Class keys (generalised codes) whose rows are suppressed.
    suppressed: HashSet<u128>,
    /// Per quasi-identifier, the code at the chosen level of every level-0 code.
    level_maps: Vec<Vec<u32>>,
    /// The kept classes' (rows, size), sorted: what the written file must hold, class for class
    /// ([`recheck`]).
    kept_classes: Vec<(u64, u64)>,
    pub report: AnonymisationReport,
    /// With a research subset, pass 2's matcher: which rows are delivered.
    subset: Option<std::sync::Mutex<Matcher>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuasiIdentifierReport {
    pub column: String,
    pub level: u8,
    pub meaning: String,
    /// The column's information loss (ARX's loss metric before aggregation): 0 when every value is
    /// delivered as is, 1 when every row is suppressed.
    pub loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnonymisationReport {
    pub models: String,
    pub metric: String,
    /// Whether the transformation meets the models within the suppression limit (always true in a
    /// delivery; `assess` also reports pinned transformations that do not).
    pub feasible: bool,
    pub quasi_identifiers: Vec<QuasiIdentifierReport>,
    pub rows_suppressed: u64,
    pub suppression_limit_rows: u64,
    pub suppressed_rows_are: String,
    pub classes: u64,
    pub classes_suppressed: u64,
    /// Whether rows were delivered while the source was read (pinned levels, k-anonymity alone,
    /// suppressed rows removed), rather than in a second pass after the search.
    pub released_early: bool,
    /// The suppressed classes and their rows, by class size at the chosen transformation.
    pub suppressed_by_class_size: Vec<crate::privacy::risk::SizeBucket>,
    /// The chosen transformation's value under every metric.
    pub metrics: MetricValues,
    pub lattice_size: u128,
    pub transformations_evaluated: u64,
    /// Whether the search covered the whole lattice (false when its budget stopped it).
    pub search_complete: bool,
    /// When the budget stopped the search: no transformation scores below this; the chosen one's
    /// score minus it is the gap to the optimum at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_lower_bound: Option<f64>,
    /// Pass 1 (reading, transforming and encoding the dataset), then the lattice search.
    pub profile_ms: u128,
    pub search_ms: u128,
    pub risk_before: RiskSummary,
    /// Measured on the written file by the re-check (filled in after writing).
    pub risk_after: Option<RiskSummary>,
    /// With a research subset: the rows of the dataset it was drawn from, which are not delivered
    /// but for the subset's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_outside_research_subset: Option<u64>,
    /// Under population uniqueness: the estimated share of the population unique on the delivered
    /// quasi-identifiers (0 when no delivered class is unique).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population_uniques: Option<f64>,
    /// With a sensitive column, measured on the written file by the re-check: the least diverse
    /// delivered class's distinct and entropy ℓ, and the largest distance t of any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensitive_reached: Option<Reached>,
    pub coverage: Coverage,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricValues {
    pub entropy: f64,
    pub entropy_with_suppression: f64,
    pub discernibility: f64,
    pub discernibility_with_suppression: f64,
    pub aecs: f64,
    pub precision: f64,
    pub height: f64,
    pub loss: f64,
}

impl AnonymisationPlan {
    /// Whether rows can be delivered while pass 1 reads them ([`EarlyRelease`]): every level pinned,
    /// k-anonymity alone (monotone as rows arrive), suppressed rows removed, at most four
    /// quasi-identifiers.
    pub fn releases_early(&self) -> bool {
        let m = &self.models;
        self.quasi_identifiers.len() <= 4
            && self.quasi_identifiers.iter().all(|q| q.min == q.max)
            && m.k.is_some()
            && m.l_diversity.is_none()
            && m.t_closeness.is_none()
            && !m.risk_based()
            && m.k_map.is_none()
            && self.subset.is_none()
            && self.sensitive.is_none()
            && self.suppressed == SuppressedRows::Remove
    }

    pub fn describe_models(&self) -> String {
        let m = &self.models;
        let mut parts = Vec::new();
        if let Some(k) = m.k {
            parts.push(format!("{k}-anonymity"));
        }
        match m.l_diversity {
            Some(LDiversity::Recursive { c, l }) => {
                parts.push(format!("recursive ({c},{l})-diversity"))
            }
            Some(l) => parts.push(format!("{} {}-diversity", l.kind(), l.l())),
            None => {}
        }
        if let Some(t) = m.t_closeness {
            parts.push(format!("{}-closeness ({} distance)", t.t(), t.kind()));
        }
        if let Some(map) = m.k_map {
            parts.push(format!(
                "{}-map of a population of {} ({} estimate, significance {})",
                map.k,
                map.population,
                if map.zero_truncated {
                    "zero-truncated Poisson"
                } else {
                    "Poisson"
                },
                map.significance
            ));
        }
        if let Some(k) = m.population_k {
            parts.push(format!(
                "{k}-map counted in the dataset, of which the research subset is delivered"
            ));
        }
        if let Some(d) = m.delta_presence {
            parts.push(format!(
                "({}, {})-presence of the research subset in the dataset",
                d.min, d.max
            ));
        }
        if let Some(a) = m.average_risk {
            parts.push(match a.highest {
                None => format!("average risk at most {}", a.average),
                Some(h) => format!(
                    "average risk at most {}, at most {} of rows at a risk above {}",
                    a.average, h.records_at_risk, h.risk
                ),
            });
        }
        if let Some(u) = m.sample_uniqueness {
            parts.push(format!("sample uniques at most {u} of rows"));
        }
        if let Some(u) = m.population_uniqueness {
            parts.push(format!(
                "population uniques at most {} of a population of {} ({} estimate)",
                u.threshold,
                u.population,
                u.estimator.name()
            ));
        }
        let on = match &self.sensitive {
            Some(s) => format!(" on `{}`", s.output),
            None => String::new(),
        };
        format!(
            "{}{on}, counting {}, suppression up to {}% of rows",
            parts.join(" + "),
            if self.person_output.is_some() {
                "persons"
            } else {
                "rows"
            },
            self.models.suppression_limit * 100.0
        )
    }
}

/// Column of held rows naming their class, dropped before delivery.
const HELD_CLASS: &str = "__ehds_prep_class";

/// Delivery during pass 1 for plans that [`AnonymisationPlan::releases_early`]: the levels are
/// known, and a class only grows as rows arrive, so a row whose class already holds k persons (rows,
/// without a person column) is written at once. Rows of classes still below k are held (spilled)
/// until the end; those whose class reached k follow, the rest are suppressed. Same rows as two
/// passes; held rows come last.
pub struct EarlyRelease {
    k: usize,
    levels: Vec<usize>,
    /// Per quasi-identifier, its labels at its level.
    labels: Vec<LevelLabels>,
    classes: HashMap<u128, u32>,
    /// Per class: reached k, and the distinct persons (or rows) seen until then.
    open: Vec<bool>,
    seen: Vec<Vec<u64>>,
    pub held_rows: u64,
    pub suppressed_rows: u64,
}

/// A quasi-identifier's labels at its released level, each given an id in order of appearance.
#[derive(Default)]
struct LevelLabels {
    ids: HashMap<String, u32>,
    /// Id → label; `None` for the empty label.
    texts: Vec<Option<String>>,
    /// Level-0 code → id (`u32::MAX`: not seen yet).
    by_code: Vec<u32>,
}

impl EarlyRelease {
    pub fn new(plan: &AnonymisationPlan) -> EarlyRelease {
        EarlyRelease {
            k: plan.models.k.expect("releases_early: k is set") as usize,
            levels: plan
                .quasi_identifiers
                .iter()
                .map(|q| q.min as usize)
                .collect(),
            labels: plan
                .quasi_identifiers
                .iter()
                .map(|_| LevelLabels::default())
                .collect(),
            classes: HashMap::default(),
            open: Vec::new(),
            seen: Vec::new(),
            held_rows: 0,
            suppressed_rows: 0,
        }
    }

    /// Generalises a transformed batch (`codes` from [`Profile::add`]) and splits it into the rows to
    /// write now and the rows to hold, the latter with their class in [`HELD_CLASS`].
    pub fn split(
        &mut self,
        plan: &AnonymisationPlan,
        profile: &Profile,
        codes: &Coded,
        df: DataFrame,
    ) -> Result<(DataFrame, DataFrame)> {
        let rows = df.height();
        let mut class_ids = vec![0u128; rows];
        let mut columns: Vec<Column> = df.columns().to_vec();
        for (j, qi) in plan.quasi_identifiers.iter().enumerate() {
            let level = self.levels[j];
            let l = &mut self.labels[j];
            let mut ids: Vec<IdxSize> = Vec::with_capacity(rows);
            for (r, &code) in codes.columns[j].iter().enumerate() {
                let code = code as usize;
                if l.by_code.len() <= code {
                    l.by_code.resize(code + 1, u32::MAX);
                }
                if l.by_code[code] == u32::MAX {
                    let label = profile.label(j, code as u32, level);
                    let next = l.texts.len() as u32;
                    let id = *l.ids.entry(label.to_string()).or_insert(next);
                    if id == next {
                        l.texts.push((!label.is_empty()).then(|| label.to_string()));
                    }
                    l.by_code[code] = id;
                }
                let id = l.by_code[code];
                class_ids[r] = class_ids[r] << 32 | id as u128;
                ids.push(id as IdxSize);
            }
            // The column gathered from the level's labels (an empty label is delivered as null).
            let labels = StringChunked::from_iter_options(
                qi.output.as_str().into(),
                l.texts.iter().map(Option::as_deref),
            );
            let column = labels.take(&IdxCa::from_vec("ids".into(), ids))?;
            let at = df
                .get_column_index(&qi.output)
                .expect("quasi-identifier delivered");
            columns[at] = column.into_series().into_column();
        }
        let persons = codes.persons.as_ref();
        let mut now = vec![false; rows];
        let mut held_class = Vec::new();
        // Neighbouring rows (a person's stays) are often of one class: no lookup for a repeat.
        let mut classes: Vec<usize> = Vec::with_capacity(rows);
        let Ok(()) = crate::kernels::values::extend_by_run(&mut classes, class_ids, |_, key| {
            let next = self.open.len() as u32;
            let c = *self.classes.entry(*key).or_insert(next) as usize;
            if c == self.open.len() {
                self.open.push(false);
                self.seen.push(Vec::new());
            }
            Ok::<_, std::convert::Infallible>(c)
        });
        for (r, c) in classes.into_iter().enumerate() {
            if self.open[c] {
                now[r] = true;
                continue;
            }
            let member = persons.map_or(self.seen[c].len() as u64 + 1, |p| p[r]);
            // A row without a person is held like any other, but counts as no one.
            if member != NOBODY && !self.seen[c].contains(&member) {
                self.seen[c].push(member);
            }
            if self.seen[c].len().max(1) >= self.k {
                self.open[c] = true;
                self.seen[c] = Vec::new();
            }
            held_class.push(c as u32);
        }
        let out = DataFrame::new(rows, columns)?;
        let mask = BooleanChunked::from_slice("now".into(), &now);
        let write_now = out.filter(&mask)?;
        let mut held = out.filter(&!&mask)?;
        self.held_rows += held.height() as u64;
        held.with_column(Column::new(HELD_CLASS.into(), held_class))?;
        Ok((write_now, held))
    }

    /// The held rows whose class reached k, without their class column; counts the others as
    /// suppressed, their persons added to `removed`.
    pub fn release(
        &mut self,
        plan: &AnonymisationPlan,
        mut held: DataFrame,
        removed: &mut foldhash::HashSet<String>,
    ) -> Result<DataFrame> {
        let class = held.drop_in_place(HELD_CLASS)?;
        let keep: Vec<bool> = class
            .u32()?
            .iter()
            .map(|c| self.open[c.expect("class of every held row") as usize])
            .collect();
        self.suppressed_rows += keep.iter().filter(|&&k| !k).count() as u64;
        note_removed_persons(plan, &held, &keep, removed)?;
        Ok(held.filter(&BooleanChunked::from_slice("keep".into(), &keep))?)
    }
}

/// Adds to `removed` the delivered person value of each row `keep` leaves out.
fn note_removed_persons(
    plan: &AnonymisationPlan,
    df: &DataFrame,
    keep: &[bool],
    removed: &mut foldhash::HashSet<String>,
) -> Result<()> {
    let Some(person) = &plan.person_output else {
        return Ok(());
    };
    let persons = df.column(person)?.str()?;
    for (value, &kept) in persons.iter().zip(keep) {
        if let (Some(value), false) = (value, kept) {
            removed.insert(value.to_string());
        }
    }
    Ok(())
}

fn bounds(plan: &AnonymisationPlan) -> Bounds {
    Bounds {
        min: plan.quasi_identifiers.iter().map(|q| q.min).collect(),
        max: plan.quasi_identifiers.iter().map(|q| q.max).collect(),
    }
}

/// Searches the lattice and fixes the transformation, or explains why none meets the models.
pub fn solve(
    plan: &AnonymisationPlan,
    table: Table,
    dataset: &str,
    watch: &lattice::Watch,
) -> Result<Solution> {
    let rows = table.rows;
    let why = unreachable_diversity(plan, &table);
    let solution = assess(plan, table, watch).filter(|s| s.optimum.feasible);
    solution.ok_or_else(|| {
        let advice = why.unwrap_or_else(|| {
            "allow higher levels (max_level), more suppression, or relax the models".into()
        });
        Error::Privacy(format!(
            "dataset `{dataset}`: no generalisation of {} within the permitted levels meets {} \
             ({rows} rows); {advice}",
            plan.quasi_identifiers
                .iter()
                .map(|q| format!("`{}`", q.column))
                .collect::<Vec<_>>()
                .join(", "),
            plan.describe_models(),
        ))
    })
}

/// Why ℓ-diversity cannot hold whatever the levels: fewer distinct sensitive values than ℓ.
fn unreachable_diversity(plan: &AnonymisationPlan, table: &Table) -> Option<String> {
    let l = plan.models.l_diversity?.l();
    let values = table.sensitive.as_ref()?.hierarchy.cardinality(0);
    (l > values as f64).then(|| {
        format!(
            "ℓ is {l} but the sensitive column holds {values} distinct value(s), so no class can \
             be {l}-diverse: lower ℓ"
        )
    })
}

/// With every level pinned, that transformation whether feasible or not; otherwise the optimum, or
/// `None` when no transformation is feasible. The chosen transformation's groups are projected once.
pub fn assess(plan: &AnonymisationPlan, table: Table, watch: &lattice::Watch) -> Option<Solution> {
    let bounds = bounds(plan);
    let started = Instant::now();
    let zero = vec![0; table.quasi_identifiers()];
    if bounds.min == bounds.max {
        let groups = table.project(table.base(), &zero, &bounds.min);
        let e = table.evaluate(&bounds.min, &groups, &plan.models, plan.metric);
        let ms = started.elapsed().as_millis();
        return Some(Solution::new(plan, table, groups, e, 1, 1, ms));
    }
    let outcome = lattice::search_watched(
        &table,
        &plan.models,
        plan.metric,
        &bounds,
        plan.budget,
        watch,
    );
    let ms = started.elapsed().as_millis();
    let optimum = outcome.optimum?;
    let groups = table.project(table.base(), &zero, &optimum.levels);
    if !outcome.complete {
        tracing::warn!(
            evaluated = outcome.evaluated,
            score = optimum.score,
            lower_bound = outcome.lower_bound,
            "search budget spent: the best transformation found is used, not a proven optimum"
        );
    }
    let mut solution = Solution::new(
        plan,
        table,
        groups,
        optimum,
        outcome.lattice_size,
        outcome.evaluated,
        ms,
    );
    solution.report.search_complete = outcome.complete;
    solution.report.score_lower_bound = outcome.lower_bound;
    Some(solution)
}

/// The risks of the chosen transformation as its delivery will hold it, before it is written
/// (`assess --permit`; a run measures them again from the written file): the kept classes, and
/// the blanked rows as one class of `*`. None where that class's size cannot be known from the
/// classes (blanked rows counted in persons: a person may be in several suppressed classes).
fn predicted_risk_after(
    plan: &AnonymisationPlan,
    table: &Table,
    kept_classes: &[(u64, u64)],
    suppressed: &[ClassSize],
    optimum: &Evaluation,
) -> Option<RiskSummary> {
    let persons = table.persons.is_some();
    let mut classes: Vec<ClassSize> = kept_classes
        .iter()
        .map(|&(records, size)| ClassSize {
            records,
            size,
            population: None,
        })
        .collect();
    if plan.suppressed == SuppressedRows::Blank && optimum.suppressed_rows > 0 {
        if persons {
            return None;
        }
        let rows = suppressed.iter().map(|c| c.records).sum();
        classes.push(ClassSize {
            records: rows,
            size: rows,
            population: None,
        });
    }
    Some(RiskSummary::of(
        classes,
        persons,
        plan.models.least_size(table.rows),
        plan.risk_threshold,
    ))
}

impl Solution {
    /// `groups` are the table's groups at the optimum's levels.
    fn new(
        plan: &AnonymisationPlan,
        table: Table,
        groups: Groups,
        optimum: Evaluation,
        lattice_size: u128,
        evaluated: u64,
        search_ms: u128,
    ) -> Solution {
        // The risk before generalisation (a pass over the level-0 classes) is independent of the
        // chosen transformation's classes and metrics: both are computed side by side.
        let risk_before = || {
            let mut before = Vec::new();
            let zero = vec![0; table.quasi_identifiers()];
            table.for_each_class(&zero, table.base(), &plan.models, |_, c| {
                before.push(ClassSize {
                    records: c.rows,
                    size: c.size,
                    population: None,
                })
            });
            RiskSummary::of(
                before,
                table.persons.is_some(),
                plan.models.least_size(table.rows),
                plan.risk_threshold,
            )
        };
        let chosen = || {
            let mut suppressed = HashSet::new();
            let mut suppressed_sizes = Vec::new();
            let mut kept_classes = Vec::new();
            table.for_each_class(&optimum.levels, &groups, &plan.models, |key, c| {
                if c.violates {
                    suppressed.insert(key);
                    suppressed_sizes.push(ClassSize {
                        records: c.rows,
                        size: c.size,
                        population: None,
                    });
                } else {
                    kept_classes.push((c.rows, c.size));
                }
            });
            kept_classes.sort_unstable();
            let loss = table.loss_per_attribute(&optimum.levels, &groups, &plan.models);
            let metric = |m| {
                table
                    .evaluate(&optimum.levels, &groups, &plan.models, m)
                    .score
            };
            let metrics = MetricValues {
                entropy: metric(Metric::NueMono),
                entropy_with_suppression: metric(Metric::Nue),
                discernibility: metric(Metric::Discernibility),
                discernibility_with_suppression: metric(Metric::DiscernibilityWithSuppression),
                aecs: metric(Metric::Aecs),
                precision: metric(Metric::Precision),
                height: metric(Metric::Height),
                loss: table::mean_loss(&loss),
            };
            (suppressed, suppressed_sizes, kept_classes, metrics, loss)
        };
        let (risk_before, (suppressed, suppressed_sizes, kept_classes, metrics, loss)) =
            rayon::join(risk_before, chosen);
        let risk_after =
            predicted_risk_after(plan, &table, &kept_classes, &suppressed_sizes, &optimum);
        let report = AnonymisationReport {
            coverage: plan.coverage.clone(),
            models: plan.describe_models(),
            metric: plan.metric.name().into(),
            feasible: optimum.feasible,
            quasi_identifiers: plan
                .quasi_identifiers
                .iter()
                .zip(&optimum.levels)
                .zip(loss)
                .map(|((q, &l), loss)| QuasiIdentifierReport {
                    column: q.output.clone(),
                    level: l,
                    meaning: q.source.describe(l),
                    loss,
                })
                .collect(),
            rows_suppressed: optimum.suppressed_rows,
            suppression_limit_rows: table.suppression_budget(&plan.models),
            suppressed_rows_are: match plan.suppressed {
                SuppressedRows::Remove => "removed".into(),
                SuppressedRows::Blank => "delivered with every quasi-identifier `*`".into(),
            },
            classes: optimum.classes,
            classes_suppressed: optimum.suppressed_classes,
            released_early: false,
            suppressed_by_class_size: crate::privacy::risk::size_buckets(suppressed_sizes),
            metrics,
            lattice_size,
            transformations_evaluated: evaluated,
            search_complete: true,
            score_lower_bound: None,
            profile_ms: 0,
            search_ms,
            risk_before,
            risk_after,
            population_uniques: plan
                .models
                .estimated_population_uniqueness(kept_classes.iter().copied()),
            rows_outside_research_subset: table.population_rows().map(|p| p - table.rows),
            sensitive_reached: None,
        };
        let level_maps = optimum
            .levels
            .iter()
            .zip(&table.hierarchies)
            .map(|(&l, h)| h.level_map(l as usize))
            .collect();
        Solution {
            table,
            optimum,
            suppressed,
            level_maps,
            kept_classes,
            report,
            subset: plan
                .subset
                .as_ref()
                .map(|s| std::sync::Mutex::new(s.matcher())),
        }
    }

    pub fn levels(&self) -> &Levels {
        &self.optimum.levels
    }

    /// Quasi-identifier `j`'s label at its chosen level of each distinct value of `column` (its
    /// level-0 values, as pass 2 reads them; a date by its ISO text, a missing value as the empty
    /// text), as [`Solution::apply`] labels them.
    /// Also gives each row's code at the level, for [`Solution::suppressed_rows`].
    pub fn labels_of(
        &self,
        plan: &AnonymisationPlan,
        j: usize,
        column: &Column,
    ) -> Result<(std::collections::HashMap<String, String>, Vec<u32>)> {
        let h = &self.table.hierarchies[j];
        let level = self.levels()[j] as usize;
        let mut labels = std::collections::HashMap::new();
        let column = Level0::column(column)?;
        let codes = Level0::of(&column)?.codes(|_, v| {
            let generalised = self.code_at_level(plan, j, v)?;
            let value = v.map_or("", |v| v.text);
            if !labels.contains_key(value) {
                labels.insert(value.to_string(), h.label(level, generalised).to_string());
            }
            Ok::<_, Error>(generalised)
        })?;
        Ok((labels, codes))
    }

    /// Quasi-identifier `j`'s code at its chosen level of a level-0 value (a missing one: the
    /// empty text); an error for a value the first pass did not see.
    fn code_at_level(
        &self,
        plan: &AnonymisationPlan,
        j: usize,
        value: Option<TextValue>,
    ) -> Result<u32> {
        let q = &plan.quasi_identifiers[j];
        let text = level0_text(&q.source, value.map_or("", |v| v.text));
        let code = self.table.hierarchies[j].code(&text).ok_or_else(|| {
            Error::Internal(format!(
                "column `{}` holds a value the first pass did not see: the source changed during the run",
                q.column
            ))
        })?;
        Ok(self.level_maps[j][code as usize])
    }

    /// Whether each row's class is suppressed, from each quasi-identifier's codes at its level.
    pub fn suppressed_rows(&self, generalised: &[Vec<u32>]) -> Vec<bool> {
        let rows = generalised.first().map_or(0, Vec::len);
        let shifts: Vec<u32> = (0..generalised.len())
            .map(|j| self.table.class_key_shift(j))
            .collect();
        (0..rows)
            .into_par_iter()
            .map(|r| {
                let key = generalised
                    .iter()
                    .zip(&shifts)
                    .fold(0u128, |key, (codes, &s)| key | (codes[r] as u128) << s);
                self.suppressed.contains(&key)
            })
            .collect()
    }

    /// The suppressed classes, each as its quasi-identifiers' labels at the chosen levels.
    pub fn suppressed_labels(&self) -> Vec<Vec<String>> {
        let levels = self.levels();
        self.suppressed
            .iter()
            .map(|&class| {
                (0..levels.len())
                    .map(|j| {
                        let h = &self.table.hierarchies[j];
                        h.label(levels[j] as usize, self.table.class_code(class, j))
                            .to_string()
                    })
                    .collect()
            })
            .collect()
    }

    /// Pass 2: writes each quasi-identifier at its level and removes or blanks suppressed rows.
    /// Columns are generalised on threads of their own, then each row's class is looked up.
    /// Generalises a batch at the solution's levels and suppresses the rows of suppressed classes;
    /// the persons of removed rows (their delivered person value) are added to `removed`.
    pub fn apply(
        &self,
        plan: &AnonymisationPlan,
        df: DataFrame,
        removed: &mut foldhash::HashSet<String>,
    ) -> Result<DataFrame> {
        let df = match &self.subset {
            Some(matcher) => {
                let members = matcher
                    .lock()
                    .map_err(|_| {
                        Error::Internal("a thread matching the research subset panicked".into())
                    })?
                    .members(&df)?;
                df.filter(&BooleanChunked::from_iter_values(
                    "member".into(),
                    members.into_iter(),
                ))?
            }
            None => df,
        };
        let rows = df.height();
        let levels = self.levels();
        let generalised: Vec<Vec<u32>> = plan
            .quasi_identifiers
            .par_iter()
            .enumerate()
            .map(|(j, q)| {
                let column = Level0::column(df.column(&q.output)?)?;
                Level0::of(&column)?.codes(|_, v| self.code_at_level(plan, j, v))
            })
            .collect::<Result<_>>()?;
        let suppressed = self.suppressed_rows(&generalised);
        let mut columns: Vec<Column> = df.columns().to_vec();
        let labelled: Vec<(usize, Column)> = plan
            .quasi_identifiers
            .par_iter()
            .zip(&generalised)
            .enumerate()
            .map(|(j, (q, codes))| {
                let (h, level) = (&self.table.hierarchies[j], levels[j] as usize);
                let labels = codes.iter().zip(&suppressed).map(|(&c, &gone)| {
                    let label = if gone { TOP } else { h.label(level, c) };
                    (!label.is_empty()).then_some(label)
                });
                let column = StringChunked::from_iter_options(q.output.as_str().into(), labels)
                    .into_series()
                    .into_column();
                let at = df
                    .get_column_index(&q.output)
                    .expect("quasi-identifier delivered");
                (at, column)
            })
            .collect();
        for (at, column) in labelled {
            columns[at] = column;
        }
        let out = DataFrame::new(rows, columns)?;
        if plan.suppressed == SuppressedRows::Blank || !suppressed.contains(&true) {
            return Ok(out);
        }
        let keep: Vec<bool> = suppressed.iter().map(|&gone| !gone).collect();
        note_removed_persons(plan, &out, &keep, removed)?;
        Ok(out.filter(&BooleanChunked::from_slice("keep".into(), &keep))?)
    }
}

impl AnonymisationPlan {
    /// Whether the delivered rows are a function of the profile's table alone: rows are counted (no
    /// person), no sensitive value or research subset. Then, when the dataset delivers nothing but
    /// its quasi-identifiers, [`Solution::delivered_classes`] gives its rows without reading them
    /// again.
    pub fn delivered_from_table(&self) -> bool {
        self.person_output.is_none() && self.sensitive.is_none() && self.subset.is_none()
    }
}

impl Solution {
    /// The rows [`Solution::apply`] delivers, as their distinct values with how many rows hold
    /// each, for a plan [`AnonymisationPlan::delivered_from_table`] whose dataset delivers only its
    /// quasi-identifiers (columns in the plan's order): each class of the chosen levels once,
    /// suppressed classes left out or delivered as rows of `*`.
    pub fn delivered_classes(&self, plan: &AnonymisationPlan) -> Result<(DataFrame, Vec<u64>)> {
        // Without persons or sensitive values below the quasi-identifiers, a group's key is its class's.
        if !plan.delivered_from_table() {
            return Err(Error::Internal(
                "a table with persons, sensitive values or a subset cannot give the delivered rows"
                    .into(),
            ));
        }
        let levels = self.levels();
        let base = vec![0; levels.len()];
        let classes = self.table.project(self.table.base(), &base, levels);
        let mut kept: Vec<(u128, bool)> = Vec::with_capacity(classes.len());
        let mut rows: Vec<u64> = Vec::with_capacity(classes.len());
        for (class, n) in classes.iter() {
            let gone = self.suppressed.contains(&class);
            if gone && plan.suppressed == SuppressedRows::Remove {
                continue;
            }
            kept.push((class, gone));
            rows.push(n as u64);
        }
        let columns: Vec<Column> = plan
            .quasi_identifiers
            .par_iter()
            .enumerate()
            .map(|(j, q)| {
                let (h, level) = (&self.table.hierarchies[j], levels[j] as usize);
                let labels = kept.iter().map(|&(class, gone)| {
                    let label = if gone {
                        TOP
                    } else {
                        h.label(level, self.table.class_code(class, j))
                    };
                    (!label.is_empty()).then_some(label)
                });
                StringChunked::from_iter_options(q.output.as_str().into(), labels)
                    .into_series()
                    .into_column()
            })
            .collect();
        Ok((DataFrame::new(kept.len(), columns)?, rows))
    }
}

/// The classes of a written delivery, counted from the file (not from memory) by the text of its
/// quasi-identifiers, for [`recheck`].
pub fn count_delivered(
    plan: &AnonymisationPlan,
    path: &Path,
    batch_rows: usize,
) -> Result<TextClassCounter> {
    let mut names: Vec<String> = plan
        .quasi_identifiers
        .iter()
        .map(|q| q.output.clone())
        .collect();
    names.extend(plan.person_output.clone());
    names.extend(plan.sensitive.as_ref().map(|s| s.output.clone()));
    let mut counter = TextClassCounter::default();
    crate::source::read_parquet_text(path, &names, batch_rows, |df| {
        // `names` in order: the quasi-identifiers, then the person and sensitive columns if any.
        let mut quasi: Vec<&StringChunked> = names
            .iter()
            .map(|n| df.column(n)?.str())
            .collect::<PolarsResult<_>>()?;
        let sensitive = plan.sensitive.as_ref().and_then(|_| quasi.pop());
        let person = plan.person_output.as_ref().and_then(|_| quasi.pop());
        counter.add(&quasi, person, sensitive);
        Ok(())
    })?;
    Ok(counter)
}

/// Checks every class `counter` counted from the delivery at `path` ([`count_delivered`]) against
/// the models; returns the risk measured on the file and, with a sensitive column, what its
/// classes reach.
pub fn recheck(
    plan: &AnonymisationPlan,
    solution: &Solution,
    counter: &TextClassCounter,
    path: &Path,
) -> Result<(RiskSummary, Option<Reached>)> {
    let mut reached: Option<Reached> = None;
    let sensitive_hierarchy = solution.table.sensitive.as_ref().map(|s| &s.hierarchy);
    let blank_class: Vec<Option<&str>> = vec![Some(TOP); plan.quasi_identifiers.len()];
    let least_size = plan.models.least_size(solution.table.rows);
    let mut sizes = Vec::new();
    let mut written = Vec::new();
    let mut kept = Vec::new();
    for (key, class) in counter.classes() {
        let size = if plan.person_output.is_some() {
            class.size_in_persons()
        } else {
            class.records
        };
        sizes.push(ClassSize {
            records: class.records,
            size,
            population: None,
        });
        written.push((class.records, size));
        let exempt = plan.suppressed == SuppressedRows::Blank
            && solution.optimum.suppressed_rows > 0
            && key == blank_class;
        if exempt {
            continue;
        }
        kept.push((class.records, size));
        let fail = |what: String| {
            Err(Error::Privacy(format!(
                "re-check of {}: a class of {} rows {what}; nothing is delivered",
                path.display(),
                class.records
            )))
        };
        if let Some(k) = least_size
            && size < k
        {
            return fail(format!(
                "holds {size} {} (k = {k})",
                if plan.person_output.is_some() {
                    "persons"
                } else {
                    "rows"
                }
            ));
        }
        if plan.sensitive.is_some() {
            let histogram: Vec<(u32, u64)> = counter
                .sensitive(class)
                .map(|(v, n)| {
                    sensitive_hierarchy
                        .and_then(|h| h.code(v))
                        .map(|c| (c, n))
                        .ok_or_else(|| {
                            Error::Internal("a sensitive value changed between passes".into())
                        })
                })
                .collect::<Result<_>>()?;
            if !solution
                .table
                .class_meets(&histogram, class.records, &plan.models)
            {
                return fail("breaks ℓ-diversity or t-closeness".into());
            }
            let class_reached =
                solution
                    .table
                    .class_reached(&histogram, class.records, &plan.models);
            reached = Some(reached.map_or(class_reached, |r| r.worst(class_reached)));
        }
    }
    if !plan.models.risks_hold(&KeptRisk::of(&plan.models, kept)) {
        return Err(Error::Privacy(format!(
            "re-check of {}: the delivered classes break {}; nothing is delivered",
            path.display(),
            plan.describe_models()
        )));
    }
    // The file holds exactly the classes the search chose (suppressed rows removed), class for
    // class: pass 2 read back every row of pass 1, and nothing changed between the passes.
    // (Blanked rows may merge with a kept class of `*` everywhere: there the rows are compared.)
    let rows: u64 = written.iter().map(|w| w.0).sum();
    let expected_rows = match plan.suppressed {
        SuppressedRows::Remove => solution.table.rows - solution.optimum.suppressed_rows,
        SuppressedRows::Blank => solution.table.rows,
    };
    written.sort_unstable();
    if rows != expected_rows
        || (plan.suppressed == SuppressedRows::Remove && written != solution.kept_classes)
    {
        return Err(Error::Internal(format!(
            "re-check of {}: {} classes of {rows} rows were written, where the search chose {} \
             classes of {expected_rows} rows; nothing is delivered",
            path.display(),
            written.len(),
            solution.kept_classes.len()
        )));
    }
    let risk = RiskSummary::of(
        sizes,
        plan.person_output.is_some(),
        least_size,
        plan.risk_threshold,
    );
    Ok((risk, reached))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A date column is coded as the text polars' own cast writes for it (ISO), row by row, with
    /// nulls and runs of equal days, across chunks.
    #[test]
    fn dates_are_coded_as_their_iso_text() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(29);
        let mut days: Vec<Option<i32>> = Vec::new();
        while days.len() < 2000 {
            // Days from 1600 to 2400, around leap days and the epoch, and nulls.
            let day = (rng.random_range(0..8) != 0).then(|| rng.random_range(-135_000..157_000));
            days.extend(std::iter::repeat_n(day, rng.random_range(1..4)));
        }
        let mut column = Int32Chunked::from_iter_options("d".into(), days[..900].iter().copied());
        column
            .append(&Int32Chunked::from_iter_options(
                "d".into(),
                days[900..].iter().copied(),
            ))
            .unwrap();
        let column = column.into_date().into_column();
        let expected: Vec<Option<String>> = column
            .cast(&DataType::String)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(String::from))
            .collect();
        let mut texts: Vec<Option<String>> = Vec::new();
        let mut rows = Vec::new();
        let level0 = Level0::column(&column).unwrap();
        let Ok(codes) = Level0::of(&level0).unwrap().codes(|row, v| {
            rows.push(row);
            texts.push(v.map(|v| v.text.to_string()));
            Ok::<_, std::convert::Infallible>(texts.len() as u32 - 1)
        });
        let got: Vec<Option<String>> = codes.iter().map(|&c| texts[c as usize].clone()).collect();
        assert_eq!(got, expected);
        // Asked at the first row of each run (a run may span the chunks).
        let firsts: Vec<usize> = (0..days.len())
            .filter(|&r| r == 0 || days[r] != days[r - 1])
            .collect();
        assert_eq!(rows, firsts);
    }

    #[test]
    fn short_and_long_values_get_one_code_per_text() {
        let source = HierarchySource::Values;
        let mut encoder = Encoder::new(&source, false);
        let texts = [
            "",
            "a",
            "a\0",
            "\0",
            "ab",
            "abcdefghijkl",
            "abcdefghijklm",
            "abcdefghijklmno",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "é",
            "e",
            "2024-02-29",
            "2024-02-28",
        ];
        let codes: Vec<u32> = texts
            .iter()
            .map(|t| encoder.encode(Some(TextValue::new(t))).unwrap())
            .collect();
        let distinct: HashSet<u32> = codes.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            texts.len(),
            "distinct texts, distinct codes"
        );
        for (t, &c) in texts.iter().zip(&codes) {
            assert_eq!(
                encoder.encode(Some(TextValue::new(t))).unwrap(),
                c,
                "{t:?} again"
            );
        }
        let hierarchy = encoder.into_hierarchy("x").unwrap();
        for (t, &c) in texts.iter().zip(&codes) {
            assert_eq!(hierarchy.label(0, c), *t);
        }
    }
}
