//! End-to-end runs of the bundled permits on the bundled sample data.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use common::*;
use polars::prelude::*;

fn run_all(dir: &Path) {
    for holder in ["hospital", "insurer", "registry", "cohort", "research"] {
        run_ok(&sample_permit(holder, dir));
    }
}

/// The anonymised research delivery agrees with what an independent Python implementation derives
/// from the raw extract at the levels the manifest records: every delivered row is an eligible row
/// with its generalised values, every class holds at least 5 persons (and 2 diagnoses for stays),
/// one fate per person across the two tables, and the report's counts.
#[test]
fn anonymised_delivery_matches_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("research", tmp.path());
    let o = run_ok(&permit);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("FR-2029-0107"), "{summary}");
    assert!(
        summary.contains("anonymised: admission at level"),
        "{summary}"
    );
    let out = tmp.path().join("out/research");
    let python = independent_check("check_research_delivery.py", &out);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for d in report["datasets"].as_array().unwrap() {
        let name = d["name"].as_str().unwrap();
        let a = &d["anonymisation"];
        assert_eq!(d["rows_delivered"], python[name]["delivered"], "{name}");
        // Eligible rows left out: suppressed here, or of persons suppressed in the other table.
        let left_out = a["rows_suppressed"].as_u64().unwrap()
            + d["rows_of_removed_persons"].as_u64().unwrap_or(0);
        assert_eq!(left_out, python[name]["left_out"], "{name}");
        assert!(a["risk_before"]["smallest_class"].as_u64().unwrap() < 5);
        assert!(a["risk_after"]["smallest_class"].as_u64().unwrap() >= 5);
        assert_eq!(
            a["risk_after"]["smallest_class"],
            python[name]["smallest_class"]
        );
        assert_eq!(a["risk_after"]["records_in_classes_below_k"], 0);
        // ℓ reached, measured on the written file: only the stays have a sensitive column.
        match python[name]["l_distinct"].as_u64() {
            Some(l) => {
                assert_eq!(a["sensitive_reached"]["l_distinct"], l, "{name}");
                assert!(l >= 2, "{name}");
            }
            None => assert!(a.get("sensitive_reached").is_none(), "{name}"),
        }
    }
    // The sample is not trivial: rows are left out, and the stays count persons, not rows.
    assert!(python["patients"]["left_out"].as_u64().unwrap() > 0);
    assert_eq!(
        report["datasets"][1]["anonymisation"]["risk_after"]["sizes_in_persons"],
        true
    );
}

/// Every delivery matches what an independent Python implementation (csv, hmac, pyarrow) computes from
/// the raw extracts: rows kept, pseudonyms bit for bit, generalised values, schema, footer, counts.
#[test]
fn sample_deliveries_match_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    run_all(tmp.path());
    let counts = independent_check("check_sample_delivery.py", &tmp.path().join("out"));
    // The sample data is not trivial: every filter removes something and every dataset delivers rows.
    assert!(counts["stays"]["outside_cohort"].as_u64().unwrap() > 0);
    assert!(counts["patients"]["opted_out"].as_u64().unwrap() > 0);
    assert!(counts["pharmacy_claims"]["delivered"].as_u64().unwrap() > 100);
    for holder in ["hospital", "insurer", "registry", "cohort"] {
        let o = ehds_prep(&[
            "inspect",
            tmp.path().join("out").join(holder).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "inspect {holder}: {}", stderr(&o));
    }
}

