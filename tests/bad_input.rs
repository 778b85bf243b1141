//! Bad input gets a clear error naming the place, a documented non-zero exit code, no delivery folder,
//! and never a raw identifier in the message.

mod common;

use std::path::{Path, PathBuf};

use polars::prelude::SerReader;

use common::permit_text::*;
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
        let text = permit("T-1")
            .dataset(
                dataset("people", &["data.csv"])
                    .person("nir")
                    .column(nir("nir", "d"))
                    .column(column("birth_date", "date", "generalise").set("rule", "year"))
                    .column(kept("sex", "integer")),
            )
            .text();
        let path = self.path("permit.toml");
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    /// Runs the permit; requires failure with `code`, every fragment in the message, no raw NIR, and no
    /// delivery or staging folder.
    fn fails(&self, permit: &Path, code: i32, fragments: &[&str]) -> String {
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
        err
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
    let p = c.permit(|t| t.replace("rule = \"year\"", "rule = \"year\"\nlevle = 2"));
    c.fails(
        &p,
        3,
        &[
            "permit.toml",
            "datasets[0].columns[1]",
            "unknown field `levle`",
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
    let mut sex: Vec<Option<&str>> = df.column("sex").unwrap().str().unwrap().iter().collect();
    sex.sort();
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

#[test]
fn header_problems() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir,birth_date,sex,sex\n185057800608491,1985-05-12,1,1\n",
    );
    c.fails(
        &c.permit(|t| t),
        4,
        &["data.csv", "fields 3 and 4", "same name", "`sex`"],
    );
    // Exported without its header line: the first record is read as the header, and its cells
    // (a NIR twice, a birth date) are never repeated.
    c.file(
        "data.csv",
        b"185057800608491,185057800608491,1985-05-12\n255081416802538,255081416802538,1955-08-01\n",
    );
    let err = c.fails(
        &c.permit(|t| t),
        4,
        &["data.csv", "fields 1 and 2", "same name", "header = false"],
    );
    assert!(!err.contains("1985-05-12"), "{err}");
    c.file(
        "data.csv",
        b"185057800608491,1985-05-12,1\n255081416802538,1955-08-01,2\n",
    );
    c.fails(
        &c.permit(|t| t),
        4,
        &["data.csv", "declared column `nir` is not in the header"],
    );
    c.file(
        "data.csv",
        b"nir,,birth_date,sex\n185057800608491,x,1985-05-12,1\n",
    );
    c.fails(
        &c.permit(|t| t),
        4,
        &["data.csv", "line 1, field 2", "empty column name"],
    );
    c.file("data.csv", b"nir,birth_date,sex\n");
    c.fails(&c.permit(|t| t), 4, &["data.csv", "no data rows"]);
}

#[test]
fn structural_damage_names_the_line() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n185057800608491,1985-05-12,1\n\n255081416802538,1955-08-01,2\n",
    );
    c.fails(&c.permit(|t| t), 4, &["data.csv", "line 3", "empty line"]);
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n185057800608491,1985-05-12,1\n255081416802538,1955-08-01,2\x00\n",
    );
    c.fails(&c.permit(|t| t), 4, &["data.csv", "line 3", "NUL byte"]);
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n185057800608491,1985-05-12,1,9\n",
    );
    c.fails(
        &c.permit(|t| t),
        4,
        &["record 1, line 2", "4 fields where the header has 3"],
    );
}

/// A quoted field spanning lines does not shift the line numbers of later errors.
#[test]
fn embedded_line_breaks_keep_line_numbers_right() {
    let c = Case::new();
    c.file(
        "data.csv",
        b"nir,birth_date,sex\n\"1850578006\n08491\",1985-05-12,1\n255081416802538,1955-08-01,x\n",
    );
    let p = c.permit(|t| t);
    c.fails(&p, 4, &["record 2, line 4", "column `sex`", "integer"]);
}

