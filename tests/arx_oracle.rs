//! ARX 3.9.2's own test results on the `adult` benchmark (`../shared/oracles/arx-adult.md`), reached
//! through the path users take: a permit naming the CSV and ARX's hierarchy files, a full run, the
//! report and manifest it writes. Skipped with a message where `../shared` is absent.

mod common;

use std::path::Path;

use ehds_prep::report::RunReport;

use common::adult::{dir as adult, permit};

fn run(permit: &Path) -> ehds_prep::Result<RunReport> {
    ehds_prep::engine::run(&ehds_prep::load_plan(permit)?)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs()
}

struct Case {
    sensitive: Option<&'static str>,
    privacy: &'static str,
    levels: &'static [u8],
    /// Which of the report's metric values the oracle's score is.
    score: fn(&ehds_prep::privacy::anonymise::MetricValues) -> f64,
    expected: f64,
}

fn check(case: &Case) -> ehds_prep::privacy::anonymise::AnonymisationReport {
    let data = adult().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = run(&permit(
        dir.path(),
        &data,
        case.sensitive,
        None,
        case.privacy,
    ))
    .unwrap_or_else(|e| panic!("{}: {e}", case.privacy));
    let a = report.datasets[0].anonymisation.clone().unwrap();
    let levels: Vec<u8> = a.quasi_identifiers.iter().map(|q| q.level).collect();
    let score = (case.score)(&a.metrics);
    assert!(
        close(score, case.expected),
        "{}: score {score} vs ARX {}",
        case.privacy,
        case.expected
    );
    assert_eq!(levels, case.levels, "{}", case.privacy);
    // The manifest records the models and the chosen levels.
    let manifest = ehds_prep::delivery::read_manifest(&dir.path().join("out")).unwrap();
    let privacy = manifest.datasets[0].privacy.clone().unwrap();
    let recorded: Vec<u8> = privacy.levels.iter().map(|l| l.level).collect();
    assert_eq!(recorded, case.levels);
    assert_eq!(privacy.rows_suppressed, a.rows_suppressed);
    a
}

#[test]
fn k_anonymity_with_entropy_metric() {
    if adult().is_none() {
        return;
    }
    let entropy = |m: &ehds_prep::privacy::anonymise::MetricValues| m.entropy;
    let a = check(&Case {
        sensitive: None,
        privacy: "k = 5\nsuppression_limit = 0.04\nmetric = \"entropy\"",
        levels: &[1, 0, 1, 1, 3, 2, 2, 0, 1],
        score: entropy,
        expected: 255559.85455731067,
    });
    assert_eq!(a.rows_suppressed, 906);
    assert_eq!(a.suppression_limit_rows, 1206);
    check(&Case {
        sensitive: None,
        privacy: "k = 100\nsuppression_limit = 0.04\nmetric = \"entropy\"",
        levels: &[1, 1, 1, 1, 3, 2, 2, 1, 1],
        score: entropy,
        expected: 379417.3460570988,
    });
    check(&Case {
        sensitive: None,
        privacy: "k = 5\nsuppression_limit = 0.0\nmetric = \"entropy\"",
        levels: &[1, 2, 1, 1, 3, 2, 2, 1, 1],
        score: entropy,
        expected: 407289.5388925293,
    });
    let a = check(&Case {
        sensitive: None,
        privacy: "k = 100\nmetric = \"entropy\"",
        levels: &[0, 4, 1, 1, 3, 2, 2, 1, 1],
        score: entropy,
        expected: 453196.8932458743,
    });
    assert_eq!(a.rows_suppressed, 0);
}

#[test]
fn k_anonymity_with_non_monotonic_entropy() {
    if adult().is_none() {
        return;
    }
    check(&Case {
        sensitive: None,
        privacy: "k = 100\nsuppression_limit = 0.04\nmetric = \"entropy-with-suppression\"",
        levels: &[1, 1, 1, 1, 3, 2, 2, 1, 1],
        score: |m| m.entropy_with_suppression,
        expected: 383803.4034066361,
    });
}

