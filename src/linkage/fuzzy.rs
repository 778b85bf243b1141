//! Fuzzy linkage on CLKs, for sources without the shared identifier (`link_on = "clk"`): their
//! persons are matched to the others' by the CLKs the holders delivered (Sørensen–Dice at the
//! permit's threshold, anonlink's greedy one-to-one solver), and their tables are rewritten with the
//! linkage pseudonym of the person each row was matched to, so that the index, the person table
//! and the re-pseudonymisation treat them as any other source.
//!
//! The parties matched are the persons of the pseudonym-linked sources that deliver a CLK (one
//! party: they are already linked exactly among themselves) and each CLK source. A CLK-source
//! person matched to no pseudonym-linked person gets a linkage key of its own, derived from its
//! source's name and its holder pseudonym (shared by the CLK-source persons matched to it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::delivery::{CLK_DOMAIN, DatasetWriter};
use crate::error::{Error, Result};
use crate::kernels::clk_matching::{self, Candidate, Lsh};
use crate::kernels::hex;
use crate::permit::{ClkBlockingSpec, LinkOn, LinkageSpec};

use super::index::{decode_pseudonym, encode_pseudonym};
use super::{Scheme, Source};

/// What the CLK matching found, for the linkage report (exact counts).
#[derive(Debug, Clone, Default)]
pub(super) struct ClkMatching {
    pub(super) threshold: f64,
    /// The blocking, in words (none: every pair compared).
    pub(super) blocking: String,
    /// Persons of the pseudonym-linked sources with a CLK, matched against.
    pub(super) linked_persons_with_clk: u64,
    /// Persons of the CLK sources.
    pub(super) clk_persons: u64,
    /// Persons whose rows carry more than one CLK (the first one read is matched).
    pub(super) persons_with_several_clks: u64,
    pub(super) candidate_pairs: u64,
    /// CLK-source persons matched to a pseudonym-linked person.
    pub(super) matched_to_linked: u64,
    /// CLK-source persons matched only to persons of other CLK sources.
    pub(super) matched_among_clk_sources: u64,
    /// CLK-source persons matched to no one.
    pub(super) unmatched: u64,
    /// Candidate pairs per similarity bin: `[lower bound, count]`, bins of 0.05 from the threshold.
    pub(super) histogram: Vec<(f64, u64)>,
    /// Groups the solver forms when only the pairs at or above each threshold are kept.
    pub(super) groups_per_threshold: Vec<(f64, u64)>,
}

fn lsh(b: ClkBlockingSpec) -> Lsh {
    Lsh {
        bands: b.bands,
        bits: b.bits,
    }
}

/// One party's persons (their key as read) and CLKs.
#[derive(Default)]
struct Party {
    persons: Vec<String>,
    clks: Vec<Vec<u8>>,
}

/// Reads `table`'s (person, CLK) pairs: each person once, with the first CLK read.
fn read_party(
    source: &Source,
    table: &str,
    column: &str,
    batch_rows: usize,
    out: &mut Party,
    seen: &mut HashMap<String, usize>,
    several: &mut u64,
) -> Result<()> {
    let t = source
        .tables
        .iter()
        .find(|t| t.dataset == table)
        .expect("verified: the CLK table is linked");
    let names = [source.person.clone(), column.to_string()];
    let mut row = 0u64;
    crate::source::read_parquet_text(&t.path, &names, batch_rows, |df| {
        let columns = crate::source::str_values(df.columns())?;
        for (person, clk) in columns[0].iter().zip(&columns[1]) {
            row += 1;
            let (Some(person), Some(clk)) = (person, clk) else {
                continue;
            };
            let bytes = hex::base64_decode(clk).ok_or_else(|| {
                Error::verify(
                    &t.path,
                    format!(
                        "source `{}`, table `{table}`, row {row}, column `{column}`: not a base64 \
                         CLK (value not shown)",
                        source.name
                    ),
                )
            })?;
            match seen.get(*person) {
                Some(&i) => *several += u64::from(out.clks[i] != bytes),
                None => {
                    seen.insert(person.to_string(), out.persons.len());
                    out.persons.push(person.to_string());
                    out.clks.push(bytes);
                }
            }
        }
        Ok(())
    })
}

/// The linkage key of a CLK-source person matched to no pseudonym-linked person: SHA-256 of the
/// source's name and the holder's pseudonym, cut to the pseudonyms' width.
fn own_key(source: &str, person: &str, width: usize) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"ehds-prep clk-linked person\0");
    h.update(source.as_bytes());
    h.update([0]);
    h.update(person.as_bytes());
    h.finalize()[..width].to_vec()
}

