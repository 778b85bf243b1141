//! Throughput of the pseudonymisation kernel: normalise, validate and HMAC 1M NIRs on every core, and
//! the raw HMAC-SHA-256 of one identifier as the single-core reference.

use std::hint::black_box;

use rayon::prelude::*;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ehds_prep::kernels::hmac::HmacKey;
use ehds_prep::kernels::identifier::{IdentifierKind, IdentifierRule};
use ehds_prep::kernels::keys::SecretKey;
use ehds_prep::kernels::pseudonymise::{Encoding, PseudonymFormat, Pseudonymiser, hmac_sha256};

fn nirs(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let body = 1_000_000_000_000 + i * 7_919 % 8_999_999_999_999;
            format!("{body}{:02}", 97 - body % 97)
        })
        .collect()
}

// The same allocator as the binary, so that allocation costs are the shipped ones.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn bench(c: &mut Criterion) {
    let key = SecretKey::from_text(
        &ehds_prep::kernels::keys::generate_key_text().unwrap(),
        "bench",
    )
    .unwrap();
    let domain = key.domain_key("bench/linkage");
    let raw = nirs(1_000_000);
    let values: Vec<Option<&str>> = raw.iter().map(|s| Some(s.as_str())).collect();
    let nir = IdentifierRule::new(IdentifierKind::Nir);
    let mut g = c.benchmark_group("pseudonymise");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.sample_size(20);
    for (label, format) in [
        (
            "nir_hex128",
            PseudonymFormat {
                encoding: Encoding::Hex,
                bits: 128,
            },
        ),
        (
            "nir_hex256",
            PseudonymFormat {
                encoding: Encoding::Hex,
                bits: 256,
            },
        ),
        (
            "nir_base64url128",
            PseudonymFormat {
                encoding: Encoding::Base64url,
                bits: 128,
            },
        ),
    ] {
        let p = Pseudonymiser::new(&domain, format);
        let mut out = ehds_prep::kernels::pseudonymise::PseudonymBatch::default();
        g.bench_function(label, |b| {
            b.iter(|| p.pseudonymise_into(&[&nir], &[&values], &mut out))
        });
    }
    // The ceiling on every core: the same 1M identifiers (already normalised), precomputed states,
    // no validation and no encoding; the kernel above is held to at least 90 % of it.
    let keyed = HmacKey::new(domain.expose());
    g.bench_function("bare_hmac_every_core", |b| {
        b.iter(|| {
            raw.par_chunks(16 * 1024)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|m| keyed.mac(m.as_bytes())[0] as u64)
                        .sum::<u64>()
                })
                .sum::<u64>()
        })
    });
    // The same with the two-message interleaved compression the kernel uses.
    g.bench_function("bare_hmac_pairs_every_core", |b| {
        b.iter(|| {
            raw.par_chunks(16 * 1024)
                .map(|chunk| {
                    chunk
                        .chunks_exact(2)
                        .map(|m| keyed.mac_pair([m[0].as_bytes(), m[1].as_bytes()])[1][0] as u64)
                        .sum::<u64>()
                })
                .sum::<u64>()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("hmac_one_core");
    g.throughput(Throughput::Elements(1));
    g.bench_function("keyed_per_value_15_bytes", |b| {
        b.iter(|| hmac_sha256(domain.expose(), raw[7].as_bytes()))
    });
    // The ceiling: precomputed inner/outer states, two compressions per identifier.
    let keyed = HmacKey::new(domain.expose());
    g.bench_function("precomputed_15_bytes", |b| {
        b.iter(|| keyed.mac(black_box(raw[7].as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
