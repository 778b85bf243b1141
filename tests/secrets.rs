//! Secrets: neither key (the holders' and the access body's; raw, hex or base64) nor any input
//! identifier appears in any output file (HTML reports included), log line or message of full runs,
//! dry runs, validations, inspections, failing runs, the linkage of the deliveries, catalogue
//! descriptions and HTML assessments.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::permit_text::{self, dataset, nir};
use common::*;
use polars::prelude::*;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path))
        } else {
            out.push(path)
        }
    }
    out
}

/// The text forms a leak of a demo key (`sample-data/<file>`) could take.
fn key_forms(file: &str) -> (Vec<u8>, Vec<String>) {
    let text = std::fs::read_to_string(repo().join("sample-data").join(file)).unwrap();
    let raw = ehds_prep::kernels::hex::decode(text.trim()).unwrap();
    let mut url = vec![0u8; ehds_prep::kernels::hex::base64url_len(raw.len())];
    ehds_prep::kernels::hex::base64url_into(&raw, &mut url);
    let url = String::from_utf8(url).unwrap();
    let standard = url.replace('-', "+").replace('_', "/");
    let hex = text.trim().to_lowercase();
    (raw, vec![hex.clone(), hex.to_uppercase(), url, standard])
}

#[test]
fn no_key_or_identifier_in_any_output_log_or_message() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let mut messages: Vec<Output> = Vec::new();
    for holder in ["hospital", "insurer", "registry", "cohort"] {
        let permit = sample_permit(holder, tmp.path());
        let text = std::fs::read_to_string(&permit).unwrap().replacen(
            "[output]\n",
            &format!("[output]\naudit_log = \"{}\"\n", audit.display()),
            1,
        );
        std::fs::write(&permit, &text).unwrap();
        let p = permit.to_str().unwrap();
        messages.push(run_ok(&permit));
        messages.push(ehds_prep(&[
            "--log-format",
            "json",
            "--verbose",
            "run",
            "--permit",
            p,
        ]));
        messages.push(ehds_prep(&["--verbose", "run", "--permit", p]));
        messages.push(ehds_prep(&["run", "--permit", p, "--dry-run"]));
        messages.push(ehds_prep(&["validate", "--permit", p]));
        messages.push(ehds_prep(&[
            "inspect",
            tmp.path().join("out").join(holder).to_str().unwrap(),
        ]));
        // Failing runs: an identifier that must fail, and a date format that does not match.
        let failing = tmp.path().join(format!("{holder}-failing.toml"));
        std::fs::write(
            &failing,
            text.replace("on_invalid = \"reject-row\"", "on_invalid = \"fail\"")
                .replace("on_invalid = \"null\"", "on_invalid = \"fail\"")
                .replace("date_format = \"%d/%m/%Y\"", "date_format = \"%Y/%m/%d\"")
                .replace(
                    &format!("/out/{holder}\""),
                    &format!("/out/{holder}-failing\""),
                ),
        )
        .unwrap();
        let o = ehds_prep(&["run", "--permit", failing.to_str().unwrap()]);
        assert!(!o.status.success(), "{holder}: the failing run succeeded");
        messages.push(o);
    }
    // The access body links the three deliveries under its own key.
    let linking = sample_permit("linkage", tmp.path());
    messages.push(ehds_prep(&[
        "--log-format",
        "json",
        "--verbose",
        "link",
        "--permit",
        linking.to_str().unwrap(),
    ]));
    assert!(messages.last().unwrap().status.success());
    // Catalogue descriptions and the HTML assessment of an anonymised permit.
    let hospital = tmp.path().join("hospital.toml");
    for dataset in ["patients", "stays"] {
        messages.push(ehds_prep(&[
            "describe",
            "--permit",
            hospital.to_str().unwrap(),
            "--dataset",
            dataset,
        ]));
        assert!(messages.last().unwrap().status.success());
    }
    let research = sample_permit("research", tmp.path());
    messages.push(ehds_prep(&[
        "assess",
        "--permit",
        research.to_str().unwrap(),
        "--html",
        tmp.path().join("out/assessment.html").to_str().unwrap(),
    ]));
    assert!(messages.last().unwrap().status.success());
    let keys = [
        key_forms("DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"),
        key_forms("DEMO-ACCESS-BODY-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"),
    ];
    let key_texts: Vec<&String> = keys.iter().flat_map(|(_, texts)| texts).collect();
    let identifiers = input_identifiers();
    let leaks = |what: &str, text: &str| {
        for k in &key_texts {
            assert!(!text.contains(k.as_str()), "{what} holds a key");
        }
        for id in &identifiers {
            assert!(
                !text.contains(id.as_str()),
                "{what} holds an input identifier"
            );
        }
    };
    for (i, o) in messages.iter().enumerate() {
        leaks(
            &format!("stdout of command {i}"),
            &String::from_utf8_lossy(&o.stdout),
        );
        leaks(
            &format!("stderr of command {i}"),
            &String::from_utf8_lossy(&o.stderr),
        );
    }
    leaks("the audit log", &std::fs::read_to_string(&audit).unwrap());
    let files = files_under(&tmp.path().join("out"));
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "parquet"))
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let name = file.display().to_string();
        for (raw_key, _) in &keys {
            assert!(
                !bytes.windows(raw_key.len()).any(|w| w == raw_key),
                "{name} holds a raw key"
            );
        }
        leaks(&name, &String::from_utf8_lossy(&bytes));
        if name.ends_with(".parquet") {
            let df = ParquetReader::new(std::fs::File::open(&file).unwrap())
                .finish()
                .unwrap();
            for col in df.columns() {
                let text = col.cast(&DataType::String).unwrap();
                for v in text.str().unwrap().iter().flatten() {
                    assert!(
                        !identifiers.contains(v),
                        "{name} delivers an input identifier"
                    );
                }
            }
        }
    }
}

/// A running engine can leave no memory image (core dumps off) and no longer holds an
/// environment key in its environment once it has read it: the run is stopped, while it waits on
/// a source that is a FIFO, to look at it from outside.
#[test]
fn a_running_engine_leaves_no_core_dump_and_wipes_an_environment_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key =
        std::fs::read_to_string(repo().join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"))
            .unwrap();
    let fifo = tmp.path().join("data.csv");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let permit = tmp.path().join("permit.toml");
    permit_text::permit("MEM-1")
        .key_env("k", "EHDS_PREP_TEST_ENV_KEY")
        .dataset(dataset("people", &["data.csv"]).column(nir("nir", "d")))
        .write(&permit);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args(["run", "--permit", permit.to_str().unwrap()])
        .env("EHDS_PREP_TEST_ENV_KEY", key.trim())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let proc_file = |name: &str| std::fs::read(format!("/proc/{}/{name}", child.id()));
    // A thread waiting on the FIFO: the keys were read before any source is opened.
    let waiting = || {
        std::fs::read_dir(format!("/proc/{}/task", child.id()))
            .into_iter()
            .flatten()
            .flatten()
            .any(|task| {
                std::fs::read(task.path().join("wchan"))
                    .is_ok_and(|w| w == b"wait_for_partner" || w == b"fifo_open")
            })
    };
    let mut waited = 0;
    while !waiting() {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
        assert!(waited < 1000, "the run never reached its source");
    }
    let limits = String::from_utf8(proc_file("limits").unwrap()).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    let environ = proc_file("environ").unwrap();
    let text = String::from_utf8_lossy(&environ);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !text.contains(key.trim()),
        "the key is still in the environment"
    );
    assert!(
        !text.contains("EHDS_PREP_TEST_ENV_KEY="),
        "the variable is still set"
    );
}
