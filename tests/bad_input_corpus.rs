//! The bad-input corpus, `tests/bad-input/<case>/`: each case is its input files, a `case.toml`
//! (what is wrong, the expected exit code and message fragments) and its permit (`base.toml` rewritten
//! by the case's `edits`, or the case's own `permit.toml`). Every case must fail with its documented
//! exit code and a message naming the place, leave no delivery and no staging folder, and never print
//! an identifier of its input or the key.

mod common;

use std::path::{Path, PathBuf};

use common::{ehds_prep, repo, stderr, write_private};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    exit: i32,
    contains: Vec<String>,
    /// `[from, to]` rewrites of `base.toml`; each must match.
    #[serde(default)]
    edits: Vec<[String; 2]>,
    /// `demo` (default: the demo key, private), `own` (the case's key.hex, private), `readable`
    /// (the demo key, mode 0644), `none`.
    #[serde(default)]
    key: Option<String>,
    /// Input made at run time (too big or binary to keep in the repository).
    generate: Option<String>,
    /// The subcommand, when not `run`; `{dir}` stands for the case's folder.
    args: Option<Vec<String>>,
    /// Whether the command takes the case's permit (`--permit`); default true.
    #[serde(default = "yes")]
    permit: bool,
}

fn yes() -> bool {
    true
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn write_parquet(path: &Path, mut df: polars::prelude::DataFrame) {
    polars::prelude::ParquetWriter::new(std::fs::File::create(path).unwrap())
        .finish(&mut df)
        .unwrap();
}

fn generate(kind: &str, dir: &Path) {
    use polars::prelude::df;
    match kind {
        "huge-field" => {
            let mut text = String::from("nir,birth_date,sex\n185057800608491,1985-05-12,\"");
            text.push_str(&"9".repeat(100 << 20));
            text.push_str("\"\n");
            std::fs::write(dir.join("data.csv"), text).unwrap();
        }
        "parquet-int-dates" => write_parquet(
            &dir.join("data.parquet"),
            df!("nir" => ["185057800608491"], "birth_date" => [1985i64], "sex" => [1i64]).unwrap(),
        ),
        "parquet-truncated" => {
            let path = dir.join("data.parquet");
            write_parquet(
                &path,
                df!("nir" => ["185057800608491"], "birth_date" => ["1985-05-12"], "sex" => [1i64])
                    .unwrap(),
            );
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }
        "parquet-date-out-of-range" => {
            use polars::prelude::{IntoColumn, IntoSeries, NamedFrom, Series};
            let days = polars::prelude::Int32Chunked::from_vec("birth_date".into(), vec![i32::MAX])
                .into_date()
                .into_series()
                .into_column();
            let df = polars::prelude::DataFrame::new(
                1,
                vec![
                    Series::new("nir".into(), ["185057800608491"]).into_column(),
                    days,
                    Series::new("sex".into(), [1i64]).into_column(),
                ],
            )
            .unwrap();
            write_parquet(&dir.join("data.parquet"), df)
        }
        "parquet-other-columns" => {
            write_parquet(&dir.join("data.parquet"), df!("id" => ["x"]).unwrap())
        }
        "parquet-nan" => write_parquet(
            &dir.join("data.parquet"),
            df!(
                "nir" => ["185057800608491", "255081416802538"],
                "birth_date" => ["1985-05-12", "1955-08-01"],
                "sex" => [1.0f64, f64::NAN]
            )
            .unwrap(),
        ),
        // A struct column: this build of polars cannot even represent one, so pyarrow writes it.
        "parquet-struct" => {
            let script = "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
                pq.write_table(pa.table({'nir': ['185057800608491'], 'birth_date': ['1985-05-12'], \
                'sex': pa.array([{'code': 1}])}), sys.argv[1])";
            let status = std::process::Command::new("python3")
                .args(["-c", script, dir.join("data.parquet").to_str().unwrap()])
                .status()
                .expect("python3 runs (scripts/test.sh installs pyarrow)");
            assert!(status.success(), "pyarrow wrote the struct column");
        }
        "key-fifo" => {
            let path = std::ffi::CString::new(dir.join("key.hex").to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        }
        other => panic!("unknown generator `{other}`"),
    }
}

/// Tokens of at least 10 letters and digits in the case's input files: identifiers (and anything
/// like them) that a message must not repeat.
fn identifiers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() || name.ends_with(".toml") || name.ends_with(".parquet") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if bytes.len() > 1 << 20 {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        out.extend(
            text.split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|t| t.len() >= 10)
                .map(String::from),
        );
    }
    out
}

