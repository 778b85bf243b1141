//! Access-body linkage (`ehds-prep link`): the holders' deliveries of one permit are verified, linked on
//! their shared linkage pseudonym, and delivered again under the linking permit, with a linkage report.
//!
//! A linking permit is an ordinary permit plus a `[linkage]` section. Its datasets read the holders'
//! verified Parquet files (or the linked person table built here) and go through the engine: the
//! person column is re-pseudonymised into the permit's own domain, columns are minimised and
//! generalised, and privacy models are checked and re-checked from the written files. This module owns
//! what comes before and after: verification, the person index (memory grows with persons, not rows),
//! the person table, and the report of overlaps, rows per person and attribute consistency.
//! `verify` checks the deliveries and the permit, `index` links persons, `report` counts.

mod fuzzy;
mod index;
mod numbering;
pub mod report;
mod verify;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::delivery::{LINKAGE_REPORT, LINKAGE_SUMMARY, Manifest, Staging};
use crate::engine;
use crate::error::{Error, Result};
use crate::kernels::pseudonymise::{Encoding, PseudonymFormat};
use crate::permit::{Permit, SourceFormat};
use crate::plan::{Plan, Protection, Step};
use crate::report::RunReport;

use index::{Index, resolve_attributes};
pub use report::LinkageReport;
use verify::{check_datasets, verify_sources};

const REPORT_FORMAT: &str = "ehds-prep linkage report v1";

/// What a link run produced: the engine's run report and the linkage report, exact (for the access
/// body) and masked (as delivered).
pub struct LinkOutcome {
    pub run: RunReport,
    pub exact: LinkageReport,
    pub masked: LinkageReport,
    pub index_ms: u128,
}

/// One holder's verified delivery and the tables of it that are linked.
struct Source {
    name: String,
    dir: PathBuf,
    manifest: Manifest,
    manifest_sha256: String,
    person: String,
    tables: Vec<LinkedTable>,
}

#[cfg(test)]
impl Source {
    /// A holder's delivery in `dir` whose manifest lists `datasets` (as JSON), for tests.
    fn for_test(
        dir: &Path,
        person: &str,
        datasets: serde_json::Value,
        tables: Vec<LinkedTable>,
    ) -> Source {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format": crate::delivery::MANIFEST_FORMAT,
            "engine_version": "test",
            "permit": {"id": "P", "purpose": "", "holder": "h", "recipient": "", "sha256": ""},
            "pseudonyms": {"version": "v1", "encoding": "hex", "bits": 128},
            "domains": [],
            "datasets": datasets,
        }))
        .unwrap();
        Source {
            name: "holder".into(),
            dir: dir.into(),
            manifest,
            manifest_sha256: String::new(),
            person: person.into(),
            tables,
        }
    }
}

struct LinkedTable {
    dataset: String,
    path: PathBuf,
    columns: Vec<String>,
}

/// How the deliveries write pseudonyms (all must agree).
#[derive(Clone, PartialEq)]
struct Scheme {
    version: String,
    encoding: String,
    bits: u16,
    /// How the holders normalised identifiers (their pseudonyms link only if it is the same).
    canonical_form: String,
    domain_context: String,
    key_fingerprint: String,
}

impl Scheme {
    /// The default scheme (128-bit hex pseudonyms), for tests.
    #[cfg(test)]
    fn hex128() -> Scheme {
        Scheme {
            version: "v1".into(),
            encoding: "hex".into(),
            bits: 128,
            canonical_form: String::new(),
            domain_context: String::new(),
            key_fingerprint: String::new(),
        }
    }

    /// The deliveries' pseudonym format (an encoding other than `hex` is read as base64url).
    fn format(&self) -> PseudonymFormat {
        PseudonymFormat {
            encoding: match self.encoding.as_str() {
                "hex" => Encoding::Hex,
                _ => Encoding::Base64url,
            },
            bits: self.bits,
        }
    }
}

