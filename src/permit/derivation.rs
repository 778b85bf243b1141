//! Columns that derive from another (`derives_from`): an observation period's start date is the
//! birth date, an age at admission is the birth date seen from the admission. Across the tables of
//! a delivery, such a column must not release the column it derives from more finely than that
//! column's own table does, or the table's generalisation (a 20-year birth band) is undone by
//! another table. How finely a column releases a point in time is measured in days.

use super::{Action, Aggregate, ColumnSpec, ColumnType, DatasetSpec, PermitSpec};
use crate::kernels::levels::LevelRule;

const MONTH_DAYS: f64 = 30.44;
const YEAR_DAYS: f64 = 365.25;

/// A declared derivation: the column, the column it derives from, and where the permit says so.
pub struct Derivation<'a> {
    pub at: String,
    pub derived: (&'a DatasetSpec, &'a ColumnSpec),
    pub source: (&'a DatasetSpec, &'a ColumnSpec),
}

impl Derivation<'_> {
    /// `dataset.column` of the derived column and of its source, for a message.
    pub fn names(&self) -> (String, String) {
        let name = |(d, c): (&DatasetSpec, &ColumnSpec)| format!("{}.{}", d.name, c.name);
        (name(self.derived), name(self.source))
    }
}

/// Every `derives_from` of the permit, resolved: a column of the same dataset by name, or of
/// another as `dataset.column`. An error names the key path.
pub fn derivations(spec: &PermitSpec) -> Result<Vec<Derivation<'_>>, (String, String)> {
    let mut found = Vec::new();
    for (di, d) in spec.datasets.iter().enumerate() {
        for (ci, c) in d.columns.iter().enumerate() {
            let Some(reference) = &c.derives_from else {
                continue;
            };
            let at = format!("datasets[{di}].columns[{ci}].derives_from");
            let source = resolve(spec, d, reference).ok_or_else(|| {
                (
                    at.clone(),
                    format!(
                        "`{reference}` is neither a column of this dataset nor `dataset.column` of \
                         another"
                    ),
                )
            })?;
            if std::ptr::eq(source.1, c) {
                return Err((at, "a column does not derive from itself".into()));
            }
            for (who, column) in [("this column", c), ("the column it derives from", source.1)] {
                resolution(column, 0).map_err(|m| (at.clone(), format!("{who}: {m}")))?;
            }
            found.push(Derivation {
                at,
                derived: (d, c),
                source,
            });
        }
    }
    found.extend(profile_sources(spec));
    Ok(found)
}

/// The date columns a person's earliest or latest date is drawn from (`profile`, `first` or
/// `last`): delivered in their own table, they release that date as finely as they are, so they
/// derive from the attribute. A shifted column is accepted: the shift hides the day.
fn profile_sources(spec: &PermitSpec) -> Vec<Derivation<'_>> {
    let mut found = Vec::new();
    for (di, d) in spec.datasets.iter().enumerate() {
        for (ci, c) in d.columns.iter().enumerate() {
            let Some(p) = c.profile.as_ref().filter(|p| p.aggregate != Aggregate::Has) else {
                continue;
            };
            let Some(source) = resolve(spec, d, &format!("{}.{}", p.dataset, p.column)) else {
                continue;
            };
            if source.1.action != Action::Shift && source.0.read_only.is_none() {
                found.push(Derivation {
                    at: format!("datasets[{di}].columns[{ci}].profile"),
                    derived: source,
                    source: (d, c),
                });
            }
        }
    }
    found
}

fn resolve<'a>(
    spec: &'a PermitSpec,
    here: &'a DatasetSpec,
    reference: &str,
) -> Option<(&'a DatasetSpec, &'a ColumnSpec)> {
    let in_dataset =
        |d: &'a DatasetSpec, name: &str| d.columns.iter().find(|c| c.name == name).map(|c| (d, c));
    in_dataset(here, reference).or_else(|| {
        let (dataset, column) = reference.split_once('.')?;
        let d = spec.datasets.iter().find(|d| d.name == dataset)?;
        in_dataset(d, column)
    })
}

/// The levels a column may be released at: a quasi-identifier's range, 0 for any other column.
pub fn levels(c: &ColumnSpec) -> (u8, u8) {
    if !c.is_quasi_identifier() {
        return (0, 0);
    }
    let top = c.levels.as_ref().map_or(0, |l| {
        (l.len() + usize::from(l.last().is_none_or(|t| t != "*"))) as u8
    });
    (c.level.unwrap_or(0), c.level.or(c.max_level).unwrap_or(top))
}

