//! An anonymised dataset on a cluster. Pass 1 is a distributed aggregation: each distinct
//! combination of level-0 quasi-identifiers, sensitive value and person, with how many rows hold
//! it. That table is small next to the rows; the client profiles it and searches the lattice
//! exactly as a single-node run does (`privacy::anonymise`). The chosen levels and suppressed
//! classes reach the executors as a file in the staging folder ([`SharedFile`]), which they apply
//! while writing the delivery (`query::generalised`); the client then re-checks the written file.

use std::time::Instant;

use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{DataFrame, ident, lit};
use polars::prelude::{DataType as PlDataType, SerReader};

use super::functions::Generalisation;
use super::{SharedFile, error_of};
use crate::delivery::{Staging, WrittenFile};
use crate::engine::RemovedPersons;
use crate::error::{Error, Result};
use crate::plan::DatasetPlan;
use crate::privacy::anonymise::{self, AnonymisationPlan, Solution, SuppressedRows};

/// The chosen transformation of an anonymised dataset, before its delivery is written.
pub struct Chosen {
    pub solution: Solution,
    /// The levels and suppressed classes, for the executors.
    pub generalisation: SharedFile,
    /// The persons of the suppressed rows, as the dataset delivers them (when it removes them).
    suppressed_persons: foldhash::HashSet<String>,
}

/// The aggregated profile's column of row counts.
const ROWS: &str = "__ehds_rows";

/// Profiles the dataset's `delivered` rows (level 0) on the cluster, searches here, and shares
/// the choice with the executors.
pub async fn choose(
    d: &DatasetPlan,
    a: &AnonymisationPlan,
    delivered: &DataFrame,
    staging: &Staging,
) -> Result<Chosen> {
    let started = Instant::now();
    let mut keys: Vec<&str> = a
        .quasi_identifiers
        .iter()
        .map(|q| q.output.as_str())
        .collect();
    keys.extend(a.sensitive.as_ref().map(|s| s.output.as_str()));
    keys.extend(a.person_output.as_deref());
    let profile = delivered
        .clone()
        .aggregate(
            keys.iter().map(|k| ident(*k)).collect(),
            vec![count(lit(1i64)).alias(ROWS)],
        )
        .map_err(|e| error_of(&e))?;
    // In a fixed order: the rows arrive from the cluster in any, and the codes (hence the order
    // of the metrics' sums) follow the order values are met.
    let df = to_polars(profile)
        .await?
        .sort(keys.clone(), Default::default())?;
    let rows: Vec<u32> = df
        .column(ROWS)?
        .cast(&PlDataType::UInt32)?
        .u32()?
        .iter()
        .map(|n| n.ok_or_else(|| Error::Internal("a profile row without its count".into())))
        .collect::<Result<_>>()?;
    let mut profile = anonymise::Profile::new(a);
    profile.add_counted(
        &df,
        &d.source_name(),
        |_| "a row of the cluster's profile".into(),
        Some(&rows),
    )?;
    let table = profile.finish()?;
    let profile_ms = started.elapsed().as_millis();
    let mut solution = anonymise::solve(a, table, &d.name, &Default::default())?;
    solution.report.profile_ms = profile_ms;
    tracing::info!(
        dataset = %d.name,
        levels = ?solution.levels(),
        rows_suppressed = solution.optimum.suppressed_rows,
        "generalisation chosen (cluster)"
    );
    let mut labels = Vec::with_capacity(a.quasi_identifiers.len());
    let mut codes = Vec::with_capacity(a.quasi_identifiers.len());
    for (j, q) in a.quasi_identifiers.iter().enumerate() {
        let (by_value, at_level) = solution.labels_of(a, j, df.column(&q.output)?)?;
        labels.push(by_value);
        codes.push(at_level);
    }
    let mut suppressed_persons = foldhash::HashSet::default();
    if let (Some(person), SuppressedRows::Remove) = (&a.person_output, a.suppressed) {
        let persons = df.column(person)?.str()?;
        for (p, gone) in persons.iter().zip(solution.suppressed_rows(&codes)) {
            if let (Some(p), true) = (p, gone) {
                suppressed_persons.insert(p.to_string());
            }
        }
    }
    let generalisation = Generalisation {
        labels,
        suppressed: solution.suppressed_labels().into_iter().collect(),
    };
    let generalisation = SharedFile::json(
        staging.path(&format!(".{}.generalisation.json", d.name)),
        &generalisation,
    )?;
    Ok(Chosen {
        solution,
        generalisation,
        suppressed_persons,
    })
}

/// After the delivery is written: the classes counted again from the file (the delivery is
/// refused if any breaks a model), and the persons the dataset removed — those of its suppressed
/// rows that it delivers with no other row.
pub fn recheck(
    d: &DatasetPlan,
    a: &AnonymisationPlan,
    chosen: Chosen,
    written: &WrittenFile,
    batch_rows: usize,
) -> Result<(Solution, Option<RemovedPersons>)> {
    let Chosen {
        mut solution,
        suppressed_persons,
        ..
    } = chosen;
    let counter = anonymise::count_delivered(a, &written.path, batch_rows)?;
    let (risk, reached) = anonymise::recheck(a, &solution, &counter, &written.path)?;
    solution.report.risk_after = Some(risk);
    solution.report.sensitive_reached = reached;
    let mut removed = RemovedPersons::suppressed_by(d, suppressed_persons);
    if let (Some(r), Some(person)) = (&mut removed, &a.person_output) {
        r.retain_absent_from(&written.path, person, batch_rows)?;
    }
    Ok((solution, removed.filter(|r| r.persons() > 0)))
}

/// The persons `removed` holds, as a file every process reads.
pub fn share_removed(removed: &RemovedPersons, staging: &Staging) -> Result<SharedFile> {
    let mut values: Vec<&String> = removed.values().iter().collect();
    values.sort();
    SharedFile::json(
        staging.path(&format!(".{}.removed-persons.json", removed.by)),
        &values,
    )
}

/// A query's result as a polars frame (through Arrow IPC in memory: the two Arrow
/// implementations share the format, not their types).
async fn to_polars(df: DataFrame) -> Result<polars::prelude::DataFrame> {
    use datafusion::arrow::ipc::writer::FileWriter;
    let schema = df.schema().as_arrow().clone();
    let batches = df.collect().await.map_err(|e| error_of(&e))?;
    let ipc = |e: datafusion::arrow::error::ArrowError| Error::Internal(e.to_string());
    let mut bytes = Vec::new();
    let mut writer = FileWriter::try_new(&mut bytes, &schema).map_err(ipc)?;
    for batch in &batches {
        writer.write(batch).map_err(ipc)?;
    }
    writer.finish().map_err(ipc)?;
    drop(writer);
    Ok(polars::prelude::IpcReader::new(std::io::Cursor::new(bytes)).finish()?)
}
