//! What the bad-input corpus cannot show, because the run succeeds or the damage comes after it:
//! opt-out lists as people keep them, rows without a person counted alike by the search and the
//! re-check, deliveries another holder cannot replace, inspect refusing what a manifest does not
//! account for, the inputs a manifest records, and the command line under a closed pipe or a full
//! disk.

mod common;

use std::path::{Path, PathBuf};

use common::permit_text::*;
use common::{demo_key_to, ehds_prep, run_ok, stderr};
use sha2::Digest;

/// A folder with the demo key, a `data.csv` and a permit over it.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new(data: &str) -> Work {
        let w = Work {
            dir: tempfile::tempdir().unwrap(),
        };
        demo_key_to(&w.path("key.hex"));
        std::fs::write(w.path("data.csv"), data).unwrap();
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

    fn report(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("out/report.json")).unwrap())
            .unwrap()
    }
}

fn head() -> PermitText {
    permit("H-1").holder("holder-a")
}

/// The people of `DATA`: the NIR pseudonymised, sex kept.
fn people() -> DatasetText {
    dataset("people", &["data.csv"])
        .person("nir")
        .column(nir("nir", "d"))
        .column(kept("sex", "integer"))
}

const OPT_OUT: &str = "[opt_out]\nfile = \"opt_out.txt\"\nidentifier = \"nir\"\n";

/// Three valid NIRs (control keys computed independently in `identifier`'s tests and by the
/// Python checks).
const DATA: &str = "nir,sex\n185057800608491,1\n255081416802538,2\n160012A12345630,1\n";

#[test]
fn an_opt_out_list_with_a_byte_order_mark_crlf_and_comments_removes_its_person() {
    let w = Work::new(DATA);
    std::fs::write(
        w.path("opt_out.txt"),
        b"\xEF\xBB\xBF# refusals, exported from a spreadsheet\r\n  2 55 08 14 168 025 38  # refused 2024-03-01\r\n\r\n",
    )
    .unwrap();
    let permit = w.permit(&head().section(OPT_OUT).dataset(people()).text());
    let o = run_ok(&permit);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains("opt-out list: 1 entries read, 1 valid, 1 matched a row"),
        "{summary}"
    );
    let report = w.report();
    assert_eq!(report["datasets"][0]["rows_opted_out"], 1);
    assert_eq!(report["datasets"][0]["rows_delivered"], 2);
    assert_eq!(
        report["opt_out"],
        serde_json::json!({"entries_read": 1, "entries_valid": 1, "entries_invalid": 0, "entries_matched": 1})
    );

    // Invalid entries kept on request: counted in the summary and the HTML report.
    std::fs::write(
        w.path("opt_out.txt"),
        "255081416802538\nnot-a-nir # typed by hand\n",
    )
    .unwrap();
    let keep = OPT_OUT.to_string() + "on_invalid = \"keep\"\n";
    let permit = w.permit(&head().section(&keep).dataset(people()).text());
    let o = run_ok(&permit);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains("WARNING: 1 not valid identifiers"),
        "{summary}"
    );
    let html = std::fs::read_to_string(w.path("out/report.html")).unwrap();
    assert!(html.contains("opt-out entries are not valid identifiers"));
    assert_eq!(w.report()["opt_out"]["entries_invalid"], 1);
}

