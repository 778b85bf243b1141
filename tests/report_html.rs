//! The HTML reports in a real browser: every delivery's `report.html` (record-level, anonymised,
//! linked with masking), `assess --permit --html` and `assess --input --html` load in headless Chromium
//! without console errors or requests, and their charts draw one bar per non-zero figure of the JSON
//! reports, proportional to it (`tests/independent/check_html_in_browser.py`, Playwright).

mod common;

use std::path::Path;
use std::process::Command;

use common::{ehds_prep, run_ok, sample_permit, stderr};

fn assess_to(args: &[&str], json: &Path) {
    let o = ehds_prep(args);
    assert!(o.status.success(), "assess failed: {}", stderr(&o));
    std::fs::write(json, &o.stdout).unwrap();
}

/// What the page may hold: no script, no form, nothing fetched (inline SVG's namespace aside).
fn assert_self_contained(path: &Path) {
    let html = std::fs::read_to_string(path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", path.display());
    for forbidden in [
        "<script", "<link", "<img", "<iframe", "<form", "src=", "href=", "url(",
    ] {
        assert!(
            !html.contains(forbidden),
            "{} contains {forbidden}",
            path.display()
        );
    }
    let outside: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 30).min(html.len())])
        .filter(|s| !s.starts_with("http://www.w3.org/2000/svg") && !s.starts_with("http-equiv"))
        .collect();
    assert!(outside.is_empty(), "{}: {outside:?}", path.display());
}

/// The summary table of `report.html` shows report.json's figures, row for row (counts below
/// `mask` shown as "< mask"), and each dataset's rows add up: read = outside the cohort + opted
/// out + rejected + suppressed by its own model + suppressed elsewhere + delivered.
fn summary_table_agrees(delivery: &Path, mask: u64) {
    let html = std::fs::read_to_string(delivery.join("report.html")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(delivery.join("report.json")).unwrap())
            .unwrap();
    let start = html.find("<tr><th>dataset</th>").expect("a summary table");
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let cells = |row: &str| -> Vec<String> {
        row.split("<td")
            .skip(1)
            .map(|c| {
                let c = &c[c.find('>').unwrap() + 1..];
                c[..c.find("</td>").unwrap()].replace("&lt;", "<")
            })
            .collect()
    };
    let rows: Vec<Vec<String>> = table.split("<tr>").skip(2).map(cells).collect();
    let datasets = json["datasets"].as_array().unwrap();
    assert_eq!(rows.len(), datasets.len(), "{}", delivery.display());
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    for (row, d) in rows.iter().zip(datasets) {
        let a = &d["anonymisation"];
        let own = if a["suppressed_rows_are"] == "removed" {
            n(&a["rows_suppressed"])
        } else {
            0
        } + n(&d["set_valued"]["rows_suppressed"]);
        let figures = [
            n(&d["rows_read"]),
            n(&d["rows_outside_cohort"]),
            n(&d["rows_opted_out"]),
            n(&d["rows_rejected"]),
            own,
            n(&d["rows_of_removed_persons"]),
            n(&d["rows_delivered"]),
        ];
        assert_eq!(row[0], d["name"].as_str().unwrap());
        for (cell, figure) in row[1..].iter().zip(figures) {
            let shown = if (1..mask).contains(&figure) {
                format!("< {mask}")
            } else {
                figure.to_string()
            };
            assert_eq!(*cell, shown, "{}: {row:?}", delivery.display());
        }
        assert_eq!(
            figures[0],
            figures[1..].iter().sum::<u64>(),
            "{}: the rows of {} do not add up",
            delivery.display(),
            row[0]
        );
    }
}

/// report.html is an audit record (#21 item 2): the permit, the run's start (UTC), every file
/// read with its SHA-256 and every key by fingerprint, as report.json and the manifest give them;
/// each anonymised dataset's smallest class reached; a print layout.
fn audit_record_agrees(delivery: &Path, mask: u64) {
    let html = std::fs::read_to_string(delivery.join("report.html")).unwrap();
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(delivery.join(f)).unwrap()).unwrap()
    };
    let (report, manifest) = (read("report.json"), read("manifest.json"));
    let cell = |v: &serde_json::Value| {
        format!(
            ">{}</td>",
            v.as_str()
                .unwrap()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;")
        )
    };
    for field in ["id", "purpose", "holder", "recipient"] {
        assert_eq!(report["permit"][field], manifest["permit"][field]);
        assert!(html.contains(&cell(&report["permit"][field])), "{field}");
    }
    let started = report["started_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok() && started.ends_with('Z'),
        "{started}"
    );
    assert!(html.contains(&cell(&report["started_at"])));
    let inputs = manifest["inputs"].as_array().unwrap();
    assert!(!inputs.is_empty());
    for i in inputs {
        assert!(html.contains(i["sha256"].as_str().unwrap()), "{i}");
    }
    for d in manifest["domains"].as_array().unwrap() {
        assert!(html.contains(&cell(&d["key_fingerprint"])), "{d}");
    }
    for d in report["datasets"].as_array().unwrap() {
        let Some(after) = d["anonymisation"]["risk_after"].as_object() else {
            continue;
        };
        let smallest = after["smallest_class"].as_u64().unwrap();
        let shown = if (1..mask).contains(&smallest) {
            format!("&lt; {mask}")
        } else {
            smallest.to_string()
        };
        let unit = if after["sizes_in_persons"] == true {
            "persons"
        } else {
            "rows"
        };
        assert!(
            html.contains(&format!("Reached: smallest class {shown} {unit}")),
            "{}: {}",
            delivery.display(),
            d["name"]
        );
    }
    assert!(html.contains("@media print"));
    // A masked count is text: "&lt; N" in the HTML, never a raw "<".
    if mask > 0 {
        assert!(
            !html.contains(&format!("< {mask}")),
            "{}",
            delivery.display()
        );
    }
}

