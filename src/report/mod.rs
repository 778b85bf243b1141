//! The run report: what each dataset and column went through, in counts only (never values), with the
//! time spent per stage. Written as `report.json` beside the delivery and summarised on stdout.

pub mod assess;
pub mod audit;
pub mod describe;
pub mod html;
pub mod progress;
pub mod vocabulary;

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

/// A count in a report: exact, or masked as "< threshold" when small.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Count {
    Exact(u64),
    Below(u64),
}

impl Count {
    /// The exact value, if shown.
    pub fn exact(&self) -> Option<u64> {
        match self {
            Count::Exact(n) => Some(*n),
            Count::Below(_) => None,
        }
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Count::Exact(n) => s.serialize_u64(*n),
            Count::Below(t) => s.serialize_str(&format!("< {t}")),
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        // `pad` honours the width and alignment of the summary's columns.
        match self {
            Count::Exact(n) => f.pad(&n.to_string()),
            Count::Below(t) => f.pad(&format!("< {t}")),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    pub permit_id: String,
    /// The permit's purpose, holder and recipient, as the manifest records them.
    pub permit: crate::delivery::PermitRecord,
    /// When the run started (UTC, RFC 3339; `SOURCE_DATE_EPOCH` when set, for reproducible
    /// reports).
    pub started_at: String,
    pub engine_version: String,
    pub output: String,
    pub datasets: Vec<DatasetReport>,
    /// The opt-out list: entries read, valid, invalid (kept only when the permit accepts them) and
    /// matched by a row.
    pub opt_out: Option<crate::plan::opt_out::OptOutReport>,
    pub timings_ms: Timings,
}

#[derive(Debug, Default, Serialize)]
pub struct DatasetReport {
    pub name: String,
    pub files: Vec<String>,
    pub rows_read: u64,
    pub rows_outside_cohort: u64,
    pub rows_opted_out: u64,
    /// Rows removed because an identifier was invalid or missing under a `reject-row` policy.
    pub rows_rejected: u64,
    /// Rows of persons another dataset's privacy model suppressed (in `link`, the linked person
    /// table): a person suppressed anywhere leaves every dataset.
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_of_removed_persons: u64,
    /// Persons this dataset's privacy model suppressed, who leave the other datasets too.
    #[serde(skip_serializing_if = "is_zero")]
    pub persons_suppressed: u64,
    pub rows_delivered: u64,
    pub columns: Vec<ColumnReport>,
    /// Columns the permit declares and drops; undeclared columns are never read.
    pub columns_dropped: Vec<String>,
    /// Every delivered free-text column, with the permit's reason for delivering it.
    pub free_text_kept: Vec<FreeTextReport>,
    /// Delivered date columns equal, for some persons, to their birth date (a warning: the date
    /// publishes the birth date the permit generalised).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub birth_date_echoes: Vec<BirthDateEcho>,
    /// The privacy search's transformation, suppression, metrics and risks, for anonymised datasets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymisation: Option<crate::privacy::anonymise::AnonymisationReport>,
    /// The k^m-anonymity of the dataset's set-valued attribute (`set_valued`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_valued: Option<crate::privacy::set_valued::Summary>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A delivered date column and the birth date it repeats for `persons` persons.
#[derive(Debug, Default, Serialize)]
pub struct BirthDateEcho {
    pub column: String,
    pub birth_date: String,
    pub persons: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct FreeTextReport {
    pub column: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ColumnReport {
    pub output: String,
    pub action: String,
    /// Values written (non-null) into the delivered column.
    pub values_transformed: u64,
    /// Counts over rows in the cohort, for pseudonymised columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifiers_invalid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifiers_missing: Option<u64>,
    /// Values the dictionary of a mapped column did not list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmapped_values: Option<u64>,
    /// For a shifted partial date: rows whose partial date was not the year (month) of its date
    /// before the shift (the delivered value follows the date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_dates_disagreeing: Option<u64>,
    /// For a CLK: records in the cohort its linkage schema refused (a value outside a feature's
    /// format), dealt with as `on_invalid` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_refused_by_schema: Option<u64>,
}

/// Wall-clock milliseconds per stage, summed over batches and datasets.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    pub read: u128,
    pub transform: u128,
    pub write: u128,
    pub finalise: u128,
    pub total: u128,
}

impl RunReport {
    /// A few lines for a person at a terminal.
    pub fn summary(&self) -> String {
        let mut s = format!("permit {} → {}\n", self.permit_id, self.output);
        for d in &self.datasets {
            s += &format!(
                "  {:<16} read {:>9}  outside cohort {:>8}  opted out {:>6}  rejected {:>6}  delivered {:>9}\n",
                d.name,
                d.rows_read,
                d.rows_outside_cohort,
                d.rows_opted_out,
                d.rows_rejected,
                d.rows_delivered
            );
            for e in &d.birth_date_echoes {
                s += &format!(
                    "  {:<16} warning: `{}` equals the birth date `{}` for {} persons; declare derives_from on it, or drop it\n",
                    "", e.column, e.birth_date, e.persons
                );
            }
            if d.rows_of_removed_persons > 0 || d.persons_suppressed > 0 {
                s += &format!(
                    "  {:<16} one fate: {} rows of persons suppressed in another dataset left out; {} persons suppressed here left the others\n",
                    "", d.rows_of_removed_persons, d.persons_suppressed
                );
            }
            if let Some(a) = &d.anonymisation {
                let levels: Vec<String> = a
                    .quasi_identifiers
                    .iter()
                    .map(|q| format!("{} at level {}", q.column, q.level))
                    .collect();
                let smallest = a.risk_after.as_ref().map_or(0, |r| r.smallest_class);
                s += &format!(
                    "  {:<16} anonymised: {}; {} rows suppressed; smallest class {smallest} {}\n",
                    "",
                    levels.join(", "),
                    a.rows_suppressed,
                    if a.risk_before.sizes_in_persons {
                        "persons"
                    } else {
                        "rows"
                    }
                );
            }
            if let Some(sv) = &d.set_valued {
                s += &format!(
                    "  {:<16} sets of {}: k = {}, m = {}; {} of {} codes generalised; {} persons ({} rows) suppressed; information loss {:.3}\n",
                    "",
                    sv.column,
                    sv.k,
                    sv.m,
                    sv.codes - sv.codes_by_height.first().copied().unwrap_or(0),
                    sv.codes,
                    sv.persons_suppressed,
                    sv.rows_suppressed,
                    sv.information_loss
                );
            }
        }
        if let Some(o) = &self.opt_out {
            s += &format!(
                "  opt-out list: {} entries read, {} valid, {} matched a row",
                o.entries_read, o.entries_valid, o.entries_matched
            );
            if o.entries_invalid > 0 {
                s += &format!(
                    "; WARNING: {} not valid identifiers, kept as written",
                    o.entries_invalid
                );
            }
            s += "\n";
        }
        let t = &self.timings_ms;
        s += &format!(
            "  time: read {} ms, transform {} ms, write {} ms, total {} ms\n",
            t.read, t.transform, t.write, t.total
        );
        s
    }
}

/// The per-column counts a batch adds to a dataset's report.
#[derive(Default)]
pub struct ColumnCounts {
    pub transformed: u64,
    pub invalid: u64,
    pub missing: u64,
    /// For a shifted date column: its dates before the shift (days since 1970-01-01), counted,
    /// to find a sentinel; not reported.
    pub dates_before_shift: foldhash::HashMap<i32, u64>,
    /// For a shifted partial date: rows where it disagrees with its date before the shift.
    pub partial_dates_disagreeing: u64,
}

pub type CountsByOutput = BTreeMap<String, ColumnCounts>;
