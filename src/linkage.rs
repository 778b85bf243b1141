//! Access-body linkage (`ehds-prep link`): the holders' deliveries of one permit are verified, linked on
//! their shared linkage pseudonym, and delivered again under the linking permit, with a linkage report.
//!
//! A linking permit is an ordinary permit plus a `[linkage]` section. Its datasets read the holders'
//! verified Parquet files (or the linked person table built here) and go through the engine: the
//! person column is re-pseudonymised into the permit's own domain, columns are minimised and
//! generalised, and privacy models are checked and re-checked from the written files. This module owns
//! what comes before and after: verification, the person index (memory grows with persons, not rows),
//! the person table, and the report of overlaps, rows per person and attribute consistency.

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use foldhash::fast::FixedState;
use polars::prelude::*;
use rayon::prelude::*;
use serde::{Serialize, Serializer};

use crate::delivery::{self, DatasetWriter, Manifest, Staging};
use crate::engine;
use crate::error::{Error, Result};
use crate::hex;
use crate::permit::{Action, IdentifierSpec, LINKED_PERSON, LinkageSpec, Permit, SourceFormat};
use crate::plan::{Plan, Protection, Step};
use crate::report::RunReport;

pub const LINKAGE_REPORT: &str = "linkage.json";
pub const LINKAGE_SUMMARY: &str = "linkage.txt";
const REPORT_FORMAT: &str = "ehds-prep linkage report v1";
/// Work files (the person table, row hashes) live here inside the staging folder until the commit.
const WORK_DIR: &str = ".linkage-work";

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
    domain_context: String,
    key_fingerprint: String,
}

