//! Privacy per person across the whole delivery: what a file's row order, or another table, could
//! give away about a person beyond what each table's own check covers.

mod common;

use std::collections::HashMap;

use common::permit_text::*;
use common::*;
use polars::prelude::*;

fn strings(path: &std::path::Path, column: &str) -> Vec<Option<String>> {
    let df = ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap();
    df.column(column)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(String::from))
        .collect()
}

/// Spearman's rank correlation of two sequences without ties.
fn rank_correlation(a: &[f64], b: &[f64]) -> f64 {
    let rank = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (rank, &i) in order.iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y) * (x - y)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// Generated extracts number patients and stays in source order (`P0000001`, `S000000001`…). Kept
/// in the delivery, they show where each row came from: its delivered position must tell nothing
/// of it, in every table, while a person's rows stay together.
#[test]
fn a_delivered_row_position_tells_nothing_of_the_source_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ehds_prep::generate::write_extracts(&data, 6000, 3).unwrap();
    demo_key_to(&tmp.path().join("key.hex"));
    let file = |f: &str| data.join(f).display().to_string();
    let person = || nir("nir", "d").set("rename", "person");
    permit("ORDER-1")
        .output_option("batch_rows = 1000")
        .dataset(
            dataset("patients", &[&file("hospital/patients.csv")])
                .person("nir")
                .column(kept("patient_id", "string"))
                .column(person()),
        )
        .dataset(
            dataset("stays", &[&file("hospital/stays.csv")])
                .person("nir")
                .column(kept("stay_id", "string"))
                .column(person()),
        )
        .write(&tmp.path().join("permit.toml"));
    run_ok(&tmp.path().join("permit.toml"));
    for (table, id) in [("patients", "patient_id"), ("stays", "stay_id")] {
        let path = tmp.path().join(format!("out/{table}.parquet"));
        let ids = strings(&path, id);
        let source: Vec<f64> = ids
            .iter()
            .map(|v| v.as_ref().unwrap()[1..].parse::<f64>().unwrap())
            .collect();
        let delivered: Vec<f64> = (0..ids.len()).map(|i| i as f64).collect();
        assert!(ids.len() > 3000, "{table}: {} rows", ids.len());
        let rho = rank_correlation(&source, &delivered);
        // About 1/√n by chance (n > 3,000: 0.018); the source order gives 1.
        assert!(rho.abs() < 0.06, "{table}: rank correlation {rho}");
        // Each person's rows together: a pseudonym never comes back after another.
        let persons = strings(&path, "person");
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, p) in persons.iter().enumerate() {
            let p = p.as_deref().unwrap();
            if let Some(&last) = seen.get(p) {
                assert_eq!(last, i - 1, "{table}: a person's rows are apart");
            }
            seen.insert(p, i);
        }
    }
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("out/manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(
        manifest["datasets"][1]["row_order"]
            .as_str()
            .unwrap()
            .contains("fmix64(FNV-1a(0x01 ‖ `person`))"),
        "{manifest}"
    );
}

/// The valid NIRs of a CSV column (normalised) with their rows' count, and every row's NIR.
fn nirs(
    path: &std::path::Path,
    column: &str,
    delimiter: char,
    latin1: bool,
) -> Vec<Option<String>> {
    use ehds_prep::kernels::identifier::{Checked, IdentifierKind, IdentifierRule};
    let bytes = std::fs::read(path).unwrap();
    let text: String = if latin1 {
        bytes.iter().map(|&b| b as char).collect()
    } else {
        String::from_utf8(bytes).unwrap()
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(delimiter).collect();
    let at = header.iter().position(|h| *h == column).unwrap();
    let rule = IdentifierRule::new(IdentifierKind::Nir);
    let mut normal = String::new();
    lines
        .map(|l| {
            let raw = l.split(delimiter).nth(at).unwrap().trim_matches('"');
            (rule.check_into(Some(raw), &mut normal) == Checked::Valid).then(|| normal.clone())
        })
        .collect()
}

/// The pseudonym the permit `id` gives `nir` in `domain` (HMAC-SHA-256 of the domain key, first 16
/// bytes in hex).
fn pseudonym(key: &std::path::Path, id: &str, domain: &str, nir: &str) -> String {
    let key = ehds_prep::kernels::keys::SecretKey::from_file(key)
        .unwrap()
        .domain_key(&format!("{id}/{domain}"));
    ehds_prep::kernels::hex::encode(
        &ehds_prep::kernels::pseudonymise::hmac_sha256(key.expose(), nir.as_bytes())[..16],
    )
}

/// A permit over generated extracts: patients anonymised (sex and département pinned,
/// k = 60, suppressed rows removed), stays and claims record-level, the claims in another
/// pseudonym domain.
fn one_fate_permit(
    dir: &std::path::Path,
    data: &std::path::Path,
    extra: &str,
) -> std::path::PathBuf {
    let file = |f: &str| data.join(f).display().to_string();
    let mut p = permit("FATE-1")
        .domain("d", "k", "")
        .domain("other", "k", "")
        .dataset(
            dataset("patients", &[&file("hospital/patients.csv")])
                .person("nir")
                .column(nir("nir", "d").set("rename", "person"))
                .column(
                    column("sex", "integer", "generalise")
                        .raw("levels", "[\"*\"]")
                        .raw("level", "0"),
                )
                .column(
                    column("postcode", "string", "generalise")
                        .raw("levels", "[\"departement\"]")
                        .raw("level", "1"),
                )
                .privacy("k = 60\nsuppression_limit = 0.9"),
        )
        .dataset(
            dataset("stays", &[&file("hospital/stays.csv")])
                .person("nir")
                .column(kept("stay_id", "string"))
                .column(nir("nir", "d").set("rename", "person")),
        )
        .dataset(
            dataset("claims", &[&file("insurer/pharmacy_claims.csv")])
                .person("nir")
                .source("delimiter = \";\"")
                .source("encoding = \"latin-1\"")
                .column(nir("nir", "other").set("rename", "person"))
                .column(kept("code_atc", "string")),
        );
    if !extra.is_empty() {
        p = p.output_option(extra);
    }
    p.write(&dir.join("fate.toml"))
}

/// A person suppressed by the patients' privacy model leaves the stays and the claims too (matched
/// by identifier across pseudonym domains), counted in the reports and not as opted out; a permit
/// that keeps them says why, in the manifest.
#[test]
fn a_person_suppressed_in_one_dataset_leaves_every_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ehds_prep::generate::write_extracts(&data, 3000, 5).unwrap();
    let key = tmp.path().join("key.hex");
    demo_key_to(&key);
    run_ok(&one_fate_permit(tmp.path(), &data, ""));
    let out = tmp.path().join("out");
    let delivered = |table: &str| -> std::collections::HashSet<String> {
        strings(&out.join(format!("{table}.parquet")), "person")
            .into_iter()
            .flatten()
            .collect()
    };
    let patients: std::collections::HashSet<String> =
        nirs(&data.join("hospital/patients.csv"), "nir", ',', false)
            .into_iter()
            .flatten()
            .collect();
    let kept = delivered("patients");
    let suppressed: std::collections::HashSet<&String> = patients
        .iter()
        .filter(|n| !kept.contains(&pseudonym(&key, "FATE-1", "d", n)))
        .collect();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let dataset = |name: &str| {
        report["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()
            .clone()
    };
    assert!(
        suppressed.len() > 20,
        "{} persons suppressed",
        suppressed.len()
    );
    assert_eq!(dataset("patients")["persons_suppressed"], suppressed.len());
    for (table, file, delimiter, latin1, domain) in [
        ("stays", "hospital/stays.csv", ',', false, "d"),
        ("claims", "insurer/pharmacy_claims.csv", ';', true, "other"),
    ] {
        let rows = nirs(&data.join(file), "nir", delimiter, latin1);
        let of_suppressed = rows
            .iter()
            .flatten()
            .filter(|n| suppressed.contains(n))
            .count() as u64;
        assert!(of_suppressed > 0, "{table}");
        let d = dataset(table);
        assert_eq!(d["rows_of_removed_persons"], of_suppressed, "{table}");
        assert_eq!(d["rows_opted_out"], 0, "{table}");
        let persons = delivered(table);
        for n in &suppressed {
            assert!(
                !persons.contains(&pseudonym(&key, "FATE-1", domain, n)),
                "{table}"
            );
        }
    }
    // The readable report shows them apart from the opted out.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("suppressed elsewhere"));

    // Kept on purpose: the stays keep every person, and the manifest says why.
    std::fs::remove_dir_all(&out).unwrap();
    let reason =
        "the outcome study needs every stay; the patients table is not delivered with them";
    run_ok(&one_fate_permit(
        tmp.path(),
        &data,
        &format!("keep_persons_suppressed_elsewhere = \"{reason}\""),
    ));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["persons_suppressed_elsewhere_kept"], reason);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert!(
        report["datasets"][1]
            .get("rows_of_removed_persons")
            .is_none()
    );
}

