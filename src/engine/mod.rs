//! Executes a compiled plan: for each dataset, batch by batch, types the source columns, keeps the
//! cohort, removes opted-out people, pseudonymises and generalises, and writes the delivery.
//!
//! Polars holds the batches and does the columnar plumbing (parsing, filtering, writing); every
//! transformation is a kernel from `values`, `identifier`, `pseudonymise` or `generalise`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::*;
use rayon::prelude::*;

use crate::delivery::{
    self, DatasetRecord, DatasetWriter, DomainRecord, FieldRecord, Manifest, OrderedWriter,
    SpillWriter, Staging, WrittenFile,
};
use crate::error::{Error, Result};
use crate::kernels::identifier::{self, Checked, IdentifierRule};
use crate::kernels::pseudonymise::PseudonymBatch;
use crate::kernels::values;
use crate::permit::ColumnType;
use crate::plan::{DatasetPlan, Filter, Generalisation, Plan, ReadColumn, Step};
use crate::privacy::anonymise::{self, AnonymisationPlan};
use crate::privacy::risk::TextClassCounter;
use crate::privacy::table::Table;
use crate::report::html::{self, Masking};
use crate::report::progress;
use crate::report::{
    ColumnReport, CountsByOutput, DatasetReport, FreeTextReport, RunReport, Timings,
};
use crate::source::inputs::InputRecord;
use crate::source::{self, Batch, Origin};

mod cohort;
mod fate;
mod set_valued;
mod steps;
#[cfg(feature = "cluster")]
pub(crate) use steps::{IMPLAUSIBLE_SHIFT, PLAUSIBLE_DAYS};

#[cfg(feature = "cluster")]
pub(crate) use cohort::birth_dates;
pub use fate::RemovedPersons;

/// Runs the plan and commits the delivery; on any error nothing is left at the output path.
pub fn run(plan: &Plan) -> Result<RunReport> {
    let permit = &plan.permit;
    if permit.spec.linkage.is_some() {
        return Err(Error::Permit {
            file: permit.path.clone(),
            at: "linkage".into(),
            message: "this is a linking permit: run it with `ehds-prep link --permit`".into(),
        });
    }
    let audit = crate::report::audit::Audit::of_run(plan);
    let written = Staging::create(
        &permit.output_dir(),
        &permit.spec.permit.id,
        &permit.spec.permit.holder,
    )
    .and_then(|staging| {
        let report = write_delivery(plan, &staging)?;
        Ok((staging, report))
    });
    let report = audit.commit(written, |report| report)?;
    tracing::info!(
        permit = %report.permit_id,
        output = %report.output,
        datasets = report.datasets.len(),
        total_ms = report.timings_ms.total as u64,
        "delivery committed"
    );
    Ok(report)
}

/// Writes every dataset, the manifest and `report.json` into `staging`, without committing it.
///
///
/// One person, one fate: the anonymised datasets are written first. Each leaves out every person
/// an anonymised dataset suppressed so far; one is written again while another has suppressed
/// persons since it was written (the persons removed only grow, so this ends). Then the others,
/// without every suppressed person — unless the permit keeps them
/// (`output.keep_persons_suppressed_elsewhere`, with its reason).
pub fn write_delivery(plan: &Plan, staging: &Staging) -> Result<RunReport> {
    let mut writer = DeliveryWriter::new(plan, staging);
    let one_fate = one_fate(plan);
    let (mut anonymised, others): (Vec<&DatasetPlan>, Vec<&DatasetPlan>) = plan
        .datasets
        .iter()
        .filter(|d| !d.read_only)
        .partition(|d| d.anonymisation.is_some() || d.set_valued.is_some());
    // Sets counted within another dataset's classes after that dataset, in each round.
    let within = |d: &DatasetPlan| d.set_valued.as_ref().and_then(|sv| sv.within);
    anonymised.sort_by_key(|d| within(d).is_some());
    let within_at: Vec<Option<usize>> = anonymised
        .iter()
        .map(|d| {
            let w = &plan.datasets[within(d)?];
            anonymised.iter().position(|x| std::ptr::eq(*x, w))
        })
        .collect();
    // When each was last written (0: not yet), to write again the sets whose classes changed.
    let (mut written_at, mut writes) = (vec![0usize; anonymised.len()], 0);
    // Per anonymised dataset: every person it suppressed, in any round.
    let mut suppressed: Vec<Option<RemovedPersons>> = anonymised.iter().map(|_| None).collect();
    let mut rounds = Rounds::new(anonymised.len());
    for round in 0.. {
        let mut wrote = false;
        for (i, d) in anonymised.iter().enumerate() {
            let sizes: Vec<usize> = suppressed
                .iter()
                .map(|s| s.as_ref().map_or(0, RemovedPersons::persons))
                .collect();
            let stale = rounds.stale(i, &sizes)
                || within_at[i].is_some_and(|w| written_at[w] > written_at[i]);
            if !stale {
                continue;
            }
            if round == MAX_ROUNDS {
                return Err(unsettled(&anonymised));
            }
            writer.forget(d);
            let now = writer.dataset(d, &removed_so_far(&suppressed, one_fate))?;
            rounds.written(i, sizes);
            writes += 1;
            written_at[i] = writes;
            if let Some(now) = now {
                match &mut suppressed[i] {
                    Some(all) => all.add(now),
                    none => *none = Some(now),
                }
            }
            wrote = true;
        }
        if !wrote || !one_fate {
            break;
        }
    }
    let leave_out = removed_so_far(&suppressed, one_fate);
    for d in others {
        writer.dataset(d, &leave_out)?;
    }
    writer.check_derivations()?;
    writer.finish(None)
}

/// The persons the anonymised datasets suppressed so far, when they leave the others.
fn removed_so_far(suppressed: &[Option<RemovedPersons>], one_fate: bool) -> Vec<&RemovedPersons> {
    suppressed.iter().flatten().filter(|_| one_fate).collect()
}

/// Now in UTC (RFC 3339, seconds), or `SOURCE_DATE_EPOCH` when set: a report made again from the
/// same inputs can then repeat byte for byte.
fn run_started_at() -> String {
    let fixed = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0));
    fixed
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Which anonymised datasets a round writes: those not written yet, and those written before
/// another one suppressed more persons.
pub(crate) struct Rounds {
    /// Per anonymised dataset, once written: how many persons each had suppressed when it was.
    written_with: Vec<Option<Vec<usize>>>,
}

impl Rounds {
    pub(crate) fn new(datasets: usize) -> Rounds {
        Rounds {
            written_with: vec![None; datasets],
        }
    }

    /// Whether dataset `i` must be written (again), `sizes` being how many persons each has
    /// suppressed so far.
    pub(crate) fn stale(&self, i: usize, sizes: &[usize]) -> bool {
        self.written_with[i]
            .as_ref()
            .is_none_or(|then| (0..sizes.len()).any(|j| j != i && sizes[j] > then[j]))
    }

    pub(crate) fn written(&mut self, i: usize, sizes: Vec<usize>) {
        self.written_with[i] = Some(sizes);
    }
}

/// Whether the persons a dataset's privacy model suppressed leave the others (unless the permit
/// keeps them, with its reason).
pub(crate) fn one_fate(plan: &Plan) -> bool {
    plan.permit
        .spec
        .output
        .keep_persons_suppressed_elsewhere
        .is_none()
}

/// Rounds of anonymised datasets before their suppressions must have settled.
pub(crate) const MAX_ROUNDS: usize = 16;

