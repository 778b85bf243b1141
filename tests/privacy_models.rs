//! Privacy models through the engine: persons counted in event tables, suppression by removal or
//! blanking, classes re-counted from the written Parquet, and errors for hierarchies that do not fit.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use common::permit_text::{self, column, dataset, kept};
use common::*;
use polars::prelude::*;

/// Stays of one permit: `north/2020` has 6 rows from 4 persons (A has 3 stays), `south/2020` 5 rows
/// from 5 persons.
const STAYS: &str = "patient,region,year\n\
A,north,2020\nA,north,2020\nA,north,2020\nB,north,2020\nC,north,2020\nD,north,2020\n\
E,south,2020\nF,south,2020\nG,south,2020\nH,south,2020\nI,south,2020\n";

fn permit(
    dir: &Path,
    data: &str,
    person: bool,
    privacy: &str,
    year_levels: &str,
) -> std::path::PathBuf {
    std::fs::write(dir.join("stays.csv"), data).unwrap();
    demo_key_to(&dir.join("key.hex"));
    let mut stays = dataset("stays", &["stays.csv"])
        .option("allow_empty = \"these tests suppress every row on purpose\"")
        .column(column("patient", "string", "pseudonymise").set("domain", "d"))
        .column(
            column("region", "string", "generalise")
                .raw("levels", "[\"*\"]")
                .raw("level", "0"),
        )
        .column(column("year", "integer", "generalise").lines(year_levels))
        .privacy(privacy);
    if person {
        stays = stays.person("patient");
    }
    permit_text::permit("T-1")
        .dataset(stays)
        .write(&dir.join("permit.toml"))
}

/// Runs the permit `permit` writes and returns its dataset's anonymisation report.
fn anonymise(
    dir: &Path,
    data: &str,
    person: bool,
    privacy: &str,
    year_levels: &str,
) -> ehds_prep::privacy::anonymise::AnonymisationReport {
    let plan = ehds_prep::load_plan(&permit(dir, data, person, privacy, year_levels)).unwrap();
    let mut report = ehds_prep::engine::run(&plan).unwrap();
    report.datasets.remove(0).anonymisation.unwrap()
}

fn delivered(dir: &Path) -> DataFrame {
    let file = std::fs::File::open(dir.join("out/stays.parquet")).unwrap();
    ParquetReader::new(file).finish().unwrap()
}

/// Classes of the delivered file, counted here from its text: (region, year) → distinct patients.
fn persons_per_class(df: &DataFrame) -> HashMap<(Option<String>, Option<String>), usize> {
    let col = |n: &str| -> Vec<Option<String>> {
        df.column(n)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    };
    let (patient, region, year) = (col("patient"), col("region"), col("year"));
    let mut classes: HashMap<_, HashSet<Option<String>>> = HashMap::new();
    for i in 0..df.height() {
        classes
            .entry((region[i].clone(), year[i].clone()))
            .or_default()
            .insert(patient[i].clone());
    }
    classes.into_iter().map(|(k, v)| (k, v.len())).collect()
}

#[test]
fn persons_not_rows_make_up_a_class() {
    let pinned = "levels = [\"width 10\"]\nlevel = 0";
    let privacy = "k = 5\nsuppression_limit = 0.6";
    // Counting persons: north holds 4 persons in 6 rows and is suppressed.
    let dir = tempfile::tempdir().unwrap();
    let a = anonymise(dir.path(), STAYS, true, privacy, pinned);
    assert_eq!(a.rows_suppressed, 6);
    assert!(a.risk_before.sizes_in_persons);
    assert_eq!(a.risk_before.smallest_class, 4);
    let df = delivered(dir.path());
    assert_eq!(df.height(), 5);
    let classes = persons_per_class(&df);
    assert_eq!(classes.len(), 1);
    assert!(classes.values().all(|&n| n >= 5));

    // Counting rows (no person column): north's 6 rows make a class of 6.
    let dir = tempfile::tempdir().unwrap();
    let a = anonymise(dir.path(), STAYS, false, privacy, pinned);
    assert_eq!(a.rows_suppressed, 0);
    assert_eq!(delivered(dir.path()).height(), 11);
}

/// Risk-based models count risk per person: A's three stays make a class of one person, whose
/// rows are sample-unique and at risk 1 each. The smallest classes (B's, then A's) are suppressed
/// until the average risk and the share of unique rows hold; without a person column A's class
/// is three rows and both models hold as delivered.
#[test]
fn risk_based_models_suppress_the_smallest_classes_of_persons() {
    let data = "patient,region,year\nA,north,2020\nA,north,2020\nA,north,2020\n\
                B,north,2021\nC,south,2020\nD,south,2020\n";
    let pinned = "levels = [\"width 10\"]\nlevel = 0";
    for privacy in [
        "average_risk = 0.5\nsuppression_limit = 1",
        "sample_uniqueness = 0.3\nsuppression_limit = 1",
        "average_risk = { average = 0.9, highest = 0.6, records_at_risk = 0.3 }\nsuppression_limit = 1",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let a = anonymise(dir.path(), data, true, privacy, pinned);
        assert_eq!(a.rows_suppressed, 4, "{privacy}");
        let df = delivered(dir.path());
        assert_eq!(df.height(), 2, "{privacy}");
        let after = a.risk_after.unwrap();
        assert!(after.prosecutor_average <= 0.5, "{privacy}");
        let dir = tempfile::tempdir().unwrap();
        let a = anonymise(dir.path(), data, false, privacy, pinned);
        assert_eq!(a.rows_suppressed, 0, "{privacy} counting rows");
    }
}

