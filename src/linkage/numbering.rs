//! Persons numbered in order of first appearance across the linked tables, found on every core:
//! each person belongs to one shard (by bits of its pseudonym), shards look up and count their rows
//! at the same time, and the numbers are put in order of first appearance once every table is read.

use foldhash::fast::FixedState;
use rayon::prelude::*;

use super::Scheme;
use super::index::decode_pseudonym;

const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;

/// A person's place while tables are read: its number within its shard times [`SHARDS`], plus the
/// shard (dense enough to index per-person arrays).
pub(super) type Provisional = u32;

pub(super) struct Numbering {
    sources: usize,
    width: usize,
    shards: Vec<Shard>,
    /// Per shard, the rows of the current batch it holds (reused from batch to batch).
    routes: Vec<Vec<u32>>,
}

/// The persons of one shard, by their own number.
#[derive(Default)]
struct Shard {
    /// The pseudonym's first 128 bits → number within the shard.
    numbers: std::collections::HashMap<u128, u32, FixedState>,
    /// Where first seen: table number above bit 40, row within the table below.
    first: Vec<u64>,
    /// The last table (number) each person was counted in, for distinct persons per table.
    last_table: Vec<u32>,
    presence: Vec<u16>,
    /// Per person and source: rows.
    rows: Vec<u32>,
    pseudonyms: Vec<u8>,
}

/// One batch's rows, as a shard reads them.
pub(super) struct Batch<'a> {
    /// Per row, the first 128 bits of its pseudonym (`None`: no pseudonym).
    pub(super) keys: &'a [Option<u128>],
    /// Per row, the pseudonym as written.
    pub(super) texts: &'a [Option<&'a str>],
    pub(super) scheme: &'a Scheme,
    pub(super) source: usize,
    /// From 1, in the order the tables are read.
    pub(super) table_number: u32,
    /// The table's row number of the batch's first row.
    pub(super) first_row: u64,
}

/// The persons in order of first appearance.
pub(super) struct Numbered {
    /// Per person, its provisional number.
    pub(super) provisional: Vec<Provisional>,
    pub(super) pseudonyms: Vec<u8>,
    pub(super) presence: Vec<u16>,
    pub(super) rows: Vec<u32>,
}

fn shard_of(key: u128) -> usize {
    (key >> (128 - SHARD_BITS)) as usize
}

impl Numbering {
    pub(super) fn new(sources: usize, width: usize) -> Numbering {
        Numbering {
            sources,
            width,
            shards: (0..SHARDS)
                .map(|_| Shard {
                    numbers: std::collections::HashMap::with_hasher(FixedState::with_seed(0x5eed)),
                    ..Shard::default()
                })
                .collect(),
            routes: vec![Vec::new(); SHARDS],
        }
    }

    /// Counts a batch's rows for their persons, adding those first seen; `ids` gets each row's
    /// provisional number (`None` without a pseudonym). Returns how many persons have their first
    /// row of this table in the batch.
    pub(super) fn add(&mut self, batch: &Batch, ids: &mut Vec<Option<Provisional>>) -> u64 {
        for route in &mut self.routes {
            route.clear();
        }
        for (r, key) in batch.keys.iter().enumerate() {
            if let Some(key) = key {
                self.routes[shard_of(*key)].push(r as u32);
            }
        }
        let (sources, width) = (self.sources, self.width);
        let found: Vec<(Vec<Provisional>, u64)> = self
            .shards
            .par_iter_mut()
            .zip(&self.routes)
            .enumerate()
            .map(|(s, (shard, route))| shard.add(s, route, batch, sources, width))
            .collect();
        ids.clear();
        ids.resize(batch.keys.len(), None);
        let mut new_in_table = 0;
        for ((numbers, new), route) in found.iter().zip(&self.routes) {
            new_in_table += new;
            for (&r, &n) in route.iter().zip(numbers) {
                ids[r as usize] = Some(n);
            }
        }
        new_in_table
    }

    /// The persons in order of first appearance, with their pseudonyms and counts.
    pub(super) fn finish(self) -> Numbered {
        let mut order: Vec<(u64, Provisional)> = self
            .shards
            .iter()
            .enumerate()
            .flat_map(|(s, shard)| {
                shard
                    .first
                    .iter()
                    .enumerate()
                    .map(move |(n, &first)| (first, (n * SHARDS + s) as Provisional))
            })
            .collect();
        order.par_sort_unstable();
        let (sources, width) = (self.sources, self.width);
        let place = |p: Provisional| {
            let (s, n) = (p as usize % SHARDS, p as usize / SHARDS);
            (&self.shards[s], n)
        };
        let mut numbered = Numbered {
            provisional: order.iter().map(|&(_, p)| p).collect(),
            pseudonyms: Vec::with_capacity(order.len() * width),
            presence: Vec::with_capacity(order.len()),
            rows: Vec::with_capacity(order.len() * sources),
        };
        for &p in &numbered.provisional {
            let (shard, n) = place(p);
            numbered
                .pseudonyms
                .extend_from_slice(&shard.pseudonyms[n * width..(n + 1) * width]);
            numbered.presence.push(shard.presence[n]);
            numbered
                .rows
                .extend_from_slice(&shard.rows[n * sources..(n + 1) * sources]);
        }
        numbered
    }
}

