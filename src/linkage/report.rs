//! The linkage report: overlaps of sources, rows per person, attribute consistency, with small counts
//! masked for the copy that goes with the delivery.

use std::fmt::Write;

use serde::Serialize;

use super::REPORT_FORMAT;
use crate::permit::{LinkageSpec, Permit};
use crate::report::Count;
use crate::report::html::{Figure, Page, Section, Series, escape};

use super::fuzzy::ClkMatching;
use super::index::{Attribute, Index, TableStats};
use super::{Scheme, Source};

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
    /// How the sources linked on CLKs were matched (which rule linked whom, in counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clk: Option<ClkReport>,
}

/// The fuzzy linkage of the `link_on = "clk"` sources, in counts.
#[derive(Debug, Serialize)]
pub struct ClkReport {
    pub method: String,
    pub threshold: f64,
    pub blocking: String,
    /// Persons of the pseudonym-linked sources with a CLK: those the CLK sources were matched to.
    pub linked_persons_with_clk: Count,
    pub clk_source_persons: Count,
    /// Persons whose rows carry different CLKs (the first one read was matched).
    pub persons_with_several_clks: Count,
    /// Pairs of persons of two parties at or above the threshold.
    pub candidate_pairs: Count,
    /// CLK-source persons linked, by CLK, to a person of the pseudonym-linked sources.
    pub linked_by_clk_to_pseudonym_sources: Count,
    /// CLK-source persons linked by CLK only to persons of other CLK sources.
    pub linked_by_clk_among_clk_sources: Count,
    /// CLK-source persons linked to no one (each is a person of their own).
    pub not_linked: Count,
    /// Candidate pairs by similarity, in bins of 0.05 from the threshold's.
    pub similarity_histogram: Vec<SimilarityBin>,
    /// How many groups the solver forms at the threshold and at higher ones.
    pub groups_per_threshold: Vec<ThresholdGroups>,
}

#[derive(Debug, Serialize)]
pub struct SimilarityBin {
    pub from: f64,
    pub pairs: Count,
}

