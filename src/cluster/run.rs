//! A permit's run on a cluster: per dataset, the counts the report gives (rows read, outside the
//! cohort, opted out, rejected; identifiers invalid or missing; dates before their shift) and the
//! delivery itself, written by an executor into the staging folder, which must be on storage every
//! executor and the client share. The client then hashes the sources and the written file, writes
//! the manifest and reports, and commits atomically, exactly as a single-node run does.

use std::collections::HashSet;
use std::path::Path;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::functions_aggregate::expr_fn::{array_agg, count, sum};
use datafusion::logical_expr::ExprFunctionExt;
use datafusion::prelude::{DataFrame, Expr, SessionContext, ident, lit, when};

use super::SharedFile;
use super::anonymise;
use super::error_of;
use super::query::{self, Births, DatasetQueries, LeaveOut, Udfs};
use crate::delivery::Staging;
use crate::delivery::WrittenFile;
use crate::engine::{ClusterCounts, DeliveryWriter, RemovedPersons};
use crate::error::{Error, Result};
use crate::plan::{DatasetPlan, Plan, Step};
use crate::report::{CountsByOutput, DatasetReport, RunReport};
use crate::source::inputs::TrackedFile;

/// Runs the plan on the cluster `ctx` is connected to, and commits the delivery.
pub async fn run(plan: &Plan, ctx: &SessionContext) -> Result<RunReport> {
    query::supported(plan)?;
    let permit = &plan.permit;
    let audit = crate::report::audit::Audit::of_run(plan);
    let staging = Staging::create(
        &permit.output_dir(),
        &permit.spec.permit.id,
        &permit.spec.permit.holder,
    );
    let written = match staging {
        Ok(staging) => match write_delivery(plan, ctx, &staging).await {
            Ok(report) => Ok((staging, report)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let report = audit.commit(written, |report| report)?;
    tracing::info!(
        permit = %report.permit_id,
        output = %report.output,
        datasets = report.datasets.len(),
        "delivery committed (cluster)"
    );
    Ok(report)
}

/// Writes every dataset, the manifest and the reports into `staging`, as a single-node run does
/// (`engine::write_delivery`): the anonymised datasets first, each without every person an
/// anonymised dataset suppressed so far, written again while another has suppressed persons since
/// (in rounds until they settle); then the others without every suppressed person, unless the
/// permit keeps them.
async fn write_delivery(plan: &Plan, ctx: &SessionContext, staging: &Staging) -> Result<RunReport> {
    let mut writer = DeliveryWriter::new(plan, staging);
    let one_fate = crate::engine::one_fate(plan);
    let (anonymised, others): (Vec<usize>, Vec<usize>) =
        (0..plan.datasets.len()).partition(|&at| plan.datasets[at].anonymisation.is_some());
    // Per anonymised dataset: every person it suppressed, shared with the executors.
    let mut suppressed: Vec<Option<(RemovedPersons, SharedFile)>> =
        anonymised.iter().map(|_| None).collect();
    let mut rounds = crate::engine::Rounds::new(anonymised.len());
    let mut salt = [0u8; 32];
    crate::kernels::keys::getrandom_fill(&mut salt)?;
    let mut run = Run {
        plan,
        ctx,
        udfs: Udfs::of(ctx)?,
        staging,
        births: Births {
            salt: crate::kernels::hex::encode(&salt),
            ..Default::default()
        },
    };
    for round in 0.. {
        let mut wrote = false;
        for (i, &at) in anonymised.iter().enumerate() {
            let sizes: Vec<usize> = suppressed
                .iter()
                .map(|s| s.as_ref().map_or(0, |(r, _)| r.persons()))
                .collect();
            if !rounds.stale(i, &sizes) {
                continue;
            }
            if round == crate::engine::MAX_ROUNDS {
                let names: Vec<&DatasetPlan> =
                    anonymised.iter().map(|&at| &plan.datasets[at]).collect();
                return Err(crate::engine::unsettled(&names));
            }
            let d = &plan.datasets[at];
            writer.forget(d);
            let leave = leave_out(&suppressed, &anonymised, one_fate);
            let now = write_dataset(&mut run, &mut writer, at, &leave).await?;
            rounds.written(i, sizes);
            wrote = true;
            if let Some(now) = now {
                // The previous list's file goes with it (same path) before the new one is written.
                let all = match suppressed[i].take() {
                    Some((mut all, ..)) => {
                        all.add(now);
                        all
                    }
                    None => now,
                };
                let file = anonymise::share_removed(&all, staging)?;
                suppressed[i] = Some((all, file));
            }
        }
        if !wrote || !one_fate {
            break;
        }
    }
    let leave = leave_out(&suppressed, &anonymised, one_fate);
    for at in others {
        write_dataset(&mut run, &mut writer, at, &leave).await?;
    }
    // The shared files leave the staging folder before it is committed.
    drop((suppressed, run));
    writer.finish(None)
}

/// The persons the anonymised datasets (by position) suppressed so far, for the datasets written
/// next to leave out (none when the permit keeps them).
fn leave_out<'a>(
    suppressed: &'a [Option<(RemovedPersons, SharedFile)>],
    anonymised: &[usize],
    one_fate: bool,
) -> Vec<LeaveOut<'a>> {
    suppressed
        .iter()
        .zip(anonymised)
        .filter(|_| one_fate)
        .filter_map(|(s, &by)| s.as_ref().map(|(_, file)| LeaveOut { by, file }))
        .collect()
}

/// A run's connection, the functions its plans call, where it writes, and the birth dates it
/// shared.
struct Run<'a> {
    plan: &'a Plan,
    ctx: &'a SessionContext,
    udfs: Udfs,
    staging: &'a Staging,
    births: Births,
}

