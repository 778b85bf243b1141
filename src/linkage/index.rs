//! The person index: persons across every linked table, keyed by their linkage pseudonym (memory
//! grows with persons, never with rows), their attributes, per-table counts, exact duplicate rows
//! counted in bounded memory, and the person table written from it.

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use foldhash::fast::FixedState;
use polars::prelude::*;
use rayon::prelude::*;

use crate::delivery::DatasetWriter;
use crate::error::{Error, Result};
use crate::kernels::hex;
use crate::kernels::identifier::{Checked, IdentifierKind, IdentifierRule};
use crate::kernels::pseudonymise::Encoding;
use crate::permit::{LINKED_PERSON, LinkageSpec, Permit};

use super::numbering::{Batch, Numbering};
use super::{LinkedTable, Scheme, Source};

/// One `source.table.column` of a person attribute, with the value each person has there.
pub(super) struct AttributeColumn {
    pub(super) reference: String,
    pub(super) source: usize,
    pub(super) table: String,
    pub(super) column: String,
    /// Per person: 0 for none, else 1 + the value's index in the attribute's dictionary.
    pub(super) codes: Vec<u32>,
    /// Per person: rows of this column disagree.
    pub(super) several: Vec<bool>,
}

pub(super) struct Attribute {
    pub(super) name: String,
    pub(super) columns: Vec<AttributeColumn>,
    /// Each value as first spelt, by code.
    pub(super) values: Vec<String>,
    /// Codes by the value's canonical form.
    pub(super) codes: foldhash::HashMap<String, u32>,
    /// The canonical form values are compared in: the identifiers' (case, width, accents written
    /// apart and invisible characters never make two values of one), so that holders agree on a
    /// value however each spells it.
    canonical: IdentifierRule,
    key: String,
}

impl Attribute {
    /// Records the values of one batch of column `ci` for the persons `ids` of its rows.
    fn record(&mut self, ci: usize, ids: &[Option<u32>], values: &[Option<&str>]) {
        for (id, value) in ids.iter().zip(values) {
            let (Some(id), Some(value)) = (id, value) else {
                continue;
            };
            let code = self.code(value);
            let c = &mut self.columns[ci];
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

    fn code(&mut self, value: &str) -> u32 {
        let key = match self.canonical.check_into(Some(value), &mut self.key) {
            Checked::Valid => self.key.as_str(),
            Checked::Missing | Checked::Invalid => value,
        };
        if let Some(&c) = self.codes.get(key) {
            return c;
        }
        let key = key.to_string();
        self.values.push(value.to_string());
        let c = self.values.len() as u32;
        self.codes.insert(key, c);
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

pub(super) fn resolve_attributes(
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
                canonical: IdentifierRule::new(IdentifierKind::Any),
                key: String::new(),
            })
        })
        .collect()
}

/// Counts of one linked table.
pub(super) struct TableStats {
    pub(super) source: usize,
    pub(super) dataset: String,
    pub(super) rows: u64,
    pub(super) rows_without_pseudonym: u64,
    pub(super) persons: u64,
    pub(super) duplicate_rows: u64,
}

/// Persons across all sources, keyed by their linkage pseudonym; memory grows with persons only.
pub(super) struct Index {
    /// Each person's decoded pseudonym, `width` bytes each, in order of first appearance.
    pub(super) pseudonyms: Vec<u8>,
    pub(super) width: usize,
    /// Per person: a bit per source holding it.
    pub(super) presence: Vec<u16>,
    /// Per person and source: rows.
    pub(super) rows: Vec<u32>,
    pub(super) attributes: Vec<Attribute>,
    pub(super) tables: Vec<TableStats>,
}

/// Decodes a pseudonym of the deliveries' scheme into `out`; `None` if the text is not one.
pub(super) fn decode_pseudonym(text: &str, scheme: &Scheme, out: &mut [u8; 32]) -> Option<()> {
    scheme.format().decode_into(text, out)
}

pub(super) fn encode_pseudonym(bytes: &[u8], scheme: &Scheme) -> String {
    match scheme.format().encoding {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64url => hex::base64url(bytes),
    }
}

