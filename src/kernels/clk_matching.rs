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
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn common_bits_popcnt(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

/// Every pair of records of two different sources whose similarity is at least `threshold`, most
/// similar first, ties by (source, record) of the first record then of the second. A pair whose
/// popcounts alone bound its similarity below the threshold is skipped without comparing words.
pub fn candidates(sources: &[Source], threshold: f64) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for (si, a) in sources.iter().enumerate() {
        for (sj, b) in sources.iter().enumerate().skip(si + 1) {
            let found: Vec<Candidate> = (0..a.len())
                .into_par_iter()
                .flat_map_iter(|i| {
                    let (ca, wa) = (a.counts[i], a.clk(i));
                    (0..b.len()).filter_map(move |j| {
                        let cb = b.counts[j];
                        // Dice ≤ 2·min / (ca + cb): skip what cannot reach the threshold.
                        let bound = 2.0 * f64::from(ca.min(cb)) / f64::from((ca + cb).max(1));
                        if bound < threshold {
                            return None;
                        }
                        let similarity = dice(wa, b.clk(j), ca, cb);
                        (similarity >= threshold).then_some(Candidate {
                            similarity,
                            first: (si as u32, i as u32),
                            second: (sj as u32, j as u32),
                        })
                    })
                })
                .collect();
            out.extend(found);
        }
    }
    out.par_sort_unstable_by(|x, y| {
        y.similarity
            .total_cmp(&x.similarity)
            .then(x.first.0.cmp(&y.first.0))
            .then(x.second.0.cmp(&y.second.0))
            .then(x.first.1.cmp(&y.first.1))
            .then(x.second.1.cmp(&y.second.1))
    });
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
