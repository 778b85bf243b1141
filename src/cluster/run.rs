//! A permit's run on a cluster: per dataset, the counts the report gives (rows read, outside the
//! cohort, opted out, rejected; identifiers invalid or missing; dates before their shift) and the
//! delivery itself, written by an executor into the staging folder, which must be on storage every
//! executor and the client share. The client then hashes the sources and the written file, writes
//! the manifest and reports, and commits atomically, exactly as a single-node run does.

use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Int64Type};
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::functions_aggregate::expr_fn::{count, sum};
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
        let (report, counts) = counts(plan, d, &queries).await?;
        let written = write(d, &queries, staging, writer.footer()).await?;
        let mut inputs = Vec::new();
        for (file, path) in sources.iter_mut().zip(&d.files) {
            file.hash_rest()
                .map_err(|e| Error::input(path, "", e.to_string()))?;
        }
        for file in sources {
            inputs.push(file.finish(&format!("source of {}", d.name))?);
        }
        writer.record_written(d, report, counts, inputs, written)?;
    }
    writer.finish(None)
}

async fn collect(df: DataFrame) -> Result<Vec<RecordBatch>> {
    df.collect().await.map_err(|e| error_of(&e))
}

/// The one row of an aggregate, as integers (a sum over no row is 0).
async fn one_row(df: DataFrame) -> Result<Vec<u64>> {
    let batches = collect(df).await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| Error::Internal("an aggregate gave no row".into()))?;
    Ok(batch
        .columns()
        .iter()
        .map(|c| {
            let c =
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Int64)
                    .expect("counts are integers");
            let v = c.as_primitive::<Int64Type>();
            if v.is_null(0) { 0 } else { v.value(0) as u64 }
        })
        .collect())
}

fn rows_where(condition: Expr) -> Expr {
    sum(when(condition, lit(1i64))
        .otherwise(lit(0i64))
        .expect("a CASE with an ELSE"))
}

/// The dataset's report counts and per-column counts, and the opt-out list's matches.
async fn counts(
    plan: &Plan,
    d: &DatasetPlan,
    q: &DatasetQueries,
) -> Result<(DatasetReport, CountsByOutput)> {
    let (in_cohort, opted) = (q.in_cohort.clone(), q.opted_out.clone());
    let read = one_row(
        q.typed
            .clone()
            .aggregate(
                vec![],
                vec![
                    count(lit(1i64)),
                    rows_where(!in_cohort.clone()),
                    rows_where(in_cohort.clone().and(opted.clone())),
                ],
            )
            .map_err(|e| error_of(&e))?,
    )
    .await?;
    if let Some(list) = &plan.opt_out {
        let matched = collect(
            q.typed
                .clone()
                .filter(in_cohort.and(opted))
                .and_then(|f| f.select(vec![q.opt_out_normal.clone()]))
                .and_then(|f| f.distinct())
                .map_err(|e| error_of(&e))?,
        )
        .await?;
        for batch in matched {
            let normals = datafusion::arrow::compute::cast(
                batch.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
            for normal in normals.as_string::<i32>().iter().flatten() {
                list.contains(normal);
            }
        }
    }
    // Per step: identifier statuses (invalid, missing); per delivered column, its values.
    let mut aggregates = vec![rows_where(q.rejected.clone())];
    let mut wanted: Vec<(usize, &'static str)> = Vec::new();
    for (s, step) in d.steps.iter().enumerate() {
        match step {
            Step::Identifier(_) => {
                aggregates.push(rows_where(ident(query::status_column(s)).eq(lit(2i8))));
                aggregates.push(rows_where(ident(query::status_column(s)).eq(lit(1i8))));
                wanted.extend([(s, "invalid"), (s, "missing")]);
            }
            Step::Shift { .. } => {
                aggregates.push(rows_where(ident(query::status_column(s)).eq(lit(1i8))));
                wanted.push((s, "missing"));
            }
            _ => {}
        }
    }
    let delivered = q
        .kept
        .clone()
        .filter(!q.rejected.clone())
        .map_err(|e| error_of(&e))?;
    let kept = one_row(
        q.kept
            .clone()
            .aggregate(vec![], aggregates)
            .map_err(|e| error_of(&e))?,
    )
    .await?;
    let values = one_row(
        delivered
            .aggregate(vec![], q.outputs.iter().map(|o| count(ident(o))).collect())
            .map_err(|e| error_of(&e))?,
    )
    .await?;
    let mut counts = CountsByOutput::new();
    for (output, n) in q.outputs.iter().zip(&values) {
        counts.entry(output.clone()).or_default().transformed = *n;
    }
    for ((s, what), n) in wanted.iter().zip(&kept[1..]) {
        let c = counts.entry(d.steps[*s].output().to_string()).or_default();
        match *what {
            "invalid" => c.invalid = *n,
            _ => c.missing = *n,
        }
    }
    for (s, step) in d.steps.iter().enumerate() {
        if let Step::Shift { date, .. } = step
            && !d.read[*date].unusual_dates
        {
            let day = ident(query::unshifted_column(s));
            let dates = collect(
                q.kept
                    .clone()
                    .filter(day.clone().is_not_null())
                    .and_then(|f| f.aggregate(vec![day], vec![count(lit(1i64))]))
                    .map_err(|e| error_of(&e))?,
            )
            .await?;
            let c = counts.entry(step.output().to_string()).or_default();
            for batch in dates {
                let days = batch.column(0).as_primitive::<Date32Type>();
                let n = datafusion::arrow::compute::cast(
                    batch.column(1),
                    &datafusion::arrow::datatypes::DataType::Int64,
                )
                .map_err(|e| Error::Internal(e.to_string()))?;
                for (day, n) in days.iter().zip(n.as_primitive::<Int64Type>().iter()) {
                    if let (Some(day), Some(n)) = (day, n) {
                        c.dates_before_shift.insert(day, n as u64);
                    }
                }
            }
        }
    }
    let report = DatasetReport {
        name: d.name.clone(),
        files: d.files.iter().map(|f| f.display().to_string()).collect(),
        columns_dropped: d.dropped.clone(),
        rows_read: read[0],
        rows_outside_cohort: read[1],
        rows_opted_out: read[2],
        rows_rejected: kept[0],
        ..Default::default()
    };
    Ok((report, counts))
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
            let c = datafusion::arrow::compute::cast(
                b.column(0),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .expect("a count");
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
