//! Facts about persons that one dataset holds and others need, each found by one pass over that
//! dataset the first time a batch needs it, memory bounded by persons, not rows: the persons of a
//! person-level cohort (every row, in every table, of the persons with a diabetes code in
//! `conditions`), and the persons' birth dates that other tables' dates are compared with.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;

use super::{days, filter_mask, strings, typed_batch};
use crate::error::{Error, Result};
use crate::kernels::identifier::Checked;
use crate::permit::Aggregate;
use crate::plan::birth::BirthDates;
use crate::plan::{DatasetPlan, PersonCondition, PersonVia, Plan, ProfileColumn, ReadColumn};

/// The persons (normalised identifiers) meeting a person-level condition.
pub(super) fn persons_meeting<'c>(
    plan: &Plan,
    c: &'c PersonCondition,
) -> Result<&'c HashSet<String>> {
    let found = c.persons.get_or_init(|| {
        let mut persons = HashSet::new();
        scan(plan, c.dataset, |cols, person| {
            let meets = filter_mask(std::slice::from_ref(&c.condition), cols)?;
            for (normal, meets) in person.into_iter().zip(meets) {
                if let Some(normal) = normal.filter(|_| meets) {
                    persons.insert(normal);
                }
            }
            Ok(())
        })
        .map(|()| persons)
        .map_err(|e| e.to_string())
    });
    reported(plan, c.dataset, found)
}

/// The birth date of each person of a birth-date column (the first one read, if several).
pub(crate) fn birth_dates<'b>(plan: &Plan, b: &'b BirthDates) -> Result<&'b HashMap<String, i32>> {
    let found = b.days.get_or_init(|| {
        let mut births = HashMap::new();
        scan(plan, b.dataset, |cols, person| {
            for (normal, day) in person.into_iter().zip(days(&cols[b.column])?) {
                if let (Some(normal), Some(day)) = (normal, day) {
                    births.entry(normal).or_insert(day);
                }
            }
            Ok(())
        })
        .map(|()| births)
        .map_err(|e| e.to_string())
    });
    reported(plan, b.dataset, found)
}

/// A profile attribute for each row's person: the earliest or latest day of the person's rows in
/// the other dataset (null for a person without one), or whether one holds a listed code.
pub(super) fn profile_column(
    plan: &Plan,
    d: &DatasetPlan,
    spec: &ReadColumn,
    p: &ProfileColumn,
    cols: &[Series],
) -> Result<Series> {
    let found = p.values.get_or_init(|| {
        let mut values: HashMap<String, i32> = HashMap::new();
        let of = &plan.datasets[p.dataset];
        scan(plan, p.dataset, |cols, person| {
            let in_cohort = filter_mask(&of.cohort, cols)?;
            let rows = person.into_iter().zip(in_cohort);
            match p.aggregate {
                Aggregate::First | Aggregate::Last => {
                    let first = p.aggregate == Aggregate::First;
                    for ((normal, kept), day) in rows.zip(days(&cols[p.column])?) {
                        let (Some(normal), true, Some(day)) = (normal, kept, day) else {
                            continue;
                        };
                        values
                            .entry(normal)
                            .and_modify(|v| *v = if first { (*v).min(day) } else { (*v).max(day) })
                            .or_insert(day);
                    }
                }
                Aggregate::Count => {
                    let present = cols[p.column].is_not_null();
                    for ((normal, kept), present) in rows.zip(present.iter()) {
                        if let (Some(normal), true, Some(true)) = (normal, kept, present) {
                            *values.entry(normal).or_insert(0) += 1;
                        }
                    }
                }
                Aggregate::Has => {
                    for ((normal, kept), code) in rows.zip(strings(&cols[p.column])?) {
                        let has = code.is_some_and(|c| {
                            p.prefixes.iter().any(|x| c.trim().starts_with(x.as_str()))
                        });
                        if let (Some(normal), true, true) = (normal, kept, has) {
                            values.insert(normal, 1);
                        }
                    }
                }
            }
            Ok(())
        })
        .map(|()| values)
        .map_err(|e| e.to_string())
    });
    let values = reported(plan, p.dataset, found)?;
    let (person, rule) = d
        .person
        .as_ref()
        .expect("validated: a profile needs a person");
    let mut normal = String::new();
    let mut value = |id: Option<&str>| {
        (rule.check_into(id, &mut normal) == Checked::Valid)
            .then(|| values.get(normal.as_str()).copied())
            .flatten()
    };
    let ids = strings(&cols[*person])?;
    let name = spec.name.as_str().into();
    Ok(match p.aggregate {
        Aggregate::First | Aggregate::Last => {
            Int32Chunked::from_iter_options(name, ids.into_iter().map(value))
                .into_date()
                .into_series()
        }
        Aggregate::Count => Int64Chunked::from_iter_options(
            name,
            ids.into_iter()
                .map(|id| Some(value(id).unwrap_or(0) as i64)),
        )
        .into_series(),
        Aggregate::Has => BooleanChunked::from_iter_options(
            name,
            ids.into_iter().map(|id| Some(value(id).is_some())),
        )
        .into_series(),
    })
}

