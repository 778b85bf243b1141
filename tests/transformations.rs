//! Every column type, filter kind and transformation the permit model offers, run through polars on a
//! small golden extract whose expected output is written out by hand.

mod common;

use common::*;
use ehds_prep::kernels::hex;
use ehds_prep::kernels::keys::SecretKey;
use ehds_prep::kernels::pseudonymise::hmac_sha256;
use polars::prelude::*;

const PERMIT: &str = r#"
[permit]
id = "GOLD-1"
purpose = "golden test"
holder = "h"
recipient = "r"

[output]
dir = "out"
batch_rows = 2

[keys.k]
env = "EHDS_PREP_GOLDEN_KEY"

[domains.research]
key = "k"
context = "GOLD-1/research"

[pseudonyms]
encoding = "base64url"
bits = 256

[[datasets]]
name = "t"

[datasets.source]
format = "csv"
files = ["data.csv"]
delimiter = "|"
encoding = "windows-1252"
null_values = ["", "NA"]

[[datasets.cohort]]
column = "visits"
values = ["1", "2", "3"]

[[datasets.cohort]]
column = "weight"
from = "40"
to = "120.5"

[[datasets.columns]]
name = "id"
type = "string"
identifier = "pattern"
pattern = "^P[0-9]{3}$"
action = "pseudonymise"
domain = "research"
on_invalid = "null"
on_missing = "reject-row"

[[datasets.columns]]
name = "visits"
type = "integer"
action = "keep"

[[datasets.columns]]
name = "weight"
type = "float"
action = "keep"

[[datasets.columns]]
name = "smoker"
type = "boolean"
action = "keep"

[[datasets.columns]]
name = "seen"
type = "date"
format = "%d.%m.%Y"
action = "keep"

[[datasets.columns]]
name = "seen_month"
type = "date"
format = "%d.%m.%Y"
action = "generalise"
rule = "month"

[[datasets.columns]]
name = "town"
type = "string"
action = "generalise"
rule = "prefix"
prefix = 3

[[datasets.columns]]
name = "note"
type = "string"
action = "drop"
"#;

/// Windows-1252 bytes: 0x80 is the euro sign, 0xE9 é, 0x9C œ.
const DATA: &[u8] = b"id|visits|weight|smoker|seen|seen_month|town|note\n\
p-001|1|70.5|yes|01.02.2021|01.02.2021|\xc9vry|x\n\
P002|2|130|no|02.02.2021|02.02.2021|Paris|y\n\
P003|9|80|no|03.02.2021|03.02.2021|Lyon|z\n\
X004|3|40|false|31.12.1999|31.12.1999|C\x9cur|\x80\n\
NA|1|50|1|04.02.2021|04.02.2021|Nice|w\n\
P006|3|120.5||29.02.2024|29.02.2024||v\n";

