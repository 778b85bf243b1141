//! A whole run (read CSV, cohort, opt-out, pseudonymise, generalise, write Parquet, manifest) of the
//! hospital permit on generated extracts of about 1M stays.

use criterion::{Criterion, criterion_group, criterion_main};

// The same allocator as the binary, so that allocation costs are the shipped ones.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = tmp.path().join("sample-data");
    // 570k people give about 1M stays and 400k patients.
    ehds_prep::generate::write_extracts(&data, 570_000, 7).unwrap();
    std::fs::copy(
        repo.join("sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"),
        data.join("DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"),
    )
    .unwrap();
    let configs = tmp.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let permit = configs.join("hospital.toml");
    std::fs::copy(repo.join("configs/hospital.toml"), &permit).unwrap();

    let mut g = c.benchmark_group("run");
    g.sample_size(10);
    g.bench_function("hospital_1m_stays", |b| {
        b.iter(|| {
            let plan = ehds_prep::load_plan(&permit).unwrap();
            ehds_prep::engine::run(&plan).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