/// The error of anonymised datasets whose suppressed persons did not settle in [`MAX_ROUNDS`].
pub(crate) fn unsettled(anonymised: &[&DatasetPlan]) -> Error {
    Error::Privacy(format!(
        "the persons suppressed by datasets {} did not settle in {MAX_ROUNDS} rounds; \
         anonymise them in one dataset, or keep such persons \
         (output.keep_persons_suppressed_elsewhere)",
        anonymised
            .iter()
            .map(|d| format!("`{}`", d.name))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A delivery being written dataset by dataset, for callers that act between datasets (`link`).
pub struct DeliveryWriter<'a> {
    plan: &'a Plan,
    staging: &'a Staging,
    started: Instant,
    /// The run's start in UTC, for the audit record.
    started_at: String,
    footer: Vec<(String, String)>,
    timings: Timings,
    reports: Vec<DatasetReport>,
    records: Vec<DatasetRecord>,
    /// The source files of the datasets written so far, as read.
    inputs: Vec<InputRecord>,
}

impl<'a> DeliveryWriter<'a> {
    pub fn new(plan: &'a Plan, staging: &'a Staging) -> Self {
        let permit = &plan.permit;
        tracing::info!(permit = %permit.spec.permit.id, output = %permit.output_dir().display(), "run started");
        DeliveryWriter {
            plan,
            staging,
            started: Instant::now(),
            started_at: run_started_at(),
            footer: footer_metadata(plan),
            timings: Timings::default(),
            reports: Vec::new(),
            records: Vec::new(),
            inputs: Vec::new(),
        }
    }

    /// Writes one dataset, without the rows of the persons in `removed` (counted); returns the
    /// persons its privacy model suppressed, when it removes suppressed rows and delivers a person
    /// column.
    pub fn dataset(
        &mut self,
        d: &DatasetPlan,
        removed: &[&RemovedPersons],
    ) -> Result<Option<RemovedPersons>> {
        let (plan, staging) = (self.plan, self.staging);
        let file = format!("{}.parquet", d.name);
        let mut footer = self.footer.clone();
        footer.push((delivery::footer::DATASET.into(), d.name.clone()));
        let schema = output_schema(d);
        let order_by = order_column(d);
        let buckets = delivery::order::buckets_for(source_bytes(d));
        let batch_rows = plan.permit.spec.output.batch_rows;
        let out = || DatasetWriter::create(staging.path(&file), &schema, footer.clone());
        let writer = || {
            let out = out()?;
            let (spills, name) = (staging.path(""), d.name.clone());
            OrderedWriter::new(out, &order_by, batch_rows, buckets, move |i| {
                spills.join(format!(".{name}.order-{i}.arrow"))
            })
        };
        let mut state = DatasetState::new(d, removed);
        let mut suppressed = foldhash::HashSet::default();
        // An anonymised dataset is read once: pass 1 transforms the source, profiles it to choose
        // the generalisation and spills the transformed batches; pass 2 generalises the spill.
        // With pinned levels, the rows of classes that already hold k persons go straight out.
        let spill = staging.path(&format!(".{}.pass1.arrow", d.name));
        let classes = match d.set_valued.as_ref().and_then(|sv| sv.within) {
            Some(w) => Some(self.classes_of(&plan.datasets[w])?),
            None => None,
        };
        let timings = &mut self.timings;
        // A dataset of quasi-identifiers alone is written from its classes: pass 1 spills nothing.
        let from_classes = delivered_from_classes(d);
        let early = d
            .anonymisation
            .as_ref()
            .filter(|a| a.releases_early() && !from_classes);
        // A set-valued attribute's pass 1 and search; its pass 2 is the streamed write below.
        let mut codes = match &d.set_valued {
            Some(sv) => Some(set_valued::choose(
                plan,
                d,
                sv,
                classes.as_ref(),
                &mut state,
                &spill,
                timings,
            )?),
            None => None,
        };
        let (solution, written, counted) = if let Some(a) = early {
            let (s, written, counted) = write_released_early(
                plan,
                d,
                a,
                &mut state,
                writer()?,
                &spill,
                timings,
                &mut suppressed,
            )?;
            (Some(s), written, Some(counted))
        } else {
            let solution = match &d.anonymisation {
                Some(a) => Some(choose_generalisation(
                    plan,
                    d,
                    a,
                    &mut state,
                    (!from_classes).then_some(spill.as_path()),
                    timings,
                )?),
                None => None,
            };
            let written = match (from_classes, &d.anonymisation, &solution) {
                (true, Some(a), Some(s)) => {
                    write_classes(plan, d, a, s, &mut state, out()?, timings)?
                }
                _ => {
                    let release = match (&solution, &d.set_valued, &codes) {
                        (Some(s), ..) => Release::Generalised(s),
                        (None, Some(sv), Some(c)) => Release::Codes(sv, c),
                        _ => Release::AsTransformed,
                    };
                    write_streamed(
                        plan,
                        d,
                        release,
                        &mut state,
                        writer()?,
                        &spill,
                        timings,
                        &mut suppressed,
                    )?
                }
            };
            (solution, written, None)
        };
        tracing::info!(
            dataset = %d.name,
            rows_read = state.report.rows_read,
            rows_outside_cohort = state.report.rows_outside_cohort,
            rows_opted_out = state.report.rows_opted_out,
            rows_rejected = state.report.rows_rejected,
            rows_delivered = written.rows,
            "dataset written"
        );
        // For an anonymised dataset, the classes counted again from the file (not from memory).
        let solution = match (&d.anonymisation, solution) {
            (Some(a), Some(mut s)) => {
                let batch_rows = plan.permit.spec.output.batch_rows;
                let (counter, count_ms) = match counted {
                    Some(counted) => counted,
                    None => timed(|| anonymise::count_delivered(a, &written.path, batch_rows))?,
                };
                let ((risk, reached), check_ms) =
                    timed(|| anonymise::recheck(a, &s, &counter, &written.path))?;
                self.timings.finalise += count_ms + check_ms;
                s.report.risk_after = Some(risk);
                s.report.sensitive_reached = reached;
                Some(s)
            }
            _ => None,
        };
        if let (Some(sv), Some(release)) = (&d.set_valued, &mut codes) {
            let batch_rows = plan.permit.spec.output.batch_rows;
            let (at_risk, check_ms) =
                timed(|| set_valued::recheck(sv, classes.as_ref(), &written.path, batch_rows))?;
            self.timings.finalise += check_ms;
            if at_risk > 0 {
                return Err(Error::Privacy(format!(
                    "dataset `{}`: counted again from the written file, {at_risk} persons hold a \
                     set of up to {} codes of `{}` that fewer than {} persons hold; the delivery \
                     is refused",
                    d.name, sv.model.m, sv.output, sv.model.k
                )));
            }
            release.summary.persons_at_risk_after = at_risk;
            release.summary.rows_suppressed = release.rows_left_out();
        }
        check_written(d, &state.report, &state.counts, written.rows)?;
        // Persons still delivered here with other rows are not suppressed as persons.
        let mut removed = RemovedPersons::suppressed_by(d, suppressed);
        let person_output = match (&d.anonymisation, &d.set_valued) {
            (Some(a), _) => a.person_output.as_deref(),
            (None, Some(sv)) => Some(sv.person_output.as_str()),
            (None, None) => None,
        };
        if let (Some(r), Some(person)) = (&mut removed, person_output) {
            r.retain_absent_from(&written.path, person, plan.permit.spec.output.batch_rows)?;
        }
        let removed = removed.filter(|r| r.persons() > 0);
        state.report.persons_suppressed = removed.as_ref().map_or(0, |r| r.persons() as u64);
        state.report.set_valued = codes.map(|c| c.summary);
        self.record(d, state, solution, written, file, &schema);
        Ok(removed)
    }

    /// The classes of dataset `w`'s written file: its persons (as delivered) and the class each
    /// is in, for a set-valued attribute counted within them.
    fn classes_of(&self, w: &DatasetPlan) -> Result<set_valued::Classes> {
        let a = w.anonymisation.as_ref().expect("validated: privacy");
        let path = self
            .written(&w.name)
            .expect("written before, in each round");
        set_valued::Classes::read(
            &w.name,
            a.person_output.as_deref().expect("validated: a person"),
            a.quasi_identifiers.iter().map(|q| q.output.clone()),
            &path,
            self.plan.permit.spec.output.batch_rows,
        )
    }

    /// Forgets a dataset written before, to write it again.
    pub(crate) fn forget(&mut self, d: &DatasetPlan) {
        self.reports.retain(|r| r.name != d.name);
        self.records.retain(|r| r.name != d.name);
        let role = source_role(d);
        self.inputs.retain(|i| i.role != role);
    }

    /// Records a dataset a cluster (the `cluster` module) wrote into the staging folder as
    /// `<name>.parquet`, with its counts, checked as a dataset written here is (no silent empty
    /// delivery, no sentinel date shifted).
    #[cfg(feature = "cluster")]
    pub(crate) fn record_written(
        &mut self,
        d: &DatasetPlan,
        counted: ClusterCounts,
        written: WrittenFile,
        solution: Option<anonymise::Solution>,
    ) -> Result<()> {
        let ClusterCounts {
            report,
            counts,
            inputs,
            echoes,
        } = counted;
        check_written(d, &report, &counts, written.rows)?;
        let state = DatasetState {
            report,
            counts,
            pseudonyms: Vec::new(),
            removed: &[],
            inputs,
            echoes,
        };
        let file = format!("{}.parquet", d.name);
        self.record(d, state, solution, written, file, &output_schema(d));
        Ok(())
    }

    /// The key-value metadata every delivered file's footer carries.
    #[cfg(feature = "cluster")]
    pub(crate) fn footer(&self) -> &[(String, String)] {
        &self.footer
    }

    /// A written dataset's report, manifest record and inputs.
    fn record(
        &mut self,
        d: &DatasetPlan,
        state: DatasetState,
        solution: Option<anonymise::Solution>,
        written: WrittenFile,
        file: String,
        schema: &Schema,
    ) {
        let DatasetState {
            mut report,
            mut counts,
            inputs,
            echoes,
            ..
        } = state;
        report.birth_date_echoes = d
            .birth_echoes
            .iter()
            .zip(echoes)
            .filter(|(_, persons)| !persons.is_empty())
            .map(|(e, persons)| crate::report::BirthDateEcho {
                column: d.read[e.column].name.clone(),
                birth_date: e.birth.name.clone(),
                persons: persons.len() as u64,
            })
            .collect();
        for e in &report.birth_date_echoes {
            tracing::warn!(
                dataset = %d.name,
                column = %e.column,
                birth_date = %e.birth_date,
                persons = e.persons,
                "a delivered date equals the persons' birth date"
            );
        }
        // A linked person table is the run's own work file, not an input.
        if d.source.format != crate::permit::SourceFormat::Linked {
            self.inputs.extend(inputs);
        }
        let mut privacy = None;
        if let (Some(a), Some(s)) = (&d.anonymisation, solution) {
            privacy = Some(privacy_record(a, &s));
            report.anonymisation = Some(s.report);
        }
        let set_valued = report.set_valued.clone();
        let WrittenFile { rows, checksum, .. } = written;
        let (sha256, bytes) = checksum;
        report.rows_delivered = rows;
        report.free_text_kept = d
            .free_text_kept
            .iter()
            .map(|(column, reason)| FreeTextReport {
                column: column.clone(),
                reason: reason.clone(),
            })
            .collect();
        report.columns = d
            .steps
            .iter()
            .map(|s| {
                let c = counts.remove(s.output()).unwrap_or_default();
                let identifier = matches!(s, Step::Identifier(_));
                let person = identifier || matches!(s, Step::Shift { .. });
                ColumnReport {
                    output: s.output().into(),
                    action: s.describe(&d.read),
                    values_transformed: c.transformed,
                    identifiers_invalid: identifier.then_some(c.invalid),
                    identifiers_missing: person.then_some(c.missing),
                    unmapped_values: matches!(s, Step::Map { .. }).then_some(c.invalid),
                    partial_dates_disagreeing: matches!(s, Step::Shift { to: Some(_), .. })
                        .then_some(c.partial_dates_disagreeing),
                    records_refused_by_schema: matches!(s, Step::Clk(_)).then_some(c.invalid),
                }
            })
            .collect();
        self.records.push(DatasetRecord {
            name: d.name.clone(),
            file,
            sha256,
            bytes,
            rows,
            schema: d
                .steps
                .iter()
                .zip(schema.iter_fields())
                .map(|(s, f)| FieldRecord {
                    name: f.name.to_string(),
                    dtype: f.dtype.to_string(),
                    transformation: s.describe_at_level(
                        &d.read,
                        privacy.as_ref().and_then(|p| {
                            let level = p.levels.iter().find(|l| l.column == s.output())?;
                            Some(level.meaning.as_str())
                        }),
                    ),
                    domain: s.protection_domain().map(String::from),
                    values: s.value_form(&d.read).map(String::from),
                    shifted: matches!(s, Step::Shift { .. }),
                })
                .collect(),
            row_order: delivery::order::describe(&order_column(d)),
            privacy,
            set_valued,
        });
        self.reports.push(report);
    }

    /// Refuses a delivery where a column releases the column it derives from more finely than
    /// that column's table does, at the levels the search chose.
    fn check_derivations(&self) -> Result<()> {
        use crate::permit::derivation;
        let permit = &self.plan.permit;
        let derivations = derivation::derivations(&permit.spec).expect("validated derivations");
        let level = |(d, c): (&crate::permit::DatasetSpec, &crate::permit::ColumnSpec)| {
            let record = self.records.iter().find(|r| r.name == d.name);
            let chosen = record
                .and_then(|r| r.privacy.as_ref())
                .and_then(|p| p.levels.iter().find(|l| l.column == c.output_name()));
            chosen.map_or(derivation::levels(c).0, |l| l.level)
        };
        for d in &derivations {
            if let Some(message) = derivation::too_fine(d, level(d.derived), level(d.source)) {
                return Err(Error::Permit {
                    file: permit.path.clone(),
                    at: d.at.clone(),
                    message: format!("at the levels the privacy search chose, {message}"),
                });
            }
        }
        Ok(())
    }

    /// The source files of the datasets written so far, as they were read.
    pub fn inputs(&self) -> &[InputRecord] {
        &self.inputs
    }

    /// The file a written dataset went to.
    pub fn written(&self, dataset: &str) -> Option<PathBuf> {
        let record = self.records.iter().find(|r| r.name == dataset)?;
        Some(self.staging.path(&record.file))
    }

    /// Writes the manifest, `report.json` and `report.html` (with the linkage section of `link`).
    pub fn finish(self, linkage: Option<&dyn html::Section>) -> Result<RunReport> {
        let DeliveryWriter {
            plan,
            staging,
            started,
            started_at,
            timings,
            mut reports,
            mut records,
            inputs,
            ..
        } = self;
        // In the permit's order, however many times the one-fate rounds wrote each dataset.
        let position = |name: &str| plan.datasets.iter().position(|d| d.name == name);
        reports.sort_by_key(|r| position(&r.name));
        records.sort_by_key(|r| position(&r.name));
        let permit = &plan.permit;
        let t = Instant::now();
        let scanned = std::mem::take(&mut *plan.scanned.lock().expect("no panic while holding it"));
        let inputs = with_scanned(inputs, scanned)?;
        let manifest = manifest(plan, records, inputs);
        let manifest_path = staging.path(delivery::MANIFEST);
        std::fs::write(
            &manifest_path,
            serde_json::to_string_pretty(&manifest).expect("serialisable") + "\n",
        )
        .map_err(|e| Error::output(&manifest_path, e))?;
        let mut report = RunReport {
            permit_id: permit.spec.permit.id.clone(),
            permit: manifest.permit.clone(),
            started_at,
            engine_version: crate::ENGINE_VERSION.into(),
            output: permit.output_dir().display().to_string(),
            datasets: reports,
            opt_out: plan.opt_out.as_ref().map(|o| o.report()),
            timings_ms: timings,
        };
        report.timings_ms.finalise += t.elapsed().as_millis();
        report.timings_ms.total = started.elapsed().as_millis();
        let report_path = staging.path(delivery::REPORT_JSON);
        std::fs::write(
            &report_path,
            serde_json::to_vec_pretty(&report).expect("serialisable"),
        )
        .map_err(|e| Error::output(&report_path, e))?;
        let small_counts = permit
            .spec
            .output
            .small_counts
            .or_else(|| linkage.and(permit.spec.linkage.as_ref().map(|l| l.small_counts)));
        let masking = small_counts.map_or(Masking::NONE, Masking::below);
        let html_path = staging.path(delivery::REPORT_HTML);
        std::fs::write(
            &html_path,
            html::delivery_report(&report, &manifest, linkage, masking),
        )
        .map_err(|e| Error::output(&html_path, e))?;
        Ok(report)
    }
}

/// What `validate` found on a dataset's sample: its rows, and what the run's stages made of them.
pub struct SampleCheck {
    pub dataset: String,
    pub rows: u64,
    pub delivered: u64,
    pub outside_cohort: u64,
    pub opted_out: u64,
    pub rejected: u64,
}

/// Checks a plan's sources without writing anything: files open, declared columns exist, the first
/// rows of each file parse in the declared types, and go through the dataset's stages (cohort,
/// opt-out, identifier rules, each column's action), so that a permit that would keep none of
/// them is seen before a run.
pub fn validate(plan: &Plan) -> Result<Vec<SampleCheck>> {
    let mut checked = Vec::new();
    for d in &plan.datasets {
        let columns = d.source_columns();
        let mut state = DatasetState::new(d, &[]);
        let mut delivered = 0;
        source::check_samples(d.input(), &columns, |batch| {
            delivered += transform(plan, d, batch, &mut state)?.df.height() as u64;
            Ok(())
        })?;
        let r = &state.report;
        checked.push(SampleCheck {
            dataset: d.name.clone(),
            rows: r.rows_read,
            delivered,
            outside_cohort: r.rows_outside_cohort,
            opted_out: r.rows_opted_out,
            rejected: r.rows_rejected,
        });
    }
    Ok(checked)
}

fn footer_metadata(plan: &Plan) -> Vec<(String, String)> {
    let p = &plan.permit;
    vec![
        (delivery::footer::PERMIT_ID.into(), p.spec.permit.id.clone()),
        (delivery::footer::PERMIT_SHA256.into(), p.sha256.clone()),
        (
            delivery::footer::ENGINE_VERSION.into(),
            crate::ENGINE_VERSION.into(),
        ),
        (
            delivery::footer::PSEUDONYM_VERSION.into(),
            p.spec.pseudonyms.version.clone(),
        ),
        (
            delivery::footer::DOMAINS.into(),
            serde_json::to_string(&domain_records(plan)).expect("serialisable"),
        ),
    ]
}

fn domain_records(plan: &Plan) -> Vec<DomainRecord> {
    plan.domains
        .values()
        .map(|d| DomainRecord {
            name: d.name.clone(),
            context: d.context.clone(),
            key_fingerprint: d.key_fingerprint.clone(),
        })
        .collect()
}

/// The inputs of the delivery with the files read for what datasets need of each other: a file
/// read twice must have had the same bytes each time (an export still being written would give
/// one table's persons from one version and its rows from another); one only read for others
/// (a read-only dataset) is recorded once.
fn with_scanned(
    mut inputs: Vec<InputRecord>,
    scanned: Vec<InputRecord>,
) -> Result<Vec<InputRecord>> {
    for s in scanned {
        match inputs.iter().find(|r| r.path == s.path) {
            Some(r) if r.sha256 != s.sha256 => {
                return Err(Error::input(
                    std::path::Path::new(&s.path),
                    "file",
                    "the file changed between two reads of this run (its SHA-256 differs); \
                     rerun once the export that writes it has finished",
                ));
            }
            Some(_) => {}
            None => inputs.push(s),
        }
    }
    Ok(inputs)
}

/// The date-shift domain and range, when a delivered column is shifted.
fn date_shift_record(plan: &Plan, datasets: &[DatasetRecord]) -> Option<delivery::DateShiftRecord> {
    let ds = plan.permit.spec.date_shift.as_ref()?;
    if !datasets.iter().flat_map(|d| &d.schema).any(|f| f.shifted) {
        return None;
    }
    let domain = &plan.domains[&ds.domain];
    Some(delivery::DateShiftRecord {
        domain: ds.domain.clone(),
        context: domain.context.clone(),
        key_fingerprint: domain.key_fingerprint.clone(),
        min_days: ds.min_days,
        max_days: ds.max_days,
        key_parts: plan.shift_key_parts(),
    })
}

fn manifest(plan: &Plan, datasets: Vec<DatasetRecord>, sources: Vec<InputRecord>) -> Manifest {
    let p = &plan.permit.spec;
    Manifest {
        format: delivery::MANIFEST_FORMAT.into(),
        engine_version: crate::ENGINE_VERSION.into(),
        permit: delivery::PermitRecord {
            id: p.permit.id.clone(),
            purpose: p.permit.purpose.clone(),
            holder: p.permit.holder.clone(),
            recipient: p.permit.recipient.clone(),
            sha256: plan.permit.sha256.clone(),
        },
        pseudonyms: delivery::PseudonymRecord {
            version: p.pseudonyms.version.clone(),
            encoding: format!("{:?}", p.pseudonyms.encoding).to_lowercase(),
            bits: p.pseudonyms.bits,
            canonical_form: crate::kernels::identifier::CANONICAL_FORM.into(),
        },
        domains: domain_records(plan),
        date_shift: date_shift_record(plan, &datasets),
        persons_suppressed_elsewhere_kept: p.output.keep_persons_suppressed_elsewhere.clone(),
        datasets,
        inputs: plan.inputs.iter().cloned().chain(sources).collect(),
        database: plan.database.as_ref().and_then(|d| d.record()),
    }
}

fn dtype_of(t: ColumnType) -> DataType {
    match t {
        ColumnType::String | ColumnType::Text => DataType::String,
        ColumnType::Integer => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        // Partial dates are held as the first day of their period while the steps run.
        ColumnType::Date | ColumnType::Year | ColumnType::YearMonth => DataType::Date,
        ColumnType::Datetime => DataType::Datetime(TimeUnit::Microseconds, None),
        ColumnType::Boolean => DataType::Boolean,
    }
}

/// A delivered column's type when its values are delivered as read (kept or shifted): a year as
/// an integer, a month as the date of its first day, others as they are held. With
/// `output_schema`, this is the types rule of `docs/permit.md`: a column's type depends on the
/// permit alone, never on its values or a level a search chooses.
fn delivered_dtype(t: ColumnType) -> DataType {
    match t {
        ColumnType::Year => DataType::Int64,
        ColumnType::YearMonth => DataType::Date,
        _ => dtype_of(t),
    }
}

/// The delivered schema, known before any row is read.
pub fn output_schema(d: &DatasetPlan) -> Schema {
    d.steps
        .iter()
        .map(|s| {
            let dtype = match s {
                Step::Keep { input, .. } => delivered_dtype(d.read[*input].column_type),
                Step::Generalise {
                    rule: Generalisation::Year,
                    ..
                } => DataType::Int64,
                Step::Generalise {
                    rule: Generalisation::Month,
                    ..
                } => DataType::Date,
                Step::Shift { input, .. } => delivered_dtype(d.read[*input].column_type),
                Step::Identifier(_)
                | Step::Clk(_)
                | Step::Generalise { .. }
                | Step::Mask { .. }
                | Step::Map { .. }
                | Step::QuasiIdentifier { .. } => DataType::String,
            };
            Field::new(s.output().into(), dtype)
        })
        .collect()
}

/// A batch's columns as the steps read them: in their declared types, the values the permit says
/// are missing made null, and for a composite person or a table that reaches its person through a
/// join key, that person (normalised) after them.
fn typed_batch(plan: &Plan, d: &DatasetPlan, batch: &Batch) -> Result<Vec<Series>> {
    let mut cols = mark_missing(d, typed_columns(d, batch)?)?;
    if !d.person_parts.is_empty() {
        let parts: Vec<Vec<Option<&str>>> = d
            .person_parts
            .iter()
            .map(|(at, _)| strings(&cols[*at]))
            .collect::<Result<_>>()?;
        let rules: Vec<IdentifierRule> = d.person_parts.iter().map(|(_, r)| r.clone()).collect();
        let persons: Vec<Option<String>> = (0..batch.df.height())
            .into_par_iter()
            .map_init(
                || (String::new(), Vec::with_capacity(parts.len())),
                |(normal, row_parts), row| {
                    row_parts.clear();
                    row_parts.extend(parts.iter().map(|p| p[row]));
                    identifier::join_parts(&rules, row_parts, normal)
                },
            )
            .collect();
        cols.push(
            StringChunked::from_iter_options("person".into(), persons.iter().map(Option::as_deref))
                .into_series(),
        );
    }
    if let Some(via) = &d.person_via {
        let persons = cohort::persons_by_key(plan, via, &cols)?;
        cols.push(
            StringChunked::from_iter_options("person".into(), persons.iter().map(Option::as_deref))
                .into_series(),
        );
    }
    for (j, spec) in d.read.iter().enumerate() {
        if let Some(p) = &spec.profile {
            cols[j] = cohort::profile_column(plan, d, spec, p, &cols)?;
        }
    }
    Ok(cols)
}

/// Values that the permit says are missing made null before any step sees them: a Parquet
/// column's sentinels (a CSV reader leaves them out as it parses), and values on rows that fail
/// the column's `valid_when` (a return code saying the identifier is not one).
fn mark_missing(d: &DatasetPlan, mut cols: Vec<Series>) -> Result<Vec<Series>> {
    let csv = d.source.format == crate::permit::SourceFormat::Csv;
    let as_text = |s: &Series| s.cast(&DataType::String);
    for (j, spec) in d.read.iter().enumerate() {
        let sentinels = !csv && !spec.null_values.is_empty();
        if !sentinels && spec.valid_when.is_empty() {
            continue;
        }
        let mut valid = vec![true; cols[j].len()];
        if sentinels {
            let text = as_text(&cols[j])?;
            for (v, text) in valid.iter_mut().zip(text.str()?.iter()) {
                *v &= text.is_none_or(|t| !spec.null_values.iter().any(|n| n.trim() == t.trim()));
            }
        }
        for (column, values) in &spec.valid_when {
            let text = as_text(&cols[*column])?;
            for (v, text) in valid.iter_mut().zip(text.str()?.iter()) {
                *v &= text.is_some_and(|t| values.contains(t.trim()));
            }
        }
        if valid.contains(&false) {
            let mask = BooleanChunked::from_slice("valid".into(), &valid);
            let missing = Series::full_null("".into(), valid.len(), cols[j].dtype());
            cols[j] = cols[j].zip_with(&mask, &missing)?;
        }
    }
    Ok(cols)
}

/// The batch's columns in their declared types, or an error naming the first value that does not parse.
/// A profile attribute, which the source does not hold, is a column of nulls here until
/// [`typed_batch`] knows the rows' persons.
fn typed_columns(d: &DatasetPlan, batch: &Batch) -> Result<Vec<Series>> {
    let mut read = batch.df.columns().iter();
    let pairs: Vec<(&ReadColumn, Option<&Column>)> = d
        .read
        .iter()
        .map(|spec| (spec, spec.profile.is_none().then(|| read.next()).flatten()))
        .collect();
    pairs
        .par_iter()
        .map(|(spec, col)| match col {
            Some(col) => typed_column(col.as_materialized_series(), spec, &batch.origin),
            None => Ok(Series::full_null(
                spec.name.as_str().into(),
                batch.df.height(),
                &dtype_of(spec.column_type),
            )),
        })
        .collect()
}

fn typed_column(s: &Series, spec: &ReadColumn, origin: &Origin) -> Result<Series> {
    let want = dtype_of(spec.column_type);
    if spec.column_type.is_partial_date() && s.dtype().is_integer() {
        // A Parquet partial date written as a number (2019, 201903) is read as its digits.
        return typed_column(&s.cast(&DataType::String)?, spec, origin);
    }
    if s.dtype() != &DataType::String {
        // A typed Parquet column, already checked against the declaration by the source; its dates
        // must still lie in the calendar the date kernels compute with.
        let typed = s.cast(&want)?;
        if spec.column_type.is_partial_date()
            && let Some(row) = days(&typed)?
                .iter()
                .position(|d| d.is_some_and(|d| !starts_its_period(d, spec.column_type)))
        {
            return Err(Error::input(
                &origin.file,
                format!("{}, column `{}`", origin.place(row), spec.name),
                format!(
                    "a date that is not the first day of its {} (value not shown): a partial \
                     date read from dates must be written as its period's first day",
                    if spec.column_type == ColumnType::Year {
                        "year"
                    } else {
                        "month"
                    }
                ),
            ));
        }
        if matches!(spec.column_type, ColumnType::Date | ColumnType::Datetime)
            && let Some(row) = days(&typed)?
                .iter()
                .position(|d| d.is_some_and(|d| !values::day_in_range(d)))
        {
            return Err(Error::input(
                &origin.file,
                format!("{}, column `{}`", origin.place(row), spec.name),
                "date outside the calendar (years -262143 to 262142; value not shown)",
            ));
        }
        // NaN and infinities are refused as in a CSV source: a class `[NaN, NaN)` means nothing.
        if spec.column_type == ColumnType::Float
            && let Some(row) = typed
                .f64()?
                .iter()
                .position(|v| v.is_some_and(|v| !v.is_finite()))
        {
            return Err(Error::input(
                &origin.file,
                format!("{}, column `{}`", origin.place(row), spec.name),
                format!(
                    "value is not {} (value not shown)",
                    crate::source::csv_columns::rule(ColumnType::Float, "")
                ),
            ));
        }
        return Ok(typed);
    }
    if matches!(spec.column_type, ColumnType::String | ColumnType::Text) {
        return Ok(s.clone());
    }
    let text = s.str()?.iter();
    source::typed_from_text(s.name().clone(), text, spec.column_type, &spec.format).map_err(
        |(row, rule)| {
            Error::input(
                &origin.file,
                format!("{}, column `{}`", origin.place(row), spec.name),
                format!("value is not {rule} (value not shown)"),
            )
        },
    )
}

/// Whether a day is the first of its year (`year`) or month (`year_month`).
fn starts_its_period(day: i32, t: ColumnType) -> bool {
    use chrono::Datelike;
    let date = values::days_to_date(day);
    date.day() == 1 && (t != ColumnType::Year || date.month() == 1)
}

fn strings(s: &Series) -> Result<Vec<Option<&str>>> {
    Ok(s.str()?.iter().collect())
}

/// Days since 1970-01-01 of a date or datetime column (a datetime counts as its day).
fn days(s: &Series) -> Result<Vec<Option<i32>>> {
    Ok(match s.dtype() {
        DataType::Datetime(..) => s
            .datetime()?
            .physical()
            .iter()
            .map(|v| v.map(values::datetime_day))
            .collect(),
        _ => s.date()?.physical().iter().collect(),
    })
}

/// The rows that meet every condition of `filters` over `cols`.
fn filter_mask(filters: &[Filter], cols: &[Series]) -> Result<Vec<bool>> {
    let mut keep = vec![true; cols.first().map_or(0, |c| c.len())];
    for f in filters {
        match f {
            Filter::Range { column, from, to } => {
                let inside = |v: Option<f64>| {
                    v.is_some_and(|v| from.is_none_or(|f| v >= f) && to.is_none_or(|t| v <= t))
                };
                // Compare the physical values in place: dates are days since 1970-01-01.
                let s = &cols[*column];
                let values: Box<dyn Iterator<Item = Option<f64>>> = match s.dtype() {
                    DataType::Date => {
                        Box::new(s.date()?.physical().iter().map(|v| v.map(f64::from)))
                    }
                    DataType::Datetime(..) => Box::new(
                        s.datetime()?
                            .physical()
                            .iter()
                            .map(|v| v.map(|v| f64::from(values::datetime_day(v)))),
                    ),
                    DataType::Int64 => Box::new(s.i64()?.iter().map(|v| v.map(|v| v as f64))),
                    _ => Box::new(s.f64()?.iter()),
                };
                for (k, v) in keep.iter_mut().zip(values) {
                    *k &= inside(v);
                }
            }
            Filter::Values { column, values } => {
                let s = cols[*column].cast(&DataType::String)?;
                for (k, v) in keep.iter_mut().zip(s.str()?.iter()) {
                    *k &= v.is_some_and(|v| values.contains(v));
                }
            }
            // Applied by `minimise`, which reads the other dataset.
            Filter::Persons(_) => {}
            Filter::Prefixes { column, prefixes } => {
                let s = cols[*column].cast(&DataType::String)?;
                for (k, v) in keep.iter_mut().zip(s.str()?.iter()) {
                    *k &= v.is_some_and(|v| prefixes.iter().any(|p| v.starts_with(p.as_str())));
                }
            }
        }
    }
    Ok(keep)
}

fn filter_all(cols: Vec<Series>, mask: &[bool]) -> Result<Vec<Series>> {
    let mask = BooleanChunked::from_slice("mask".into(), mask);
    cols.iter().map(|c| Ok(c.filter(&mask)?)).collect()
}

/// What a cluster counted of a dataset it wrote ([`DeliveryWriter::record_written`]).
#[cfg(feature = "cluster")]
pub(crate) struct ClusterCounts {
    pub report: DatasetReport,
    pub counts: CountsByOutput,
    /// The source files as read.
    pub inputs: Vec<InputRecord>,
    /// Per birth-date comparison, the persons whose date is their birth date.
    pub echoes: Vec<HashSet<String>>,
}

/// What a dataset's batches accumulate: counts for the report, and buffers reused from batch to batch.
struct DatasetState<'a> {
    report: DatasetReport,
    counts: CountsByOutput,
    /// One per step (used by pseudonymisation steps only).
    pseudonyms: Vec<PseudonymBatch>,
    /// Persons whose rows are left out (suppressed by another dataset).
    removed: &'a [&'a RemovedPersons],
    /// The source files as read.
    inputs: Vec<InputRecord>,
    /// Per birth-date comparison of the dataset, the persons whose date equals their birth date.
    echoes: Vec<HashSet<String>>,
}

