//! The types rule of docs/permit.md ("Delivered types"): a column's type, and the form of its
//! values, depend on the permit alone, never on the level the privacy search chooses. A year is an
//! integer, a month the date of its first day, a quasi-identifier text at every level with ASCII
//! labels, `*` where withheld (the top level, suppressed rows) and null where the source has no
//! value below the top level; the manifest records the form of each such column.

mod common;

use common::permit_text::*;
use common::*;
use polars::prelude::*;

/// Ages (one top-coded, two missing), admission dates, towns; dates for the fixed rules.
const DATA: &str = "\
age,admitted,town,seen,born
93,2021-03-17,75011,2021-03-17,1931-05-02
34,2019-07-02,69003,2019-07-02,1985-01-01
17,2020-01-30,13008,2020-01-30,2007-12-31
35,2019-07-20,69007,2019-07-20,1984-06-30
,2020-02-11,13001,2020-02-11,
,2020-02-20,13004,2020-02-20,
91,2021-03-01,75012,2021-03-01,1930-02-02
16,2020-01-02,13002,2020-01-02,2008-08-08
";

fn permit_at(level: u32) -> String {
    let pinned = |c: ColumnText, max: u32| c.raw("level", &level.min(max).to_string());
    permit("TYPES-1")
        .dataset(
            dataset("t", &["data.csv"])
                .column(pinned(
                    column("age", "integer", "generalise")
                        .raw("levels", r#"["width 10", "width 20", "*"]"#)
                        .raw("top", "90"),
                    3,
                ))
                .column(pinned(
                    column("admitted", "date", "generalise")
                        .raw("levels", r#"["month", "year", "*"]"#),
                    3,
                ))
                .column(pinned(
                    column("town", "string", "generalise").raw("levels", r#"["prefix 2", "*"]"#),
                    2,
                ))
                .column(column("seen", "date", "generalise").set("rule", "month"))
                .column(column("born", "date", "generalise").set("rule", "year"))
                .privacy("k = 2\nsuppression_limit = 1.0\nsuppressed = \"blank\""),
        )
        .without_keys()
        .text()
}

struct Delivered {
    frame: DataFrame,
    manifest: serde_json::Value,
}

fn deliver(level: u32) -> Delivered {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.csv"), DATA).unwrap();
    let permit = dir.path().join("permit.toml");
    std::fs::write(&permit, permit_at(level)).unwrap();
    run_ok(&permit);
    let frame = ParquetReader::new(std::fs::File::open(dir.path().join("out/t.parquet")).unwrap())
        .finish()
        .unwrap();
    let manifest =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/manifest.json")).unwrap())
            .unwrap();
    Delivered { frame, manifest }
}

fn texts(frame: &DataFrame, column: &str) -> Vec<Option<String>> {
    frame
        .column(column)
        .unwrap()
        .str()
        .unwrap_or_else(|_| panic!("`{column}` is not text"))
        .iter()
        .map(|v| v.map(String::from))
        .collect()
}

#[test]
fn a_columns_type_and_form_are_the_same_at_every_level() {
    let runs: Vec<Delivered> = (0..=3).map(deliver).collect();
    let schema = |d: &Delivered| d.manifest["datasets"][0]["schema"].clone();
    for (level, run) in runs.iter().enumerate() {
        // The manifest's types and forms do not move with the level (only the words of what was
        // done do).
        let forms: Vec<(serde_json::Value, serde_json::Value)> = schema(run)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].clone(), c["values"].clone()))
            .collect();
        let first: Vec<(serde_json::Value, serde_json::Value)> = schema(&runs[0])
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].clone(), c["values"].clone()))
            .collect();
        assert_eq!(forms, first, "level {level}");
        for qi in ["age", "admitted", "town"] {
            assert_eq!(run.frame.column(qi).unwrap().dtype(), &DataType::String);
            for value in texts(&run.frame, qi).into_iter().flatten() {
                assert!(value.is_ascii(), "level {level}, {qi}: {value:?}");
            }
        }
        assert_eq!(run.frame.column("seen").unwrap().dtype(), &DataType::Date);
        assert_eq!(run.frame.column("born").unwrap().dtype(), &DataType::Int64);
    }
    let columns = schema(&runs[0]);
    let form = |name: &str| {
        columns
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["values"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        form("age").contains("`*` where withheld"),
        "{}",
        form("age")
    );
    assert!(form("age").contains("null where the source has no value"));
    assert_eq!(form("seen"), "the month, as the date of its first day");
    assert_eq!(form("born"), "the year, an integer");
}

