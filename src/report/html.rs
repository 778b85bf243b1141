//! Reports for people: one self-contained HTML file per delivery (`report.html`), per `link` and per
//! `assess`, rendered from the same figures as the JSON reports. Charts are inline SVG; the page has no
//! script and fetches nothing, so it reads offline in any browser and can be archived with the delivery.
//!
//! Every chart is an `<svg class="chart">` whose bars are `<rect class="bar">`, one per non-zero
//! figure, so that a browser test can count them. With a masking threshold, counts from 1 to
//! threshold − 1 are shown as "< threshold" and drawn as an outlined bar of that length.

use std::fmt::Write;

use crate::privacy::anonymise::AnonymisationReport;
use crate::privacy::risk::{RiskSummary, SizeBucket};
use crate::report::{Count, DatasetReport, RunReport};

/// A figure as a chart and a table show it.
#[derive(Clone, Copy)]
pub(crate) enum Figure {
    Count(Count),
    /// A share or a risk in [0, 1], shown as a percentage.
    Share(f64),
}

impl Figure {
    pub(crate) fn length(&self) -> f64 {
        match self {
            Figure::Count(Count::Exact(n)) => *n as f64,
            Figure::Count(Count::Below(t)) => *t as f64,
            Figure::Share(x) => *x,
        }
    }

    pub(crate) fn label(&self) -> String {
        match self {
            Figure::Count(c) => c.to_string(),
            Figure::Share(x) => format!("{:.1} %", x * 100.0),
        }
    }
}

/// Counts as a report meant for its reader shows them.
#[derive(Clone, Copy)]
pub struct Masking(Option<u64>);

impl Masking {
    pub const NONE: Masking = Masking(None);

    /// Counts from 1 to `threshold − 1` shown as "< threshold".
    pub fn below(threshold: u64) -> Masking {
        Masking((threshold > 1).then_some(threshold))
    }

    fn count(&self, n: u64) -> Count {
        match self.0 {
            Some(t) if n > 0 && n < t => Count::Below(t),
            _ => Count::Exact(n),
        }
    }

    fn describe(&self) -> String {
        match self.0 {
            Some(t) => format!("counts from 1 to {} are shown as \"&lt; {t}\"", t - 1),
            None => "counts are exact".into(),
        }
    }
}

