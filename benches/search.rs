//! The privacy search on ARX's `adult` benchmark (30,162 rows, 9 quasi-identifiers with ARX's hierarchy
//! files), loaded through a permit as users load it: k = 5 with 4 % suppression and non-uniform
//! entropy (ARX 3.9.2 takes about 2.6 s of search on this machine), and entropy 5-diversity on
//! `occupation`, which cannot prune by monotonicity. Needs `../shared/data/adult`; whole-run timings at
//! 1M and 5M rows are in `scripts/time-search.sh`.

use criterion::{Criterion, criterion_group, criterion_main};
use ehds_prep::lattice::{self, Bounds};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const COLUMNS: [&str; 9] = [
    "sex",
    "age",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "occupation",
    "salary-class",
];

fn permit(
    dir: &std::path::Path,
    adult: &std::path::Path,
    sensitive: Option<&str>,
    privacy: &str,
) -> std::path::PathBuf {
    let mut text = format!(
        "[permit]\nid = \"bench\"\npurpose = \"bench\"\nholder = \"UCI\"\nrecipient = \"bench\"\n\n\
         [output]\ndir = \"out\"\n\n[[datasets]]\nname = \"adult\"\n\n[datasets.source]\n\
         format = \"csv\"\nfiles = [\"{}\"]\ndelimiter = \";\"\n\n",
        adult.join("adult.csv").display()
    );
    for c in COLUMNS {
        text += &format!("[[datasets.columns]]\nname = \"{c}\"\ntype = \"string\"\n");
        if Some(c) == sensitive {
            text += "action = \"keep\"\n\n";
        } else {
            text += &format!(
                "action = \"generalise\"\nhierarchy = \"{}\"\n\n",
                adult.join(format!("adult_hierarchy_{c}.csv")).display()
            );
        }
    }
    text += &format!("[datasets.privacy]\n{privacy}\n");
    let path = dir.join(format!("{}.toml", sensitive.unwrap_or("k")));
    std::fs::write(&path, text).unwrap();
    path
}

fn bench(c: &mut Criterion) {
    let adult = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/adult");
    if !adult.join("adult.csv").exists() {
        eprintln!("skipped: ../shared/data/adult is not present");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("search_adult");
    g.sample_size(20);
    for (name, sensitive, privacy) in [
        (
            "k5_supp4_entropy",
            None,
            "k = 5\nsuppression_limit = 0.04\nmetric = \"entropy\"",
        ),
        (
            "l5_entropy_supp4_nue",
            Some("occupation"),
            "sensitive = \"occupation\"\nl = 5\nl_diversity = \"entropy\"\nsuppression_limit = 0.04\nmetric = \"entropy-with-suppression\"",
        ),
    ] {
        let plan = ehds_prep::load_plan(&permit(tmp.path(), &adult, sensitive, privacy)).unwrap();
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
        if sensitive.is_none() {
            g.bench_function("profile_30k_rows", |b| {
                b.iter(|| ehds_prep::engine::profile(&plan, d, a).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
