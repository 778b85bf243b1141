//! Scale-out (#25): a permit run on a DataFusion Ballista cluster delivers what a single-node run
//! delivers — the same rows in the same order, the same pseudonyms and shifted dates, the same
//! report counts and manifest records — on a cluster inside the process (`--cluster local`) and
//! on a loopback cluster of a scheduler and two executor processes; an executor holding another
//! key refuses the task; an executor killed during a run leaves either the same delivery or none.
#![cfg(feature = "cluster")]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ehds_prep, repo, single_dataset_permit, stderr};
use polars::prelude::*;

/// Generated extracts of `people` persons, and three holders' permits over them delivering to
/// `dir/<out>-<holder>`: the hospital's stays, the registry's cancer cases (with a keyed date
/// shift), the insurer's pharmacy claims (transcoded to UTF-8: a cluster reads UTF-8).
fn permits(dir: &Path, people: usize, out: &str) -> Vec<PathBuf> {
    let data = dir.join("data");
    if !data.exists() {
        let o = ehds_prep(&[
            "generate",
            "--out",
            data.to_str().unwrap(),
            "--people",
            &people.to_string(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let claims = data.join("insurer/pharmacy_claims.csv");
        let latin1 = std::fs::read(&claims).unwrap();
        let utf8: String = latin1.iter().map(|&b| b as char).collect();
        std::fs::write(&claims, utf8).unwrap();
    }
    let hospital =
        single_dataset_permit("hospital", "stays", dir, &data, &format!("{out}-hospital"));
    let registry = single_dataset_permit(
        "registry",
        "cancer_cases",
        dir,
        &data,
        &format!("{out}-registry"),
    );
    let text = std::fs::read_to_string(&registry).unwrap();
    let text = text
        .replacen(
            "[[datasets]]",
            "[domains.shift]\nkey = \"linkage\"\ncontext = \"FR-2029-0042/shift\"\n\n\
             [date_shift]\ndomain = \"shift\"\nmin_days = -90\nmax_days = 90\n\n[[datasets]]",
            1,
        )
        .replace(
            "name = \"diagnosis_date\"\ntype = \"date\"\naction = \"generalise\"\nrule = \"year\"\nrename = \"diagnosis_year\"",
            "name = \"diagnosis_date\"\ntype = \"date\"\naction = \"shift\"",
        )
        .replace(
            "rename = \"birth_year\"",
            "rename = \"birth_year\"\nunshifted = \"a year of birth narrows no shift\"",
        );
    assert!(text.contains("action = \"shift\""), "{text}");
    std::fs::write(&registry, text).unwrap();
    let insurer = single_dataset_permit(
        "insurer",
        "pharmacy_claims",
        dir,
        &data,
        &format!("{out}-insurer"),
    );
    let text = std::fs::read_to_string(&insurer)
        .unwrap()
        .replace("encoding = \"latin-1\"\n", "");
    std::fs::write(&insurer, text).unwrap();
    vec![hospital, registry, insurer]
}

/// A permit over the hospital's generated extracts (made by [`permits`] in `dir/data`) whose stays
/// are anonymised — persons counted, k = 5 with 2-diverse diagnoses, the admission month up to
/// its year and the département as quasi-identifiers, a kept unit beside them — and whose
/// patients are not: the persons the stays suppress leave the patients (one person, one fate).
/// `suppressed` says what becomes of the suppressed rows (`remove` or `blank`).
fn anonymised_permit(dir: &Path, out: &str, suppressed: &str) -> PathBuf {
    let data = dir.join("data");
    let key = repo().join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex");
    let text = format!(
        r#"[permit]
id = "FR-2029-0107"
purpose = "Seasonality of hospital admissions by territory"
holder = "CHU Exemple"
recipient = "Health Data Hub (secure processing environment)"

[output]
dir = "{out}"
batch_rows = 65536

[keys.linkage]
file = "{key}"
allow_readable_by_others = true

[domains.research]
key = "linkage"
context = "FR-2029-0107/research"

[opt_out]
file = "{data}/opt_out.txt"
identifier = "nir"

[[datasets]]
name = "patients"
person = "nir"

[datasets.source]
format = "csv"
files = ["{data}/hospital/patients.csv"]

[[datasets.columns]]
name = "nir"
type = "string"
identifier = "nir"
action = "pseudonymise"
domain = "research"
rename = "person_pseudonym"

[[datasets.columns]]
name = "sex"
type = "integer"
action = "keep"

[[datasets.columns]]
name = "birth_date"
type = "date"
action = "generalise"
rule = "year"
rename = "birth_year"

[[datasets]]
name = "stays"
person = "nir"

[datasets.source]
format = "csv"
files = ["{data}/hospital/stays.csv"]

[[datasets.cohort]]
column = "admission_date"
from = "2019-01-01"
to = "2024-12-31"

[[datasets.columns]]
name = "nir"
type = "string"
identifier = "nir"
action = "pseudonymise"
domain = "research"
rename = "person_pseudonym"

[[datasets.columns]]
name = "admission_date"
type = "date"
action = "generalise"
levels = ["month", "quarter", "year"]
rename = "admission"

[[datasets.columns]]
name = "postcode"
type = "string"
action = "generalise"
levels = ["departement"]
rename = "department"

[[datasets.columns]]
name = "main_diagnosis"
type = "string"
action = "keep"

[[datasets.columns]]
name = "unit"
type = "string"
action = "keep"

[datasets.privacy]
k = 5
sensitive = "main_diagnosis"
l = 2
suppression_limit = 0.05
suppressed = "{suppressed}"
metric = "entropy"
"#,
        out = dir.join(out).display(),
        key = key.display(),
        data = data.display(),
    );
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `configs/research.toml` over the generated extracts in `dir/data`: two anonymised datasets (the
/// patients, with an age computed from the birth date; their stays), whose suppressed persons
/// leave each other in rounds.
fn research_permit(dir: &Path, out: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("configs/research.toml")).unwrap();
    let text = text
        .replace(
            "\"../sample-data/DEMO-",
            &format!("\"{}/sample-data/DEMO-", repo().display()),
        )
        .replace(
            "\"../sample-data/",
            &format!("\"{}/", dir.join("data").display()),
        )
        .replace(
            "dir = \"../out/research\"",
            &format!("dir = \"{}\"", dir.join(out).display()),
        );
    assert!(text.contains("age_at") && !text.contains("../"), "{text}");
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn output_of(permit: &Path) -> PathBuf {
    let stem = permit.file_stem().unwrap().to_str().unwrap();
    permit.parent().unwrap().join(stem)
}

fn run(permit: &Path, cluster: Option<&str>) -> std::process::Output {
    let mut args = vec!["run", "--permit", permit.to_str().unwrap()];
    if let Some(url) = cluster {
        args.extend(["--cluster", url]);
    }
    ehds_prep(&args)
}

fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

/// The Arrow types a Parquet reader gives a file's columns (large or plain strings…).
fn arrow_schema(path: &Path) -> Vec<String> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    builder
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect()
}

/// Two JSON values are equal but for the last digits of their fractional numbers: the metrics
/// are sums whose order follows the order the profile met its values in (the source's on one
/// machine, the aggregation's on a cluster).
fn assert_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = |o: &serde_json::Map<String, Value>| o.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(x), keys(y), "{at}");
            for (k, v) in x {
                assert_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_close(v, w, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                "{at}: {x} and {y}"
            );
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The two deliveries hold the same rows in the same order, the same report counts, and the same
/// manifest records of their datasets (but the files' checksums: two Parquet writers).
fn assert_same_delivery(single: &Path, cluster: &Path) {
    let (m1, m2) = (
        json(&single.join("manifest.json")),
        json(&cluster.join("manifest.json")),
    );
    let datasets = m1["datasets"].as_array().unwrap();
    assert!(!datasets.is_empty());
    assert_eq!(datasets.len(), m2["datasets"].as_array().unwrap().len());
    for (d1, d2) in datasets.iter().zip(m2["datasets"].as_array().unwrap()) {
        for key in ["name", "file", "rows", "schema", "row_order", "privacy"] {
            assert_eq!(d1[key], d2[key], "manifest `{key}` of {}", d1["name"]);
        }
        let file = d1["file"].as_str().unwrap();
        let (a, b) = (
            read_parquet(&single.join(file)),
            read_parquet(&cluster.join(file)),
        );
        assert!(a.height() > 0, "{file} delivers rows");
        assert_eq!(a.schema(), b.schema(), "{file}");
        assert_eq!(
            arrow_schema(&single.join(file)),
            arrow_schema(&cluster.join(file)),
            "{file}: the Arrow types readers see"
        );
        assert!(a.equals_missing(&b), "{file}: the rows differ\n{a}\n{b}");
    }
    assert_eq!(m1["inputs"], m2["inputs"], "the same inputs, hashed alike");
    let (r1, r2) = (
        json(&single.join("report.json")),
        json(&cluster.join("report.json")),
    );
    for (d1, d2) in r1["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r2["datasets"].as_array().unwrap())
    {
        for key in [
            "rows_read",
            "rows_outside_cohort",
            "rows_opted_out",
            "rows_rejected",
            "rows_delivered",
            "rows_of_removed_persons",
            "persons_suppressed",
            "birth_date_echoes",
            "columns",
            "columns_dropped",
        ] {
            assert_eq!(d1[key], d2[key], "report `{key}` of {}", d1["name"]);
        }
        // The same choice, suppression, metrics and risks; but the search's timings, and how
        // many transformations it evaluated: its bounds are sums in the order the profile met its
        // values, and a bound equal to the best score up to the last digit may prune or not.
        let chosen = |d: &serde_json::Value| {
            let mut a = d["anonymisation"].clone();
            if let Some(a) = a.as_object_mut() {
                a.remove("profile_ms");
                a.remove("search_ms");
                a.remove("transformations_evaluated");
            }
            a
        };
        assert_close(
            &chosen(d1),
            &chosen(d2),
            &format!("anonymisation of {}", d1["name"]),
        );
    }
    assert_eq!(r1["opt_out"], r2["opt_out"], "the opt-out list's matches");
}

#[test]
fn an_in_process_cluster_delivers_what_one_machine_delivers() {
    let dir = tempfile::tempdir().unwrap();
    // 220,000 persons: 1.03 million rows over the three holders.
    let single = permits(dir.path(), 220_000, "single");
    let cluster = permits(dir.path(), 220_000, "cluster");
    for (s, c) in single.iter().zip(&cluster) {
        let o = run(s, None);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(c, Some("local"));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_same_delivery(&output_of(s), &output_of(c));
    }
    // What the comparison rests on: rows dropped by each stage, and the shifted dates.
    let report = json(&output_of(&cluster[0]).join("report.json"));
    let stays = &report["datasets"][0];
    assert!(
        stays["rows_outside_cohort"].as_u64().unwrap() > 0,
        "{stays}"
    );
    assert!(stays["rows_opted_out"].as_u64().unwrap() > 0, "{stays}");
    let registry = json(&output_of(&cluster[1]).join("manifest.json"));
    assert!(registry["date_shift"].is_object(), "{registry}");
    // An anonymised dataset: the profile aggregated on the cluster, the search here, the levels
    // and suppression applied by the executors; suppressed rows removed or blanked.
    for suppressed in ["remove", "blank"] {
        let s = anonymised_permit(dir.path(), &format!("single-{suppressed}"), suppressed);
        let c = anonymised_permit(dir.path(), &format!("cluster-{suppressed}"), suppressed);
        let o = run(&s, None);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(&c, Some("local"));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_same_delivery(&output_of(&s), &output_of(&c));
        assert_anonymised_with_suppression(&output_of(&c), suppressed);
    }
    // Two anonymised datasets (the sample research permit): the same rounds, the same persons;
    // and the same persons admitted on their birth date (30 stays made so).
    admit_on_birth_dates(&dir.path().join("data/hospital"), 30);
    let s = research_permit(dir.path(), "single-research");
    let c = research_permit(dir.path(), "cluster-research");
    let o = run(&s, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&c, Some("local"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_delivery(&output_of(&s), &output_of(&c));
    let report = json(&output_of(&c).join("report.json"));
    let removed: u64 = report["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["rows_of_removed_persons"].as_u64().unwrap())
        .sum();
    assert!(
        removed > 0,
        "persons suppressed by one left the other: {report}"
    );
    let stays = &report["datasets"][1];
    assert_eq!(stays["name"], "stays");
    let echoes = stays["birth_date_echoes"][0]["persons"].as_u64().unwrap();
    assert!(echoes > 0 && echoes <= 30, "{stays}");
}

/// Sets the admission date of up to `n` stays in the cohort's years (2019–2024) to their
/// patient's birth date.
fn admit_on_birth_dates(hospital: &Path, n: usize) {
    let patients = std::fs::read_to_string(hospital.join("patients.csv")).unwrap();
    let births: std::collections::HashMap<&str, &str> = patients
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() == 9 && f[5].as_bytes() >= b"2019-01-01".as_slice()).then(|| (f[1], f[5]))
        })
        .collect();
    let stays = std::fs::read_to_string(hospital.join("stays.csv")).unwrap();
    let mut changed = 0;
    let lines: Vec<String> = stays
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            match births.get(f[2]) {
                Some(birth) if changed < n && f.len() == 8 && birth.starts_with("20") => {
                    changed += 1;
                    f[3] = birth;
                    f.join(",")
                }
                _ => l.to_string(),
            }
        })
        .collect();
    assert_eq!(changed, n, "stays of patients born since 2019");
    std::fs::write(hospital.join("stays.csv"), lines.join("\n") + "\n").unwrap();
}

/// What the anonymised permit's comparison rests on: the stays were generalised and some rows
/// suppressed; removed, their persons left the patients; blanked, they are delivered as `*`. No
/// work file is left in the delivery.
fn assert_anonymised_with_suppression(out: &Path, suppressed: &str) {
    let report = json(&out.join("report.json"));
    let datasets = report["datasets"].as_array().unwrap();
    let stays = datasets.iter().find(|d| d["name"] == "stays").unwrap();
    let patients = datasets.iter().find(|d| d["name"] == "patients").unwrap();
    let a = &stays["anonymisation"];
    assert!(a["rows_suppressed"].as_u64().unwrap() > 0, "{a}");
    let levels: Vec<u64> = a["quasi_identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["level"].as_u64().unwrap())
        .collect();
    assert!(levels.iter().any(|&l| l > 0), "generalised: {levels:?}");
    let delivered = read_parquet(&out.join("stays.parquet"));
    let blank = delivered
        .column("admission")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .filter(|v| *v == Some("*"))
        .count() as u64;
    match suppressed {
        "remove" => {
            assert!(stays["persons_suppressed"].as_u64().unwrap() > 0, "{stays}");
            assert!(
                patients["rows_of_removed_persons"].as_u64().unwrap() > 0,
                "{patients}"
            );
        }
        _ => {
            assert_eq!(blank, a["rows_suppressed"].as_u64().unwrap(), "{a}");
            let removed = patients["rows_of_removed_persons"].as_u64().unwrap_or(0);
            assert_eq!(removed, 0, "{patients}");
        }
    }
    let hidden: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "work files left: {hidden:?}");
}

/// A free port whose next port is free too (an executor serves on both).
fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A process of the cluster, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    )
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scheduler and executors on loopback ports, each executor with `key` as `linkage`.
struct LoopbackCluster {
    url: String,
    executors: Vec<Process>,
    _scheduler: Process,
}

fn loopback_cluster(executors: usize, key: &Path) -> LoopbackCluster {
    let port = free_port_pair();
    let bind = format!("127.0.0.1:{port}");
    let scheduler = start(&[
        "cluster",
        "scheduler",
        "--bind",
        &bind,
        "--executor-timeout",
        "4",
    ]);
    wait_for_port(port);
    let executors = (0..executors)
        .map(|_| {
            let own = free_port_pair();
            let p = start(&[
                "cluster",
                "executor",
                "--scheduler",
                &bind,
                "--bind",
                &format!("127.0.0.1:{own}"),
                "--cores",
                "1",
                "--key",
                &format!("linkage={}", key.display()),
            ]);
            wait_for_port(own);
            p
        })
        .collect();
    LoopbackCluster {
        url: format!("df://127.0.0.1:{port}"),
        executors,
        _scheduler: scheduler,
    }
}

fn demo_key(dir: &Path) -> PathBuf {
    let key = dir.join("linkage.hex");
    common::demo_key_to(&key);
    key
}

#[test]
fn a_loopback_cluster_of_two_executors_delivers_what_one_machine_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let single = permits(dir.path(), 4_000, "single");
    let cluster = permits(dir.path(), 4_000, "cluster");
    let nodes = loopback_cluster(2, &demo_key(dir.path()));
    for (s, c) in single.iter().zip(&cluster) {
        let o = run(s, None);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(c, Some(&nodes.url));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_same_delivery(&output_of(s), &output_of(c));
    }
    // The executor processes read the chosen generalisation and the removed persons from the
    // staging folder.
    let s = anonymised_permit(dir.path(), "single-anonymised", "remove");
    let c = anonymised_permit(dir.path(), "cluster-anonymised", "remove");
    let o = run(&s, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&c, Some(&nodes.url));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_delivery(&output_of(&s), &output_of(&c));
    assert_anonymised_with_suppression(&output_of(&c), "remove");
}

#[test]
fn an_executor_holding_another_key_refuses_the_task_and_nothing_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = permits(dir.path(), 500, "cluster");
    let other = dir.path().join("other.hex");
    let o = ehds_prep(&["keygen", "--out", other.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let nodes = loopback_cluster(1, &other);
    let o = run(&cluster[0], Some(&nodes.url));
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let message = stderr(&o);
    assert!(
        message.contains("linkage") && message.contains("fingerprint"),
        "{message}"
    );
    assert!(!output_of(&cluster[0]).exists(), "nothing is delivered");
    let key =
        std::fs::read_to_string(repo().join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"))
            .unwrap();
    assert!(!message.contains(key.trim()), "no key in the message");
}

#[test]
fn an_executor_killed_during_a_run_leaves_the_same_delivery_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let single = permits(dir.path(), 220_000, "single");
    let cluster = permits(dir.path(), 220_000, "cluster");
    let o = run(&single[0], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut nodes = loopback_cluster(2, &demo_key(dir.path()));
    let out = output_of(&cluster[0]);
    let staging = out.with_file_name(format!(
        ".{}.staging",
        out.file_name().unwrap().to_str().unwrap()
    ));
    let mut running = Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args([
            "run",
            "--permit",
            cluster[0].to_str().unwrap(),
            "--cluster",
            &nodes.url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the run has opened its staging folder, its jobs are under way: one executor dies.
    let started = Instant::now();
    while !staging.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(nodes.executors.remove(0));
    assert!(
        running.try_wait().unwrap().is_none(),
        "the run ended before the executor was killed: the test needs a larger extract"
    );
    let o = running.wait_with_output().unwrap();
    if o.status.success() {
        assert_same_delivery(&output_of(&single[0]), &out);
    } else {
        assert!(
            !out.exists(),
            "a failed run delivers nothing: {}",
            stderr(&o)
        );
        assert!(!staging.exists(), "and leaves no staging folder");
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

#[test]
fn what_a_cluster_cannot_run_yet_is_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    common::demo_keys_to(dir.path());
    // A CLK, a composite pseudonym.
    let permit = common::sample_permit("hospital", dir.path());
    let o = run(&permit, Some("local"));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not run on a cluster yet"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("out/hospital").exists());
}

#[test]
fn a_bad_value_on_a_cluster_names_its_file_and_column_never_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = permits(dir.path(), 300, "cluster");
    let stays = dir.path().join("data/hospital/stays.csv");
    let text = std::fs::read_to_string(&stays).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let fields: Vec<&str> = lines[5].split(',').collect();
    let mut broken: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    broken[3] = "2019-13-45".into();
    lines[5] = broken.join(",");
    std::fs::write(&stays, lines.join("\n") + "\n").unwrap();
    let o = run(&cluster[0], Some("local"));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let message = stderr(&o);
    assert!(
        message.contains("stays.csv") && message.contains("admission_date"),
        "{message}"
    );
    assert!(!message.contains("2019-13-45"), "{message}");
    assert!(!output_of(&cluster[0]).exists());
}

/// An anonymised dataset no transformation can protect fails on a cluster as on one machine
/// (same exit code and message), and the failed run leaves nothing: no delivery, no staging
/// folder (the shared files are inside it).
#[test]
fn an_anonymised_dataset_that_cannot_be_protected_fails_as_on_one_machine() {
    let dir = tempfile::tempdir().unwrap();
    permits(dir.path(), 2_000, "unused");
    let mut outputs = Vec::new();
    for (name, cluster) in [("single", None), ("cluster", Some("local"))] {
        let permit = anonymised_permit(dir.path(), name, "remove");
        let text = std::fs::read_to_string(&permit).unwrap();
        std::fs::write(&permit, text.replace("k = 5\n", "k = 100000\n")).unwrap();
        let o = run(&permit, cluster);
        assert!(!o.status.success(), "{name}");
        assert!(!output_of(&permit).exists(), "{name}: nothing delivered");
        let error: Vec<String> = stderr(&o)
            .lines()
            .filter(|l| l.starts_with("error"))
            .map(String::from)
            .collect();
        outputs.push((o.status.code(), error.join("\n")));
    }
    assert_eq!(outputs[0].0, outputs[1].0, "the same exit code");
    assert_eq!(outputs[0].1, outputs[1].1, "the same message");
    assert!(
        outputs[1].1.contains("100000-anonymity"),
        "{}",
        outputs[1].1
    );
    let hidden: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The run lock stays beside its output, as on one machine.
        .filter(|n| n.starts_with('.') && !n.ends_with(".lock"))
        .collect();
    assert!(hidden.is_empty(), "left behind: {hidden:?}");
}