/// A CLK source's table: the holder's file and its copy under linkage pseudonyms.
pub(super) type Rewritten = (PathBuf, PathBuf);

/// Matches the CLK sources' persons and rewrites their tables under `work` with linkage
/// pseudonyms; the sources' table paths then point to the rewritten files. Returns the matching's
/// counts and, per rewritten table, (holder file, rewritten file).
pub(super) fn link_clk_sources(
    l: &LinkageSpec,
    sources: &mut [Source],
    scheme: &Scheme,
    work: &Path,
    batch_rows: usize,
) -> Result<Option<(ClkMatching, Vec<Rewritten>)>> {
    let Some(spec) = &l.clk else {
        return Ok(None);
    };
    let width = scheme.bits as usize / 8;
    let mut matching = ClkMatching {
        threshold: spec.threshold,
        blocking: match spec.blocking {
            None => "none: every pair of two parties is compared".into(),
            Some(b) => format!(
                "Hamming LSH: {} bands of {} sampled bits; a pair is compared when it agrees on \
                 every bit of one band (probability {:.4} for two CLKs agreeing on 96 % of their \
                 bits, {:.4} at 90 %)",
                b.bands,
                b.bits,
                lsh(b).compared(0.96),
                lsh(b).compared(0.90)
            ),
        },
        ..Default::default()
    };
    // Party 0: the pseudonym-linked persons with a CLK; then one party per CLK source.
    let mut parties = vec![Party::default()];
    let mut clk_sources = Vec::new();
    let mut seen = HashMap::new();
    for (si, (s, spec)) in sources.iter().zip(&l.sources).enumerate() {
        let Some((table, column)) = spec.clk.as_deref().and_then(|c| c.split_once('.')) else {
            continue;
        };
        if spec.link_on == LinkOn::Clk {
            let mut party = Party::default();
            let mut own = HashMap::new();
            let several = &mut matching.persons_with_several_clks;
            read_party(s, table, column, batch_rows, &mut party, &mut own, several)?;
            matching.clk_persons += party.persons.len() as u64;
            parties.push(party);
            clk_sources.push(si);
        } else {
            let several = &mut matching.persons_with_several_clks;
            read_party(
                s,
                table,
                column,
                batch_rows,
                &mut parties[0],
                &mut seen,
                several,
            )?;
        }
    }
    matching.linked_persons_with_clk = parties[0].persons.len() as u64;
    let packed: Vec<clk_matching::Source> = parties
        .iter()
        .map(|p| {
            let lengths: Vec<usize> = p.clks.iter().map(Vec::len).collect();
            if lengths.windows(2).any(|w| w[0] != w[1]) {
                return Err(Error::Verify {
                    path: work.into(),
                    message: "the delivered CLKs have different lengths: the holders used \
                              different linkage schemas"
                        .into(),
                });
            }
            let clks: Vec<&[u8]> = p.clks.iter().map(Vec::as_slice).collect();
            Ok(clk_matching::Source::new(&clks))
        })
        .collect::<Result<_>>()?;
    let candidates = match spec.blocking {
        None => clk_matching::candidates(&packed, spec.threshold),
        Some(b) => clk_matching::candidates_blocked(&packed, spec.threshold, &lsh(b)),
    };
    let groups = clk_matching::greedy_solve(&candidates);
    matching.candidate_pairs = candidates.len() as u64;
    matching.histogram = histogram(&candidates, spec.threshold);
    matching.groups_per_threshold = groups_per_threshold(&candidates, spec.threshold, groups.len());
    // Each CLK-source person's linkage key: the pseudonym-linked person of its group, else the
    // own key of the group's first CLK-source person.
    let mut keys: Vec<Vec<Option<Vec<u8>>>> = parties[1..]
        .iter()
        .map(|p| vec![None; p.persons.len()])
        .collect();
    for group in groups {
        let linked = group.iter().find(|(party, _)| *party == 0).map(|&(_, i)| {
            let mut out = [0u8; 32];
            decode_pseudonym(&parties[0].persons[i as usize], scheme, &mut out)
                .map(|()| out[..width].to_vec())
        });
        let to_linked = linked.is_some();
        let key = match linked {
            Some(Some(key)) => key,
            Some(None) => {
                return Err(Error::Verify {
                    path: work.into(),
                    message: format!(
                        "a person column linked on pseudonyms holds a value that is not a {}-bit \
                         {} pseudonym (value not shown)",
                        scheme.bits, scheme.encoding
                    ),
                });
            }
            None => {
                let &(party, i) = group.iter().find(|(p, _)| *p != 0).expect("a group of two");
                let si = clk_sources[party as usize - 1];
                own_key(
                    &sources[si].name,
                    &parties[party as usize].persons[i as usize],
                    width,
                )
            }
        };
        for &(party, i) in group.iter().filter(|(p, _)| *p != 0) {
            keys[party as usize - 1][i as usize] = Some(key.clone());
            if to_linked {
                matching.matched_to_linked += 1;
            } else {
                matching.matched_among_clk_sources += 1;
            }
        }
    }
    matching.unmatched = keys.iter().flatten().filter(|k| k.is_none()).count() as u64;
    let mut rewritten = Vec::new();
    for (ci, &si) in clk_sources.iter().enumerate() {
        let party = &parties[ci + 1];
        let map: HashMap<&str, &[u8]> = party
            .persons
            .iter()
            .zip(&keys[ci])
            .filter_map(|(p, k)| Some((p.as_str(), k.as_deref()?)))
            .collect();
        let source = &mut sources[si];
        for ti in 0..source.tables.len() {
            let from = source.tables[ti].path.clone();
            let to = work.join(format!("clk-linked-{si}-{ti}.parquet"));
            rewrite(source, &from, &to, &map, scheme, batch_rows)?;
            rewritten.push((from, to.clone()));
            source.tables[ti].path = to;
        }
    }
    Ok(Some((matching, rewritten)))
}