#[test]
fn top_coded_labels_are_ascii_and_withheld_is_a_star_missing_a_null() {
    // Level 1: intervals of 10 with top-coding; the rows of classes below 2 are delivered blank.
    let run = deliver(1);
    let ages = texts(&run.frame, "age");
    let towns = texts(&run.frame, "town");
    assert!(ages.iter().flatten().any(|a| a == ">=90"), "{ages:?}");
    assert!(!ages.iter().flatten().any(|a| a.contains('≥')));
    // A suppressed row has every quasi-identifier `*`; no other value is `*` at this level.
    let admitted = texts(&run.frame, "admitted");
    for row in 0..run.frame.height() {
        let stars = [&ages[row], &admitted[row], &towns[row]]
            .iter()
            .filter(|v| v.as_deref() == Some("*"))
            .count();
        assert!(
            stars == 0 || stars == 3,
            "row {row}: {ages:?} {admitted:?} {towns:?}"
        );
    }
    let suppressed = run.manifest["datasets"][0]["privacy"]["rows_suppressed"]
        .as_u64()
        .unwrap();
    let starred = ages.iter().filter(|a| a.as_deref() == Some("*")).count() as u64;
    assert_eq!(starred, suppressed);
    // The two missing ages share a class at level 1: delivered null, not `*`. At the top level
    // every value goes to `*`, a missing one too.
    assert_eq!(ages.iter().filter(|a| a.is_none()).count(), 2, "{ages:?}");
    let top = deliver(3);
    assert!(
        texts(&top.frame, "age")
            .iter()
            .all(|a| a.as_deref() == Some("*"))
    );
    // The fixed rules: the month's first day and the year (rows are not in the source's order).
    let seen = top
        .frame
        .column("seen")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    let mut seen: Vec<&str> = seen.str().unwrap().iter().flatten().collect();
    seen.sort_unstable();
    assert_eq!(seen[..3], ["2019-07-01", "2019-07-01", "2020-01-01"]);
    let mut born: Vec<i64> = top
        .frame
        .column("born")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    born.sort_unstable();
    assert_eq!(born, [1930, 1931, 1984, 1985, 2007, 2008]);
}

/// A month read back from a delivery (a Parquet date of its first day) is a `year_month` again;
/// a date that is not a month's first day is refused without showing it.
#[test]
fn a_month_delivered_as_a_date_reads_back_as_a_month() {
    let dir = tempfile::tempdir().unwrap();
    let write = |days: &[i32]| {
        let mut frame = DataFrame::new_infer_height(vec![
            Int32Chunked::from_slice("month".into(), days)
                .into_date()
                .into_series()
                .into(),
        ])
        .unwrap();
        ParquetWriter::new(std::fs::File::create(dir.path().join("data.parquet")).unwrap())
            .finish(&mut frame)
            .unwrap();
    };
    let permit_file = dir.path().join("permit.toml");
    std::fs::write(
        &permit_file,
        permit("TYPES-2")
            .dataset(
                dataset("t", &["data.parquet"])
                    .parquet()
                    .column(kept("month", "year_month")),
            )
            .without_keys()
            .text(),
    )
    .unwrap();
    // 2021-03-01 and 2021-04-01.
    write(&[18687, 18718]);
    run_ok(&permit_file);
    let frame = ParquetReader::new(std::fs::File::open(dir.path().join("out/t.parquet")).unwrap())
        .finish()
        .unwrap();
    let month = frame.column("month").unwrap();
    assert_eq!(month.dtype(), &DataType::Date);
    let days: Vec<Option<i32>> = month.date().unwrap().physical().iter().collect();
    let mut days: Vec<i32> = days.into_iter().flatten().collect();
    days.sort_unstable();
    assert_eq!(days, [18687, 18718]);
    // 2021-03-17: not a month's first day.
    write(&[18687, 18703]);
    let o = ehds_prep(&["run", "--permit", permit_file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("not the first day of its month"), "{err}");
    assert!(err.contains("row 2") && err.contains("`month`"), "{err}");
    assert!(!err.contains("2021-03-17"), "{err}");
}
