//! Record-level transformations through whole runs on the sample data: keyed date shifting, masking,
//! mapping, free-text policy, and reversible tokens with `reidentify`.

mod common;

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use common::permit_text::*;
use common::*;
use polars::prelude::*;

/// Patients and stays with dates shifted per person; all rows kept (invalid or missing NIRs give null
/// pseudonyms) so that delivered rows match the extract by their local ids.
fn shift_permit(dir: &Path, key_file: &str, with_patients: bool) -> std::path::PathBuf {
    let data = repo().join("sample-data").display().to_string();
    let nir = || {
        nir("nir", "linkage")
            .set("on_invalid", "null")
            .set("on_missing", "null")
    };
    let mut text = permit("SHIFT-1")
        .output(&format!("out-{key_file}-{with_patients}"))
        .key_file("k", key_file)
        .domain("linkage", "k", "")
        .domain("shift", "k", "")
        .section("[date_shift]\ndomain = \"shift\"\nmin_days = -180\nmax_days = 180");
    if with_patients {
        text = text.dataset(
            dataset("patients", &[&format!("{data}/hospital/patients.csv")])
                .person("nir")
                .column(kept("patient_id", "string"))
                .column(nir())
                .column(column("birth_date", "date", "shift")),
        );
    }
    text.dataset(
        dataset("stays", &[&format!("{data}/hospital/stays.csv")])
            .person("nir")
            .column(kept("stay_id", "string"))
            .column(nir())
            .column(column("admission_date", "date", "shift"))
            .column(column("discharge_date", "date", "shift")),
    )
    .write(&dir.join(format!("shift-{key_file}-{with_patients}.toml")))
}

/// Column `name` of a CSV extract, by the value of its first column.
fn csv_column(file: &str, name: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(repo().join("sample-data").join(file)).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[i].trim_matches('"').to_string())
        })
        .collect()
}