/// One bar series of a chart.
pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    pub(crate) values: Vec<Figure>,
}

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #1b1f24; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccd; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .5em 0 1em; } th, td { padding: .2em .7em; border-bottom: 1px solid #e3e6ea; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; } .muted { color: #777; } .warning { color: #8a2a00; font-weight: 600; }
svg.chart { display: block; margin: .5em 0 1.2em; }
svg.chart text { font: 12px system-ui, sans-serif; fill: #1b1f24; }
rect.s0 { fill: #9aa5b1; } rect.s1 { fill: #2f6db5; } rect.s2 { fill: #c4622d; }
rect.masked { fill: none; stroke: #555; stroke-dasharray: 3 2; }
circle.in { fill: #1b1f24; } circle.out { fill: #d5d9de; } line.upset { stroke: #1b1f24; stroke-width: 2; }
.legend rect { stroke: none; }
td { overflow-wrap: anywhere; }
@media print {
  body { max-width: none; margin: 0; font-size: 11px; }
  h2 { break-before: page; } h2:first-of-type { break-before: auto; }
  table, svg.chart { break-inside: avoid; }
}
";

/// A page being written: sections append HTML, `finish` wraps it.
pub struct Page {
    pub(crate) body: String,
}

/// A section another part of the engine adds to a delivery's report (`link`'s linkage section).
pub trait Section {
    fn write(&self, page: &mut Page);
}

impl Page {
    fn new() -> Page {
        Page {
            body: String::new(),
        }
    }

    pub(crate) fn heading(&mut self, level: u8, text: &str) {
        let _ = writeln!(self.body, "<h{level}>{}</h{level}>", escape(text));
    }

    pub(crate) fn paragraph(&mut self, class: &str, html: &str) {
        let _ = writeln!(self.body, "<p class=\"{class}\">{html}</p>");
    }

    /// A table of text cells; cells starting with a digit or `<` (a masked count) are right-aligned.
    pub(crate) fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.body += "<table>\n<tr>";
        for h in header {
            let _ = write!(self.body, "<th>{}</th>", escape(h));
        }
        self.body += "</tr>\n";
        for row in rows {
            self.body += "<tr>";
            for cell in row {
                let numeric = cell
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c == '<');
                let class = if numeric { " class=\"n\"" } else { "" };
                let _ = write!(self.body, "<td{class}>{}</td>", escape(cell));
            }
            self.body += "</tr>\n";
        }
        self.body += "</table>\n";
    }

    /// A horizontal bar chart: one group of bars per category, one bar per series. `max` fixes the
    /// scale (shares), otherwise the longest bar fills the width.
    pub(crate) fn bar_chart(
        &mut self,
        id: &str,
        title: &str,
        categories: &[String],
        series: &[Series],
        max: Option<f64>,
    ) {
        const LABEL: f64 = 190.0;
        const PLOT: f64 = 380.0;
        const BAR: f64 = 14.0;
        const GAP: f64 = 8.0;
        let group = BAR * series.len() as f64 + GAP;
        let legend = if series.len() > 1 { 22.0 } else { 0.0 };
        let height = 24.0 + legend + group * categories.len() as f64;
        let longest = max.unwrap_or_else(|| {
            series
                .iter()
                .flat_map(|s| s.values.iter().map(Figure::length))
                .fold(0.0, f64::max)
        });
        let scale = if longest > 0.0 { PLOT / longest } else { 0.0 };
        let _ = writeln!(
            self.body,
            "<svg class=\"chart\" id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"680\" height=\"{height}\" role=\"img\" aria-label=\"{}\">\n<title>{}</title>",
            escape(id),
            escape(title),
            escape(title)
        );
        let _ = writeln!(
            self.body,
            "<text x=\"0\" y=\"14\" font-weight=\"600\">{}</text>",
            escape(title)
        );
        if series.len() > 1 {
            self.body += "<g class=\"legend\">";
            let mut x = LABEL;
            for (i, s) in series.iter().enumerate() {
                let _ = write!(
                    self.body,
                    "<rect class=\"s{i}\" x=\"{x}\" y=\"26\" width=\"12\" height=\"12\"/><text x=\"{}\" y=\"37\">{}</text>",
                    x + 16.0,
                    escape(s.name)
                );
                x += 24.0 + 8.0 * s.name.len() as f64;
            }
            self.body += "</g>\n";
        }
        for (c, category) in categories.iter().enumerate() {
            let top = 24.0 + legend + group * c as f64;
            let _ = writeln!(
                self.body,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                LABEL - 8.0,
                top + group / 2.0 + 1.0,
                escape(category)
            );
            for (i, s) in series.iter().enumerate() {
                let figure = s.values[c];
                let y = top + BAR * i as f64;
                let width = figure.length() * scale;
                if figure.length() > 0.0 {
                    let masked = matches!(figure, Figure::Count(Count::Below(_)));
                    let _ = writeln!(
                        self.body,
                        "<rect class=\"bar s{i}{}\" x=\"{LABEL}\" y=\"{y}\" width=\"{:.2}\" height=\"{}\"><title>{}: {}</title></rect>",
                        if masked { " masked" } else { "" },
                        width.max(1.0),
                        BAR - 2.0,
                        escape(s.name),
                        escape(&figure.label())
                    );
                }
                let _ = writeln!(
                    self.body,
                    "<text x=\"{:.2}\" y=\"{}\">{}</text>",
                    LABEL + width.max(1.0) + 4.0,
                    y + BAR - 3.0,
                    escape(&figure.label())
                );
            }
        }
        self.body += "</svg>\n";
    }

    fn finish(self, title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n{}</body>\n</html>\n",
            escape(title),
            escape(title),
            self.body
        )
    }
}

/// `report.html` of a delivery: the run report, and with `linkage`, its section (the overlaps and
/// consistency of `link`).
pub fn delivery_report(
    run: &RunReport,
    manifest: &crate::delivery::Manifest,
    linkage: Option<&dyn Section>,
    masking: Masking,
) -> String {
    let mut page = Page::new();
    page.paragraph(
        "note",
        &format!(
            "Permit <b>{}</b>, engine {}; delivery <code>{}</code>. Figures are counts of rows (and of \
             persons where stated), never values; {}.",
            escape(&run.permit_id),
            escape(&run.engine_version),
            escape(&run.output),
            masking.describe()
        ),
    );
    let count = |n: u64| masking.count(n).to_string();
    page.table(
        &[
            "dataset",
            "rows read",
            "outside cohort",
            "opted out",
            "rejected",
            "suppressed",
            "suppressed elsewhere",
            "delivered",
        ],
        &run.datasets
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    count(d.rows_read),
                    count(d.rows_outside_cohort),
                    count(d.rows_opted_out),
                    count(d.rows_rejected),
                    count(suppressed_rows(d)),
                    count(d.rows_of_removed_persons),
                    count(d.rows_delivered),
                ]
            })
            .collect::<Vec<_>>(),
    );
    if let Some(o) = &run.opt_out {
        page.paragraph(
            "muted",
            &format!(
                "Opt-out list: {} entries read, {} valid, {} matched a row of the cohort.",
                escape(&count(o.entries_read as u64)),
                escape(&count(o.entries_valid as u64)),
                escape(&count(o.entries_matched as u64))
            ),
        );
        if o.entries_invalid > 0 {
            page.paragraph(
                "warning",
                &format!(
                    "{} opt-out entries are not valid identifiers; the permit keeps them as \
                     written, and they match only rows written the same way.",
                    escape(&count(o.entries_invalid as u64))
                ),
            );
        }
    }
    audit_record(&mut page, run, manifest);
    if let Some(section) = linkage {
        section.write(&mut page);
    }
    for d in &run.datasets {
        dataset_section(&mut page, d, masking);
    }
    let t = &run.timings_ms;
    page.heading(2, "Effort");
    page.table(
        &["stage", "milliseconds"],
        &[
            ("read", t.read),
            ("transform", t.transform),
            ("write", t.write),
            ("finalise", t.finalise),
            ("total (wall)", t.total),
        ]
        .iter()
        .map(|(s, ms)| vec![s.to_string(), ms.to_string()])
        .collect::<Vec<_>>(),
    );
    page.finish(&format!("Delivery report — permit {}", run.permit_id))
}