impl<'a> DatasetState<'a> {
    fn new(d: &DatasetPlan, removed: &'a [&'a RemovedPersons]) -> Self {
        DatasetState {
            removed,
            inputs: Vec::new(),
            report: DatasetReport {
                name: d.name.clone(),
                files: d.files.iter().map(|f| f.display().to_string()).collect(),
                columns_dropped: d.dropped.clone(),
                ..Default::default()
            },
            counts: CountsByOutput::new(),
            pseudonyms: d.steps.iter().map(|_| PseudonymBatch::default()).collect(),
            echoes: d.birth_echoes.iter().map(|_| HashSet::new()).collect(),
        }
    }
}

/// Clears `keep` for the kept rows whose person (normalised by `rule`) is `listed`; returns how many.
fn leave_out_persons(
    keep: &mut [bool],
    ids: &[Option<&str>],
    rule: &IdentifierRule,
    listed: impl Fn(&str) -> bool + Sync,
) -> u64 {
    let leave: Vec<bool> = ids
        .par_iter()
        .zip(keep.par_iter())
        .map_init(String::new, |normal, (id, &kept)| {
            kept && rule.check_into(*id, normal) != Checked::Missing && listed(normal)
        })
        .collect();
    leave_out_rows(keep, leave)
}

/// Clears `keep` for the kept rows `leave` marks; returns how many.
fn leave_out_rows(keep: &mut [bool], leave: impl IntoIterator<Item = bool>) -> u64 {
    let mut left = 0;
    for (k, leave) in keep.iter_mut().zip(leave) {
        if *k && leave {
            *k = false;
            left += 1;
        }
    }
    left
}

