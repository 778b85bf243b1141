//! Bad input gets a clear error naming the place, a documented non-zero exit code, no delivery folder,
//! and never a raw identifier in the message.

mod common;

use std::path::{Path, PathBuf};

use polars::prelude::SerReader;

use common::*;

const NIR: &str = "185057800608491";

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let c = Case {
            dir: tempfile::tempdir().unwrap(),
        };
        demo_key_to(&c.path("key.hex"));
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file of the case, readable by its owner only (as a key file must be).
    fn file(&self, name: &str, bytes: &[u8]) -> &Case {
        write_private(&self.path(name), bytes);
        self
    }

    /// A permit over `data.csv` with columns nir (pseudonymised), birth_date (year) and sex (kept);
    /// `edit` rewrites its text for the case at hand.
    fn permit(&self, edit: impl Fn(String) -> String) -> PathBuf {
        let text = String::from(
            r#"
[permit]
id = "T-1"
purpose = "test"
holder = "h"
recipient = "r"

[output]
dir = "out"

[keys.k]
file = "key.hex"

[domains.d]
key = "k"

[[datasets]]
name = "people"
person = "nir"

[datasets.source]
format = "csv"
files = ["data.csv"]

[[datasets.columns]]
name = "nir"
type = "string"
identifier = "nir"
action = "pseudonymise"
domain = "d"

[[datasets.columns]]
name = "birth_date"
type = "date"
action = "generalise"
rule = "year"

[[datasets.columns]]
name = "sex"
type = "integer"
action = "keep"
"#,
        );
        let path = self.path("permit.toml");
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    /// Runs the permit; requires failure with `code`, every fragment in the message, no raw NIR, and no
    /// delivery or staging folder.
    fn fails(&self, permit: &Path, code: i32, fragments: &[&str]) {
        let o = ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "exit code; stderr: {err}");
        for f in fragments {
            assert!(err.contains(f), "`{f}` missing from: {err}");
        }
        assert!(!err.contains(NIR), "raw identifier in: {err}");
        let left: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.contains("out") && !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "delivery or staging left behind: {left:?}");
    }
}

const GOOD: &str =
    "nir,birth_date,sex\n185057800608491,1985-05-12,1\n255081416802538,1955-08-01,2\n";

#[test]
fn good_input_runs() {
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes());
    run_ok(&c.permit(|t| t));
    assert!(c.path("out/people.parquet").exists());
}

#[test]
fn missing_source_file() {
    let c = Case::new();
    c.fails(&c.permit(|t| t), 4, &["data.csv", "cannot open source"]);
}

#[test]
fn missing_column() {
    let c = Case::new();
    c.file("data.csv", b"nir,birth,sex\n185057800608491,1985-05-12,1\n");
    c.fails(
        &c.permit(|t| t),
        4,
        &["data.csv", "line 1", "`birth_date` is not in the header"],
    );
}

#[test]
fn unparseable_date_names_record_line_and_column() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n255081416802538,1955-08-01,2\n185057800608491,12/05/1985,1\n",
    );
    c.fails(
        &c.permit(|t| t),
        4,
        &[
            "data.csv",
            "record 2, line 3",
            "column `birth_date`",
            "%Y-%m-%d",
        ],
    );
}

#[test]
fn wrong_delimiter_is_suspected() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir;birth_date;sex\n185057800608491;1985-05-12;1\n",
    );
    c.fails(
        &c.permit(|t| t),
        4,
        &["data.csv", "not in the header", "delimiter"],
    );
}

#[test]
fn invalid_utf8_names_the_line() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n185057800608491,1985-05-12,1\n2550814168025\xe938,1955-08-01,2\n",
    );
    c.fails(
        &c.permit(|t| t),
        4,
        &["data.csv", "line 3", "invalid UTF-8", "encoding"],
    );
}

#[test]
fn empty_file() {
    let c = Case::new();
    c.file("data.csv", b"");
    c.fails(&c.permit(|t| t), 4, &["data.csv", "empty"]);
}

#[test]
fn ragged_row() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n185057800608491,1985-05-12,1\n255081416802538,1955-08-01\n",
    );
    c.fails(
        &c.permit(|t| t),
        4,
        &[
            "data.csv",
            "record 2, line 3",
            "2 fields where the header has 3",
        ],
    );
}

#[test]
fn unclosed_quote() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n185057800608491,1985-05-12,1\n\"255081416802538,1955-08-01,2\n",
    );
    c.fails(&c.permit(|t| t), 4, &["data.csv", "line 3", "not closed"]);
}