#[test]
fn html_reports_render_in_chromium_with_one_bar_per_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for holder in ["hospital", "insurer", "registry", "cohort", "research"] {
        run_ok(&sample_permit(holder, dir));
    }
    let linking = sample_permit("linkage", dir);
    let o = ehds_prep(&["link", "--permit", linking.to_str().unwrap()]);
    assert!(o.status.success(), "link failed: {}", stderr(&o));
    run_ok(&sample_permit("omop", dir));
    for (delivery, mask) in [
        ("hospital", 0),
        ("insurer", 0),
        ("registry", 0),
        ("research", 0),
        ("omop", 0),
        ("linked", 10),
    ] {
        summary_table_agrees(&dir.join("out").join(delivery), mask);
        audit_record_agrees(&dir.join("out").join(delivery), mask);
    }
    let research = sample_permit("research", dir);
    let (assess_html, assess_json) = (dir.join("assess.html"), dir.join("assess.json"));
    assess_to(
        &[
            "assess",
            "--permit",
            research.to_str().unwrap(),
            "--html",
            assess_html.to_str().unwrap(),
        ],
        &assess_json,
    );
    // assess gives the chosen transformation's risks too (#21 item 3): as the run then measures
    // them from its file, where no other dataset's suppressions removed rows from this one.
    let assessed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&assess_json).unwrap()).unwrap();
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/research/report.json")).unwrap(),
    )
    .unwrap();
    let mut compared = 0;
    for a in assessed.as_array().unwrap() {
        let after = &a["assessment"]["risk_after"];
        assert!(after.is_object(), "{a}");
        let d = run["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == a["dataset"])
            .unwrap();
        if d.get("rows_of_removed_persons").is_none() {
            assert_eq!(*after, d["anonymisation"]["risk_after"]);
            compared += 1;
        }
    }
    assert!(compared > 0);
    let (risk_html, risk_json) = (dir.join("risk.html"), dir.join("risk.json"));
    let patients = dir.join("out/research/patients.parquet");
    assess_to(
        &[
            "assess",
            "--input",
            patients.to_str().unwrap(),
            "--quasi-identifiers",
            "age,sex,department",
            "--person",
            "person_pseudonym",
            "-k",
            "5",
            "--html",
            risk_html.to_str().unwrap(),
        ],
        &risk_json,
    );
    let out = dir.join("out");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut args = vec![s(
        &common::repo().join("tests/independent/check_html_in_browser.py")
    )];
    for holder in ["hospital", "insurer", "registry", "research"] {
        let d = out.join(holder);
        assert_self_contained(&d.join("report.html"));
        args.extend([
            s(&d.join("report.html")),
            s(&d.join("report.json")),
            "--".into(),
        ]);
    }
    let linked = out.join("linked");
    assert_self_contained(&linked.join("report.html"));
    // The linked delivery goes to the researcher: its page masks as its linkage.json does.
    args.extend([
        s(&linked.join("report.html")),
        "mask=10".into(),
        s(&linked.join("report.json")),
        s(&linked.join("linkage.json")),
        "--".into(),
    ]);
    assert_self_contained(&assess_html);
    assert_self_contained(&risk_html);
    args.extend([s(&assess_html), s(&assess_json), "--".into()]);
    args.extend([s(&risk_html), s(&risk_json)]);
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "this test needs Debian's chromium (scripts/test.sh installs it)"
    );
    let o = Command::new("python3").args(&args).output().unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "browser check failed:\n{report}\n{}",
        stderr(&o)
    );
    // Every page drew charts: the check prints "<file>: N charts, M bars" per page.
    let pages: Vec<(u64, u64)> = report
        .lines()
        .filter_map(|l| {
            let (_, counts) = l.rsplit_once(": ")?;
            let (charts, bars) = counts.split_once(" charts, ")?;
            Some((
                charts.parse().ok()?,
                bars.trim_end_matches(" bars").parse().ok()?,
            ))
        })
        .collect();
    assert_eq!(pages.len(), 7, "{report}");
    assert!(pages.iter().all(|&(c, b)| c >= 1 && b >= 3), "{report}");
    let html = std::fs::read_to_string(linked.join("report.html")).unwrap();
    assert!(
        html.contains("&lt; 10"),
        "the linked report masks small counts"
    );
    assert!(html.contains("id=\"linkage-overlap\""));
}