/// The linkage pseudonyms of the persons the written person table does not hold (suppressed by its
/// privacy models), found by re-pseudonymising every linked person as the table's column did and
/// comparing digests (decoded once from the written column), never text.
fn removed_persons(
    plan: &Plan,
    d: &crate::plan::DatasetPlan,
    written: &Path,
    index: &Index,
    scheme: &Scheme,
) -> Result<foldhash::HashSet<String>> {
    let (person, _) = d
        .person
        .as_ref()
        .expect("checked: the person table names its person");
    let step = d
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Identifier(x) if x.inputs == [*person] => Some(x),
            _ => None,
        })
        .expect("checked: the person column is pseudonymised");
    let Protection::Pseudonym { domain } = &step.protection else {
        unreachable!("checked: pseudonymised, not tokenised")
    };
    // One row per linked person was written to the table, and a run only ever removes rows: as
    // many rows delivered means every person is there.
    if crate::delivery::read_footer(written)?.rows == index.persons() as u64 {
        return Ok(Default::default());
    }
    let pseudonymiser = &plan.domains[domain].pseudonymiser;
    let format = pseudonymiser.format();
    let mut kept: foldhash::HashSet<[u8; 32]> = Default::default();
    crate::source::read_parquet_text(
        written,
        std::slice::from_ref(&step.output),
        plan.permit.spec.output.batch_rows,
        |df| {
            let column = df.column(&step.output)?.str()?.clone();
            for text in column.iter().flatten() {
                let mut digest = [0u8; 32];
                format.decode_into(text, &mut digest).ok_or_else(|| {
                    Error::verify(
                        written,
                        format!("column `{}` holds a value that is not one of its pseudonyms (value not shown)", step.output),
                    )
                })?;
                kept.insert(digest);
            }
            Ok(())
        },
    )?;
    let removed = (0..index.persons())
        .into_par_iter()
        .filter_map(|p| {
            let text = index.pseudonym_text(p, scheme);
            (!kept.contains(&pseudonymiser.digest(text.as_bytes()))).then_some(text)
        })
        .collect::<Vec<String>>();
    Ok(removed.into_iter().collect())
}

/// Whether two paths name one file (both exist).
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Runs a linking permit: verify, link, deliver, report. On any error nothing is left at the output.
/// The run is audited as `link` in the permit's audit log (see [`crate::report::audit::Audit`]).
pub fn link(permit: Permit) -> Result<LinkOutcome> {
    // The access body's keys, by domain (a key that cannot be read is the run's own error).
    let fingerprints: Vec<(String, String)> = permit
        .spec
        .domains
        .iter()
        .filter_map(|(name, d)| Some((name.clone(), permit.load_key(&d.key).ok()?.fingerprint())))
        .collect();
    let audit = crate::report::audit::Audit::start("link", &permit, fingerprints);
    // The exact report goes beside its destination first and into place only with the delivery.
    let exact_target = permit
        .spec
        .linkage
        .as_ref()
        .and_then(|l| l.exact_report.as_ref())
        .map(|p| permit.resolve(p));
    let exact_staged = exact_target.as_ref().map(|p| {
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(".staging");
        p.with_file_name(name)
    });
    let written = write_linked(permit, exact_staged.as_deref());
    let outcome = audit.commit(written, |o| &o.run);
    match (&outcome, &exact_staged, &exact_target) {
        (Ok(_), Some(from), Some(to)) => {
            if let Err(e) = std::fs::rename(from, to) {
                tracing::warn!(
                    "the delivery is committed, but the exact linkage report could not be moved to {}: {e}; it is in {}",
                    to.display(),
                    from.display()
                );
            }
        }
        (Err(_), Some(from), _) => {
            let _ = std::fs::remove_file(from);
        }
        _ => {}
    }
    outcome
}

/// Checks that every holder table the engine read is the file `verify` checked: the SHA-256 of
/// the bytes read equals the manifest's, so a table replaced or altered between the verification
/// and the reading is never delivered.
fn same_as_verified(read: &[crate::source::inputs::InputRecord], sources: &[Source]) -> Result<()> {
    use crate::source::inputs::real_path;
    for input in read {
        let path = real_path(Path::new(&input.path));
        for s in sources {
            let Ok(file) = path.strip_prefix(real_path(&s.dir)) else {
                continue;
            };
            let verified = s
                .manifest
                .datasets
                .iter()
                .find(|d| Path::new(&d.file) == file);
            if verified.is_some_and(|d| d.sha256 != input.sha256) {
                return Err(Error::verify(
                    &input.path,
                    "changed between its verification and its reading: nothing is delivered",
                ));
            }
        }
    }
    Ok(())
}