/// Exact duplicate rows of a table, counted in bounded memory: 128-bit row hashes are spread over
/// partition files by their top bits, then each partition is sorted on its own.
pub(super) struct RowHashes {
    pub(super) dir: PathBuf,
    pub(super) parts: Vec<BufWriter<File>>,
}

pub(super) const HASH_PARTS: usize = 64;

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
pub(super) fn row_hashes(columns: &[Vec<Option<&str>>], rows: usize) -> Vec<u128> {
    let states = [
        FixedState::with_seed(0x0e4d5),
        FixedState::with_seed(0x11a6e),
    ];
    (0..rows)
        .into_par_iter()
        .map(|r| {
            // Both halves in one walk over the row's values.
            let [mut lo, mut hi] = states.each_ref().map(|s| s.build_hasher());
            for c in columns {
                for h in [&mut lo, &mut hi] {
                    match c[r] {
                        None => h.write_u8(0),
                        Some(v) => {
                            h.write_u8(1);
                            h.write_usize(v.len());
                            h.write(v.as_bytes());
                        }
                    }
                }
            }
            let (lo, hi) = (lo.finish(), hi.finish());
            (hi as u128) << 64 | lo as u128
        })
        .collect()
}

impl Index {
    pub(super) fn build(
        sources: &[Source],
        scheme: &Scheme,
        attributes: Vec<Attribute>,
        work: &Path,
        batch_rows: usize,
    ) -> Result<Index> {
        let width = scheme.bits as usize / 8;
        let mut index = Index {
            pseudonyms: Vec::new(),
            width,
            presence: Vec::new(),
            rows: Vec::new(),
            attributes,
            tables: Vec::new(),
        };
        let mut numbering = Numbering::new(sources.len(), width);
        for (si, source) in sources.iter().enumerate() {
            for table in &source.tables {
                index.add_table(&mut numbering, si, source, table, scheme, work, batch_rows)?;
            }
        }
        let numbered = numbering.finish();
        // Attribute values were recorded by provisional number: put them in the persons' order.
        for a in &mut index.attributes {
            for c in &mut a.columns {
                let (codes, several) = numbered
                    .provisional
                    .iter()
                    .map(|&p| {
                        let p = p as usize;
                        (
                            c.codes.get(p).copied().unwrap_or(0),
                            c.several.get(p).copied().unwrap_or(false),
                        )
                    })
                    .unzip();
                (c.codes, c.several) = (codes, several);
            }
        }
        index.pseudonyms = numbered.pseudonyms;
        index.presence = numbered.presence;
        index.rows = numbered.rows;
        Ok(index)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_table(
        &mut self,
        numbering: &mut Numbering,
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
        let mut decoded: Vec<std::result::Result<Option<u128>, ()>> = Vec::new();
        let mut keys: Vec<Option<u128>> = Vec::new();
        let record = source
            .manifest
            .datasets
            .iter()
            .find(|d| d.name == table.dataset);
        let bytes_per_row = record.map_or(0.0, |r| r.bytes as f64 / r.rows.max(1) as f64);
        let progress = crate::report::progress::Stage::new(
            &format!("{}.{} (index)", source.name, table.dataset),
            std::slice::from_ref(&table.path),
        );
        crate::source::read_parquet_text(&table.path, &table.columns, batch_rows, |df| {
            let rows = df.height() as u64;
            progress.advance(rows, (rows as f64 * bytes_per_row) as u64);
            let columns = crate::source::str_values(df.columns())?;
            let n = df.height();
            let first_row = stats.rows;
            // Rows hashed for the duplicate count beside the persons' numbering.
            let hash_rows = || -> Result<()> {
                for h in row_hashes(&columns, n) {
                    hashes.add(h)?;
                }
                Ok(())
            };
            let number_persons = || -> Result<(u64, u64)> {
                // Each row's key: the first 128 bits of its pseudonym (`Err` where the text is not one).
                columns[person_at]
                    .par_iter()
                    .map(|v| {
                        let Some(text) = v else { return Ok(None) };
                        let mut out = [0u8; 32];
                        decode_pseudonym(text, scheme, &mut out).ok_or(())?;
                        Ok(Some(u128::from_le_bytes(
                            out[..16].try_into().expect("16 bytes"),
                        )))
                    })
                    .collect_into_vec(&mut decoded);
                if let Some(r) = decoded.iter().position(|k| k.is_err()) {
                    return Err(Error::verify(
                        &table.path,
                        format!(
                            "source `{}`, table `{}`, row {}, column `{}`: not a {}-bit {} pseudonym (value not shown)",
                            source.name,
                            table.dataset,
                            first_row + r as u64 + 1,
                            source.person,
                            scheme.bits,
                            scheme.encoding
                        ),
                    ));
                }
                keys.clear();
                keys.extend(decoded.iter().map(|k| k.expect("checked above")));
                let without = keys.iter().filter(|k| k.is_none()).count() as u64;
                let batch = Batch {
                    keys: &keys,
                    texts: &columns[person_at],
                    scheme,
                    source: si,
                    table_number,
                    first_row,
                };
                Ok((numbering.add(&batch, &mut ids), without))
            };
            let (hashed, numbered) = rayon::join(hash_rows, number_persons);
            let (persons, without) = numbered?;
            hashed?;
            stats.persons += persons;
            stats.rows_without_pseudonym += without;
            for &(ai, ci, at) in &wanted {
                self.attributes[ai].record(ci, &ids, &columns[at]);
            }
            stats.rows += n as u64;
            Ok(())
        })?;
        stats.duplicate_rows = hashes.duplicates()?;
        self.tables.push(stats);
        Ok(())
    }

    /// Person `p`'s linkage pseudonym as the deliveries write it.
    pub(super) fn pseudonym_text(&self, p: usize, scheme: &Scheme) -> String {
        encode_pseudonym(
            &self.pseudonyms[p * self.width..(p + 1) * self.width],
            scheme,
        )
    }

    pub(super) fn persons(&self) -> usize {
        self.presence.len()
    }

    /// The person table: the linkage pseudonym, each attribute, and a presence flag per source, in
    /// order of first appearance.
    pub(super) fn write_person_table(
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
                    range.clone().map(|p| self.pseudonym_text(p, scheme)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A holder table whose person column holds a value that is not a pseudonym of the scheme is
    /// refused, naming the table, the row (counted across batches) and the column, never the value.
    #[test]
    fn a_value_that_is_not_a_pseudonym_is_refused_by_its_row() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cases.parquet");
        let pseudonym = hex::encode(&[0x5a; 16]);
        let raw = "1850175123456";
        for (bad, expected_row) in [(raw, 3), ("5A".repeat(16).as_str(), 3)] {
            let mut df = df!("person" => [Some(pseudonym.as_str()), None, Some(bad)]).unwrap();
            ParquetWriter::new(std::fs::File::create(&path).unwrap())
                .finish(&mut df)
                .unwrap();
            let source = Source::for_test(
                tmp.path(),
                "person",
                serde_json::json!([]),
                vec![LinkedTable {
                    dataset: "cases".into(),
                    path: path.clone(),
                    columns: vec!["person".into()],
                }],
            );
            // Two rows a batch: the value is the second batch's first row.
            let e = Index::build(&[source], &Scheme::hex128(), Vec::new(), tmp.path(), 2)
                .err()
                .expect("refused");
            let message = e.to_string();
            assert!(
                message.contains(&format!(
                    "table `cases`, row {expected_row}, column `person`"
                )) && message.contains("not a 128-bit hex pseudonym"),
                "{message}"
            );
            assert!(!message.contains(bad), "{message}");
        }
    }

    /// Holders spelling one attribute value differently (case, full width, an accent written
    /// apart, an invisible character) agree on it; the first spelling is the one delivered.
    #[test]
    fn attribute_values_are_compared_in_their_canonical_form() {
        let mut a = Attribute {
            name: "sex".into(),
            columns: Vec::new(),
            values: Vec::new(),
            codes: Default::default(),
            canonical: IdentifierRule::new(IdentifierKind::Any),
            key: String::new(),
        };
        let f = a.code("f");
        for spelling in ["F", "\u{FF26}", " f\u{200B}"] {
            assert_eq!(a.code(spelling), f, "{spelling:?}");
        }
        assert_ne!(a.code("M"), f);
        let e = a.code("Pr\u{E9}nom");
        assert_eq!(a.code("pre\u{301}nom"), e);
        assert_eq!(a.values, vec!["f", "M", "Pr\u{E9}nom"]);
    }
}
