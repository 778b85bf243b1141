//! A dataset's plan as DataFusion queries: its source read as text, each declared column parsed
//! in its type, the cohort and opt-out flags (and the persons other datasets removed), then, on the
//! rows kept, each step's delivered column by the same kernel as the engine (see
//! [`super::functions`]); an anonymised dataset's rows at their chosen levels ([`generalised`]);
//! and the delivery's row order ([`ordered`]).
//!
//! What the cluster does not run yet is refused before anything is read ([`supported`]), naming
//! the feature, so that a permit runs on a cluster exactly as it would on one machine or not at all.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::prelude::{CsvReadOptions, DataFrame, SessionContext, cast, ident, lit, when};

use super::SharedFile;
use super::functions::{self as f, nulls_text, policy_text, rule_text};
use crate::error::{Error, Result};
use crate::kernels::levels::TOP;
use crate::permit::{ColumnType, InvalidPolicy, SourceFormat, TextEncoding};
use crate::plan::{AgeReference, DatasetPlan, Filter, Generalisation, Plan, Protection, Step};
use crate::privacy::anonymise::SuppressedRows;

/// Why a plan cannot run on a cluster yet, or Ok.
pub fn supported(plan: &Plan) -> Result<()> {
    let refuse = |at: String, what: &str| {
        Err(Error::Permit {
            file: plan.permit.path.clone(),
            at,
            message: format!(
                "{what} does not run on a cluster yet: run this permit without `--cluster`"
            ),
        })
    };
    let spec = &plan.permit.spec;
    if spec.linkage.is_some() {
        return refuse("linkage".into(), "a linking permit");
    }
    if spec.tokens.is_some() {
        return refuse("tokens".into(), "reversible tokens");
    }
    if let Some(o) = &spec.opt_out
        && o.parts.is_some()
    {
        return refuse(
            "opt_out.parts".into(),
            "an opt-out list of composite persons",
        );
    }
    if spec.date_shift.is_some() && plan.shift_by_first_part {
        return refuse("date_shift.keyed_on".into(), "a shift keyed on a part");
    }
    for (i, (d, ds)) in plan.datasets.iter().zip(&spec.datasets).enumerate() {
        let at = |key: &str| format!("datasets[{i}].{key}");
        if d.source.format != SourceFormat::Csv {
            return refuse(at("source.format"), "a source other than CSV");
        }
        if d.source.encoding != TextEncoding::Utf8 {
            return refuse(
                at("source.encoding"),
                "a CSV source not in UTF-8 (convert it, e.g. with iconv, or to Parquet)",
            );
        }
        if !d.source.header {
            return refuse(at("source.header"), "a CSV source without a header");
        }
        if d.source.quote.chars().count() != 1 || !d.source.quote.is_ascii() {
            return refuse(at("source.quote"), "a CSV source without a one-byte quote");
        }
        if d.read_only {
            return refuse(at("name"), "a dataset read only for another one");
        }
        if d.set_valued.is_some() || (ds.privacy.is_some() && d.anonymisation.is_none()) {
            return refuse(at("privacy"), "a set-valued attribute");
        }
        if d.anonymisation.as_ref().is_some_and(|a| a.subset.is_some()) {
            return refuse(at("privacy"), "a research subset");
        }
        if d.person_via.is_some() || !d.person_parts.is_empty() {
            return refuse(
                at("person"),
                "a person found by a join key or made of parts",
            );
        }
        if !d.delivered_cohort.is_empty() {
            return refuse(at("cohort"), "a cohort condition on delivered values");
        }
        for (j, c) in d.read.iter().enumerate() {
            let at = |key: &str| format!("datasets[{i}].columns[{j}].{key}");
            if c.profile.is_some() {
                return refuse(at("profile"), "a person profile column");
            }
            if !c.valid_when.is_empty() {
                return refuse(
                    at("valid_when"),
                    "a value valid only when another column says so",
                );
            }
            if c.column_type.is_partial_date() {
                return refuse(at("type"), "a partial date (year, year_month)");
            }
        }
        for filter in &d.cohort {
            match filter {
                Filter::Persons(_) => return refuse(at("cohort"), "a person-level cohort"),
                Filter::Values { column, .. } | Filter::Prefixes { column, .. }
                    if !is_text(d.read[*column].column_type) =>
                {
                    return refuse(
                        at("cohort"),
                        "a value list or prefix on a column that is not text",
                    );
                }
                Filter::Range { column, from, to }
                    if d.read[*column].column_type == ColumnType::Datetime
                        && [from, to]
                            .iter()
                            .any(|v| v.is_some_and(|v| v.fract() != 0.0)) =>
                {
                    return refuse(at("cohort"), "a datetime range not in whole days");
                }
                _ => {}
            }
        }
        for step in &d.steps {
            let unsupported = match step {
                Step::Keep { .. } => None,
                Step::Generalise { input, rule, .. } => match rule {
                    Generalisation::Prefix(_) if !is_text(d.read[*input].column_type) => {
                        Some("a prefix of a column that is not text")
                    }
                    _ => None,
                },
                Step::Identifier(p) => match (&p.protection, p.inputs.as_slice()) {
                    (Protection::Token, _) => Some("a reversible token"),
                    (_, [one]) if is_text(d.read[*one].column_type) => None,
                    _ => Some("a composite or typed identifier"),
                },
                Step::Shift { to: Some(_), .. } => Some("a shifted partial date"),
                Step::Shift { .. } => None,
                Step::Clk(_) => Some("a CLK"),
                Step::Mask { .. } => Some("masking"),
                Step::Map { .. } => Some("dictionary mapping"),
                Step::QuasiIdentifier {
                    input,
                    age_at: Some(_),
                    ..
                } if d.read[*input].column_type != ColumnType::Date => {
                    Some("an age computed from a value that is not a date")
                }
                Step::QuasiIdentifier {
                    age_at: Some(_), ..
                } => None,
                Step::QuasiIdentifier { input, .. } => match d.read[*input].column_type {
                    ColumnType::String
                    | ColumnType::Text
                    | ColumnType::Integer
                    | ColumnType::Date => None,
                    // Their text would be Arrow's cast, not the engine's.
                    _ => Some("a quasi-identifier that is not text, an integer or a date"),
                },
            };
            if let Some(what) = unsupported {
                return refuse(at(&format!("columns (`{}`)", step.output())), what);
            }
        }
        let order = order_step(d);
        if let Step::Keep { input, .. } = order
            && !matches!(
                d.read[*input].column_type,
                ColumnType::String | ColumnType::Text | ColumnType::Integer
            )
        {
            return refuse(
                at("columns"),
                "a dataset whose first column is neither text nor an integer (its row order)",
            );
        }
    }
    Ok(())
}

