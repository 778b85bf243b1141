//! A permit's run on a cluster: per dataset, the counts the report gives (rows read, outside the
//! cohort, opted out, rejected; identifiers invalid or missing; dates before their shift) and the
//! delivery itself, written by an executor into the staging folder, which must be on storage every
//! executor and the client share. The client then hashes the sources and the written file, writes
//! the manifest and reports, and commits atomically, exactly as a single-node run does.

use std::path::Path;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::functions_aggregate::expr_fn::{array_agg, count, sum};
use datafusion::logical_expr::ExprFunctionExt;
use datafusion::prelude::{DataFrame, Expr, SessionContext, ident, lit, when};

use super::error_of;
use super::query::{self, DatasetQueries, Udfs};
use crate::delivery::Staging;
use crate::delivery::WrittenFile;
use crate::engine::DeliveryWriter;
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

async fn write_delivery(plan: &Plan, ctx: &SessionContext, staging: &Staging) -> Result<RunReport> {
    let udfs = Udfs::of(ctx)?;
    let mut writer = DeliveryWriter::new(plan, staging);
    for (at, d) in plan.datasets.iter().enumerate() {
        // The sources are opened before the jobs read them and hashed after: a file changed in
        // between fails the run.
        let mut sources: Vec<TrackedFile> = d
            .files
            .iter()
            .map(|f| TrackedFile::open(f).map_err(|e| Error::input(f, "", e.to_string())))
            .collect::<Result<_>>()?;
        let queries = query::dataset(ctx, &udfs, plan, at).await?;
        let (report, mut counts) = counts(plan, d, &queries).await?;
        let written = write(d, &queries, staging, writer.footer()).await?;
        let outputs: Vec<String> = d.steps.iter().map(|s| s.output().to_string()).collect();
        count_values(&written.path, &outputs, &mut counts)?;
        let mut inputs = Vec::new();
        for (file, path) in sources.iter_mut().zip(&d.files) {
            file.hash_rest()
                .map_err(|e| Error::input(path, "", e.to_string()))?;
        }
        for file in sources {
            inputs.push(file.finish(&crate::engine::source_role(d))?);
        }
        writer.record_written(d, report, counts, inputs, written)?;
    }
    writer.finish(None)
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
) -> Result<(DatasetReport, CountsByOutput)> {
    let (in_cohort, opted, kept) = (q.in_cohort.clone(), q.opted_out.clone(), q.kept());
    let mut aggregates = vec![
        count(lit(1i64)),
        rows_where(!in_cohort.clone()),
        rows_where(in_cohort.clone().and(opted.clone())),
        rows_where(kept.clone().and(q.rejected.clone())),
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
    if let Some(list) = &plan.opt_out {
        let matched = row.column(counted).as_list::<i32>();
        if !matched.is_null(0) {
            let normals = cast_to(&matched.value(0), &DataType::Utf8)?;
            for normal in normals.as_string::<i32>().iter().flatten() {
                list.contains(normal);
            }
        }
    }
    let mut counts = CountsByOutput::new();
    for ((s, what), n) in wanted.iter().zip(&totals[4..]) {
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
        ..Default::default()
    };
    Ok((report, counts))
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
    q: &DatasetQueries,
    staging: &Staging,
    footer: &[(String, String)],
) -> Result<WrittenFile> {
    let path = staging.path(&format!("{}.parquet", d.name));
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("zstd(3)".into());
    options.key_value_metadata = footer
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let result = q
        .delivery
        .clone()
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
