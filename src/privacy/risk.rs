//! Re-identification risk of a set of equivalence classes, and an independent class counter over
//! text columns (used to re-check written deliveries and by `assess` on any extract).
//!
//! Risks follow the usual definitions (El Emam; ARX; sdcMicro): a record's prosecutor risk is
//! 1 / (size of its class), sizes counted in persons when a person column is known; journalist and
//! marketer risks use the class sizes of a population table generalised the same way.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hash::BuildHasher;

use foldhash::HashMap;

use polars::prelude::StringChunked;
use serde::Serialize;

use crate::source::text_column::{TextIds, TextValue, by_run};

/// The risk figures of one table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RiskSummary {
    pub records: u64,
    pub classes: u64,
    /// Whether class sizes count distinct persons (true) or records.
    pub sizes_in_persons: bool,
    pub smallest_class: u64,
    /// (class size range, classes, records), for sizes 1, 2, 3, 4, 5–9, 10–19, 20–49, 50–99, 100+.
    pub class_sizes: Vec<SizeBucket>,
    pub records_in_classes_below_k: Option<u64>,
    pub share_in_classes_below_k: Option<f64>,
    /// Records alone in their class.
    pub sample_uniques: u64,
    pub share_sample_uniques: f64,
    pub prosecutor_highest: f64,
    pub prosecutor_average: f64,
    /// The threshold and the records whose prosecutor risk is above it.
    pub risk_threshold: f64,
    pub records_at_risk: u64,
    pub share_at_risk: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journalist_highest: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marketer: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SizeBucket {
    pub sizes: String,
    pub classes: u64,
    pub records: u64,
}

const BUCKETS: [(u64, u64); 9] = [
    (1, 1),
    (2, 2),
    (3, 3),
    (4, 4),
    (5, 9),
    (10, 19),
    (20, 49),
    (50, 99),
    (100, u64::MAX),
];

fn empty_buckets() -> Vec<SizeBucket> {
    BUCKETS
        .iter()
        .map(|&(lo, hi)| SizeBucket {
            sizes: match hi {
                u64::MAX => format!("{lo}+"),
                h if h == lo => lo.to_string(),
                h => format!("{lo}-{h}"),
            },
            classes: 0,
            records: 0,
        })
        .collect()
}

fn add_to_bucket(buckets: &mut [SizeBucket], size: u64, records: u64) {
    let b = BUCKETS
        .iter()
        .position(|&(lo, hi)| (lo..=hi).contains(&size))
        .expect("sizes ≥ 1");
    buckets[b].classes += 1;
    buckets[b].records += records;
}

/// Classes and their records by class size, in the buckets of [`RiskSummary::class_sizes`].
pub fn size_buckets(classes: impl IntoIterator<Item = ClassSize>) -> Vec<SizeBucket> {
    let mut buckets = empty_buckets();
    for c in classes.into_iter().filter(|c| c.records > 0) {
        add_to_bucket(&mut buckets, c.size, c.records);
    }
    buckets
}

/// One class as the risk measures see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassSize {
    pub records: u64,
    /// Persons (or records, without a person column).
    pub size: u64,
    /// The size of the matching class in the population, when one is given.
    pub population: Option<u64>,
}

