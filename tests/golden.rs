//! Golden outputs: `report.json` of the hospital and research sample runs (timings and the machine's
//! paths taken out) and the catalogue descriptions of the hospital's two datasets must equal the files
//! in `tests/golden/` byte for byte: field order and number formatting are part of the contract with
//! the programs that read them. The figures themselves are checked by independent computations
//! (`check_sample_delivery.py`, `check_research_delivery.py` in tests/end_to_end.rs, and
//! `check_describe.py` here). After an intended change, regenerate with `EHDS_UPDATE_GOLDEN=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ehds_prep, input_identifiers, repo, run_ok, sample_permit, stderr};

fn golden(name: &str) -> PathBuf {
    repo().join("tests/golden").join(name)
}

fn assert_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("EHDS_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (EHDS_UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from {} from line {}:\n  golden: {:?}\n  actual: {:?}",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// report.json as written, without what varies between machines and runs: the start time, the
/// permit's hash, durations, the parallel
/// search's count of evaluated transformations (its optimum does not vary), absolute paths.
fn stable_report(path: &Path, dir: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let varying = regex::Regex::new(
        r#"("(?:[a-z_]+_ms|read|transform|write|finalise|total|transformations_evaluated)": )\d+"#,
    )
    .unwrap();
    // The start time, and the permit's hash (its text holds the test's temporary paths).
    let started = regex::Regex::new(r#""started_at": "[^"]*""#).unwrap();
    let text = started.replace_all(&text, r#""started_at": "<time>""#);
    let hash = regex::Regex::new(r#""sha256": "[0-9a-f]{64}""#).unwrap();
    let text = hash.replace_all(&text, r#""sha256": "<sha256>""#);
    varying
        .replace_all(&text, "${1}0")
        .replace(&dir.display().to_string(), "<tmp>")
        .replace(&repo().display().to_string(), "<repo>")
}

#[test]
fn run_reports_equal_their_golden_files() {
    let tmp = tempfile::tempdir().unwrap();
    for permit in ["hospital", "research"] {
        run_ok(&sample_permit(permit, tmp.path()));
        let report = tmp.path().join("out").join(permit).join("report.json");
        assert_golden(
            &format!("{permit}.report.json"),
            &stable_report(&report, tmp.path()),
        );
    }
}

/// The catalogue descriptions equal their golden files, parse as JSON-LD (rdflib, pyld), carry the
/// DCAT-AP and HealthDCAT-AP properties, and every figure equals an independent recomputation from
/// the raw CSV; they name no identifier of the data, and need no key.
#[test]
fn catalogue_descriptions_are_golden_valid_json_ld_and_independently_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("hospital", tmp.path());
    // Describing reads the extract and pseudonymises nothing: it must work without the key.
    let text = std::fs::read_to_string(&permit)
        .unwrap()
        .replace("DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex", "no-such-key.hex");
    assert!(text.contains("no-such-key.hex"));
    std::fs::write(&permit, &text).unwrap();
    let mut outputs = Vec::new();
    for dataset in ["stays", "patients"] {
        let out = tmp.path().join(format!("{dataset}.jsonld"));
        let o = ehds_prep(&[
            "describe",
            "--permit",
            permit.to_str().unwrap(),
            "--dataset",
            dataset,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "describe {dataset}: {}", stderr(&o));
        let json = std::fs::read_to_string(&out).unwrap();
        assert_golden(&format!("hospital-{dataset}.jsonld"), &json);
        for id in input_identifiers() {
            assert!(
                !json.contains(&id),
                "the description of {dataset} names an input identifier"
            );
        }
        outputs.push(out);
    }
    // Five patients: fewer than the small-count threshold, so no figure is published.
    let patients =
        std::fs::read_to_string(repo().join("sample-data/hospital/patients.csv")).unwrap();
    let five: Vec<&str> = patients.lines().take(6).collect();
    std::fs::write(tmp.path().join("five.csv"), five.join("\n") + "\n").unwrap();
    let small_permit = tmp.path().join("small.toml");
    let small_text = text.replace(
        &format!("{}/sample-data/hospital/patients.csv", repo().display()),
        &tmp.path().join("five.csv").display().to_string(),
    );
    assert_ne!(small_text, text);
    std::fs::write(&small_permit, small_text).unwrap();
    let small = tmp.path().join("small.jsonld");
    let o = ehds_prep(&[
        "describe",
        "--permit",
        small_permit.to_str().unwrap(),
        "--dataset",
        "patients",
        "--out",
        small.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "describe five patients: {}", stderr(&o));
    let o = Command::new("python3")
        .arg(repo().join("tests/independent/check_describe.py"))
        .arg(repo())
        .args(&outputs)
        .arg(&small)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "independent check failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let checked: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(checked["stays_measurements"], 15);
    assert!(checked["patients_persons"].as_u64().unwrap() > 1000);
}

#[test]
fn describe_refuses_a_dataset_without_catalogue_entry_or_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("insurer", tmp.path());
    for (dataset, fragment) in [
        ("pharmacy_claims", "[datasets.catalogue]"),
        ("nothing", "no dataset `nothing`"),
    ] {
        let o = ehds_prep(&[
            "describe",
            "--permit",
            permit.to_str().unwrap(),
            "--dataset",
            dataset,
        ]);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        assert!(stderr(&o).contains(fragment), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}