/// What a data protection officer signs: the permit, the run, every file read (size and SHA-256)
/// and every key by fingerprint. Each dataset's section then gives its models with what was
/// reached.
fn audit_record(page: &mut Page, run: &RunReport, manifest: &crate::delivery::Manifest) {
    page.heading(2, "Audit record");
    let p = &run.permit;
    page.table(
        &["", ""],
        &[
            ("permit", p.id.as_str()),
            ("purpose", p.purpose.as_str()),
            ("holder", p.holder.as_str()),
            ("recipient", p.recipient.as_str()),
            ("run started (UTC)", run.started_at.as_str()),
            ("engine version", run.engine_version.as_str()),
            ("delivery", run.output.as_str()),
        ]
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.to_string()])
        .collect::<Vec<_>>(),
    );
    page.heading(3, "Files read");
    page.table(
        &["role", "file", "bytes", "SHA-256"],
        &manifest
            .inputs
            .iter()
            .map(|i| {
                let name = std::path::Path::new(&i.path)
                    .file_name()
                    .map_or(i.path.clone(), |n| n.to_string_lossy().into_owned());
                vec![i.role.clone(), name, i.bytes.to_string(), i.sha256.clone()]
            })
            .collect::<Vec<_>>(),
    );
    page.heading(3, "Keys (by fingerprint)");
    page.table(
        &["pseudonym domain", "key fingerprint"],
        &manifest
            .domains
            .iter()
            .map(|d| vec![d.name.clone(), d.key_fingerprint.clone()])
            .collect::<Vec<_>>(),
    );
}

/// The HTML of `assess --permit`: each anonymised dataset's chosen (or pinned) transformation.
pub fn assessment_report(
    permit_id: &str,
    assessed: &[(String, Option<AnonymisationReport>)],
) -> String {
    let mut page = Page::new();
    page.paragraph(
        "note",
        &format!(
            "Assessment of permit <b>{}</b>: nothing was written; the figures are those a run would deliver.",
            escape(permit_id)
        ),
    );
    for (name, a) in assessed {
        page.heading(2, &format!("Dataset {name}"));
        match a {
            Some(a) => anonymisation_section(&mut page, name, a, Masking::NONE),
            None => page.paragraph(
                "note",
                "No transformation within the permitted levels and suppression limit meets the models.",
            ),
        }
    }
    page.finish(&format!("Privacy assessment — permit {permit_id}"))
}

