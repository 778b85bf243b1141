//! The CLK kernel against clkhash 0.18.3 itself (installed in a virtual environment of its own):
//! generated records with accents, apostrophes, hyphens, missing values and every format, under
//! schemas covering every comparison (n-grams of several n, positional or not; exact; numeric
//! with and without fractional precision), strategy, hash (BLAKE2b; double hashing with and
//! without `prevent_singularity`, on a filter small enough for the singular case to occur), key
//! derivation (SHA-256 and SHA-512, salt and info, key sizes) and XOR folding. Every CLK must be
//! bit-identical.

mod common;

use std::path::Path;

use common::permit_text::{self, column, dataset, kept};
use common::*;
use ehds_prep::kernels::clk::{LinkageSchema, Scratch};
use ehds_prep::kernels::hex;

const GIVEN: [&str; 12] = [
    "Zoë",
    "Jean-Luc",
    "D'Arcy",
    "Ōta",
    "Anne Marie",
    "Léa",
    "José",
    "Mary-Kate",
    "O'Neil",
    "Åsa",
    "N/A",
    "Christopher",
];
const SURNAME: [&str; 8] = [
    "Dupont",
    "Müller",
    "O'Brien",
    "Nguyễn",
    "García Márquez",
    "Łukasiewicz",
    "Smith",
    "",
];

/// Deterministic records: id, given name, surname, birth date (dd/mm/yyyy), sex, postcode, age,
/// weight.
fn records(n: usize) -> Vec<Vec<String>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % m
    };
    (0..n)
        .map(|i| {
            let day = 1 + next(28);
            let month = 1 + next(12);
            // Now and then a year before 1000, which Python's strftime does not pad.
            let year = if i % 37 == 5 {
                123 + next(800)
            } else {
                1920 + next(100)
            };
            vec![
                i.to_string(),
                GIVEN[next(GIVEN.len() as u64) as usize].to_string(),
                SURNAME[next(SURNAME.len() as u64) as usize].to_string(),
                format!("{day:02}/{month:02}/{year:04}"),
                ["M", "F", "U"][next(3) as usize].to_string(),
                format!("{:05}", next(100_000)),
                next(110).to_string(),
                format!("{}.{}", 40 + next(80), next(10)),
            ]
        })
        .collect()
}

/// A v3 schema over the records' eight columns, varied by `v`.
fn schema(v: &Variant) -> String {
    let hash = |blake: bool| {
        if blake {
            r#"{"type": "blakeHash"}"#.to_string()
        } else {
            format!(
                r#"{{"type": "doubleHash", "prevent_singularity": {}}}"#,
                v.non_singular
            )
        }
    };
    let strategy = |k: usize| {
        if v.per_feature {
            format!(r#"{{"bitsPerFeature": {}}}"#, k * 6)
        } else {
            format!(r#"{{"bitsPerToken": {k}}}"#)
        }
    };
    let feature = |id: &str, format: &str, comparison: &str, k: usize, extra: &str| {
        format!(
            r#"{{"identifier": "{id}", "format": {format}, "hashing": {{"comparison": {comparison},
            "strategy": {}, "hash": {}{extra}}}}}"#,
            strategy(k),
            hash(v.blake)
        )
    };
    let features = [
        r#"{"identifier": "id", "ignored": true}"#.to_string(),
        feature(
            "given",
            r#"{"type": "string", "encoding": "utf-8", "maxLength": 40}"#,
            &format!(
                r#"{{"type": "ngram", "n": {}, "positional": {}}}"#,
                v.n, v.positional
            ),
            v.k,
            r#", "missingValue": {"sentinel": "N/A", "replaceWith": ""}"#,
        ),
        feature(
            "surname",
            r#"{"type": "string", "encoding": "utf-8"}"#,
            r#"{"type": "ngram", "n": 2}"#,
            v.k,
            r#", "missingValue": {"sentinel": ""}"#,
        ),
        feature(
            "dob",
            r#"{"type": "date", "format": "%d/%m/%Y"}"#,
            r#"{"type": "ngram", "n": 1, "positional": true}"#,
            v.k,
            "",
        ),
        feature(
            "sex",
            r#"{"type": "enum", "values": ["M", "F", "U"]}"#,
            r#"{"type": "exact"}"#,
            v.k,
            "",
        ),
        feature(
            "postcode",
            r#"{"type": "string", "pattern": "[0-9]{5}"}"#,
            r#"{"type": "ngram", "n": 3}"#,
            v.k,
            "",
        ),
        feature(
            "age",
            r#"{"type": "integer", "minimum": 0, "maximum": 120}"#,
            r#"{"type": "numeric", "thresholdDistance": 3, "resolution": 2}"#,
            v.k,
            "",
        ),
        feature(
            "weight",
            r#"{"type": "string"}"#,
            r#"{"type": "numeric", "thresholdDistance": 2.5, "resolution": 3, "fractional_precision": 1}"#,
            v.k,
            "",
        ),
    ];
    format!(
        r#"{{"version": 3, "clkConfig": {{"l": {}, "xor_folds": {}, "kdf": {{"type": "HKDF",
        "hash": "{}", "salt": "{}", "info": "{}", "keySize": {}}}}}, "features": [{}]}}"#,
        v.l,
        v.folds,
        v.kdf_hash,
        hex::base64(b"a per-permit salt"),
        hex::base64(b"ehds-prep test"),
        v.key_size,
        features.join(",\n")
    )
}