/// Writes dataset `at` without the persons `leave_out` lists; returns the persons its privacy
/// model suppressed (those it no longer delivers), when it is anonymised and has a person column.
async fn write_dataset(
    run: &mut Run<'_>,
    writer: &mut DeliveryWriter<'_>,
    at: usize,
    leave_out: &[LeaveOut<'_>],
) -> Result<Option<RemovedPersons>> {
    let (plan, ctx, staging) = (run.plan, run.ctx, run.staging);
    let d = &plan.datasets[at];
    // The sources are opened before the jobs read them and hashed after: a file changed in
    // between fails the run.
    let mut sources: Vec<TrackedFile> = d
        .files
        .iter()
        .map(|f| TrackedFile::open(f).map_err(|e| Error::input(f, "", e.to_string())))
        .collect::<Result<_>>()?;
    share_births(plan, d, staging, &mut run.births)?;
    let udfs = &run.udfs;
    let queries = query::dataset(ctx, udfs, plan, at, leave_out, &run.births).await?;
    let (mut report, mut counts, echoes) = counts(plan, d, &queries).await?;
    let (delivery, chosen) = match &d.anonymisation {
        Some(a) => {
            let chosen = anonymise::choose(d, a, &queries.delivered, staging).await?;
            let delivery =
                query::generalised(udfs, d, queries.delivered.clone(), &chosen.generalisation)?;
            (delivery, Some((a, chosen)))
        }
        None => (queries.delivered.clone(), None),
    };
    let delivery = query::ordered(udfs, d, delivery)?;
    let written = write(d, delivery, staging, writer.footer()).await?;
    let outputs: Vec<String> = d.steps.iter().map(|s| s.output().to_string()).collect();
    count_values(&written.path, &outputs, &mut counts)?;
    let batch_rows = plan.permit.spec.output.batch_rows;
    let (solution, removed) = match chosen {
        Some((a, chosen)) => {
            let (solution, removed) = anonymise::recheck(d, a, chosen, &written, batch_rows)?;
            report.persons_suppressed = removed.as_ref().map_or(0, |r| r.persons() as u64);
            (Some(solution), removed)
        }
        None => (None, None),
    };
    for (file, path) in sources.iter_mut().zip(&d.files) {
        file.hash_rest()
            .map_err(|e| Error::input(path, "", e.to_string()))?;
    }
    let inputs = sources
        .into_iter()
        .map(|file| file.finish(&crate::engine::source_role(d)))
        .collect::<Result<_>>()?;
    let counted = ClusterCounts {
        report,
        counts,
        inputs,
        echoes,
    };
    writer.record_written(d, counted, written, solution)?;
    Ok(removed)
}

/// Shares the birth dates dataset `d` compares its dates with, when no dataset did before: read
/// here as a single-node run reads them, keyed by the run's salt.
fn share_births(
    plan: &Plan,
    d: &DatasetPlan,
    staging: &Staging,
    births: &mut Births,
) -> Result<()> {
    for echo in &d.birth_echoes {
        if births.files.contains_key(&echo.birth.name) {
            continue;
        }
        let days = crate::engine::birth_dates(plan, &echo.birth)?;
        let keyed: std::collections::HashMap<String, i32> = days
            .iter()
            .map(|(normal, day)| (super::functions::birth_key(&births.salt, normal), *day))
            .collect();
        let path = staging.path(&format!(".births-{}.json", births.files.len()));
        births
            .files
            .insert(echo.birth.name.clone(), SharedFile::json(path, &keyed)?);
    }
    Ok(())
}

async fn collect(df: DataFrame) -> Result<Vec<RecordBatch>> {
    df.collect().await.map_err(|e| error_of(&e))
}

/// The one row of an aggregate.
async fn one_row(df: DataFrame) -> Result<RecordBatch> {
    collect(df)
        .await?
        .into_iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| Error::Internal("an aggregate gave no row".into()))
}

