//! The operators of a dataset's steps: each takes the batch's typed columns (cohort kept, opted-out
//! persons left out) and gives its delivered column, by calling its kernel. A new column action is
//! a `Step` variant in `plan` and an operator here.

use std::borrow::Cow;

use chrono::Datelike;

use polars::prelude::*;
use rayon::prelude::*;

use super::{days, strings};
use crate::error::{Error, Result};
use crate::kernels::clk::{FieldError, Scratch};
use crate::kernels::generalise;
use crate::kernels::hex;
use crate::kernels::identifier::{Checked, IdentifierRule, PART_SEPARATOR};
use crate::kernels::mapping::{Dictionary, Unmapped};
use crate::kernels::mask::MaskRule;
use crate::kernels::pseudonymise::PseudonymBatch;
use crate::kernels::values;
use crate::permit::InvalidPolicy;
use crate::plan::{
    AgeReference, ClkStep, DatasetPlan, Generalisation, IdentifierStep, Plan, Protection,
    ReadColumn, Step, input_names, partial_unit,
};
use crate::report::ColumnCounts;
use crate::source::Origin;
use crate::source::text_column::SharedText;

/// What every operator reads of a batch.
pub(super) struct Input<'a> {
    pub plan: &'a Plan,
    pub dataset: &'a DatasetPlan,
    /// The typed source columns, in the dataset's read order, of the rows kept.
    pub columns: &'a [Series],
    pub origin: &'a Origin,
    /// Each kept row's row in the source batch, to name its place in a message.
    pub rows: &'a [usize],
}

impl Input<'_> {
    /// The error of a value at kept row `row` of source column `input` (never the value).
    fn error_at(&self, row: usize, column: &str, message: impl Into<String>) -> Error {
        Error::input(
            &self.origin.file,
            format!("{}, column `{column}`", self.origin.place(self.rows[row])),
            message,
        )
    }
}

/// The delivered column of `step`; its counts go to `counts`, and rows an identifier policy
/// rejects are marked in `reject`.
pub(super) fn apply(
    step: &Step,
    input: &Input,
    counts: &mut ColumnCounts,
    pseudo: &mut PseudonymBatch,
    reject: &mut [bool],
) -> Result<Series> {
    let name: PlSmallStr = step.output().into();
    let cols = input.columns;
    match step {
        Step::Keep { input: column, .. } => {
            match partial_unit(input.dataset.read[*column].column_type) {
                Some(unit) => generalised(name, &cols[*column], &unit),
                None => Ok(cols[*column].clone().with_name(name)),
            }
        }
        Step::Generalise { input, rule, .. } => generalised(name, &cols[*input], rule),
        Step::Identifier(p) => protected(name, p, input, counts, pseudo, reject),
        Step::Clk(c) => clk(name, c, input, counts, reject),
        Step::Shift {
            input: column,
            person,
            person_rule,
            date,
            to,
            ..
        } => {
            let shifted = shifted(
                name.clone(),
                &cols[*date],
                &input.dataset.read[*date],
                &cols[*person],
                person_rule,
                input,
                counts,
            )?;
            match to {
                None => Ok(shifted),
                Some(unit) => {
                    partial_of_shifted(name, &cols[*column], &cols[*date], &shifted, unit, counts)
                }
            }
        }
        Step::QuasiIdentifier {
            input: column,
            age_at,
            ..
        } => quasi_identifier(name, *column, age_at.as_ref(), input),
        Step::Mask { input, rule, .. } => masked(name, &cols[*input], rule),
        Step::Map {
            input: column,
            dictionary,
            unmapped,
            ..
        } => mapped(name, *column, dictionary, unmapped, input, counts),
    }
}

/// A date to its year (an integer) or month (the date of its first day), a text to its prefix.
fn generalised(name: PlSmallStr, column: &Series, rule: &Generalisation) -> Result<Series> {
    Ok(match rule {
        Generalisation::Year => Int64Chunked::from_iter_options(
            name,
            generalise::date_to_year(&days(column)?).into_iter(),
        )
        .into_series(),
        Generalisation::Month => Int32Chunked::from_iter_options(
            name,
            generalise::date_to_month_start(&days(column)?).into_iter(),
        )
        .into_date()
        .into_series(),
        Generalisation::Prefix(n) => StringChunked::from_iter_options(
            name,
            generalise::prefix(&strings(column)?, *n).into_iter(),
        )
        .into_series(),
    })
}