struct Variant {
    l: usize,
    folds: u32,
    blake: bool,
    non_singular: bool,
    per_feature: bool,
    n: usize,
    positional: bool,
    k: usize,
    kdf_hash: &'static str,
    key_size: usize,
}

/// clkhash's defaults: BLAKE2b, 20 bits per bigram, 1024 bits, SHA-256 keys of 64 bytes.
const BLAKE_BIGRAMS: Variant = Variant {
    l: 1024,
    folds: 0,
    blake: true,
    non_singular: false,
    per_feature: false,
    n: 2,
    positional: false,
    k: 20,
    kdf_hash: "SHA256",
    key_size: 64,
};

/// Records as CSV lines, every value quoted.
fn csv_lines(rows: &[Vec<String>]) -> String {
    rows.iter()
        .map(|r| {
            let quoted: Vec<String> = r
                .iter()
                .map(|v| format!("\"{}\"", v.replace('"', "\"\"")))
                .collect();
            quoted.join(",") + "\n"
        })
        .collect()
}

/// clkhash's CLKs (base64) of the headerless CSV `records` under `schema` and `secret`.
fn clkhash(python: &Path, schema: &Path, secret: &Path, records: &Path) -> Vec<String> {
    let o = std::process::Command::new(python)
        .arg(repo().join("tests/independent/clkhash_encode.py"))
        .args([schema, secret, records])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "clkhash: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn clks_are_bit_identical_to_clkhash() {
    let python = python_venv("clkhash-venv", &["clkhash==0.18.3"]);
    let tmp = tempfile::tempdir().unwrap();
    let rows = records(400);
    std::fs::write(tmp.path().join("records.csv"), csv_lines(&rows)).unwrap();
    let secret = b"correct horse battery staple";
    std::fs::write(tmp.path().join("secret"), secret).unwrap();
    let variants = [
        BLAKE_BIGRAMS,
        Variant {
            l: 512,
            folds: 2,
            blake: true,
            non_singular: false,
            per_feature: true,
            n: 3,
            positional: true,
            k: 15,
            kdf_hash: "SHA512",
            key_size: 32,
        },
        Variant {
            l: 1000,
            folds: 1,
            blake: false,
            non_singular: false,
            per_feature: false,
            n: 2,
            positional: false,
            k: 10,
            kdf_hash: "SHA256",
            key_size: 64,
        },
        Variant {
            l: 64,
            folds: 0,
            blake: false,
            non_singular: true,
            per_feature: true,
            n: 1,
            positional: false,
            k: 4,
            kdf_hash: "SHA512",
            key_size: 64,
        },
        Variant {
            l: 64,
            folds: 0,
            blake: false,
            non_singular: false,
            per_feature: false,
            n: 4,
            positional: true,
            k: 3,
            kdf_hash: "SHA256",
            key_size: 16,
        },
    ];
    for (i, v) in variants.iter().enumerate() {
        let text = schema(v);
        let path = tmp.path().join(format!("schema-{i}.json"));
        std::fs::write(&path, &text).unwrap();
        let expected = clkhash(
            &python,
            &path,
            &tmp.path().join("secret"),
            &tmp.path().join("records.csv"),
        );
        assert_eq!(expected.len(), rows.len());
        let linkage = LinkageSchema::from_json(&text).unwrap();
        let keys = linkage.keys(secret);
        // Fresh for each record, and with one scratch remembering the tokens of all before.
        let mut scratch = Scratch::default();
        for (row, want) in rows.iter().zip(&expected) {
            let record: Vec<&str> = row.iter().map(String::as_str).collect();
            let got = hex::base64(&linkage.encode(&keys, &record).unwrap());
            assert_eq!(&got, want, "schema {i}, record {}", row[0]);
            let reused = linkage.encode_with(&keys, &record, &mut scratch).unwrap();
            assert_eq!(&hex::base64(&reused), want, "schema {i}, record {}", row[0]);
        }
    }
}