/// The row's first `n` columns as integers (a sum over no row is 0).
fn integers(row: &RecordBatch, n: usize) -> Result<Vec<u64>> {
    row.columns()[..n]
        .iter()
        .map(|c| {
            let c = cast_to(c, &DataType::Int64)?;
            let v = c.as_primitive::<Int64Type>();
            Ok(if v.is_null(0) { 0 } else { v.value(0) as u64 })
        })
        .collect()
}

fn rows_where(condition: Expr) -> Expr {
    sum(when(condition, lit(1i64))
        .otherwise(lit(0i64))
        .expect("a CASE with an ELSE"))
}

/// The dataset's report counts, per-column counts and the opt-out list's matches, in one pass over
/// the source, and the dates before their shift (a pass, when the dataset shifts dates).
async fn counts(
    plan: &Plan,
    d: &DatasetPlan,
    q: &DatasetQueries,
) -> Result<(DatasetReport, CountsByOutput, Vec<HashSet<String>>)> {
    let (in_cohort, opted, kept) = (q.in_cohort.clone(), q.opted_out.clone(), q.kept());
    let mut aggregates = vec![
        count(lit(1i64)),
        rows_where(!in_cohort.clone()),
        rows_where(in_cohort.clone().and(opted.clone())),
        rows_where(kept.clone().and(q.rejected.clone())),
        rows_where(in_cohort.clone().and(!opted.clone()).and(q.removed.clone())),
    ];
    // Per step: identifier statuses (invalid, missing) of the kept rows.
    let mut wanted: Vec<(usize, &'static str)> = Vec::new();
    for (s, status) in &q.statuses {
        if matches!(d.steps[*s], Step::Identifier(_)) {
            aggregates.push(rows_where(kept.clone().and(status.clone().eq(lit(2i8)))));
            wanted.push((*s, "invalid"));
        }
        aggregates.push(rows_where(kept.clone().and(status.clone().eq(lit(1i8)))));
        wanted.push((*s, "missing"));
    }
    // Named by position: two steps may count the same status (a person pseudonymised and shifted).
    let mut aggregates: Vec<Expr> = aggregates
        .into_iter()
        .enumerate()
        .map(|(i, a)| a.alias(format!("count_{i}")))
        .collect();
    let counted = aggregates.len();
    // Per birth-date comparison, the persons (by birth key) of kept rows whose date is their
    // birth date, as the engine counts them before identifier policies.
    for (i, echo) in q.echoes.iter().enumerate() {
        aggregates.push(
            array_agg(q.birth_key.clone())
                .distinct()
                .filter(kept.clone().and(echo.clone()))
                .build()
                .map_err(|e| error_of(&e))?
                .alias(format!("echo_{i}")),
        );
    }
    // The opt-out list's entries the cohort's rows matched, gathered in the same pass.
    if plan.opt_out.is_some() {
        aggregates.push(
            array_agg(q.opt_out_normal.clone())
                .distinct()
                .filter(in_cohort.and(opted))
                .build()
                .map_err(|e| error_of(&e))?
                .alias("opt_out_matches"),
        );
    }
    let row = one_row(
        q.typed
            .clone()
            .aggregate(vec![], aggregates)
            .map_err(|e| error_of(&e))?,
    )
    .await?;
    let totals = integers(&row, counted)?;
    let echoes: Vec<HashSet<String>> = (0..q.echoes.len())
        .map(|i| texts_of_list(&row, counted + i))
        .collect::<Result<_>>()?;
    if let Some(list) = &plan.opt_out {
        // Asked of the list, which notes each entry matched for the report.
        for normal in texts_of_list(&row, counted + q.echoes.len())? {
            list.contains(&normal);
        }
    }
    let mut counts = CountsByOutput::new();
    for ((s, what), n) in wanted.iter().zip(&totals[5..]) {
        let c = counts.entry(d.steps[*s].output().to_string()).or_default();
        match *what {
            "invalid" => c.invalid = *n,
            _ => c.missing = *n,
        }
    }
    for (s, day) in &q.unshifted {
        if let Step::Shift { date, .. } = &d.steps[*s]
            && d.read[*date].unusual_dates
        {
            continue;
        }
        let dates = collect(
            q.typed
                .clone()
                .filter(kept.clone())
                .and_then(|f| f.select(vec![day.clone().alias("day")]))
                .and_then(|f| f.filter(ident("day").is_not_null()))
                .and_then(|f| f.aggregate(vec![ident("day")], vec![count(lit(1i64))]))
                .map_err(|e| error_of(&e))?,
        )
        .await?;
        let c = counts.entry(d.steps[*s].output().to_string()).or_default();
        for batch in dates {
            let days = batch.column(0).as_primitive::<Date32Type>();
            let n = cast_to(batch.column(1), &DataType::Int64)?;
            for (day, n) in days.iter().zip(n.as_primitive::<Int64Type>().iter()) {
                if let (Some(day), Some(n)) = (day, n) {
                    c.dates_before_shift.insert(day, n as u64);
                }
            }
        }
    }
    let report = DatasetReport {
        name: d.name.clone(),
        files: d.files.iter().map(|f| f.display().to_string()).collect(),
        columns_dropped: d.dropped.clone(),
        rows_read: totals[0],
        rows_outside_cohort: totals[1],
        rows_opted_out: totals[2],
        rows_rejected: totals[3],
        rows_of_removed_persons: totals[4],
        ..Default::default()
    };
    Ok((report, counts, echoes))
}

/// The distinct texts an `array_agg` gathered in column `at` of an aggregate's row.
fn texts_of_list(row: &RecordBatch, at: usize) -> Result<HashSet<String>> {
    let list = row.column(at).as_list::<i32>();
    if list.is_null(0) {
        return Ok(HashSet::new());
    }
    let values = cast_to(&list.value(0), &DataType::Utf8)?;
    Ok(values
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(String::from)
        .collect())
}

fn cast_to(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    datafusion::arrow::compute::cast(array, to).map_err(|e| Error::Internal(e.to_string()))
}

/// Each delivered column's values, as the engine counts them (`transformed`): the rows less the
/// nulls, from the written file's footer (every row group's statistics hold its null count).
fn count_values(path: &Path, outputs: &[String], counts: &mut CountsByOutput) -> Result<()> {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).map_err(|e| Error::output(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| Error::output(path, e))?;
    let metadata = reader.metadata();
    for (i, output) in outputs.iter().enumerate() {
        let mut values = 0;
        for group in metadata.row_groups() {
            let nulls = group
                .column(i)
                .statistics()
                .and_then(|s| s.null_count_opt())
                .ok_or_else(|| {
                    Error::output(path, format!("column `{output}` has no null count"))
                })?;
            values += group.num_rows() as u64 - nulls;
        }
        counts.entry(output.clone()).or_default().transformed = values;
    }
    Ok(())
}

/// Writes the delivery's Parquet file into the staging folder (an executor writes it), then
/// hashes it here.
async fn write(
    d: &DatasetPlan,
    delivery: DataFrame,
    staging: &Staging,
    footer: &[(String, String)],
) -> Result<WrittenFile> {
    let path = staging.path(&format!("{}.parquet", d.name));
    // An anonymised dataset written again (another one suppressed persons since) replaces its file.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::output(&path, e)),
        _ => {}
    }
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("zstd(3)".into());
    options.key_value_metadata = footer
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let result = delivery
        .write_parquet(
            &path.display().to_string(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            Some(options),
        )
        .await
        .map_err(|e| error_of(&e))?;
    let rows = result
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            let c =
                datafusion::arrow::compute::cast(b.column(0), &DataType::Int64).expect("a count");
            c.as_primitive::<Int64Type>().value(0) as u64
        })
        .sum();
    let checksum = checksum(&path)?;
    Ok(WrittenFile {
        path,
        rows,
        checksum,
    })
}

fn checksum(path: &Path) -> Result<(String, u64)> {
    crate::delivery::sha256_file(path).map_err(|e| {
        Error::output(
            path,
            format!(
                "the file an executor wrote cannot be read here ({e}): the output folder must be on \
                 storage the client and every executor share"
            ),
        )
    })
}