/// Copies a CLK source's table with its person column replaced by the linkage pseudonym of each
/// row's person; the holder's bytes are checked against its manifest before and after reading.
fn rewrite(
    source: &Source,
    from: &Path,
    to: &Path,
    map: &HashMap<&str, &[u8]>,
    scheme: &Scheme,
    batch_rows: usize,
) -> Result<()> {
    let file = from
        .strip_prefix(&source.dir)
        .expect("a table of the delivery");
    let record = source
        .manifest
        .datasets
        .iter()
        .find(|d| Path::new(&d.file) == file)
        .expect("verified");
    let unchanged = || -> Result<()> {
        let (sha, _) = crate::delivery::sha256_file(from).map_err(|e| Error::output(from, e))?;
        if sha != record.sha256 {
            return Err(Error::verify(
                from,
                "changed between its verification and its reading: nothing is delivered",
            ));
        }
        Ok(())
    };
    unchanged()?;
    let width = scheme.bits as usize / 8;
    let mut writer: Option<DatasetWriter> = None;
    crate::source::read_parquet_frames(from, batch_rows, |mut df| {
        let linked: StringChunked = df
            .column(&source.person)?
            .str()?
            .iter()
            .map(|p| {
                p.map(|p| match map.get(p) {
                    Some(key) => encode_pseudonym(key, scheme),
                    None => encode_pseudonym(&own_key(&source.name, p, width), scheme),
                })
            })
            .collect();
        df.replace(
            &source.person,
            linked
                .with_name(source.person.as_str().into())
                .into_column(),
        )?;
        if writer.is_none() {
            writer = Some(DatasetWriter::create(to.into(), df.schema(), Vec::new())?);
        }
        writer.as_mut().expect("created").write(df)
    })?;
    match writer {
        Some(w) => {
            w.finish()?;
        }
        None => {
            // No row: an empty table of the same columns.
            let df =
                ParquetReader::new(std::fs::File::open(from).map_err(|e| Error::output(from, e))?)
                    .finish()
                    .map_err(|e| Error::output(from, e))?;
            let w = DatasetWriter::create(to.into(), df.schema(), Vec::new())?;
            w.finish()?;
        }
    }
    unchanged()
}

/// Candidate pairs per bin of 0.05 similarity, from the threshold's bin to 1.
fn histogram(candidates: &[Candidate], threshold: f64) -> Vec<(f64, u64)> {
    let first = bin_of(threshold);
    let mut bins = vec![0u64; 21 - first];
    for c in candidates {
        let b = bin_of(c.similarity).clamp(first, 20);
        bins[b - first] += 1;
    }
    bins.into_iter()
        .enumerate()
        .map(|(i, n)| ((first + i) as f64 / 20.0, n))
        .collect()
}

/// The bin of 0.05 a similarity falls in (0 to 20; a value a rounding error below a bin's bound
/// counts in that bin).
fn bin_of(similarity: f64) -> usize {
    ((similarity * 20.0 + 1e-9).floor() as usize).min(20)
}