/// clkhash's own regression vector (data61/clkhash, tests/test_clk.py,
/// `TestComplexSchemaChanges.test_encoding_regression`): its v1 schema written in v3 as clkhash
/// converts it (bits per token = round(weight × k), k = 30; n-grams not positional unless said),
/// secret `chicken`; the CLKs of its first two records as published there.
#[test]
fn clkhash_published_regression_vector() {
    let v3 = r#"{"version": 3, "clkConfig": {"l": 1024, "kdf": {"type": "HKDF", "hash": "SHA256",
        "salt": "SCbL2zHNnmsckfzchsNkZY9XoHk96P/G5nUBrM7ybymlEFsMV6PAeDZCNp3rfNUPCtLDMOGQHG4pCQpfhiHCyA==",
        "info": "c2NoZW1hX2V4YW1wbGU=", "keySize": 64}},
      "features": [
        {"identifier": "name", "format": {"type": "string", "encoding": "utf-8", "case": "upper"},
         "hashing": {"comparison": {"type": "ngram", "n": 2, "positional": false},
                     "strategy": {"bitsPerToken": 60}, "hash": {"type": "doubleHash"}}},
        {"identifier": "id", "format": {"type": "string", "encoding": "ascii",
                                        "pattern": "[a-z][a-z][a-z]\\d\\d\\d"},
         "hashing": {"comparison": {"type": "ngram", "n": 1, "positional": true},
                     "strategy": {"bitsPerToken": 30}, "hash": {"type": "doubleHash"}}},
        {"identifier": "dob", "format": {"type": "date", "format": "%Y-%m-%d"},
         "hashing": {"comparison": {"type": "ngram", "n": 2, "positional": true},
                     "strategy": {"bitsPerToken": 15}, "hash": {"type": "doubleHash"}}},
        {"identifier": "gender", "format": {"type": "enum", "values": ["M", "F"]},
         "hashing": {"comparison": {"type": "ngram", "n": 1, "positional": false},
                     "strategy": {"bitsPerToken": 30}, "hash": {"type": "doubleHash"}}},
        {"identifier": "children", "format": {"type": "integer", "maximum": 20},
         "hashing": {"comparison": {"type": "ngram", "n": 1, "positional": true},
                     "strategy": {"bitsPerToken": 30}, "hash": {"type": "doubleHash"}}}]}"#;
    let linkage = LinkageSchema::from_json(v3).unwrap();
    let keys = linkage.keys(b"chicken");
    let clk = |record: &[&str]| hex::base64(&linkage.encode(&keys, record).unwrap());
    assert_eq!(
        clk(&["KÉVIN", "kev007", "1963-12-13", "M", "1"]),
        "SU9+/O/Jzzi0sfzH8K2l3+qfhn8Ky3jVI21DVdH9j2fXE++JH8GcQGSeYxDZFxALCAT8CHwYJyQcRT3MhUQOFWcOf5fWdr6ofh6DYy8iv////weyunbMahfV9RMWkRwQmBL3fjreUVOCS9D9kAbQC2XgULidKCTHd9ZpbPJ91eE="
    );
    assert_eq!(
        clk(&["JOHN HOWARD, ESQ.", "stv534", "1992-02-29", "M", "16"]),
        "Pfl1/d7/31/+9u9x9zv//76/83//0v1Xt/dX/3X/e79XP7vd+Xfkf//2/9Xb/7Fd73e9f/n0f/c7Vb99B/X29d8997Pz/vJ87X/X/vcX9vt1d+/+5bP1fvfevnfX8d/f/j0XPL7f999kc/28/3d4c7t/9b/+Pf411/f2+3z1d/s="
    );
    // The checks clkhash makes, with this project's rule: the feature and the rule, not the value.
    let err = linkage
        .encode(&keys, &["Kévin", "kev007", "1963-12-13", "M", "1"])
        .unwrap_err();
    assert_eq!((err.feature, err.identifier.as_str()), (0, "name"));
    assert!(!err.rule.contains("Kévin"), "{}", err.rule);
    for (at, record) in [
        (1, ["KEVIN", "kév007", "1963-12-13", "M", "1"]),
        (2, ["KEVIN", "kev007", "1963-02-30", "M", "1"]),
        (3, ["KEVIN", "kev007", "1963-12-13", "X", "1"]),
        (4, ["KEVIN", "kev007", "1963-12-13", "M", "21"]),
    ] {
        assert_eq!(linkage.encode(&keys, &record).unwrap_err().feature, at);
    }
}

