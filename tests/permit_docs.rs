//! The permit reference (`docs/permit.md`) stays true: it names every option and every allowed value
//! of the permit's JSON Schema, and each of its examples is a valid column of a permit.

mod common;

use std::collections::BTreeSet;

use common::permit_text::{self, dataset, nir};
use common::{ehds_prep, repo};

fn reference() -> String {
    std::fs::read_to_string(repo().join("docs/permit.md")).unwrap()
}

/// Every property of every object in the schema, and every enumerated value.
fn schema_words() -> BTreeSet<String> {
    let o = ehds_prep(&["permit-schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut words = BTreeSet::new();
    fn walk(v: &serde_json::Value, words: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(props) = map.get("properties").and_then(|p| p.as_object()) {
                    words.extend(props.keys().cloned());
                }
                for key in ["const", "enum"] {
                    match map.get(key) {
                        Some(serde_json::Value::String(s)) => {
                            words.insert(s.clone());
                        }
                        Some(serde_json::Value::Array(values)) => {
                            words.extend(values.iter().filter_map(|v| v.as_str()).map(String::from))
                        }
                        _ => {}
                    }
                }
                map.values().for_each(|v| walk(v, words));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, words)),
            _ => {}
        }
    }
    walk(&schema, &mut words);
    words
}

#[test]
fn the_reference_names_every_option_and_value_of_the_schema() {
    let text = reference();
    let words = schema_words();
    assert!(words.len() > 100, "{} words in the schema", words.len());
    // Named in code: `w`, `w …`, a section header ([w], [[w.x]], [x.w]) or a quoted value ("w").
    let named = |w: &str| {
        let pattern = format!(
            r#"[`\[.]{}[`\].= ]|"{}""#,
            regex::escape(w),
            regex::escape(w)
        );
        regex::Regex::new(&pattern).unwrap().is_match(&text)
    };
    let missing: Vec<&String> = words.iter().filter(|w| !named(w)).collect();
    assert!(
        missing.is_empty(),
        "docs/permit.md does not name {missing:?}"
    );
}

#[test]
fn every_example_of_the_reference_is_a_valid_permit_column() {
    let text = reference();
    let examples: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect();
    let actions: BTreeSet<&str> = examples
        .iter()
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("action = ")))
        .map(|a| a.trim_matches('"'))
        .collect();
    assert_eq!(
        actions.into_iter().collect::<Vec<_>>(),
        [
            "blank",
            "drop",
            "generalise",
            "keep",
            "map",
            "mask",
            "pseudonymise",
            "replace",
            "shift",
            "tokenise"
        ],
        "an example per action"
    );
    let tmp = tempfile::tempdir().unwrap();
    for (i, example) in examples.iter().enumerate() {
        let mut stays = dataset("stays", &["stays.csv"]).person("nir");
        if !example.contains("name = \"nir\"") {
            stays = stays.column(nir("nir", "linkage"));
        }
        let permit = permit_text::permit("FR-DOC-0001")
            .purpose("reference examples")
            .holder("H")
            .recipient("R")
            .key_env("holder", "EHDS_DOC_KEY")
            .key_env("ttp", "EHDS_DOC_TTP_KEY")
            .domain("linkage", "holder", "")
            .domain("research", "holder", "")
            .domain("shift", "holder", "")
            .section("[date_shift]\ndomain = \"shift\"\nmin_days = -30\nmax_days = 30")
            .section("[tokens]\nkey = \"ttp\"")
            .dataset(stays)
            .text()
            + example;
        let privacy = if example.contains("levels = ") {
            "\n[datasets.privacy]\nk = 5\n"
        } else {
            ""
        };
        let path = tmp.path().join(format!("example-{i}.toml"));
        std::fs::write(&path, format!("{permit}{privacy}")).unwrap();
        if let Err(e) = ehds_prep::permit::Permit::load(&path) {
            panic!("example {i} of docs/permit.md is not a valid column: {e}\n{example}");
        }
    }
}
