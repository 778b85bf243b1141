//! k^m-anonymity search against brute force on small random data: every released combination is
//! recounted here from the definition (each subset of up to m released codes of a person, matched
//! against every other person of the same class by label), the suppressed persons are recomputed
//! as the largest set of persons among whom the model holds, and every one-step finer cut of the
//! result is tried: none may meet the model within the suppression limit (the cut is minimal).

use std::collections::{BTreeSet, HashMap};

use ehds_prep::privacy::set_valued::{self, CodeTree, Model, Persons};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// Leaf labels `c<i>`; each level above groups consecutive groups of the level below at random.
fn random_paths(rng: &mut ChaCha8Rng) -> Vec<Vec<String>> {
    let leaves = rng.random_range(3..=9usize);
    let groups_levels = rng.random_range(1..=2usize);
    let mut paths: Vec<Vec<String>> = (0..leaves).map(|i| vec![format!("c{i}")]).collect();
    let mut group_of: Vec<usize> = (0..leaves).collect();
    for level in 1..=groups_levels {
        // The groups of the level below, in order, cut into runs.
        let below: BTreeSet<usize> = group_of.iter().copied().collect();
        let mut up = HashMap::new();
        let mut g = 0;
        for (i, b) in below.iter().enumerate() {
            if i > 0 && rng.random_bool(0.5) {
                g += 1;
            }
            up.insert(*b, g);
        }
        for (leaf, path) in paths.iter_mut().enumerate() {
            group_of[leaf] = up[&group_of[leaf]];
            path.push(format!("L{level}:{}", group_of[leaf]));
        }
    }
    for p in &mut paths {
        p.push("*".into());
    }
    paths
}

struct Case {
    paths: Vec<Vec<String>>,
    codes: Vec<Vec<u32>>,
    classes: Option<Vec<u32>>,
    model: Model,
}

fn random_case(rng: &mut ChaCha8Rng) -> Case {
    let paths = random_paths(rng);
    let n = paths.len();
    let persons = rng.random_range(6..=30usize);
    let codes = (0..persons)
        .map(|_| {
            let mut c: Vec<u32> = (0..rng.random_range(1..=4usize))
                .map(|_| {
                    // Skewed: the first codes are common, the last rare.
                    let x: f64 = rng.random();
                    ((x * x) * n as f64) as u32
                })
                .collect();
            c.sort_unstable();
            c.dedup();
            c
        })
        .collect();
    let classes = rng
        .random_bool(0.4)
        .then(|| (0..persons).map(|_| rng.random_range(0..2u32)).collect());
    let model = Model {
        k: rng.random_range(2..=4),
        m: rng.random_range(1..=3),
        suppression_limit: [0.0, 0.1, 0.25][rng.random_range(0..3usize)],
    };
    Case {
        paths,
        codes,
        classes,
        model,
    }
}

impl Case {
    fn class(&self, p: usize) -> u32 {
        self.classes.as_ref().map_or(0, |c| c[p])
    }

    fn budget(&self) -> usize {
        (self.model.suppression_limit * self.codes.len() as f64).floor() as usize
    }

    /// Each person's released labels, with codes released at `heights` (steps up their path).
    fn released(&self, heights: &[usize]) -> Vec<BTreeSet<String>> {
        self.codes
            .iter()
            .map(|c| {
                c.iter()
                    .map(|&l| self.paths[l as usize][heights[l as usize]].clone())
                    .collect()
            })
            .collect()
    }

    /// Whether `p` holds a set of up to m labels that fewer than k active persons of its class hold.
    fn holds_rare(&self, sets: &[BTreeSet<String>], active: &[bool], p: usize) -> bool {
        let items: Vec<&String> = sets[p].iter().collect();
        (1u32..(1 << items.len())).any(|mask| {
            if mask.count_ones() as usize > self.model.m {
                return false;
            }
            let subset: Vec<&String> = (0..items.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| items[i])
                .collect();
            let support = (0..sets.len())
                .filter(|&q| active[q] && self.class(q) == self.class(p))
                .filter(|&q| subset.iter().all(|s| sets[q].contains(*s)))
                .count();
            support < self.model.k as usize
        })
    }