/// An anonymised dataset whose plan releases early ([`anonymise::EarlyRelease`]): one pass writes
/// the rows of classes that already hold k persons straight to the delivery and spills the others;
/// the held rows of classes that reached k follow at the end. The finished delivery's classes are
/// then counted from the file (for the re-check) while the pinned transformation is evaluated on
/// the complete profile; the rows suppressed must be the ones the evaluation counted.
// The pipeline's ends (writer, spill, timings, suppressed persons) are each borrowed by a stage.
#[allow(clippy::too_many_arguments)]
fn write_released_early(
    plan: &Plan,
    d: &DatasetPlan,
    a: &AnonymisationPlan,
    state: &mut DatasetState,
    writer: OrderedWriter,
    spill: &Path,
    timings: &mut Timings,
    suppressed: &mut foldhash::HashSet<String>,
) -> Result<(anonymise::Solution, WrittenFile, Counted)> {
    let started = Instant::now();
    let (to_writer, batches) = std::sync::mpsc::sync_channel::<DataFrame>(1);
    let (to_spill, held) = std::sync::mpsc::sync_channel::<DataFrame>(1);
    let (to_profile, transformed) = std::sync::mpsc::sync_channel::<Transformed>(1);
    let closed = || Error::Internal("a writer stopped".into());
    std::thread::scope(|scope| {
        let writing = scope.spawn(move || write_all(writer, batches));
        let spilling = scope.spawn(move || write_spill(spill, held));
        // Profiling and splitting a batch run on a stage of their own, while the next batch is
        // transformed: both are sequential passes over every row.
        let to_writer_early = to_writer.clone();
        let profiling = scope.spawn(move || {
            let mut profile = anonymise::Profile::new(a);
            let mut early = anonymise::EarlyRelease::new(a);
            let mut counts = CountsByOutput::new();
            for t in transformed {
                let codes = profile.add(&t.df, &t.origin.file, |r| t.origin.place(t.rows[r]))?;
                let (now, held) = early.split(a, &profile, &codes, t.df)?;
                count_values(&mut counts, &now);
                to_writer_early.send(now).map_err(|_| closed())?;
                to_spill.send(held).map_err(|_| closed())?;
            }
            Ok::<_, Error>((profile, early, counts))
        });
        let read = read_transformed(plan, d, state, &d.name, |t| {
            to_profile
                .send(t)
                .map_err(|_| Error::Internal("the profile stage stopped".into()))
        });
        drop(to_profile);
        let profiled = profiling
            .join()
            .map_err(|_| Error::Internal("the profile stage panicked".into()))?;
        let spilled = spilling
            .join()
            .map_err(|_| Error::Internal("the spill writer panicked".into()));
        // The stage's own error is the cause when the read stopped because the stage did.
        let batch_rows = plan.permit.spec.output.batch_rows;
        let released = profiled.and_then(|p| read.map(|()| p)).and_then(|p| {
            let (profile, mut early, counts) = p;
            spilled??;
            for (column, c) in counts {
                state.counts.entry(column).or_default().transformed += c.transformed;
            }
            let profile_ms = started.elapsed().as_millis();
            delivery::read_spill_batches(spill, batch_rows, |held| {
                let released = early.release(a, held, suppressed)?;
                count_values(&mut state.counts, &released);
                to_writer.send(released).map_err(|_| closed())
            })?;
            Ok((profile, early, profile_ms))
        });
        drop(to_writer);
        let written = writing
            .join()
            .map_err(|_| Error::Internal("the Parquet writer panicked".into()))?;
        // The writer's own error is the cause when both failed.
        let (written, write_ms) = written?;
        let (profile, early, profile_ms) = released?;
        let path = written.path.clone();
        let counting =
            scope.spawn(move || timed(|| anonymise::count_delivered(a, &path, batch_rows)));
        let solution = profile
            .finish()
            .and_then(|table| anonymise::solve(a, table, &d.name, &Default::default()));
        let counted = counting
            .join()
            .map_err(|_| Error::Internal("the re-check's count panicked".into()))?;
        // The evaluation's error (a pinned transformation found infeasible) is the cause when both failed.
        let mut solution = solution?;
        let counted = counted?;
        solution.report.profile_ms = profile_ms;
        solution.report.released_early = true;
        if early.suppressed_rows != solution.optimum.suppressed_rows {
            return Err(Error::Internal(format!(
                "dataset `{}`: {} rows suppressed while writing, {} by the evaluation",
                d.name, early.suppressed_rows, solution.optimum.suppressed_rows
            )));
        }
        timings.write += write_ms;
        timings.transform += started.elapsed().as_millis();
        remove_spill(spill)?;
        tracing::info!(
            dataset = %d.name,
            rows_held = early.held_rows,
            rows_suppressed = early.suppressed_rows,
            "delivered while reading: classes of at least k persons at once, the others at the end"
        );
        Ok((solution, written, counted))
    })
}

