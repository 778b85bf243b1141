//! Optimal search of the generalisation lattice: the feasible transformation with the lowest score.
//!
//! The lattice (one level per quasi-identifier, each between the permit's pinned or capped bounds) is
//! walked as an enumeration tree: a node's children raise one column at or after the column its parent
//! raised, so each transformation is visited once and a subtree holds only transformations at least as
//! general as its root. A child's classes are rolled up from its parent's, never recomputed from the
//! rows. Two rules prune, both exact:
//! - **bound**: every metric here has a lower bound that never decreases up the lattice (for NUE,
//!   precision, height and loss it is known from the levels alone); a subtree whose root's bound
//!   exceeds the best score found holds no better transformation;
//! - **monotone metric**: once a node is evaluated with a monotone metric, its score bounds its subtree;
//!   for the others, an evaluation gives a bound that does (NUE-mono for NUE, rows / all classes for
//!   AECS, DM* for DM, the loss of generalisation alone for loss).
//! - **monotone models** (k-anonymity and distinct ℓ-diversity; every model without suppression): a
//!   subtree's most general member is its root with every column it may still raise at its maximum;
//!   when that member is infeasible, so is the whole subtree. Under the other models (entropy
//!   ℓ-diversity, t-closeness with suppression) the same holds of their monotone part: classes too
//!   small for k, or with fewer rows than ℓ, are suppressed whatever their sensitive values, so a
//!   member whose small classes alone exceed the budget rules out its subtree (as ARX prunes).
//!
//! Children are explored in parallel (rayon). The answer does not depend on the order: among the
//! feasible transformations of lowest score the lexicographically smallest level vector is returned,
//! and no pruning can remove it (a pruned subtree scores strictly worse, or lies above a node that
//! ties and is smaller).
//!
//! A [`Budget`] makes the search best-effort: it stops once the budget is spent, walking children on
//! one thread in a fixed order (so a node budget gives the same answer every time), and reports the
//! least lower bound of the subtrees it left unexplored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::privacy::table::{Evaluation, Groups, Levels, Metric, Models, Table};

/// The range of levels the permit allows per quasi-identifier (a pinned level has min = max).
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    pub min: Levels,
    pub max: Levels,
}

impl Bounds {
    /// Every level of every hierarchy.
    pub fn full(table: &Table) -> Bounds {
        Bounds {
            min: vec![0; table.quasi_identifiers()],
            max: table.heights().iter().map(|h| h - 1).collect(),
        }
    }

    /// Number of transformations in the lattice.
    pub fn size(&self) -> u128 {
        self.min
            .iter()
            .zip(&self.max)
            .map(|(&a, &b)| (b - a) as u128 + 1)
            .product()
    }
}

/// What the search found and how much of the lattice it had to look at.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub optimum: Option<Evaluation>,
    pub lattice_size: u128,
    pub evaluated: u64,
    /// Whether the whole lattice was searched (or pruned): the optimum is then the optimum.
    pub complete: bool,
    /// When the budget stopped the search: no transformation scores below this (the least lower
    /// bound of what was left unexplored, or the best score found if lower).
    pub lower_bound: Option<f64>,
}

/// How much a best-effort search may do before it stops and returns the best transformation found.
/// A node budget is reproducible (a budgeted search walks the lattice on one thread, in a fixed
/// order); a time budget depends on the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    pub nodes: Option<u64>,
    pub seconds: Option<f64>,
}

impl Budget {
    pub fn bounded(&self) -> bool {
        self.nodes.is_some() || self.seconds.is_some()
    }
}

/// What a running search has done so far, for a progress display: transformations evaluated, and
/// the best feasible score found.
pub struct Watch {
    evaluated: AtomicU64,
    /// Bits of the best feasible score so far (scores are ≥ 0, so bit order is numeric order).
    best: AtomicU64,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            evaluated: AtomicU64::new(0),
            best: AtomicU64::new(f64::INFINITY.to_bits()),
        }
    }
}

impl Watch {
    pub fn evaluated(&self) -> u64 {
        self.evaluated.load(Ordering::Relaxed)
    }

