//! The privacy search on ARX's `adult` benchmark (30,162 rows, 9 quasi-identifiers with ARX's hierarchy
//! files), loaded through a permit as users load it: k = 5 with 4 % suppression and non-uniform
//! entropy (ARX 3.9.2 takes about 2.6 s of search on this machine); ℓ-diversity on `occupation` with 4 %
//! suppression: distinct 3-diversity with k = 5 (monotone, as k-anonymity is), entropy 3-diversity with
//! k = 2 and entropy 5-diversity alone (not monotone with suppression: pruned by the classes too small
//! for k or ℓ); recursive (4,5)-diversity and ordered 0.2-closeness with k = 5; k = 5 under the loss
//! metric. Needs `../shared/data/adult`; whole-run timings at 1M and 5M rows are in
//! `scripts/time-search.sh`.

use criterion::{Criterion, criterion_group, criterion_main};
use ehds_prep::privacy::lattice::{self, Bounds};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "../tests/common/adult.rs"]
mod adult;
#[allow(dead_code)]
#[path = "../tests/common/permit_text.rs"]
mod permit_text;

fn bench(c: &mut Criterion) {
    let Some(data) = adult::dir() else { return };
    let mut g = c.benchmark_group("search_adult");
    g.sample_size(20);
    let subset = format!(
        "research_subset = {{ path = \"{}\", delimiter = \";\" }}",
        data.join("adult_subset.csv").display()
    );
    let delta = format!(
        "delta_presence = {{ min = 0.05, max = 0.15 }}\n{subset}\nsuppression_limit = 0.05\nmetric = \"entropy\""
    );
    let k_map =
        format!("k_map = {{ k = 5 }}\n{subset}\nsuppression_limit = 0.05\nmetric = \"entropy\"");
    for (name, sensitive, privacy) in [
        (
            "k5_supp4_entropy",
            None,
            "k = 5\nsuppression_limit = 0.04\nmetric = \"entropy\"",
        ),
        (
            "delta_presence_subset_supp5_nue",
            Some("occupation"),
            delta.as_str(),
        ),
        (
            "k_map_5_subset_supp5_nue",
            Some("occupation"),
            k_map.as_str(),
        ),
        (
            "k5_supp4_loss",
            None,
            "k = 5\nsuppression_limit = 0.04\nmetric = \"loss\"",
        ),
        (
            "k5_distinct_l3_supp4_dm",
            Some("occupation"),
            "k = 5\nsensitive = \"occupation\"\nl = 3\nsuppression_limit = 0.04\nmetric = \"discernibility\"",
        ),
        (
            "k2_entropy_l3_supp4_nue",
            Some("occupation"),
            "k = 2\nsensitive = \"occupation\"\nl = 3\nl_diversity = \"entropy\"\nsuppression_limit = 0.04\nmetric = \"entropy-with-suppression\"",
        ),
        (
            "recursive_c4_l5_supp4_nue",
            Some("occupation"),
            "sensitive = \"occupation\"\nl = 5\nl_diversity = \"recursive\"\nc = 4.0\nsuppression_limit = 0.04\nmetric = \"entropy-with-suppression\"",
        ),
        (
            "k5_ordered_t02_supp4_dm",
            Some("occupation"),
            "k = 5\nsensitive = \"occupation\"\nt = 0.2\nt_closeness = \"ordered\"\nsuppression_limit = 0.04\nmetric = \"discernibility\"",
        ),
        (
            "l5_entropy_supp4_nue",
            Some("occupation"),
            "sensitive = \"occupation\"\nl = 5\nl_diversity = \"entropy\"\nsuppression_limit = 0.04\nmetric = \"entropy-with-suppression\"",
        ),
        (
            "population_uniqueness_pitman_supp4_nue",
            None,
            "population_uniqueness = { threshold = 0.0001, population = 317238626, estimator = \"pitman\" }\nsuppression_limit = 0.04\nmetric = \"entropy-with-suppression\"",
        ),
        (
            "population_uniqueness_zayatz_supp4_loss",
            None,
            "population_uniqueness = { threshold = 0.0001, population = 317238626, estimator = \"zayatz\" }\nsuppression_limit = 0.04\nmetric = \"loss\"",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let plan =
            ehds_prep::load_plan(&adult::permit(tmp.path(), &data, sensitive, None, privacy))
                .unwrap();
        let d = &plan.datasets[0];
        let a = d.anonymisation.as_ref().unwrap();
        let table = ehds_prep::engine::profile(&plan, d, a).unwrap();
        let bounds = Bounds::full(&table);
        g.bench_function(name, |b| {
            b.iter(|| {
                let found = lattice::search(&table, &a.models, a.metric, &bounds);
                assert!(found.optimum.is_some());
                found
            })
        });
        if name == "k5_supp4_entropy" {
            g.bench_function("profile_30k_rows", |b| {
                b.iter(|| ehds_prep::engine::profile(&plan, d, a).unwrap())
            });
        }
    }
    g.finish();
}

/// A lattice beyond ARX's 100,000-node limit, searched exactly: q quasi-identifiers (8, or
/// `EHDS_WIDE_Q`) of 16 values, each with a 5-level hierarchy (16 → 8 → 4 → 2 → `*`), 5^q
/// transformations (390,625 for 8), k = 5 with 2 % suppression under NUE on rows (20,000, or
/// `EHDS_WIDE_ROWS`) whose columns are correlated (each row draws a latent value and perturbs it per
/// column, as real attributes co-vary). Prints the lattice's size, the transformations evaluated and
/// the search's time once before measuring.
fn wide(c: &mut Criterion) {
    use ehds_prep::privacy::hierarchy::Hierarchy;
    use ehds_prep::privacy::table::{Metric, Models, TableBuilder};
    use rand::{RngExt, SeedableRng};
    let setting = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let q = setting("EHDS_WIDE_Q", 8);
    let hierarchy = Hierarchy::from_paths(
        (0..16u32).map(|v| {
            let path = vec![
                format!("{}", v / 2),
                format!("{}", v / 4),
                format!("{}", v / 8),
                "*".to_string(),
            ];
            (v.to_string(), path)
        }),
        "wide",
    )
    .unwrap();
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(13);
    let mut builder = TableBuilder::new(false);
    let rows = setting("EHDS_WIDE_ROWS", 20_000);
    for _ in 0..rows {
        let latent: i32 = rng.random_range(0..16);
        let codes: Vec<u32> = (0..q)
            .map(|_| {
                let v = (latent + rng.random_range(-2..=2)).clamp(0, 15);
                hierarchy.code(&v.to_string()).unwrap()
            })
            .collect();
        builder.add(&codes, 0, 1);
    }
    let table = builder.finish(vec![hierarchy; q], None).unwrap();
    let models = Models {
        k: Some(5),
        suppression_limit: 0.02,
        ..Default::default()
    };
    let bounds = Bounds::full(&table);
    let started = std::time::Instant::now();
    let found = lattice::search(&table, &models, Metric::NueMono, &bounds);
    eprintln!(
        "search_wide: {q} quasi-identifiers, {rows} rows: lattice of {} transformations, {} \
         evaluated in {:.2?}, optimum {:?}",
        found.lattice_size,
        found.evaluated,
        started.elapsed(),
        found.optimum.as_ref().map(|o| &o.levels)
    );
    let mut g = c.benchmark_group("search_wide");
    g.sample_size(10);
    g.bench_function("height5_k5_supp2", |b| {
        b.iter(|| {
            let found = lattice::search(&table, &models, Metric::NueMono, &bounds);
            assert!(found.complete && found.optimum.is_some());
            found
        })
    });
    g.finish();
}

criterion_group!(benches, bench, wide);
criterion_main!(benches);
