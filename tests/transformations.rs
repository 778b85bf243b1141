//! Every column type, filter kind and transformation the permit model offers, run through polars on a
//! small golden extract whose expected output is written out by hand.

mod common;

use common::permit_text::*;
use common::*;
use ehds_prep::kernels::hex;
use ehds_prep::kernels::keys::SecretKey;
use ehds_prep::kernels::pseudonymise::hmac_sha256;
use polars::prelude::*;

/// Every type, a cohort of values and a range, and each fixed rule; `|`-separated Windows-1252.
fn golden_permit() -> PermitText {
    let date = |name: &str, action: &str| column(name, "date", action).set("format", "%d.%m.%Y");
    permit("GOLD-1")
        .purpose("golden test")
        .output_option("batch_rows = 2")
        .key_env("k", "EHDS_PREP_GOLDEN_KEY")
        .domain("research", "k", "context = \"GOLD-1/research\"")
        .section("[pseudonyms]\nencoding = \"base64url\"\nbits = 256")
        .dataset(
            dataset("t", &["data.csv"])
                .source("delimiter = \"|\"")
                .source("encoding = \"windows-1252\"")
                .source("null_values = [\"\", \"NA\"]")
                .tail("[[datasets.cohort]]\ncolumn = \"visits\"\nvalues = [\"1\", \"2\", \"3\"]")
                .tail("[[datasets.cohort]]\ncolumn = \"weight\"\nfrom = \"40\"\nto = \"120.5\"")
                .column(
                    column("id", "string", "pseudonymise")
                        .set("identifier", "pattern")
                        .set("pattern", "^P[0-9]{3}$")
                        .set("domain", "research")
                        .set("on_invalid", "null")
                        .set("on_missing", "reject-row"),
                )
                .column(kept("visits", "integer"))
                .column(kept("weight", "float"))
                .column(kept("smoker", "boolean"))
                .column(date("seen", "keep"))
                .column(date("seen_month", "generalise").set("rule", "month"))
                .column(
                    column("town", "string", "generalise")
                        .set("rule", "prefix")
                        .raw("prefix", "3"),
                )
                .column(column("note", "string", "drop")),
        )
}

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
    golden_permit().write(&tmp.path().join("permit.toml"));
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
    // A month is the date of its first day (docs/permit.md, "Delivered types").
    assert_eq!(df.column("seen_month").unwrap().dtype(), &DataType::Date);
    let month = df
        .column("seen_month")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    let month: Vec<Option<&str>> = month.str().unwrap().iter().collect();
    assert_eq!(
        month,
        vec![Some("2021-02-01"), Some("1999-12-01"), Some("2024-02-01")]
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
    permit("GOLD-2")
        .dataset(
            dataset("t", &["data.csv"])
                .source("delimiter = \"\\t\"")
                .source("quote = \"\"")
                .source("header = false")
                .column(column("id", "string", "pseudonymise").set("domain", "d"))
                .column(column("day", "date", "generalise").set("rule", "year"))
                .column(kept("note", "string")),
        )
        .write(&tmp.path().join("permit.toml"));
    demo_key_to(&tmp.path().join("key.hex"));
    run_ok(&tmp.path().join("permit.toml"));
    let df = ParquetReader::new(std::fs::File::open(tmp.path().join("out/t.parquet")).unwrap())
        .finish()
        .unwrap();
    // The default domain context is `<permit id>/<domain name>`; rows are found by their pseudonym
    // (the delivery's order is not the source's).
    let key = SecretKey::from_file(&tmp.path().join("key.hex"))
        .unwrap()
        .domain_key("GOLD-2/d");
    let ids: Vec<Option<&str>> = df.column("id").unwrap().str().unwrap().iter().collect();
    let years: Vec<Option<i64>> = df.column("day").unwrap().i64().unwrap().iter().collect();
    let notes: Vec<Option<&str>> = df.column("note").unwrap().str().unwrap().iter().collect();
    for (id, year, note) in [("P001", 2021, "\"x"), ("P002", 2022, "y\"")] {
        let pseudonym = hex::encode(&hmac_sha256(key.expose(), id.as_bytes())[..16]);
        let row = ids
            .iter()
            .position(|v| *v == Some(pseudonym.as_str()))
            .unwrap();
        assert_eq!((years[row], notes[row]), (Some(year), Some(note)), "{id}");
    }
}

/// `blank` empties a column of any type (a date, a number), delivered as text nulls.
#[test]
fn any_type_can_be_blanked() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("data.csv"),
        "id,day,n\na,2021-03-04,7\nb,2022-12-31,8\n",
    )
    .unwrap();
    permit("GOLD-3")
        .without_keys()
        .dataset(
            dataset("t", &["data.csv"])
                .column(kept("id", "string"))
                .column(column("day", "date", "blank"))
                .column(column("n", "integer", "blank")),
        )
        .write(&tmp.path().join("permit.toml"));
    run_ok(&tmp.path().join("permit.toml"));
    let df = ParquetReader::new(std::fs::File::open(tmp.path().join("out/t.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 2);
    for column in ["day", "n"] {
        let c = df.column(column).unwrap();
        assert_eq!(
            (c.dtype(), c.null_count()),
            (&DataType::String, 2),
            "{column}"
        );
    }
}