/// The person of each row of a table that reaches it through a join key (normalised; None where
/// no row of the parent has the key, or its person is not valid).
pub(super) fn persons_by_key(
    plan: &Plan,
    via: &PersonVia,
    cols: &[Series],
) -> Result<Vec<Option<String>>> {
    let found = via.persons.get_or_init(|| {
        let mut persons: HashMap<String, String> = HashMap::new();
        let mut conflict = false;
        scan(plan, via.parent, |cols, person| {
            for (key, normal) in key_texts(cols, &via.parent_keys)?.into_iter().zip(person) {
                let (Some(key), Some(normal)) = (key, normal) else {
                    continue;
                };
                match persons.get(&key) {
                    Some(known) => conflict |= *known != normal,
                    None => {
                        persons.insert(key, normal);
                    }
                }
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        if conflict {
            return Err(
                "one join key leads to two persons (values not shown): the key does \
                        not identify a row of one person; add its missing columns"
                    .into(),
            );
        }
        Ok(persons)
    });
    let persons = reported(plan, via.parent, found)?;
    Ok(key_texts(cols, &via.keys)?
        .into_iter()
        .map(|key| key.and_then(|k| persons.get(&k).cloned()))
        .collect())
}

/// Each row's join key as one text (its columns' texts joined by a unit separator, which no
/// value holds unseen); None where a column is missing.
fn key_texts(cols: &[Series], keys: &[usize]) -> Result<Vec<Option<String>>> {
    let texts: Vec<Series> = keys
        .iter()
        .map(|&k| cols[k].cast(&polars::prelude::DataType::String))
        .collect::<polars::prelude::PolarsResult<_>>()?;
    let texts: Vec<Vec<Option<&str>>> = texts.iter().map(strings).collect::<Result<_>>()?;
    Ok((0..cols.first().map_or(0, |c| c.len()))
        .map(|row| {
            let parts: Option<Vec<&str>> = texts.iter().map(|t| t[row].map(str::trim)).collect();
            parts.map(|p| p.join("\u{1f}"))
        })
        .collect())
}

/// A pass's outcome, its error (kept in words) named as that dataset's.
fn reported<'t, T>(
    plan: &Plan,
    dataset: usize,
    found: &'t std::result::Result<T, String>,
) -> Result<&'t T> {
    let of = &plan.datasets[dataset];
    found.as_ref().map_err(|message| {
        Error::input(
            of.source_name(),
            format!(
                "dataset `{}`, read for what other datasets need of its persons",
                of.name
            ),
            message.clone(),
        )
    })
}

/// Reads a dataset's batches in its declared types, giving each with its rows' persons
/// (normalised; None where the identifier is not valid).
fn scan(
    plan: &Plan,
    dataset: usize,
    mut each: impl FnMut(&[Series], Vec<Option<String>>) -> Result<()>,
) -> Result<()> {
    let of = &plan.datasets[dataset];
    let (person, rule) = of.person.as_ref().expect("validated: person column");
    let mut normal = String::new();
    let records = crate::source::read_batches(
        of.input(),
        &of.source_columns(),
        plan.permit.spec.output.batch_rows,
        &format!("source of {} (persons' facts)", of.name),
        |batch| {
            let cols = typed_batch(plan, of, &batch)?;
            let persons = strings(&cols[*person])?
                .into_iter()
                .map(|id| {
                    (rule.check_into(id, &mut normal) == Checked::Valid).then(|| normal.clone())
                })
                .collect();
            each(&cols, persons)
        },
    )?;
    plan.scanned
        .lock()
        .expect("no panic while holding it")
        .extend(records);
    Ok(())
}
