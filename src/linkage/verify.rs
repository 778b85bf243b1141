//! Verification before linking: the deliveries (checksums, permit, linkage key, pseudonym scheme)
//! and the linking permit's datasets (verified tables only, no holder pseudonym delivered as is).

use std::path::PathBuf;

use rayon::prelude::*;

use crate::delivery;
use crate::error::{Error, Result};
use crate::permit::{
    Action, IdentifierSpec, LINKED_PERSON, LinkOn, LinkageSpec, Permit, SourceFormat,
};

use super::{LinkedTable, Scheme, Source};

/// Verifies every delivery the permit names and that they can be linked: checksums and footers, the
/// same permit, the same linkage key and context, the same pseudonym version and format.
pub(super) fn verify_sources(permit: &Permit, l: &LinkageSpec) -> Result<(Vec<Source>, Scheme)> {
    let mut sources = Vec::new();
    let mut reference: Option<(String, Scheme)> = None;
    let mut shifts: Option<(String, Option<delivery::DateShiftRecord>)> = None;
    // Every delivery's files are hashed at once; their results are then taken in the permit's order.
    let verified: Vec<Result<delivery::Manifest>> = l
        .sources
        .par_iter()
        .map(|spec| delivery::verify(&permit.resolve(&spec.delivery)))
        .collect();
    for (spec, verified) in l.sources.iter().zip(verified) {
        let dir = permit.resolve(&spec.delivery);
        let manifest = verified.map_err(|e| match e {
            Error::Verify { path, message } => Error::Verify {
                path,
                message: format!("source `{}`: {message}; nothing was written", spec.name),
            },
            other => other,
        })?;
        let differs = |what: String| {
            Error::verify(
                &dir,
                format!("source `{}`: {what}; nothing was written", spec.name),
            )
        };
        if manifest.permit.id != permit.spec.permit.id {
            return Err(differs(format!(
                "was delivered for permit {}, not for {}",
                manifest.permit.id, permit.spec.permit.id
            )));
        }
        // A source linked on CLKs carries its own pseudonyms: no linkage domain to agree on.
        let scheme = if spec.link_on == LinkOn::Pseudonym {
            let Some(domain) = manifest.domains.iter().find(|d| d.name == l.domain) else {
                let names: Vec<&str> = manifest.domains.iter().map(|d| d.name.as_str()).collect();
                return Err(differs(format!(
                    "has no pseudonyms in the linkage domain `{}` (its domains: {})",
                    l.domain,
                    names.join(", ")
                )));
            };
            let scheme = Scheme {
                version: manifest.pseudonyms.version.clone(),
                encoding: manifest.pseudonyms.encoding.clone(),
                bits: manifest.pseudonyms.bits,
                canonical_form: manifest.pseudonyms.canonical_form.clone(),
                domain_context: domain.context.clone(),
                key_fingerprint: domain.key_fingerprint.clone(),
            };
            if let Some(want) = &l.key_fingerprint
                && want != &scheme.key_fingerprint
            {
                return Err(differs(format!(
                    "its linkage key fingerprint is {}, not the expected {want}: the holder used another key",
                    scheme.key_fingerprint
                )));
            }
            if let Some(want) = &l.pseudonym_version
                && want != &scheme.version
            {
                return Err(differs(format!(
                    "its pseudonym version is `{}`, not the expected `{want}`",
                    scheme.version
                )));
            }
            Some(scheme)
        } else {
            None
        };
        // A delivery with no date at all links with any; one with dates, shifted or not, only
        // with deliveries whose dates moved alike.
        let delivers_dates = manifest
            .datasets
            .iter()
            .flat_map(|d| &d.schema)
            .any(|f| f.dtype == "date" || f.dtype.starts_with("datetime"));
        match &shifts {
            _ if !delivers_dates && manifest.date_shift.is_none() => {}
            None => shifts = Some((spec.name.clone(), manifest.date_shift.clone())),
            Some((first, theirs)) if *theirs != manifest.date_shift => {
                return Err(differs(format!(
                    "its date shifts ({}) differ from source `{first}`'s ({}): intervals between \
                     the holders' dates would be wrong; deliver every source with one date-shift \
                     domain, key and range",
                    describe_shift(manifest.date_shift.as_ref()),
                    describe_shift(theirs.as_ref())
                )));
            }
            Some(_) => {}
        }
        match (&reference, scheme) {
            (_, None) => {}
            (None, Some(scheme)) => reference = Some((spec.name.clone(), scheme)),
            (Some((first, r)), Some(scheme)) => {
                if r.key_fingerprint != scheme.key_fingerprint {
                    return Err(differs(format!(
                        "its linkage key fingerprint {} differs from source `{first}`'s {}: the holders used different linkage keys",
                        scheme.key_fingerprint, r.key_fingerprint
                    )));
                }
                if r.domain_context != scheme.domain_context {
                    return Err(differs(format!(
                        "its linkage domain context `{}` differs from source `{first}`'s `{}`",
                        scheme.domain_context, r.domain_context
                    )));
                }
                if r.canonical_form != scheme.canonical_form {
                    return Err(differs(format!(
                        "its identifiers were normalised to canonical form `{}`, source `{first}`'s to `{}`: the same person may have two pseudonyms; deliver both with one engine version",
                        scheme.canonical_form, r.canonical_form
                    )));
                }
                if (&r.version, &r.encoding, r.bits)
                    != (&scheme.version, &scheme.encoding, scheme.bits)
                {
                    return Err(differs(format!(
                        "its pseudonyms are version `{}`, {} bits {}, but source `{first}`'s are version `{}`, {} bits {}: a stale or different pseudonym scheme",
                        scheme.version, scheme.bits, scheme.encoding, r.version, r.bits, r.encoding
                    )));
                }
            }
        }
        let names: Vec<String> = match &spec.tables {
            Some(t) => t.clone(),
            None => manifest.datasets.iter().map(|d| d.name.clone()).collect(),
        };
        let mut tables = Vec::new();
        for name in names {
            let Some(record) = manifest.datasets.iter().find(|d| d.name == name) else {
                return Err(differs(format!("has no table `{name}`")));
            };
            let Some(field) = record.schema.iter().find(|f| f.name == spec.person) else {
                return Err(differs(format!(
                    "table `{name}` has no column `{}` (set `person` for this source)",
                    spec.person
                )));
            };
            if spec.link_on == LinkOn::Clk {
                if field.domain.is_none() {
                    return Err(differs(format!(
                        "column `{}` of table `{name}` is not pseudonymised",
                        spec.person
                    )));
                }
            } else if field.domain.as_deref() != Some(l.domain.as_str()) {
                return Err(differs(format!(
                    "column `{}` of table `{name}` is not pseudonymised in the linkage domain `{}`",
                    spec.person, l.domain
                )));
            }
            tables.push(LinkedTable {
                dataset: name,
                path: dir.join(&record.file),
                columns: record.schema.iter().map(|f| f.name.clone()).collect(),
            });
        }
        let manifest_path = dir.join(delivery::MANIFEST);
        let (manifest_sha256, _) = delivery::sha256_file(&manifest_path)
            .map_err(|e| Error::verify(&manifest_path, e.to_string()))?;
        sources.push(Source {
            name: spec.name.clone(),
            dir,
            manifest,
            manifest_sha256,
            person: spec.person.clone(),
            tables,
        });
    }
    let (_, scheme) = reference.expect("validated: at least one source");
    Ok((sources, scheme))
}