    /// The best feasible score so far; None before a feasible transformation is found.
    pub fn best(&self) -> Option<f64> {
        Some(f64::from_bits(self.best.load(Ordering::Relaxed))).filter(|b| b.is_finite())
    }
}

struct Shared<'a> {
    table: &'a Table,
    models: &'a Models,
    metric: Metric,
    bounds: &'a Bounds,
    watch: &'a Watch,
    optimum: Mutex<Option<Evaluation>>,
    /// Everything below a known infeasible transformation is infeasible: with monotone models, any
    /// infeasible one; otherwise one whose undersized classes alone exceed the budget…
    infeasible: Known,
    /// …and everything above a known feasible one feasible (with non-monotone models: everything
    /// above one whose undersized classes fit the budget has no more undersized rows).
    feasible: Known,
    suppression_budget: u64,
    budget: Budget,
    deadline: Option<Instant>,
    evaluated_before: u64,
    /// Bits of the least lower bound of the subtrees the budget left unexplored (scores are ≥ 0).
    unexplored: AtomicU64,
}

/// A frontier of transformations known (in)feasible, none implied by another.
struct Known {
    /// Whether the frontier implies what lies above its members (feasible) or below (infeasible).
    upwards: bool,
    packing: Packing,
    /// Each member as `packing.words` packed words.
    members: RwLock<Vec<u128>>,
}

/// Level vectors packed into 128-bit words, one field per level with a guard bit on top, so that
/// "every level of a at least b's" is one subtraction per word: (a | guards) − b keeps every guard
/// set exactly when no field borrows (the frontier is scanned on every visit of a wide lattice).
#[derive(Debug, Clone, Copy)]
struct Packing {
    width: u32,
    per_word: usize,
    words: usize,
    guards: u128,
}

impl Packing {
    fn new(bounds: &Bounds) -> Packing {
        let highest = bounds.max.iter().copied().max().unwrap_or(0);
        let width = if highest < 128 { 8 } else { 16 };
        let per_word = (128 / width) as usize;
        let guards = (0..per_word as u32).fold(0u128, |g, i| g | 1 << (i * width + width - 1));
        Packing {
            width,
            per_word,
            words: bounds.max.len().div_ceil(per_word).max(1),
            guards,
        }
    }

    fn pack(&self, levels: &[u8]) -> Vec<u128> {
        let mut words = vec![0u128; self.words];
        for (i, &l) in levels.iter().enumerate() {
            words[i / self.per_word] |= (l as u128) << ((i % self.per_word) as u32 * self.width);
        }
        words
    }

    /// Whether every level of `a` is at least `b`'s.
    fn at_least(&self, a: &[u128], b: &[u128]) -> bool {
        a.iter()
            .zip(b)
            .all(|(&x, &y)| ((x | self.guards) - y) & self.guards == self.guards)
    }
}

impl Known {
    fn new(upwards: bool, packing: Packing) -> Known {
        Known {
            upwards,
            packing,
            members: RwLock::new(Vec::new()),
        }
    }

    /// Whether packed `levels` is implied by packed `member`.
    fn implied(&self, levels: &[u128], member: &[u128]) -> bool {
        if self.upwards {
            self.packing.at_least(levels, member)
        } else {
            self.packing.at_least(member, levels)
        }
    }

    fn implies(&self, levels: &[u8]) -> bool {
        let levels = self.packing.pack(levels);
        let members = self.members.read().expect("no panics while held");
        members
            .chunks_exact(self.packing.words)
            .any(|m| self.implied(&levels, m))
    }

    fn insert(&self, levels: &[u8]) {
        let levels = self.packing.pack(levels);
        let mut members = self.members.write().expect("no panics while held");
        // Members the new one implies leave; the rest move up in place.
        let width = self.packing.words;
        let mut kept = 0;
        for at in (0..members.len()).step_by(width) {
            if !self.implied(&members[at..at + width], &levels) {
                members.copy_within(at..at + width, kept);
                kept += width;
            }
        }
        members.truncate(kept);
        members.extend(levels);
    }
}

