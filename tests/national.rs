//! The conventions of national extracts (the French SNDS and its PMSI hospital tables) handled
//! safely: partial dates shifted with the date they belong to, and never delivered unshifted beside
//! shifted dates; cohort bounds in each temporal type's own form.

mod common;

use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use common::permit_text::*;
use common::{demo_key_to, ehds_prep, run_ok, stderr};
use polars::prelude::*;

/// A folder with the demo key, the extract files given and a permit over them.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new(files: &[(&str, &str)]) -> Work {
        let w = Work {
            dir: tempfile::tempdir().unwrap(),
        };
        demo_key_to(&w.path("key.hex"));
        for (name, data) in files {
            std::fs::write(w.path(name), data).unwrap();
        }
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn permit(&self, text: &str) -> PathBuf {
        let path = self.path("permit.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn delivered(&self, dataset: &str) -> DataFrame {
        let file = std::fs::File::open(self.path(&format!("out/{dataset}.parquet"))).unwrap();
        ParquetReader::new(file).finish().unwrap()
    }

    fn report(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("out/report.json")).unwrap())
            .unwrap()
    }
}

/// A text column's present values, sorted.
fn sorted_texts(df: &DataFrame, column: &str) -> Vec<String> {
    let c = df.column(column).unwrap().str().unwrap().clone();
    let mut values: Vec<String> = c.iter().flatten().map(String::from).collect();
    values.sort();
    values
}

/// Row `i` of a column, as text (a date in ISO form).
fn text(df: &DataFrame, column: &str, i: usize) -> String {
    let c = df.column(column).unwrap().cast(&DataType::String).unwrap();
    c.str().unwrap().get(i).unwrap().into()
}

const SHIFT: &str = "[date_shift]\ndomain = \"shift\"\nmin_days = -60\nmax_days = 60";

/// A permit with a linkage domain `d` and a shift domain `shift` of ±60 days.
fn shifting() -> PermitText {
    permit("N-1")
        .domain("d", "k", "")
        .domain("shift", "k", "")
        .section(SHIFT)
}

/// Valid NIRs (control keys computed independently in `identifier`'s tests).
const NIRS: [&str; 4] = [
    "185057800608491",
    "255081416802538",
    "160012A12345630",
    "297029912345697",
];

/// Stays as a PMSI table writes them: the admission date, and the admission's month (`YYYYMM`)
/// and year; dates near month and year ends, so that a shift crosses them. Row 7's month
/// disagrees with its date; row 11's month and year are missing.
fn stays() -> (String, Vec<(usize, NaiveDate)>) {
    let mut csv = String::from("nir,admission,adm_month,adm_year\n");
    let mut rows = Vec::new();
    let first = NaiveDate::from_ymd_opt(2020, 12, 20).unwrap();
    for i in 0..40usize {
        let date = first + chrono::Duration::days((i * 37 % 400) as i64);
        let mut month = format!("{:04}{:02}", date.year(), date.month());
        if i == 7 {
            month = format!("{:04}{:02}", date.year() - 1, date.month());
        }
        let (month, year) = if i == 11 {
            (String::new(), String::new())
        } else {
            (month, date.year().to_string())
        };
        csv += &format!("{},{date},{month},{year}\n", NIRS[i % 4]);
        rows.push((i % 4, date));
    }
    (csv, rows)
}

fn partial(name: &str, kind: &str) -> ColumnText {
    column(name, kind, "shift").set("part_of", "admission")
}

fn stays_dataset(month: ColumnText, year: ColumnText) -> DatasetText {
    dataset("stays", &["stays.csv"])
        .person("nir")
        .column(nir("nir", "d"))
        .column(column("admission", "date", "shift"))
        .column(month)
        .column(year)
}