/// The HTML of `assess --input`: the class sizes and risks of one file.
pub fn risk_report(file: &str, quasi_identifiers: &[String], risk: &RiskSummary) -> String {
    let mut page = Page::new();
    page.paragraph(
        "note",
        &format!(
            "File <code>{}</code>, quasi-identifiers {}; class sizes in {}.",
            escape(file),
            escape(&quasi_identifiers.join(", ")),
            if risk.sizes_in_persons {
                "persons"
            } else {
                "records"
            }
        ),
    );
    class_size_chart(
        &mut page,
        "classes",
        "Records by class size",
        &[("records", risk)],
        Masking::NONE,
    );
    risk_chart(&mut page, "risk", &[("file", risk)]);
    page.finish("Re-identification risk")
}

/// Rows a dataset's own model left out: its classes' (when removed) or its set-valued persons'.
fn suppressed_rows(d: &DatasetReport) -> u64 {
    d.anonymisation
        .as_ref()
        .filter(|a| a.suppressed_rows_are == "removed")
        .map_or(0, |a| a.rows_suppressed)
        + d.set_valued.as_ref().map_or(0, |s| s.rows_suppressed)
}

fn dataset_section(page: &mut Page, d: &DatasetReport, masking: Masking) {
    page.heading(2, &format!("Dataset {}", d.name));
    for e in &d.birth_date_echoes {
        page.paragraph(
            "warning",
            &format!(
                "Column <code>{}</code> equals the birth date <code>{}</code> for {} persons: it \
                 publishes the birth date that the permit generalises. Declare \
                 <code>derives_from</code> on it (it is then released no more finely than the \
                 birth date), or drop it.",
                escape(&e.column),
                escape(&e.birth_date),
                escape(&masking.count(e.persons).to_string())
            ),
        );
    }
    let count = |n: u64| Figure::Count(masking.count(n));
    let mut flow = vec![
        ("read", d.rows_read),
        ("outside the cohort", d.rows_outside_cohort),
        ("opted out", d.rows_opted_out),
        ("rejected identifiers", d.rows_rejected),
        ("suppressed", suppressed_rows(d)),
        ("delivered", d.rows_delivered),
    ];
    if let Some(outside) = d
        .anonymisation
        .as_ref()
        .and_then(|a| a.rows_outside_research_subset)
    {
        flow.insert(4, ("outside the research subset", outside));
    }
    if d.rows_of_removed_persons > 0 {
        flow.insert(
            3,
            (
                "persons suppressed in another dataset",
                d.rows_of_removed_persons,
            ),
        );
    }
    page.bar_chart(
        &format!("{}-rows", d.name),
        "Rows, from read to delivered",
        &flow.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>(),
        &[Series {
            name: "rows",
            values: flow.iter().map(|&(_, n)| count(n)).collect(),
        }],
        None,
    );
    page.heading(3, "What each column became");
    let mut rows: Vec<Vec<String>> = d
        .columns
        .iter()
        .map(|c| {
            let mut notes = Vec::new();
            if let Some(n) = c.identifiers_invalid {
                notes.push(format!("{} invalid", masking.count(n)));
            }
            if let Some(n) = c.identifiers_missing {
                notes.push(format!("{} missing", masking.count(n)));
            }
            if let Some(n) = c.unmapped_values {
                notes.push(format!("{} unmapped", masking.count(n)));
            }
            if let Some(n) = c.partial_dates_disagreeing.filter(|&n| n > 0) {
                notes.push(format!(
                    "{} not the period of their date before the shift",
                    masking.count(n)
                ));
            }
            // A quasi-identifier's action names the search; the chosen level is known by now.
            let level = d
                .anonymisation
                .as_ref()
                .and_then(|a| a.quasi_identifiers.iter().find(|q| q.column == c.output));
            let became = match level {
                Some(q) => format!("{}: {}", c.action, q.meaning),
                None => c.action.clone(),
            };
            vec![
                c.output.clone(),
                became,
                masking.count(c.values_transformed).to_string(),
                notes.join(", "),
            ]
        })
        .collect();
    rows.extend(
        d.columns_dropped
            .iter()
            .map(|c| vec![c.clone(), "dropped".into(), "0".into(), String::new()]),
    );
    page.table(
        &["column", "became", "values written", "identifiers"],
        &rows,
    );
    page.paragraph(
        "muted",
        "Columns the permit does not declare are not read and not delivered.",
    );
    for f in &d.free_text_kept {
        page.paragraph(
            "note",
            &format!(
                "Free text delivered: <b>{}</b> — {}",
                escape(&f.column),
                escape(&f.reason)
            ),
        );
    }
    if let Some(a) = &d.anonymisation {
        anonymisation_section(page, &d.name, a, masking);
    }
    if let Some(sv) = &d.set_valued {
        page.heading(3, "Sets of codes (k^m-anonymity)");
        page.paragraph(
            "note",
            &format!(
                "Whatever {} codes of <b>{}</b> one knows of a person, at least {} delivered \
                 persons hold them (recounted from the written file: {} persons at risk). {} of \
                 {} codes were generalised along their hierarchy (by height above the code: {:?}); \
                 {} of {} persons were suppressed from every table (limit {:.1}%); information \
                 loss {:.3}.",
                sv.m,
                escape(&sv.column),
                sv.k,
                sv.persons_at_risk_after,
                sv.codes - sv.codes_by_height.first().copied().unwrap_or(0),
                sv.codes,
                sv.codes_by_height,
                sv.persons_suppressed,
                sv.persons,
                sv.suppression_limit * 100.0,
                sv.information_loss
            ),
        );
    }
}