fn read(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

fn date_strings(df: &DataFrame, col: &str) -> Vec<Option<String>> {
    let s = df.column(col).unwrap().cast(&DataType::String).unwrap();
    s.str()
        .unwrap()
        .iter()
        .map(|v| v.map(String::from))
        .collect()
}

fn days_between(a: &str, b: &str) -> i64 {
    let p = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    (p(b) - p(a)).num_days()
}

/// Shift per stay (admission and discharge) and per patient, checked against the raw dates.
/// Person pseudonym and shift in days, per stay id.
type StayShifts = HashMap<String, (String, i64)>;
/// Person pseudonym and shift of the birth date, per delivered patient row.
type PatientShifts = Vec<(String, i64)>;

fn shifts(out: &Path, with_patients: bool) -> (StayShifts, PatientShifts) {
    let stays = read(&out.join("stays.parquet"));
    let adm = csv_column("hospital/stays.csv", "admission_date");
    let dis = csv_column("hospital/stays.csv", "discharge_date");
    let ids: Vec<String> = stays
        .column("stay_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    let persons: Vec<Option<String>> = stays
        .column("nir")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(String::from))
        .collect();
    let (a2, d2) = (
        date_strings(&stays, "admission_date"),
        date_strings(&stays, "discharge_date"),
    );
    let mut by_stay = HashMap::new();
    for i in 0..stays.height() {
        let Some(person) = &persons[i] else {
            continue; // a missing or invalid NIR: checked separately
        };
        let sa = days_between(&adm[&ids[i]], a2[i].as_ref().unwrap());
        let sd = days_between(&dis[&ids[i]], d2[i].as_ref().unwrap());
        assert_eq!(sa, sd, "stay {}: length of stay changed", ids[i]);
        assert!((-180..=180).contains(&sa) && sa != 0, "shift {sa}");
        by_stay.insert(ids[i].clone(), (person.clone(), sa));
    }
    let mut by_patient = Vec::new();
    if with_patients {
        let patients = read(&out.join("patients.parquet"));
        let birth = csv_column("hospital/patients.csv", "birth_date");
        let pid: Vec<&str> = patients
            .column("patient_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap())
            .collect();
        let pseud: Vec<Option<&str>> = patients
            .column("nir")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        let b2 = date_strings(&patients, "birth_date");
        for i in 0..patients.height() {
            if let (Some(p), Some(b)) = (pseud[i], &b2[i]) {
                by_patient.push((p.to_string(), days_between(&birth[pid[i]], b)));
            }
        }
    }
    (by_stay, by_patient)
}

#[test]
fn date_shifts_keep_every_interval_within_a_person_and_hide_dates() {
    let tmp = tempfile::tempdir().unwrap();
    demo_key_to(&tmp.path().join("a.hex"));
    let b = ehds_prep::kernels::keys::generate_key_text().unwrap();
    write_private(&tmp.path().join("b.hex"), b.as_bytes());

    run_ok(&shift_permit(tmp.path(), "a.hex", true));
    let (stays, patients) = shifts(&tmp.path().join("out-a.hex-true"), true);
    assert!(stays.len() > 2000);

    // One shift per person across all their stays and their birth date: every pairwise interval of a
    // person (between stays, age at admission) is unchanged.
    let mut per_person: HashMap<String, i64> = HashMap::new();
    for (person, shift) in stays.values() {
        assert_eq!(
            *per_person.entry(person.clone()).or_insert(*shift),
            *shift,
            "two shifts for one person"
        );
    }
    let mut checked_across_tables = 0;
    for (person, shift) in &patients {
        if let Some(s) = per_person.get(person) {
            assert_eq!(s, shift, "birth date shifted differently from the stays");
            checked_across_tables += 1;
        }
        per_person.entry(person.clone()).or_insert(*shift);
    }
    assert!(checked_across_tables > 500);

    // Over the population, shifts look uniform on −180…−1, 1…180: 12 bins of 30 days, chi-square with
    // 11 degrees of freedom below its 99.9th percentile (31.26).
    let mut bins = [0f64; 12];
    for s in per_person.values() {
        let i = if *s < 0 {
            (s + 180) / 30
        } else {
            6 + (s - 1) / 30
        };
        bins[i as usize] += 1.0;
    }
    let expected = per_person.len() as f64 / 12.0;
    let chi2: f64 = bins.iter().map(|c| (c - expected).powi(2) / expected).sum();
    assert!(chi2 < 31.26, "chi-square {chi2} over {bins:?}");

    // Independent of which tables are in the run; dependent on the key.
    run_ok(&shift_permit(tmp.path(), "a.hex", false));
    let (alone, _) = shifts(&tmp.path().join("out-a.hex-false"), false);
    assert_eq!(alone, stays);
    run_ok(&shift_permit(tmp.path(), "b.hex", false));
    let (other, _) = shifts(&tmp.path().join("out-b.hex-false"), false);
    let same = other.iter().filter(|(k, (_, s))| stays[*k].1 == *s).count();
    assert!(
        same * 20 < other.len(),
        "another key must give other shifts ({same} of {} equal)",
        other.len()
    );
}

/// Masking, replacement, blanking, mapping and a free-text column kept with its reason, through a run.
#[test]
fn masking_mapping_and_free_text_through_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    demo_key_to(&tmp.path().join("k.hex"));
    std::fs::write(
        tmp.path().join("units.csv"),
        "from,to\nU01,Cardiologie\nU02,Médecine générale\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("data.csv"),
        "name,phone,unit,note,secret\nHélène,0612345678,U01,Douleur thoracique,x\nZoé,,U02,,y\n,061,U09,RAS,z\n",
    )
    .unwrap();
    // Unmapped units fall back to "Autre", or (the default) fail the run.
    let mask_permit = |fallback: bool, out: &str| {
        let mut unit = column("unit", "string", "map").set("dictionary", "units.csv");
        if fallback {
            unit = unit.set("on_unmapped", "fallback").set("fallback", "Autre");
        }
        permit("MASK-1").output(out).key_file("k", "k.hex").dataset(
            dataset("t", &["data.csv"])
                .column(column("name", "text", "mask").raw("keep_first", "2").set(
                    "reason",
                    "initials needed to resolve homonyms in the registry audit",
                ))
                .column(
                    column("phone", "string", "mask")
                        .raw("keep_last", "2")
                        .set("mask_char", "#"),
                )
                .column(unit)
                .column(
                    column("note", "text", "keep")
                        .set("reason", "symptom text is the study's outcome"),
                )
                .column(column("secret", "text", "drop")),
        )
    };
    mask_permit(true, "out").write(&tmp.path().join("permit.toml"));
    run_ok(&tmp.path().join("permit.toml"));
    let df = read(&tmp.path().join("out/t.parquet"));
    let col = |c: &str| -> Vec<Option<String>> {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(String::from))
            .collect()
    };
    let s = |v: &str| Some(v.to_string());
    // Rows in the delivery's order, not the source's: compared as a set of rows.
    let mut rows: Vec<_> = (0..df.height())
        .map(|i| ["name", "phone", "unit", "note"].map(|c| col(c)[i].clone()))
        .collect();
    rows.sort();
    let mut expected = vec![
        [
            s("Hé****"),
            s("########78"),
            s("Cardiologie"),
            s("Douleur thoracique"),
        ],
        [s("Zo*"), None, s("Médecine générale"), None],
        [None, s("#61"), s("Autre"), s("RAS")],
    ];
    expected.sort();
    assert_eq!(rows, expected);
    assert!(df.column("secret").is_err());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("out/report.json")).unwrap())
            .unwrap();
    let d = &report["datasets"][0];
    let kept: Vec<&str> = d["free_text_kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["column"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["name", "note"]);
    assert!(
        d["free_text_kept"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("outcome")
    );
    assert_eq!(d["columns"][2]["unmapped_values"], 1);

    // Unmapped values fail the run by default, naming the column and dictionary, not the value.
    mask_permit(false, "out2").write(&tmp.path().join("permit2.toml"));
    let o = ehds_prep(&[
        "run",
        "--permit",
        tmp.path().join("permit2.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4));
    let err = stderr(&o);
    assert!(
        err.contains("record 3") && err.contains("column `unit`") && err.contains("units.csv"),
        "{err}"
    );
    assert!(!err.contains("U09"));
    assert!(!tmp.path().join("out2").exists());
}

#[test]
fn free_text_needs_a_reason_and_tokens_need_opting_in() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(sample_permit("registry", tmp.path())).unwrap();
    let no_reason = base.replace(
        "name = \"department\"\ntype = \"string\"",
        "name = \"department\"\ntype = \"text\"",
    );
    std::fs::write(tmp.path().join("a.toml"), no_reason).unwrap();
    let o = ehds_prep(&[
        "run",
        "--permit",
        tmp.path().join("a.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("datasets[0].columns[6].reason"),
        "{}",
        stderr(&o)
    );

    let tokens = base.replace(
        "action = \"pseudonymise\"\ndomain = \"linkage\"",
        "action = \"tokenise\"",
    );
    std::fs::write(tmp.path().join("b.toml"), tokens).unwrap();
    let o = ehds_prep(&[
        "run",
        "--permit",
        tmp.path().join("b.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("[tokens]"), "{}", stderr(&o));
}

/// Tokens of the sample patients open back to their normalised NIRs with the token key, and only
/// with it; reidentify writes a private file and logs counts only.
#[test]
fn reversible_tokens_round_trip_on_the_sample_data() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    demo_key_to(&tmp.path().join("link.hex"));
    write_private(
        &tmp.path().join("ttp.hex"),
        ehds_prep::kernels::keys::generate_key_text()
            .unwrap()
            .as_bytes(),
    );
    let base = std::fs::read_to_string(sample_permit("hospital", tmp.path())).unwrap();
    let permit = base
        .replace(
            "[domains.linkage]",
            "[keys.ttp]\nfile = \"ttp.hex\"\n\n[tokens]\nkey = \"ttp\"\n\n[domains.linkage]",
        )
        .replacen(
            "action = \"pseudonymise\"\ndomain = \"linkage\"\nrename = \"person_pseudonym\"\non_invalid = \"reject-row\"",
            "action = \"tokenise\"\nrename = \"person_token\"\non_invalid = \"reject-row\"",
            1,
        )
        .replace("[[datasets.composites]]", "[[unused]]")
        .replace("[[datasets.clk]]", "[[unused]]")
        .replace("name = \"last_name\"\ntype = \"string\"\naction = \"drop\"", "name = \"patient_id\"\ntype = \"string\"\naction = \"keep\"");
    let permit = permit[..permit.find("[[unused]]").unwrap()].to_string()
        + &permit[permit.find("[[datasets]]\nname = \"stays\"").unwrap()..];
    let path = tmp.path().join("tokens.toml");
    std::fs::write(&path, &permit).unwrap();
    run_ok(&path);

    let df = read(&tmp.path().join("out/hospital/patients.parquet"));
    let tokens: Vec<&str> = df
        .column("person_token")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let pids: Vec<&str> = df
        .column("patient_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let nirs = csv_column("hospital/patients.csv", "nir");
    let list = tmp.path().join("finding.txt");
    std::fs::write(&list, tokens[..40].join("\n")).unwrap();
    let out = tmp.path().join("ids.csv");
    let audit = tmp.path().join("audit.jsonl");
    let args = |p: &Path, out: &Path| {
        vec![
            "reidentify".to_string(),
            "--permit".into(),
            p.display().to_string(),
            "--tokens".into(),
            list.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--audit-log".into(),
            audit.display().to_string(),
        ]
    };
    let a = args(&path, &out);
    let o = ehds_prep(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 40);
    for (i, row) in rows.iter().enumerate() {
        let (token, id) = row.split_once(',').unwrap();
        assert_eq!(token, tokens[i]);
        assert_eq!(
            id,
            nirs[pids[i]].replace(' ', ""),
            "token {i} opens to another identifier"
        );
    }
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(
        log.contains("\"tokens_requested\":40")
            && !log.contains(tokens[0])
            && !log.contains(rows[0].split(',').nth(1).unwrap())
    );

    // An audit log that cannot be written: no identifier is written either.
    let out3 = tmp.path().join("ids3.csv");
    let mut a = args(&path, &out3);
    *a.last_mut().unwrap() = tmp
        .path()
        .join("no-such-folder/audit.jsonl")
        .display()
        .to_string();
    let o = ehds_prep(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(!out3.exists());

    // Another token key: authentication fails, nothing is written.
    write_private(
        &tmp.path().join("ttp.hex"),
        ehds_prep::kernels::keys::generate_key_text()
            .unwrap()
            .as_bytes(),
    );
    let out2 = tmp.path().join("ids2.csv");
    let a = args(&path, &out2);
    let o = ehds_prep(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("line 1") && stderr(&o).contains("does not authenticate"),
        "{}",
        stderr(&o)
    );
    assert!(!out2.exists());
}

/// Datetimes move by the same whole days as the person's dates, keeping their time of day; a datetime
/// generalises to its month.
#[test]
fn datetimes_shift_with_the_persons_dates() {
    let tmp = tempfile::tempdir().unwrap();
    demo_key_to(&tmp.path().join("k.hex"));
    std::fs::write(
        tmp.path().join("data.csv"),
        "pid,born,admitted_at,discharged_at\n\
         A,1980-01-01,2024-03-01 10:30:00,2024-03-02 11:00:00\n\
         A,1980-01-01,2024-03-05 08:00:00,2024-04-01 00:00:00\n\
         B,1990-06-15,2024-03-01 23:59:59,\n",
    )
    .unwrap();
    permit("DT-1")
        .key_file("k", "k.hex")
        .domain("shift", "k", "")
        .section("[date_shift]\ndomain = \"shift\"\nmin_days = -30\nmax_days = 30")
        .dataset(
            dataset("t", &["data.csv"])
                .person("pid")
                .column(kept("pid", "string"))
                .column(column("born", "date", "shift"))
                .column(column("admitted_at", "datetime", "shift"))
                .column(
                    column("discharged_at", "datetime", "generalise")
                        .set("rule", "month")
                        .set(
                            "unshifted",
                            "the month of discharge is what the study compares",
                        ),
                ),
        )
        .write(&tmp.path().join("permit.toml"));
    run_ok(&tmp.path().join("permit.toml"));
    let df = read(&tmp.path().join("out/t.parquet"));
    assert_eq!(
        df.column("admitted_at").unwrap().dtype(),
        &DataType::Datetime(TimeUnit::Microseconds, None)
    );
    let key = ehds_prep::kernels::keys::SecretKey::from_file(&tmp.path().join("k.hex"))
        .unwrap()
        .domain_key("DT-1/shift");
    let shifter = ehds_prep::kernels::dateshift::DateShifter::new(key.expose(), -30, 30);
    // The delivered rows in the source's order (by person, then time: a shift keeps a person's
    // times in order), to compare with it.
    let pids: Vec<Option<String>> = df
        .column("pid")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(String::from))
        .collect();
    let (born, admitted) = (date_strings(&df, "born"), date_strings(&df, "admitted_at"));
    let mut order: Vec<usize> = (0..df.height()).collect();
    order.sort_by_key(|&i| (pids[i].clone(), admitted[i].clone()));
    let born: Vec<_> = order.iter().map(|&i| born[i].clone()).collect();
    let admitted: Vec<_> = order.iter().map(|&i| admitted[i].clone()).collect();
    let original = [
        ("A", "1980-01-01", "2024-03-01 10:30:00"),
        ("A", "1980-01-01", "2024-03-05 08:00:00"),
        ("B", "1990-06-15", "2024-03-01 23:59:59"),
    ];
    for (i, (person, b, t)) in original.iter().enumerate() {
        let shift = shifter.shift(person, &mut Vec::new()) as i64;
        assert_eq!(days_between(b, born[i].as_ref().unwrap()), shift);
        let parse =
            |s: &str| chrono::NaiveDateTime::parse_from_str(&s[..19], "%Y-%m-%d %H:%M:%S").unwrap();
        let moved = parse(admitted[i].as_ref().unwrap()) - parse(t);
        assert_eq!(
            moved,
            chrono::Duration::days(shift),
            "row {i}: time of day or shift changed"
        );
    }
    let months = df
        .column("discharged_at")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    let months: Vec<Option<&str>> = months.str().unwrap().iter().collect();
    let months: Vec<Option<&str>> = order.iter().map(|&i| months[i]).collect();
    assert_eq!(months, vec![Some("2024-03-01"), Some("2024-04-01"), None]);
}