/// Verifies and links the deliveries and writes the linked delivery into its staging folder (and
/// the exact report to `exact_staged`), without committing.
fn write_linked(permit: Permit, exact_staged: Option<&Path>) -> Result<(Staging, LinkOutcome)> {
    let Some(l) = permit.spec.linkage.clone() else {
        return Err(Error::Permit {
            file: permit.path.clone(),
            at: "linkage".into(),
            message: "not a linking permit: `link` needs a [linkage] section naming the deliveries"
                .into(),
        });
    };
    crate::plan::check_paths(&permit)?;
    let (mut sources, scheme) = verify_sources(&permit, &l)?;
    check_datasets(&permit, &sources)?;
    fuzzy::check_clk_columns(&l, &sources)?;
    let attributes = resolve_attributes(&permit, &l, &sources)?;
    let staging = Staging::create(
        &permit.output_dir(),
        &permit.spec.permit.id,
        &permit.spec.permit.holder,
    )?;
    let work = staging.path(crate::delivery::LINKAGE_WORK_DIR);
    std::fs::create_dir(&work).map_err(|e| Error::output(&work, e))?;
    // Absolute: the plan resolves source paths against the permit's folder.
    let work = work.canonicalize().map_err(|e| Error::output(&work, e))?;
    let person_table = work.join("persons.parquet");
    let batch_rows = permit.spec.output.batch_rows;
    let t = Instant::now();
    // The CLK sources' tables, rewritten with linkage pseudonyms, are read in place of the
    // holders' (whose bytes were checked against their manifests while rewritten).
    let (clk_matching, rewritten) =
        match fuzzy::link_clk_sources(&l, &mut sources, &scheme, &work, batch_rows)? {
            Some((m, r)) => (Some(m), r),
            None => (None, Vec::new()),
        };
    let mut replaced: Vec<(usize, usize, PathBuf)> = Vec::new();
    for (di, d) in permit.spec.datasets.iter().enumerate() {
        for (fi, f) in d.source.files.iter().enumerate() {
            let holder = permit.resolve(f);
            if let Some((_, to)) = rewritten.iter().find(|(from, _)| same_file(from, &holder)) {
                replaced.push((di, fi, to.clone()));
            }
        }
    }
    let mut permit = permit;
    for (di, fi, to) in replaced {
        permit.spec.datasets[di].source.files[fi] = to;
    }
    for d in &mut permit.spec.datasets {
        if d.source.format == SourceFormat::Linked {
            d.source.files = vec![person_table.clone()];
        }
    }
    let wants_person_table = !permit
        .spec
        .datasets
        .iter()
        .all(|d| d.source.format != SourceFormat::Linked);
    // Keys are loaded before any data is read.
    let plan = Plan::compile(permit)?;
    let index = Index::build(&sources, &scheme, attributes, &work, batch_rows)?;
    if wants_person_table {
        index.write_person_table(&person_table, &sources, &scheme, batch_rows)?;
    }
    let index_ms = t.elapsed().as_millis();
    tracing::info!(
        persons = index.persons(),
        sources = sources.len(),
        index_ms = index_ms as u64,
        "deliveries linked"
    );
    let mut writer = engine::DeliveryWriter::new(&plan, &staging);
    // The person table first: persons its privacy models suppress then leave every other table.
    let (person_tables, tables): (Vec<_>, Vec<_>) = plan
        .datasets
        .iter()
        .partition(|d| d.source.format == SourceFormat::Linked);
    let mut removed = foldhash::HashSet::default();
    for d in person_tables {
        writer.dataset(d, &[])?;
        let written = writer.written(&d.name).expect("just written");
        removed = removed_persons(&plan, d, &written, &index, &scheme)?;
    }
    let removed = engine::RemovedPersons::linked("the person table", removed);
    for d in tables {
        writer.dataset(d, removed.as_ref().as_slice())?;
    }
    same_as_verified(writer.inputs(), &sources)?;
    let permit = &plan.permit;
    let clk = clk_matching.as_ref();
    let exact = report::build(permit, &l, &sources, &scheme, &index, clk, None);
    let masked = report::build(
        permit,
        &l,
        &sources,
        &scheme,
        &index,
        clk,
        Some(l.small_counts),
    );
    let run = writer.finish(Some(&masked))?;
    std::fs::remove_dir_all(&work).map_err(|e| Error::output(&work, e))?;
    for (file, text) in [
        (
            LINKAGE_REPORT,
            serde_json::to_string_pretty(&masked).expect("serialisable") + "\n",
        ),
        (LINKAGE_SUMMARY, masked.summary()),
    ] {
        let path = staging.path(file);
        std::fs::write(&path, text).map_err(|e| Error::output(&path, e))?;
    }
    if let Some(path) = exact_staged {
        crate::delivery::write_durably(
            path,
            (serde_json::to_string_pretty(&exact).expect("serialisable") + "\n").as_bytes(),
        )
        .map_err(|e| Error::output(path, e))?;
    }
    let outcome = LinkOutcome {
        run,
        exact,
        masked,
        index_ms,
    };
    Ok((staging, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table read with other bytes than the ones its manifest (verified before) lists is refused.
    #[test]
    fn a_table_changed_after_its_verification_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let source = Source::for_test(
            tmp.path(),
            "person_pseudonym",
            serde_json::json!([{"name": "t", "file": "t.parquet", "sha256": "aa", "bytes": 1, "rows": 1, "schema": []}]),
            Vec::new(),
        );
        let read = |sha256: &str| crate::source::inputs::InputRecord {
            role: "source of t".into(),
            path: tmp.path().join("t.parquet").display().to_string(),
            bytes: 1,
            modified: String::new(),
            sha256: sha256.into(),
        };
        let sources = [source];
        assert!(same_as_verified(&[read("aa")], &sources).is_ok());
        let e = same_as_verified(&[read("bb")], &sources).unwrap_err();
        assert!(matches!(e, Error::Verify { .. }), "{e}");
        assert!(
            e.to_string().contains("changed between its verification"),
            "{e}"
        );
    }
}