#[test]
fn type_errors_in_every_type() {
    for (column_type, good, bad, rule) in [
        ("integer", "1", "12a", "an integer"),
        ("float", "1.5", "1.5.2", "a finite number"),
        ("boolean", "yes", "maybe", "a boolean"),
        ("date", "2020-01-01", "2023-02-30", "a date"),
        (
            "datetime",
            "2020-01-01 10:00:00",
            "2023-01-01 25:00:00",
            "a datetime",
        ),
    ] {
        let c = Case::new();
        let data = format!(
            "nir,birth_date,sex\n185057800608491,1985-05-12,{good}\n255081416802538,1955-08-01,{bad}\n"
        );
        c.file("data.csv", data.as_bytes());
        let p = c.permit(|t| t.replace("type = \"integer\"", &format!("type = \"{column_type}\"")));
        c.fails(
            &p,
            4,
            &[
                "data.csv",
                "record 2, line 3",
                "column `sex`",
                rule,
                "value not shown",
            ],
        );
    }
}

#[test]
fn parquet_with_another_schema_or_truncated() {
    let c = Case::new();
    let mut df = polars::prelude::df!(
        "nir" => ["185057800608491"],
        "birth_date" => [1985i64],
        "sex" => [1i64],
    )
    .unwrap();
    polars::prelude::ParquetWriter::new(std::fs::File::create(c.path("data.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    let parquet = |t: String| {
        t.replace("format = \"csv\"", "format = \"parquet\"")
            .replace("data.csv", "data.parquet")
    };
    c.fails(
        &c.permit(parquet),
        4,
        &["data.parquet", "column `birth_date`", "declared Date"],
    );
    let bytes = std::fs::read(c.path("data.parquet")).unwrap();
    c.file("data.parquet", &bytes[..bytes.len() / 2]);
    c.fails(
        &c.permit(parquet),
        4,
        &["data.parquet", "not a readable Parquet file"],
    );
    let mut other = polars::prelude::df!("id" => ["x"]).unwrap();
    polars::prelude::ParquetWriter::new(std::fs::File::create(c.path("data.parquet")).unwrap())
        .finish(&mut other)
        .unwrap();
    c.fails(
        &c.permit(parquet),
        4,
        &["data.parquet", "column `nir`", "not in the file"],
    );
}

/// A rewrite of the test permit's text.
type PermitEdit<'a> = &'a dyn Fn(String) -> String;

#[test]
fn permit_mistakes_name_their_key_path() {
    let c = Case::new();
    c.file("data.csv", GOOD.as_bytes());
    let cases: [(PermitEdit, &[&str]); 7] = [
        (
            &|t| t.replace("id = \"T-1\"", "id = \"T-1\"\nid = \"T-2\""),
            &["permit.toml", "line 3", "duplicate key"],
        ),
        (
            &|t| t.replace("name = \"sex\"", "name = \"nir\""),
            &["datasets[0].columns[2].name", "declared twice"],
        ),
        (
            &|t| t.replace("[datasets.source]", "[datasets.source]\nquote = \",\""),
            &["datasets[0].source.quote", "differ from the delimiter"],
        ),
        (
            &|t| t.replace("[domains.d]", "[pseudonyms]\nbits = 64\n\n[domains.d]"),
            &["pseudonyms.bits", "128 or 256"],
        ),
        (
            &|t| {
                t + "\n[[datasets.composites]]\nname = \"c\"\ninputs = [\"nir\", \"nope\"]\ndomain = \"d\"\n"
            },
            &["datasets[0].composites[0].inputs", "`nope`"],
        ),
        (
            &|t| {
                t.replace(
                    "[domains.d]",
                    "[opt_out]\nfile = \"missing.txt\"\n\n[domains.d]",
                )
            },
            &["missing.txt", "opt-out"],
        ),
        (
            &|t| {
                t.replace(
                    "action = \"keep\"",
                    "action = \"map\"\ndictionary = \"nope.csv\"",
                )
                .replace("type = \"integer\"", "type = \"string\"")
            },
            &["nope.csv", "dictionary"],
        ),
    ];
    for (edit, fragments) in cases {
        let p = c.permit(edit);
        let o = ehds_prep(&["run", "--permit", p.to_str().unwrap()]);
        assert!(
            matches!(o.status.code(), Some(3) | Some(4)),
            "{}",
            stderr(&o)
        );
        for f in fragments {
            assert!(stderr(&o).contains(f), "`{f}` missing from: {}", stderr(&o));
        }
        assert!(!c.path("out").exists());
    }
}

/// What a permit writer meets on real OMOP files (#21 item 8): a cohort bound written as a TOML
/// number is read as the docs say; a typed value spelt like "missing" (`NULL`) is refused with a
/// hint at `null_values`, never shown; `keygen` over an existing file says it never overwrites a
/// key (a usage error), not "cannot write delivery".
#[test]
fn messages_met_writing_a_permit_for_real_files() {
    let w = tempfile::tempdir().unwrap();
    let path = |f: &str| w.path().join(f);
    demo_key_to(&path("key.hex"));
    std::fs::write(
        path("person.csv"),
        "person_id,year_of_birth\n1,1925\n2,1931\n3,1950\n",
    )
    .unwrap();
    let text = |bound: &str| {
        permit("M-1")
            .dataset(
                dataset("person", &["person.csv"])
                    .person("person_id")
                    .column(
                        column("person_id", "string", "pseudonymise")
                            .set("identifier", "any")
                            .set("domain", "d"),
                    )
                    .column(kept("year_of_birth", "integer"))
                    .tail(&format!(
                        "[[datasets.cohort]]\ncolumn = \"year_of_birth\"\nfrom = {bound}\nto = 1940"
                    )),
            )
            .write(&path("permit.toml"))
    };
    run_ok(&text("1930"));
    let df = polars::prelude::ParquetReader::new(
        std::fs::File::open(path("out/person.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    assert_eq!(df.height(), 1, "only 1931 lies in [1930, 1940]");
    // The same bound as text reads alike.
    run_ok(&text("\"1930\""));
    // NULL in an integer column.
    std::fs::write(
        path("person.csv"),
        "person_id,year_of_birth\n1,1935\n2,NULL\n",
    )
    .unwrap();
    let o = ehds_prep(&["run", "--permit", text("1930").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("line 3, column `year_of_birth`"), "{err}");
    assert!(
        err.contains("null_values") && !err.contains("NULL"),
        "{err}"
    );
    // A value that is simply wrong gets no such hint.
    std::fs::write(path("person.csv"), "person_id,year_of_birth\n1,19x5\n").unwrap();
    let o = ehds_prep(&["run", "--permit", text("1930").to_str().unwrap()]);
    assert!(!stderr(&o).contains("null_values"), "{}", stderr(&o));
    // A header that differs in case only names the field to write.
    std::fs::write(path("person.csv"), "person_id,Year_Of_Birth\n1,1935\n").unwrap();
    let o = ehds_prep(&["run", "--permit", text("1930").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("header field 2 is `Year_Of_Birth`, the same name in another case"),
        "{}",
        stderr(&o)
    );
    // `[[datasets.privacy]]` for `[datasets.privacy]`; a privacy table without a model.
    let permit_text = std::fs::read_to_string(text("1930")).unwrap();
    std::fs::write(
        path("p2.toml"),
        format!("{permit_text}\n[[datasets.privacy]]\nk = 5\n"),
    )
    .unwrap();
    let o = ehds_prep(&["validate", "--permit", path("p2.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("write it with single brackets"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        path("p3.toml"),
        format!("{permit_text}\n[datasets.privacy]\nsuppression_limit = 0.1\n"),
    )
    .unwrap();
    let o = ehds_prep(&["validate", "--permit", path("p3.toml").to_str().unwrap()]);
    assert!(
        stderr(&o).contains("datasets[0].privacy: "),
        "{}",
        stderr(&o)
    );
    // ℓ above the number of distinct sensitive values: no level can help, and the error says so.
    let mut rows = String::from("person_id,sex,diagnosis\n");
    for p in 0..20 {
        rows += &format!("{p},{},{}\n", p % 2, ["E11", "I10"][p % 2]);
    }
    std::fs::write(path("stays.csv"), rows).unwrap();
    let diverse = permit("M-2")
        .output("out-diverse")
        .dataset(
            dataset("stays", &["stays.csv"])
                .person("person_id")
                .column(
                    column("person_id", "string", "pseudonymise")
                        .set("identifier", "any")
                        .set("domain", "d"),
                )
                .column(column("sex", "string", "generalise").raw("levels", "[\"*\"]"))
                .column(kept("diagnosis", "string"))
                .privacy("k = 2\nsensitive = \"diagnosis\"\nl = 3"),
        )
        .write(&path("diverse.toml"));
    let o = ehds_prep(&["run", "--permit", diverse.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ℓ is 3 but the sensitive column holds 2 distinct value(s)"),
        "{}",
        stderr(&o)
    );
    // keygen over an existing file.
    let o = ehds_prep(&["keygen", "--out", path("key.hex").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("never overwrites a key"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("delivery"), "{}", stderr(&o));
}
