//! CLK encoding and matching, for the comparison with clkhash and anonlink (#22): encoding 10,000
//! records on the schema the issue measures clkhash on (given name, surname, birth date, sex,
//! postcode; BLAKE2b; l = 1024; 20 bits per bigram), on one core and on all; and the Dice
//! comparison of 2,000 × 2,000 CLKs at threshold 0.8 (4 M pairs). clkhash 0.18.3 encodes 12,600
//! records/s on one core and anonlink 0.15.3 compares 76 M pairs/s on one core (the issue's
//! figures on this kind of machine). Here, 2026-12-06, 2 cores: encoding 52k records/s on one
//! core (4.1× clkhash) hashing every token, 154k (12×) once each distinct token is hashed once
//! per thread, 260k on both; Dice 71 M pairs/s on both cores with the portable popcount, 95 M
//! with the processor's (still 0.6× anonlink per core: the dispatch is per pair).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ehds_prep::kernels::clk::{LinkageSchema, Scratch};
use ehds_prep::kernels::clk_matching::{Source, candidates};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SCHEMA: &str = r#"{"version": 3, "clkConfig": {"l": 1024, "kdf": {"type": "HKDF",
  "hash": "SHA256", "salt": "c2FsdA==", "info": "aW5mbw==", "keySize": 64}}, "features": [
  {"identifier": "given", "format": {"type": "string"}, "hashing": {"comparison": {"type": "ngram", "n": 2},
   "strategy": {"bitsPerToken": 20}, "hash": {"type": "blakeHash"}}},
  {"identifier": "surname", "format": {"type": "string"}, "hashing": {"comparison": {"type": "ngram", "n": 2},
   "strategy": {"bitsPerToken": 20}, "hash": {"type": "blakeHash"}}},
  {"identifier": "dob", "format": {"type": "date", "format": "%Y-%m-%d"}, "hashing": {"comparison":
   {"type": "ngram", "n": 1, "positional": true}, "strategy": {"bitsPerToken": 20}, "hash": {"type": "blakeHash"}}},
  {"identifier": "sex", "format": {"type": "enum", "values": ["M", "F"]}, "hashing": {"comparison":
   {"type": "exact"}, "strategy": {"bitsPerToken": 20}, "hash": {"type": "blakeHash"}}},
  {"identifier": "postcode", "format": {"type": "string"}, "hashing": {"comparison": {"type": "ngram", "n": 2},
   "strategy": {"bitsPerToken": 20}, "hash": {"type": "blakeHash"}}}]}"#;

fn records(n: usize, seed: u64) -> Vec<[String; 5]> {
    let given = [
        "Marie", "Jean", "Léa", "Lucas", "Chloé", "Hugo", "Emma", "Louis",
    ];
    let surname = [
        "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            [
                given[rng.random_range(0..given.len())].to_string(),
                surname[rng.random_range(0..surname.len())].to_string(),
                format!(
                    "{}-{:02}-{:02}",
                    rng.random_range(1930..2020),
                    rng.random_range(1..13),
                    rng.random_range(1..29)
                ),
                ["M", "F"][rng.random_range(0..2)].to_string(),
                format!("{:05}", rng.random_range(1000..96000)),
            ]
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let schema = LinkageSchema::from_json(SCHEMA).unwrap();
    let keys = schema.keys(b"a secret of the permit");
    let rows = records(10_000, 1);
    let encode = |r: &[String; 5], scratch: &mut Scratch| {
        let record: Vec<&str> = r.iter().map(String::as_str).collect();
        schema.encode_with(&keys, &record, scratch).unwrap()
    };
    let mut g = c.benchmark_group("clk");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("encode_10k_one_core", |b| {
        b.iter(|| {
            let mut scratch = Scratch::default();
            rows.iter().map(|r| encode(r, &mut scratch)).count()
        })
    });
    g.bench_function("encode_10k_all_cores", |b| {
        b.iter(|| {
            rows.par_iter()
                .map_init(Scratch::default, |s, r| encode(r, s))
                .count()
        })
    });
    let source = |seed| {
        let mut scratch = Scratch::default();
        let clks: Vec<Vec<u8>> = records(2_000, seed)
            .iter()
            .map(|r| encode(r, &mut scratch))
            .collect();
        Source::new(&clks.iter().map(Vec::as_slice).collect::<Vec<_>>())
    };
    let sources = [source(2), source(3)];
    g.throughput(Throughput::Elements(4_000_000));
    g.bench_function("dice_2k_x_2k_threshold_0.8", |b| {
        b.iter(|| candidates(&sources, 0.8).len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