/// A shifted partial date is the year (month) of its row's shifted date: it tells nothing more
/// of the shift than the shifted date does, and a person's rows all move by one shift.
#[test]
fn partial_dates_follow_their_shifted_date() {
    let (csv, rows) = stays();
    let w = Work::new(&[("stays.csv", &csv)]);
    let permit = shifting().dataset(stays_dataset(
        partial("adm_month", "year_month"),
        partial("adm_year", "year"),
    ));
    run_ok(&w.permit(&permit.text()));
    let df = w.delivered("stays");
    let admission = df.column("admission").unwrap().date().unwrap().clone();
    // A month is delivered as the date of its first day, a year as an integer.
    assert_eq!(df.column("adm_month").unwrap().dtype(), &DataType::Date);
    let month = df
        .column("adm_month")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    let month = month.str().unwrap().clone();
    let year = df.column("adm_year").unwrap().i64().unwrap().clone();
    assert_eq!(df.column("adm_year").unwrap().dtype(), &DataType::Int64);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let pseudonyms = df.column("nir").unwrap().str().unwrap().clone();
    let mut by_pseudonym: std::collections::BTreeMap<&str, Vec<NaiveDate>> = Default::default();
    for at in 0..df.height() {
        let shifted = epoch + chrono::Duration::days(admission.physical().get(at).unwrap() as i64);
        // The delivered partial dates are the shifted date's, or null together.
        match (month.get(at), year.get(at)) {
            (Some(m), Some(y)) => {
                assert_eq!(
                    m,
                    format!("{:04}-{:02}-01", shifted.year(), shifted.month())
                );
                assert_eq!(y, i64::from(shifted.year()));
            }
            (None, None) => {}
            other => panic!("month and year disagree on missing: {other:?}"),
        }
        by_pseudonym
            .entry(pseudonyms.get(at).unwrap())
            .or_default()
            .push(shifted);
    }
    // Each person's rows are all there, moved by one shift of ±60 days, never 0.
    let mut crossed = 0;
    for person in 0..NIRS.len() {
        let raw: Vec<NaiveDate> = rows.iter().filter(|r| r.0 == person).map(|r| r.1).collect();
        let moved = |s: i64| {
            let mut m: Vec<NaiveDate> =
                raw.iter().map(|d| *d + chrono::Duration::days(s)).collect();
            m.sort();
            m
        };
        let shifts: Vec<i64> = (-60..=60)
            .filter(|&s| s != 0)
            .filter(|&s| {
                by_pseudonym.values().any(|d| {
                    let mut d = d.clone();
                    d.sort();
                    d == moved(s)
                })
            })
            .collect();
        assert_eq!(shifts.len(), 1, "person {person}: shifts {shifts:?}");
        crossed += moved(shifts[0])
            .iter()
            .zip({
                let mut r = raw.clone();
                r.sort();
                r
            })
            .filter(|(m, r)| m.year() != r.year())
            .count();
    }
    assert_eq!(month.null_count(), 1);
    assert_eq!(year.null_count(), 1);
    // The data's dates near year ends make some shifts cross a year: the case where an
    // unshifted year would have told which way the shift went.
    assert!(
        crossed > 0,
        "no shifted date crossed a year: the test data shows nothing"
    );
    let report = w.report();
    let columns = &report["datasets"][0]["columns"];
    assert_eq!(columns[2]["partial_dates_disagreeing"], 1, "{columns}");
    assert_eq!(columns[3]["partial_dates_disagreeing"], 0, "{columns}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("out/manifest.json")).unwrap())
            .unwrap();
    let fields = &manifest["datasets"][0]["schema"];
    assert_eq!(fields[2]["shifted"], true, "{fields}");
    assert!(
        fields[2]["transformation"]
            .as_str()
            .unwrap()
            .contains("year and month of `admission` shifted")
    );
}

/// A partial date delivered unshifted beside a shifted date narrows the person's shift: refused
/// (exit 3, naming both columns) in the same table and across tables, unless the permit says why;
/// a shifted partial date without the date it belongs to is refused too.
#[test]
fn no_date_is_delivered_unshifted_beside_shifted_ones() {
    let (csv, _) = stays();
    let w = Work::new(&[("stays.csv", &csv), ("other.csv", &csv)]);
    let refused = |permit: PermitText, both: [&str; 2]| {
        for command in ["validate", "run"] {
            let o = ehds_prep(&[
                command,
                "--permit",
                w.permit(&permit.text()).to_str().unwrap(),
            ]);
            assert_eq!(o.status.code(), Some(3), "{command}: {}", stderr(&o));
            for column in both {
                assert!(stderr(&o).contains(column), "{command}: {}", stderr(&o));
            }
            assert!(!w.path("out").exists());
        }
    };
    let month_kept = kept("adm_month", "year_month");
    refused(
        shifting().dataset(stays_dataset(month_kept, partial("adm_year", "year"))),
        ["`stays.adm_month`", "`stays.admission`"],
    );
    // A year generalised from the month is as unshifted.
    refused(
        shifting().dataset(stays_dataset(
            partial("adm_month", "year_month"),
            column("adm_year", "year_month", "generalise").set("rule", "year"),
        )),
        ["`stays.adm_year`", "`stays.admission`"],
    );
    // In another table of the same persons.
    let other = dataset("other", &["other.csv"])
        .person("nir")
        .column(nir("nir", "d"))
        .column(kept("admission", "date"));
    refused(
        shifting()
            .dataset(stays_dataset(
                partial("adm_month", "year_month"),
                partial("adm_year", "year"),
            ))
            .dataset(other),
        ["`other.admission`", "`stays.admission`"],
    );
    // A shifted partial date must say which date it is part of.
    refused(
        shifting().dataset(stays_dataset(
            column("adm_month", "year_month", "shift"),
            partial("adm_year", "year"),
        )),
        ["part_of", "adm_month"],
    );
    // Said, and delivered: the month kept as the date of its first day, the year as an integer.
    let reason = "the admission month is the unit of the study; the dates are shifted for others";
    let permit = shifting().dataset(stays_dataset(
        kept("adm_month", "year_month").set("unshifted", reason),
        kept("adm_year", "year").set("unshifted", reason),
    ));
    run_ok(&w.permit(&permit.text()));
    let df = w.delivered("stays");
    let months = df
        .column("adm_month")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    let months: Vec<&str> = months.str().unwrap().iter().flatten().collect();
    assert_eq!(months.len(), 39);
    assert!(months.contains(&"2020-12-01") && months.contains(&"2021-01-01"));
    assert!(months.iter().all(|m| m.len() == 10 && m.ends_with("-01")));
}

/// Partial dates read from Parquet as numbers (201903) or text, filtered in their own form
/// (`from = "2021-02"`), and generalised from a month to its year.
#[test]
fn partial_dates_from_parquet_numbers_filter_and_generalise() {
    let w = Work::new(&[]);
    let mut df = df!(
        "id" => ["a", "b", "c", "d", "e"],
        "month" => [Some(202101i64), Some(202102), Some(202103), None, Some(202112)],
        "month_text" => [Some("2021-01"), Some("202102"), Some("2021-03"), None, Some("2021-12")],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(w.path("data.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    let permit = permit("N-2").dataset(
        dataset("months", &["data.parquet"])
            .parquet()
            .column(kept("id", "string"))
            .column(kept("month", "year_month"))
            .column(column("month_text", "year_month", "generalise").set("rule", "year"))
            .tail("[[datasets.cohort]]\ncolumn = \"month\"\nfrom = \"2021-02\"\nto = \"202111\""),
    );
    run_ok(&w.permit(&permit.text()));
    let df = w.delivered("months");
    let mut got: Vec<(String, String, i64)> = (0..df.height())
        .map(|i| {
            (
                text(&df, "id", i),
                text(&df, "month", i),
                df.column("month_text")
                    .unwrap()
                    .i64()
                    .unwrap()
                    .get(i)
                    .unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("b".into(), "2021-02-01".into(), 2021),
            ("c".into(), "2021-03-01".into(), 2021)
        ]
    );
    // A value that is not a month names its place and the rule, never the value.
    let mut bad = df!("id" => ["a"], "month" => [202113i64], "month_text" => ["2021-01"]).unwrap();
    ParquetWriter::new(std::fs::File::create(w.path("data.parquet")).unwrap())
        .finish(&mut bad)
        .unwrap();
    let o = ehds_prep(&[
        "run",
        "--permit",
        w.permit(&permit.text()).to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("column `month`") && stderr(&o).contains("YYYYMM or YYYY-MM"));
    assert!(!stderr(&o).contains("202113"), "{}", stderr(&o));
}

/// A datetime column's cohort takes dates as bounds, as a date column's does.
#[test]
fn a_datetime_cohort_takes_date_bounds() {
    let w = Work::new(&[(
        "data.csv",
        "id,at\na,2021-01-31 23:59:59\nb,2021-02-01 00:00:00\nc,2021-02-28 12:00:00\nd,2021-03-01 00:00:01\n",
    )]);
    let permit = permit("N-3").dataset(
        dataset("events", &["data.csv"])
            .column(kept("id", "string"))
            .column(kept("at", "datetime"))
            .tail(
                "[[datasets.cohort]]\ncolumn = \"at\"\nfrom = \"2021-02-01\"\nto = \"2021-02-28\"",
            ),
    );
    run_ok(&w.permit(&permit.text()));
    let df = w.delivered("events");
    let ids = sorted_texts(&df, "id");
    assert_eq!(ids, ["b", "c"]);
}

/// PMSI stays: 12 chained persons (17-character pseudo-NIRs, two differing by case alone), 35 stays whose chaining
/// failed (the placeholder `xxxxxxxxxxxxxxxxx`, `NIR_RET` = 1) and 2 stays with a real-looking
/// identifier but a return code saying it is not reliable (`NIR_RET` = 2).
fn pmsi_stays() -> String {
    let mut csv = String::from("NIR_ANO_17;NIR_RET;ENT_DAT\n");
    for i in 0..12 * 3 {
        // The twelfth person's identifier differs from the first's by case alone.
        let id = match i % 12 {
            11 => "aB000000000000000".to_string(),
            n => format!("Ab{n:015}"),
        };
        csv += &format!("{id};0;2021-0{}-1{}\n", 1 + i % 9, i % 10);
    }
    for i in 0..35 {
        csv += &format!("xxxxxxxxxxxxxxxxx;1;2021-02-{:02}\n", 1 + i % 28);
    }
    csv += "Zz000000000000001;2;2021-03-03\nZz000000000000002;2;2021-03-04\n";
    csv
}

fn pmsi_dataset(on_missing: &str, valid_when: bool) -> DatasetText {
    let mut id = column("NIR_ANO_17", "string", "pseudonymise")
        .set("identifier", "any")
        .raw("case_sensitive", "true")
        .set("domain", "d")
        .set("on_missing", on_missing);
    if valid_when {
        id = id.raw("valid_when", "[{ column = \"NIR_RET\", values = [\"0\"] }]");
    }
    dataset("stays", &["stays.csv"])
        .source("delimiter = \";\"")
        .person("NIR_ANO_17")
        .column(id)
        .column(column("NIR_RET", "string", "drop"))
        .column(column("ENT_DAT", "date", "generalise").set("rule", "month"))
}

/// A placeholder never becomes a person: the one-character placeholder is missing by default, and
/// a return code marks the stays whose identifier is not reliable; with on_missing = "null" they are
/// delivered without a pseudonym, and the persons counted are the 12 chained ones (in the
/// delivery and in the catalogue's figures).
#[test]
fn a_placeholder_never_becomes_a_person() {
    let w = Work::new(&[("stays.csv", &pmsi_stays())]);
    let run = |dataset: DatasetText| {
        run_ok(&w.permit(&permit("N-4").dataset(dataset).text()));
        let df = w.delivered("stays");
        let ids = df.column("NIR_ANO_17").unwrap().str().unwrap().clone();
        let distinct: std::collections::HashSet<&str> = ids.iter().flatten().collect();
        (df.height(), ids.null_count(), distinct.len())
    };
    // Rejected by default: 36 chained stays delivered, of 12 persons.
    assert_eq!(run(pmsi_dataset("reject-row", true)), (36, 0, 12));
    let report = w.report();
    assert_eq!(report["datasets"][0]["rows_rejected"], 37);
    assert_eq!(
        report["datasets"][0]["columns"][0]["identifiers_missing"],
        37
    );
    // Delivered without a pseudonym: still 12 persons.
    assert_eq!(run(pmsi_dataset("null", true)), (73, 37, 12));
    // Without the return code, the placeholder is still no person; the two unreliable
    // identifiers are then taken as written.
    assert_eq!(run(pmsi_dataset("null", false)), (73, 35, 14));
    // The catalogue counts the chained persons only.
    let catalogue = "[datasets.catalogue]\nidentifier = \"https://catalogue.example/stays\"\n\
        title = \"Stays\"\ndescription = \"Stays\"\nkeywords = [\"stays\"]\n\
        contact_email = \"dpo@example.org\"\naccess_url = \"https://example.org/apply\"\n\
        dataset_type = \"STATISTICAL\"\nhealth_categories = [\"HRAD\"]\n\
        provenance = \"PMSI\"";
    let describe = |valid_when: bool| -> serde_json::Value {
        let text = permit("N-4")
            .dataset(pmsi_dataset("null", valid_when).tail(catalogue))
            .text();
        let out = w.path("stays.jsonld");
        let o = ehds_prep(&[
            "describe",
            "--permit",
            w.permit(&text).to_str().unwrap(),
            "--dataset",
            "stays",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let jsonld = std::fs::read_to_string(&out).unwrap();
        assert!(!jsonld.contains("xxxxx"));
        serde_json::from_str(&jsonld).unwrap()
    };
    let description = describe(false);
    let dataset = &description["@graph"][0];
    assert_eq!(
        dataset["healthdcatap:numberOfUniqueIndividuals"]["@value"], 14,
        "{dataset}"
    );
    // The placeholders hold no identifier: 38 of 73 records have one, and every one is valid.
    let quality = dataset["dqv:hasQualityMeasurement"].as_array().unwrap();
    let measured = |metric: &str| {
        quality
            .iter()
            .find(|m| {
                m["dqv:computedOn"]["@id"]
                    .as_str()
                    .unwrap()
                    .ends_with("NIR_ANO_17")
                    && m["dqv:isMeasurementOf"]["@id"]
                        .as_str()
                        .unwrap()
                        .ends_with(metric)
            })
            .map(|m| m["dqv:value"]["@value"].as_f64().unwrap())
    };
    assert_eq!(measured(":completeness"), Some(38.0 / 73.0));
    assert_eq!(measured(":validity"), Some(1.0));
    // With the return code, the catalogue counts the 12 chained persons.
    assert_eq!(
        describe(true)["@graph"][0]["healthdcatap:numberOfUniqueIndividuals"]["@value"],
        12
    );
    // A condition on a column that is not declared is refused.
    let text = permit("N-4")
        .dataset(pmsi_dataset("null", true))
        .text()
        .replace("column = \"NIR_RET\"", "column = \"SEJ_RET\"");
    let o = ehds_prep(&["validate", "--permit", w.permit(&text).to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("valid_when[0].column") && stderr(&o).contains("`SEJ_RET`"));
}

/// A Parquet column's sentinels are missing too: the date `1600-01-01` is never shifted.
#[test]
fn a_parquet_sentinel_date_is_never_shifted() {
    let w = Work::new(&[]);
    let sentinel = NaiveDate::from_ymd_opt(1600, 1, 1).unwrap();
    let real = NaiveDate::from_ymd_opt(2021, 3, 4).unwrap();
    let dates: Vec<NaiveDate> = (0..30)
        .map(|i| if i % 3 == 0 { real } else { sentinel })
        .collect();
    let nirs: Vec<&str> = (0..30).map(|i| NIRS[i % 4]).collect();
    let mut df = df!("nir" => nirs, "admission" => dates).unwrap();
    ParquetWriter::new(std::fs::File::create(w.path("data.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    let with = |admission: ColumnText| {
        shifting()
            .dataset(
                dataset("people", &["data.parquet"])
                    .parquet()
                    .person("nir")
                    .column(nir("nir", "d"))
                    .column(admission),
            )
            .text()
    };
    let o = ehds_prep(&[
        "run",
        "--permit",
        w.permit(&with(column("admission", "date", "shift")))
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let declared = column("admission", "date", "shift").raw("null_values", "[\"1600-01-01\"]");
    run_ok(&w.permit(&with(declared)));
    let admission = w.delivered("people").column("admission").unwrap().clone();
    assert_eq!(admission.null_count(), 20);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    for d in admission.date().unwrap().physical().iter().flatten() {
        let shift = (epoch + chrono::Duration::days(d as i64) - real).num_days();
        assert!(shift != 0 && shift.abs() <= 60, "{shift}");
    }
}

/// An SNDS-shaped Latin-1 `;` extract: amounts with a decimal comma, départements of three
/// characters (`075`, `02A`, `974`) generalised like postcodes; a value that is no number names its
/// place and the rule, never the value.
#[test]
fn decimal_commas_and_three_character_departements_are_read() {
    let data =
        b"BEN_RES_DPT;PRS_PAI_MNT;LIB\n075;12,50;caf\xe9\n02A;0,99;x\n974;1234;y\n013;-3,5;z\n";
    let w = Work::new(&[]);
    std::fs::write(w.path("data.csv"), data).unwrap();
    let permit = permit("N-5").without_keys().dataset(
        dataset("claims", &["data.csv"])
            .source("delimiter = \";\"")
            .source("encoding = \"latin-1\"")
            .source("decimal = \",\"")
            .column(
                column("BEN_RES_DPT", "string", "generalise")
                    .raw("levels", "[\"departement\"]")
                    .raw("level", "1"),
            )
            .column(kept("PRS_PAI_MNT", "float"))
            .column(kept("LIB", "string"))
            .privacy("k = 1"),
    );
    run_ok(&w.permit(&permit.text()));
    let df = w.delivered("claims");
    let mut rows: Vec<(String, i64, String)> = (0..df.height())
        .map(|i| {
            (
                text(&df, "BEN_RES_DPT", i),
                (df.column("PRS_PAI_MNT")
                    .unwrap()
                    .f64()
                    .unwrap()
                    .get(i)
                    .unwrap()
                    * 100.0)
                    .round() as i64,
                text(&df, "LIB", i),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("13".into(), -350, "z".into()),
            ("2A".into(), 99, "x".into()),
            ("75".into(), 1250, "café".into()),
            ("974".into(), 123400, "y".into()),
        ]
    );
    std::fs::write(
        w.path("data.csv"),
        b"BEN_RES_DPT;PRS_PAI_MNT;LIB\n075;1.234,50;x\n",
    )
    .unwrap();
    let o = ehds_prep(&[
        "run",
        "--permit",
        w.permit(&permit.text()).to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("column `PRS_PAI_MNT`") && stderr(&o).contains("decimal comma"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("1.234"), "{}", stderr(&o));
}

/// Dispensings with CIP13 codes mapped to ATC: a cohort of ATC prefixes reads the delivered values
/// when the permit says so; on raw values it matches nothing, which `validate` warns of on its
/// sample and `run` refuses (exit 4); a condition on a mapped column must say which values it reads.
#[test]
fn a_cohort_reads_raw_or_delivered_values_as_the_permit_says() {
    let mut data = String::from("nir;CIP13;qty\n");
    let codes = [
        ("3400930000001", "A10BA02"),
        ("3400930000002", "C09AA05"),
        ("3400930000003", "A10AB01"),
    ];
    for i in 0..12 {
        data += &format!("{};{};{}\n", NIRS[i % 4], codes[i % 3].0, i);
    }
    let dictionary: String = std::iter::once("from,to\n".to_string())
        .chain(codes.iter().map(|(cip, atc)| format!("{cip},{atc}\n")))
        .collect();
    let w = Work::new(&[("data.csv", &data), ("cip_atc.csv", &dictionary)]);
    let with = |on: Option<&str>| {
        let on = on.map_or(String::new(), |on| format!("\non = \"{on}\""));
        permit("N-6").dataset(
            dataset("dispensings", &["data.csv"])
                .source("delimiter = \";\"")
                .person("nir")
                .column(nir("nir", "d"))
                .column(
                    column("CIP13", "string", "map")
                        .set("dictionary", "cip_atc.csv")
                        .set("rename", "atc"),
                )
                .column(kept("qty", "integer"))
                .tail(&format!(
                    "[[datasets.cohort]]\ncolumn = \"CIP13\"\nprefixes = [\"A10\"]{on}"
                )),
        )
    };
    let command = |verb: &str, on: Option<&str>| {
        ehds_prep(&[
            verb,
            "--permit",
            w.permit(&with(on).text()).to_str().unwrap(),
        ])
    };
    let o = command("validate", None);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("on = \"raw\" or on = \"delivered\""),
        "{}",
        stderr(&o)
    );
    // Raw: the CIP13 codes never start with an ATC prefix.
    let o = command("validate", Some("raw"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: dataset dispensings: none of the 12 sample rows would be delivered (12 outside the cohort"),
        "{}",
        stderr(&o)
    );
    let o = command("run", Some("raw"));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(!w.path("out").exists());
    // Delivered: the 8 dispensings of the two A10 codes.
    let o = command("validate", Some("delivered"));
    assert!(
        o.status.success() && !stderr(&o).contains("warning"),
        "{}",
        stderr(&o)
    );
    run_ok(&w.permit(&with(Some("delivered")).text()));
    let df = w.delivered("dispensings");
    let atc = sorted_texts(&df, "atc");
    assert_eq!(atc, [["A10AB01"; 4], ["A10BA02"; 4]].concat());
    let report = w.report();
    assert_eq!(report["datasets"][0]["rows_outside_cohort"], 4);
    assert_eq!(report["datasets"][0]["rows_rejected"], 0);
}

/// `validate` runs its sample through the identifier rules: a rule that rejects every row (a NIR
/// rule on SNDS pseudo-NIRs) is a warning before the run that would fail.
#[test]
fn validate_warns_when_the_identifier_rule_rejects_every_sample_row() {
    let mut data = String::from("BEN_NIR_PSA,sex\n");
    for i in 0..10 {
        data += &format!("Ab{i:015},1\n");
    }
    let w = Work::new(&[("data.csv", &data)]);
    let text = permit("N-7")
        .dataset(
            dataset("people", &["data.csv"])
                .person("BEN_NIR_PSA")
                .column(nir("BEN_NIR_PSA", "d"))
                .column(kept("sex", "integer")),
        )
        .text();
    let o = ehds_prep(&["validate", "--permit", w.permit(&text).to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("0 outside the cohort, 0 opted out, 10 with a rejected identifier"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("Ab0000"), "{}", stderr(&o));
}

/// DCIR dispensings reach the beneficiary through the claim's key: opt-out, date shifts and the
/// delivered pseudonym apply to them as to the claims; a dispensing whose key finds no claim is
/// rejected; a key shared by two persons stops the run without showing a value.
#[test]
fn a_table_reaches_its_person_through_a_join_key() {
    let persons = ["aB00000000000001", "Ab00000000000001", "zz00000000000009"];
    let mut claims = String::from("BEN_NIR_PSA;DCT_ORD_NUM;FLX_DIS_DTD;EXE_SOI_DTD\n");
    let mut dispensings = String::from("DCT_ORD_NUM;FLX_DIS_DTD;PHA_PRS_C13;PHA_DTE\n");
    let mut expected = 0;
    for i in 0..30 {
        let person = persons[i % 3];
        claims += &format!("{person};{i};2021-0{}-01;2021-03-{:02}\n", 1 + i % 6, 1 + i);
        for j in 0..(1 + i % 2) {
            dispensings += &format!(
                "{i};2021-0{}-01;340093000{j:04};2021-03-{:02}\n",
                1 + i % 6,
                1 + i
            );
            if i % 3 != 2 {
                expected += 1;
            }
        }
    }
    // A dispensing whose claim is not in the extract.
    dispensings += "999;2021-01-01;3400930009999;2021-03-01\n";
    let w = Work::new(&[
        ("claims.csv", &claims),
        ("dispensings.csv", &dispensings),
        ("opt_out.txt", "zz00000000000009\n"),
    ]);
    let id = || {
        column("BEN_NIR_PSA", "string", "pseudonymise")
            .set("identifier", "any")
            .raw("case_sensitive", "true")
            .set("domain", "d")
            .set("rename", "person")
    };
    let text = shifting()
        .section("[opt_out]\nfile = \"opt_out.txt\"\ncase_sensitive = true")
        .dataset(
            dataset("claims", &["claims.csv"])
                .source("delimiter = \";\"")
                .person("BEN_NIR_PSA")
                .column(id())
                .column(kept("DCT_ORD_NUM", "integer"))
                .column(kept("FLX_DIS_DTD", "date").set("unshifted", "a flow date, not the person's"))
                .column(column("EXE_SOI_DTD", "date", "shift")),
        )
        .dataset(
            dataset("dispensings", &["dispensings.csv"])
                .source("delimiter = \";\"")
                .option("[datasets.person_via]\ndataset = \"claims\"\nkeys = [\"DCT_ORD_NUM\", \"FLX_DIS_DTD\"]\ndeliver_as = \"person\"\ndomain = \"d\"")
                .column(kept("DCT_ORD_NUM", "integer"))
                .column(kept("FLX_DIS_DTD", "date").set("unshifted", "a flow date, not the person's"))
                .column(kept("PHA_PRS_C13", "string"))
                .column(column("PHA_DTE", "date", "shift")),
        )
        .text();
    run_ok(&w.permit(&text));
    let claims = w.delivered("claims");
    let dispensings = w.delivered("dispensings");
    assert_eq!(dispensings.height(), expected);
    let report = w.report();
    assert_eq!(report["datasets"][1]["rows_rejected"], 1);
    // The opted-out beneficiary's 10 claims hold 15 dispensings.
    let opted_out: u64 = (0..30).filter(|i| i % 3 == 2).map(|i| 1 + i % 2).sum();
    assert_eq!(report["datasets"][1]["rows_opted_out"], opted_out);
    // Joined on the key: the same person, moved by the same shift.
    let key = |df: &DataFrame, i: usize| {
        (
            df.column("DCT_ORD_NUM")
                .unwrap()
                .i64()
                .unwrap()
                .get(i)
                .unwrap(),
            df.column("FLX_DIS_DTD")
                .unwrap()
                .date()
                .unwrap()
                .physical()
                .get(i)
                .unwrap(),
        )
    };
    let mut of_claim = std::collections::HashMap::new();
    for i in 0..claims.height() {
        let person = claims
            .column("person")
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .unwrap()
            .to_string();
        let moved = claims
            .column("EXE_SOI_DTD")
            .unwrap()
            .date()
            .unwrap()
            .physical()
            .get(i)
            .unwrap()
            - (18_686 + key(&claims, i).0 as i32);
        of_claim.insert(key(&claims, i), (person, moved));
    }
    assert_eq!(of_claim.len(), 20);
    let mut persons = std::collections::HashSet::new();
    for i in 0..dispensings.height() {
        let (person, moved) = &of_claim[&key(&dispensings, i)];
        let here = dispensings
            .column("person")
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .unwrap();
        assert_eq!(here, person);
        let date = dispensings
            .column("PHA_DTE")
            .unwrap()
            .date()
            .unwrap()
            .physical()
            .get(i)
            .unwrap();
        assert_eq!(date - (18_686 + key(&dispensings, i).0 as i32), *moved);
        assert!(*moved != 0 && moved.abs() <= 60);
        persons.insert(here.to_string());
    }
    // The two persons differing by case alone stay two.
    assert_eq!(persons.len(), 2);
    // A key that leads to two persons.
    let shared = claims_with_shared_key(&w);
    let o = ehds_prep(&["run", "--permit", w.permit(&text).to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("one join key leads to two persons"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(&shared), "{}", stderr(&o));
}

/// Rewrites `claims.csv` so that two persons share one claim key; returns the second person.
fn claims_with_shared_key(w: &Work) -> String {
    let path = w.path("claims.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let second = "Zq00000000000077".to_string();
    let first_row = text.lines().nth(1).unwrap().to_string();
    let (_, rest) = first_row.split_once(';').unwrap();
    std::fs::write(&path, format!("{text}{second};{rest}\n")).unwrap();
    second
}

/// A person that the claims' privacy model suppresses leaves the dispensings reached through
/// the claim key (one person, one fate), and the dispensings' own model counts persons by the
/// person the key finds.
#[test]
fn a_person_found_by_join_key_shares_the_fate_of_the_person() {
    // Five beneficiaries of region 11, one alone in region 93: suppressed by k = 2.
    let mut claims = String::from("BEN_NIR_PSA;DCT_ORD_NUM;BEN_RES_REG\n");
    let mut dispensings = String::from("DCT_ORD_NUM;PHA_ATC\n");
    for i in 0..12 {
        let region = if i % 6 == 5 { "93" } else { "11" };
        claims += &format!("Ben{:013};{i};{region}\n", i % 6);
        dispensings += &format!("{i};A10BA02\n{i};C09AA05\n");
    }
    let w = Work::new(&[("claims.csv", &claims), ("dispensings.csv", &dispensings)]);
    let id = || {
        column("BEN_NIR_PSA", "string", "pseudonymise")
            .set("identifier", "any")
            .set("domain", "d")
            .set("rename", "person")
    };
    let text = permit("N-8")
        .dataset(
            dataset("claims", &["claims.csv"])
                .source("delimiter = \";\"")
                .person("BEN_NIR_PSA")
                .column(id())
                .column(kept("DCT_ORD_NUM", "integer"))
                .column(
                    column("BEN_RES_REG", "string", "generalise")
                        .raw("levels", "[\"*\"]")
                        .raw("level", "0"),
                )
                .privacy("k = 2\nsuppression_limit = 0.5"),
        )
        .dataset(
            dataset("dispensings", &["dispensings.csv"])
                .source("delimiter = \";\"")
                .option("[datasets.person_via]\ndataset = \"claims\"\nkeys = [\"DCT_ORD_NUM\"]\ndeliver_as = \"person\"\ndomain = \"d\"")
                .column(column("DCT_ORD_NUM", "integer", "drop"))
                .column(
                    column("PHA_ATC", "string", "generalise")
                        .raw("levels", "[\"atc 1\"]")
                        .raw("level", "1"),
                )
                .privacy("k = 2"),
        )
        .text();
    run_ok(&w.permit(&text));
    let report = w.report();
    let dispensings = &report["datasets"][1];
    assert_eq!(report["datasets"][0]["persons_suppressed"], 1, "{report}");
    // The suppressed beneficiary's two claims hold four dispensings.
    assert_eq!(dispensings["rows_of_removed_persons"], 4, "{dispensings}");
    assert_eq!(dispensings["rows_delivered"], 20);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("out/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["datasets"][1]["privacy"]["persons_counted_by"], "person",
        "{manifest}"
    );
    let delivered = w.delivered("dispensings");
    let persons: std::collections::HashSet<String> =
        sorted_texts(&delivered, "person").into_iter().collect();
    assert_eq!(persons.len(), 5);
}

/// SNDS names a beneficiary by BEN_NIR_PSA + BEN_RNG_GEM (twins share the first): as a composite
/// person, twins are two persons for the opt-out list (an entry names both parts), the date
/// shifts, the privacy model's counts and the tables that reach them through a join key.
#[test]
fn twins_are_two_persons_when_the_person_is_a_composite() {
    // Twins A (ranks 1 and 2) alone in region 93; twins B, of whom rank 2 opted out; four others.
    let people = [
        ("Tw0000000000000A", 1, "93"),
        ("Tw0000000000000A", 2, "93"),
        ("Tw0000000000000B", 1, "11"),
        ("Tw0000000000000B", 2, "11"),
        ("Si00000000000001", 1, "11"),
        ("Si00000000000002", 1, "11"),
        ("Si00000000000003", 1, "24"),
        ("Si00000000000004", 1, "24"),
    ];
    let mut claims = String::from("BEN_NIR_PSA;BEN_RNG_GEM;DCT_ORD_NUM;BEN_RES_REG;EXE_SOI_DTD\n");
    let mut dispensings = String::from("DCT_ORD_NUM;PHA_DTE\n");
    for i in 0..40 {
        let (nir, rank, region) = people[i % people.len()];
        claims += &format!("{nir};{rank};{i};{region};2021-03-{:02}\n", 1 + i % 28);
        dispensings += &format!("{i};2021-04-{:02}\n", 1 + i % 28);
    }
    let w = Work::new(&[
        ("claims.csv", &claims),
        ("dispensings.csv", &dispensings),
        (
            "opt_out.txt",
            "# BEN_NIR_PSA;BEN_RNG_GEM\nTw0000000000000B ; 2\n",
        ),
    ]);
    let part = |name: &str, pattern: &str| {
        column(name, "string", "drop")
            .set("identifier", "pattern")
            .set("pattern", pattern)
            .raw("case_sensitive", "true")
    };
    let composite = "[[datasets.composites]]\nname = \"beneficiary\"\ninputs = [\"BEN_NIR_PSA\", \"BEN_RNG_GEM\"]\ndomain = \"d\"";
    let claims_dataset = || {
        dataset("claims", &["claims.csv"])
            .source("delimiter = \";\"")
            .person("beneficiary")
            .column(part("BEN_NIR_PSA", "[A-Za-z0-9]{16}"))
            .column(part("BEN_RNG_GEM", "[0-9]{1,3}"))
            .column(kept("DCT_ORD_NUM", "integer"))
            .column(
                column("BEN_RES_REG", "string", "generalise")
                    .raw("levels", "[\"*\"]")
                    .raw("level", "0"),
            )
            .column(column("EXE_SOI_DTD", "date", "shift"))
            .privacy("k = 2\nsuppression_limit = 0.5")
            .tail(composite)
    };
    let opt_out = "[opt_out]\nfile = \"opt_out.txt\"\nparts = [\"BEN_NIR_PSA\", \"BEN_RNG_GEM\"]";
    let good = shifting()
        .section(opt_out)
        .dataset(claims_dataset())
        .dataset(
            dataset("dispensings", &["dispensings.csv"])
                .source("delimiter = \";\"")
                .option("[datasets.person_via]\ndataset = \"claims\"\nkeys = [\"DCT_ORD_NUM\"]\ndeliver_as = \"beneficiary\"\ndomain = \"d\"")
                .column(kept("DCT_ORD_NUM", "integer"))
                .column(column("PHA_DTE", "date", "shift")),
        )
        .text();
    run_ok(&w.permit(&good));
    let report = w.report();
    // Twin B2's 5 claims (and their dispensings) are opted out, not twin B1's.
    assert_eq!(report["datasets"][0]["rows_opted_out"], 5, "{report}");
    assert_eq!(report["datasets"][1]["rows_opted_out"], 5, "{report}");
    // The twins of region 93 are two persons: k = 2 holds, nobody is suppressed.
    let model = &report["datasets"][0]["anonymisation"];
    assert_eq!(model["rows_suppressed"], 0, "{model}");
    assert_eq!(model["risk_before"]["smallest_class"], 2, "{model}");
    let claims = w.delivered("claims");
    assert_eq!(claims.height(), 35);
    let ints = |df: &DataFrame, c: &str| -> Vec<i64> {
        df.column(c)
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let dates = |df: &DataFrame, c: &str| -> Vec<i32> {
        let c = df.column(c).unwrap().date().unwrap().physical().clone();
        c.into_no_null_iter().collect()
    };
    let persons: Vec<String> = (0..claims.height())
        .map(|i| text(&claims, "beneficiary", i))
        .collect();
    // Each delivered person is exactly one of the seven kept (NIR, rank) pairs, with one shift.
    let mut of_person: std::collections::HashMap<String, (usize, i32)> = Default::default();
    let march = NaiveDate::from_ymd_opt(2021, 3, 1)
        .unwrap()
        .num_days_from_ce()
        - 719_163;
    for ((order, shifted), person) in ints(&claims, "DCT_ORD_NUM")
        .into_iter()
        .zip(dates(&claims, "EXE_SOI_DTD"))
        .zip(&persons)
    {
        let i = order as usize;
        let shift = shifted - (march + (i % 28) as i32);
        let who = i % people.len();
        assert_ne!(who, 3, "twin B2 opted out");
        let known = of_person.entry(person.clone()).or_insert((who, shift));
        assert_eq!(*known, (who, shift), "one pseudonym, one person, one shift");
    }
    assert_eq!(of_person.len(), 7);
    let twin = |who: usize| of_person.values().find(|(w, _)| *w == who).unwrap().1;
    assert_ne!(twin(0), twin(1), "twins have their own shifts");
    let manifest = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(w.path("out/manifest.json")).unwrap())
            .unwrap()
    };
    assert_eq!(manifest()["date_shift"]["key_parts"], 2);
    // The dispensings reach the same persons and shifts through the claim key.
    let dispensings = w.delivered("dispensings");
    assert_eq!(dispensings.height(), 35);
    let april = march + 31;
    for ((order, shifted), i) in ints(&dispensings, "DCT_ORD_NUM")
        .into_iter()
        .zip(dates(&dispensings, "PHA_DTE"))
        .zip(0..)
    {
        let (who, shift) = of_person[&text(&dispensings, "beneficiary", i)];
        assert_eq!(who, order as usize % people.len());
        assert_eq!(shifted - (april + (order % 28) as i32), shift);
    }
    // Shifts drawn from the first part alone: twins share theirs, which is the shift a holder
    // naming persons by that part alone (PMSI) gives them, and the manifest says so.
    let by_nir = good.replace("max_days = 60", "max_days = 60\nkeyed_on = \"first_part\"");
    run_ok(&w.permit(&by_nir));
    assert_eq!(manifest()["date_shift"]["key_parts"], 1);
    let claims = w.delivered("claims");
    let shifts: std::collections::HashMap<usize, i32> = ints(&claims, "DCT_ORD_NUM")
        .into_iter()
        .zip(dates(&claims, "EXE_SOI_DTD"))
        .map(|(order, shifted)| {
            let i = order as usize;
            (i % people.len(), shifted - (march + (i % 28) as i32))
        })
        .collect();
    assert_eq!(shifts[&0], shifts[&1], "twins share the shift of their NIR");
    let pmsi = w.path("pmsi.csv");
    std::fs::write(
        &pmsi,
        "NIR_ANO_17;EXE_SOI_DTD\nTw0000000000000A;2021-03-01\n",
    )
    .unwrap();
    let hospital = shifting()
        .dataset(
            dataset("stays", &["pmsi.csv"])
                .source("delimiter = \";\"")
                .person("NIR_ANO_17")
                .column(part("NIR_ANO_17", "[A-Za-z0-9]{16}"))
                .column(column("EXE_SOI_DTD", "date", "shift")),
        )
        .text();
    run_ok(&w.permit(&hospital));
    assert_eq!(manifest()["date_shift"]["key_parts"], 1);
    let stays = w.delivered("stays");
    assert_eq!(dates(&stays, "EXE_SOI_DTD")[0] - march, shifts[&0]);
    // A permit naming the person by the NIR alone in one table and by the pair in another, or an
    // opt-out list of NIRs alone for composite persons, is refused.
    let mixed = shifting()
        .section(opt_out)
        .dataset(claims_dataset())
        .dataset(
            dataset("other", &["claims.csv"])
                .source("delimiter = \";\"")
                .person("BEN_NIR_PSA")
                .column(part("BEN_NIR_PSA", "[A-Za-z0-9]{16}"))
                .column(column("EXE_SOI_DTD", "date", "shift")),
        )
        .text();
    let single_list = shifting()
        .section("[opt_out]\nfile = \"opt_out.txt\"\ncase_sensitive = true")
        .dataset(claims_dataset())
        .text();
    for (bad, says) in [(mixed, "named the same way"), (single_list, "parts = [")] {
        let o = ehds_prep(&["validate", "--permit", w.permit(&bad).to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    // An entry that does not give both parts stops the run, naming its line, not its value.
    std::fs::write(w.path("opt_out.txt"), "Tw0000000000000B\n").unwrap();
    let o = ehds_prep(&["run", "--permit", w.permit(&good).to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 1"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Tw0000000000000B"), "{}", stderr(&o));
}

/// The bundled SNDS-shaped sample (`generate-snds`) through the insurer's and the hospital's
/// permits and the access body's link: an independent Python computation from the raw extract
/// recounts every delivered row (no sentinel shifted, partial dates from the shifted date, no
/// placeholder person, twins two persons, k in beneficiaries). A negative control: the insurer
/// drawing its shifts from the whole composite moves dates the checker does not expect, and the
/// access body refuses to link it with the hospital.
#[test]
fn the_snds_sample_is_delivered_as_an_independent_computation_expects() {
    let tmp = tempfile::tempdir().unwrap();
    for holder in ["snds-insurer", "snds-hospital"] {
        run_ok(&common::sample_permit(holder, tmp.path()));
    }
    let link = common::sample_permit("snds-linkage", tmp.path());
    let o = ehds_prep(&["link", "--permit", link.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = tmp.path().join("out");
    let counts = common::independent_check("check_snds_delivery.py", &out);
    for (holder, tables) in [
        (
            "snds-insurer",
            &["beneficiaries", "claims", "dispensings"][..],
        ),
        ("snds-hospital", &["stays", "stay_details"][..]),
    ] {
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(holder).join("report.json")).unwrap(),
        )
        .unwrap();
        for (d, name) in report["datasets"].as_array().unwrap().iter().zip(tables) {
            assert_eq!(d["name"], *name);
            assert_eq!(d["rows_delivered"], counts[name]["delivered"], "{name}");
        }
    }
    // The sample holds what it is for.
    let at_least_one = [
        ("beneficiaries", "sentinels"),
        ("beneficiaries", "twins_both_delivered"),
        ("beneficiaries", "suppressed"),
        ("beneficiaries", "opted_out"),
        ("claims", "sentinels"),
        ("stays", "placeholders"),
        ("stays", "opted_out"),
    ];
    for (table, what) in at_least_one {
        assert!(
            counts[table][what].as_u64().unwrap() > 0,
            "{table}.{what}: {counts}"
        );
    }
    assert!(counts["linked"]["persons"].as_u64().unwrap() > 1000);
    // The dispensings name their person only by the composite: the access body could not find
    // the persons its person table suppresses there, so a linking permit delivering them is
    // refused.
    let text = std::fs::read_to_string(&link).unwrap();
    let dispensings = format!(
        "{text}\n[[datasets]]\nname = \"dispensings\"\nperson = \"beneficiary\"\n\n\
         [datasets.source]\nformat = \"parquet\"\nfiles = [\"{}\"]\n\n\
         [[datasets.columns]]\nname = \"beneficiary\"\ntype = \"string\"\n\
         identifier = \"pseudonym\"\naction = \"pseudonymise\"\ndomain = \"researcher\"\n",
        out.join("snds-insurer/dispensings.parquet").display()
    );
    let refused = tmp.path().join("refused.toml");
    std::fs::write(&refused, dispensings).unwrap();
    let o = ehds_prep(&["link", "--permit", refused.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not `person_pseudonym`, the person column source `insurer`"),
        "{}",
        stderr(&o)
    );
    // Negative control.
    let insurer = common::sample_permit("snds-insurer", tmp.path());
    let text = std::fs::read_to_string(&insurer).unwrap();
    std::fs::write(&insurer, text.replace("keyed_on = \"first_part\"", "")).unwrap();
    run_ok(&insurer);
    let o = std::process::Command::new("python3")
        .arg(common::repo().join("tests/independent/check_snds_delivery.py"))
        .arg(common::repo())
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "the checker accepted shifts it did not expect"
    );
    let o = ehds_prep(&["link", "--permit", link.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("drawn from 2 identifier part(s)"),
        "{}",
        stderr(&o)
    );
}

/// The bundled SNDS sample is what `generate-snds` writes (byte for byte), so it can be made again
/// at any size.
#[test]
fn the_bundled_snds_sample_is_the_generators() {
    let tmp = tempfile::tempdir().unwrap();
    let o = ehds_prep(&["generate-snds", "--out", tmp.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bundled = common::repo().join("sample-data/snds");
    for file in [
        "insurer/IR_BEN_R.csv",
        "insurer/ER_PRS_F.csv",
        "insurer/ER_PHA_F.csv",
        "insurer/opt_out.txt",
        "insurer/cip13_atc.csv",
        "hospital/T_MCOaaC.csv",
        "hospital/T_MCOaaB.csv",
        "hospital/opt_out.txt",
        "truth.csv",
    ] {
        let made = std::fs::read(tmp.path().join(file)).unwrap();
        assert!(
            made == std::fs::read(bundled.join(file)).unwrap(),
            "{file} differs"
        );
    }
}
