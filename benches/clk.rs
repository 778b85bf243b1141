//! CLK encoding and matching, for the comparison with clkhash and anonlink (#22): encoding 10,000
//! records on the schema the issue measures clkhash on (given name, surname, birth date, sex,
//! postcode; BLAKE2b; l = 1024; 20 bits per bigram), on one core and on all, with few and with
//! many distinct names; the Dice comparison of 2,000 × 2,000 CLKs at threshold 0.8 (4 M pairs),
//! and of the two halves of a file's CLKs (`EHDS_CLK_FILE`, as `scripts/compare-clk.sh` gives
//! them to anonlink); 1M × 1M with LSH blocking. Here, 2026-12-07, 2 cores, one core
//! (`RAYON_NUM_THREADS=1`): encoding 587k records/s (538k with diverse names); Dice 593 M pairs/s
//! (AVX-512; 150 M with the scalar popcount). clkhash 0.18.3 and anonlink 0.15.3: see README.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ehds_prep::kernels::clk::{LinkageSchema, Scratch};
use ehds_prep::kernels::clk_matching::{Lsh, Source, candidates, candidates_blocked, greedy_solve};
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
    // Names of about 10⁵ spellings each, as a country's: fewer tokens repeat.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let diverse: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r[0] = name(&mut rng);
            r[1] = name(&mut rng);
            r
        })
        .collect();
    g.bench_function("encode_10k_diverse_names_one_core", |b| {
        b.iter(|| {
            let mut scratch = Scratch::default();
            diverse.iter().map(|r| encode(r, &mut scratch)).count()
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
    // The two halves of the CLKs of a file (base64, one per line), as scripts/compare-clk.sh
    // gives anonlink.
    if let Ok(file) = std::env::var("EHDS_CLK_FILE") {
        let clks: Vec<Vec<u8>> = std::fs::read_to_string(file)
            .unwrap()
            .split_whitespace()
            .map(|l| ehds_prep::kernels::hex::base64_decode(l).unwrap())
            .collect();
        let half = clks.len() / 2;
        let pack = |c: &[Vec<u8>]| Source::new(&c.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let halves = [pack(&clks[..half]), pack(&clks[half..2 * half])];
        g.throughput(Throughput::Elements((half * half) as u64));
        g.bench_function("dice_file_halves_threshold_0.8", |b| {
            b.iter(|| candidates(&halves, 0.8).len())
        });
    }
    g.finish();
}

/// A name of two or three syllables: about 10⁵ given names and surnames, as diverse as a
/// country's (a pool of a few dozen would make every namesake a near-duplicate CLK).
fn name(rng: &mut ChaCha8Rng) -> String {
    const SYLLABLES: [&str; 48] = [
        "ma", "ri", "el", "an", "lo", "do", "be", "ne", "vi", "ca", "ro", "la", "mi", "to", "se",
        "ga", "ré", "lu", "no", "pa", "di", "fa", "co", "ju", "li", "sa", "te", "mo", "bé", "ta",
        "gui", "jo", "ber", "nard", "ste", "phe", "zo", "é", "mar", "tin", "du", "bois", "le",
        "roy", "fon", "taine", "cha", "gnon",
    ];
    let n = rng.random_range(2..4);
    let s: String = (0..n)
        .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
        .collect();
    let mut letters = s.chars();
    let first = letters.next().expect("a syllable").to_uppercase();
    first.chain(letters).collect()
}

/// 1M × 1M with Hamming LSH blocking (30 bands of 24 bits) at threshold 0.8, then the greedy
/// solver: the second source holds half of the first's persons, each name with one typo, and
/// half new persons (`EHDS_CLK_BLOCKED_RECORDS` sets the size). 2026-12-07, 2 cores: 10.2 s for
/// 1M × 1M (0.245 s for 100k × 100k); comparing every pair would take about a quarter of an hour
/// on both cores (about 3 hours at the 95 M pairs/s of 2026-12-06).
fn blocked(c: &mut Criterion) {
    let n: usize = std::env::var("EHDS_CLK_BLOCKED_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let schema = LinkageSchema::from_json(SCHEMA).unwrap();
    let keys = schema.keys(b"a secret of the permit");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let person = |rng: &mut ChaCha8Rng| {
        [
            name(rng),
            name(rng),
            format!(
                "{}-{:02}-{:02}",
                rng.random_range(1930..2020),
                rng.random_range(1..13),
                rng.random_range(1..29)
            ),
            ["M", "F"][rng.random_range(0..2)].to_string(),
            format!("{:05}", rng.random_range(1000..96000)),
        ]
    };
    let first: Vec<[String; 5]> = (0..n).map(|_| person(&mut rng)).collect();
    let second: Vec<[String; 5]> = first
        .iter()
        .map(|p| {
            if rng.random_bool(0.5) {
                return person(&mut rng);
            }
            let mut p = p.clone();
            let mut letters: Vec<char> = p[1].chars().collect();
            let at = rng.random_range(0..letters.len());
            letters[at] = 'x';
            p[1] = letters.into_iter().collect();
            p
        })
        .collect();
    let encode = |rows: &[[String; 5]]| {
        let clks: Vec<Vec<u8>> = rows
            .par_iter()
            .map_init(Scratch::default, |scratch, r| {
                let record: Vec<&str> = r.iter().map(String::as_str).collect();
                schema.encode_with(&keys, &record, scratch).unwrap()
            })
            .collect();
        Source::new(&clks.iter().map(Vec::as_slice).collect::<Vec<_>>())
    };
    let sources = [encode(&first), encode(&second)];
    let lsh = Lsh {
        bands: 30,
        bits: 24,
    };
    let mut g = c.benchmark_group("clk_blocked");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * n as u64));
    g.bench_function(
        format!("lsh_30x24_{n}_x_{n}_threshold_0.8_and_solve"),
        |b| b.iter(|| greedy_solve(&candidates_blocked(&sources, 0.8, &lsh)).len()),
    );
    g.finish();
}

criterion_group!(benches, bench, blocked);
criterion_main!(benches);