/// The access body links the three sample deliveries (`configs/linkage.toml`): overlaps,
/// consistency, every re-pseudonymised row and the person table's classes match an independent
/// Python computation from the holders' deliveries and the demo access-body key.
#[test]
fn linked_sample_delivery_matches_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    for holder in ["hospital", "insurer", "registry", "cohort"] {
        run_ok(&sample_permit(holder, tmp.path()));
    }
    let permit = sample_permit("linkage", tmp.path());
    let o = ehds_prep(&["link", "--permit", permit.to_str().unwrap()]);
    assert!(o.status.success(), "link failed: {}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains("hospital + insurer + registry"),
        "{summary}"
    );
    let checked = independent_check("check_linked_delivery.py", &tmp.path().join("out"));
    assert_eq!(checked["combinations"], 15);
    // Most participants the hospital saw are linked to its patients on their CLKs.
    assert!(checked["clk_matched"].as_u64().unwrap() > 150, "{checked}");
    assert!(checked["persons"].as_u64().unwrap() > 1000);
    assert!(checked["consistency"]["sex"]["compared"].as_u64().unwrap() > 50);
    assert!(checked["smallest_class"].as_u64().unwrap() >= 5);
    let o = ehds_prep(&["inspect", tmp.path().join("out/linked").to_str().unwrap()]);
    assert!(o.status.success(), "inspect linked: {}", stderr(&o));
}

/// Raw identifiers and direct identifiers of the extracts (NIRs as written and normalised, names,
/// phone numbers, local ids) appear nowhere in a delivery: not among its values, not in its manifest,
/// report or Parquet footers. Columns the permit does not name are absent.
#[test]
fn no_raw_identifier_or_unpermitted_column_reaches_a_delivery() {
    let tmp = tempfile::tempdir().unwrap();
    run_all(tmp.path());
    let secrets = input_identifiers();
    assert!(secrets.len() > 1000);
    let forbidden_columns = [
        "nir",
        "last_name",
        "first_name",
        "phone",
        "city",
        "patient_id",
        "stay_id",
        "nom",
        "prenom",
        "libelle",
        "case_id",
    ];
    for holder in ["hospital", "insurer", "registry", "cohort"] {
        let dir = tmp.path().join("out").join(holder);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".parquet") {
                let df = ParquetReader::new(std::fs::File::open(&path).unwrap())
                    .finish()
                    .unwrap();
                for col in df.columns() {
                    assert!(
                        !forbidden_columns.contains(&col.name().as_str()),
                        "{name} delivers `{}`",
                        col.name()
                    );
                    let s = col.cast(&DataType::String).unwrap();
                    for v in s.str().unwrap().iter().flatten() {
                        assert!(
                            !secrets.contains(v),
                            "{name}.{} delivers a raw identifier",
                            col.name()
                        );
                    }
                }
                let footer = ehds_prep::delivery::read_footer(&path).unwrap();
                for (k, v) in footer.metadata {
                    assert!(
                        !secrets.iter().any(|s| v.contains(s.as_str())),
                        "footer {k} of {name}"
                    );
                }
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !secrets.iter().any(|s| text.contains(s.as_str())),
                    "{name} contains a raw identifier"
                );
            }
        }
    }
}

/// A delivery of the same permit written by another version of the engine (its manifest records
/// other fields) is replaced by a rerun, not refused as a foreign folder; a folder of another
/// permit, or without a manifest, still is.
#[test]
fn a_rerun_replaces_the_delivery_of_another_engine_version() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("hospital", tmp.path());
    run_ok(&permit);
    let out = tmp.path().join("out/hospital");
    let path = out.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["engine_version"] = "0.0.9".into();
    manifest["a_field_of_another_version"] = serde_json::json!({"x": 1});
    for d in manifest["datasets"].as_array_mut().unwrap() {
        d.as_object_mut().unwrap().remove("schema");
    }
    std::fs::write(&path, manifest.to_string()).unwrap();
    run_ok(&permit);
    let rewritten: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(rewritten["engine_version"], env!("CARGO_PKG_VERSION"));
    // Another permit's delivery, and a folder that is no delivery, are refused (exit 7).
    manifest["permit"]["id"] = "FR-2029-9999".into();
    std::fs::write(&path, manifest.to_string()).unwrap();
    let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("another permit (FR-2029-9999)"));
    std::fs::write(&path, "{\"format\": \"something else\"}").unwrap();
    let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("not an ehds-prep delivery"));
}

