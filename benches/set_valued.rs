//! The k^m-anonymity search (`set_valued`) on synthetic diagnoses shaped like ICD-10: 22 chapters
//! of 10 categories of 5 codes (1,100 codes), 100,000 persons holding 1 to 8 codes each drawn from
//! a long-tailed distribution (a few common codes, many rare ones), k = 5, m = 2, 2 % suppression.
//! Measures the search alone (the sets are gathered in the pipeline's pass 1). 15.2 s before the
//! refinement's quick refusal and warm start, 3.5 s after, on this machine.

use criterion::{Criterion, criterion_group, criterion_main};
use ehds_prep::privacy::set_valued::{self, CodeTree, Model, Persons};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn icd_like() -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for chapter in 0..22 {
        for category in 0..10 {
            for code in 0..5 {
                paths.push(vec![
                    format!("{chapter:02}{category}.{code}"),
                    format!("{chapter:02}{category}"),
                    format!("chapter {chapter}"),
                    "*".into(),
                ]);
            }
        }
    }
    paths
}

fn persons(codes: usize, n: usize) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    (0..n)
        .map(|_| {
            let mut set: Vec<u32> = (0..rng.random_range(1..=8))
                .map(|_| {
                    let u: f64 = rng.random();
                    (u.powi(4) * codes as f64) as u32
                })
                .collect();
            set.sort_unstable();
            set.dedup();
            set
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let paths = icd_like();
    let tree = CodeTree::new(&paths).unwrap();
    let sets = persons(paths.len(), 100_000);
    let model = Model {
        k: 5,
        m: 2,
        suppression_limit: 0.02,
    };
    let mut g = c.benchmark_group("set_valued");
    g.sample_size(10);
    g.bench_function("k5_m2_100k_persons_1100_codes", |b| {
        b.iter(|| {
            let input = Persons {
                codes: &sets,
                classes: None,
            };
            let found = set_valued::anonymise(&tree, &input, &model).unwrap();
            assert!(found.loss < 1.0);
            found
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