/// Rows without a person (`on_missing = "null"`) count as no one in a class: the search, the
/// early release and the re-check of the written file agree, so `assess` and `run` agree.
#[test]
fn rows_without_a_person_count_alike_in_the_search_and_the_re_check() {
    // Class sex=1: two persons. Class sex=2: one person and three rows without one (one person
    // for sure). Class sex=3: rows without a person only (at least one person).
    let data =
        "nir,sex\n185057800608491,1\n255081416802538,1\n160012A12345630,2\n,2\n,2\n,2\n,3\n,3\n";
    let w = Work::new(data);
    let people = |level: Option<u32>, limit: &str| {
        let mut sex = column("sex", "integer", "generalise").raw("levels", "[\"width 10\"]");
        if let Some(level) = level {
            sex = sex.raw("level", &level.to_string());
        }
        dataset("people", &["data.csv"])
            .person("nir")
            .column(nir("nir", "d").set("on_missing", "null"))
            .column(sex)
            .privacy(&format!("k = 2\nsuppression_limit = {limit}"))
    };
    let assess = |permit: &Path| {
        let o = ehds_prep(&["assess", "--permit", permit.to_str().unwrap()]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let run = |permit: &Path| {
        let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
        (o.status.code(), stderr(&o))
    };
    // Pinned at the values without suppression: classes 2 and 3 are below k for both.
    for level in [Some(0), None] {
        let permit = w.permit(&head().dataset(people(level, "0")).text());
        let (assessed, text) = assess(&permit);
        let (ran, err) = run(&permit);
        let expected = if level.is_none() { 0 } else { 8 };
        assert_eq!(assessed, Some(expected), "assess, {level:?}: {text}");
        assert_eq!(ran, Some(expected), "run, {level:?}: {err}");
    }
    // Pinned at the values, suppression allowed (delivered while read): the six rows of classes
    // 2 and 3 are suppressed, and the re-check agrees.
    let permit = w.permit(&head().dataset(people(Some(0), "0.75")).text());
    let (assessed, text) = assess(&permit);
    assert_eq!(assessed, Some(0), "{text}");
    let (ran, err) = run(&permit);
    assert_eq!(ran, Some(0), "{err}");
    let a = &w.report()["datasets"][0]["anonymisation"];
    assert_eq!(a["rows_suppressed"], 6, "{a}");
    assert_eq!(a["risk_after"]["smallest_class"], 2, "{a}");
}

#[test]
fn another_holder_never_replaces_a_delivery_of_the_same_permit() {
    let w = Work::new(DATA);
    let permit = w.permit(&head().dataset(people()).text());
    run_ok(&permit);
    let before = std::fs::read(w.path("out/people.parquet")).unwrap();
    let other = w.permit(&head().holder("holder-b").dataset(people()).text());
    let o = ehds_prep(&["run", "--permit", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("another holder"), "{}", stderr(&o));
    assert_eq!(std::fs::read(w.path("out/people.parquet")).unwrap(), before);
    let o = ehds_prep(&["inspect", w.path("out").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn inspect_refuses_any_file_the_manifest_does_not_account_for() {
    let w = Work::new(DATA);
    run_ok(&w.permit(&head().dataset(people()).text()));
    let out = w.path("out");
    let inspect = || ehds_prep(&["inspect", out.to_str().unwrap()]);
    assert!(inspect().status.success());
    for extra in ["leaked.csv", "EXTRA.PARQUET", ".hidden", "sub/x.parquet"] {
        let path = out.join(extra);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "185057800608491\n").unwrap();
        let o = inspect();
        assert_eq!(o.status.code(), Some(6), "{extra}: {}", stderr(&o));
        assert!(stderr(&o).contains("not in its manifest"), "{}", stderr(&o));
        let first = Path::new(extra).components().next().unwrap();
        let top = out.join(first);
        if top.is_dir() {
            std::fs::remove_dir_all(top).unwrap();
        } else {
            std::fs::remove_file(top).unwrap();
        }
    }
    assert!(inspect().status.success());
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    for file in [
        "../people.parquet",
        "/etc/passwd",
        "sub/people.parquet",
        "report.json",
    ] {
        let altered = manifest.replace(
            "\"file\": \"people.parquet\"",
            &format!("\"file\": \"{file}\""),
        );
        assert_ne!(altered, manifest);
        std::fs::write(out.join("manifest.json"), altered).unwrap();
        let o = inspect();
        assert_eq!(o.status.code(), Some(6), "{file}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("names a file outside"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn the_manifest_records_every_input_as_it_was_read() {
    let w = Work::new(DATA);
    std::fs::write(w.path("opt_out.txt"), "255081416802538\n").unwrap();
    run_ok(&w.permit(&head().section(OPT_OUT).dataset(people()).text()));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("out/manifest.json")).unwrap())
            .unwrap();
    let inputs = manifest["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    for (role, file) in [
        ("opt-out list", "opt_out.txt"),
        ("source of people", "data.csv"),
    ] {
        let record = inputs.iter().find(|i| i["role"] == role).expect(role);
        let bytes = std::fs::read(w.path(file)).unwrap();
        assert_eq!(record["bytes"], bytes.len() as u64);
        let sha = sha2::Sha256::digest(&bytes);
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(record["sha256"], hex.as_str());
        assert!(record["path"].as_str().unwrap().ends_with(file));
        assert!(record["modified"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    use std::os::fd::FromRawFd;
    use std::os::unix::process::ExitStatusExt;
    // A pipe whose reading end is closed before the command starts, as after `| head -1`.
    let mut ends = [0; 2];
    // SAFETY: `ends` has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just made by pipe() and are owned here only.
    let (reading, writing) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(ends[0]),
            std::os::fd::OwnedFd::from_raw_fd(ends[1]),
        )
    };
    drop(reading);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .arg("permit-schema")
        .stdout(writing)
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}", o.status);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A key that cannot be written whole (the file size limit stands in for a full disk) leaves no
/// empty key file that would block the next keygen.
#[test]
fn keygen_on_a_full_disk_leaves_nothing_behind() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("new.hex");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ehds-prep"));
    command.args(["keygen", "--out", key.to_str().unwrap()]);
    // SAFETY: setrlimit and signal are async-signal-safe; the child only then execs.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 10,
                rlim_max: 10,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            // Past the limit, writes fail with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = command.output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let o = ehds_prep(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 64);
}

/// A report or description is never written over one of the command's inputs.
#[test]
fn reports_are_never_written_over_an_input() {
    let w = Work::new(DATA);
    let catalogue = r#"
[datasets.catalogue]
identifier = "https://catalogue.example/people"
title = "People"
description = "People"
keywords = ["people"]
contact_email = "dpo@example.org"
access_url = "https://example.org/apply"
dataset_type = "STATISTICAL"
health_categories = ["EHRS"]
provenance = "Patient administration system"
"#;
    let permit = w.permit(&head().dataset(people().tail(catalogue)).text());
    let data = w.path("data.csv");
    let o = ehds_prep(&[
        "describe",
        "--permit",
        permit.to_str().unwrap(),
        "--dataset",
        "people",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let o = ehds_prep(&[
        "assess",
        "--input",
        data.to_str().unwrap(),
        "--quasi-identifiers",
        "sex",
        "--html",
        w.path("./data.csv").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("an input of this command"),
        "{}",
        stderr(&o)
    );
    let o = ehds_prep(&[
        "assess",
        "--permit",
        permit.to_str().unwrap(),
        "--html",
        permit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&data).unwrap(), DATA);
    assert!(
        std::fs::read_to_string(&permit)
            .unwrap()
            .contains("[permit]")
    );
}

/// Too few file descriptors, at whatever step they run out: a clear error naming the cause (exit
/// 4 or 7), never a panic, and no staging folder left (for an anonymised dataset it holds the
/// pseudonymised spill).
#[test]
fn running_out_of_file_descriptors_ends_cleanly() {
    use std::os::unix::process::CommandExt;
    let generalised = dataset("people", &["data.csv"])
        .person("nir")
        .column(nir("nir", "d"))
        .column(column("sex", "integer", "generalise").raw("levels", "[\"width 10\"]"))
        .privacy("k = 1");
    for dataset in [people(), generalised] {
        let w = Work::new(DATA);
        let permit = w.permit(&head().dataset(dataset).text());
        let mut succeeded = false;
        // From four: with three, the loader cannot even open the C runtime.
        for limit in 4..24u64 {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ehds-prep"));
            command.args(["run", "--permit", permit.to_str().unwrap()]);
            // SAFETY: setrlimit is async-signal-safe; the child only then execs.
            unsafe {
                command.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    libc::setrlimit(libc::RLIMIT_NOFILE, &l);
                    Ok(())
                });
            }
            let o = command.output().unwrap();
            let err = stderr(&o);
            assert!(
                matches!(o.status.code(), Some(0 | 4 | 7)),
                "{limit} descriptors: {:?} {err}",
                o.status
            );
            if o.status.success() {
                succeeded = true;
            } else {
                assert!(err.contains("Too many open files"), "{limit}: {err}");
            }
            assert!(!w.path(".out.staging").exists(), "{limit}: staging left");
        }
        assert!(succeeded, "no limit let the run through");
    }
}

/// A delivery that is empty, or whose identifier rule rejects the whole cohort, is a mistake until
/// the permit says otherwise: the run fails (exit 4) with the counts, and delivers nothing.
#[test]
fn no_dataset_is_delivered_empty_or_wholly_rejected_in_silence() {
    let fails = |w: &Work, permit: &Path, expected: &str| {
        let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
        assert!(stderr(&o).contains("dataset `people`"), "{}", stderr(&o));
        assert!(!w.path("out").exists());
    };
    // Pseudo-identifiers declared as NIRs: every one rejected.
    let w = Work::new("nir,sex\nAB12CD34EF56GH789,1\nZZ98YY76XX54WW321,2\n");
    let permit = w.permit(&head().dataset(people()).text());
    fails(
        &w,
        &permit,
        "100.0 % of the cohort's rows have an invalid or missing identifier",
    );
    // A cohort that keeps no row.
    let w = Work::new(DATA);
    let cohort = "[[datasets.cohort]]\ncolumn = \"sex\"\nvalues = [\"9\"]";
    let permit = w.permit(&head().dataset(people().tail(cohort)).text());
    fails(&w, &permit, "delivers no row (read 3, outside the cohort 3");
    // Expected empty: delivered, with no row.
    let expected = people()
        .tail(cohort)
        .option("allow_empty = \"the cohort is empty at this holder\"");
    run_ok(&w.permit(&head().dataset(expected).text()));
    assert_eq!(w.report()["datasets"][0]["rows_delivered"], 0);
    // A share of rejected identifiers above the permit's bound: one of three.
    let w = Work::new(&format!("{DATA}not-a-nir,1\n"));
    let strict = people().option("max_rejected_share = 0.2");
    fails(
        &w,
        &w.permit(&head().dataset(strict).text()),
        "25.0 % of the cohort's rows",
    );
    let tolerant = people().option("max_rejected_share = 0.3");
    run_ok(&w.permit(&head().dataset(tolerant).text()));
}

/// A sentinel meaning "no date" (`1600-01-01`, as SNDS writes it), shifted, would publish every
/// person's secret shift. A shifted date outside 1850–2199, or one date holding half a column, stops
/// the run (exit 4, no value shown); declared among the column's `null_values`, the sentinel is a
/// missing date and is never shifted.
#[test]
fn a_sentinel_date_is_never_shifted() {
    use polars::prelude::SerReader;
    let mut data = String::from("nir,admission\n");
    let nirs = ["185057800608491", "255081416802538", "160012A12345630"];
    for i in 0..30 {
        let date = if i % 3 == 0 {
            "2021-03-04".to_string()
        } else {
            "1600-01-01".to_string()
        };
        data += &format!("{},{date}\n", nirs[i % 3]);
    }
    let w = Work::new(&data);
    let shift = "[date_shift]\ndomain = \"shift\"\nmin_days = -30\nmax_days = 30";
    let with = |admission: ColumnText| {
        head()
            .domain("d", "k", "")
            .domain("shift", "k", "")
            .section(shift)
            .dataset(
                dataset("people", &["data.csv"])
                    .person("nir")
                    .column(nir("nir", "d"))
                    .column(admission),
            )
            .text()
    };
    let shifted = || column("admission", "date", "shift");
    let o = ehds_prep(&[
        "run",
        "--permit",
        w.permit(&with(shifted())).to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("column `admission`") && stderr(&o).contains("1850–2199"));
    assert!(!stderr(&o).contains("1600"), "{}", stderr(&o));
    assert!(!w.path("out").exists());
    // A plausible date standing for "unknown" in half the rows: taken for a sentinel too.
    let w = Work::new(&data.replace("1600-01-01", "2000-01-01"));
    let o = ehds_prep(&[
        "run",
        "--permit",
        w.permit(&with(shifted())).to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("one date holds 20 of the 30 dates"),
        "{}",
        stderr(&o)
    );
    // Declared: missing, not shifted, and the run goes through.
    let w = Work::new(&data);
    let declared = shifted().raw("null_values", "[\"1600-01-01\"]");
    run_ok(&w.permit(&with(declared)));
    let df = polars::prelude::ParquetReader::new(
        std::fs::File::open(w.path("out/people.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    let admission = df.column("admission").unwrap();
    assert_eq!(admission.null_count(), 20);
    // The ten real dates moved by at most 30 days, never to 1600 ± 30 days.
    let days = admission.cast(&polars::prelude::DataType::Int32).unwrap();
    for d in days.i32().unwrap().iter().flatten() {
        assert!((18_660..=18_720).contains(&d), "{d}");
    }
}

/// Identifiers that differ by case alone (SNDS pseudo-NIRs) are three persons when the permit says
/// the column is case-sensitive, one by default; an opt-out list must then agree with the person
/// column, or a listed person spelt in another case would be delivered.
#[test]
fn case_sensitive_identifiers_stay_apart() {
    let w = Work::new("id,sex\naB3x9,1\nAB3X9,2\nab3x9,1\n");
    let people = |case_sensitive: bool| {
        let mut id = column("id", "string", "pseudonymise")
            .set("identifier", "any")
            .set("domain", "d");
        if case_sensitive {
            id = id.raw("case_sensitive", "true");
        }
        dataset("people", &["data.csv"])
            .person("id")
            .column(id)
            .column(kept("sex", "integer"))
    };
    let distinct = |w: &Work| {
        let df = polars::prelude::ParquetReader::new(
            std::fs::File::open(w.path("out/people.parquet")).unwrap(),
        );
        use polars::prelude::SerReader;
        let df = df.finish().unwrap();
        df.column("id").unwrap().n_unique().unwrap()
    };
    run_ok(&w.permit(&head().dataset(people(true)).text()));
    assert_eq!(distinct(&w), 3);
    let manifest = std::fs::read_to_string(w.path("out/manifest.json")).unwrap();
    assert!(manifest.contains("letters' case kept"), "{manifest}");
    std::fs::remove_dir_all(w.path("out")).unwrap();
    run_ok(&w.permit(&head().dataset(people(false)).text()));
    assert_eq!(distinct(&w), 1);
    // The opt-out list follows the person column's rule, or the permit is refused.
    std::fs::remove_dir_all(w.path("out")).unwrap();
    std::fs::write(w.path("opt_out.txt"), "AB3X9\n").unwrap();
    let opt_out = "[opt_out]\nfile = \"opt_out.txt\"\nidentifier = \"any\"";
    let o = ehds_prep(&[
        "run",
        "--permit",
        w.permit(&head().section(opt_out).dataset(people(true)).text())
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("case_sensitive"), "{}", stderr(&o));
    let agreed = format!("{opt_out}\ncase_sensitive = true");
    run_ok(&w.permit(&head().section(&agreed).dataset(people(true)).text()));
    assert_eq!(w.report()["datasets"][0]["rows_opted_out"], 1);
    assert_eq!(distinct(&w), 2);
}