/// A dataset written batch by batch while it is read: the source transformed (record-level), or
/// pass 2 of an anonymised dataset, which generalises pass 1's spill at the chosen levels. Writing
/// runs on a thread of its own, one batch behind.
/// What pass 2 makes of the transformed rows.
enum Release<'a> {
    /// Delivered as transformed, straight from the source (no pass 2).
    AsTransformed,
    /// Generalised to the levels the lattice search chose.
    Generalised(&'a anonymise::Solution),
    /// A set-valued attribute's codes released as the cut says.
    Codes(&'a crate::plan::SetValuedPlan, &'a set_valued::CodeRelease),
}

#[allow(clippy::too_many_arguments)]
fn write_streamed(
    plan: &Plan,
    d: &DatasetPlan,
    release: Release,
    state: &mut DatasetState,
    writer: OrderedWriter,
    spill: &Path,
    timings: &mut Timings,
    suppressed: &mut foldhash::HashSet<String>,
) -> Result<WrittenFile> {
    let batch_rows = plan.permit.spec.output.batch_rows;
    let (to_writer, batches) = std::sync::mpsc::sync_channel::<DataFrame>(1);
    std::thread::scope(|scope| {
        let writing = scope.spawn(move || write_all(writer, batches));
        let mut read_started = Instant::now();
        let mut deliver = |df: DataFrame, counts: &mut CountsByOutput, timings: &mut Timings| {
            let t = Instant::now();
            let df = match (&d.anonymisation, &release) {
                (Some(a), Release::Generalised(s)) => s.apply(a, df, suppressed)?,
                (_, Release::Codes(sv, codes)) => codes.apply(sv, df, suppressed)?,
                _ => df,
            };
            count_values(counts, &df);
            timings.transform += t.elapsed().as_millis();
            // A closed channel means the writer failed: stop reading; its error is reported below.
            to_writer
                .send(df)
                .map_err(|_| Error::Internal("the Parquet writer stopped".into()))
        };
        let transformed = if !matches!(release, Release::AsTransformed) {
            // Pass 2 reads the spill: its bar counts the spilled rows, not the source's bytes.
            let progress = progress::Stage::of_rows(
                &format!("{} (write)", d.name),
                delivery::spill_rows(spill)?,
            );
            delivery::read_spill_batches(spill, batch_rows, |df| {
                timings.read += read_started.elapsed().as_millis();
                progress.advance_rows(df.height() as u64);
                deliver(df, &mut state.counts, timings)?;
                read_started = Instant::now();
                Ok(())
            })
        } else {
            let progress = progress::Stage::new(&d.name, &d.files);
            source::read_batches(
                d.input(),
                &d.source_columns(),
                batch_rows,
                &source_role(d),
                |batch| {
                    timings.read += read_started.elapsed().as_millis();
                    progress.advance(batch.df.height() as u64, batch.origin.source_bytes);
                    let t = Instant::now();
                    let df = transform(plan, d, batch, state)?.df;
                    timings.transform += t.elapsed().as_millis();
                    deliver(df, &mut state.counts, timings)?;
                    read_started = Instant::now();
                    Ok(())
                },
            )
            .map(|inputs| state.inputs = inputs)
        };
        drop(to_writer);
        let written = writing
            .join()
            .map_err(|_| Error::Internal("the Parquet writer panicked".into()))?;
        // The writer's own error is the cause when both failed.
        let (written, write_ms) = written?;
        transformed?;
        timings.write += write_ms;
        remove_spill(spill)?;
        Ok(written)
    })
}