/// A holder's permit delivers a CLK column: each delivered CLK equals clkhash's for the same
/// record and secret (the bytes of the permit's key); a record the schema refuses is rejected
/// and counted, and no message or report shows its value.
#[test]
fn a_permit_delivers_clkhash_clks() {
    let python = python_venv("clkhash-venv", &["clkhash==0.18.3"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    demo_key_to(&dir.join("key.hex"));
    let key = ehds_prep::kernels::keys::SecretKey::from_file(&dir.join("key.hex")).unwrap();
    std::fs::write(dir.join("secret"), key.expose()).unwrap();
    std::fs::write(dir.join("schema.json"), schema(&BLAKE_BIGRAMS)).unwrap();
    let names = [
        "id", "given", "surname", "dob", "sex", "postcode", "age", "weight",
    ];
    let rows = records(60);
    let mut csv = names.join(",") + "\n" + &csv_lines(&rows);
    // Refused by the schema: 30 February.
    let bad = [
        "bad",
        "Anna",
        "Secret-Surname",
        "30/02/1990",
        "F",
        "75011",
        "30",
        "60.0",
    ];
    csv += &(bad.join(",") + "\n");
    std::fs::write(dir.join("people.csv"), &csv).unwrap();
    let mut people = dataset("people", &["people.csv"]).column(kept("id", "string"));
    for n in &names[1..] {
        people = people.column(column(n, "string", "drop"));
    }
    let columns: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let people = people.tail(&format!(
        "[[datasets.clk]]\nname = \"clk\"\nschema = \"schema.json\"\nkey = \"clk\"\ncolumns = [{}]",
        columns.join(", ")
    ));
    let permit = permit_text::permit("CLK-1")
        .without_keys()
        .key_file("clk", "key.hex")
        .dataset(people)
        .write(&dir.join("permit.toml"));
    let o = run_ok(&permit);
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    let report = std::fs::read_to_string(dir.join("out/report.json")).unwrap();
    for text in [&out, &report] {
        assert!(
            !text.contains("Secret-Surname") && !text.contains("30/02/1990"),
            "{text}"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let d = &report["datasets"][0];
    assert_eq!(d["rows_rejected"], 1);
    assert_eq!(d["columns"][1]["records_refused_by_schema"], 1);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/manifest.json")).unwrap()).unwrap();
    let clk_field = &manifest["datasets"][0]["schema"][1];
    assert_eq!(clk_field["domain"], "[clk]");
    assert!(
        manifest["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["role"].as_str().unwrap().starts_with("linkage schema"))
    );

    // clkhash on the same records and secret.
    std::fs::write(dir.join("records.csv"), csv_lines(&rows)).unwrap();
    let expected: std::collections::HashMap<String, String> = rows
        .iter()
        .map(|r| r[0].clone())
        .zip(clkhash(
            &python,
            &dir.join("schema.json"),
            &dir.join("secret"),
            &dir.join("records.csv"),
        ))
        .collect();
    let file = std::fs::File::open(dir.join("out/people.parquet")).unwrap();
    let df = {
        use polars::prelude::*;
        ParquetReader::new(file).finish().unwrap()
    };
    let ids = df.column("id").unwrap().str().unwrap().clone();
    let clks = df.column("clk").unwrap().str().unwrap().clone();
    assert_eq!(df.height(), rows.len());
    for (id, clk) in ids.iter().zip(clks.iter()) {
        assert_eq!(Some(&expected[id.unwrap()][..]), clk, "record {id:?}");
    }
}

/// Matching against anonlink 0.15.3 (a virtual environment of its own): three sources of CLKs of
/// overlapping persons, some with typos or day and month swapped; the same candidate pairs with
/// the same similarities, in the same order, and the same groups from greedy solving.
#[test]
fn matching_equals_anonlink() {
    use ehds_prep::kernels::clk_matching::{Source, candidates, greedy_solve};
    let python = python_venv("anonlink-venv", &["anonlink==0.15.3"]);
    let tmp = tempfile::tempdir().unwrap();
    let linkage = LinkageSchema::from_json(&schema(&BLAKE_BIGRAMS)).unwrap();
    let keys = linkage.keys(b"shared by the holders of one permit");
    let people = records(150);
    // A typo in the surname, or day and month swapped (where it is still a date).
    let corrupt = |r: &Vec<String>, how: usize| -> Vec<String> {
        let mut r = r.clone();
        match how % 3 {
            0 => r[2] = r[2].chars().rev().collect(),
            1 => {
                let (d, m) = (&r[3][..2], &r[3][3..5]);
                if m.parse::<u32>().unwrap() <= 28 && d.parse::<u32>().unwrap() <= 12 {
                    r[3] = format!("{m}/{d}/{}", &r[3][6..]);
                }
            }
            _ => {}
        }
        r
    };
    let sources: Vec<Vec<Vec<String>>> = vec![
        people.clone(),
        people[20..120]
            .iter()
            .enumerate()
            .map(|(i, r)| corrupt(r, i))
            .collect(),
        people[60..150]
            .iter()
            .enumerate()
            .map(|(i, r)| corrupt(r, i + 2))
            .collect(),
    ];
    let encoded: Vec<Vec<Vec<u8>>> = sources
        .iter()
        .map(|s| {
            s.iter()
                .map(|r| {
                    let record: Vec<&str> = r.iter().map(String::as_str).collect();
                    linkage.encode(&keys, &record).unwrap()
                })
                .collect()
        })
        .collect();
    let mut paths = Vec::new();
    for (i, s) in encoded.iter().enumerate() {
        let path = tmp.path().join(format!("source-{i}.txt"));
        let text: Vec<String> = s.iter().map(|c| hex::base64(c)).collect();
        std::fs::write(&path, text.join("\n") + "\n").unwrap();
        paths.push(path);
    }
    let packed: Vec<Source> = encoded
        .iter()
        .map(|s| Source::new(&s.iter().map(Vec::as_slice).collect::<Vec<_>>()))
        .collect();
    let mut all_groups = Vec::new();
    let mut all_pairs = Vec::new();
    for threshold in [0.8, 0.9, 0.95] {
        let o = std::process::Command::new(&python)
            .arg(repo().join("tests/independent/anonlink_match.py"))
            .arg(threshold.to_string())
            .args(&paths)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "anonlink: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let found = candidates(&packed, threshold);
        let want_pairs = want["candidates"].as_array().unwrap();
        assert_eq!(found.len(), want_pairs.len(), "threshold {threshold}");
        for (c, w) in found.iter().zip(want_pairs) {
            let similarity: f64 = w[0].as_str().unwrap().parse().unwrap();
            let ids = |k: usize| w[k].as_u64().unwrap() as u32;
            assert_eq!(
                (c.similarity, c.first, c.second),
                (similarity, (ids(1), ids(3)), (ids(2), ids(4)))
            );
        }
        let groups: Vec<Vec<Vec<u32>>> = greedy_solve(&found)
            .into_iter()
            .map(|g| g.into_iter().map(|(s, r)| vec![s, r]).collect())
            .collect();
        let want_groups: Vec<Vec<Vec<u32>>> =
            serde_json::from_value(want["groups"].clone()).unwrap();
        assert_eq!(groups, want_groups, "threshold {threshold}");
        all_groups.extend(groups);
        all_pairs.extend(found);
    }
    let (groups, found) = (all_groups, all_pairs);
    // Not trivial: pairs across all sources, groups of three, some corrupted records matched.
    assert!(groups.iter().any(|g| g.len() == 3));
    assert!(found.iter().any(|c| c.similarity < 1.0));
}

/// The demo holders' CLKs (`configs/hospital.toml`, `configs/cohort.toml`, from a date column, an
/// integer column and text) are clkhash's: every delivered CLK is clkhash's CLK of a record of the
/// extract, under the bundled schema and CLK secret, and the cohort delivers one per participant
/// whose record the schema accepts.
#[test]
fn the_sample_holders_deliver_clkhash_clks() {
    let python = python_venv("clkhash-venv", &["clkhash==0.18.3"]);
    let tmp = tempfile::tempdir().unwrap();
    let secret = ehds_prep::kernels::keys::SecretKey::from_file(
        &repo().join("sample-data/DEMO-CLK-SECRET-DO-NOT-USE-FOR-REAL-DATA.hex"),
    )
    .unwrap();
    std::fs::write(tmp.path().join("secret"), secret.expose()).unwrap();
    for (holder, extract, table, columns, person) in [
        (
            "hospital",
            "hospital/patients.csv",
            "patients",
            ["first_name", "last_name", "birth_date", "sex", "postcode"],
            "person_pseudonym",
        ),
        (
            "cohort",
            "cohort/participants.csv",
            "participants",
            ["given_name", "surname", "birth_date", "sex", "postcode"],
            "participant_pseudonym",
        ),
    ] {
        run_ok(&sample_permit(holder, tmp.path()));
        let text = std::fs::read_to_string(repo().join("sample-data").join(extract)).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at: Vec<usize> = columns
            .iter()
            .map(|c| header.iter().position(|h| h == c).unwrap())
            .collect();
        let records: Vec<Vec<String>> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                at.iter()
                    .map(|&i| f[i].trim_matches('"').to_string())
                    .collect()
            })
            // The schema refuses a date typed DD/MM/YYYY: the permit rejects the row.
            .filter(|r: &Vec<String>| !r[2].contains('/'))
            .collect();
        std::fs::write(tmp.path().join("records.csv"), csv_lines(&records)).unwrap();
        let expected: std::collections::HashSet<String> = clkhash(
            &python,
            &repo().join("configs/clk-schema.json"),
            &tmp.path().join("secret"),
            &tmp.path().join("records.csv"),
        )
        .into_iter()
        .collect();
        let file = tmp.path().join(format!("out/{holder}/{table}.parquet"));
        let df = {
            use polars::prelude::{ParquetReader, SerReader};
            ParquetReader::new(std::fs::File::open(&file).unwrap())
                .finish()
                .unwrap()
        };
        let clks: Vec<&str> = df
            .column("clk")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|c| c.expect("a CLK on every delivered row"))
            .collect();
        assert!(clks.len() > 250, "{holder}: {} CLKs", clks.len());
        for clk in &clks {
            assert!(
                expected.contains(*clk),
                "{holder}: a CLK clkhash does not make"
            );
        }
        if holder == "cohort" {
            let persons = df.column(person).unwrap().n_unique().unwrap();
            assert_eq!((clks.len(), persons), (records.len(), records.len()));
        }
    }
}