    /// The largest set of persons among whom the model holds (removing, until none is left, every
    /// person holding a rare set); None when it leaves out more than the limit allows.
    fn suppressed(&self, heights: &[usize]) -> Option<Vec<bool>> {
        let sets = self.released(heights);
        let mut active = vec![true; sets.len()];
        loop {
            let rare: Vec<usize> = (0..sets.len())
                .filter(|&p| active[p] && self.holds_rare(&sets, &active, p))
                .collect();
            if rare.is_empty() {
                break;
            }
            for p in rare {
                active[p] = false;
            }
        }
        let out: Vec<bool> = active.iter().map(|a| !a).collect();
        (out.iter().filter(|&&s| s).count() <= self.budget()).then_some(out)
    }

    /// How many leaves share label `label` at `level`.
    fn leaves_under(&self, level: usize, label: &str) -> usize {
        self.paths.iter().filter(|p| p[level] == label).count()
    }

    /// The result's heights one step finer under the group released at `leaf`'s height.
    fn split(&self, heights: &[usize], leaf: usize) -> Vec<usize> {
        let h = heights[leaf];
        let group = &self.paths[leaf][h];
        let under = self.leaves_under(h, group);
        let mut finer = heights.to_vec();
        for (l, path) in self.paths.iter().enumerate() {
            if heights[l] == h && &path[h] == group {
                finer[l] = (1..h)
                    .rev()
                    .find(|&below| self.leaves_under(below, &path[below]) < under)
                    .unwrap_or(0);
            }
        }
        finer
    }
}

#[test]
fn the_search_meets_k_m_anonymity_with_a_minimal_cut_on_random_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b6d);
    let (mut generalised, mut suppressing, mut infeasible) = (0, 0, 0);
    for case_no in 0..300 {
        let case = random_case(&mut rng);
        let tree = CodeTree::new(&case.paths).unwrap();
        let persons = Persons {
            codes: &case.codes,
            classes: case.classes.as_deref(),
        };
        let top = case.paths[0].len() - 1;
        let result = match set_valued::anonymise(&tree, &persons, &case.model) {
            Ok(r) => r,
            Err(_) => {
                // Infeasible only if even `*` for every code needs more suppression than allowed.
                assert!(
                    case.suppressed(&vec![top; case.paths.len()]).is_none(),
                    "case {case_no}: refused, but all-`*` meets the model"
                );
                infeasible += 1;
                continue;
            }
        };
        // The heights the result releases each code at, read from its labels.
        let heights: Vec<usize> = (0..case.paths.len())
            .map(|leaf| {
                let label = tree.label(result.cut.node(leaf as u32));
                case.paths[leaf]
                    .iter()
                    .position(|l| l == label)
                    .unwrap_or_else(|| panic!("case {case_no}: a code released off its path"))
            })
            .collect();
        // Global: every code under a released group is released as that group.
        for (a, pa) in case.paths.iter().enumerate() {
            for (b, pb) in case.paths.iter().enumerate() {
                let h = heights[a];
                if pa[h] == pb[h] {
                    assert_eq!(heights[b], h, "case {case_no}: not a cut");
                }
            }
        }
        let expected = case
            .suppressed(&heights)
            .unwrap_or_else(|| panic!("case {case_no}: the result breaks the model"));
        assert_eq!(
            result.suppressed, expected,
            "case {case_no}: suppressed persons"
        );
        for leaf in 0..case.paths.len() {
            if heights[leaf] > 0 {
                let finer = case.split(&heights, leaf);
                assert!(
                    case.suppressed(&finer).is_none(),
                    "case {case_no}: a finer cut {finer:?} than {heights:?} meets the model"
                );
            }
        }
        generalised += usize::from(heights.iter().any(|&h| h > 0));
        suppressing += usize::from(result.suppressed.iter().any(|&s| s));
    }
    // The random cases exercise every outcome.
    assert!(generalised > 50, "{generalised}");
    assert!(suppressing > 20, "{suppressing}");
    assert!(infeasible > 5, "{infeasible}");
}

#[test]
fn released_as_themselves_when_the_codes_already_meet_the_model() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut seen = 0;
    for _ in 0..300 {
        let case = random_case(&mut rng);
        let identity = vec![0; case.paths.len()];
        if case.suppressed(&identity) != Some(vec![false; case.codes.len()]) {
            continue;
        }
        seen += 1;
        let tree = CodeTree::new(&case.paths).unwrap();
        let persons = Persons {
            codes: &case.codes,
            classes: case.classes.as_deref(),
        };
        let r = set_valued::anonymise(&tree, &persons, &case.model).unwrap();
        assert!((0..case.paths.len() as u32).all(|l| r.cut.node(l) == l));
        assert_eq!(r.loss, 0.0);
    }
    assert!(seen > 5, "{seen}");
}
