//! The birth dates a permit names (the column an age is computed from, the column another
//! `derives_from`, a catalogue's `birth_date`), and the delivered dates of the same persons that
//! may repeat them: an observation start equal to the birth date publishes the birth date the
//! permit generalised. The run counts such persons per column and warns.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::permit::{Action, ColumnType, DatasetSpec, PermitSpec};

/// A birth-date column, and its persons' birth dates (normalised identifier → days since
/// 1970-01-01) once one pass over its dataset has read them (the error of that pass, in words).
pub struct BirthDates {
    pub dataset: usize,
    pub column: usize,
    /// `dataset.column`, for messages.
    pub name: String,
    pub days: OnceLock<std::result::Result<HashMap<String, i32>, String>>,
}

/// A delivered date column of a dataset, compared with its persons' birth dates.
pub struct BirthEcho {
    /// The date column, a position in the dataset's `read`.
    pub column: usize,
    pub birth: Arc<BirthDates>,
}

/// The birth-date columns of a permit: of datasets with a person, a date column the permit says
/// is a birth date.
pub fn birth_dates(spec: &PermitSpec) -> Vec<Arc<BirthDates>> {
    let named = |d: &DatasetSpec, column: &str| -> bool {
        let target = format!("{}.{column}", d.name);
        spec.datasets.iter().any(|x| {
            x.columns.iter().any(|c| {
                c.derives_from
                    .as_deref()
                    .is_some_and(|r| r == target || (std::ptr::eq(x, d) && r == column))
            })
        }) || d
            .columns
            .iter()
            .any(|c| c.age_at.is_some() && c.name == column)
            || d.catalogue.as_ref().and_then(|c| c.birth_date.as_deref()) == Some(column)
    };
    let mut found = Vec::new();
    for (di, d) in spec.datasets.iter().enumerate() {
        if d.person.is_none() {
            continue;
        }
        for (ci, c) in d.columns.iter().enumerate() {
            if matches!(c.column_type, ColumnType::Date | ColumnType::Datetime) && named(d, &c.name)
            {
                found.push(Arc::new(BirthDates {
                    dataset: di,
                    column: ci,
                    name: format!("{}.{}", d.name, c.name),
                    days: OnceLock::new(),
                }));
            }
        }
    }
    found
}

/// The delivered date columns of `d` compared with `births`: every date or datetime column kept,
/// shifted or generalised, but the birth dates themselves and columns that declare what they
/// derive from (bounded by the derivation rule instead).
pub fn echoes(d: &DatasetSpec, di: usize, births: &[Arc<BirthDates>]) -> Vec<BirthEcho> {
    if !d.has_person() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (ci, c) in d.columns.iter().enumerate() {
        let delivered = matches!(c.action, Action::Keep | Action::Shift | Action::Generalise);
        if !delivered
            || !matches!(c.column_type, ColumnType::Date | ColumnType::Datetime)
            || c.derives_from.is_some()
            || c.age_at.is_some()
        {
            continue;
        }
        for b in births {
            if !(b.dataset == di && b.column == ci) {
                found.push(BirthEcho {
                    column: ci,
                    birth: b.clone(),
                });
            }
        }
    }
    found
}