/// The same inputs, permit and key give byte-identical data files and manifest; a rerun replaces the
/// earlier delivery cleanly.
#[test]
fn reruns_are_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    // The anonymised delivery too: its search runs in parallel, its answer may not depend on timing.
    for holder in ["hospital", "research"] {
        let permit = sample_permit(holder, tmp.path());
        run_ok(&permit);
        let out = tmp.path().join("out").join(holder);
        let first: Vec<(String, Vec<u8>)> = ["patients.parquet", "stays.parquet", "manifest.json"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(out.join(f)).unwrap()))
            .collect();
        run_ok(&permit);
        for (f, bytes) in first {
            assert!(
                std::fs::read(out.join(&f)).unwrap() == bytes,
                "{holder}/{f} differs between runs"
            );
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "staging debris left behind: {leftovers:?}"
    );
}

#[test]
fn inspect_detects_a_flipped_byte_and_an_unlisted_file() {
    let tmp = tempfile::tempdir().unwrap();
    run_ok(&sample_permit("registry", tmp.path()));
    let out = tmp.path().join("out/registry");
    let o = ehds_prep(&["inspect", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"sha256\""));

    let file = out.join("cancer_cases.parquet");
    let original = std::fs::read(&file).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let o = ehds_prep(&["inspect", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("cancer_cases.parquet") && stderr(&o).contains("SHA-256"));

    std::fs::write(&file, &original).unwrap();
    std::fs::write(out.join("extra.parquet"), b"PAR1").unwrap();
    let o = ehds_prep(&["inspect", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6));
    assert!(stderr(&o).contains("extra.parquet"));
}

#[test]
fn validate_checks_sources_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("insurer", tmp.path());
    let o = ehds_prep(&["validate", "--permit", permit.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pharmacy_claims"));
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn keygen_makes_a_private_strong_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k.hex");
    let o = ehds_prep(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = ehds_prep::kernels::keys::SecretKey::from_file(&path).unwrap();
    assert_eq!(key.expose().len(), 32);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(text.trim()),
        "keygen printed the key"
    );
    let o = ehds_prep(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

/// Different domain contexts (two permits) give pseudonyms that cannot be joined; the same context and
/// key (two holders of one permit) give the same pseudonyms, in every table.
#[test]
fn holders_link_within_a_permit_and_not_across_permits() {
    let tmp = tempfile::tempdir().unwrap();
    run_all(tmp.path());
    let pseudonyms = |file: &str| -> HashSet<String> {
        let df =
            ParquetReader::new(std::fs::File::open(tmp.path().join("out").join(file)).unwrap())
                .finish()
                .unwrap();
        df.column("person_pseudonym")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .map(String::from)
            .collect()
    };
    let patients = pseudonyms("hospital/patients.parquet");
    let stays = pseudonyms("hospital/stays.parquet");
    let claims = pseudonyms("insurer/pharmacy_claims.parquet");
    assert!(
        stays.is_subset(&patients) || stays.intersection(&patients).count() * 10 > stays.len() * 9
    );
    assert!(
        claims.intersection(&patients).count() > 100,
        "holders of one permit must link"
    );

    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let text = std::fs::read_to_string(sample_permit("hospital", &other))
        .unwrap()
        .replace("FR-2029-0042", "FR-2029-0099");
    let permit = other.join("hospital-other.toml");
    std::fs::write(&permit, text).unwrap();
    run_ok(&permit);
    let df = ParquetReader::new(
        std::fs::File::open(other.join("out/hospital/patients.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    let other_ps: HashSet<String> = df
        .column("person_pseudonym")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(String::from)
        .collect();
    assert_eq!(other_ps.len(), patients.len());
    assert_eq!(
        other_ps.intersection(&patients).count(),
        0,
        "two permits' pseudonyms must not join"
    );
}

/// A Parquet extract with typed columns (and one text column holding dates) delivers exactly what the
/// same data as CSV delivers.
#[test]
fn parquet_sources_deliver_like_csv_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let registry_csv = repo().join("sample-data/registry/cancer_cases.csv");
    let mut df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(registry_csv))
        .unwrap()
        .finish()
        .unwrap();
    // Typed stage column, diagnosis date kept as text: both must be accepted.
    let stage = df.column("stage").unwrap().cast(&DataType::Int64).unwrap();
    df.with_column(stage).unwrap();
    let parquet = tmp.path().join("cases.parquet");
    ParquetWriter::new(std::fs::File::create(&parquet).unwrap())
        .finish(&mut df)
        .unwrap();

    let csv_permit = sample_permit("registry", tmp.path());
    run_ok(&csv_permit);
    let text = std::fs::read_to_string(&csv_permit)
        .unwrap()
        .replace("format = \"csv\"", "format = \"parquet\"")
        .replace(
            &format!("{}/sample-data/registry/cancer_cases.csv", repo().display()),
            parquet.to_str().unwrap(),
        )
        .replace(
            "/out/registry\"",
            "/out/registry-parquet\"\nbatch_rows = 50",
        );
    let pq_permit = tmp.path().join("registry-parquet.toml");
    std::fs::write(&pq_permit, text).unwrap();
    run_ok(&pq_permit);
    let read = |d: &str| {
        ParquetReader::new(
            std::fs::File::open(tmp.path().join("out").join(d).join("cancer_cases.parquet"))
                .unwrap(),
        )
        .finish()
        .unwrap()
    };
    let (a, b) = (read("registry"), read("registry-parquet"));
    // Read and written in slices of 50 rows: one row group per batch.
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file =
        std::fs::File::open(tmp.path().join("out/registry-parquet/cancer_cases.parquet")).unwrap();
    let groups = SerializedFileReader::new(file)
        .unwrap()
        .metadata()
        .num_row_groups();
    assert!(groups >= 4, "{groups} row groups");
    assert!(a.height() > 100);
    assert!(
        a.equals_missing(&b),
        "Parquet and CSV sources deliver different data"
    );
}

/// Researchers open deliveries with the readers they have: every delivery kind (a holder's, an
/// anonymised one, SNDS partial dates, a linked one) opens with pyarrow 14, which refuses the
/// `string_view` type in a file's Arrow schema, and holds the rows its manifest says. pyarrow
/// 14.0.2 is installed in a virtual environment of its own under the target folder.
#[test]
fn every_delivery_kind_opens_with_pyarrow_14() {
    let python = python_venv("pyarrow-14-venv", &["pyarrow==14.0.2", "numpy<2"]);
    let tmp = tempfile::tempdir().unwrap();
    for holder in [
        "hospital",
        "insurer",
        "registry",
        "cohort",
        "research",
        "snds-hospital",
    ] {
        run_ok(&sample_permit(holder, tmp.path()));
    }
    let link = sample_permit("linkage", tmp.path());
    let o = ehds_prep(&["link", "--permit", link.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = r#"
import json, sys
from pathlib import Path
import pyarrow, pyarrow.parquet as pq
assert pyarrow.__version__ == "14.0.2", pyarrow.__version__
for delivery in sys.argv[1:]:
    manifest = json.loads((Path(delivery) / "manifest.json").read_text())
    for d in manifest["datasets"]:
        table = pq.read_table(Path(delivery) / d["file"])
        assert table.num_rows == d["rows"], (delivery, d["file"], table.num_rows)
        print(delivery, d["file"], table.num_rows)
"#;
    let out = tmp.path().join("out");
    let o = Command::new(&python)
        .args(["-c", script])
        .args(
            ["hospital", "research", "snds-hospital", "linked"]
                .iter()
                .map(|d| out.join(d)),
        )
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() >= 8);
}