fn run_case(dir: &Path) -> Result<(), String> {
    let case: Case = toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap())
        .map_err(|e| format!("case.toml: {e}"))?;
    check(&case, dir).map_err(|e| format!("{} — {e}", case.description))
}

fn check(case: &Case, dir: &Path) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    copy_dir(dir, work);
    std::fs::remove_file(work.join("case.toml")).unwrap();
    if !work.join("permit.toml").exists() {
        let mut text = std::fs::read_to_string(repo().join("tests/bad-input/base.toml")).unwrap();
        for [from, to] in &case.edits {
            if !text.contains(from.as_str()) {
                return Err(format!("edit `{from}` matches nothing in base.toml"));
            }
            text = text.replacen(from.as_str(), to, 1);
        }
        std::fs::write(work.join("permit.toml"), text).unwrap();
    }
    let demo =
        std::fs::read(repo().join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex")).unwrap();
    match case.key.as_deref().unwrap_or("demo") {
        "demo" => write_private(&work.join("key.hex"), &demo),
        "own" => write_private(
            &work.join("key.hex"),
            &std::fs::read(dir.join("key.hex")).unwrap(),
        ),
        "readable" => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(work.join("key.hex"), &demo).unwrap();
            std::fs::set_permissions(work.join("key.hex"), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        "none" => {}
        other => return Err(format!("unknown key kind `{other}`")),
    }
    if let Some(kind) = &case.generate {
        generate(kind, work);
    }
    let existing_output = work.join("out").exists();
    let command = case.args.clone().unwrap_or_else(|| vec!["run".into()]);
    let permit = work.join("permit.toml");
    // Every run keeps an audit log beside the case, which must not leak either.
    let text = std::fs::read_to_string(&permit).unwrap_or_default();
    if !text.contains("audit_log") {
        let audited = text.replacen("[output]\n", "[output]\naudit_log = \"audit.jsonl\"\n", 1);
        std::fs::write(&permit, audited).unwrap();
    }
    let command: Vec<String> = command
        .iter()
        .map(|a| a.replace("{dir}", work.to_str().unwrap()))
        .collect();
    let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
    if case.permit {
        args.extend(["--permit", permit.to_str().unwrap()]);
    }
    let o = ehds_prep(&args);
    let err = stderr(&o);
    if o.status.code() != Some(case.exit) {
        return Err(format!(
            "exit {:?}, expected {}: {err}",
            o.status.code(),
            case.exit
        ));
    }
    for fragment in &case.contains {
        if !err.contains(fragment.as_str()) {
            return Err(format!("`{fragment}` missing from: {err}"));
        }
    }
    // The same run with JSON logs of every event, as a scheduler would run it.
    let mut json_args = vec!["--log-format", "json", "--verbose"];
    json_args.extend(&args);
    let json = ehds_prep(&json_args);
    if json.status.code() != Some(case.exit) {
        return Err(format!("with JSON logs: exit {:?}", json.status.code()));
    }
    let audit = std::fs::read_to_string(work.join("audit.jsonl")).unwrap_or_default();
    let secrets = identifiers(dir);
    let key_text = String::from_utf8_lossy(&demo).trim().to_string();
    for (place, text) in [
        ("message", &err),
        ("JSON log", &stderr(&json)),
        ("audit log", &audit),
    ] {
        if let Some(leak) = secrets
            .iter()
            .chain([&key_text])
            .find(|s| text.contains(s.as_str()))
        {
            return Err(format!("the {place} repeats `{leak}`: {text}"));
        }
    }
    if work.join(".out.staging").exists() {
        return Err("a staging folder was left behind".into());
    }
    if existing_output {
        let kept = std::fs::read_dir(work.join("out")).unwrap().count();
        if kept != 1 || work.join("out/manifest.json").exists() {
            return Err("the existing output folder was changed".into());
        }
    } else if work.join("out").exists() {
        return Err("a delivery was written".into());
    }
    Ok(())
}

#[test]
fn every_bad_input_of_the_corpus_fails_clearly_and_delivers_nothing() {
    let root = repo().join("tests/bad-input");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "the corpus holds {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|dir| {
            run_case(dir)
                .err()
                .map(|e| format!("{}: {e}", dir.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