/// Verifies every delivery the permit names and that they can be linked: checksums and footers, the
/// same permit, the same linkage key and context, the same pseudonym version and format.
fn verify_sources(permit: &Permit, l: &LinkageSpec) -> Result<(Vec<Source>, Scheme)> {
    let mut sources = Vec::new();
    let mut reference: Option<(String, Scheme)> = None;
    for spec in &l.sources {
        let dir = permit.resolve(&spec.delivery);
        let manifest = delivery::verify(&dir).map_err(|e| match e {
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
        match &reference {
            None => reference = Some((spec.name.clone(), scheme.clone())),
            Some((first, r)) => {
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
            if !is_linkage_pseudonym(&field.transformation, &l.domain) {
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

/// Whether a manifest's transformation text says a column holds pseudonyms of `domain`.
fn is_linkage_pseudonym(transformation: &str, domain: &str) -> bool {
    transformation.starts_with("pseudonymised")
        && transformation.ends_with(&format!("in domain `{domain}`"))
}

/// The linking permit may read only verified deliveries (or the linked person table), and must not
/// deliver the holders' linkage pseudonyms as they are.
fn check_datasets(permit: &Permit, sources: &[Source], l: &LinkageSpec) -> Result<()> {
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
            SourceFormat::Csv => {
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
                    let Some((_, _, record)) = found else {
                        return Err(fail(
                            format!("datasets[{di}].source.files[{fi}]"),
                            format!(
                                "{} is not a table of a delivery under [[linkage.sources]]: only verified deliveries are linked",
                                path.display()
                            ),
                        ));
                    };
                    columns.extend(
                        record
                            .schema
                            .iter()
                            .filter(|f| is_linkage_pseudonym(&f.transformation, &l.domain))
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
                        "`{}` holds the holders' linkage pseudonyms: pseudonymise it into this permit's domain (identifier = \"pseudonym\") or drop it",
                        c.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// One `source.table.column` of a person attribute, with the value each person has there.
struct AttributeColumn {
    reference: String,
    source: usize,
    table: String,
    column: String,
    /// Per person: 0 for none, else 1 + the value's index in the attribute's dictionary.
    codes: Vec<u32>,
    /// Per person: rows of this column disagree.
    several: Vec<bool>,
}

struct Attribute {
    name: String,
    columns: Vec<AttributeColumn>,
    values: Vec<String>,
    codes: foldhash::HashMap<String, u32>,
}

impl Attribute {
    fn code(&mut self, value: &str) -> u32 {
        if let Some(&c) = self.codes.get(value) {
            return c;
        }
        self.values.push(value.to_string());
        let c = self.values.len() as u32;
        self.codes.insert(value.to_string(), c);
        c
    }

    /// The person's value: the first column, in the permit's order, that has one.
    fn value_of(&self, person: usize) -> Option<&str> {
        self.columns
            .iter()
            .map(|c| c.codes[person])
            .find(|&c| c != 0)
            .map(|c| self.values[c as usize - 1].as_str())
    }
}

fn resolve_attributes(
    permit: &Permit,
    l: &LinkageSpec,
    sources: &[Source],
) -> Result<Vec<Attribute>> {
    l.attributes
        .iter()
        .enumerate()
        .map(|(ai, a)| {
            let columns = a
                .columns
                .iter()
                .map(|reference| {
                    let mut parts = reference.splitn(3, '.');
                    let (s, t, c) = (
                        parts.next().unwrap_or_default(),
                        parts.next().unwrap_or_default(),
                        parts.next().unwrap_or_default(),
                    );
                    let source = sources.iter().position(|x| x.name == s).expect("validated");
                    let known = sources[source]
                        .tables
                        .iter()
                        .any(|x| x.dataset == t && x.columns.iter().any(|n| n == c));
                    if !known {
                        return Err(Error::Permit {
                            file: permit.path.clone(),
                            at: format!("linkage.attributes[{ai}].columns"),
                            message: format!(
                                "`{reference}`: source `{s}` links no table `{t}` with a column `{c}`"
                            ),
                        });
                    }
                    Ok(AttributeColumn {
                        reference: reference.clone(),
                        source,
                        table: t.into(),
                        column: c.into(),
                        codes: Vec::new(),
                        several: Vec::new(),
                    })
                })
                .collect::<Result<_>>()?;
            Ok(Attribute {
                name: a.name.clone(),
                columns,
                values: Vec::new(),
                codes: Default::default(),
            })
        })
        .collect()
}

/// Counts of one linked table.
struct TableStats {
    source: usize,
    dataset: String,
    rows: u64,
    rows_without_pseudonym: u64,
    persons: u64,
    duplicate_rows: u64,
}

/// Persons across all sources, keyed by their linkage pseudonym; memory grows with persons only.
struct Index {
    sources: usize,
    /// The pseudonym's first 128 bits → person number (in order of first appearance).
    ids: std::collections::HashMap<u128, u32, FixedState>,
    /// Each person's decoded pseudonym, `width` bytes each.
    pseudonyms: Vec<u8>,
    width: usize,
    /// Per person: a bit per source holding it.
    presence: Vec<u16>,
    /// Per person and source: rows.
    rows: Vec<u32>,
    /// Per person: the last table (number) it was counted in, for distinct persons per table.
    last_table: Vec<u32>,
    attributes: Vec<Attribute>,
    tables: Vec<TableStats>,
}

/// Decodes a pseudonym of the deliveries' scheme into `out`; `None` if the text is not one.
fn decode_pseudonym(text: &str, scheme: &Scheme, out: &mut [u8; 32]) -> Option<()> {
    let bytes = scheme.bits as usize / 8;
    match scheme.encoding.as_str() {
        "hex" => {
            let t = text.as_bytes();
            if t.len() != 2 * bytes {
                return None;
            }
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            for (o, pair) in out.iter_mut().zip(t.chunks_exact(2)) {
                *o = digit(pair[0])? << 4 | digit(pair[1])?;
            }
            Some(())
        }
        _ => {
            let decoded = hex::base64url_decode(text)?;
            // Only the canonical text of the bytes is a pseudonym (no other spelling of the same bytes).
            (decoded.len() == bytes && hex::base64url(&decoded) == text).then(|| {
                out[..bytes].copy_from_slice(&decoded);
            })
        }
    }
}

fn encode_pseudonym(bytes: &[u8], scheme: &Scheme) -> String {
    match scheme.encoding.as_str() {
        "hex" => hex::encode(bytes),
        _ => hex::base64url(bytes),
    }
}

/// Exact duplicate rows of a table, counted in bounded memory: 128-bit row hashes are spread over
/// partition files by their top bits, then each partition is sorted on its own.
struct RowHashes {
    dir: PathBuf,
    parts: Vec<BufWriter<File>>,
}

const HASH_PARTS: usize = 64;

impl RowHashes {
    fn create(dir: &Path) -> Result<RowHashes> {
        std::fs::create_dir_all(dir).map_err(|e| Error::output(dir, e))?;
        let parts = (0..HASH_PARTS)
            .map(|p| {
                let path = dir.join(format!("{p}.bin"));
                File::create(&path)
                    .map(|f| BufWriter::with_capacity(64 << 10, f))
                    .map_err(|e| Error::output(&path, e))
            })
            .collect::<Result<_>>()?;
        Ok(RowHashes {
            dir: dir.into(),
            parts,
        })
    }

    fn add(&mut self, hash: u128) -> Result<()> {
        let part = (hash >> (128 - 6)) as usize;
        self.parts[part]
            .write_all(&hash.to_le_bytes())
            .map_err(|e| Error::output(&self.dir, e))
    }

    /// Rows that repeat an earlier row.
    fn duplicates(self) -> Result<u64> {
        let mut duplicates = 0;
        for (p, part) in self.parts.into_iter().enumerate() {
            let path = self.dir.join(format!("{p}.bin"));
            drop(
                part.into_inner()
                    .map_err(|e| Error::output(&path, e.error()))?,
            );
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| Error::output(&path, e))?;
            let mut hashes: Vec<u128> = bytes
                .chunks_exact(16)
                .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
                .collect();
            hashes.par_sort_unstable();
            duplicates += hashes.windows(2).filter(|w| w[0] == w[1]).count() as u64;
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::output(&self.dir, e))?;
        Ok(duplicates)
    }
}

/// A row's hash over every column's text (nulls distinct from empty text).
fn row_hashes(columns: &[Vec<Option<&str>>], rows: usize) -> Vec<u128> {
    let states = [
        FixedState::with_seed(0x0e4d5),
        FixedState::with_seed(0x11a6e),
    ];
    (0..rows)
        .into_par_iter()
        .map(|r| {
            let [lo, hi] = states.each_ref().map(|s| {
                let mut h = s.build_hasher();
                for c in columns {
                    match c[r] {
                        None => h.write_u8(0),
                        Some(v) => {
                            h.write_u8(1);
                            h.write_usize(v.len());
                            h.write(v.as_bytes());
                        }
                    }
                }
                h.finish()
            });
            (hi as u128) << 64 | lo as u128
        })
        .collect()
}

impl Index {
    fn build(
        sources: &[Source],
        scheme: &Scheme,
        attributes: Vec<Attribute>,
        work: &Path,
        batch_rows: usize,
    ) -> Result<Index> {
        let width = scheme.bits as usize / 8;
        let mut index = Index {
            sources: sources.len(),
            ids: std::collections::HashMap::with_hasher(FixedState::with_seed(0x5eed)),
            pseudonyms: Vec::new(),
            width,
            presence: Vec::new(),
            rows: Vec::new(),
            last_table: Vec::new(),
            attributes,
            tables: Vec::new(),
        };
        for (si, source) in sources.iter().enumerate() {
            for table in &source.tables {
                index.add_table(si, source, table, scheme, work, batch_rows)?;
            }
        }
        let persons = index.presence.len();
        for a in &mut index.attributes {
            for c in &mut a.columns {
                c.codes.resize(persons, 0);
                c.several.resize(persons, false);
            }
        }
        Ok(index)
    }

    fn add_table(
        &mut self,
        si: usize,
        source: &Source,
        table: &LinkedTable,
        scheme: &Scheme,
        work: &Path,
        batch_rows: usize,
    ) -> Result<()> {
        let table_number = self.tables.len() as u32 + 1;
        let mut stats = TableStats {
            source: si,
            dataset: table.dataset.clone(),
            rows: 0,
            rows_without_pseudonym: 0,
            persons: 0,
            duplicate_rows: 0,
        };
        let person_at = table
            .columns
            .iter()
            .position(|c| *c == source.person)
            .expect("verified: the table has the person column");
        // (attribute, column within it, column number in the table) of the attributes read here.
        let wanted: Vec<(usize, usize, usize)> = self
            .attributes
            .iter()
            .enumerate()
            .flat_map(|(ai, a)| {
                a.columns
                    .iter()
                    .enumerate()
                    .filter(move |(_, c)| c.source == si && c.table == table.dataset)
                    .map(move |(ci, c)| {
                        let at = table.columns.iter().position(|n| *n == c.column);
                        (ai, ci, at.expect("resolved: the column exists"))
                    })
            })
            .collect();
        let mut hashes = RowHashes::create(&work.join("row-hashes"))?;
        let mut ids: Vec<Option<u32>> = Vec::new();
        crate::source::read_parquet_text(&table.path, &table.columns, batch_rows, |df| {
            let columns: Vec<Vec<Option<&str>>> = df
                .columns()
                .iter()
                .map(|c| Ok(c.str()?.iter().collect()))
                .collect::<Result<_>>()?;
            let n = df.height();
            for h in row_hashes(&columns, n) {
                hashes.add(h)?;
            }
            let decoded: Vec<Option<[u8; 32]>> = columns[person_at]
                .par_iter()
                .enumerate()
                .map(|(r, v)| {
                    let Some(text) = v else { return Ok(None) };
                    let mut out = [0u8; 32];
                    decode_pseudonym(text, scheme, &mut out).ok_or_else(|| {
                        Error::verify(
                            &table.path,
                            format!(
                                "source `{}`, table `{}`, row {}, column `{}`: not a {}-bit {} pseudonym (value not shown)",
                                source.name,
                                table.dataset,
                                stats.rows + r as u64 + 1,
                                source.person,
                                scheme.bits,
                                scheme.encoding
                            ),
                        )
                    })?;
                    Ok(Some(out))
                })
                .collect::<Result<_>>()?;
            ids.clear();
            for pseudonym in &decoded {
                let Some(bytes) = pseudonym else {
                    stats.rows_without_pseudonym += 1;
                    ids.push(None);
                    continue;
                };
                let key = u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes"));
                let next = self.presence.len() as u32;
                let id = *self.ids.entry(key).or_insert(next);
                if id == next {
                    self.pseudonyms.extend_from_slice(&bytes[..self.width]);
                    self.presence.push(0);
                    self.rows.extend(std::iter::repeat_n(0, self.sources));
                    self.last_table.push(0);
                }
                let p = id as usize;
                self.presence[p] |= 1 << si;
                self.rows[p * self.sources + si] += 1;
                if self.last_table[p] != table_number {
                    self.last_table[p] = table_number;
                    stats.persons += 1;
                }
                ids.push(Some(id));
            }
            for &(ai, ci, at) in &wanted {
                let a = &mut self.attributes[ai];
                for (id, value) in ids.iter().zip(&columns[at]) {
                    let (Some(id), Some(value)) = (id, value) else {
                        continue;
                    };
                    let code = a.code(value);
                    let c = &mut a.columns[ci];
                    let p = *id as usize;
                    if c.codes.len() <= p {
                        c.codes.resize(p + 1, 0);
                        c.several.resize(p + 1, false);
                    }
                    match c.codes[p] {
                        0 => c.codes[p] = code,
                        held if held != code => c.several[p] = true,
                        _ => {}
                    }
                }
            }
            stats.rows += n as u64;
            Ok(())
        })?;
        stats.duplicate_rows = hashes.duplicates()?;
        self.tables.push(stats);
        Ok(())
    }

    fn persons(&self) -> usize {
        self.presence.len()
    }

    /// The person table: the linkage pseudonym, each attribute, and a presence flag per source, in
    /// order of first appearance.
    fn write_person_table(
        &self,
        path: &Path,
        sources: &[Source],
        scheme: &Scheme,
        batch_rows: usize,
    ) -> Result<()> {
        let mut fields = vec![Field::new(LINKED_PERSON.into(), DataType::String)];
        fields.extend(
            self.attributes
                .iter()
                .map(|a| Field::new(a.name.as_str().into(), DataType::String)),
        );
        fields.extend(
            sources
                .iter()
                .map(|s| Field::new(format!("in_{}", s.name).into(), DataType::Boolean)),
        );
        let schema = Schema::from_iter(fields);
        let mut writer = DatasetWriter::create(path.into(), &schema, Vec::new())?;
        let persons = self.persons();
        for start in (0..persons).step_by(batch_rows.max(1)) {
            let range = start..(start + batch_rows).min(persons);
            let mut columns: Vec<Column> = Vec::new();
            columns.push(
                StringChunked::from_iter_values(
                    LINKED_PERSON.into(),
                    range.clone().map(|p| {
                        encode_pseudonym(
                            &self.pseudonyms[p * self.width..(p + 1) * self.width],
                            scheme,
                        )
                    }),
                )
                .into_column(),
            );
            for a in &self.attributes {
                columns.push(
                    StringChunked::from_iter_options(
                        a.name.as_str().into(),
                        range.clone().map(|p| a.value_of(p)),
                    )
                    .into_column(),
                );
            }
            for (si, s) in sources.iter().enumerate() {
                let flags: Vec<bool> = range
                    .clone()
                    .map(|p| self.presence[p] & (1 << si) != 0)
                    .collect();
                columns.push(
                    BooleanChunked::from_slice(format!("in_{}", s.name).into(), &flags)
                        .into_column(),
                );
            }
            writer.write(DataFrame::new(range.len(), columns)?)?;
        }
        writer.finish()?;
        Ok(())
    }
}

/// The linkage pseudonyms of the persons the written person table does not hold (suppressed by its
/// privacy models), found by re-pseudonymising every linked person as the table's column did.
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
    let pseudonymiser = &plan.domains[domain].pseudonymiser;
    let mut kept = foldhash::HashSet::default();
    crate::source::read_parquet_text(
        written,
        std::slice::from_ref(&step.output),
        plan.permit.spec.output.batch_rows,
        |df| {
            let column = df.column(&step.output)?.str()?.clone();
            kept.extend(column.iter().flatten().map(String::from));
            Ok(())
        },
    )?;
    let removed = (0..index.persons())
        .into_par_iter()
        .filter_map(|p| {
            let text = encode_pseudonym(
                &index.pseudonyms[p * index.width..(p + 1) * index.width],
                scheme,
            );
            (!kept.contains(&pseudonymiser.pseudonym(text.as_bytes()))).then_some(text)
        })
        .collect::<Vec<String>>();
    Ok(removed.into_iter().collect())
}

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

#[derive(Debug, Serialize)]
pub struct LinkageReport {
    pub format: &'static str,
    pub permit_id: String,
    pub engine_version: &'static str,
    /// How small counts are shown in this report.
    pub masking: String,
    pub checks: Checks,
    pub sources: Vec<SourceReport>,
    /// Distinct persons across all sources.
    pub persons: Count,
    /// Persons in exactly these sources and no other, for every combination.
    pub combinations: Vec<Combination>,
    /// Persons in both sources of every pair (whatever other sources hold them).
    pub pairs: Vec<Pair>,
    pub rows_per_person: Vec<RowsPerPerson>,
    pub consistency: Vec<AttributeConsistency>,
}

/// What was verified before anything was linked.
#[derive(Debug, Serialize)]
pub struct Checks {
    pub linkage_domain: String,
    pub linkage_context: String,
    pub linkage_key_fingerprint: String,
    pub pseudonym_version: String,
    pub pseudonym_encoding: String,
    pub pseudonym_bits: u16,
    pub verified: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SourceReport {
    pub name: String,
    pub holder: String,
    pub permit_sha256: String,
    pub manifest_sha256: String,
    pub rows: Count,
    pub persons: Count,
    pub tables: Vec<TableReport>,
}

#[derive(Debug, Serialize)]
pub struct TableReport {
    pub dataset: String,
    pub rows: Count,
    pub persons: Count,
    /// Rows whose person pseudonym is null (the holder delivered them without one): not linked.
    pub rows_without_pseudonym: Count,
    /// Rows identical, in every delivered column, to another row of the table.
    pub duplicate_rows: Count,
    /// The holder's own counts of invalid and missing identifiers in its cohort (from its
    /// `report.json`, which the manifest does not cover).
    pub identifiers_invalid_reported: Option<Count>,
    pub identifiers_missing_reported: Option<Count>,
}

#[derive(Debug, Serialize)]
pub struct Combination {
    pub sources: Vec<String>,
    pub persons: Count,
}

#[derive(Debug, Serialize)]
pub struct Pair {
    pub sources: [String; 2],
    pub persons: Count,
}

#[derive(Debug, Serialize)]
pub struct RowsPerPerson {
    pub source: String,
    /// Persons by their number of rows in the source.
    pub persons_by_rows: Vec<Bucket>,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub rows: &'static str,
    pub persons: Count,
}

#[derive(Debug, Serialize)]
pub struct AttributeConsistency {
    pub attribute: String,
    pub columns: Vec<String>,
    /// Persons with a value in at least two of the columns.
    pub persons_compared: Count,
    /// Of those, persons whose values differ (identifier collisions, such as twins sharing a parent's
    /// number, or data errors).
    pub persons_disagreeing: Count,
    pub pairs: Vec<ColumnPair>,
    /// Persons whose rows in one column hold several values.
    pub several_values_within: Vec<ColumnCount>,
}

#[derive(Debug, Serialize)]
pub struct ColumnPair {
    pub columns: [String; 2],
    pub compared: Count,
    pub disagreeing: Count,
}

#[derive(Debug, Serialize)]
pub struct ColumnCount {
    pub column: String,
    pub persons: Count,
}

const BUCKETS: [(&str, u32, u32); 8] = [
    ("1", 1, 1),
    ("2", 2, 2),
    ("3", 3, 3),
    ("4-5", 4, 5),
    ("6-10", 6, 10),
    ("11-20", 11, 20),
    ("21-50", 21, 50),
    (">50", 51, u32::MAX),
];

/// The report's figures, counted once, rendered exact or masked.
fn report(
    permit: &Permit,
    l: &LinkageSpec,
    sources: &[Source],
    scheme: &Scheme,
    index: &Index,
    mask: Option<u64>,
) -> LinkageReport {
    let count = |n: u64| match mask {
        Some(t) if n > 0 && n < t => Count::Below(t),
        _ => Count::Exact(n),
    };
    let n = sources.len();
    let mut by_mask = vec![0u64; 1 << n];
    for &m in &index.presence {
        by_mask[m as usize] += 1;
    }
    let names = |m: usize| -> Vec<String> {
        (0..n)
            .filter(|s| m & (1 << s) != 0)
            .map(|s| sources[s].name.clone())
            .collect()
    };
    let within = |bits: usize| -> u64 {
        by_mask
            .iter()
            .enumerate()
            .filter(|(m, _)| m & bits == bits)
            .map(|(_, c)| c)
            .sum()
    };
    let combinations = (1..1usize << n)
        .map(|m| Combination {
            sources: names(m),
            persons: count(by_mask[m]),
        })
        .collect();
    let mut pairs = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            pairs.push(Pair {
                sources: [sources[a].name.clone(), sources[b].name.clone()],
                persons: count(within(1 << a | 1 << b)),
            });
        }
    }
    let holder_counts = |s: &Source, dataset: &str| -> (Option<u64>, Option<u64>) {
        let text = std::fs::read_to_string(s.dir.join("report.json")).unwrap_or_default();
        let Ok(report) = serde_json::from_str::<serde_json::Value>(&text) else {
            return (None, None);
        };
        let column = report["datasets"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["name"] == dataset))
            .and_then(|d| d["columns"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["output"] == s.person.as_str()));
        match column {
            Some(c) => (
                c["identifiers_invalid"].as_u64(),
                c["identifiers_missing"].as_u64(),
            ),
            None => (None, None),
        }
    };
    let source_reports = sources
        .iter()
        .enumerate()
        .map(|(si, s)| {
            let tables: Vec<&TableStats> = index.tables.iter().filter(|t| t.source == si).collect();
            SourceReport {
                name: s.name.clone(),
                holder: s.manifest.permit.holder.clone(),
                permit_sha256: s.manifest.permit.sha256.clone(),
                manifest_sha256: s.manifest_sha256.clone(),
                rows: count(tables.iter().map(|t| t.rows).sum()),
                persons: count(within(1 << si)),
                tables: tables
                    .iter()
                    .map(|t| {
                        let (invalid, missing) = holder_counts(s, &t.dataset);
                        TableReport {
                            dataset: t.dataset.clone(),
                            rows: count(t.rows),
                            persons: count(t.persons),
                            rows_without_pseudonym: count(t.rows_without_pseudonym),
                            duplicate_rows: count(t.duplicate_rows),
                            identifiers_invalid_reported: invalid.map(count),
                            identifiers_missing_reported: missing.map(count),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let rows_per_person = sources
        .iter()
        .enumerate()
        .map(|(si, s)| {
            let mut buckets = [0u64; BUCKETS.len()];
            let (mut persons, mut rows) = (0u64, 0u64);
            for p in 0..index.persons() {
                let r = index.rows[p * n + si];
                if r == 0 {
                    continue;
                }
                persons += 1;
                rows += r as u64;
                let b = BUCKETS
                    .iter()
                    .position(|&(_, lo, hi)| (lo..=hi).contains(&r))
                    .expect("buckets cover every count");
                buckets[b] += 1;
            }
            RowsPerPerson {
                source: s.name.clone(),
                persons_by_rows: BUCKETS
                    .iter()
                    .zip(buckets)
                    .map(|(&(label, _, _), persons)| Bucket {
                        rows: label,
                        persons: count(persons),
                    })
                    .collect(),
                mean: if persons == 0 {
                    0.0
                } else {
                    (rows as f64 / persons as f64 * 1000.0).round() / 1000.0
                },
            }
        })
        .collect();
    let consistency = index
        .attributes
        .iter()
        .map(|a| attribute_consistency(a, index.persons(), &count))
        .collect();
    let masking = match mask {
        Some(t) if t > 1 => format!("counts from 1 to {} are shown as \"< {t}\"", t - 1),
        Some(_) => "none (small_counts ≤ 1)".into(),
        None => "none: exact counts, for the access body only".into(),
    };
    LinkageReport {
        format: REPORT_FORMAT,
        permit_id: permit.spec.permit.id.clone(),
        engine_version: engine::ENGINE_VERSION,
        masking,
        checks: Checks {
            linkage_domain: l.domain.clone(),
            linkage_context: scheme.domain_context.clone(),
            linkage_key_fingerprint: scheme.key_fingerprint.clone(),
            pseudonym_version: scheme.version.clone(),
            pseudonym_encoding: scheme.encoding.clone(),
            pseudonym_bits: scheme.bits,
            verified: vec![
                "every delivery's files match its manifest (SHA-256, size, rows, footer)".into(),
                format!(
                    "every delivery was made for permit {}",
                    permit.spec.permit.id
                ),
                "every delivery uses the same linkage key, domain context and pseudonym scheme"
                    .into(),
                "every linked person column is pseudonymised in the linkage domain".into(),
            ],
        },
        sources: source_reports,
        persons: count(index.persons() as u64),
        combinations,
        pairs,
        rows_per_person,
        consistency,
    }
}

fn attribute_consistency(
    a: &Attribute,
    persons: usize,
    count: &impl Fn(u64) -> Count,
) -> AttributeConsistency {
    let k = a.columns.len();
    let (mut compared, mut disagreeing) = (0u64, 0u64);
    let mut pair_counts = vec![(0u64, 0u64); k * k];
    for p in 0..persons {
        let codes: Vec<u32> = a.columns.iter().map(|c| c.codes[p]).collect();
        let held: Vec<u32> = codes.iter().copied().filter(|&c| c != 0).collect();
        if held.len() >= 2 {
            compared += 1;
            disagreeing += u64::from(held.iter().any(|&c| c != held[0]));
        }
        for i in 0..k {
            for j in i + 1..k {
                if codes[i] != 0 && codes[j] != 0 {
                    let e = &mut pair_counts[i * k + j];
                    e.0 += 1;
                    e.1 += u64::from(codes[i] != codes[j]);
                }
            }
        }
    }
    let mut pairs = Vec::new();
    for i in 0..k {
        for j in i + 1..k {
            let (c, d) = pair_counts[i * k + j];
            pairs.push(ColumnPair {
                columns: [
                    a.columns[i].reference.clone(),
                    a.columns[j].reference.clone(),
                ],
                compared: count(c),
                disagreeing: count(d),
            });
        }
    }
    AttributeConsistency {
        attribute: a.name.clone(),
        columns: a.columns.iter().map(|c| c.reference.clone()).collect(),
        persons_compared: count(compared),
        persons_disagreeing: count(disagreeing),
        pairs,
        several_values_within: a
            .columns
            .iter()
            .map(|c| ColumnCount {
                column: c.reference.clone(),
                persons: count(c.several.iter().filter(|&&s| s).count() as u64),
            })
            .collect(),
    }
}

impl LinkageReport {
    /// A few lines for a person: sources, overlaps, consistency.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "linkage of permit {}: {} persons across {} sources ({})\n",
            self.permit_id,
            self.persons,
            self.sources.len(),
            self.masking
        );
        for src in &self.sources {
            s += &format!(
                "  {:<12} {:>10} rows {:>9} persons   ({})\n",
                src.name, src.rows, src.persons, src.holder
            );
            for t in &src.tables {
                s += &format!(
                    "    {:<16} {:>10} rows {:>9} persons {:>8} without pseudonym {:>8} duplicate rows\n",
                    t.dataset, t.rows, t.persons, t.rows_without_pseudonym, t.duplicate_rows
                );
            }
        }
        s += "  persons in exactly these sources:\n";
        for c in &self.combinations {
            s += &format!("    {:<40} {:>9}\n", c.sources.join(" + "), c.persons);
        }
        for a in &self.consistency {
            s += &format!(
                "  {}: {} persons compared, {} disagree\n",
                a.attribute, a.persons_compared, a.persons_disagreeing
            );
        }
        s
    }
}

/// Runs a linking permit: verify, link, deliver, report. On any error nothing is left at the output.
pub fn link(permit: Permit) -> Result<LinkOutcome> {
    let Some(l) = permit.spec.linkage.clone() else {
        return Err(Error::Permit {
            file: permit.path.clone(),
            at: "linkage".into(),
            message: "not a linking permit: `link` needs a [linkage] section naming the deliveries"
                .into(),
        });
    };
    let (sources, scheme) = verify_sources(&permit, &l)?;
    // A linked delivery of the same permit would otherwise replace the holder's delivery it reads.
    let output = permit.output_dir().canonicalize().ok();
    if let Some(s) = sources
        .iter()
        .find(|s| output.is_some() && s.dir.canonicalize().ok() == output)
    {
        return Err(Error::Permit {
            file: permit.path.clone(),
            at: "output.dir".into(),
            message: format!(
                "is the delivery of source `{}`: write the linked delivery elsewhere",
                s.name
            ),
        });
    }
    check_datasets(&permit, &sources, &l)?;
    let attributes = resolve_attributes(&permit, &l, &sources)?;
    let staging = Staging::create(&permit.output_dir(), &permit.spec.permit.id)?;
    let work = staging.path(WORK_DIR);
    std::fs::create_dir(&work).map_err(|e| Error::output(&work, e))?;
    // Absolute: the plan resolves source paths against the permit's folder.
    let person_table = work
        .canonicalize()
        .map_err(|e| Error::output(&work, e))?
        .join("persons.parquet");
    let mut permit = permit;
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
    let batch_rows = plan.permit.spec.output.batch_rows;
    let t = Instant::now();
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
        writer.dataset(d, None)?;
        let written = writer.written(&d.name).expect("just written");
        removed = removed_persons(&plan, d, &written, &index, &scheme)?;
    }
    for d in tables {
        writer.dataset(d, Some(&removed))?;
    }
    let run = writer.finish()?;
    std::fs::remove_dir_all(&work).map_err(|e| Error::output(&work, e))?;
    let permit = &plan.permit;
    let exact = report(permit, &l, &sources, &scheme, &index, None);
    let masked = report(permit, &l, &sources, &scheme, &index, Some(l.small_counts));
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
    // The exact report goes beside its destination first and into place only with the delivery.
    let exact_target = l.exact_report.as_ref().map(|p| permit.resolve(p));
    let exact_staged = exact_target
        .as_ref()
        .map(|p| p.with_extension("json.staging"));
    if let Some(path) = &exact_staged {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&exact).expect("serialisable") + "\n",
        )
        .map_err(|e| Error::output(path, e))?;
    }
    let committed = staging.commit();
    if let (Some(from), Some(to)) = (&exact_staged, &exact_target) {
        if committed.is_ok() {
            std::fs::rename(from, to).map_err(|e| Error::output(to, e))?;
        } else {
            let _ = std::fs::remove_file(from);
        }
    }
    committed?;
    Ok(LinkOutcome {
        run,
        exact,
        masked,
        index_ms,
    })
}