/// Whether a dataset is written from its classes ([`write_classes`]): anonymised, delivering its
/// quasi-identifiers and nothing else, its rows counted ([`AnonymisationPlan::delivered_from_table`]).
fn delivered_from_classes(d: &DatasetPlan) -> bool {
    d.set_valued.is_none()
        && d.anonymisation
            .as_ref()
            .is_some_and(AnonymisationPlan::delivered_from_table)
        && d.steps
            .iter()
            .all(|s| matches!(s, Step::QuasiIdentifier { .. }))
}

/// Pass 2 of a dataset [`delivered_from_classes`]: its rows are its classes at the chosen levels,
/// each repeated as many times as it has rows, so nothing is read again.
fn write_classes(
    plan: &Plan,
    d: &DatasetPlan,
    a: &AnonymisationPlan,
    solution: &anonymise::Solution,
    state: &mut DatasetState,
    out: DatasetWriter,
    timings: &mut Timings,
) -> Result<WrittenFile> {
    let t = Instant::now();
    let (distinct, rows) = solution.delivered_classes(a)?;
    // In the delivery's column order.
    let distinct = distinct.select(output_schema(d).iter_names().cloned())?;
    for column in distinct.columns() {
        let c = state.counts.entry(column.name().to_string()).or_default();
        c.transformed += column
            .str()?
            .iter()
            .zip(&rows)
            .filter_map(|(value, &n)| value.map(|_| n))
            .sum::<u64>();
    }
    timings.transform += t.elapsed().as_millis();
    let t = Instant::now();
    let written = delivery::order::write_repeated(
        out,
        &order_column(d),
        plan.permit.spec.output.batch_rows,
        distinct,
        &rows,
    )?;
    timings.write += t.elapsed().as_millis();
    Ok(written)
}