#[derive(Debug, Serialize)]
pub struct ThresholdGroups {
    pub threshold: f64,
    pub groups: Count,
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

/// The report's figures, exact (`mask` None) or with small counts masked.
pub(super) fn build(
    permit: &Permit,
    l: &LinkageSpec,
    sources: &[Source],
    scheme: &Scheme,
    index: &Index,
    clk: Option<&ClkMatching>,
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
    let source_reports = source_reports(sources, index, &count, &within);
    let rows_per_person = rows_per_person(sources, index, &count);
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
    let mut verified = vec![
        "every delivery's files match its manifest (SHA-256, size, rows, footer)".to_string(),
        format!(
            "every delivery was made for permit {}",
            permit.spec.permit.id
        ),
    ];
    if clk.is_some() {
        verified.extend([
            "every delivery linked on the pseudonym uses the same linkage key, domain context and \
             pseudonym scheme, and its person columns are pseudonymised in the linkage domain"
                .to_string(),
            "every delivery linked on CLKs has pseudonymised person columns (in its holder's own \
             domain), and every CLK compared was made under one linkage schema"
                .to_string(),
        ]);
    } else {
        verified.extend([
            "every delivery uses the same linkage key, domain context and pseudonym scheme"
                .to_string(),
            "every linked person column is pseudonymised in the linkage domain".to_string(),
        ]);
    }
    LinkageReport {
        format: REPORT_FORMAT,
        permit_id: permit.spec.permit.id.clone(),
        engine_version: crate::ENGINE_VERSION,
        masking,
        checks: Checks {
            linkage_domain: l.domain.clone(),
            linkage_context: scheme.domain_context.clone(),
            linkage_key_fingerprint: scheme.key_fingerprint.clone(),
            pseudonym_version: scheme.version.clone(),
            pseudonym_encoding: scheme.encoding.clone(),
            pseudonym_bits: scheme.bits,
            verified,
        },
        sources: source_reports,
        persons: count(index.persons() as u64),
        combinations,
        pairs,
        rows_per_person,
        consistency,
        clk: clk.map(|m| ClkReport {
            method: "Sørensen–Dice of CLKs (clkhash 0.18), anonlink 0.15's greedy one-to-one \
                     solver; pseudonym-linked persons as one party, each CLK source as another"
                .into(),
            threshold: m.threshold,
            blocking: m.blocking.clone(),
            linked_persons_with_clk: count(m.linked_persons_with_clk),
            clk_source_persons: count(m.clk_persons),
            persons_with_several_clks: count(m.persons_with_several_clks),
            candidate_pairs: count(m.candidate_pairs),
            linked_by_clk_to_pseudonym_sources: count(m.matched_to_linked),
            linked_by_clk_among_clk_sources: count(m.matched_among_clk_sources),
            not_linked: count(m.unmatched),
            similarity_histogram: m
                .histogram
                .iter()
                .map(|&(from, n)| SimilarityBin {
                    from,
                    pairs: count(n),
                })
                .collect(),
            groups_per_threshold: m
                .groups_per_threshold
                .iter()
                .map(|&(threshold, n)| ThresholdGroups {
                    threshold,
                    groups: count(n),
                })
                .collect(),
        }),
    }
}

/// The invalid and missing identifier counts the holder reported for the person column of
/// `dataset` (None when its report cannot be read).
fn holder_counts(s: &Source, dataset: &str) -> (Option<u64>, Option<u64>) {
    let text =
        std::fs::read_to_string(s.dir.join(crate::delivery::REPORT_JSON)).unwrap_or_default();
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
}

/// Per delivery: its rows, persons and, per table, what the holder reported.
fn source_reports(
    sources: &[Source],
    index: &Index,
    count: &impl Fn(u64) -> Count,
    within: &impl Fn(usize) -> u64,
) -> Vec<SourceReport> {
    sources
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
        .collect()
}

/// Per delivery: how many persons have 1, 2, 3… rows, and the mean.
fn rows_per_person(
    sources: &[Source],
    index: &Index,
    count: &impl Fn(u64) -> Count,
) -> Vec<RowsPerPerson> {
    let n = sources.len();
    sources
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
        .collect()
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
        if let Some(c) = &self.clk {
            s += &format!(
                "  linked on CLKs (Dice >= {}): {} of {} persons to the pseudonym-linked sources, \
                 {} among CLK sources, {} not linked ({} candidate pairs)\n",
                c.threshold,
                c.linked_by_clk_to_pseudonym_sources,
                c.clk_source_persons,
                c.linked_by_clk_among_clk_sources,
                c.not_linked,
                c.candidate_pairs
            );
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

/// The linkage section of the linked delivery's `report.html`.
impl Section for LinkageReport {
    fn write(&self, page: &mut Page) {
        let l = self;
        page.heading(2, "Linkage of the holders' deliveries");
        page.paragraph(
            "note",
            &format!(
                "{} persons across {} sources, linked on the pseudonym of domain <code>{}</code> \
             (key fingerprint <code>{}</code>, pseudonyms {} {} bits, version {}); {}.",
                l.persons,
                l.sources.len(),
                escape(&l.checks.linkage_domain),
                escape(&l.checks.linkage_key_fingerprint),
                escape(&l.checks.pseudonym_encoding),
                l.checks.pseudonym_bits,
                escape(&l.checks.pseudonym_version),
                escape(&l.masking)
            ),
        );
        let mut rows = Vec::new();
        for s in &l.sources {
            for t in &s.tables {
                rows.push(vec![
                    format!("{} ({})", s.name, s.holder),
                    t.dataset.clone(),
                    t.rows.to_string(),
                    t.persons.to_string(),
                    t.rows_without_pseudonym.to_string(),
                    t.duplicate_rows.to_string(),
                ]);
            }
        }
        page.table(
            &[
                "source",
                "table",
                "rows",
                "persons",
                "rows without pseudonym",
                "duplicate rows",
            ],
            &rows,
        );
        upset_chart(page, l);
        page.heading(3, "Consistency of person attributes");
        let mut rows = Vec::new();
        for a in &l.consistency {
            rows.push(vec![
                a.attribute.clone(),
                a.columns.join(", "),
                a.persons_compared.to_string(),
                a.persons_disagreeing.to_string(),
            ]);
        }
        page.table(
            &[
                "attribute",
                "columns",
                "persons compared",
                "persons disagreeing",
            ],
            &rows,
        );
        let categories: Vec<String> = l.consistency.iter().map(|a| a.attribute.clone()).collect();
        page.bar_chart(
            "linkage-consistency",
            "Persons whose attribute differs between sources",
            &categories,
            &[Series {
                name: "persons disagreeing",
                values: l
                    .consistency
                    .iter()
                    .map(|a| Figure::Count(a.persons_disagreeing))
                    .collect(),
            }],
            None,
        );
        if let Some(c) = &l.clk {
            clk_section(page, c);
        }
    }
}

/// The fuzzy linkage of the CLK sources: who was linked by which rule, the candidate pairs by
/// similarity, and the persons linked at higher thresholds.
fn clk_section(page: &mut Page, c: &ClkReport) {
    page.heading(3, "Linkage on CLKs");
    page.table(
        &["rule", "persons of the CLK sources"],
        &[
            vec![
                format!(
                    "linked by CLK (Dice ≥ {}) to a pseudonym-linked person",
                    c.threshold
                ),
                c.linked_by_clk_to_pseudonym_sources.to_string(),
            ],
            vec![
                "linked by CLK among CLK sources only".into(),
                c.linked_by_clk_among_clk_sources.to_string(),
            ],
            vec!["not linked".into(), c.not_linked.to_string()],
        ],
    );
    let bins: Vec<String> = c
        .similarity_histogram
        .iter()
        .map(|b| format!("{:.2}", b.from))
        .collect();
    page.bar_chart(
        "linkage-clk-similarity",
        "Candidate pairs by Dice similarity (bins of 0.05)",
        &bins,
        &[Series {
            name: "candidate pairs",
            values: c
                .similarity_histogram
                .iter()
                .map(|b| Figure::Count(b.pairs))
                .collect(),
        }],
        None,
    );
    let thresholds: Vec<String> = c
        .groups_per_threshold
        .iter()
        .map(|g| format!("{:.2}", g.threshold))
        .collect();
    page.bar_chart(
        "linkage-clk-thresholds",
        "Groups the solver forms at each threshold",
        &thresholds,
        &[Series {
            name: "groups",
            values: c
                .groups_per_threshold
                .iter()
                .map(|g| Figure::Count(g.groups))
                .collect(),
        }],
        None,
    );
}

/// Persons in exactly each combination of sources: a bar per combination over a matrix of dots
/// marking its sources (an UpSet plot), combinations by decreasing size.
fn upset_chart(page: &mut Page, l: &LinkageReport) {
    const COLUMN: f64 = 46.0;
    const LABEL: f64 = 110.0;
    const PLOT: f64 = 180.0;
    const ROW: f64 = 22.0;
    let mut combinations: Vec<_> = l.combinations.iter().collect();
    combinations.sort_by(|a, b| {
        Figure::Count(b.persons)
            .length()
            .total_cmp(&Figure::Count(a.persons).length())
    });
    let longest = combinations
        .first()
        .map_or(0.0, |c| Figure::Count(c.persons).length());
    let scale = if longest > 0.0 { PLOT / longest } else { 0.0 };
    let width = LABEL + COLUMN * combinations.len() as f64 + 10.0;
    let base = 40.0 + PLOT;
    let height = base + 10.0 + ROW * l.sources.len() as f64;
    let title = "Persons in exactly these sources";
    let _ = writeln!(
        page.body,
        "<svg class=\"chart\" id=\"linkage-overlap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{title}\">\n<title>{title}</title>\n<text x=\"0\" y=\"14\" font-weight=\"600\">{title}</text>"
    );
    for (si, s) in l.sources.iter().enumerate() {
        let _ = writeln!(
            page.body,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LABEL - 8.0,
            base + 14.0 + ROW * si as f64,
            escape(&s.name)
        );
    }
    for (ci, c) in combinations.iter().enumerate() {
        let x = LABEL + COLUMN * ci as f64;
        let figure = Figure::Count(c.persons);
        let h = figure.length() * scale;
        if figure.length() > 0.0 {
            let masked = matches!(c.persons, Count::Below(_));
            let _ = writeln!(
                page.body,
                "<rect class=\"bar s1{}\" x=\"{}\" y=\"{:.2}\" width=\"{}\" height=\"{:.2}\"><title>{}: {}</title></rect>",
                if masked { " masked" } else { "" },
                x + 8.0,
                base - h.max(1.0),
                COLUMN - 16.0,
                h.max(1.0),
                escape(&c.sources.join(" + ")),
                escape(&figure.label())
            );
        }
        let _ = writeln!(
            page.body,
            "<text x=\"{}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>",
            x + COLUMN / 2.0,
            base - h.max(1.0) - 4.0,
            escape(&figure.label())
        );
        let mut dots = Vec::new();
        for (si, s) in l.sources.iter().enumerate() {
            let cy = base + 10.0 + ROW * si as f64;
            let inside = c.sources.contains(&s.name);
            if inside {
                dots.push(cy);
            }
            let _ = writeln!(
                page.body,
                "<circle class=\"{}\" cx=\"{}\" cy=\"{cy}\" r=\"6\"/>",
                if inside { "in" } else { "out" },
                x + COLUMN / 2.0
            );
        }
        if let (Some(first), Some(last)) = (dots.first(), dots.last()) {
            let _ = writeln!(
                page.body,
                "<line class=\"upset\" x1=\"{x}\" y1=\"{first}\" x2=\"{x}\" y2=\"{last}\"/>",
                x = x + COLUMN / 2.0
            );
        }
    }
    page.body += "</svg>\n";
}