fn is_text(t: ColumnType) -> bool {
    matches!(t, ColumnType::String | ColumnType::Text)
}

/// The step whose column orders the delivery: the person's, or the first.
fn order_step(d: &DatasetPlan) -> &Step {
    d.person_step().unwrap_or(&d.steps[0])
}

/// The names of a CSV file's header, as the engine reads them (a UTF-8 byte-order mark dropped,
/// fields unquoted).
fn header(file: &Path, delimiter: char, quote: char) -> Result<Vec<String>> {
    use std::io::BufRead;
    let open = std::fs::File::open(file).map_err(|e| Error::input(file, "", e.to_string()))?;
    let mut line = String::new();
    std::io::BufReader::new(open)
        .read_line(&mut line)
        .map_err(|e| Error::input(file, "line 1", format!("the header is not UTF-8 text: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']);
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    Ok(line
        .split(delimiter)
        .map(|name| {
            let name = name.trim();
            name.strip_prefix(quote)
                .and_then(|n| n.strip_suffix(quote))
                .unwrap_or(name)
                .to_string()
        })
        .collect())
}

/// The functions a plan calls, by name.
pub struct Udfs(Vec<Arc<ScalarUDF>>);

impl Udfs {
    pub fn of(ctx: &SessionContext) -> Result<Udfs> {
        let state = ctx.state();
        let udfs = f::names()
            .into_iter()
            .map(|name| {
                state.scalar_functions().get(name).cloned().ok_or_else(|| {
                    Error::Internal(format!("the session has no function `{name}` registered"))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Udfs(udfs))
    }

    /// `ehds_pseudonym` of `[value, rule]` in the permit's domain `domain`, under the policies
    /// `[on_invalid, on_missing]`, a failure naming `place`.
    fn pseudonym(
        &self,
        plan: &Plan,
        domain: &str,
        [value, rule]: [Expr; 2],
        [on_invalid, on_missing]: [InvalidPolicy; 2],
        place: String,
    ) -> Expr {
        let domain = &plan.domains[domain];
        self.call(
            f::PSEUDONYM,
            vec![
                value,
                rule,
                text(domain.key_name.clone()),
                text(domain.key_fingerprint.clone()),
                text(domain.context.clone()),
                text(f::format_text(domain.pseudonymiser.format())),
                text(policy_text(on_invalid)),
                text(policy_text(on_missing)),
                text(place),
            ],
        )
    }

    fn call(&self, name: &str, args: Vec<Expr>) -> Expr {
        let udf = self
            .0
            .iter()
            .find(|u| u.name() == name)
            .expect("registered");
        udf.call(args)
    }
}

fn text(s: impl Into<String>) -> Expr {
    lit(ScalarValue::Utf8(Some(s.into())))
}

/// A dataset's queries. Conditions and statuses are expressions over `typed`, never columns:
/// DataFusion's planner and Ballista's serialised plans disagree on whether a computed boolean
/// column may be null.
pub struct DatasetQueries {
    /// Every row read, in the declared types.
    pub typed: DataFrame,
    /// The row is in the cohort; its person opted out; the person's normal form.
    pub in_cohort: Expr,
    pub opted_out: Expr,
    pub opt_out_normal: Expr,
    /// An identifier policy rejects the row.
    pub rejected: Expr,
    /// Per identifier step (by position among the steps): its status code (0 valid, 1 missing,
    /// 2 invalid); per shifted step, the status of its person.
    pub statuses: Vec<(usize, Expr)>,
    /// Per shifted step: its dates before the shift, as days.
    pub unshifted: Vec<(usize, Expr)>,
    /// The row's person was removed by an anonymised dataset written before.
    pub removed: Expr,
    /// The person's birth key, and per birth-date comparison whether the row's date is the
    /// person's birth date.
    pub birth_key: Expr,
    pub echoes: Vec<Expr>,
    /// The delivered rows (kept, not rejected) and columns, in no order; quasi-identifiers at
    /// level 0.
    pub delivered: DataFrame,
}

impl DatasetQueries {
    /// The rows of the cohort whose person did not opt out (nor was removed).
    pub fn kept(&self) -> Expr {
        self.in_cohort
            .clone()
            .and(!self.opted_out.clone())
            .and(!self.removed.clone())
    }
}

/// The persons an anonymised dataset removed, as a file every process reads (a JSON array of
/// the values that dataset delivers for them), for the datasets written after it to leave out.
#[derive(Clone, Copy)]
pub struct LeaveOut<'a> {
    /// The removing dataset, by position.
    pub by: usize,
    pub file: &'a SharedFile,
}

/// The birth dates of the permit's birth-date columns, shared with every process under the run's
/// random salt ([`f::birth_key`]), by the birth-date column's name.
#[derive(Default)]
pub struct Births {
    pub salt: String,
    pub files: std::collections::HashMap<String, SharedFile>,
}

/// The text of the identifier rule of dataset `at`'s column `column`, as a plan carries it.
fn rule_of_column(plan: &Plan, at: usize, column: usize) -> Expr {
    let name = &plan.datasets[at].read[column].name;
    let c = plan.permit.spec.datasets[at]
        .columns
        .iter()
        .find(|c| &c.name == name)
        .expect("declared");
    text(rule_text(
        c.identifier.unwrap_or_default(),
        c.pattern.as_deref(),
        c.case_sensitive == Some(true),
    ))
}

pub async fn dataset(
    ctx: &SessionContext,
    udfs: &Udfs,
    plan: &Plan,
    at: usize,
    leave_out: &[LeaveOut<'_>],
    births: &Births,
) -> Result<DatasetQueries> {
    let d = &plan.datasets[at];
    let df_error = |e: datafusion::error::DataFusionError| super::error_of(&e);
    let quote = d.source.quote.chars().next().expect("checked: one quote");
    let names = header(&d.files[0], d.source.delimiter, quote)?;
    for file in &d.files[1..] {
        if header(file, d.source.delimiter, quote)? != names {
            return Err(Error::input(
                file,
                "line 1",
                format!(
                    "its header differs from {}'s: on a cluster the files of a dataset share one header",
                    d.files[0].display()
                ),
            ));
        }
    }
    for c in &d.read {
        if !names.contains(&c.name) {
            return Err(Error::input(
                &d.files[0],
                "line 1",
                format!(
                    "the header has no column `{}` (declared in the permit)",
                    c.name
                ),
            ));
        }
    }
    let schema = Schema::new(
        names
            .iter()
            .enumerate()
            .map(|(i, _)| Field::new(format!("__ehds_field_{i}"), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let paths: Vec<String> = d.files.iter().map(|p| p.display().to_string()).collect();
    let options = CsvReadOptions::new()
        .has_header(true)
        .delimiter(d.source.delimiter as u8)
        .quote(quote as u8)
        .newlines_in_values(true)
        .file_extension("")
        // Every field is text here; what is missing is the permit's to say.
        .null_regex(Some("[^\\s\\S]".into()))
        .schema(&schema);
    let raw = ctx.read_csv(paths, options).await.map_err(df_error)?;
    let source = d.source_name().display().to_string();
    let place = |column: &str| format!("{source}\u{1f}column `{column}`");
    // Each declared column, parsed in its type under its own name.
    let parsed: Vec<Expr> = d
        .read
        .iter()
        .map(|c| {
            let field = names.iter().position(|n| *n == c.name).expect("checked");
            let mut nulls = d.source.null_values.clone();
            nulls.extend(c.null_values.iter().cloned());
            udfs.call(
                f::parse_name(c.column_type),
                vec![
                    ident(format!("__ehds_field_{field}")),
                    text(format!("{:?}", c.column_type)),
                    text(c.format.clone()),
                    text(nulls_text(&nulls)),
                    text(place(&c.name)),
                ],
            )
            .alias(&c.name)
        })
        .collect();
    let typed = raw.select(parsed).map_err(df_error)?;
    let column = |i: usize| ident(&d.read[i].name);
    let rule_of = |i: usize| rule_of_column(plan, at, i);
    // The cohort.
    let mut in_cohort = lit(true);
    for filter in &d.cohort {
        let condition = match filter {
            Filter::Range {
                column: c,
                from,
                to,
            } => range(column(*c), d.read[*c].column_type, *from, *to),
            Filter::Values { column: c, values } => {
                let mut values: Vec<&String> = values.iter().collect();
                values.sort();
                column(*c).in_list(values.into_iter().map(|v| text(v.clone())).collect(), false)
            }
            Filter::Prefixes {
                column: c,
                prefixes,
            } => prefixes
                .iter()
                .map(|p| datafusion::functions::expr_fn::starts_with(column(*c), text(p.clone())))
                .reduce(Expr::or)
                .unwrap_or(lit(false)),
            Filter::Persons(_) => unreachable!("refused by `supported`"),
        };
        in_cohort = in_cohort.and(condition);
    }
    let in_cohort = udfs.call(f::HOLDS, vec![in_cohort]);
    // The opt-out list.
    let (opted_out, normal) = match (&plan.opt_out, &plan.permit.spec.opt_out, &d.person) {
        (Some(list), Some(o), Some((person, _))) => {
            let sha256 = plan
                .inputs
                .iter()
                .find(|r| Path::new(&r.path) == list.file.as_path() || r.role == "opt-out list")
                .map(|r| r.sha256.clone())
                .ok_or_else(|| Error::Internal("the opt-out list was not recorded".into()))?;
            let list_rule = rule_text(
                o.identifier,
                o.pattern.as_deref(),
                o.case_sensitive == Some(true),
            );
            let on_invalid = match o.on_invalid {
                crate::permit::OptOutInvalid::Keep => "keep",
                crate::permit::OptOutInvalid::Fail => "fail",
            };
            (
                udfs.call(
                    f::OPTED_OUT,
                    vec![
                        column(*person),
                        rule_of(*person),
                        text(list.file.display().to_string()),
                        text(sha256),
                        text(list_rule),
                        text(on_invalid),
                    ],
                ),
                udfs.call(f::NORMAL, vec![column(*person), rule_of(*person)]),
            )
        }
        _ => (lit(false), lit(ScalarValue::Utf8(None))),
    };
    // The persons an anonymised dataset removed, in the form it delivers them.
    let mut removed = lit(false);
    if let Some((person, _)) = &d.person {
        for l in leave_out {
            let by = &plan.datasets[l.by];
            let (by_person, _) = by.person.as_ref().expect("a dataset that removed persons");
            let by_rule = rule_of_column(plan, l.by, *by_person);
            let delivered_as = match by.person_step() {
                Some(Step::Identifier(p)) => {
                    let Protection::Pseudonym { domain } = &p.protection else {
                        unreachable!("refused by `supported`")
                    };
                    udfs.pseudonym(
                        plan,
                        domain,
                        [column(*person), by_rule],
                        [InvalidPolicy::Null, InvalidPolicy::Null],
                        place(&d.read[*person].name),
                    )
                }
                _ => udfs.call(f::NORMAL, vec![column(*person), by_rule]),
            };
            let [file, sha256] = named(l.file);
            let listed = udfs.call(f::LISTED, vec![delivered_as, file, sha256]);
            removed = removed.or(listed);
        }
    }
    // The persons whose delivered date is their birth date.
    let (birth_key, echoes) = match &d.person {
        Some((person, _)) if !d.birth_echoes.is_empty() => {
            let key = udfs.call(
                f::BIRTH_KEY,
                vec![column(*person), rule_of(*person), text(births.salt.clone())],
            );
            let echoes = d
                .birth_echoes
                .iter()
                .map(|e| {
                    let [file, sha256] = named(&births.files[&e.birth.name]);
                    udfs.call(
                        f::BIRTH_ECHO,
                        vec![key.clone(), column(e.column), file, sha256],
                    )
                })
                .collect();
            (key, echoes)
        }
        _ => (lit(ScalarValue::Utf8(None)), Vec::new()),
    };
    // Each step's column, with what the report counts of it.
    let mut columns: Vec<Expr> = Vec::new();
    let (mut statuses, mut unshifted) = (Vec::new(), Vec::new());
    let mut rejected = lit(false);
    for (s, step) in d.steps.iter().enumerate() {
        let out = step.output().to_string();
        let expr = match step {
            Step::Keep { input, .. } => column(*input),
            Step::Generalise { input, rule, .. } => match rule {
                Generalisation::Year => udfs.call(f::YEAR, vec![column(*input)]),
                Generalisation::Month => udfs.call(f::MONTH, vec![column(*input)]),
                Generalisation::Prefix(n) => {
                    udfs.call(f::PREFIX, vec![column(*input), lit(*n as i64)])
                }
            },
            Step::Identifier(p) => {
                let Protection::Pseudonym { domain } = &p.protection else {
                    unreachable!("refused by `supported`")
                };
                let input = p.inputs[0];
                let status = udfs.call(f::STATUS, vec![column(input), rule_of(input)]);
                let rejected_codes: Vec<Expr> = [(1i8, p.on_missing), (2, p.on_invalid)]
                    .into_iter()
                    .filter(|(_, policy)| *policy == InvalidPolicy::RejectRow)
                    .map(|(code, _)| lit(code))
                    .collect();
                if !rejected_codes.is_empty() {
                    rejected = rejected.or(status.clone().in_list(rejected_codes, false));
                }
                statuses.push((s, status));
                udfs.pseudonym(
                    plan,
                    domain,
                    [column(input), rule_of(input)],
                    [p.on_invalid, p.on_missing],
                    place(&d.read[input].name),
                )
            }
            Step::Shift { person, date, .. } => {
                let shift = plan
                    .permit
                    .spec
                    .date_shift
                    .as_ref()
                    .expect("validated: [date_shift] present");
                let domain = &plan.domains[&shift.domain];
                let datetime = d.read[*date].column_type == ColumnType::Datetime;
                statuses.push((
                    s,
                    udfs.call(f::STATUS, vec![column(*person), rule_of(*person)]),
                ));
                unshifted.push((s, udfs.call(f::DAY, vec![column(*date)])));
                udfs.call(
                    if datetime {
                        f::SHIFT_DATETIME
                    } else {
                        f::SHIFT_DATE
                    },
                    vec![
                        column(*date),
                        column(*person),
                        rule_of(*person),
                        text(domain.key_name.clone()),
                        text(domain.key_fingerprint.clone()),
                        text(domain.context.clone()),
                        lit(i64::from(shift.min_days)),
                        lit(i64::from(shift.max_days)),
                        text(if d.read[*date].unusual_dates {
                            "unusual"
                        } else {
                            "plausible"
                        }),
                        text(place(&d.read[*date].name)),
                    ],
                )
            }
            // Level 0: a date as a date, any other value as its text (`engine::steps`).
            Step::QuasiIdentifier {
                input,
                age_at: Some(at),
                ..
            } => {
                let at = match at {
                    AgeReference::Column(c) => column(*c),
                    AgeReference::Date(day) => lit(ScalarValue::Date32(Some(*day))),
                };
                let age = udfs.call(
                    f::AGE,
                    vec![column(*input), at, text(place(&d.read[*input].name))],
                );
                cast(age, DataType::Utf8)
            }
            Step::QuasiIdentifier { input, .. } => match d.read[*input].column_type {
                ColumnType::Date => column(*input),
                _ => cast(column(*input), DataType::Utf8),
            },
            _ => unreachable!("refused by `supported`"),
        };
        // Text is delivered as large strings, as the single-node writer writes it.
        let expr = match &expr {
            _ if is_text_output(step, d) => cast(expr, DataType::LargeUtf8),
            _ => expr,
        };
        columns.push(expr.alias(&out));
    }
    let rejected = udfs.call(f::HOLDS, vec![rejected]);
    let removed = udfs.call(f::HOLDS, vec![removed]);
    let delivered = typed
        .clone()
        .filter(
            in_cohort
                .clone()
                .and(!opted_out.clone())
                .and(!removed.clone()),
        )
        .and_then(|f| f.filter(!rejected.clone()))
        .and_then(|f| f.select(columns))
        .map_err(df_error)?;
    Ok(DatasetQueries {
        typed,
        in_cohort,
        opted_out,
        opt_out_normal: normal,
        rejected,
        statuses,
        unshifted,
        removed,
        birth_key,
        echoes,
        delivered,
    })
}

/// `delivered` (the dataset's delivered columns, in order) in the delivery's order: the
/// single-node order's key of the person (or first) column, that column, then the row's hash.
pub fn ordered(udfs: &Udfs, d: &DatasetPlan, delivered: DataFrame) -> Result<DataFrame> {
    let outputs: Vec<String> = d.steps.iter().map(|s| s.output().to_string()).collect();
    let order_column = order_step(d).output().to_string();
    let key = udfs.call(
        f::ORDER_KEY,
        vec![cast(ident(&order_column), DataType::Utf8)],
    );
    let row_hash = udfs.call(f::ROW_HASH, outputs.iter().map(ident).collect());
    delivered
        .sort(vec![
            key.sort(true, true),
            ident(&order_column).sort(true, true),
            row_hash.sort(true, true),
        ])
        .map_err(|e| super::error_of(&e))
}

/// A shared file as a plan names it: its path and its SHA-256, which every process checks.
fn named(file: &SharedFile) -> [Expr; 2] {
    [
        text(file.path.display().to_string()),
        text(file.sha256.clone()),
    ]
}

/// The anonymised dataset's `delivered` rows at the levels of the shared `generalisation`: each
/// quasi-identifier labelled at its level, the rows of suppressed classes removed, or delivered
/// with every quasi-identifier `*`.
pub fn generalised(
    udfs: &Udfs,
    d: &DatasetPlan,
    delivered: DataFrame,
    generalisation: &SharedFile,
) -> Result<DataFrame> {
    let a = d.anonymisation.as_ref().expect("an anonymised dataset");
    let df_error = |e: datafusion::error::DataFusionError| super::error_of(&e);
    let [file, sha256] = named(generalisation);
    let quasi: Vec<&str> = a
        .quasi_identifiers
        .iter()
        .map(|q| q.output.as_str())
        .collect();
    let labelled: Vec<Expr> = d
        .steps
        .iter()
        .map(|s| {
            let out = s.output();
            match quasi.iter().position(|q| *q == out) {
                Some(j) => udfs
                    .call(
                        f::GENERALISE,
                        vec![ident(out), file.clone(), sha256.clone(), lit(j as i64)],
                    )
                    .alias(out),
                None => ident(out),
            }
        })
        .collect();
    let labelled = delivered.select(labelled).map_err(df_error)?;
    let mut class = vec![file, sha256];
    class.extend(quasi.iter().map(|q| ident(*q)));
    let suppressed = udfs.call(f::SUPPRESSED, class);
    let out = match a.suppressed {
        SuppressedRows::Remove => labelled.filter(!suppressed),
        SuppressedRows::Blank => {
            let columns: Vec<Expr> = d
                .steps
                .iter()
                .map(|s| {
                    let out = s.output();
                    let column = match quasi.contains(&out) {
                        true => when(suppressed.clone(), text(TOP))
                            .otherwise(ident(out))
                            .expect("a CASE with an ELSE"),
                        false => ident(out),
                    };
                    column.alias(out)
                })
                .collect();
            labelled.select(columns)
        }
    }
    .map_err(df_error)?;
    // Text is delivered as large strings, as the single-node writer writes it.
    let columns: Vec<Expr> = d
        .steps
        .iter()
        .map(|s| match quasi.contains(&s.output()) {
            true => cast(ident(s.output()), DataType::LargeUtf8).alias(s.output()),
            false => ident(s.output()),
        })
        .collect();
    out.select(columns).map_err(df_error)
}

/// Whether a step delivers text.
fn is_text_output(step: &Step, d: &DatasetPlan) -> bool {
    match step {
        Step::Keep { input, .. } => is_text(d.read[*input].column_type),
        Step::Generalise { rule, .. } => matches!(rule, Generalisation::Prefix(_)),
        Step::Identifier(_) => true,
        _ => false,
    }
}

/// A range condition over a typed column: dates and datetimes by their day, numbers as numbers.
fn range(column: Expr, t: ColumnType, from: Option<f64>, to: Option<f64>) -> Expr {
    let micros = crate::kernels::values::MICROS_PER_DAY;
    let bound = |v: f64, upper: bool| -> Expr {
        match t {
            ColumnType::Date => lit(ScalarValue::Date32(Some(if upper {
                v.floor() as i32
            } else {
                v.ceil() as i32
            }))),
            ColumnType::Datetime => {
                let day = v as i64 + i64::from(upper);
                lit(ScalarValue::TimestampMicrosecond(Some(day * micros), None))
            }
            _ => lit(v),
        }
    };
    let value = match t {
        ColumnType::Integer => cast(column, DataType::Float64),
        _ => column,
    };
    let mut condition = value.clone().is_not_null();
    if let Some(from) = from {
        condition = condition.and(value.clone().gt_eq(bound(from, false)));
    }
    if let Some(to) = to {
        condition = condition.and(match t {
            ColumnType::Datetime => value.lt(bound(to, true)),
            _ => value.lt_eq(bound(to, true)),
        });
    }
    condition
}