/// A delivery's classes counted from its file, and the milliseconds the count took.
type Counted = (TextClassCounter, u128);

/// Reads the dataset's source batch by batch, shows progress under `label`, and hands each batch to
/// `each` transformed.
fn read_transformed(
    plan: &Plan,
    d: &DatasetPlan,
    state: &mut DatasetState,
    label: &str,
    mut each: impl FnMut(Transformed) -> Result<()>,
) -> Result<()> {
    let progress = progress::Stage::new(label, &d.files);
    state.inputs = source::read_batches(
        d.input(),
        &d.source_columns(),
        plan.permit.spec.output.batch_rows,
        &source_role(d),
        |batch| {
            progress.advance(batch.df.height() as u64, batch.origin.source_bytes);
            each(transform(plan, d, batch, state)?)
        },
    )?;
    Ok(())
}

/// What every written dataset must pass, however it was written: no silent empty delivery, and
/// no shifted column whose one date is a sentinel.
fn check_written(
    d: &DatasetPlan,
    report: &DatasetReport,
    counts: &CountsByOutput,
    delivered: u64,
) -> Result<()> {
    no_silent_empty(d, report, delivered)?;
    for step in &d.steps {
        if let Step::Shift { date, .. } = step
            && !d.read[*date].unusual_dates
            && let Some(c) = counts.get(step.output())
        {
            steps::check_repeated_date(d, step.output(), c)?;
        }
    }
    Ok(())
}

/// A dataset that delivers nothing, or whose identifier rules reject more of its cohort than the
/// permit allows, fails the run: a wrong rule or cohort must not pass as a delivery.
fn no_silent_empty(d: &DatasetPlan, r: &DatasetReport, delivered: u64) -> Result<()> {
    let cohort = r
        .rows_read
        .saturating_sub(r.rows_outside_cohort + r.rows_opted_out + r.rows_of_removed_persons);
    let counts = format!(
        "read {}, outside the cohort {}, opted out {}, rejected identifiers {}, delivered {delivered}",
        r.rows_read, r.rows_outside_cohort, r.rows_opted_out, r.rows_rejected
    );
    let file = d.source_name();
    let rejected_share = r.rows_rejected as f64 / cohort.max(1) as f64;
    let too_many = if d.max_rejected_share >= 1.0 {
        cohort > 0 && r.rows_rejected == cohort
    } else {
        rejected_share > d.max_rejected_share
    };
    if too_many {
        return Err(Error::input(
            file,
            format!("dataset `{}`", d.name),
            format!(
                "{:.1} % of the cohort's rows have an invalid or missing identifier, more than the \
                 {:.1} % allowed (max_rejected_share): is the identifier rule right for this column? \
                 ({counts})",
                rejected_share * 100.0,
                d.max_rejected_share * 100.0
            ),
        ));
    }
    if delivered == 0 && d.allow_empty.is_none() {
        return Err(Error::input(
            file,
            format!("dataset `{}`", d.name),
            format!(
                "delivers no row ({counts}): check the cohort and the identifier rules, or set \
                 allow_empty = \"<reason>\" if an empty delivery is expected"
            ),
        ));
    }
    Ok(())
}

/// The column the delivered rows are ordered by: the person's, as delivered, or else the first.
fn order_column(d: &DatasetPlan) -> String {
    d.person_step().unwrap_or(&d.steps[0]).output().to_string()
}

/// The bytes of a dataset's source files (0 for a linked person table, which has none).
fn source_bytes(d: &DatasetPlan) -> u64 {
    d.files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// What a dataset's source files are, in the manifest's record of inputs.
pub(crate) fn source_role(d: &DatasetPlan) -> String {
    format!("source of {}", d.name)
}

/// Writes the batches received to a delivery file, then closes it; returns the file and the
/// milliseconds spent writing (not waiting).
fn write_all(
    mut writer: OrderedWriter,
    batches: std::sync::mpsc::Receiver<DataFrame>,
) -> Result<(WrittenFile, u128)> {
    let mut busy = 0;
    for df in batches {
        let t = Instant::now();
        writer.write(df)?;
        busy += t.elapsed().as_millis();
    }
    let t = Instant::now();
    let written = writer.finish()?;
    Ok((written, busy + t.elapsed().as_millis()))
}

/// `f`'s result and the milliseconds it took.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, u128)> {
    let t = Instant::now();
    f().map(|v| (v, t.elapsed().as_millis()))
}

/// Deletes a spill once pass 2 has read it (none is left when no batch was spilled).
fn remove_spill(spill: &Path) -> Result<()> {
    if spill.exists() {
        std::fs::remove_file(spill).map_err(|e| Error::output(spill, e))?;
    }
    Ok(())
}

/// Writes the batches received to a spill file (created with the first batch: no batch, no file).
fn write_spill(path: &Path, batches: std::sync::mpsc::Receiver<DataFrame>) -> Result<()> {
    let mut writer: Option<SpillWriter> = None;
    for df in batches {
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(SpillWriter::create(path.to_path_buf(), df.schema())?),
        };
        w.write(df)?;
    }
    writer.map_or(Ok(()), |w| w.finish().map(|_| ()))
}

/// Pass 1 of an anonymised dataset: transforms every batch and keeps only the quasi-identifiers'
/// distinct combinations. Nothing is written.
pub fn profile(plan: &Plan, d: &DatasetPlan, a: &AnonymisationPlan) -> Result<Table> {
    profile_into(plan, d, a, &mut DatasetState::new(d, &[]), None)
}

/// Pass 1 with `state` counting rows for the report and, with `spill`, every transformed batch
/// written to that file (Arrow IPC, on a thread of its own) so that pass 2 reads it
/// instead of parsing and transforming the source again.
fn profile_into(
    plan: &Plan,
    d: &DatasetPlan,
    a: &AnonymisationPlan,
    state: &mut DatasetState,
    spill: Option<&Path>,
) -> Result<Table> {
    let mut profile = anonymise::Profile::new(a);
    let (to_spill, batches) = std::sync::mpsc::sync_channel::<DataFrame>(1);
    std::thread::scope(|scope| {
        let spilling = spill.map(|path| scope.spawn(move || write_spill(path, batches)));
        let label = format!("{} (privacy profile)", d.name);
        let read = read_transformed(plan, d, state, &label, |t| {
            profile.add(&t.df, &t.origin.file, |r| t.origin.place(t.rows[r]))?;
            if spilling.is_some() {
                // A closed channel means the spill writer failed; its error is reported below.
                to_spill
                    .send(t.df)
                    .map_err(|_| Error::Internal("the spill writer stopped".into()))?;
            }
            Ok(())
        });
        drop(to_spill);
        if let Some(spilling) = spilling {
            spilling
                .join()
                .map_err(|_| Error::Internal("the spill writer panicked".into()))??;
        }
        read
    })?;
    profile.finish()
}

/// The datasets' privacy assessment without writing anything (`assess --permit`): for each anonymised
/// dataset, the optimal transformation (or the pinned one, feasible or not) with its metrics and
/// risks; `None` for a dataset where no transformation is feasible.
pub fn assess(plan: &Plan) -> Result<Vec<(String, Option<anonymise::AnonymisationReport>)>> {
    plan.datasets
        .iter()
        .filter_map(|d| d.anonymisation.as_ref().map(|a| (d, a)))
        .map(|(d, a)| {
            let t = Instant::now();
            let table = profile(plan, d, a)?;
            let profile_ms = t.elapsed().as_millis();
            let report = anonymise::assess(a, table, &Default::default()).map(|s| s.report);
            Ok((
                d.name.clone(),
                report.map(|r| anonymise::AnonymisationReport { profile_ms, ..r }),
            ))
        })
        .collect()
}

/// Pass 1 (spilling the transformed rows to `spill` for pass 2, if any) and the lattice search.
fn choose_generalisation(
    plan: &Plan,
    d: &DatasetPlan,
    a: &AnonymisationPlan,
    state: &mut DatasetState,
    spill: Option<&Path>,
    timings: &mut Timings,
) -> Result<anonymise::Solution> {
    let t = Instant::now();
    let table = profile_into(plan, d, a, state, spill)?;
    let profile_ms = t.elapsed().as_millis();
    timings.transform += profile_ms;
    let watch = crate::privacy::lattice::Watch::default();
    let shown = progress::Search::new(&format!("{} (privacy search)", d.name));
    let mut solution =
        shown.while_running(&watch, || anonymise::solve(a, table, &d.name, &watch))?;
    solution.report.profile_ms = profile_ms;
    tracing::info!(
        dataset = %d.name,
        levels = ?solution.levels(),
        rows_suppressed = solution.optimum.suppressed_rows,
        evaluated = solution.report.transformations_evaluated,
        search_ms = solution.report.search_ms as u64,
        "generalisation chosen"
    );
    Ok(solution)
}