impl RiskSummary {
    pub fn of(
        classes: impl IntoIterator<Item = ClassSize>,
        sizes_in_persons: bool,
        k: Option<u64>,
        risk_threshold: f64,
    ) -> RiskSummary {
        let mut buckets = empty_buckets();
        let (mut records, mut count, mut smallest, mut uniques) = (0u64, 0u64, u64::MAX, 0u64);
        let (mut below_k, mut at_risk) = (0u64, 0u64);
        let (mut journalist, mut has_population) = (0f64, false);
        // Records per class size (and per population class size): sums in size order, so that the
        // averages do not depend on the order classes arrive in.
        let mut by_size: BTreeMap<u64, u64> = BTreeMap::new();
        let mut by_population: BTreeMap<u64, u64> = BTreeMap::new();
        for c in classes {
            if c.records == 0 {
                continue;
            }
            records += c.records;
            count += 1;
            smallest = smallest.min(c.size);
            add_to_bucket(&mut buckets, c.size, c.records);
            if c.size == 1 {
                uniques += c.records;
            }
            if k.is_some_and(|k| c.size < k) {
                below_k += c.records;
            }
            *by_size.entry(c.size).or_default() += c.records;
            if 1.0 / c.size as f64 > risk_threshold {
                at_risk += c.records;
            }
            if let Some(p) = c.population {
                has_population = true;
                let p = p.max(c.size);
                journalist = journalist.max(1.0 / p as f64);
                *by_population.entry(p).or_default() += c.records;
            }
        }
        let weighted = |by: &BTreeMap<u64, u64>| -> f64 {
            by.iter().map(|(&size, &n)| n as f64 / size as f64).sum()
        };
        let share = |n: u64| {
            if records == 0 {
                0.0
            } else {
                n as f64 / records as f64
            }
        };
        RiskSummary {
            records,
            classes: count,
            sizes_in_persons,
            smallest_class: if count == 0 { 0 } else { smallest },
            class_sizes: buckets,
            records_in_classes_below_k: k.map(|_| below_k),
            share_in_classes_below_k: k.map(|_| share(below_k)),
            sample_uniques: uniques,
            share_sample_uniques: share(uniques),
            prosecutor_highest: if count == 0 {
                0.0
            } else {
                1.0 / smallest as f64
            },
            prosecutor_average: if records == 0 {
                0.0
            } else {
                weighted(&by_size) / records as f64
            },
            risk_threshold,
            records_at_risk: at_risk,
            share_at_risk: share(at_risk),
            journalist_highest: has_population.then_some(journalist),
            marketer: has_population.then(|| weighted(&by_population) / records.max(1) as f64),
        }
    }
}

/// Statistics of one class counted from text columns.
#[derive(Debug, Clone, Copy)]
pub struct TextClass {
    /// The class's place in the counter (for its sensitive values).
    id: u32,
    pub records: u64,
    /// Distinct persons (hashes of their texts: a collision can only undercount, never overcount);
    /// rows without a person count as no one.
    pub persons: u64,
}

impl TextClass {
    /// The class's size in persons, as the search counts it: its distinct persons, and at least
    /// one (a class of rows without a person holds someone).
    pub fn size_in_persons(&self) -> u64 {
        self.persons.max(1)
    }
}

/// Interns the texts of one column: each distinct value an id (`u32::MAX` for null).
#[derive(Default)]
struct Interner {
    ids: TextIds,
    texts: Vec<String>,
}

impl Interner {
    fn id(&mut self, value: Option<TextValue>) -> u32 {
        let Some(v) = value else { return u32::MAX };
        if let Some(id) = self.ids.get(v) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.ids.insert(v, id);
        self.texts.push(v.text.to_string());
        id
    }

    /// Ids of a column's values, looked up once per run of equal neighbours.
    fn ids(&mut self, column: &StringChunked) -> Vec<u32> {
        let Ok(ids) = by_run(column, |_, v| Ok::<_, Infallible>(self.id(v)));
        ids
    }

    fn text(&self, id: u32) -> Option<&str> {
        (id != u32::MAX).then(|| self.texts[id as usize].as_str())
    }
}

/// Counts classes of rows by the text of their quasi-identifiers, a hash map over the values as
/// written (each column's texts interned): independent of the packed codes the search uses.
#[derive(Default)]
pub struct TextClassCounter {
    /// Up to four interned ids packed into one key (the common case), more in a boxed slice; each
    /// class's index into `keys`, `records` and `sensitive`.
    narrow: HashMap<u128, u32>,
    wide: HashMap<Box<[u32]>, u32>,
    keys: Vec<Box<[u32]>>,
    records: Vec<u64>,
    /// Per class, records per sensitive value (its id in the counter).
    sensitive: Vec<HashMap<u32, u64>>,
    /// Per class, the persons seen (hashes), each class's list in the shard `class % shards`
    /// (so that threads append apart).
    persons: Vec<Vec<PersonList>>,
    columns: Vec<Interner>,
    sensitive_values: Interner,
}