/// How finely `c` at `level` releases a point in time, in days (1 for a date, about 30 for a
/// month, 365 for a year or an age in years; infinite when it releases nothing); an error for a
/// column whose values say nothing measurable in time (a text, a code, a hierarchy file's levels).
pub fn resolution(c: &ColumnSpec, level: u8) -> Result<f64, String> {
    let own = || match c.column_type {
        _ if c.age_at.is_some() => Ok(YEAR_DAYS),
        ColumnType::Date | ColumnType::Datetime => Ok(1.0),
        ColumnType::YearMonth => Ok(MONTH_DAYS),
        // A number derived from a date is an age or a year: whole years.
        ColumnType::Year | ColumnType::Integer | ColumnType::Float => Ok(YEAR_DAYS),
        _ => Err(format!(
            "a {:?} column says nothing measurable in time; derives_from relates dates, partial \
             dates and ages",
            c.column_type
        )),
    };
    match c.action {
        Action::Drop | Action::Blank | Action::Replace => Ok(f64::INFINITY),
        // A shifted date still releases the day, give or take the shift.
        Action::Keep | Action::Shift => own(),
        Action::Generalise if c.is_quasi_identifier() => {
            let Some(levels) = &c.levels else {
                return Err(
                    "a hierarchy file's levels have no known width in time: give `levels`".into(),
                );
            };
            let rule = match level {
                0 => return own(),
                l => levels.get(l as usize - 1),
            };
            let years = YEAR_DAYS;
            match rule.map(|r| LevelRule::parse(r)) {
                None | Some(Ok(LevelRule::Top)) => Ok(f64::INFINITY),
                Some(Ok(LevelRule::Week)) => Ok(7.0),
                Some(Ok(LevelRule::Month)) => Ok(MONTH_DAYS),
                Some(Ok(LevelRule::Quarter)) => Ok(3.0 * MONTH_DAYS),
                Some(Ok(LevelRule::Year)) => Ok(years),
                Some(Ok(LevelRule::Years(n))) => Ok(n as f64 * years),
                Some(Ok(LevelRule::Width(w) | LevelRule::Round(w))) => Ok(w * years),
                // The narrowest range is what the finest-placed person gets.
                Some(Ok(LevelRule::Ranges(points))) => Ok(points
                    .windows(2)
                    .map(|w| w[1] - w[0])
                    .fold(f64::INFINITY, f64::min)
                    * years),
                Some(Ok(other)) => Err(format!(
                    "level `{}` is not a width in time",
                    other.describe()
                )),
                Some(Err(m)) => Err(m),
            }
        }
        Action::Generalise => match c.rule {
            Some(super::GeneraliseRule::Year) => Ok(YEAR_DAYS),
            Some(super::GeneraliseRule::Month) => Ok(MONTH_DAYS),
            _ => Err("a prefix says nothing measurable in time".into()),
        },
        _ => Err(format!(
            "action {:?} says nothing measurable in time",
            c.action
        )),
    }
}

/// Whether a derivation releases its source more finely than the source's table, with the
/// columns at `level_of` (derived, source); the message names both columns and the widths.
pub fn too_fine(d: &Derivation, derived_level: u8, source_level: u8) -> Option<String> {
    let derived = resolution(d.derived.1, derived_level).ok()?;
    let source = resolution(d.source.1, source_level).ok()?;
    (derived < source).then(|| {
        let (derived_name, source_name) = d.names();
        format!(
            "`{derived_name}` derives from `{source_name}` and releases it to {} where \
             `{source_name}` is released to {}: the other table undoes the generalisation; \
             generalise `{derived_name}` at least as coarsely, or drop it",
            width(derived),
            width(source)
        )
    })
}

/// "the day", "7 days", "about 3 month(s)", "5 year(s)", "nothing".
fn width(days: f64) -> String {
    match days {
        d if d.is_infinite() => "nothing".into(),
        d if d < 1.5 => "the day".into(),
        d if d < 20.0 => format!("{} days", d.round()),
        d if d < YEAR_DAYS => format!("about {} month(s)", (d / MONTH_DAYS).round()),
        d => format!("{} year(s)", (d / YEAR_DAYS * 10.0).round() / 10.0),
    }
}