/// Each row's CLK, base64; a record the linkage schema refuses is counted, and rejected, left
/// null or stops the run as the permit says (naming the feature and rule, never the value). A
/// missing value is encoded as the empty text, as clkhash reads an empty CSV cell.
fn clk(
    name: PlSmallStr,
    c: &ClkStep,
    input: &Input,
    counts: &mut ColumnCounts,
    reject: &mut [bool],
) -> Result<Series> {
    // A date reads as its ISO text, an integer as its digits: the text a schema's `%Y-%m-%d`
    // date and integer features expect.
    let texts: Vec<Series> = c
        .inputs
        .iter()
        .map(|&i| input.columns[i].cast(&DataType::String))
        .collect::<PolarsResult<_>>()?;
    let columns: Vec<Vec<Option<&str>>> = texts.iter().map(strings).collect::<Result<_>>()?;
    let rows = input.rows.len();
    let encoded: Vec<std::result::Result<String, FieldError>> = (0..rows)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Scratch::default()),
            |(record, scratch), row| {
                record.clear();
                record.extend(columns.iter().map(|col| col[row].unwrap_or("")));
                c.schema
                    .encode_with(&c.keys, record, scratch)
                    .map(|bits| hex::base64(&bits))
            },
        )
        .collect();
    let mut values = Vec::with_capacity(rows);
    for (row, result) in encoded.into_iter().enumerate() {
        match result {
            Ok(clk) => values.push(Some(clk)),
            Err(e) => {
                counts.invalid += 1;
                match c.on_invalid {
                    InvalidPolicy::RejectRow => reject[row] = true,
                    InvalidPolicy::Null => {}
                    InvalidPolicy::Fail => {
                        let column = &input.dataset.read[c.inputs[e.feature]].name;
                        return Err(input.error_at(
                            row,
                            column,
                            format!(
                                "the linkage schema's feature `{}` refuses the value: {} \
                                 (value not shown; on_invalid = \"fail\")",
                                e.identifier, e.rule
                            ),
                        ));
                    }
                }
                values.push(None);
            }
        }
    }
    Ok(StringChunked::from_iter_options(name, values.iter().map(Option::as_deref)).into_series())
}

/// An identifier (or a composite) pseudonymised or tokenised; invalid and missing identifiers
/// counted, and rejected or refused as the permit says.
fn protected(
    name: PlSmallStr,
    p: &IdentifierStep,
    input: &Input,
    counts: &mut ColumnCounts,
    pseudo: &mut PseudonymBatch,
    reject: &mut [bool],
) -> Result<Series> {
    let plan = input.plan;
    // Typed inputs of a composite (dates, numbers) enter in their canonical text form.
    let texts: Vec<Series> = p
        .inputs
        .iter()
        .map(|&i| input.columns[i].cast(&DataType::String))
        .collect::<PolarsResult<_>>()?;
    let parts_text: Vec<Vec<Option<&str>>> = texts.iter().map(strings).collect::<Result<_>>()?;
    let parts: Vec<&[Option<&str>]> = parts_text.iter().map(Vec::as_slice).collect();
    let rules: Vec<&_> = p.rules.iter().collect();
    let (status, column) = match &p.protection {
        Protection::Pseudonym { domain } => {
            plan.domains[domain]
                .pseudonymiser
                .pseudonymise_into(&rules, &parts, pseudo);
            // The column shares the batch's text (no per-value copy); the next batch gets a
            // buffer of its own.
            let text = SharedText::new(pseudo.take_text());
            let values = pseudo
                .values_in(text.as_str())
                .map(|v| v.map(Cow::Borrowed));
            let column = text.column(name, values).into_series();
            (std::mem::take(&mut pseudo.status), column)
        }
        Protection::Token => {
            let tokeniser = plan
                .tokeniser
                .as_ref()
                .expect("validated: [tokens] present");
            let (status, tokens) = tokeniser.tokenise(rules[0], parts[0]);
            let column =
                StringChunked::from_iter_options(name, tokens.iter().map(Option::as_deref))
                    .into_series();
            (status, column)
        }
    };
    for (row, &status) in status.iter().enumerate() {
        let what = match status {
            Checked::Valid => continue,
            Checked::Invalid => {
                counts.invalid += 1;
                "invalid"
            }
            Checked::Missing => {
                counts.missing += 1;
                "missing"
            }
        };
        match p.policy(status) {
            Some(InvalidPolicy::RejectRow) => reject[row] = true,
            Some(InvalidPolicy::Fail) => {
                return Err(input.error_at(
                    row,
                    &input_names(&p.inputs, &input.dataset.read),
                    format!(
                        "identifier is {what} and the permit says on_{what} = \"fail\" (value not shown)"
                    ),
                ));
            }
            _ => {}
        }
    }
    pseudo.status = status;
    Ok(column)
}