/// The distinct persons of one class. Appending is cheaper than probing a hash set (the list's end
/// is likely in cache, a set's slot is not); the list is sorted and deduplicated whenever it has
/// doubled since, which bounds it to twice the distinct persons.
#[derive(Default)]
struct PersonList {
    ids: Vec<u64>,
    /// Length after the last deduplication (`ids[..sorted]` is sorted and distinct).
    sorted: usize,
}

impl PersonList {
    fn add(&mut self, person: u64) {
        // A person's rows are often neighbours (an extract sorted by patient): a repeat of the
        // last person added needs no entry.
        if self.ids.last() == Some(&person) {
            return;
        }
        self.ids.push(person);
        if self.ids.len() >= 2 * self.sorted.max(32) {
            self.ids.sort_unstable();
            self.ids.dedup();
            self.sorted = self.ids.len();
        }
    }

    fn distinct(&self) -> usize {
        if self.ids.len() == self.sorted {
            return self.sorted;
        }
        let mut ids = self.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

impl TextClassCounter {
    /// The class of interned `ids`, created when new.
    fn class(&mut self, ids: &[u32]) -> u32 {
        let next = self.keys.len() as u32;
        let class = if ids.len() <= 4 {
            let key = ids.iter().fold(0u128, |key, &id| key << 32 | id as u128);
            *self.narrow.entry(key).or_insert(next)
        } else {
            match self.wide.get(ids) {
                Some(&c) => c,
                None => *self.wide.entry(ids.into()).or_insert(next),
            }
        };
        if class == next {
            self.keys.push(ids.into());
            self.records.push(0);
            self.sensitive.push(HashMap::default());
        }
        class
    }

    /// Adds rows: row r of `quasi[j]` is row r's value of quasi-identifier j.
    pub fn add(
        &mut self,
        quasi: &[&StringChunked],
        person: Option<&StringChunked>,
        sensitive: Option<&StringChunked>,
    ) {
        use rayon::prelude::*;
        self.columns.resize_with(quasi.len(), Interner::default);
        let rows = quasi.first().map_or(0, |c| c.len());
        // Each column interned on a thread of its own, persons hashed and sensitive values interned
        // alongside; then each row's class is looked up, and its person counted in parallel shards.
        let sensitive_values = &mut self.sensitive_values;
        let columns = &mut self.columns;
        let interned = || -> Vec<Vec<u32>> {
            columns
                .par_iter_mut()
                .zip(quasi)
                .map(|(interner, column)| interner.ids(column))
                .collect()
        };
        let others = || {
            let hasher = foldhash::quality::FixedState::with_seed(0x5445_5854_434c_4153);
            let persons: Option<Vec<Option<u64>>> = person.map(|p| {
                let Ok(hashes) = by_run(p, |_, v| {
                    Ok::<_, Infallible>(v.map(|v| hasher.hash_one(v.text)))
                });
                hashes
            });
            // A missing sensitive value is counted as the empty text.
            let sensitive_ids: Option<Vec<u32>> = sensitive.map(|s| {
                let Ok(ids) = by_run(s, |_, v| {
                    Ok::<_, Infallible>(sensitive_values.id(Some(v.unwrap_or(TextValue::new("")))))
                });
                ids
            });
            (persons, sensitive_ids)
        };
        let (ids, (persons, sensitive_ids)) = rayon::join(interned, others);
        let mut key: Vec<u32> = vec![0; quasi.len()];
        let mut classes = Vec::with_capacity(rows);
        for r in 0..rows {
            for (k, column) in key.iter_mut().zip(&ids) {
                *k = column[r];
            }
            let c = match classes.last() {
                Some(&c) if r > 0 && ids.iter().all(|column| column[r] == column[r - 1]) => c,
                _ => self.class(&key),
            };
            self.records[c as usize] += 1;
            if let Some(s) = &sensitive_ids {
                *self.sensitive[c as usize].entry(s[r]).or_default() += 1;
            }
            classes.push(c);
        }
        if let Some(persons) = persons {
            let shards = rayon::current_num_threads().max(1);
            self.persons.resize_with(shards, Vec::new);
            let (shards, count) = (self.persons.len(), self.keys.len());
            self.persons
                .par_iter_mut()
                .enumerate()
                .for_each(|(shard, lists)| {
                    // Shard s holds classes s, s + shards, …, at index class / shards.
                    lists.resize_with((count + shards - 1 - shard) / shards, PersonList::default);
                    for (&c, p) in classes.iter().zip(&persons) {
                        let c = c as usize;
                        if let Some(p) = *p
                            && c % shards == shard
                        {
                            lists[c / shards].add(p);
                        }
                    }
                });
        }
    }

    /// Every class: its quasi-identifier texts and statistics.
    pub fn classes(&self) -> impl Iterator<Item = (Vec<Option<&str>>, TextClass)> {
        let mut persons = vec![0u64; self.keys.len()];
        let shards = self.persons.len();
        for (shard, lists) in self.persons.iter().enumerate() {
            for (i, list) in lists.iter().enumerate() {
                persons[i * shards + shard] = list.distinct() as u64;
            }
        }
        self.keys.iter().enumerate().map(move |(c, key)| {
            let texts = key
                .iter()
                .zip(&self.columns)
                .map(|(&id, interner)| interner.text(id))
                .collect();
            let class = TextClass {
                id: c as u32,
                records: self.records[c],
                persons: persons[c],
            };
            (texts, class)
        })
    }

    /// A class's records per sensitive value.
    pub fn sensitive(&self, class: TextClass) -> impl Iterator<Item = (&str, u64)> {
        self.sensitive[class.id as usize]
            .iter()
            .map(|(&id, &n)| (self.sensitive_values.text(id).unwrap_or_default(), n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::NewChunkedArray;

    fn class(records: u64, size: u64) -> ClassSize {
        ClassSize {
            records,
            size,
            population: None,
        }
    }

    #[test]
    fn prosecutor_risks_follow_class_sizes() {
        // Classes of 1, 2 and 5 persons holding 1, 4 and 5 records.
        let r = RiskSummary::of([class(1, 1), class(4, 2), class(5, 5)], true, Some(3), 0.2);
        assert_eq!((r.records, r.classes, r.smallest_class), (10, 3, 1));
        assert_eq!(r.sample_uniques, 1);
        assert_eq!(r.records_in_classes_below_k, Some(5));
        assert_eq!(r.prosecutor_highest, 1.0);
        // (1 × 1 + 4 × ½ + 5 × ⅕) / 10 = 0.4
        assert!((r.prosecutor_average - 0.4).abs() < 1e-15);
        // Risk above 0.2: the classes of 1 and 2 persons.
        assert_eq!(r.records_at_risk, 5);
        assert_eq!(r.class_sizes[0].classes, 1);
        assert_eq!(r.class_sizes[4].records, 5);
    }

    #[test]
    fn population_gives_journalist_and_marketer_risk() {
        let c = |records, size, population| ClassSize {
            records,
            size,
            population: Some(population),
        };
        let r = RiskSummary::of([c(2, 2, 10), c(3, 3, 4)], false, None, 0.2);
        assert_eq!(r.journalist_highest, Some(0.25));
        // (2/10 + 3/4) / 5 = 0.19
        assert!((r.marketer.unwrap() - 0.19).abs() < 1e-15);
    }

    #[test]
    fn text_counter_agrees_with_sets_over_batches() {
        use rand::{RngExt, SeedableRng};
        use std::collections::{BTreeMap, BTreeSet};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(5);
        let texts = ["a", "b", "c"];
        let mut counter = TextClassCounter::default();
        let mut expected: BTreeMap<Vec<Option<&str>>, (u64, BTreeSet<&str>)> = BTreeMap::new();
        let persons: Vec<String> = (0..500).map(|p| format!("p{p}")).collect();
        for _ in 0..4 {
            let rows = 3000;
            let pick = |rng: &mut rand::rngs::ChaCha8Rng| {
                // Runs of equal values, and nulls, as deliveries hold them.
                let i = rng.random_range(0..4usize);
                texts.get(i).copied()
            };
            let mut quasi = [Vec::new(), Vec::new()];
            let mut person = Vec::new();
            for _ in 0..rows {
                let repeat = rng.random_range(0..3) == 0 && !person.is_empty();
                let (q0, q1, p) = if repeat {
                    (
                        *quasi[0].last().unwrap(),
                        *quasi[1].last().unwrap(),
                        *person.last().unwrap(),
                    )
                } else {
                    let p = &persons[rng.random_range(0..persons.len())];
                    (pick(&mut rng), pick(&mut rng), Some(p.as_str()))
                };
                quasi[0].push(q0);
                quasi[1].push(q1);
                person.push(p);
                let e = expected.entry(vec![q0, q1]).or_default();
                e.0 += 1;
                e.1.insert(p.unwrap());
            }
            let column = |values: &[Option<&str>]| {
                StringChunked::from_iter_options("c".into(), values.iter().copied())
            };
            let (q0, q1) = (column(&quasi[0]), column(&quasi[1]));
            counter.add(&[&q0, &q1], Some(&column(&person)), None);
        }
        let counted: BTreeMap<Vec<Option<&str>>, (u64, u64)> = counter
            .classes()
            .map(|(key, c)| (key, (c.records, c.persons)))
            .collect();
        let expected: BTreeMap<Vec<Option<&str>>, (u64, u64)> = expected
            .into_iter()
            .map(|(key, (records, persons))| (key, (records, persons.len() as u64)))
            .collect();
        assert_eq!(counted, expected);
    }

    /// A class's person list counts what a set would, through many rounds of deduplication, whether
    /// persons repeat a lot (small pool) or hardly (large pool).
    #[test]
    fn person_lists_count_distinct_persons() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(64);
        for pool in [1u64, 10, 1000, 1 << 40] {
            let mut list = PersonList::default();
            let mut set = std::collections::BTreeSet::new();
            for i in 0..20_000 {
                let p = rng.random_range(0..pool);
                list.add(p);
                set.insert(p);
                if i % 997 == 0 {
                    assert_eq!(list.distinct(), set.len(), "pool {pool}, after {i}");
                }
            }
            assert_eq!(list.distinct(), set.len(), "pool {pool}");
            assert!(
                list.ids.len() <= 2 * set.len().max(32),
                "pool {pool}: list bounded"
            );
        }
    }

    #[test]
    fn interned_ids_tell_short_and_long_texts_apart() {
        let mut interner = Interner::default();
        let texts = [
            "",
            "a",
            "a\0",
            "ab",
            "abcdefghijkl",
            "abcdefghijklm",
            "abcdefghijklmno",
            "abcdefghijklmnop",
            "é",
            "e",
            "75",
            "750",
        ];
        let ids: Vec<u32> = texts
            .iter()
            .map(|t| interner.id(Some(TextValue::new(t))))
            .collect();
        let distinct: std::collections::HashSet<u32> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), texts.len());
        for (t, &id) in texts.iter().zip(&ids) {
            assert_eq!(interner.id(Some(TextValue::new(t))), id);
            assert_eq!(interner.text(id), Some(*t));
        }
        assert_eq!(interner.id(None), u32::MAX);
    }

    #[test]
    fn text_counter_counts_persons_and_values() {
        let mut t = TextClassCounter::default();
        let column = |values: [Option<&str>; 4]| {
            StringChunked::from_iter_options("c".into(), values.into_iter())
        };
        t.add(
            &[&column([Some("a"), Some("a"), Some("b"), None])],
            Some(&column([Some("p1"), Some("p1"), Some("p2"), Some("p3")])),
            Some(&column([Some("x"), Some("y"), Some("x"), None])),
        );
        let classes: HashMap<Vec<Option<&str>>, TextClass> = t.classes().collect();
        let a = classes[&vec![Some("a")]];
        assert_eq!((a.records, a.persons), (2, 1));
        let mut values: Vec<(&str, u64)> = t.sensitive(a).collect();
        values.sort();
        assert_eq!(values, vec![("x", 1), ("y", 1)]);
        assert_eq!(classes[&vec![None]].records, 1);
    }
}