/// A delivery's date shifts in words, for an error.
fn describe_shift(shift: Option<&delivery::DateShiftRecord>) -> String {
    match shift {
        None => "no date shifted".into(),
        Some(s) => format!(
            "domain `{}`, context `{}`, key {}, {} to {} days, drawn from {} identifier part(s)",
            s.domain, s.context, s.key_fingerprint, s.min_days, s.max_days, s.key_parts
        ),
    }
}

/// The linking permit may read only verified deliveries (or the linked person table), and must not
/// deliver a holder's pseudonyms or tokens, of any domain, as they are.
pub(super) fn check_datasets(permit: &Permit, sources: &[Source]) -> Result<()> {
    let fail = |at: String, message: String| Error::Permit {
        file: permit.path.clone(),
        at,
        message,
    };
    let delivered: Vec<(PathBuf, &Source, &delivery::DatasetRecord)> = sources
        .iter()
        .flat_map(|s| {
            s.manifest
                .datasets
                .iter()
                .filter_map(move |d| Some((s.dir.join(&d.file).canonicalize().ok()?, s, d)))
        })
        .collect();
    let linked = permit
        .spec
        .datasets
        .iter()
        .filter(|d| d.source.format == SourceFormat::Linked)
        .count();
    if linked > 1 {
        return Err(fail(
            "datasets".into(),
            "at most one dataset can read the linked person table".into(),
        ));
    }
    for (di, d) in permit.spec.datasets.iter().enumerate() {
        // Persons the person table suppresses are removed from every table through this column.
        let person_ok = match d.source.format {
            SourceFormat::Linked => {
                d.person.as_deref() == Some(LINKED_PERSON)
                    && d.columns
                        .iter()
                        .any(|c| c.name == LINKED_PERSON && c.action == Action::Pseudonymise)
            }
            _ => true,
        } && d.columns.iter().any(|c| {
            d.person.as_ref() == Some(&c.name) && c.identifier == Some(IdentifierSpec::Pseudonym)
        });
        if !person_ok {
            return Err(fail(
                format!("datasets[{di}].person"),
                format!(
                    "in a linking permit every dataset names its person column, declared with identifier = \"pseudonym\" (the holders' pseudonym; `{LINKED_PERSON}`, pseudonymised, in the person table), so that persons the person table suppresses leave every table"
                ),
            ));
        }
        let pseudonym_columns: Vec<&str> = match d.source.format {
            SourceFormat::Csv | SourceFormat::Postgres => {
                return Err(fail(
                    format!("datasets[{di}].source.format"),
                    "a linking permit reads verified deliveries (\"parquet\") or the linked person table (\"linked\")".into(),
                ));
            }
            SourceFormat::Linked => vec![LINKED_PERSON],
            SourceFormat::Parquet => {
                let mut columns = Vec::new();
                for (fi, f) in d.source.files.iter().enumerate() {
                    let path = permit.resolve(f);
                    let found = path
                        .canonicalize()
                        .ok()
                        .and_then(|c| delivered.iter().find(|(p, _, _)| *p == c));
                    let Some((_, source, record)) = found else {
                        return Err(fail(
                            format!("datasets[{di}].source.files[{fi}]"),
                            format!(
                                "{} is not a table of a delivery under [[linkage.sources]]: only verified deliveries are linked",
                                path.display()
                            ),
                        ));
                    };
                    // Persons are linked, and the person table's suppressions found, by the
                    // sources' person column: another pseudonym of the person (a composite)
                    // would let suppressed persons stay in this table.
                    if d.person.as_deref() != Some(source.person.as_str()) {
                        return Err(fail(
                            format!("datasets[{di}].person"),
                            format!(
                                "is not `{}`, the person column source `{}` is linked on: persons \
                                 the person table suppresses would not be found in this table; \
                                 name that column as the person (and re-pseudonymise or drop \
                                 the other)",
                                source.person, source.name
                            ),
                        ));
                    }
                    // Pseudonyms of any holder domain, and tokens: the holder's, not the researcher's.
                    columns.extend(
                        record
                            .schema
                            .iter()
                            .filter(|f| f.domain.is_some())
                            .map(|f| f.name.as_str()),
                    );
                }
                columns
            }
        };
        for (ci, c) in d.columns.iter().enumerate() {
            if pseudonym_columns.contains(&c.name.as_str())
                && !matches!(c.action, Action::Pseudonymise | Action::Drop)
            {
                return Err(fail(
                    format!("datasets[{di}].columns[{ci}].action"),
                    format!(
                        "`{}` holds pseudonyms or tokens of a holder's domain: pseudonymise it into this permit's domain (identifier = \"pseudonym\") or drop it",
                        c.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