impl Shared<'_> {
    fn best(&self) -> f64 {
        f64::from_bits(self.watch.best.load(Ordering::Relaxed))
    }

    fn offer(&self, e: Evaluation) {
        let mut optimum = self.optimum.lock().expect("no panics while held");
        let better = optimum
            .as_ref()
            .is_none_or(|o| (e.score, &e.levels) < (o.score, &o.levels));
        if better {
            self.watch
                .best
                .fetch_min(e.score.to_bits(), Ordering::Relaxed);
            *optimum = Some(e);
        }
    }

    fn evaluate(&self, levels: &[u8], groups: &Groups) -> Evaluation {
        self.watch.evaluated.fetch_add(1, Ordering::Relaxed);
        let e = self
            .table
            .evaluate_for_search(levels, groups, self.models, self.metric);
        if self.rules_out_below(&e) {
            self.infeasible.insert(levels);
        } else {
            self.feasible.insert(levels);
        }
        e
    }

    /// Whether `e` makes every less general transformation infeasible: with monotone models when it
    /// is infeasible, otherwise when its classes too small for k or ℓ alone need more suppression
    /// than allowed.
    fn rules_out_below(&self, e: &Evaluation) -> bool {
        if self.models.monotone() {
            !e.feasible
        } else {
            e.undersized_rows > self.suppression_budget
        }
    }

    /// Whether the search budget is spent.
    fn exhausted(&self) -> bool {
        self.budget
            .nodes
            .is_some_and(|n| self.watch.evaluated() - self.evaluated_before >= n)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Visits `levels`, given the groups of an ancestor (`from`, possibly itself), and explores its
    /// children. `inherited` is a lower bound of every score in the subtree, known from above.
    fn visit(
        &self,
        levels: Levels,
        from: &[u8],
        groups: &Groups,
        first_column: usize,
        inherited: f64,
    ) {
        if self.exhausted() {
            let bound = self
                .table
                .bound(self.metric, &levels)
                .map_or(inherited, |b| b.max(inherited));
            self.unexplored
                .fetch_min(bound.max(0.0).to_bits(), Ordering::Relaxed);
            return;
        }
        // The subtree's most general member first, rolled up from the ancestor: when it is infeasible
        // (with non-monotone models: undersized) the whole subtree is pruned before this
        // transformation is even counted.
        let mut top = levels.clone();
        top[first_column..].copy_from_slice(&self.bounds.max[first_column..]);
        if top != levels {
            if self.infeasible.implies(&top) {
                return;
            }
            if !self.feasible.implies(&top) {
                let g = self.table.project(groups, from, &top);
                let e = self.evaluate(&top, &g);
                if self.rules_out_below(&e) {
                    return;
                }
            }
        }
        let columns: Vec<usize> = (first_column..levels.len())
            .filter(|&j| levels[j] < self.bounds.max[j])
            .collect();
        // A transformation known infeasible needs no counting; its groups are still rolled up for its
        // children, which cost less to roll up from them than from a farther ancestor.
        let known_infeasible = self.infeasible.implies(&levels);
        if known_infeasible && columns.is_empty() {
            return;
        }
        let own = self.table.project(groups, from, &levels);
        let mut below = inherited;
        if !known_infeasible {
            let e = self.evaluate(&levels, &own);
            below = below.max(e.bound);
            if e.feasible {
                self.offer(e);
                if self.metric.monotone() {
                    return;
                }
            }
            if below > self.best() {
                return;
            }
        }
        let explore = |column: usize| {
            let mut child = levels.clone();
            child[column] += 1;
            if let Some(bound) = self.table.bound(self.metric, &child)
                && bound > self.best()
            {
                return;
            }
            self.visit(child, &levels, &own, column, below);
        };
        if self.budget.bounded() {
            columns.into_iter().for_each(explore);
        } else {
            columns.into_par_iter().for_each(explore);
        }
    }
}

/// Finds the optimal transformation within `bounds`; `None` when no transformation is feasible.
pub fn search(table: &Table, models: &Models, metric: Metric, bounds: &Bounds) -> Outcome {
    search_watched(
        table,
        models,
        metric,
        bounds,
        Budget::default(),
        &Watch::default(),
    )
}