fn anonymisation_section(
    page: &mut Page,
    dataset: &str,
    a: &AnonymisationReport,
    masking: Masking,
) {
    page.heading(3, "Anonymisation");
    page.paragraph(
        "note",
        &format!(
            "{}; optimised for {}. {} of {} transformations evaluated. Suppressed rows are {}.",
            escape(&a.models),
            escape(&a.metric),
            a.transformations_evaluated,
            a.lattice_size,
            escape(&a.suppressed_rows_are)
        ),
    );
    // What the models ask, and what the delivery reached.
    if let Some(after) = &a.risk_after {
        let unit = if after.sizes_in_persons {
            "persons"
        } else {
            "rows"
        };
        page.paragraph(
            "note",
            &format!(
                "Reached: smallest class {} {unit}; highest prosecutor risk {:.4}, average {:.4}; \
                 {} records above the risk threshold {}. Information loss: entropy {:.1}, \
                 discernibility {:.0}, average class size {:.2}, precision {:.3}, loss {:.3}.",
                escape(&masking.count(after.smallest_class).to_string()),
                after.prosecutor_highest,
                after.prosecutor_average,
                escape(&masking.count(after.records_at_risk).to_string()),
                after.risk_threshold,
                a.metrics.entropy,
                a.metrics.discernibility,
                a.metrics.aecs,
                a.metrics.precision,
                a.metrics.loss
            ),
        );
    }
    if let Some(r) = &a.sensitive_reached {
        page.paragraph(
            "note",
            &format!(
                "Reached on the sensitive values, by the least diverse class: {} distinct (\
                 distinct ℓ), entropy ℓ {:.2}{}.",
                r.l_distinct,
                r.l_entropy,
                r.t.map_or(String::new(), |t| format!(
                    "; the largest distance to the whole table's distribution: t = {t:.4}"
                ))
            ),
        );
    }
    page.table(
        &["quasi-identifier", "level", "meaning"],
        &a.quasi_identifiers
            .iter()
            .map(|q| vec![q.column.clone(), q.level.to_string(), q.meaning.clone()])
            .collect::<Vec<_>>(),
    );
    let listed = |columns: &[String]| match columns {
        [] => "none".to_string(),
        _ => escape(&columns.join(", ")),
    };
    page.paragraph(
        "note",
        &format!(
            "The guarantee covers {}. Delivered date and code columns it does not cover: {}.",
            listed(&a.coverage.covers),
            listed(&a.coverage.not_covered)
        ),
    );
    page.table(
        &[
            "rows suppressed",
            "suppression limit (rows)",
            "classes",
            "classes suppressed",
        ],
        &[vec![
            masking.count(a.rows_suppressed).to_string(),
            a.suppression_limit_rows.to_string(),
            masking.count(a.classes).to_string(),
            masking.count(a.classes_suppressed).to_string(),
        ]],
    );
    let mut sizes = vec![("before", &a.risk_before)];
    sizes.extend(a.risk_after.as_ref().map(|r| ("after", r)));
    class_size_chart(
        page,
        &format!("{dataset}-classes"),
        "Records by equivalence class size",
        &sizes,
        masking,
    );
    size_bucket_chart(
        page,
        &format!("{dataset}-suppression"),
        "Suppressed records by class size",
        &[("suppressed", &a.suppressed_by_class_size)],
        masking,
    );
    risk_chart(page, &format!("{dataset}-risk"), &sizes);
}