fn privacy_record(a: &AnonymisationPlan, s: &anonymise::Solution) -> delivery::PrivacyRecord {
    use crate::privacy::table::{LDiversity, TCloseness};
    let m = &a.models;
    delivery::PrivacyRecord {
        models: a.describe_models(),
        k: m.k,
        l: m.l_diversity.map(LDiversity::l),
        l_diversity: m.l_diversity.map(|l| l.kind().into()),
        c: match m.l_diversity {
            Some(LDiversity::Recursive { c, .. }) => Some(c),
            _ => None,
        },
        t: m.t_closeness.map(TCloseness::t),
        t_closeness: m.t_closeness.map(|t| t.kind().into()),
        k_map: m.k_map.map(|map| map.k).or(m.population_k),
        delta_presence: m.delta_presence.map(|d| (d.min, d.max)),
        research_subset: s
            .table
            .population_rows()
            .map(|population_rows| delivery::SubsetRecord {
                subset_rows: s.table.rows,
                population_rows,
            }),
        average_risk: m.average_risk.map(|a| a.average),
        sample_uniqueness: m.sample_uniqueness,
        population_uniqueness: m.population_uniqueness.map(|u| {
            delivery::PopulationUniquenessRecord {
                threshold: u.threshold,
                population: u.population,
                estimator: u.estimator.name().into(),
            }
        }),
        sensitive: a.sensitive.as_ref().map(|s| s.output.clone()),
        persons_counted_by: a.person_output.clone(),
        suppression_limit: m.suppression_limit,
        rows_suppressed: s.optimum.suppressed_rows,
        suppressed_rows_are: s.report.suppressed_rows_are.clone(),
        metric: s.report.metric.clone(),
        coverage: a.coverage.clone(),
        levels: s
            .report
            .quasi_identifiers
            .iter()
            .map(|q| delivery::LevelRecord {
                column: q.column.clone(),
                level: q.level,
                meaning: q.meaning.clone(),
            })
            .collect(),
    }
}

/// Counts the non-null values of each delivered column.
fn count_values(counts: &mut CountsByOutput, df: &DataFrame) {
    for col in df.columns() {
        let c = counts.entry(col.name().to_string()).or_default();
        c.transformed += (col.len() - col.null_count()) as u64;
    }
}

/// A transformed batch, with where its rows came from.
struct Transformed {
    df: DataFrame,
    origin: Origin,
    /// For each row of `df`, its row in the source batch.
    rows: Vec<usize>,
}

/// One batch through the dataset's stages: typed columns, the cohort and the opted-out or removed
/// persons left out, then each step's operator ([`steps::apply`]) gives its delivered column; rows
/// an identifier policy rejects leave last.
fn transform(
    plan: &Plan,
    d: &DatasetPlan,
    batch: Batch,
    state: &mut DatasetState,
) -> Result<Transformed> {
    let rows = batch.df.height();
    state.report.rows_read += rows as u64;
    tracing::debug!(dataset = %d.name, file = %batch.origin.file.display(), first_record = batch.origin.first_record, rows, "batch");
    let cols = typed_batch(plan, d, &batch)?;
    let keep = minimise(plan, d, &cols, state)?;
    let cols = filter_all(cols, &keep)?;
    count_birth_echoes(plan, d, &cols, state)?;
    // Keep the original rows' places for error messages after filtering.
    let kept_rows: Vec<usize> = keep
        .iter()
        .enumerate()
        .filter_map(|(i, &k)| k.then_some(i))
        .collect();
    let batch_in = steps::Input {
        plan,
        dataset: d,
        columns: &cols,
        origin: &batch.origin,
        rows: &kept_rows,
    };
    let mut reject = vec![false; kept_rows.len()];
    let mut out: Vec<Column> = Vec::with_capacity(d.steps.len());
    for (step, pseudo) in d.steps.iter().zip(state.pseudonyms.iter_mut()) {
        let counts = state.counts.entry(step.output().to_string()).or_default();
        let series = steps::apply(step, &batch_in, counts, pseudo, &mut reject)?;
        out.push(series.into_column());
    }
    // The cohort's conditions on delivered values; a row outside it is not counted as rejected.
    let delivered: Vec<Series> = out
        .iter()
        .map(|c| c.as_materialized_series().clone())
        .collect();
    let inside = filter_mask(&d.delivered_cohort, &delivered)?;
    state.report.rows_outside_cohort += inside.iter().filter(|&&i| !i).count() as u64;
    let keep: Vec<bool> = reject.iter().zip(&inside).map(|(&r, &i)| i && !r).collect();
    let rejected = reject
        .iter()
        .zip(&inside)
        .filter(|(r, i)| **r && **i)
        .count();
    state.report.rows_rejected += rejected as u64;
    let mut df = DataFrame::new(kept_rows.len(), out)?;
    let mut rows = kept_rows;
    if keep.contains(&false) {
        df = df.filter(&BooleanChunked::from_slice("keep".into(), &keep))?;
        rows = rows
            .into_iter()
            .zip(&keep)
            .filter_map(|(row, &k)| k.then_some(row))
            .collect();
    }
    Ok(Transformed {
        df,
        origin: batch.origin,
        rows,
    })
}

/// Notes the persons whose delivered date (before any shift) is their birth date, per comparison.
fn count_birth_echoes(
    plan: &Plan,
    d: &DatasetPlan,
    cols: &[Series],
    state: &mut DatasetState,
) -> Result<()> {
    let Some((person, rule)) = &d.person else {
        return Ok(());
    };
    if d.birth_echoes.is_empty() {
        return Ok(());
    }
    let ids = strings(&cols[*person])?;
    let mut normal = String::new();
    for (echo, persons) in d.birth_echoes.iter().zip(&mut state.echoes) {
        let births = cohort::birth_dates(plan, &echo.birth)?;
        for (id, day) in ids.iter().zip(days(&cols[echo.column])?) {
            let Some(day) = day else { continue };
            if rule.check_into(*id, &mut normal) == Checked::Valid
                && births.get(normal.as_str()) == Some(&day)
                && !persons.contains(normal.as_str())
            {
                persons.insert(normal.clone());
            }
        }
    }
    Ok(())
}

/// The rows a batch keeps: those of the cohort, without the persons of the opt-out list (and, in
/// `link`, those a linked person table suppressed). Counted in the dataset's report.
fn minimise(
    plan: &Plan,
    d: &DatasetPlan,
    cols: &[Series],
    state: &mut DatasetState,
) -> Result<Vec<bool>> {
    let mut keep = filter_mask(&d.cohort, cols)?;
    for f in &d.cohort {
        if let (Filter::Persons(p), Some((person, rule))) = (f, &d.person) {
            let persons = cohort::persons_meeting(plan, p)?;
            let ids = strings(&cols[*person])?;
            // A row whose person is not a valid identifier cannot be shown to be in the cohort.
            let outside: Vec<bool> = ids
                .par_iter()
                .map_init(String::new, |normal, id| {
                    rule.check_into(*id, normal) != Checked::Valid
                        || !persons.contains(normal.as_str())
                })
                .collect();
            leave_out_rows(&mut keep, outside);
        }
    }
    let in_cohort = keep.iter().filter(|&&k| k).count();
    state.report.rows_outside_cohort += (keep.len() - in_cohort) as u64;
    if let (Some(_), Some((person, _))) = (&d.person_via, &d.person) {
        // A row whose key finds no person cannot be checked against the opt-out list, shifted or
        // counted: it is rejected, whether or not the person is delivered.
        let unknown: Vec<bool> = cols[*person]
            .is_null()
            .iter()
            .map(|n| n == Some(true))
            .collect();
        state.report.rows_rejected += leave_out_rows(&mut keep, unknown);
    }
    if let Some((person, rule)) = &d.person
        && (plan.opt_out.is_some() || !state.removed.is_empty())
    {
        let ids = strings(&cols[*person])?;
        if let Some(opt_out) = &plan.opt_out {
            state.report.rows_opted_out +=
                leave_out_persons(&mut keep, &ids, rule, |id| opt_out.contains(id));
        }
        for removed in state.removed {
            state.report.rows_of_removed_persons += removed.leave_out(plan, &mut keep, &ids, rule);
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, sha256: &str) -> InputRecord {
        InputRecord {
            role: "source of x".into(),
            path: path.into(),
            bytes: 1,
            modified: String::new(),
            sha256: sha256.into(),
        }
    }

    /// A file read for another dataset's needs is recorded once; one whose bytes differ from its
    /// other read stops the run.
    #[test]
    fn files_read_twice_must_match_and_are_recorded_once() {
        let delivered = vec![record("a.csv", "11")];
        let scanned = vec![
            record("a.csv", "11"),
            record("b.csv", "22"),
            record("b.csv", "22"),
        ];
        let merged = with_scanned(delivered.clone(), scanned).unwrap();
        let paths: Vec<&str> = merged.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["a.csv", "b.csv"]);
        let e = with_scanned(delivered, vec![record("a.csv", "99")]).unwrap_err();
        assert!(e.to_string().contains("changed between two reads"), "{e}");
    }
}