/// Dates and datetimes moved by their person's keyed shift (whole days).
fn shifted(
    name: PlSmallStr,
    column: &Series,
    spec: &ReadColumn,
    person: &Series,
    person_rule: &IdentifierRule,
    input: &Input,
    counts: &mut ColumnCounts,
) -> Result<Series> {
    let shifter = input
        .plan
        .date_shifter
        .as_ref()
        .expect("validated: [date_shift] present");
    let first_part = input.plan.shift_by_first_part;
    let shifts: Vec<Option<i32>> = strings(person)?
        .par_iter()
        .map_init(
            || (String::new(), Vec::new()),
            |(normal, message), id| match person_rule.check_into(*id, normal) {
                Checked::Missing => None,
                _ if first_part => {
                    let key = normal.split(PART_SEPARATOR).next().unwrap_or_default();
                    Some(shifter.shift(key, message))
                }
                _ => Some(shifter.shift(normal, message)),
            },
        )
        .collect();
    counts.missing += shifts.iter().filter(|s| s.is_none()).count() as u64;
    check_plausible(column, spec, input, counts)?;
    Ok(if let DataType::Datetime(..) = column.dtype() {
        let times = column.datetime()?.physical().iter();
        let shifted = times
            .zip(&shifts)
            .map(|(t, s)| Some(t? + *s.as_ref()? as i64 * values::MICROS_PER_DAY));
        Int64Chunked::from_iter_options(name, shifted)
            .into_datetime(TimeUnit::Microseconds, None)
            .into_series()
    } else {
        let dates = days(column)?;
        let shifted = dates
            .iter()
            .zip(&shifts)
            .map(|(d, s)| Some(d.as_ref()? + s.as_ref()?));
        Int32Chunked::from_iter_options(name, shifted)
            .into_date()
            .into_series()
    })
}

/// The year (or month) of each row's shifted date, where the row's partial date is present; the
/// rows whose partial date is not the year (month) of their date before the shift are counted.
fn partial_of_shifted(
    name: PlSmallStr,
    partial: &Series,
    date: &Series,
    shifted: &Series,
    unit: &Generalisation,
    counts: &mut ColumnCounts,
) -> Result<Series> {
    let present = days(partial)?;
    let (before, after) = (days(date)?, days(shifted)?);
    let period = |d: i32| {
        let date = values::days_to_date(d);
        match unit {
            Generalisation::Year => (date.year(), 0),
            _ => (date.year(), date.month()),
        }
    };
    counts.partial_dates_disagreeing += present
        .iter()
        .zip(&before)
        .filter(|(p, d)| matches!((p, d), (Some(p), Some(d)) if period(*p) != period(*d)))
        .count() as u64;
    let kept: Vec<Option<i32>> = present.iter().zip(after).map(|(p, a)| p.and(a)).collect();
    generalised(
        name,
        &Int32Chunked::from_iter_options("".into(), kept.into_iter())
            .into_date()
            .into_series(),
        unit,
    )
}

/// A quasi-identifier at level 0, as the privacy stage codes it: a date stays a date until it is
/// coded (its ISO text is written once per run of equal days, `anonymise::Level0`), an age is
/// computed from the birth date, anything else is text.
fn quasi_identifier(
    name: PlSmallStr,
    column: usize,
    age_at: Option<&AgeReference>,
    input: &Input,
) -> Result<Series> {
    let cols = input.columns;
    let Some(reference) = age_at else {
        return Ok(if cols[column].dtype() == &DataType::Date {
            cols[column].clone().with_name(name)
        } else {
            cols[column].cast(&DataType::String)?.with_name(name)
        });
    };
    let birth = days(&cols[column])?;
    let at: Vec<Option<i32>> = match reference {
        AgeReference::Column(c) => days(&cols[*c])?,
        AgeReference::Date(d) => vec![Some(*d); birth.len()],
    };
    let ages = values::ages(&birth, &at).map_err(|row| {
        input.error_at(
            row,
            &input.dataset.read[column].name,
            values::BIRTH_AFTER_AGE_DATE,
        )
    })?;
    Ok(Int32Chunked::from_iter_options(name, ages.into_iter())
        .into_series()
        .cast(&DataType::String)?)
}