fn class_size_chart(
    page: &mut Page,
    id: &str,
    title: &str,
    summaries: &[(&str, &RiskSummary)],
    masking: Masking,
) {
    let buckets: Vec<(&str, &Vec<SizeBucket>)> = summaries
        .iter()
        .map(|(n, r)| (*n, &r.class_sizes))
        .collect();
    size_bucket_chart(page, id, title, &buckets, masking);
}

fn size_bucket_chart(
    page: &mut Page,
    id: &str,
    title: &str,
    series: &[(&str, &Vec<SizeBucket>)],
    masking: Masking,
) {
    let Some((_, first)) = series.first() else {
        return;
    };
    let categories: Vec<String> = first.iter().map(|b| format!("size {}", b.sizes)).collect();
    let series: Vec<Series> = series
        .iter()
        .map(|(name, buckets)| Series {
            name,
            values: buckets
                .iter()
                .map(|b| Figure::Count(masking.count(b.records)))
                .collect(),
        })
        .collect();
    page.bar_chart(id, title, &categories, &series, None);
}

fn risk_chart(page: &mut Page, id: &str, summaries: &[(&str, &RiskSummary)]) {
    let mut categories = vec![
        "highest prosecutor risk".to_string(),
        "average prosecutor risk".into(),
        "records at risk".into(),
        "sample uniques".into(),
    ];
    let with_k = summaries
        .iter()
        .all(|(_, r)| r.share_in_classes_below_k.is_some());
    if with_k {
        categories.push("records below k".into());
    }
    let series: Vec<Series> = summaries
        .iter()
        .map(|(name, r)| {
            let mut values = vec![
                Figure::Share(r.prosecutor_highest),
                Figure::Share(r.prosecutor_average),
                Figure::Share(r.share_at_risk),
                Figure::Share(r.share_sample_uniques),
            ];
            if with_k {
                values.push(Figure::Share(r.share_in_classes_below_k.unwrap_or(0.0)));
            }
            Series { name, values }
        })
        .collect();
    page.bar_chart(
        id,
        "Re-identification risk (prosecutor)",
        &categories,
        &series,
        Some(1.0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_names() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn masks_small_counts_only() {
        let m = Masking::below(10);
        assert_eq!(m.count(0), Count::Exact(0));
        assert_eq!(m.count(9), Count::Below(10));
        assert_eq!(m.count(10), Count::Exact(10));
        assert_eq!(Masking::NONE.count(3), Count::Exact(3));
    }

    #[test]
    fn a_chart_draws_one_bar_per_non_zero_figure_scaled_to_the_longest() {
        let mut page = Page::new();
        page.bar_chart(
            "c",
            "t",
            &["a".into(), "b".into(), "c".into()],
            &[Series {
                name: "s",
                values: vec![
                    Figure::Count(Count::Exact(200)),
                    Figure::Count(Count::Exact(0)),
                    Figure::Count(Count::Below(10)),
                ],
            }],
            None,
        );
        assert_eq!(page.body.matches("<rect class=\"bar").count(), 2);
        assert!(page.body.contains("width=\"380.00\""), "{}", page.body);
        assert!(
            page.body.contains("width=\"19.00\""),
            "the masked bar is drawn at the threshold"
        );
        assert!(page.body.contains("bar s0 masked"));
        assert!(page.body.contains("&lt; 10"));
    }
}
