//! Matching CLKs as Data61's anonlink 0.15 does, for the access body: the Sørensen–Dice
//! similarity of every pair of records from two different sources, the pairs at or above a
//! threshold ordered as anonlink orders them (most similar first, then by source and record), and
//! its greedy solver, which turns the pairs into groups of records of one person. Same candidate
//! pairs, same similarities (the same double-precision arithmetic) and same groups as anonlink's
//! `find_candidate_pairs` and `greedy_solve` on the same CLKs.

use std::collections::HashMap;

use rayon::prelude::*;

/// A record: its source's index and its index in that source.
pub type RecordId = (u32, u32);

/// One candidate pair: its similarity and the two records, the first of the lower source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub similarity: f64,
    pub first: RecordId,
    pub second: RecordId,
}

/// CLKs of one source, packed in 64-bit words (big-endian, so bit order does not matter to
/// popcounts), each with its popcount.
pub struct Source {
    words: usize,
    bits: Vec<u64>,
    counts: Vec<u32>,
}

impl Source {
    /// Packs CLKs of equal length (bytes as the encoder writes them).
    pub fn new(clks: &[&[u8]]) -> Source {
        let words = clks.first().map_or(0, |c| c.len().div_ceil(8));
        let mut bits = Vec::with_capacity(words * clks.len());
        let mut counts = Vec::with_capacity(clks.len());
        for clk in clks {
            assert_eq!(clk.len().div_ceil(8), words, "CLKs of one length");
            let start = bits.len();
            for chunk in clk.chunks(8) {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                bits.push(u64::from_be_bytes(word));
            }
            counts.push(bits[start..].iter().map(|w| w.count_ones()).sum());
        }
        Source {
            words,
            bits,
            counts,
        }
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    fn clk(&self, i: usize) -> &[u64] {
        &self.bits[i * self.words..(i + 1) * self.words]
    }
}

/// Sørensen–Dice coefficient of two CLKs: 2|a ∧ b| / (|a| + |b|), 0 when both are empty.
fn dice(a: &[u64], b: &[u64], count_a: u32, count_b: u32) -> f64 {
    let total = count_a + count_b;
    if total == 0 {
        return 0.0;
    }
    2.0 * f64::from(common_bits(a, b)) / f64::from(total)
}

/// |a ∧ b|, with the processor's popcount instruction where it has one: the default x86-64
/// target may not assume it, and the portable count is several times slower.
fn common_bits(a: &[u64], b: &[u64]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the processor was just found to have the instruction the function is built with.
        return unsafe { common_bits_popcnt(a, b) };
    }
    and_count(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn common_bits_popcnt(a: &[u64], b: &[u64]) -> u32 {
    and_count(a, b)
}

/// |a ∧ b| word by word; inlined into each caller, so that it compiles to the popcount
/// instruction inside a function built with it.
#[inline(always)]
fn and_count(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

/// Every pair of records of two different sources whose similarity is at least `threshold`, most
/// similar first, ties by (source, record) of the first record then of the second. A pair whose
/// popcounts alone bound its similarity below the threshold is skipped without comparing words.
pub fn candidates(sources: &[Source], threshold: f64) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for (si, a) in sources.iter().enumerate() {
        for (sj, b) in sources.iter().enumerate().skip(si + 1) {
            let (b, original) = by_count(b);
            let limit = Threshold::new(threshold, b.words * 64);
            let found: Vec<Candidate> = (0..a.len())
                .into_par_iter()
                .fold(Vec::new, |mut found, i| {
                    let first = (si as u32, i as u32);
                    let row = &mut Vec::new();
                    let range = reachable(&b.counts, a.counts[i], threshold);
                    matches_in_row(a.clk(i), a.counts[i], &b, range, &limit, row);
                    found.extend(row.iter().map(|&(j, similarity)| Candidate {
                        similarity,
                        first,
                        second: (sj as u32, original[j as usize]),
                    }));
                    found
                })
                .flatten_iter()
                .collect();
            out.extend(found);
        }
    }
    in_anonlink_order(&mut out);
    out
}

/// A copy of a source with its records in order of popcount, and each one's index in the
/// source: a row then compares a contiguous range of records, those whose popcounts can reach the
/// threshold, as anonlink does.
fn by_count(s: &Source) -> (Source, Vec<u32>) {
    let mut order: Vec<u32> = (0..s.len() as u32).collect();
    order.sort_unstable_by_key(|&i| (s.counts[i as usize], i));
    let mut bits = Vec::with_capacity(s.bits.len());
    for &i in &order {
        bits.extend_from_slice(s.clk(i as usize));
    }
    let counts = order.iter().map(|&i| s.counts[i as usize]).collect();
    (
        Source {
            words: s.words,
            bits,
            counts,
        },
        order,
    )
}

/// The records, among popcounts sorted in increasing order, that a CLK of popcount `ca` may reach
/// `threshold` with: Dice ≤ 2·min(ca, cb) / (ca + cb), so cb ≥ t·ca / (2 − t) and cb ≤
/// ca·(2 − t) / t. One count of slack either side; each pair is then judged exactly by its common
/// bits ([`Threshold`]).
fn reachable(sorted: &[u32], ca: u32, threshold: f64) -> std::ops::Range<usize> {
    if threshold <= 0.0 {
        return 0..sorted.len();
    }
    if threshold > 1.0 {
        return 0..0;
    }
    let ca = f64::from(ca);
    let low = (threshold * ca / (2.0 - threshold)).floor() - 1.0;
    let high = (ca * (2.0 - threshold) / threshold).ceil() + 1.0;
    sorted.partition_point(|&c| f64::from(c) < low)
        ..sorted.partition_point(|&c| f64::from(c) <= high)
}

/// The records of `b` whose similarity to the CLK `wa` (of popcount `ca`) is at least
/// `threshold`, with it, into `found`. The processor's instructions are chosen once per row, not
/// per pair: AVX-512's 64-bit popcount over a 1024-bit CLK in two registers where the processor
/// has it, the scalar popcount instruction otherwise, portable code last.
fn matches_in_row(
    wa: &[u64],
    ca: u32,
    b: &Source,
    range: std::ops::Range<usize>,
    threshold: &Threshold,
    found: &mut Vec<(u32, f64)>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if b.words.is_multiple_of(8)
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
        {
            // SAFETY: the processor was just found to have the instructions.
            return unsafe { row_avx512(wa, ca, b, range, threshold, found) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: as above.
            return unsafe { row_popcnt(wa, ca, b, range, threshold, found) };
        }
    }
    row(ca, b, range, threshold, found, |y| and_count(wa, y))
}

/// A threshold, and for each sum of two popcounts the fewest common bits whose Dice reaches it
/// (from the same double-precision expression as the similarity, so that comparing counts keeps
/// exactly the pairs the similarity would).
struct Threshold {
    need: Vec<u32>,
}

impl Threshold {
    fn new(value: f64, bits: usize) -> Threshold {
        let need = (0..=2 * bits as u32)
            .map(|total| {
                if total == 0 {
                    return if value <= 0.0 { 0 } else { u32::MAX };
                }
                let reaches = |c: u32| 2.0 * f64::from(c) / f64::from(total) >= value;
                // `reaches` grows with c: the first c that reaches, if any does.
                let (mut low, mut high) = (0u32, total + 1);
                while low < high {
                    let mid = low + (high - low) / 2;
                    if reaches(mid) {
                        high = mid;
                    } else {
                        low = mid + 1;
                    }
                }
                if low > total { u32::MAX } else { low }
            })
            .collect();
        Threshold { need }
    }
}

/// One row with `common` counting |a ∧ b|; inlined into each instruction set's function so that
/// the whole loop is compiled for it.
#[inline(always)]
fn row(
    ca: u32,
    b: &Source,
    range: std::ops::Range<usize>,
    threshold: &Threshold,
    found: &mut Vec<(u32, f64)>,
    common: impl Fn(&[u64]) -> u32,
) {
    for j in range {
        let total = ca + b.counts[j];
        let need = threshold.need[total as usize];
        if need == u32::MAX {
            continue;
        }
        let c = common(b.clk(j));
        if c >= need {
            let similarity = if total == 0 {
                0.0
            } else {
                2.0 * f64::from(c) / f64::from(total)
            };
            found.push((j as u32, similarity));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn row_popcnt(
    wa: &[u64],
    ca: u32,
    b: &Source,
    range: std::ops::Range<usize>,
    threshold: &Threshold,
    found: &mut Vec<(u32, f64)>,
) {
    row(ca, b, range, threshold, found, |y| and_count(wa, y))
}

/// AVX-512 rows: a 1024-bit CLK (the usual length) held in two registers for the whole row; other
/// lengths loaded pair by pair.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
fn row_avx512(
    wa: &[u64],
    ca: u32,
    b: &Source,
    range: std::ops::Range<usize>,
    threshold: &Threshold,
    found: &mut Vec<(u32, f64)>,
) {
    use std::arch::x86_64::*;
    // SAFETY (every load): a chunk of 8 u64 is 64 readable bytes; the loads are unaligned.
    let load = |words: &[u64]| unsafe { _mm512_loadu_si512(words.as_ptr().cast()) };
    if wa.len() == 16 {
        let (a0, a1) = (load(&wa[..8]), load(&wa[8..]));
        row(ca, b, range, threshold, found, |y| {
            let low = _mm512_popcnt_epi64(_mm512_and_si512(a0, load(&y[..8])));
            let high = _mm512_popcnt_epi64(_mm512_and_si512(a1, load(&y[8..])));
            _mm512_reduce_add_epi64(_mm512_add_epi64(low, high)) as u32
        })
    } else {
        row(ca, b, range, threshold, found, |y| {
            let mut sum = _mm512_setzero_si512();
            for (p, q) in wa.chunks_exact(8).zip(y.chunks_exact(8)) {
                let both = _mm512_and_si512(load(p), load(q));
                sum = _mm512_add_epi64(sum, _mm512_popcnt_epi64(both));
            }
            _mm512_reduce_add_epi64(sum) as u32
        })
    }
}

/// Most similar first, ties by (source, record) of the first record then of the second.
fn in_anonlink_order(pairs: &mut [Candidate]) {
    pairs.par_sort_unstable_by(|x, y| {
        y.similarity
            .total_cmp(&x.similarity)
            .then(x.first.0.cmp(&y.first.0))
            .then(x.second.0.cmp(&y.second.0))
            .then(x.first.1.cmp(&y.first.1))
            .then(x.second.1.cmp(&y.second.1))
    });
}

/// Blocking by Hamming LSH (bit sampling): each of `bands` bands reads `bits` bit positions of
/// the CLK, drawn once from a fixed seed; two records are compared only when they agree on every
/// sampled bit of at least one band. Two CLKs that agree on a share `a` of their bits (for two
/// 1024-bit CLKs of about 450 ones each, a = 1 − Hamming / 1024: about 0.93 at Dice 0.92, 0.5
/// for unrelated records) become candidates with probability 1 − (1 − a^bits)^bands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lsh {
    pub bands: usize,
    pub bits: usize,
}

impl Lsh {
    /// The probability that two CLKs agreeing on a share `agreement` of their bits are compared.
    pub fn compared(&self, agreement: f64) -> f64 {
        1.0 - (1.0 - agreement.powi(self.bits as i32)).powi(self.bands as i32)
    }

    /// Each band's bit positions in [0, `length`): distinct within a band, from SplitMix64 over a
    /// fixed seed (the same bands for every run, so that deliveries are reproducible).
    fn positions(&self, length: usize) -> Vec<Vec<usize>> {
        let mut state: u64 = 0x00e4_d5c1_1b10_c4ed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let bits = self.bits.min(length);
        (0..self.bands)
            .map(|_| {
                let mut band: Vec<usize> = Vec::with_capacity(bits);
                while band.len() < bits {
                    let p = (next() % length as u64) as usize;
                    if !band.contains(&p) {
                        band.push(p);
                    }
                }
                band
            })
            .collect()
    }
}

/// The pairs of [`candidates`] that share a band of `lsh` (a subset of them, in the same order,
/// with the same similarities). Memory grows with the records and the pairs found, not with the
/// product of the sources' sizes. Records without a bit set (every feature missing) are never
/// candidates, as their Dice is 0.
pub fn candidates_blocked(sources: &[Source], threshold: f64, lsh: &Lsh) -> Vec<Candidate> {
    let Some(words) = sources.iter().find(|s| !s.is_empty()).map(|s| s.words) else {
        return Vec::new();
    };
    let bands = lsh.positions(words * 64);
    let records: Vec<RecordId> = sources
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            (0..s.len())
                .filter(move |&i| s.counts[i] > 0)
                .map(move |i| (si as u32, i as u32))
        })
        .collect();
    let mut pairs: Vec<(RecordId, RecordId)> = bands
        .par_iter()
        .flat_map_iter(|positions| {
            let mut signed: Vec<(u64, RecordId)> = records
                .iter()
                .map(|&(s, i)| {
                    let clk = sources[s as usize].clk(i as usize);
                    let signature = positions.iter().fold(0u64, |sig, &p| {
                        sig << 1 | (clk[p / 64] >> (63 - p % 64)) & 1
                    });
                    (signature, (s, i))
                })
                .collect();
            signed.sort_unstable();
            let mut found = Vec::new();
            for run in signed.chunk_by(|a, b| a.0 == b.0) {
                for (x, &(_, a)) in run.iter().enumerate() {
                    for &(_, b) in &run[x + 1..] {
                        if a.0 != b.0 {
                            found.push((a, b));
                        }
                    }
                }
            }
            found.into_iter()
        })
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    let mut out: Vec<Candidate> = pairs
        .into_par_iter()
        .filter_map(|(first, second)| {
            let (a, b) = (&sources[first.0 as usize], &sources[second.0 as usize]);
            let (i, j) = (first.1 as usize, second.1 as usize);
            let similarity = dice(a.clk(i), b.clk(j), a.counts[i], b.counts[j]);
            (similarity >= threshold).then_some(Candidate {
                similarity,
                first,
                second,
            })
        })
        .collect();
    in_anonlink_order(&mut out);
    out
}

/// anonlink's greedy solver: pairs are taken most similar first; two records join, or their
/// groups merge, only when every pair of records of the merged group has been seen as a
/// candidate. Returns the groups of two or more records, each sorted, in order of their first
/// record.
pub fn greedy_solve(candidates: &[Candidate]) -> Vec<Vec<RecordId>> {
    let mut group_of: HashMap<RecordId, usize> = HashMap::new();
    let mut groups: Vec<Vec<RecordId>> = Vec::new();
    // Candidate pairs seen between two groups and not yet used to merge them.
    let mut matchable: HashMap<usize, HashMap<usize, usize>> = HashMap::new();
    fn add(m: &mut HashMap<usize, HashMap<usize, usize>>, g: usize, h: usize, n: usize) {
        *m.entry(g).or_default().entry(h).or_default() += n;
    }
    for c in candidates {
        let (mut r0, mut r1) = (c.first, c.second);
        if r0 == r1 {
            continue;
        }
        match (group_of.get(&r0).copied(), group_of.get(&r1).copied()) {
            (Some(g0), Some(g1)) => {
                if g0 == g1 {
                    continue;
                }
                let seen = matchable
                    .get(&g0)
                    .and_then(|m| m.get(&g1))
                    .copied()
                    .unwrap_or(0);
                if seen + 1 >= groups[g0].len() * groups[g1].len() {
                    // The bigger group takes the smaller one in.
                    let (keep, gone) = if groups[g0].len() < groups[g1].len() {
                        (g1, g0)
                    } else {
                        (g0, g1)
                    };
                    let moved = std::mem::take(&mut groups[gone]);
                    for r in &moved {
                        group_of.insert(*r, keep);
                    }
                    groups[keep].extend(moved);
                    if let Some(m) = matchable.get_mut(&keep) {
                        m.remove(&gone);
                    }
                    let others = matchable.remove(&gone).unwrap_or_default();
                    for (other, n) in others {
                        if other == keep {
                            continue;
                        }
                        add(&mut matchable, keep, other, n);
                        add(&mut matchable, other, keep, n);
                        if let Some(m) = matchable.get_mut(&other) {
                            m.remove(&gone);
                        }
                    }
                } else {
                    add(&mut matchable, g0, g1, 1);
                    add(&mut matchable, g1, g0, 1);
                }
            }
            (None, None) => {
                groups.push(vec![r0, r1]);
                group_of.insert(r0, groups.len() - 1);
                group_of.insert(r1, groups.len() - 1);
            }
            (a, b) => {
                // One record is in a group, the other not yet.
                if a.is_none() {
                    std::mem::swap(&mut r0, &mut r1);
                }
                let g0 = a.or(b).expect("one of the two");
                if groups[g0].len() <= 1 {
                    groups[g0].push(r1);
                    group_of.insert(r1, g0);
                } else {
                    groups.push(vec![r1]);
                    let g1 = groups.len() - 1;
                    group_of.insert(r1, g1);
                    add(&mut matchable, g1, g0, 1);
                    add(&mut matchable, g0, g1, 1);
                }
            }
        }
    }
    let mut out: Vec<Vec<RecordId>> = groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort_unstable();
            g
        })
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_of_bit_patterns() {
        let s = Source::new(&[&[0b1111_0000], &[0b1100_1100], &[0]]);
        assert_eq!(s.counts, [4, 4, 0]);
        assert_eq!(dice(s.clk(0), s.clk(1), 4, 4), 0.5);
        assert_eq!(dice(s.clk(2), s.clk(2), 0, 0), 0.0);
    }