impl Shard {
    /// Counts the rows `route` of the batch (all of this shard's persons, in row order); returns
    /// their provisional numbers and how many persons have their first row of the table here.
    fn add(
        &mut self,
        shard: usize,
        route: &[u32],
        batch: &Batch,
        sources: usize,
        width: usize,
    ) -> (Vec<Provisional>, u64) {
        let mut numbers = Vec::with_capacity(route.len());
        let mut new_in_table = 0;
        // A person's rows come together (a delivery's order): a row of the person of the row
        // before needs no lookup.
        let mut last: Option<(u128, u32)> = None;
        for &r in route {
            let key = batch.keys[r as usize].expect("routed rows have a key");
            let n = match last {
                Some((k, n)) if k == key => n,
                _ => {
                    let next = self.first.len() as u32;
                    let n = *self.numbers.entry(key).or_insert(next);
                    if n == next {
                        let text = batch.texts[r as usize].expect("a key is decoded from a text");
                        let mut pseudonym = [0u8; 32];
                        decode_pseudonym(text, batch.scheme, &mut pseudonym)
                            .expect("decoded before");
                        self.pseudonyms.extend_from_slice(&pseudonym[..width]);
                        self.first.push(
                            u64::from(batch.table_number) << 40 | (batch.first_row + r as u64),
                        );
                        self.last_table.push(0);
                        self.presence.push(0);
                        self.rows.extend(std::iter::repeat_n(0, sources));
                    }
                    last = Some((key, n));
                    n
                }
            };
            let p = n as usize;
            new_in_table += u64::from(self.last_table[p] != batch.table_number);
            self.last_table[p] = batch.table_number;
            self.presence[p] |= 1 << batch.source;
            self.rows[p * sources + batch.source] += 1;
            numbers.push((p * SHARDS + shard) as Provisional);
        }
        (numbers, new_in_table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain sequential numbering (a map in first-seen order): the same persons in the
    /// same order, the same presence, rows and persons per table, over random tables whose rows
    /// come grouped by person or not, cut into batches, with rows without a pseudonym.
    #[test]
    fn numbers_persons_as_one_sequential_pass_would() {
        use rand::{RngExt, SeedableRng};
        let scheme = Scheme::hex128();
        for seed in 0..6u64 {
            let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
            let sources = rng.random_range(1..4usize);
            let pool: Vec<String> = (0..rng.random_range(1..400usize))
                .map(|_| crate::kernels::hex::encode(&rng.random::<u128>().to_le_bytes()))
                .collect();
            let mut numbering = Numbering::new(sources, 16);
            let mut expected: Vec<(String, u16, Vec<u32>)> = Vec::new();
            let mut seen: std::collections::HashMap<Provisional, String> = Default::default();
            let mut table_number = 0;
            for source in 0..sources {
                for _table in 0..rng.random_range(1..3) {
                    table_number += 1;
                    let mut texts: Vec<Option<&str>> = Vec::new();
                    for _ in 0..rng.random_range(0..1500) {
                        let person = (rng.random_range(0..8) != 0)
                            .then(|| pool[rng.random_range(0..pool.len())].as_str());
                        for _ in 0..rng.random_range(1..4) {
                            texts.push(person);
                        }
                    }
                    let mut persons_in_table = std::collections::HashSet::new();
                    for t in texts.iter().flatten() {
                        persons_in_table.insert(*t);
                        let at = match expected.iter().position(|e| e.0 == *t) {
                            Some(at) => at,
                            None => {
                                expected.push((t.to_string(), 0, vec![0; sources]));
                                expected.len() - 1
                            }
                        };
                        expected[at].1 |= 1 << source;
                        expected[at].2[source] += 1;
                    }
                    let mut counted = 0;
                    let mut ids = Vec::new();
                    let mut first_row = 0;
                    for chunk in texts.chunks(rng.random_range(1..700)) {
                        let keys: Vec<Option<u128>> = chunk
                            .iter()
                            .map(|t| {
                                t.map(|t| {
                                    let mut out = [0u8; 32];
                                    decode_pseudonym(t, &scheme, &mut out).unwrap();
                                    u128::from_le_bytes(out[..16].try_into().unwrap())
                                })
                            })
                            .collect();
                        let batch = Batch {
                            keys: &keys,
                            texts: chunk,
                            scheme: &scheme,
                            source,
                            table_number,
                            first_row,
                        };
                        first_row += chunk.len() as u64;
                        counted += numbering.add(&batch, &mut ids);
                        assert_eq!(ids.len(), chunk.len());
                        for (id, text) in ids.iter().zip(chunk) {
                            assert_eq!(id.is_some(), text.is_some());
                            if let (Some(id), Some(text)) = (id, text) {
                                // One person, one number, whatever the batch.
                                let held = seen.entry(*id).or_insert_with(|| text.to_string());
                                assert_eq!(held, text);
                            }
                        }
                    }
                    assert_eq!(counted, persons_in_table.len() as u64);
                }
            }
            let numbered = numbering.finish();
            assert_eq!(numbered.provisional.len(), expected.len());
            for (p, (text, presence, rows)) in expected.iter().enumerate() {
                let pseudonym =
                    crate::kernels::hex::encode(&numbered.pseudonyms[p * 16..(p + 1) * 16]);
                assert_eq!(&pseudonym, text, "seed {seed}, person {p}");
                assert_eq!(&seen[&numbered.provisional[p]], text);
                assert_eq!(numbered.presence[p], *presence);
                assert_eq!(&numbered.rows[p * sources..(p + 1) * sources], &rows[..]);
            }
        }
    }
}