#[test]
fn every_type_filter_and_rule_gives_the_golden_output() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("data.csv"), DATA).unwrap();
    std::fs::write(tmp.path().join("permit.toml"), PERMIT).unwrap();
    let key_hex =
        std::fs::read_to_string(repo().join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"))
            .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ehds-prep"))
        .args([
            "run",
            "--permit",
            tmp.path().join("permit.toml").to_str().unwrap(),
        ])
        .env("EHDS_PREP_GOLDEN_KEY", key_hex.trim())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let df = ParquetReader::new(std::fs::File::open(tmp.path().join("out/t.parquet")).unwrap())
        .finish()
        .unwrap();
    let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "visits",
            "weight",
            "smoker",
            "seen",
            "seen_month",
            "town"
        ]
    );
    // Rows kept: 1 (p-001), 4 (X004, invalid → null pseudonym), 6 (P006). Row 2 fails the weight range,
    // row 3 the visits list, row 5 has a missing id (rejected).
    assert_eq!(df.height(), 3);
    let domain = SecretKey::from_text(&key_hex, "t")
        .unwrap()
        .domain_key("GOLD-1/research");
    let b64 = |id: &str| {
        let d = hmac_sha256(domain.expose(), id.as_bytes());
        let mut out = vec![0u8; hex::base64url_len(32)];
        hex::base64url_into(&d, &mut out);
        String::from_utf8(out).unwrap()
    };
    let ids: Vec<Option<String>> = df
        .column("id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(String::from))
        .collect();
    assert_eq!(ids, vec![Some(b64("P001")), None, Some(b64("P006"))]);
    assert_eq!(ids[0].as_ref().unwrap().len(), 43);
    let visits: Vec<Option<i64>> = df.column("visits").unwrap().i64().unwrap().iter().collect();
    assert_eq!(visits, vec![Some(1), Some(3), Some(3)]);
    let weight: Vec<Option<f64>> = df.column("weight").unwrap().f64().unwrap().iter().collect();
    assert_eq!(weight, vec![Some(70.5), Some(40.0), Some(120.5)]);
    let smoker: Vec<Option<bool>> = df
        .column("smoker")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(smoker, vec![Some(true), Some(false), None]);
    let seen = df.column("seen").unwrap().cast(&DataType::String).unwrap();
    let seen: Vec<Option<&str>> = seen.str().unwrap().iter().collect();
    assert_eq!(
        seen,
        vec![Some("2021-02-01"), Some("1999-12-31"), Some("2024-02-29")]
    );
    let month: Vec<Option<&str>> = df
        .column("seen_month")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        month,
        vec![Some("2021-02"), Some("1999-12"), Some("2024-02")]
    );
    let town: Vec<Option<&str>> = df.column("town").unwrap().str().unwrap().iter().collect();
    assert_eq!(town, vec![Some("Évr"), Some("Cœu"), None]);

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("out/report.json")).unwrap())
            .unwrap();
    let d = &report["datasets"][0];
    assert_eq!(d["rows_read"], 6);
    assert_eq!(d["rows_outside_cohort"], 2);
    assert_eq!(d["rows_rejected"], 1);
    assert_eq!(d["rows_delivered"], 3);
    assert_eq!(d["columns"][0]["identifiers_invalid"], 1);
    assert_eq!(d["columns"][0]["identifiers_missing"], 1);
    assert_eq!(d["columns"][0]["values_transformed"], 2);
}

/// A headerless extract without quoting: columns are taken by position in declaration order, and a
/// quote character in the data is an ordinary character.
#[test]
fn headerless_unquoted_extracts_read_by_position() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("data.csv"),
        "P001\t2021-03-04\t\"x\nP002\t2022-12-31\ty\"\n",
    )
    .unwrap();
    let permit = r#"
[permit]
id = "GOLD-2"
purpose = "p"
holder = "h"
recipient = "r"

[output]
dir = "out"

[keys.k]
file = "key.hex"

[domains.d]
key = "k"

[[datasets]]
name = "t"

[datasets.source]
format = "csv"
files = ["data.csv"]
delimiter = "\t"
quote = ""
header = false

[[datasets.columns]]
name = "id"
type = "string"
action = "pseudonymise"
domain = "d"

[[datasets.columns]]
name = "day"
type = "date"
action = "generalise"
rule = "year"

[[datasets.columns]]
name = "note"
type = "string"
action = "keep"
"#;
    std::fs::write(tmp.path().join("permit.toml"), permit).unwrap();
    demo_key_to(&tmp.path().join("key.hex"));
    run_ok(&tmp.path().join("permit.toml"));
    let df = ParquetReader::new(std::fs::File::open(tmp.path().join("out/t.parquet")).unwrap())
        .finish()
        .unwrap();
    let years: Vec<Option<i32>> = df.column("day").unwrap().i32().unwrap().iter().collect();
    assert_eq!(years, vec![Some(2021), Some(2022)]);
    let notes: Vec<Option<&str>> = df.column("note").unwrap().str().unwrap().iter().collect();
    assert_eq!(notes, vec![Some("\"x"), Some("y\"")]);
    // The default domain context is `<permit id>/<domain name>`.
    let key = SecretKey::from_file(&tmp.path().join("key.hex"))
        .unwrap()
        .domain_key("GOLD-2/d");
    let ids: Vec<Option<&str>> = df.column("id").unwrap().str().unwrap().iter().collect();
    assert_eq!(
        ids[0].unwrap(),
        hex::encode(&hmac_sha256(key.expose(), b"P001")[..16])
    );
}
