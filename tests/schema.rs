//! `permit-schema` prints a JSON Schema that the bundled permits satisfy (checked by the independent
//! jsonschema package) and that rejects what the engine rejects for shape: unknown keys, unknown actions.

mod common;

use std::process::Command;

use common::*;

#[test]
fn permit_schema_accepts_the_bundled_permits_and_rejects_unknown_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let o = ehds_prep(&["permit-schema"]);
    assert!(o.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "permit",
        "output",
        "keys",
        "domains",
        "pseudonyms",
        "opt_out",
        "date_shift",
        "tokens",
        "datasets",
    ] {
        assert!(
            schema["properties"][key].is_object(),
            "schema lacks `{key}`"
        );
    }
    assert_eq!(schema["additionalProperties"], false);
    std::fs::write(tmp.path().join("schema.json"), &o.stdout).unwrap();

    let hospital = std::fs::read_to_string(repo().join("configs/hospital.toml")).unwrap();
    let bad_key = tmp.path().join("bad-key.toml");
    std::fs::write(
        &bad_key,
        hospital.replace("rule = \"year\"", "rule = \"year\"\nlevle = 2"),
    )
    .unwrap();
    let bad_action = tmp.path().join("bad-action.toml");
    std::fs::write(
        &bad_action,
        hospital.replace("action = \"keep\"", "action = \"hash\""),
    )
    .unwrap();
    let mut args = vec![
        repo().join("tests/independent/check_permit_schema.py"),
        tmp.path().join("schema.json"),
    ];
    for holder in ["hospital", "insurer", "registry", "research", "linkage"] {
        args.push(repo().join(format!("configs/{holder}.toml")));
    }
    args.push("--".into());
    args.extend([bad_key, bad_action]);
    let o = Command::new("python3")
        .args(&args)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
