//! `link` with a source linked on CLKs (`link_on = "clk"`): what the permit must say, and the
//! deliveries it refuses before writing anything (a column that is not a CLK, CLKs of another
//! linkage schema or another CLK secret). The linked sample delivery itself is checked by an independent computation in
//! `end_to_end.rs` (`check_linked_delivery.py`).

mod common;

use common::*;

/// The four sample holders' deliveries under `dir/out`, and the linking permit's text.
fn delivered(dir: &std::path::Path) -> String {
    for holder in ["hospital", "insurer", "registry", "cohort"] {
        run_ok(&sample_permit(holder, dir));
    }
    std::fs::read_to_string(sample_permit("linkage", dir)).unwrap()
}

fn link(dir: &std::path::Path, text: &str) -> std::process::Output {
    let path = dir.join("variant.toml");
    std::fs::write(&path, text).unwrap();
    ehds_prep(&["link", "--permit", path.to_str().unwrap()])
}

#[test]
fn a_clk_linked_source_needs_its_rule_and_a_clk_to_match() {
    let tmp = tempfile::tempdir().unwrap();
    let text = delivered(tmp.path());
    for (variant, expected) in [
        (
            text.replace("[linkage.clk]\nthreshold = 0.92\n", ""),
            "give [linkage.clk] with its `threshold`",
        ),
        (
            text.replace("threshold = 0.92", "threshold = 1.5"),
            "must be above 0 and at most 1",
        ),
        (
            text.replace("clk = \"patients.clk\"\n", ""),
            "name the CLK column (`clk = \"table.column\"`) of at least one of them",
        ),
        (
            text.replace("clk = \"participants.clk\"", "clk = \"participants\""),
            "is not of the form `table.column`",
        ),
    ] {
        let o = link(tmp.path(), &variant);
        assert_eq!(
            o.status.code(),
            Some(3),
            "an invalid permit: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
    }
    assert!(!tmp.path().join("out/linked").exists());
}

#[test]
fn deliveries_whose_clks_cannot_be_compared_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let text = delivered(tmp.path());
    // Not a CLK column.
    let o = link(
        tmp.path(),
        &text.replace("clk = \"participants.clk\"", "clk = \"participants.bmi\""),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`participants.bmi` is not a CLK column"),
        "{}",
        stderr(&o)
    );
    // The cohort encodes under another schema (another salt): its CLKs are not comparable.
    let schema = std::fs::read_to_string(repo().join("configs/clk-schema.json"))
        .unwrap()
        .replace("RlItMjAyOS0wMDQyIENMSyBzYWx0", "YW5vdGhlciBzYWx0");
    std::fs::write(tmp.path().join("other-schema.json"), schema).unwrap();
    let cohort = std::fs::read_to_string(sample_permit("cohort", tmp.path()))
        .unwrap()
        .replace(
            &format!("{}/configs/clk-schema.json", repo().display()),
            &tmp.path().join("other-schema.json").display().to_string(),
        );
    let permit = tmp.path().join("cohort-other.toml");
    std::fs::write(&permit, cohort).unwrap();
    run_ok(&permit);
    let o = link(tmp.path(), &text);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("made under another linkage schema"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("out/linked").exists());
    // The cohort encodes with another CLK secret: refused, its fingerprint named, never the key.
    let other_key = tmp.path().join("other-clk.hex");
    let o = ehds_prep(&["keygen", "--out", other_key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cohort = std::fs::read_to_string(sample_permit("cohort", tmp.path()))
        .unwrap()
        .replace(
            &format!(
                "{}/sample-data/DEMO-CLK-SECRET-DO-NOT-USE-FOR-REAL-DATA.hex",
                repo().display()
            ),
            other_key.to_str().unwrap(),
        );
    std::fs::write(&permit, cohort).unwrap();
    run_ok(&permit);
    let o = link(tmp.path(), &text);
    assert!(!o.status.success());
    let key = std::fs::read_to_string(&other_key).unwrap();
    assert!(
        stderr(&o).contains("made with another CLK secret") && !stderr(&o).contains(key.trim()),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("out/linked").exists());
}

/// With Hamming LSH blocking the same permit links nearly the same persons (the pairs compared are
/// a subset of all pairs), and the report states the blocking and its cost.
#[test]
fn blocking_links_nearly_everyone_the_exhaustive_comparison_links() {
    let tmp = tempfile::tempdir().unwrap();
    let text = delivered(tmp.path());
    let exact = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/linkage-exact.json")).unwrap())
            .unwrap()
    };
    let o = link(tmp.path(), &text);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = exact(tmp.path())["clk"].clone();
    let o = link(
        tmp.path(),
        &text.replace(
            "threshold = 0.92\n",
            "threshold = 0.92\nblocking = { bands = 30, bits = 24 }\n",
        ),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let blocked = exact(tmp.path())["clk"].clone();
    let linked = |v: &serde_json::Value| v["linked_by_clk_to_pseudonym_sources"].as_u64().unwrap();
    let pairs = |v: &serde_json::Value| v["candidate_pairs"].as_u64().unwrap();
    assert!(linked(&all) > 100, "{all}");
    assert!(
        linked(&blocked) <= linked(&all) && linked(&blocked) as f64 >= 0.98 * linked(&all) as f64,
        "{blocked} / {all}"
    );
    assert!(pairs(&blocked) <= pairs(&all));
    assert!(all["blocking"].as_str().unwrap().starts_with("none"));
    assert!(
        blocked["blocking"]
            .as_str()
            .unwrap()
            .contains("30 bands of 24 sampled bits"),
        "{blocked}"
    );
}