/// Two anonymised datasets: each leaves out the persons the other suppressed, and each still meets
/// its model, counted from its file.
#[test]
fn two_anonymised_datasets_settle_on_one_fate_per_person() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ehds_prep::generate::write_extracts(&data, 3000, 9).unwrap();
    let key = tmp.path().join("key.hex");
    demo_key_to(&key);
    let file = |f: &str| data.join(f).display().to_string();
    let departement = || {
        column("postcode", "string", "generalise")
            .raw("levels", "[\"departement\"]")
            .raw("level", "1")
    };
    permit("FATE-2")
        .dataset(
            dataset("patients", &[&file("hospital/patients.csv")])
                .person("nir")
                .column(nir("nir", "d").set("rename", "person"))
                .column(
                    column("sex", "integer", "generalise")
                        .raw("levels", "[\"*\"]")
                        .raw("level", "0"),
                )
                .column(departement())
                .privacy("k = 60\nsuppression_limit = 0.9"),
        )
        .dataset(
            dataset("stays", &[&file("hospital/stays.csv")])
                .person("nir")
                .column(nir("nir", "d").set("rename", "person"))
                .column(
                    column("unit", "string", "generalise")
                        .raw("levels", "[\"*\"]")
                        .raw("level", "0"),
                )
                .column(departement())
                .privacy("k = 8\nsuppression_limit = 0.9"),
        )
        .write(&tmp.path().join("fate.toml"));
    run_ok(&tmp.path().join("fate.toml"));
    let out = tmp.path().join("out");
    // The pseudonyms of a source's valid NIRs.
    let pseudonyms_of = |file: &str| -> std::collections::HashSet<String> {
        nirs(&data.join(file), "nir", ',', false)
            .into_iter()
            .flatten()
            .map(|n| pseudonym(&key, "FATE-2", "d", &n))
            .collect()
    };
    let mut delivered = Vec::new();
    for (table, qi, k) in [("patients", "sex", 60), ("stays", "unit", 8)] {
        let path = out.join(format!("{table}.parquet"));
        let persons = strings(&path, "person");
        // Classes counted from the file, in persons.
        let df = ParquetReader::new(std::fs::File::open(&path).unwrap())
            .finish()
            .unwrap();
        let first = df.column(qi).unwrap().cast(&DataType::String).unwrap();
        let second = strings(&path, "postcode");
        let mut classes: HashMap<
            (Option<String>, Option<String>),
            std::collections::HashSet<String>,
        > = HashMap::new();
        for (i, p) in persons.iter().enumerate() {
            let a = first.str().unwrap().get(i).map(String::from);
            classes
                .entry((a, second[i].clone()))
                .or_default()
                .insert(p.clone().unwrap());
        }
        let smallest = classes.values().map(|c| c.len()).min().unwrap();
        assert!(smallest >= k, "{table}: a class of {smallest} persons");
        delivered.push(
            persons
                .into_iter()
                .flatten()
                .collect::<std::collections::HashSet<_>>(),
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["datasets"][0]["name"], "patients",
        "in the permit's order"
    );
    assert!(
        report["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["persons_suppressed"].as_u64().is_some_and(|n| n > 0))
    );
    // Persons present in a source but delivered in only one of the two tables were suppressed by
    // the other (or are absent from it): none was suppressed by one and delivered by the other.
    let patients_nirs = pseudonyms_of("hospital/patients.csv");
    let stays_nirs = pseudonyms_of("hospital/stays.csv");
    let suppressed_in_patients: Vec<&String> = patients_nirs.difference(&delivered[0]).collect();
    let suppressed_in_stays: Vec<&String> = stays_nirs.difference(&delivered[1]).collect();
    assert!(!suppressed_in_patients.is_empty() && !suppressed_in_stays.is_empty());
    for p in suppressed_in_patients {
        assert!(
            !delivered[1].contains(p),
            "suppressed in patients, delivered in stays"
        );
    }
    for p in suppressed_in_stays {
        assert!(
            !delivered[0].contains(p),
            "suppressed in stays, delivered in patients"
        );
    }
}

/// An OMOP-shaped pair: `person` with its birth date, `observation_period` whose start is the birth
/// date (Synthea writes it so) and an age at the start. 40 persons born on distinct days of four
/// years, ten a year.
fn omop_extracts(dir: &std::path::Path) {
    let mut person = String::from("person_id,birth_date\n");
    let mut periods = String::from("person_id,start_date,age_at_start\n");
    for i in 0..40 {
        let birth = format!("{}-{:02}-{:02}", 1940 + i % 4 * 5, 1 + i % 12, 1 + i / 4);
        person += &format!("P{i:04},{birth}\n");
        periods += &format!("P{i:04},{birth},0\n");
    }
    std::fs::write(dir.join("person.csv"), person).unwrap();
    std::fs::write(dir.join("observation_period.csv"), periods).unwrap();
    demo_key_to(&dir.join("key.hex"));
}

/// The two datasets: the birth date generalised as `birth` says, the start date and the age as
/// `start` and `age` say, each declaring what it derives from.
fn omop_permit(birth: ColumnText, start: ColumnText, age: ColumnText) -> PermitText {
    let id = || {
        column("person_id", "string", "pseudonymise")
            .set("domain", "d")
            .set("rename", "person")
    };
    permit("OMOP-1")
        .dataset(
            dataset("person", &["person.csv"])
                .person("person_id")
                .column(id())
                .column(birth)
                .privacy("k = 5\nsuppression_limit = 0.1"),
        )
        .dataset(
            dataset("observation_period", &["observation_period.csv"])
                .person("person_id")
                .column(id())
                .column(start.set("derives_from", "person.birth_date"))
                .column(age.set("derives_from", "person.birth_date")),
        )
}

/// Another table must not undo a table's generalisation: a start date that is the birth date, or
/// an age, delivered more finely than the birth band is refused (exit 3, naming both columns) —
/// by `validate` when the birth band is fixed, by `run` once the search has chosen it, leaving no
/// delivery; at least as coarse, it is delivered.
#[test]
fn a_column_derived_from_the_birth_date_is_never_finer_than_its_band() {
    let tmp = tempfile::tempdir().unwrap();
    omop_extracts(tmp.path());
    let path = tmp.path().join("permit.toml");
    let birth = |levels: &str| column("birth_date", "date", "generalise").raw("levels", levels);
    let start_year = || column("start_date", "date", "generalise").set("rule", "year");
    let dropped_age = || column("age_at_start", "integer", "drop");
    let refused = |permit: PermitText, commands: &[&str], names: [&str; 2]| {
        permit.write(&path);
        for command in commands {
            let o = ehds_prep(&[command, "--permit", path.to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(3), "{command}: {}", stderr(&o));
            for name in names {
                assert!(stderr(&o).contains(name), "{command}: {}", stderr(&o));
            }
            assert!(!tmp.path().join("out").exists(), "{command}");
        }
    };
    // A fixed 5-year band: a start date by year, or an age in years, is finer.
    let five_years = || birth("[\"year\", \"5 years\"]").raw("level", "2");
    refused(
        omop_permit(five_years(), start_year(), dropped_age()),
        &["validate", "run"],
        ["`observation_period.start_date`", "`person.birth_date`"],
    );
    refused(
        omop_permit(
            five_years(),
            column("start_date", "date", "drop"),
            kept("age_at_start", "integer"),
        ),
        &["validate", "run"],
        ["`observation_period.age_at_start`", "`person.birth_date`"],
    );
    // A band the search chooses: the birth date alone is unique per person, so k = 5 needs at
    // least the 5-year level, and the yearly start date is then finer; `validate` cannot know.
    let searched = || birth("[\"5 years\", \"20 years\"]");
    let permit = omop_permit(searched(), start_year(), dropped_age());
    permit.write(&path);
    let o = ehds_prep(&["validate", "--permit", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    refused(
        permit,
        &["run"],
        ["`observation_period.start_date`", "`person.birth_date`"],
    );
    // As coarse as the band: delivered.
    let yearly = || birth("[\"year\", \"5 years\"]").raw("level", "1");
    omop_permit(yearly(), start_year(), dropped_age()).write(&path);
    run_ok(&path);
    let years = ParquetReader::new(
        std::fs::File::open(tmp.path().join("out/observation_period.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    assert_eq!(years.height(), 40);
    // A column that says nothing in time cannot derive from a date.
    omop_permit(
        yearly(),
        start_year(),
        column("age_at_start", "string", "keep"),
    )
    .write(&path);
    let o = ehds_prep(&["validate", "--permit", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("derives_from"), "{}", stderr(&o));
}

/// "Every row, in every table, of the persons with a diabetes code (E11) in `conditions`": a
/// person-level cohort, written without any identifier in the permit. The rows delivered are
/// recounted from the extracts by the test itself.
#[test]
fn a_person_level_cohort_keeps_every_row_of_its_persons_in_every_table() {
    let tmp = tempfile::tempdir().unwrap();
    let mut persons = String::from("person_id,sex\n");
    let mut conditions = String::from("person_id,code\n");
    let mut drugs = String::from("person_id,drug\n");
    let codes = ["E119", "I10", "J45", "E110", "C50"];
    let mut rows: Vec<(String, &str)> = Vec::new();
    for i in 0..50 {
        let id = format!("P{i:03}");
        persons += &format!("{id},{}\n", 1 + i % 2);
        for j in 0..(i % 3) {
            let code = codes[(i * 7 + j) % codes.len()];
            conditions += &format!(" {},{code}\n", id.to_lowercase());
            rows.push((id.clone(), code));
        }
        for j in 0..(i % 4) {
            drugs += &format!("{id},D{j}\n");
        }
    }
    // A condition row without a person cannot bring anyone in.
    conditions += ",E119\n";
    for (name, data) in [
        ("persons.csv", &persons),
        ("conditions.csv", &conditions),
        ("drugs.csv", &drugs),
    ] {
        std::fs::write(tmp.path().join(name), data).unwrap();
    }
    let diabetic: std::collections::BTreeSet<String> = rows
        .iter()
        .filter(|(_, code)| code.starts_with("E11"))
        .map(|(id, _)| id.clone())
        .collect();
    assert!(diabetic.len() > 5 && diabetic.len() < 40);
    let cohort =
        "[[datasets.cohort]]\ndataset = \"conditions\"\ncolumn = \"code\"\nprefixes = [\"E11\"]";
    let table = |name: &str, column: ColumnText| {
        dataset(name, &[&format!("{name}.csv")])
            .person("person_id")
            .column(kept("person_id", "string"))
            .column(column)
            .tail(cohort)
    };
    let path = tmp.path().join("permit.toml");
    permit("COHORT-1")
        .without_keys()
        .dataset(table("persons", kept("sex", "integer")))
        .dataset(table("conditions", kept("code", "string")))
        .dataset(table("drugs", kept("drug", "string")))
        .write(&path);
    run_ok(&path);
    let ids = |name: &str| -> Vec<String> {
        strings(&tmp.path().join(format!("out/{name}.parquet")), "person_id")
            .into_iter()
            .map(|v| v.unwrap().trim().to_uppercase())
            .collect()
    };
    let as_set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    let persons = ids("persons");
    assert_eq!(as_set(&persons), diabetic);
    assert_eq!(persons.len(), diabetic.len());
    // Every condition of theirs, not only the diabetes codes.
    let expected_conditions = rows.iter().filter(|(id, _)| diabetic.contains(id)).count();
    assert_eq!(ids("conditions").len(), expected_conditions);
    assert!(expected_conditions > diabetic.len());
    let expected_drugs: usize = diabetic
        .iter()
        .map(|id| id[1..].parse::<usize>().unwrap() % 4)
        .sum();
    let drugs = ids("drugs");
    assert_eq!(drugs.len(), expected_drugs);
    assert!(as_set(&drugs).is_subset(&diabetic));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["datasets"][0]["rows_outside_cohort"],
        50 - diabetic.len()
    );
    // The dataset named must be one of the permit's.
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "dataset = \"conditions\"",
        "dataset = \"diagnoses\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let o = ehds_prep(&["validate", "--permit", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("cohort[0].dataset") && stderr(&o).contains("`diagnoses`"));
}

/// A date of another table that equals the birth date, without a `derives_from` to bound it, is
/// measured: the run counts the persons whose date is their birth date (compared before any shift)
/// and warns, in the summary, report.json and report.html.
#[test]
fn a_date_equal_to_the_birth_date_is_counted_and_warned_of() {
    let tmp = tempfile::tempdir().unwrap();
    demo_key_to(&tmp.path().join("key.hex"));
    let mut person = String::from("person_id,birth_date\n");
    let mut periods = String::from("person_id,start_date,end_date\n");
    let mut equal = 0;
    for i in 0..40 {
        let birth =
            chrono::NaiveDate::from_ymd_opt(1940 + i % 4 * 5, 1 + i as u32 % 12, 1 + i as u32 / 4)
                .unwrap();
        let start = if i % 5 == 0 {
            birth + chrono::Duration::days(1)
        } else {
            equal += 1;
            birth
        };
        person += &format!("P{i:04},{birth}\n");
        periods += &format!("P{i:04},{start},2024-12-31\n");
    }
    std::fs::write(tmp.path().join("person.csv"), person).unwrap();
    std::fs::write(tmp.path().join("observation_period.csv"), periods).unwrap();
    let id = || {
        column("person_id", "string", "pseudonymise")
            .set("domain", "d")
            .set("rename", "person")
    };
    let path = permit("OMOP-2")
        .dataset(
            dataset("person", &["person.csv"])
                .person("person_id")
                .column(id())
                .column(
                    column("birth_date", "date", "generalise")
                        .set("age_at", "2025-01-01")
                        .raw("levels", "[\"width 10\", \"width 20\"]"),
                )
                .privacy("k = 5"),
        )
        .dataset(
            dataset("observation_period", &["observation_period.csv"])
                .person("person_id")
                .column(id())
                .column(kept("start_date", "date"))
                .column(kept("end_date", "date")),
        )
        .write(&tmp.path().join("permit.toml"));
    let o = run_ok(&path);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains(&format!(
            "warning: `start_date` equals the birth date `person.birth_date` for {equal} persons"
        )),
        "{summary}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("out/report.json")).unwrap())
            .unwrap();
    let echoes = &report["datasets"][1]["birth_date_echoes"];
    assert_eq!(echoes.as_array().unwrap().len(), 1, "{echoes}");
    assert_eq!(echoes[0]["column"], "start_date");
    assert_eq!(echoes[0]["persons"], equal);
    assert!(report["datasets"][0].get("birth_date_echoes").is_none());
    let html = std::fs::read_to_string(tmp.path().join("out/report.html")).unwrap();
    assert!(html.contains("equals the birth date <code>person.birth_date</code>"));
}

/// The bundled OMOP sample (`generate-omop`) through `configs/omop.toml`: the person table's
/// model is evaluated on each person's profile (sex, birth year, first visit drawn from the visits
/// table). An independent Python check rebuilds every profile from the delivered files and
/// confirms k across the tables and one fate; it fails on a delivery that keeps suppressed persons
/// in the other tables (a negative control).
#[test]
fn a_person_profile_drawn_from_several_tables_meets_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("omop", tmp.path());
    run_ok(&permit);
    let out = tmp.path().join("out");
    let checked = independent_check("check_profile_delivery.py", &out);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("omop/report.json")).unwrap())
            .unwrap();
    let person = &report["datasets"][0];
    assert_eq!(person["rows_delivered"], checked["persons"]);
    assert!(checked["suppressed"].as_u64().unwrap() > 0, "{checked}");
    assert_eq!(
        person["anonymisation"]["risk_after"]["smallest_class"],
        checked["smallest_class"]
    );
    let coverage = &person["anonymisation"]["coverage"];
    assert!(
        coverage["not_covered"].as_array().unwrap().contains(
            &"condition_occurrence.condition_source_value (generalised; a k^m-anonymous set per \
              person, k = 5, m = 2)"
                .into()
        ),
        "{coverage}"
    );
    // The diagnoses: 5^2-anonymous sets (confirmed by the checker), reached by generalising some
    // codes and suppressing some persons, and recounted by the engine from the written file.
    let sets = &report["datasets"][3]["set_valued"];
    assert_eq!(report["datasets"][3]["name"], "condition_occurrence");
    assert_eq!(sets["persons_at_risk_after"], 0);
    assert!(checked["smallest_code_set_support"].as_u64().unwrap() >= 5);
    let by_height: Vec<u64> = serde_json::from_value(sets["codes_by_height"].clone()).unwrap();
    assert_eq!(
        by_height.iter().sum::<u64>(),
        sets["codes"].as_u64().unwrap()
    );
    assert!(
        by_height[0] > 0 && by_height[1..].iter().sum::<u64>() > 0,
        "{sets}"
    );
    assert!(sets["persons_suppressed"].as_u64().unwrap() > 0, "{sets}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("omop/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["datasets"][3]["set_valued"], *sets);
    // Negative control: the codes delivered as they are.
    let text = std::fs::read_to_string(&permit).unwrap();
    let kept = text
        .replace(
            "action = \"generalise\"\nlevels = [\"icd10 category\", \"icd10 chapter\"]",
            "action = \"keep\"",
        )
        .replace(
            "[datasets.set_valued]\ncolumn = \"condition_source_value\"\nk = 5\nm = 2\n",
            "",
        );
    let kept = kept.replace(
        "suppression_limit = 0.05\n\n[[datasets.columns]]\nname = \"condition_start_date\"",
        "[[datasets.columns]]\nname = \"condition_start_date\"",
    );
    assert!(
        !kept.contains("set_valued"),
        "the control permit still sets set_valued"
    );
    std::fs::write(&permit, kept).unwrap();
    run_ok(&permit);
    assert!(profile_checker_refuses(&out).contains("below k = 5"));
    std::fs::write(&permit, text).unwrap();
    for (i, table) in [
        "observation_period",
        "visit_occurrence",
        "condition_occurrence",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            report["datasets"][i + 1]["rows_delivered"],
            checked["rows"][table]
        );
    }
    // Negative control: suppressed persons kept in the other tables.
    let text = std::fs::read_to_string(&permit).unwrap().replace(
        "[output]\n",
        "[output]\nkeep_persons_suppressed_elsewhere = \"negative control\"\n",
    );
    std::fs::write(&permit, text).unwrap();
    run_ok(&permit);
    assert!(profile_checker_refuses(&out).contains("one person, one fate"));
}

/// What the independent OMOP checker says of a delivery it must refuse.
fn profile_checker_refuses(out: &std::path::Path) -> String {
    let o = std::process::Command::new("python3")
        .arg(repo().join("tests/independent/check_profile_delivery.py"))
        .arg(repo())
        .arg(out)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "the checker accepted a broken delivery"
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A profile attribute is computed per person from another table (the earliest date of its rows,
/// whether one holds a code) and refused where that table would release it more finely: a visit
/// date delivered as it is beside a first-visit year, a code column delivered beside "has the
/// code".
#[test]
fn profile_attributes_are_computed_per_person_and_never_released_finer_elsewhere() {
    let w = tempfile::tempdir().unwrap();
    let path = |f: &str| w.path().join(f);
    demo_key_to(&path("key.hex"));
    let mut persons = String::from("pid,sex\n");
    let mut visits = String::from("pid,day\n");
    let mut conditions = String::from("pid,code\n");
    let mut labs = String::from("pid,result\n");
    let mut expected = HashMap::new();
    for p in 0..30 {
        persons += &format!("{p},{}\n", p % 2);
        // p % 4 results, one of them missing when there are three.
        for r in 0..p % 4 {
            let value = if r == 2 { String::new() } else { r.to_string() };
            labs += &format!("{p},{value}\n");
        }
        let first = (p * 7) % 28 + 1;
        if p % 5 != 0 {
            for d in [first + 3, first, first + 1] {
                visits += &format!("{p},2020-02-{d:02}\n");
            }
        }
        let diabetic = p % 3 == 0;
        conditions += &format!("{p},{}\n", if diabetic { "E11.9" } else { "I10" });
        conditions += &format!("{p},J45\n");
        expected.insert(
            p.to_string(),
            (
                (p % 5 != 0).then(|| format!("2020-02-{first:02}")),
                diabetic,
                (p % 4).min(2) as i64,
            ),
        );
    }
    std::fs::write(path("labs.csv"), labs).unwrap();
    std::fs::write(path("persons.csv"), persons).unwrap();
    std::fs::write(path("visits.csv"), visits).unwrap();
    std::fs::write(path("conditions.csv"), conditions).unwrap();
    let id = || kept("pid", "string").set("identifier", "any");
    let text = |visit_day: &str, code: &str| {
        permit("P-1")
            .dataset(
                dataset("persons", &["persons.csv"])
                    .person("pid")
                    .column(id())
                    .column(kept("sex", "string"))
                    .column(
                        kept("first_visit", "date").raw(
                            "profile",
                            "{ dataset = \"visits\", column = \"day\", aggregate = \"first\" }",
                        ),
                    )
                    .column(kept("diabetes", "boolean").raw(
                        "profile",
                        "{ dataset = \"conditions\", column = \"code\", aggregate = \"has\", prefixes = [\"E10\", \"E11\"] }",
                    ))
                    .column(kept("lab_results", "integer").raw(
                        "profile",
                        "{ dataset = \"labs\", column = \"result\", aggregate = \"count\" }",
                    )),
            )
            .dataset(
                dataset("labs", &["labs.csv"])
                    .person("pid")
                    .option("read_only = \"only counted per person\"")
                    .column(id())
                    .column(kept("result", "integer")),
            )
            .dataset(
                dataset("visits", &["visits.csv"])
                    .person("pid")
                    .column(id())
                    .column(visit_day_column(visit_day)),
            )
            .dataset(
                dataset("conditions", &["conditions.csv"])
                    .person("pid")
                    .column(id())
                    .column(column("code", "string", code)),
            )
            .write(&path("permit.toml"))
    };
    fn visit_day_column(action: &str) -> ColumnText {
        match action {
            "year" => column("day", "date", "generalise").set("rule", "year"),
            other => column("day", "date", other),
        }
    }
    // A first visit kept to the day beside visits generalised to the year: the visits undo nothing.
    let permit = text("year", "drop");
    run_ok(&permit);
    let delivered = ParquetReader::new(std::fs::File::open(path("out/persons.parquet")).unwrap())
        .finish()
        .unwrap();
    let first = delivered
        .column("first_visit")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    let diabetes = delivered
        .column("diabetes")
        .unwrap()
        .bool()
        .unwrap()
        .clone();
    let results = delivered
        .column("lab_results")
        .unwrap()
        .i64()
        .unwrap()
        .clone();
    for (i, pid) in strings(&path("out/persons.parquet"), "pid")
        .into_iter()
        .enumerate()
    {
        let (want_first, want_diabetes, want_results) = &expected[&pid.unwrap()];
        assert_eq!(first.str().unwrap().get(i).map(String::from), *want_first);
        assert_eq!(diabetes.get(i), Some(*want_diabetes));
        assert_eq!(results.get(i), Some(*want_results));
    }
    // The read-only dataset is not delivered; the manifest records its file as read.
    assert!(!path("out/labs.parquet").exists());
    let manifest = std::fs::read_to_string(path("out/manifest.json")).unwrap();
    assert!(manifest.contains("labs.csv"), "{manifest}");
    assert!(!manifest.contains("\"name\": \"labs\""), "{manifest}");
    // Refused: the first visit released as a year while the visits keep the day.
    let banded = std::fs::read_to_string(&permit).unwrap().replace(
        "name = \"first_visit\"\ntype = \"date\"\naction = \"keep\"",
        "name = \"first_visit\"\ntype = \"date\"\naction = \"generalise\"\nrule = \"year\"",
    );
    std::fs::write(
        &permit,
        banded.replace(
            "name = \"day\"\ntype = \"date\"\naction = \"generalise\"\nrule = \"year\"",
            "name = \"day\"\ntype = \"date\"\naction = \"keep\"",
        ),
    )
    .unwrap();
    let o = ehds_prep(&["validate", "--permit", permit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`visits.day` derives from `persons.first_visit`"),
        "{}",
        stderr(&o)
    );
    // Refused: the codes delivered beside "has the code".
    let permit = text("year", "keep");
    let o = ehds_prep(&["validate", "--permit", permit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shows exactly who has these codes"),
        "{}",
        stderr(&o)
    );
    // Refused: rows delivered beside their count.
    let permit = text("year", "drop");
    let delivered_labs = std::fs::read_to_string(&permit)
        .unwrap()
        .replace("read_only = \"only counted per person\"\n", "");
    std::fs::write(&permit, delivered_labs).unwrap();
    let o = ehds_prep(&["validate", "--permit", permit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("show each person's count exactly"),
        "{}",
        stderr(&o)
    );
}

/// The bundled OMOP sample is what `generate-omop` writes, byte for byte.
#[test]
fn the_bundled_omop_sample_is_the_generators() {
    let tmp = tempfile::tempdir().unwrap();
    let o = ehds_prep(&["generate-omop", "--out", tmp.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for table in [
        "person",
        "observation_period",
        "visit_occurrence",
        "condition_occurrence",
    ] {
        let file = format!("{table}.csv");
        let made = std::fs::read(tmp.path().join(&file)).unwrap();
        let bundled = std::fs::read(repo().join("sample-data/omop").join(&file)).unwrap();
        assert!(made == bundled, "{file} differs");
    }
}

/// Whether a person has a code is a quasi-identifier like any other: a boolean column with levels,
/// counted in persons.
#[test]
fn a_boolean_attribute_is_a_quasi_identifier() {
    let w = tempfile::tempdir().unwrap();
    demo_key_to(&w.path().join("key.hex"));
    let mut rows = String::from("pid,flag\n");
    for p in 0..40 {
        // Person 0 alone is flagged: below k = 5 at level 0.
        rows += &format!("{p},{}\n", p == 0);
    }
    std::fs::write(w.path().join("a.csv"), rows).unwrap();
    let permit = permit("B-1")
        .dataset(
            dataset("a", &["a.csv"])
                .person("pid")
                .column(column("pid", "string", "pseudonymise").set("domain", "d"))
                .column(column("flag", "boolean", "generalise").raw("levels", "[\"*\"]"))
                .privacy("k = 5"),
        )
        .write(&w.path().join("permit.toml"));
    run_ok(&permit);
    let flags = strings(&w.path().join("out/a.parquet"), "flag");
    assert_eq!(flags.len(), 40);
    assert!(flags.iter().all(|f| f.as_deref() == Some("*")), "{flags:?}");
}

/// Sequential ids are persons, even written with one digit (OMOP's person 11111); a letter over a
/// whole id is a placeholder (PMSI's `xxxxxxxxxxxxxxxxx`), never a person.
#[test]
fn sequential_ids_of_one_digit_are_persons_and_placeholders_are_not() {
    let w = tempfile::tempdir().unwrap();
    demo_key_to(&w.path().join("key.hex"));
    let ids = ["11110", "11111", "99999", "999999999", "xxxxxxx", "12"];
    let rows: String = ids.iter().map(|id| format!("{id},1\n")).collect();
    std::fs::write(w.path().join("a.csv"), format!("person_id,x\n{rows}")).unwrap();
    let permit = permit("S-1")
        .dataset(
            dataset("a", &["a.csv"])
                .person("person_id")
                .column(
                    column("person_id", "string", "pseudonymise")
                        .set("identifier", "any")
                        .set("domain", "d"),
                )
                .column(kept("x", "integer")),
        )
        .write(&w.path().join("permit.toml"));
    run_ok(&permit);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.path().join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["datasets"][0]["rows_delivered"], 5, "{report}");
    assert_eq!(report["datasets"][0]["rows_rejected"], 1, "{report}");
}

/// A person's set of codes across an event table (k^m-anonymity, `set_valued`): whatever 2 codes
/// one knows of a person, at least 3 delivered persons hold them. Recounted here from the
/// delivered file; each code is released as itself, its letter or `*`, alike on every row; the
/// persons suppressed for holding a rare pair leave the person table too; a rerun gives the same
/// bytes; an impossible model stops the run and leaves no delivery.
#[test]
fn a_set_valued_attribute_is_k_m_anonymous_across_the_delivery() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |f: &str| tmp.path().join(f);
    demo_key_to(&path("key.hex"));
    let mut persons = String::from("pid,sex\n");
    let mut events = String::from("pid,code\n");
    let mut raw: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for p in 0..60 {
        persons += &format!("{p},{}\n", p % 2);
        let mut codes = vec![["A1", "A2", "B1", "B2"][p % 4], ["A1", "B1"][p % 2]];
        // The long tail: a code of one person, a code of two, a rare pair of common codes.
        match p {
            7 => codes.push("C1"),
            8 | 9 => codes.push("C2"),
            10 => codes.push("A3"),
            11 => codes.extend(["B2", "A2"]),
            _ => {}
        }
        for c in codes {
            events += &format!("{p},{c}\n{p},{c}\n");
            raw.entry(p.to_string()).or_default().insert(c.into());
        }
    }
    std::fs::write(path("persons.csv"), persons).unwrap();
    std::fs::write(path("events.csv"), events).unwrap();
    let permit = |k: u32, limit: f64| {
        permit("SETS-1")
            .dataset(
                dataset("persons", &[&path("persons.csv").display().to_string()])
                    .person("pid")
                    .column(pseudonymised_pid())
                    .column(kept("sex", "string")),
            )
            .dataset(
                dataset("events", &[&path("events.csv").display().to_string()])
                    .person("pid")
                    .column(pseudonymised_pid())
                    .column(column("code", "string", "generalise").raw("levels", "[\"prefix 1\"]"))
                    .tail(&format!(
                        "[datasets.set_valued]\ncolumn = \"code\"\nk = {k}\nm = 2\n\
                         suppression_limit = {limit}"
                    )),
            )
            .write(&path("sets.toml"))
    };
    let file = permit(3, 0.1);
    run_ok(&file);
    let out = path("out");
    let delivered_persons = strings(&out.join("events.parquet"), "person");
    let labels = strings(&out.join("events.parquet"), "code");
    let mut sets: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for (p, c) in delivered_persons.iter().zip(&labels) {
        sets.entry(p.clone().unwrap())
            .or_default()
            .insert(c.clone().unwrap());
    }
    // Every set of one or two codes a person holds, held by 3 persons at least.
    let mut support: HashMap<Vec<&String>, usize> = HashMap::new();
    for set in sets.values() {
        let codes: Vec<&String> = set.iter().collect();
        for (i, a) in codes.iter().enumerate() {
            *support.entry(vec![a]).or_default() += 1;
            for b in &codes[i + 1..] {
                *support.entry(vec![a, b]).or_default() += 1;
            }
        }
    }
    assert!(support.values().all(|&n| n >= 3), "{support:?}");
    // One release per code (itself, its letter or `*`), the persons' sets their raw sets released.
    let present: std::collections::HashSet<&String> = labels.iter().flatten().collect();
    // None: a code no delivered person holds (its persons were suppressed).
    let release = |code: &str| -> Option<String> {
        let options: Vec<String> = [code.to_string(), code[..1].to_string(), "*".into()]
            .into_iter()
            .filter(|o| present.contains(o))
            .collect();
        assert!(options.len() <= 1, "{code} released as {options:?}");
        options.into_iter().next()
    };
    let pseudonym_of: HashMap<String, String> = {
        let rows = strings(&out.join("persons.parquet"), "person");
        let sex = strings(&out.join("persons.parquet"), "sex");
        assert_eq!(rows.len(), sex.len());
        // The delivered persons are the raw ones less those the event table suppressed.
        let suppressed = 60 - sets.len();
        assert!(
            (1..=6).contains(&suppressed),
            "{suppressed} persons suppressed"
        );
        assert_eq!(rows.len(), sets.len(), "one person, one fate");
        rows.iter()
            .flatten()
            .map(|p| (p.clone(), p.clone()))
            .collect()
    };
    for p in sets.keys() {
        assert!(pseudonym_of.contains_key(p));
    }
    // Each delivered set is a raw person's set released (as a multiset of sets).
    let mut released_sets: HashMap<std::collections::BTreeSet<String>, usize> = HashMap::new();
    for codes in raw.values() {
        if let Some(set) = codes.iter().map(|c| release(c)).collect::<Option<_>>() {
            *released_sets.entry(set).or_default() += 1;
        }
    }
    for set in sets.values() {
        let left = released_sets
            .get_mut(set)
            .expect("a raw person's codes released");
        assert!(*left > 0, "{set:?} delivered more often than raw");
        *left -= 1;
    }
    // The rare codes were generalised, the common ones kept.
    assert!(present.contains(&"A1".to_string()) && !present.contains(&"C1".to_string()));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let sv = &report["datasets"][1]["set_valued"];
    assert_eq!(sv["persons_at_risk_after"], 0);
    assert_eq!(sv["persons_suppressed"], 60 - sets.len());
    // A rerun gives the same bytes.
    let first = std::fs::read(out.join("events.parquet")).unwrap();
    run_ok(&file);
    assert_eq!(std::fs::read(out.join("events.parquet")).unwrap(), first);
    // Impossible: 61 persons for any code of 60; nothing delivered.
    std::fs::remove_dir_all(&out).unwrap();
    let o = ehds_prep(&["run", "--permit", permit(61, 0.0).to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("k^m-anonymity (k = 61, m = 2)"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // Permits the model cannot hold: refused before reading, naming the key.
    let text = std::fs::read_to_string(permit(3, 0.1)).unwrap();
    for (from, to, key) in [
        ("m = 2", "m = 5", "set_valued.m"),
        ("k = 3", "k = 1", "set_valued.k"),
        (
            "levels = [\"prefix 1\"]",
            "rule = \"prefix\"\nprefix = 1",
            "set_valued.column",
        ),
        ("column = \"code\"", "column = \"sex\"", "set_valued.column"),
    ] {
        assert!(text.contains(from), "{from}");
        std::fs::write(path("bad.toml"), text.replacen(from, to, 1)).unwrap();
        let o = ehds_prep(&["validate", "--permit", path("bad.toml").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(3), "{to}: {}", stderr(&o));
        assert!(stderr(&o).contains(key), "{to}: {}", stderr(&o));
    }
}

/// (k, k^m)-anonymity (`set_valued.within`): a person's codes are counted among the persons of
/// their class in the person table, so that knowing someone's sex and two of their codes still
/// leaves 3 persons. A code held by two men and two women is rare in each class though common
/// overall: the delivery may not show it as it is. Recounted here per class from both files.
#[test]
fn sets_counted_within_the_person_tables_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |f: &str| tmp.path().join(f);
    demo_key_to(&path("key.hex"));
    let mut persons = String::from("pid,sex\n");
    let mut events = String::from("pid,code\n");
    for p in 0..90 {
        persons += &format!("{p},{}\n", p % 2);
        // Four persons, two of each sex, hold D1 with the same two common codes.
        let codes = match p {
            20..24 => vec!["B1", "B2", "D1"],
            _ => vec![["A1", "A2", "B1"][p % 3], "B2"],
        };
        for c in codes {
            events += &format!("{p},{c}\n");
        }
    }
    std::fs::write(path("persons.csv"), persons).unwrap();
    std::fs::write(path("events.csv"), events).unwrap();
    let file = |within: &str| {
        permit("SETS-2")
            .dataset(
                dataset("events", &[&path("events.csv").display().to_string()])
                    .person("pid")
                    .column(pseudonymised_pid())
                    .column(column("code", "string", "generalise").raw("levels", "[\"prefix 1\"]"))
                    .tail(&format!(
                        "[datasets.set_valued]\ncolumn = \"code\"\nk = 3\nm = 2\n\
                         suppression_limit = 0.1\n{within}"
                    )),
            )
            .dataset(
                dataset("persons", &[&path("persons.csv").display().to_string()])
                    .person("pid")
                    .column(pseudonymised_pid())
                    .column(
                        column("sex", "string", "generalise")
                            .raw("levels", "[\"*\"]")
                            .raw("level", "0"),
                    )
                    .privacy("k = 3"),
            )
            .write(&path("sets.toml"))
    };
    // Counted over everyone, D1 is held by 4 persons and delivered as it is.
    run_ok(&file(""));
    let out = path("out");
    assert!(strings(&out.join("events.parquet"), "code").contains(&Some("D1".into())));
    std::fs::remove_dir_all(&out).unwrap();
    run_ok(&file("within = \"persons\""));
    let sex: HashMap<String, String> = strings(&out.join("persons.parquet"), "person")
        .into_iter()
        .zip(strings(&out.join("persons.parquet"), "sex"))
        .map(|(p, s)| (p.unwrap(), s.unwrap()))
        .collect();
    let mut sets: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for (p, c) in strings(&out.join("events.parquet"), "person")
        .into_iter()
        .zip(strings(&out.join("events.parquet"), "code"))
    {
        sets.entry(p.unwrap()).or_default().insert(c.unwrap());
    }
    let mut support: HashMap<(String, Vec<String>), usize> = HashMap::new();
    for (p, set) in &sets {
        let class = sex.get(p).expect("one person, one fate").clone();
        let codes: Vec<&String> = set.iter().collect();
        for (i, a) in codes.iter().enumerate() {
            *support
                .entry((class.clone(), vec![a.to_string()]))
                .or_default() += 1;
            for b in &codes[i + 1..] {
                *support
                    .entry((class.clone(), vec![a.to_string(), b.to_string()]))
                    .or_default() += 1;
            }
        }
    }
    assert!(support.values().all(|&n| n >= 3), "{support:?}");
    assert!(!strings(&out.join("events.parquet"), "code").contains(&Some("D1".into())));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["datasets"][0]["set_valued"]["within"], "persons");
    assert_eq!(
        report["datasets"][0]["set_valued"]["persons_at_risk_after"],
        0
    );
    // The classes must be matched by persons delivered alike.
    let text = std::fs::read_to_string(file("within = \"persons\"")).unwrap();
    let other =
        text.replacen("domain = \"d\"", "domain = \"e\"", 1) + "\n[domains.e]\nkey = \"k\"\n";
    std::fs::write(path("bad.toml"), other).unwrap();
    let o = ehds_prep(&["validate", "--permit", path("bad.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("set_valued.within"), "{}", stderr(&o));
}

/// A numeric person id (`pid`), pseudonymised in domain `d` and delivered as `person`.
fn pseudonymised_pid() -> ColumnText {
    column("pid", "string", "pseudonymise")
        .set("identifier", "pattern")
        .set("pattern", "[0-9]+")
        .set("domain", "d")
        .set("rename", "person")
}
