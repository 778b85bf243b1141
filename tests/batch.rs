//! Batch behaviour: `run --dry-run`, the per-run audit log, logs and progress bars.

mod common;

use common::*;

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("hospital", tmp.path());
    let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap(), "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = String::from_utf8(o.stdout).unwrap();
    for expected in [
        "permit FR-2029-0042",
        "dataset patients",
        "dataset stays",
        "cohort: `admission_date` from 2019-01-01 to 2024-12-31",
        "column person_pseudonym: pseudonymised from `nir` in domain `linkage`",
        "column composite_pseudonym: pseudonymised from `nir`+`birth_date`+`sex`",
        "dropped: last_name, first_name, every column the permit does not declare",
        "opt-out list",
        "fingerprint ",
    ] {
        assert!(
            plan.contains(expected),
            "`{expected}` missing from:\n{plan}"
        );
    }
    let key =
        std::fs::read_to_string(repo().join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"))
            .unwrap();
    assert!(!plan.contains(key.trim()));
    assert!(
        !tmp.path().join("out").exists(),
        "a dry run wrote something"
    );
}

#[test]
fn every_run_appends_one_audit_record_of_counts_and_durations() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("registry", tmp.path());
    let text = std::fs::read_to_string(&permit).unwrap().replacen(
        "[output]\n",
        &format!(
            "[output]\naudit_log = \"{}/audit.jsonl\"\n",
            tmp.path().display()
        ),
        1,
    );
    std::fs::write(&permit, &text).unwrap();
    run_ok(&permit);
    run_ok(&permit);
    // A failing run is recorded too: its source vanished.
    let broken = tmp.path().join("broken.toml");
    std::fs::write(
        &broken,
        text.replace("cancer_cases.csv", "missing.csv")
            .replace("/out/registry\"", "/out/other\""),
    )
    .unwrap();
    let o = ehds_prep(&["run", "--permit", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4));

    let log = std::fs::read_to_string(tmp.path().join("audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("out/registry/report.json")).unwrap(),
    )
    .unwrap();
    for r in &records[..2] {
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["exit_code"], 0);
        assert_eq!(r["permit_id"], "FR-2029-0042");
        assert_eq!(
            r["datasets"][0]["rows_read"],
            report["datasets"][0]["rows_read"]
        );
        assert_eq!(
            r["datasets"][0]["rows_delivered"],
            report["datasets"][0]["rows_delivered"]
        );
        assert_eq!(r["key_fingerprints"][0][0], "linkage");
        assert_eq!(r["key_fingerprints"][0][1].as_str().unwrap().len(), 32);
        assert!(r["ended_unix"].as_u64() >= r["started_unix"].as_u64());
        assert!(r["timings_ms"]["total"].is_u64() && r["cpu_user_ms"].is_u64());
    }
    assert_eq!(records[2]["exit_code"], 4);
    assert!(
        records[2]["outcome"]
            .as_str()
            .unwrap()
            .contains("missing.csv")
    );
    // Never a key or an identifier in the log.
    let key =
        std::fs::read_to_string(repo().join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"))
            .unwrap();
    assert!(!log.contains(key.trim()));
    let extract =
        std::fs::read_to_string(repo().join("sample-data/registry/cancer_cases.csv")).unwrap();
    for line in extract.lines().skip(1) {
        let nir = line.split(',').nth(1).unwrap();
        assert!(
            nir.len() < 5 || !log.contains(nir),
            "identifier in the audit log"
        );
    }
}

#[test]
fn json_logs_quiet_and_verbose() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = sample_permit("registry", tmp.path());
    let p = permit.to_str().unwrap();
    let o = ehds_prep(&["--log-format", "json", "--verbose", "run", "--permit", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    let written = lines
        .iter()
        .find(|l| l["message"] == "dataset written")
        .expect("a dataset line");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("out/registry/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        written["rows_delivered"],
        report["datasets"][0]["rows_delivered"]
    );
    assert_eq!(written["level"], "INFO");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "batch" && l["level"] == "DEBUG"),
        "--verbose logs batches"
    );

    let o = ehds_prep(&["--quiet", "run", "--permit", p]);
    assert!(o.status.success());
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "--quiet printed something"
    );

    let o = ehds_prep(&["--log-format", "json", "run", "--permit", "missing.toml"]);
    assert_eq!(o.status.code(), Some(3));
    let line: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["exit_code"], 3);
    assert!(line["message"].as_str().unwrap().contains("missing.toml"));
}

/// Progress bars (rows, rows/s, ETA) appear when stderr is a terminal (a pseudo-terminal made by
/// `script`), and never in a pipe, with `--quiet` or with JSON logs.
#[test]
fn progress_bars_only_for_a_person_at_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = common::generated_stays_permit(tmp.path(), 30000, 4096);
    let at_terminal = |flags: &str| run_at_a_terminal(tmp.path(), flags, &permit);
    let shown = at_terminal("");
    assert!(
        shown.contains("stays [") && shown.contains("rows/s") && shown.contains("ETA"),
        "no progress bar at a terminal: {shown}"
    );
    for flags in ["--quiet", "--log-format json"] {
        let shown = at_terminal(flags);
        assert!(!shown.contains("rows/s"), "{flags}: {shown}");
    }
    let piped = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    assert!(piped.status.success());
    assert!(!stderr(&piped).contains("rows/s"), "{}", stderr(&piped));
}

/// At a terminal the privacy search shows what it has done (transformations evaluated, best score
/// so far), and pass 2 of an anonymised dataset has its own bar over the spilled rows — not the
/// source's bar stuck at 0% (#21 item 10).
#[test]
fn the_privacy_search_and_pass_2_show_their_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let permit = common::sample_permit("research", tmp.path());
    let shown = run_at_a_terminal(tmp.path(), "", &permit);
    assert!(
        shown.contains("patients (privacy search)") && shown.contains("transformations evaluated"),
        "{shown}"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("out/research/report.json")).unwrap(),
    )
    .unwrap();
    let patients = &report["datasets"][0];
    assert_eq!(patients["name"], "patients");
    // The spill holds the cohort's transformed rows: what was read, less what left before pass 2.
    let spilled = [
        "rows_read",
        "rows_outside_cohort",
        "rows_opted_out",
        "rows_rejected",
    ]
    .iter()
    .map(|k| patients[*k].as_u64().unwrap_or(0))
    .fold(None, |acc: Option<u64>, n| Some(acc.map_or(n, |a| a - n)))
    .unwrap();
    assert!(
        shown.contains("patients (write)") && shown.contains(&format!("of {spilled} rows")),
        "no pass-2 bar over {spilled} rows: {shown}"
    );
}

/// What `ehds-prep FLAGS run --permit PERMIT` shows on a pseudo-terminal (made by `script`).
fn run_at_a_terminal(dir: &std::path::Path, flags: &str, permit: &std::path::Path) -> String {
    let log = dir.join("terminal.log");
    let command = format!(
        "{} {flags} run --permit {}",
        env!("CARGO_BIN_EXE_ehds-prep"),
        permit.display()
    );
    let o = std::process::Command::new("script")
        .args(["-qfec", &command, log.to_str().unwrap()])
        .output()
        .expect("script (util-linux) runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned()
}