#[test]
fn entropy_l_diversity() {
    if adult().is_none() {
        return;
    }
    let nue = |m: &ehds_prep::privacy::anonymise::MetricValues| m.entropy_with_suppression;
    check(&Case {
        sensitive: Some("occupation"),
        privacy: "sensitive = \"occupation\"\nl = 5\nl_diversity = \"entropy\"\nsuppression_limit = 0.04\nmetric = \"entropy-with-suppression\"",
        levels: &[1, 0, 1, 1, 2, 2, 2, 1],
        score: nue,
        expected: 228878.2039109517,
    });
    check(&Case {
        sensitive: Some("occupation"),
        privacy: "sensitive = \"occupation\"\nl = 5\nl_diversity = \"entropy\"\nmetric = \"entropy-with-suppression\"",
        levels: &[1, 1, 1, 1, 3, 2, 2, 1],
        score: nue,
        expected: 324620.5269918692,
    });
}

#[test]
fn unreachable_l_diversity_fails_with_exit_8_and_no_delivery() {
    let Some(data) = adult() else { return };
    let dir = tempfile::tempdir().unwrap();
    let permit = permit(
        dir.path(),
        &data,
        Some("occupation"),
        None,
        "sensitive = \"occupation\"\nl = 100\nl_diversity = \"entropy\"\nsuppression_limit = 0.04\nmetric = \"entropy-with-suppression\"",
    );
    let o = common::ehds_prep(&["run", "--permit", permit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(8), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("no generalisation"),
        "{}",
        common::stderr(&o)
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn t_closeness_with_discernibility() {
    if adult().is_none() {
        return;
    }
    check(&Case {
        sensitive: Some("occupation"),
        privacy: "k = 5\nsensitive = \"occupation\"\nt = 0.2\nt_closeness = \"equal\"\nsuppression_limit = 0.04\nmetric = \"discernibility\"",
        levels: &[1, 4, 1, 0, 3, 2, 2, 1],
        score: |m| m.discernibility,
        expected: 3.11880088E8,
    });
}

/// AECS of pinned transformations: the oracle's three (k = 5), and ARX's TestUtilityMetrics values
/// for k = 5 plus hierarchical 0.2-closeness on `occupation` (which classes violate decides the count).
#[test]
fn aecs_of_single_transformations() {
    let Some(data) = adult() else { return };
    let hierarchical = format!(
        "k = 5\nsensitive = \"occupation\"\nt = 0.2\nt_closeness = \"hierarchical\"\nsensitive_hierarchy = \"{}\"\nmetric = \"aecs\"",
        data.join("adult_hierarchy_occupation.csv").display()
    );
    let with_suppression = format!("{hierarchical}\nsuppression_limit = 0.05");
    let k5 = "k = 5\nmetric = \"aecs\"".to_string();
    let cases: [(&String, &[u8], f64); 8] = [
        (&k5, &[0, 0, 0, 0, 0, 0, 0, 0], 29.113899613899616),
        (&k5, &[1, 1, 1, 1, 3, 2, 2, 1], 1005.4),
        (&k5, &[1, 4, 1, 2, 3, 2, 2, 1], 30162.0),
        (&hierarchical, &[0, 0, 0, 0, 0, 0, 0, 0], 1774.235294117647),
        (&hierarchical, &[1, 4, 1, 0, 3, 2, 2, 1], 4308.857142857143),
        (&hierarchical, &[1, 4, 1, 1, 3, 2, 2, 1], 15081.0),
        (&with_suppression, &[0, 1, 0, 0, 0, 2, 0, 1], 1206.48),
        (
            &with_suppression,
            &[1, 1, 1, 0, 1, 0, 1, 1],
            569.0943396226415,
        ),
    ];
    for (privacy, levels, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        // Every level pinned: `assess` reports that transformation even where it is infeasible.
        let plan = ehds_prep::load_plan(&permit(
            dir.path(),
            &data,
            Some("occupation"),
            Some(levels),
            privacy,
        ))
        .unwrap();
        let assessed = ehds_prep::engine::assess(&plan).unwrap();
        let a = assessed[0].1.as_ref().unwrap();
        assert!(
            close(a.metrics.aecs, expected),
            "{privacy} {levels:?}: {} vs {expected}",
            a.metrics.aecs
        );
        assert_eq!(a.lattice_size, 1);
    }
}