/// Groups formed at the threshold (`at_threshold`, solved already) and at each multiple of 0.05
/// above it (the pairs are most similar first, so each threshold's pairs are a prefix).
fn groups_per_threshold(
    candidates: &[Candidate],
    threshold: f64,
    at_threshold: usize,
) -> Vec<(f64, u64)> {
    let steps = (bin_of(threshold) + 1..=20).map(|k| {
        let t = k as f64 / 20.0;
        let kept = candidates.partition_point(|c| c.similarity >= t);
        (
            t,
            clk_matching::greedy_solve(&candidates[..kept]).len() as u64,
        )
    });
    std::iter::once((threshold, at_threshold as u64))
        .chain(steps)
        .collect()
}

/// Checks, at verification, that the CLK columns named by the permit exist and are CLKs made
/// under one linkage schema and one CLK secret (the SHA-256 and fingerprint the manifests record).
pub(super) fn check_clk_columns(l: &LinkageSpec, sources: &[Source]) -> Result<()> {
    let mut schema: Option<(String, (String, String))> = None;
    for (s, spec) in sources.iter().zip(&l.sources) {
        let Some(reference) = &spec.clk else {
            continue;
        };
        let (table, column) = reference.split_once('.').unwrap_or((reference, ""));
        let field = s
            .manifest
            .datasets
            .iter()
            .filter(|d| d.name == table && s.tables.iter().any(|t| t.dataset == table))
            .flat_map(|d| &d.schema)
            .find(|f| f.name == column);
        let Some(field) = field.filter(|f| f.domain.as_deref() == Some(CLK_DOMAIN)) else {
            return Err(Error::verify(
                &s.dir,
                format!(
                    "source `{}`: `{reference}` is not a CLK column of a linked table of this \
                     delivery; nothing was written",
                    s.name
                ),
            ));
        };
        let after = |marker: &str, end: char| {
            field
                .transformation
                .split(marker)
                .nth(1)
                .and_then(|t| t.split(end).next())
                .unwrap_or_default()
                .to_string()
        };
        let made = (after("(SHA-256 ", ')'), after("of fingerprint ", ','));
        match &schema {
            None => schema = Some((s.name.clone(), made)),
            Some((first, theirs)) if theirs.0 != made.0 => {
                return Err(Error::verify(
                    &s.dir,
                    format!(
                        "source `{}`: its CLKs were made under another linkage schema than \
                         source `{first}`'s (SHA-256 {}, not {}): they cannot be compared; \
                         nothing was written",
                        s.name, made.0, theirs.0
                    ),
                ));
            }
            Some((first, theirs)) if theirs.1 != made.1 => {
                return Err(Error::verify(
                    &s.dir,
                    format!(
                        "source `{}`: its CLKs were made with another CLK secret than source \
                         `{first}`'s (fingerprint {}, not {}): they would never match; \
                         nothing was written",
                        s.name, made.1, theirs.1
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(similarity: f64, a: u32, b: u32) -> Candidate {
        Candidate {
            similarity,
            first: (0, a),
            second: (1, b),
        }
    }

    /// Bins start at the threshold's bin; a similarity of 1 is in the last bin; each threshold
    /// counts the groups of the pairs at or above it.
    #[test]
    fn histogram_and_groups_follow_the_thresholds() {
        let c = [
            pair(1.0, 0, 0),
            pair(0.93, 1, 1),
            pair(0.86, 2, 2),
            pair(0.81, 3, 2),
        ];
        let h = histogram(&c, 0.8);
        assert_eq!(h.len(), 5);
        assert_eq!(h.iter().map(|b| b.1).collect::<Vec<_>>(), [1, 1, 1, 0, 1]);
        assert_eq!(histogram(&c, 0.85)[0].0, 0.85);
        assert!((h[0].0 - 0.8).abs() < 1e-12);
        let g = groups_per_threshold(&c, 0.8, clk_matching::greedy_solve(&c).len());
        let counts: Vec<u64> = g.iter().map(|x| x.1).collect();
        // 0.80: record 3 cannot join record 2's group (one to one); 0.85: 3; 0.90: 2; 0.95: 1.
        assert_eq!(counts, [3, 3, 2, 1, 1]);
    }

    /// A person's own key depends on its source and holder pseudonym only, at the scheme's width.
    #[test]
    fn own_keys_are_per_source_and_person() {
        let a = own_key("cohort", "p1", 16);
        assert_eq!(a.len(), 16);
        assert_eq!(a, own_key("cohort", "p1", 16));
        assert_ne!(a, own_key("cohort", "p2", 16));
        assert_ne!(a, own_key("biobank", "p1", 16));
    }
}