/// [`search`] within `budget`, telling `watch` what it has done so far (from the search's threads).
pub fn search_watched(
    table: &Table,
    models: &Models,
    metric: Metric,
    bounds: &Bounds,
    budget: Budget,
    watch: &Watch,
) -> Outcome {
    // The best score prunes the search: one left by an earlier search must not.
    watch.best.store(f64::INFINITY.to_bits(), Ordering::Relaxed);
    let evaluated_before = watch.evaluated();
    let shared = Shared {
        table,
        models,
        metric,
        bounds,
        watch,
        optimum: Mutex::new(None),
        infeasible: Known::new(false, Packing::new(bounds)),
        feasible: Known::new(true, Packing::new(bounds)),
        suppression_budget: table.suppression_budget(models),
        budget,
        deadline: budget
            .seconds
            .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0))),
        evaluated_before,
        unexplored: AtomicU64::new(f64::INFINITY.to_bits()),
    };
    let zero = vec![0; table.quasi_identifiers()];
    shared.visit(bounds.min.clone(), &zero, table.base(), 0, 0.0);
    let optimum = shared.optimum.into_inner().expect("no panics while held");
    let unexplored = f64::from_bits(shared.unexplored.load(Ordering::Relaxed));
    // Complete also when nothing left unexplored could score below the best found.
    let complete = optimum
        .as_ref()
        .map_or(unexplored.is_infinite(), |o| o.score <= unexplored);
    Outcome {
        lower_bound: (!complete).then(|| {
            optimum
                .as_ref()
                .map_or(unexplored, |o| o.score.min(unexplored))
        }),
        optimum,
        lattice_size: bounds.size(),
        evaluated: watch.evaluated() - evaluated_before,
        complete,
    }
}

/// Every transformation of the lattice, each evaluated from the level-0 groups: the reference the
/// search is tested against, and the full picture for small lattices.
pub fn evaluate_all(
    table: &Table,
    models: &Models,
    metric: Metric,
    bounds: &Bounds,
) -> Vec<Evaluation> {
    let zero = vec![0; table.quasi_identifiers()];
    all_nodes(bounds)
        .into_par_iter()
        .map(|levels| {
            let groups = table.project(table.base(), &zero, &levels);
            table.evaluate(&levels, &groups, models, metric)
        })
        .collect()
}

fn all_nodes(bounds: &Bounds) -> Vec<Levels> {
    let mut nodes = vec![bounds.min.clone()];
    for j in 0..bounds.min.len() {
        nodes = nodes
            .into_iter()
            .flat_map(|n| {
                (bounds.min[j]..=bounds.max[j]).map(move |l| {
                    let mut m = n.clone();
                    m[j] = l;
                    m
                })
            })
            .collect();
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// The packed comparison agrees with comparing level by level: 8-bit fields in one word, several
    /// words (20 quasi-identifiers), and 16-bit fields once a level reaches 128.
    #[test]
    fn packed_levels_compare_as_level_vectors() {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(128);
        for (q, top) in [(3usize, 4u8), (16, 127), (20, 6), (5, 200), (9, 255)] {
            let bounds = Bounds {
                min: vec![0; q],
                max: vec![top; q],
            };
            let packing = Packing::new(&bounds);
            for _ in 0..2000 {
                let a: Vec<u8> = (0..q).map(|_| rng.random_range(0..=top)).collect();
                // Often close to `a`, so that both outcomes are common.
                let b: Vec<u8> = a
                    .iter()
                    .map(|&l| match rng.random_range(0..4) {
                        0 => l.saturating_sub(1),
                        1 => l.saturating_add(1).min(top),
                        _ => l,
                    })
                    .collect();
                let naive = a.iter().zip(&b).all(|(x, y)| x >= y);
                assert_eq!(
                    packing.at_least(&packing.pack(&a), &packing.pack(&b)),
                    naive,
                    "{a:?} ≥ {b:?}"
                );
            }
        }
    }
}