#[test]
fn a_person_counts_in_every_class_where_it_has_rows() {
    // J has a stay in each region: north now holds 5 persons (A, B, C, D, J), south 6.
    let data = format!("{STAYS}J,north,2020\nJ,south,2020\n");
    let dir = tempfile::tempdir().unwrap();
    let a = anonymise(
        dir.path(),
        &data,
        true,
        "k = 5",
        "levels = [\"width 10\"]\nlevel = 0",
    );
    assert_eq!(a.rows_suppressed, 0);
    let classes = persons_per_class(&delivered(dir.path()));
    let mut sizes: Vec<usize> = classes.values().copied().collect();
    sizes.sort();
    assert_eq!(sizes, vec![5, 6]);
}

#[test]
fn the_search_generalises_instead_of_suppressing_when_the_limit_is_zero() {
    // Years 2020 and 2021 in north, with k = 5 persons and no suppression allowed: the year must go to
    // its decade (2020-2029), the region stays.
    let data = "patient,region,year\nA,north,2020\nB,north,2020\nC,north,2021\nD,north,2021\nE,north,2021\n";
    let dir = tempfile::tempdir().unwrap();
    let a = anonymise(dir.path(), data, true, "k = 5", "levels = [\"width 10\"]");
    let levels: Vec<u8> = a.quasi_identifiers.iter().map(|q| q.level).collect();
    assert_eq!(levels, vec![0, 1]);
    let df = delivered(dir.path());
    let years: HashSet<Option<&str>> = df.column("year").unwrap().str().unwrap().iter().collect();
    assert_eq!(years, HashSet::from([Some("2020-2029")]));
    // The manifest says the same, in words.
    let manifest = std::fs::read_to_string(dir.path().join("out/manifest.json")).unwrap();
    assert!(manifest.contains("intervals of 10"), "{manifest}");
}

#[test]
fn blanked_rows_are_delivered_with_stars() {
    let dir = tempfile::tempdir().unwrap();
    anonymise(
        dir.path(),
        STAYS,
        true,
        "k = 5\nsuppression_limit = 0.6\nsuppressed = \"blank\"",
        "levels = [\"width 10\"]\nlevel = 0",
    );
    let df = delivered(dir.path());
    assert_eq!(df.height(), 11);
    let stars = df
        .column("region")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .zip(df.column("year").unwrap().str().unwrap().iter())
        .filter(|(r, y)| *r == Some("*") && *y == Some("*"))
        .count();
    assert_eq!(stars, 6);
}

#[test]
fn a_value_missing_from_a_hierarchy_file_names_the_column_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("regions.csv"), "north;*\n").unwrap();
    let permit = permit(dir.path(), STAYS, true, "k = 2", "levels = [\"width 10\"]");
    let text = std::fs::read_to_string(&permit)
        .unwrap()
        .replace("levels = [\"*\"]\nlevel = 0", "hierarchy = \"regions.csv\"");
    std::fs::write(&permit, text).unwrap();
    let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    for part in [
        "stays.csv",
        "record 7, line 8",
        "`region`",
        "`south`",
        "regions.csv",
    ] {
        assert!(err.contains(part), "`{part}` missing from {err}");
    }
    assert!(!dir.path().join("out").exists());
}