/// Characters masked, a value replaced or blanked.
fn masked(name: PlSmallStr, column: &Series, rule: &MaskRule) -> Result<Series> {
    if matches!(rule, MaskRule::Blank) {
        // Any type can be blanked; only text has characters to mask.
        return Ok(Series::full_null(name, column.len(), &DataType::String));
    }
    let masked: Vec<Option<String>> = strings(column)?.iter().map(|v| rule.apply(*v)).collect();
    Ok(StringChunked::from_iter_options(name, masked.iter().map(Option::as_deref)).into_series())
}

/// Codes mapped through a dictionary; unmapped values counted, or refused.
fn mapped(
    name: PlSmallStr,
    column: usize,
    dictionary: &Dictionary,
    unmapped: &Unmapped,
    input: &Input,
    counts: &mut ColumnCounts,
) -> Result<Series> {
    let values = strings(&input.columns[column])?;
    let (mapped, missing) = dictionary.apply(&values, unmapped).map_err(|row| {
        input.error_at(
            row,
            &input.dataset.read[column].name,
            format!(
                "value is not in dictionary {} and on_unmapped = \"fail\" (value not shown)",
                dictionary.file.display()
            ),
        )
    })?;
    counts.invalid += missing as u64;
    Ok(StringChunked::from_iter_options(name, mapped.into_iter()).into_series())
}

/// The first and last days a shifted date may fall on before its shift: outside, it is more
/// likely a sentinel ("no date", `1600-01-01`, `9999-12-31`) than a date, and shifting it would
/// publish each person's shift.
pub(crate) const PLAUSIBLE_DAYS: (i32, i32) = (-43_829, 84_005); // 1850-01-01, 2199-12-31

/// Why a date outside [`PLAUSIBLE_DAYS`] is not shifted.
pub(crate) const IMPLAUSIBLE_SHIFT: &str = "a date to shift lies outside 1850–2199 (value not shown): a sentinel meaning \
     \"no date\" would give away each person's shift; list it in the column's null_values, or \
     give unusual_dates = \"<reason>\"";

/// Stops a shifted column at a date outside 1850–2199, unless the permit says why it may hold
/// one; counts the dates for the check of a repeated value at the end of the dataset.
fn check_plausible(
    column: &Series,
    spec: &ReadColumn,
    input: &Input,
    counts: &mut ColumnCounts,
) -> Result<()> {
    let days: Vec<Option<i32>> = match column.dtype() {
        DataType::Datetime(..) => column
            .datetime()?
            .physical()
            .iter()
            .map(|t| t.map(|t| t.div_euclid(values::MICROS_PER_DAY) as i32))
            .collect(),
        _ => days(column)?,
    };
    if spec.unusual_dates {
        return Ok(());
    }
    let (first, last) = PLAUSIBLE_DAYS;
    if let Some(row) = days
        .iter()
        .position(|d| d.is_some_and(|d| d < first || d > last))
    {
        return Err(Error::input(
            &input.origin.file,
            format!(
                "{}, column `{}`",
                input.origin.place(input.rows[row]),
                spec.name
            ),
            IMPLAUSIBLE_SHIFT,
        ));
    }
    for d in days.into_iter().flatten() {
        *counts.dates_before_shift.entry(d).or_default() += 1;
    }
    Ok(())
}

/// A shifted column whose one date holds half its rows (at least 20) is taken for a sentinel: the
/// same date moved by each person's shift would publish the shifts.
pub(super) fn check_repeated_date(
    d: &DatasetPlan,
    column: &str,
    counts: &ColumnCounts,
) -> Result<()> {
    let total: u64 = counts.dates_before_shift.values().sum();
    let most = counts
        .dates_before_shift
        .values()
        .copied()
        .max()
        .unwrap_or(0);
    if total >= 20 && most * 2 >= total {
        return Err(Error::input(
            d.source_name(),
            format!("dataset `{}`, column `{column}`", d.name),
            format!(
                "one date holds {most} of the {total} dates to shift (value not shown): a sentinel \
                 meaning \"no date\", shifted, would give away each person's shift; list it in \
                 the column's null_values, or give unusual_dates = \"<reason>\""
            ),
        ));
    }
    Ok(())
}
