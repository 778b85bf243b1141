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
    for (name, sensitive, privacy) in [
        (
            "k5_supp4_entropy",
            None,
            "k = 5\nsuppression_limit = 0.04\nmetric = \"entropy\"",
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

criterion_group!(benches, bench);
criterion_main!(benches);