#[test]
fn permit_errors_for_quasi_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // A level above the hierarchy's top.
        (
            "k = 5",
            "levels = [\"width 10\"]\nmax_level = 3",
            "max_level",
            "from 0 to 2",
        ),
        // A date level on a number.
        ("k = 5", "levels = [\"month\"]", "levels", "Date values"),
        // ℓ-diversity without a sensitive column.
        (
            "l = 2",
            "levels = [\"width 10\"]",
            "sensitive",
            "need `sensitive`",
        ),
        // Recursive (c,ℓ)-diversity without c, with c = 0, with a fractional ℓ; c without it.
        (
            "l = 2\nl_diversity = \"recursive\"",
            "levels = [\"width 10\"]",
            "privacy.c",
            "needs `c`",
        ),
        (
            "l = 2\nl_diversity = \"recursive\"\nc = 0",
            "levels = [\"width 10\"]",
            "privacy.c",
            "above 0",
        ),
        (
            "l = 2.5\nl_diversity = \"recursive\"\nc = 3",
            "levels = [\"width 10\"]",
            "privacy.l",
            "whole ℓ",
        ),
        (
            "k = 2\nc = 3",
            "levels = [\"width 10\"]",
            "privacy.c",
            "only used with",
        ),
        // Risk bounds outside their ranges.
        (
            "average_risk = 1.5",
            "levels = [\"width 10\"]",
            "privacy.average_risk",
            "probability",
        ),
        (
            "average_risk = { average = 0.1, highest = 0, records_at_risk = 0.1 }",
            "levels = [\"width 10\"]",
            "privacy.average_risk.highest",
            "probability",
        ),
        (
            "sample_uniqueness = 1.2",
            "levels = [\"width 10\"]",
            "privacy.sample_uniqueness",
            "share of rows",
        ),
        (
            "k_map = { k = 5, population = 1000, significance = 1.0 }",
            "levels = [\"width 10\"]",
            "privacy.k_map.significance",
            "below 1",
        ),
        (
            "population_uniqueness = { threshold = 0, population = 1000 }",
            "levels = [\"width 10\"]",
            "privacy.population_uniqueness.threshold",
            "probability",
        ),
        (
            "population_uniqueness = { threshold = 0.01, population = 0 }",
            "levels = [\"width 10\"]",
            "privacy.population_uniqueness.population",
            "at least 1 person",
        ),
        (
            "population_uniqueness = { threshold = 0.01, population = 10, estimator = \"chao\" }",
            "levels = [\"width 10\"]",
            "population_uniqueness",
            "pitman",
        ),
        // δ-presence and k-map counted in the dataset need a research subset.
        (
            "delta_presence = { min = 0.0, max = 0.5 }",
            "levels = [\"width 10\"]",
            "privacy.delta_presence",
            "research_subset",
        ),
        (
            "delta_presence = { min = 0.5, max = 0.2 }\nresearch_subset = { path = \"s.csv\" }",
            "levels = [\"width 10\"]",
            "privacy.delta_presence",
            "at most `max`",
        ),
        (
            "k_map = { k = 3 }",
            "levels = [\"width 10\"]",
            "privacy.k_map",
            "research_subset",
        ),
        // No model at all.
        (
            "suppression_limit = 0.1",
            "levels = [\"width 10\"]",
            "privacy",
            "at least one model",
        ),
    ];
    for (privacy, levels, at, message) in cases {
        let p = permit(dir.path(), STAYS, true, privacy, levels);
        let o = ehds_prep(&["validate", "--permit", p.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{privacy} {levels}: {err}");
        assert!(
            err.contains(at) && err.contains(message),
            "{privacy} {levels}: {err}"
        );
    }
}

#[test]
fn assess_measures_any_file_and_fails_below_k() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("research", tmp.path());
    run_ok(&permit);
    let out = tmp.path().join("out/research");
    // The delivery, re-measured from its file, agrees with the run's report.
    let o = ehds_prep(&[
        "assess",
        "--input",
        out.join("stays.parquet").to_str().unwrap(),
        "--quasi-identifiers",
        "admission,department",
        "--person",
        "person_pseudonym",
        "-k",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let measured: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        measured,
        report["datasets"][1]["anonymisation"]["risk_after"]
    );
    // The raw extract has unique stays: exit 8, with the figures still printed.
    let o = ehds_prep(&[
        "assess",
        "--input",
        repo()
            .join("sample-data/hospital/stays.csv")
            .to_str()
            .unwrap(),
        "--quasi-identifiers",
        "admission_date,postcode",
        "--person",
        "patient_id",
        "-k",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    let raw: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(raw["smallest_class"], 1);
    assert!(raw["share_sample_uniques"].as_f64().unwrap() > 0.9);
    // A permit: the search's choice, nothing written.
    let o = ehds_prep(&["assess", "--permit", permit.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let assessed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(assessed.as_array().unwrap().len(), 2);
    assert_eq!(assessed[0]["assessment"]["feasible"], true);
}

#[test]
fn assess_with_a_population_gives_journalist_and_marketer_risk() {
    let dir = tempfile::tempdir().unwrap();
    // Sample: class x (2 records), class y (1). Population: x 4 times, y 5 times.
    std::fs::write(dir.path().join("sample.csv"), "q\nx\nx\ny\n").unwrap();
    std::fs::write(
        dir.path().join("population.csv"),
        "q\nx\nx\nx\nx\ny\ny\ny\ny\ny\n",
    )
    .unwrap();
    let o = ehds_prep(&[
        "assess",
        "--input",
        dir.path().join("sample.csv").to_str().unwrap(),
        "--quasi-identifiers",
        "q",
        "--population",
        dir.path().join("population.csv").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Journalist: 1 / smallest population class met = 1/4; marketer: (2/4 + 1/5) / 3.
    assert!((r["journalist_highest"].as_f64().unwrap() - 0.25).abs() < 1e-15);
    assert!((r["marketer"].as_f64().unwrap() - (0.5 + 0.2) / 3.0).abs() < 1e-15);
    // Prosecutor: the lone y is a sample unique.
    assert_eq!(r["sample_uniques"], 1);
    assert_eq!(r["prosecutor_highest"], 1.0);
}

/// Built-in levels through the engine, each pinned, with labels worked out by hand.
#[test]
fn built_in_levels_give_the_documented_labels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "icd,atc,postcode,amount,visit,birth\n\
         I21.4,C09AA05,20167,17.5,2021-01-03,1950-06-15\n\
         E11,A10BA02,97411,99.9,2024-12-30,2010-02-28\n",
    )
    .unwrap();
    let generalised =
        |name: &str, kind: &str, options: &str| column(name, kind, "generalise").lines(options);
    let events = dataset("events", &["events.csv"])
        .column(generalised(
            "icd",
            "string",
            "levels = [\"icd10 category\", \"icd10 chapter\"]\nlevel = 2",
        ))
        .column(generalised(
            "atc",
            "string",
            "levels = [\"atc 5\", \"atc 4\", \"atc 3\", \"atc 1\"]\nlevel = 3",
        ))
        .column(generalised(
            "postcode",
            "string",
            "levels = [\"departement\"]\nlevel = 1",
        ))
        .column(generalised(
            "amount",
            "float",
            "levels = [\"width 2.5\", \"width 5\"]\nlevel = 1",
        ))
        .column(generalised(
            "visit",
            "date",
            "levels = [\"week\"]\nlevel = 1",
        ))
        .column(generalised(
            "birth",
            "date",
            "age_at = \"visit\"\nlevels = [\"ranges 18 65\"]\nlevel = 1\nrename = \"age\"",
        ))
        .privacy("k = 1");
    let permit = permit_text::permit("T-2")
        .without_keys()
        .dataset(events)
        .write(&dir.path().join("permit.toml"));
    ehds_prep::engine::run(&ehds_prep::load_plan(&permit).unwrap()).unwrap();
    let file = std::fs::File::open(dir.path().join("out/events.parquet")).unwrap();
    let df = ParquetReader::new(file).finish().unwrap();
    let expected = [
        ("icd", ["IX (I00-I99)", "IV (E00-E90)"]),
        ("atc", ["C09", "A10"]),
        ("postcode", ["2A", "974"]),
        ("amount", ["[17.5, 20)", "[97.5, 100)"]),
        ("visit", ["2020-W53", "2025-W01"]),
        ("age", [">=65", "<18"]),
    ];
    // The rows come in the delivery's order: compared by the row each value belongs to.
    let rows = |columns: Vec<Vec<Option<String>>>| {
        let mut rows: Vec<Vec<Option<String>>> = (0..columns[0].len())
            .map(|r| columns.iter().map(|c| c[r].clone()).collect())
            .collect();
        rows.sort();
        rows
    };
    let got = rows(
        expected
            .iter()
            .map(|(name, _)| {
                let column = df.column(name).unwrap().str().unwrap();
                column.iter().map(|v| v.map(String::from)).collect()
            })
            .collect(),
    );
    let want = rows(
        expected
            .iter()
            .map(|(_, values)| values.iter().map(|v| Some(v.to_string())).collect())
            .collect(),
    );
    assert_eq!(got, want);
}

#[test]
fn an_identifier_missing_from_a_hierarchy_is_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("codes.csv"), "A;*\n").unwrap();
    let permit = permit(dir.path(), STAYS, true, "k = 2", "levels = [\"width 10\"]");
    let text = std::fs::read_to_string(&permit).unwrap().replace(
        "levels = [\"*\"]\nlevel = 0",
        "hierarchy = \"codes.csv\"\nidentifier = \"any\"",
    );
    std::fs::write(&permit, text).unwrap();
    let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("not shown") && err.contains("codes.csv"),
        "{err}"
    );
    assert!(!err.contains("north"), "{err}");
}

/// The re-check counts the written file: a file whose class holds fewer persons than k (as a faulty
/// writer could produce), or whose classes are not those the search chose, is refused.
#[test]
fn the_recheck_refuses_a_class_below_k_in_the_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let plan = ehds_prep::load_plan(&permit(
        dir.path(),
        STAYS,
        true,
        "k = 5\nsuppression_limit = 0.6",
        "levels = [\"width 10\"]\nlevel = 0",
    ))
    .unwrap();
    let d = &plan.datasets[0];
    let a = d.anonymisation.as_ref().unwrap();
    let solution = ehds_prep::privacy::anonymise::solve(
        a,
        ehds_prep::engine::profile(&plan, d, a).unwrap(),
        "stays",
        &Default::default(),
    )
    .unwrap();
    let write = |patients: &[&str], region: &str| {
        let path = dir.path().join(format!("{region}.parquet"));
        let n = patients.len();
        let mut df = df!(
            "patient" => patients,
            "region" => vec![region; n],
            "year" => vec!["2020"; n],
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        path
    };
    // South as delivered: 5 persons. North had to be suppressed: 4 persons.
    let recheck = |path: &std::path::Path| {
        let counter = ehds_prep::privacy::anonymise::count_delivered(a, path, 1000).unwrap();
        ehds_prep::privacy::anonymise::recheck(a, &solution, &counter, path)
    };
    let south = write(&["e", "f", "g", "h", "i"], "south");
    let (risk, _) = recheck(&south).unwrap();
    assert_eq!(risk.smallest_class, 5);
    let north = write(&["a", "a", "a", "b", "c", "d"], "north");
    let err = recheck(&north).unwrap_err();
    assert!(matches!(err, ehds_prep::Error::Privacy(_)), "{err}");
    assert!(err.to_string().contains("holds 4 persons (k = 5)"), "{err}");
    // Every class meets k, but the file is not the search's choice (a row more than pass 1 had,
    // as a spill altered between the passes would give): refused too.
    let altered = write(&["e", "f", "g", "h", "i", "i"], "south");
    let err = recheck(&altered).unwrap_err();
    assert!(matches!(err, ehds_prep::Error::Internal(_)), "{err}");
    assert!(
        err.to_string()
            .contains("where the search chose 1 classes of 5 rows"),
        "{err}"
    );
}

/// `max_level` caps the search: the decade the search would choose is not permitted, so with no
/// suppression allowed there is no solution (exit 8, nothing delivered), and with suppression the
/// small classes go instead.
#[test]
fn max_level_caps_the_search() {
    let data = "patient,region,year\nA,north,2020\nB,north,2020\nC,north,2021\nD,north,2021\nE,north,2021\n";
    let dir = tempfile::tempdir().unwrap();
    let capped = permit(
        dir.path(),
        data,
        true,
        "k = 5",
        "levels = [\"width 10\"]\nmax_level = 0",
    );
    let o = ehds_prep(&["run", "--permit", capped.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(!dir.path().join("out").exists());
    let dir = tempfile::tempdir().unwrap();
    let a = anonymise(
        dir.path(),
        data,
        true,
        "k = 2\nsuppression_limit = 1.0",
        "levels = [\"width 10\"]\nmax_level = 0",
    );
    assert_eq!(a.quasi_identifiers[1].level, 0);
    assert_eq!(a.rows_suppressed, 0);
    // k = 4 with the cap: both year classes (2 and 3 persons) are suppressed, everything goes.
    let dir = tempfile::tempdir().unwrap();
    let a = anonymise(
        dir.path(),
        data,
        true,
        "k = 4\nsuppression_limit = 1.0",
        "levels = [\"width 10\"]\nmax_level = 0",
    );
    assert_eq!(a.quasi_identifiers[1].level, 0);
    assert_eq!(a.rows_suppressed, 5);
}

/// Pinned levels with k-anonymity alone deliver while reading (rows of classes that already hold k
/// persons at once, the others at the end). On random stays, with and without a person column,
/// the rows delivered equal (1) the rows whose class holds at least k persons (or rows), counted
/// here from the source, and (2) the rows the two-pass path delivers unblanked when suppressed rows
/// are blanked instead (a plan that cannot release early).
#[test]
fn early_release_delivers_exactly_the_rows_of_classes_of_at_least_k() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..6 {
        let mut data = String::from("patient,region,year\n");
        let mut rows: Vec<(String, String, String)> = Vec::new();
        for _ in 0..(200 + next(800)) {
            // A third of the rows repeat the row before (a person's stays are neighbours); classes
            // of every size, many below k.
            let (patient, region, year) = match rows.last() {
                Some(last) if next(3) == 0 => last.clone(),
                _ => (
                    format!("P{}", next(120)),
                    ["north", "south", "east", "west", "centre"][next(5) as usize].to_string(),
                    (2015 + next(40)).to_string(),
                ),
            };
            data += &format!("{patient},{region},{year}\n");
            rows.push((patient, region, year));
        }
        let k = 2 + next(5);
        for person in [true, false] {
            let mut classes: HashMap<(String, String), HashSet<String>> = HashMap::new();
            for (i, (p, r, y)) in rows.iter().enumerate() {
                let member = if person { p.clone() } else { i.to_string() };
                classes
                    .entry((r.clone(), y.clone()))
                    .or_default()
                    .insert(member);
            }
            let expected: usize = rows
                .iter()
                .filter(|(_, r, y)| classes[&(r.clone(), y.clone())].len() >= k as usize)
                .count();
            let pinned = "levels = [\"width 10\"]\nlevel = 0";
            let removed = tempfile::tempdir().unwrap();
            let privacy = format!("k = {k}\nsuppression_limit = 1.0");
            let a = anonymise(removed.path(), &data, person, &privacy, pinned);
            let early = delivered(removed.path());
            assert_eq!(
                early.height(),
                expected,
                "round {round}, person {person}, k {k}"
            );
            assert_eq!(a.rows_suppressed as usize, rows.len() - expected);
            assert!(a.released_early);
            let blanked = tempfile::tempdir().unwrap();
            let privacy = format!("{privacy}\nsuppressed = \"blank\"");
            assert!(!anonymise(blanked.path(), &data, person, &privacy, pinned).released_early);
            let two_pass = delivered(blanked.path());
            let sorted = |df: &DataFrame| -> Vec<String> {
                let text = |n: &str| -> Vec<String> {
                    let c = df.column(n).unwrap().cast(&DataType::String).unwrap();
                    c.str()
                        .unwrap()
                        .iter()
                        .map(|v| v.unwrap_or("").to_string())
                        .collect()
                };
                let (p, r, y) = (text("patient"), text("region"), text("year"));
                let mut all: Vec<String> = (0..df.height())
                    .filter(|&i| r[i] != "*")
                    .map(|i| format!("{}|{}|{}", p[i], r[i], y[i]))
                    .collect();
                all.sort();
                all
            };
            assert_eq!(
                sorted(&early),
                sorted(&two_pass),
                "round {round}, person {person}"
            );
        }
    }
}

/// Early release writes rows before the transformation is evaluated: when the evaluation then finds
/// the pinned levels infeasible, the run fails with the privacy error and delivers nothing.
#[test]
fn an_infeasible_pinned_transformation_delivers_nothing_even_when_released_early() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = "levels = [\"width 10\"]\nlevel = 0";
    let plan = ehds_prep::load_plan(&permit(dir.path(), STAYS, true, "k = 5", pinned)).unwrap();
    assert!(
        plan.datasets[0]
            .anonymisation
            .as_ref()
            .unwrap()
            .releases_early()
    );
    let error = ehds_prep::engine::run(&plan).unwrap_err();
    assert_eq!(error.exit_code(), 8, "{error}");
    assert!(!dir.path().join("out").exists(), "nothing is delivered");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging") || n.ends_with(".parquet"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// What the delivered classes reach on the sensitive attribute — the least diverse class's
/// distinct and entropy ℓ, the largest equal-distance t — is measured on the written file, and
/// agrees with a computation here from that file and the extract.
#[test]
fn the_report_gives_the_l_and_t_the_delivered_classes_reach() {
    let dir = tempfile::tempdir().unwrap();
    let data = "region,dx\nnorth,a\nnorth,a\nnorth,a\nnorth,b\n\
                south,b\nsouth,c\nsouth,c\nsouth,a\nsouth,c\n";
    std::fs::write(dir.path().join("dx.csv"), data).unwrap();
    let permit_file = permit_text::permit("T-2")
        .dataset(
            dataset("dx", &["dx.csv"])
                .column(column("region", "string", "generalise").raw("levels", "[\"*\"]"))
                .column(kept("dx", "string"))
                .privacy("k = 2\nsensitive = \"dx\"\nt = 0.5\nt_closeness = \"equal\""),
        )
        .without_keys()
        .write(&dir.path().join("permit.toml"));
    let plan = ehds_prep::load_plan(&permit_file).unwrap();
    let mut report = ehds_prep::engine::run(&plan).unwrap();
    let a = report.datasets.remove(0).anonymisation.unwrap();
    let reached = a.sensitive_reached.expect("a sensitive column is measured");

    // Independently: the table's shares from the extract, each class's from the file.
    let extract: Vec<&str> = data
        .lines()
        .skip(1)
        .map(|l| &l[l.find(',').unwrap() + 1..])
        .collect();
    let share = |values: &[&str], v: &str| {
        values.iter().filter(|x| **x == v).count() as f64 / values.len() as f64
    };
    let file = std::fs::File::open(dir.path().join("out/dx.parquet")).unwrap();
    let df = ParquetReader::new(file).finish().unwrap();
    let text = |n: &str| -> Vec<String> {
        let s = df.column(n).unwrap().str().unwrap().clone();
        s.iter().map(|v| v.unwrap().to_string()).collect()
    };
    let (region, dx) = (text("region"), text("dx"));
    let mut classes: HashMap<&str, Vec<&str>> = HashMap::new();
    for (r, d) in region.iter().zip(&dx) {
        classes.entry(r).or_default().push(d);
    }
    assert_eq!(classes.len(), 2, "level 0 meets t = 0.5");
    let (mut distinct, mut entropy_l, mut t) = (u64::MAX, f64::MAX, 0f64);
    for values in classes.values() {
        let kinds: HashSet<&str> = values.iter().copied().collect();
        distinct = distinct.min(kinds.len() as u64);
        let h: f64 = kinds
            .iter()
            .map(|v| share(values, v))
            .map(|p| -p * p.ln())
            .sum();
        entropy_l = entropy_l.min(h.exp());
        let d: f64 = ["a", "b", "c"]
            .iter()
            .map(|v| (share(values, v) - share(&extract, v)).abs())
            .sum::<f64>()
            / 2.0;
        t = t.max(d);
    }
    assert_eq!(reached.l_distinct, distinct);
    assert!((reached.l_entropy - entropy_l).abs() < 1e-12, "{reached:?}");
    assert!((reached.t.unwrap() - t).abs() < 1e-12, "{reached:?} vs {t}");
    // North: 3 a, 1 b against 4/9, 2/9, 3/9: t = 1/3.
    assert!((t - 1.0 / 3.0).abs() < 1e-12);
}

/// A research subset: only its rows are delivered, δ-presence is measured against the whole
/// dataset, and a subset row that matches no row of the dataset stops the run without its values.
#[test]
fn a_research_subset_is_delivered_and_measured_against_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let levels = "levels = [\"*\"]";
    // (north, 2020): 6 rows, 1 in the subset (1/6); (south, 2020): 5 rows, 2 in it (2/5).
    std::fs::write(
        dir.path().join("subset.csv"),
        "\u{feff}region,year\nnorth,2020\nsouth,2020\nsouth,2020\n",
    )
    .unwrap();
    let subset = "research_subset = { path = \"subset.csv\" }";
    let report = anonymise(
        dir.path(),
        STAYS,
        false,
        &format!("delta_presence = {{ min = 0.1, max = 0.5 }}\n{subset}"),
        levels,
    );
    assert_eq!((report.rows_suppressed, report.feasible), (0, true));
    assert_eq!(report.rows_outside_research_subset, Some(8));
    let df = delivered(dir.path());
    assert_eq!(df.height(), 3);
    // At most 0.3: south (2/5) is suppressed, north (1/6) delivered.
    let report = anonymise(
        dir.path(),
        STAYS,
        false,
        &format!("delta_presence = {{ min = 0.1, max = 0.3 }}\n{subset}\nsuppression_limit = 0.7"),
        levels,
    );
    assert_eq!(report.rows_suppressed, 2);
    let df = delivered(dir.path());
    let regions: Vec<Option<&str>> = df.column("region").unwrap().str().unwrap().iter().collect();
    assert_eq!(regions, [Some("north")]);
    // At least 0.2 without suppression: north (1/6) fails at every level of `year` (`region` is
    // pinned), and no row of the subset is delivered.
    let plan = ehds_prep::load_plan(&permit(
        dir.path(),
        STAYS,
        false,
        &format!("delta_presence = {{ min = 0.2, max = 0.5 }}\n{subset}"),
        levels,
    ))
    .unwrap();
    let err = ehds_prep::engine::run(&plan).unwrap_err().to_string();
    assert!(err.contains("(0.2, 0.5)-presence"), "{err}");
    // The failed run left the previous delivery as it was.
    assert_eq!(delivered(dir.path()).height(), 1);
    // Counting persons: the first three rows of north are patient A's; the class holds 1 of its 4
    // patients (0.25), where rows would say 3 of 6 (0.5).
    std::fs::write(
        dir.path().join("subset.csv"),
        "region,year\nnorth,2020\nnorth,2020\nnorth,2020\n",
    )
    .unwrap();
    let report = anonymise(
        dir.path(),
        STAYS,
        true,
        &format!("delta_presence = {{ min = 0.0, max = 0.3 }}\n{subset}"),
        levels,
    );
    assert_eq!((report.rows_suppressed, report.feasible), (0, true));
    assert_eq!(delivered(dir.path()).height(), 3);
    let plan = ehds_prep::load_plan(&permit(
        dir.path(),
        STAYS,
        true,
        &format!("delta_presence = {{ min = 0.0, max = 0.2 }}\n{subset}"),
        levels,
    ))
    .unwrap();
    let err = ehds_prep::engine::run(&plan).unwrap_err().to_string();
    assert!(err.contains("(0, 0.2)-presence"), "{err}");
    // A subset row the dataset does not hold.
    std::fs::write(
        dir.path().join("subset.csv"),
        "region,year\nwestmarch,2020\n",
    )
    .unwrap();
    let plan = ehds_prep::load_plan(&permit(
        dir.path(),
        STAYS,
        false,
        &format!("delta_presence = {{ min = 0.0, max = 0.5 }}\n{subset}"),
        levels,
    ))
    .unwrap();
    let err = ehds_prep::engine::run(&plan).unwrap_err().to_string();
    assert!(
        err.contains("research subset") && err.contains("1 rows"),
        "{err}"
    );
    assert!(!err.contains("westmarch"), "{err}");
}

/// A dataset that delivers its quasi-identifiers and nothing else, rows counted, is written from
/// its classes (no row read twice): it delivers the rows the ordinary two-pass delivery gives when a
/// constant column rides along, chosen levels, suppressed rows and value counts alike, whether
/// suppressed rows are removed or blanked, levels searched or pinned, values missing or not.
#[test]
fn quasi_identifiers_alone_are_delivered_from_their_classes() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let run = |dir: &Path, data: &str, privacy: &str, year: &str, rider: bool| {
        std::fs::write(dir.join("stays.csv"), data).unwrap();
        let mut stays = dataset("stays", &["stays.csv"])
            .option("allow_empty = \"these tests suppress every row on purpose\"")
            .column(column("region", "string", "generalise").raw("levels", "[\"*\"]"))
            .column(column("year", "integer", "generalise").lines(year));
        if rider {
            stays = stays.column(kept("source", "string"));
        }
        let permit = permit_text::permit("T-1")
            .without_keys()
            .dataset(stays.privacy(privacy))
            .write(&dir.join("permit.toml"));
        let mut report = ehds_prep::engine::run(&ehds_prep::load_plan(&permit).unwrap()).unwrap();
        let d = report.datasets.remove(0);
        let file = std::fs::File::open(dir.join("out/stays.parquet")).unwrap();
        let df = ParquetReader::new(file).finish().unwrap();
        let text = |n: &str| -> Vec<Option<String>> {
            let c = df.column(n).unwrap().str().unwrap().clone();
            c.iter().map(|v| v.map(str::to_string)).collect()
        };
        let mut rows: Vec<_> = text("region").into_iter().zip(text("year")).collect();
        rows.sort();
        let values: Vec<u64> = d.columns.iter().map(|c| c.values_transformed).collect();
        (rows, d.anonymisation.unwrap(), values)
    };
    for round in 0..8 {
        let mut data = String::from("region,year,source\n");
        for _ in 0..(100 + next(600)) {
            let region = ["north", "south", "east", "west", "centre", ""][next(6) as usize];
            let year = match next(20) {
                0 => String::new(),
                _ => (2000 + next(30)).to_string(),
            };
            data += &format!("{region},{year},extract\n");
        }
        let k = 2 + next(6);
        let removed_or_blanked = ["", "suppressed = \"blank\""][next(2) as usize];
        let privacy = format!(
            "k = {k}\nsuppression_limit = {}\n{removed_or_blanked}",
            [0.0, 0.02, 0.1, 1.0][next(4) as usize]
        );
        let year = match next(3) {
            0 => "levels = [\"width 5\", \"width 10\", \"*\"]\nlevel = 0",
            1 => "levels = [\"width 5\", \"width 10\", \"*\"]\nlevel = 1",
            _ => "levels = [\"width 5\", \"width 10\", \"*\"]",
        };
        let (alone, with_rider) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (rows, a, values) = run(alone.path(), &data, &privacy, year, false);
        let (expected, b, expected_values) = run(with_rider.path(), &data, &privacy, year, true);
        let levels = |a: &ehds_prep::privacy::anonymise::AnonymisationReport| -> Vec<u8> {
            a.quasi_identifiers.iter().map(|q| q.level).collect()
        };
        assert_eq!(levels(&a), levels(&b), "round {round}: {privacy}");
        assert_eq!(rows, expected, "round {round}: {privacy}, {year}");
        assert_eq!(a.rows_suppressed, b.rows_suppressed, "round {round}");
        assert_eq!(values, expected_values[..2], "round {round}");
        assert!(!a.released_early);
    }
}

/// ARX's `adult`, every column a quasi-identifier (k = 5, 4 %, NUE): the delivery holds exactly the
/// rows an independent computation derives from the CSV and ARX's hierarchy files at the levels the
/// manifest records, in the delivery's order, suppressed rows removed or blanked.
#[test]
fn adult_delivered_from_its_classes_matches_an_independent_computation() {
    let Some(data) = common::adult::dir() else {
        return;
    };
    for (suppressed, blanked) in [("", false), ("suppressed = \"blank\"", true)] {
        let dir = tempfile::tempdir().unwrap();
        let privacy =
            format!("k = 5\nsuppression_limit = 0.04\nmetric = \"entropy\"\n{suppressed}");
        let permit = common::adult::permit(dir.path(), &data, None, None, &privacy);
        let report = ehds_prep::engine::run(&ehds_prep::load_plan(&permit).unwrap()).unwrap();
        let out = Command::new("python3")
            .arg(repo().join("tests/independent/check_adult_delivery.py"))
            .args([data.as_path(), &dir.path().join("out")])
            .arg("5")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let (rows, suppressed) = (summary["rows"].as_u64(), summary["suppressed"].as_u64());
        assert_eq!(rows, Some(report.datasets[0].rows_delivered));
        let read = report.datasets[0].rows_read;
        let expected_rows = if blanked {
            read
        } else {
            read - suppressed.unwrap()
        };
        assert_eq!(rows, Some(expected_rows));
        assert!(
            suppressed.unwrap() > 0,
            "some classes are below k at the optimum"
        );
    }
}