#[test]
fn invalid_identifier_under_fail_policy_is_not_printed() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n255081416802538,1955-08-01,2\n185057800608490,1985-05-12,1\n",
    );
    let p = c.permit(|t| {
        t.replace(
            "domain = \"d\"\n",
            "domain = \"d\"\non_invalid = \"fail\"\n",
        )
    });
    c.fails(&p, 4, &["record 2, line 3", "column `nir`", "invalid"]);
    // The altered NIR itself must not be printed either.
    let o = ehds_prep(&["run", "--permit", p.to_str().unwrap()]);
    assert!(!stderr(&o).contains("185057800608490"));
}

#[test]
fn weak_key() {
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes())
        .file("key.hex", "ab".repeat(32).as_bytes());
    c.fails(&c.permit(|t| t), 5, &["key.hex", "variety"]);
    c.file("key.hex", b"0123456789abcdef");
    c.fails(&c.permit(|t| t), 5, &["key.hex", "8 bytes", "keygen"]);
}

#[test]
fn missing_key_file_and_variable() {
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes());
    std::fs::remove_file(c.path("key.hex")).unwrap();
    c.fails(&c.permit(|t| t), 5, &["key.hex", "cannot read key file"]);
    let p = c.permit(|t| {
        t.replace(
            "file = \"key.hex\"",
            "env = \"EHDS_PREP_TEST_UNSET_VARIABLE\"",
        )
    });
    c.fails(&p, 5, &["EHDS_PREP_TEST_UNSET_VARIABLE", "not set"]);
}

#[test]
fn unknown_permit_key_names_its_path() {
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes());
    let p = c.permit(|t| t.replace("rule = \"year\"", "rule = \"year\"\nlevel = 2"));
    c.fails(
        &p,
        3,
        &[
            "permit.toml",
            "datasets[0].columns[1]",
            "unknown field `level`",
            "expected one of",
        ],
    );
}

#[test]
fn unknown_action_lists_the_allowed_ones() {
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes());
    let p = c.permit(|t| t.replace("action = \"keep\"", "action = \"hash\""));
    c.fails(
        &p,
        3,
        &[
            "datasets[0].columns[2].action",
            "keep",
            "pseudonymise",
            "generalise",
            "drop",
        ],
    );
}

#[test]
fn conflicting_or_incomplete_column_rules() {
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes());
    let p = c.permit(|t| t.replace("rule = \"year\"", "rule = \"prefix\"\nprefix = 2"));
    c.fails(&p, 3, &["datasets[0].columns[1].rule", "does not apply"]);
    let p = c.permit(|t| t.replace("domain = \"d\"\n", "domain = \"nope\"\n"));
    c.fails(&p, 3, &["datasets[0].columns[0].domain", "`nope`"]);
}

#[test]
fn existing_folder_that_is_not_a_delivery_is_left_alone() {
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes());
    std::fs::create_dir(c.path("out")).unwrap();
    std::fs::write(c.path("out/precious.txt"), b"keep me").unwrap();
    let o = ehds_prep(&["run", "--permit", c.permit(|t| t).to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("not an ehds-prep delivery"));
    assert_eq!(
        std::fs::read(c.path("out/precious.txt")).unwrap(),
        b"keep me"
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let o = ehds_prep(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Windows line endings and a UTF-8 byte-order mark are read as a user expects: no `\r` in the values,
/// no BOM in the first column name.
#[test]
fn crlf_and_bom_are_handled() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"\xef\xbb\xbfnir,birth_date,sex\r\n185057800608491,1985-05-12,1\r\n255081416802538,1955-08-01,2\r\n",
    );
    run_ok(&c.permit(|t| t.replace("type = \"integer\"", "type = \"string\"")));
    let df = polars::prelude::ParquetReader::new(
        std::fs::File::open(c.path("out/people.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    let sex: Vec<Option<&str>> = df.column("sex").unwrap().str().unwrap().iter().collect();
    assert_eq!(sex, vec![Some("1"), Some("2")]);
}

#[test]
fn key_file_readable_by_others_is_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes());
    std::fs::set_permissions(c.path("key.hex"), std::fs::Permissions::from_mode(0o644)).unwrap();
    c.fails(
        &c.permit(|t| t),
        5,
        &["key.hex", "readable by group or others", "644", "chmod 600"],
    );
    run_ok(&c.permit(|t| {
        t.replace(
            "file = \"key.hex\"",
            "file = \"key.hex\"\nallow_readable_by_others = true",
        )
    }));
}