    /// Three sources of 128-byte CLKs: random ones (about 45 % of bits set), and in the next
    /// sources copies of the first source's with `flips` bits flipped, as a typo changes a CLK.
    fn planted(n: usize, flips: usize) -> Vec<Vec<Vec<u8>>> {
        let mut state = 7u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let first: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                (0..128)
                    .map(|_| (0..8).fold(0u8, |b, k| b | u8::from(next() % 100 < 45) << k))
                    .collect()
            })
            .collect();
        let mut out = vec![first.clone()];
        for _ in 0..2 {
            out.push(
                first
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if i % 3 == 0 {
                            // A record of its own.
                            return (0..128).map(|_| next() as u8 & next() as u8).collect();
                        }
                        let mut c = c.clone();
                        for _ in 0..flips {
                            let p = (next() % 1024) as usize;
                            c[p / 8] ^= 1 << (p % 8);
                        }
                        c
                    })
                    .collect(),
            );
        }
        out
    }

    fn sources(clks: &[Vec<Vec<u8>>]) -> Vec<Source> {
        clks.iter()
            .map(|s| Source::new(&s.iter().map(Vec::as_slice).collect::<Vec<_>>()))
            .collect()
    }

    /// Every instruction set this processor has (and the portable code) finds the same records
    /// with the same similarities in a row as Dice computed pair by pair.
    #[test]
    fn every_row_kernel_agrees_with_dice_pair_by_pair() {
        let clks = planted(200, 60);
        let s = sources(&clks);
        let pairwise = |i: usize, threshold: f64| {
            let mut found = Vec::new();
            let wa = s[0].clk(i);
            for j in 0..s[1].len() {
                let (ca, cb) = (s[0].counts[i], s[1].counts[j]);
                let similarity = dice(wa, s[1].clk(j), ca, cb);
                if similarity >= threshold {
                    found.push((j as u32, similarity));
                }
            }
            found
        };
        let mut kernels: Vec<(&str, RowKernel)> = vec![
            ("dispatched", matches_in_row),
            ("portable", |a, c, b, r, t, f| {
                row(c, b, r, t, f, |y| and_count(a, y))
            }),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("popcnt") {
                kernels.push(("popcnt", |a, c, b, r, t, f| unsafe {
                    row_popcnt(a, c, b, r, t, f)
                }));
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            {
                kernels.push(("avx512", |a, c, b, r, t, f| unsafe {
                    row_avx512(a, c, b, r, t, f)
                }));
            }
        }
        let mut matched = 0;
        for threshold in [0.0, 0.5, 0.9] {
            let limit = Threshold::new(threshold, 1024);
            for i in 0..s[0].len() {
                let want = pairwise(i, threshold);
                matched += want.len();
                for (name, kernel) in &kernels {
                    let mut got = Vec::new();
                    let all = 0..s[1].len();
                    kernel(s[0].clk(i), s[0].counts[i], &s[1], all, &limit, &mut got);
                    assert_eq!(got, want, "{name}, record {i}, threshold {threshold}");
                }
            }
        }
        assert!(matched > 40_000, "{matched}");
    }

    /// Every popcount whose bound reaches the threshold is in the range a row compares.
    #[test]
    fn the_compared_range_holds_every_reachable_popcount() {
        let sorted: Vec<u32> = (0..=1100).collect();
        for threshold in [0.0, 0.3, 0.5, 0.8, 0.85, 0.9, 0.92, 0.95, 0.99, 1.0, 1.1] {
            for ca in 0..=1100u32 {
                let range = reachable(&sorted, ca, threshold);
                for cb in 0..=1100u32 {
                    let bound = 2.0 * f64::from(ca.min(cb)) / f64::from((ca + cb).max(1));
                    if bound >= threshold {
                        assert!(range.contains(&(cb as usize)), "{ca} {cb} at {threshold}");
                    }
                }
            }
        }
    }

    type RowKernel =
        fn(&[u64], u32, &Source, std::ops::Range<usize>, &Threshold, &mut Vec<(u32, f64)>);

    /// Blocked candidates are exhaustive candidates that share a band: a subsequence of them, with
    /// the same similarities and order; with one-bit bands, every pair shares one.
    #[test]
    fn blocked_candidates_are_the_exhaustive_ones_that_share_a_band() {
        let s = sources(&planted(300, 40));
        let all = candidates(&s, 0.8);
        let every = candidates_blocked(&s, 0.8, &Lsh { bands: 64, bits: 1 });
        assert_eq!(every, all);
        let blocked = candidates_blocked(
            &s,
            0.8,
            &Lsh {
                bands: 30,
                bits: 24,
            },
        );
        let mut rest = all.iter();
        for c in &blocked {
            assert!(
                rest.any(|a| a == c),
                "{c:?} is not an exhaustive candidate in order"
            );
        }
        // Planted pairs (about 0.96 of their bits agree, Dice about 0.92): the bands keep nearly
        // all, as `compared` predicts (0.99 and more).
        let kept = blocked.len() as f64 / all.len() as f64;
        assert!(
            all.len() > 300 && kept > 0.97,
            "{} of {}",
            blocked.len(),
            all.len()
        );
        assert!(
            Lsh {
                bands: 30,
                bits: 24
            }
            .compared(0.96)
                > 0.99
        );
        assert!(
            Lsh {
                bands: 30,
                bits: 24
            }
            .compared(0.5)
                < 1e-5
        );
    }

    #[test]
    fn greedy_takes_the_most_similar_pair_first_and_never_merges_unseen_pairs() {
        let c = |s, a: RecordId, b: RecordId| Candidate {
            similarity: s,
            first: a,
            second: b,
        };
        // A0–B0 is best; A0–B1 comes later and cannot join B1 to A0's group (B0–B1 unseen, and
        // a group of two only grows by a pair seen with all of it).
        let pairs = [
            c(0.9, (0, 0), (1, 0)),
            c(0.8, (0, 0), (1, 1)),
            c(0.7, (0, 1), (1, 1)),
        ];
        assert_eq!(
            greedy_solve(&pairs),
            [vec![(0, 0), (1, 0)], vec![(0, 1), (1, 1)]]
        );
    }
}
