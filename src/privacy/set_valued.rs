//! k^m-anonymity of a set-valued attribute: the codes of a person's rows in an event table (the
//! diagnoses of their stays) seen as one set per person. Any m codes an attacker knows of a person
//! must match at least k persons. The codes are generalised globally along their hierarchy (a cut
//! of the tree: every occurrence of a code is released as the same node), chosen by the apriori
//! search of Terrovitis, Mamoulis and Kalnis ("Privacy-preserving anonymization of set-valued
//! data", VLDB 2008), and the persons still holding a rare combination are suppressed, up to a limit.
//!
//! With classes (the person table's equivalence classes), the guarantee is (k, k^m)-anonymity as
//! in SECRETA (Poulis et al.): the m codes must match k persons of the same class, so that knowing
//! a person's demographics and m of their codes still leaves k candidates.
//!
//! Supports are counted in persons, never rows: a person with two stays coded E11 holds E11 once.

use foldhash::{HashMap, HashMapExt, HashSet};
use rayon::prelude::*;

/// The thresholds: itemsets of up to `m` codes held by at least `k` persons, at most
/// `suppression_limit` of the persons suppressed.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub k: u32,
    pub m: usize,
    pub suppression_limit: f64,
}

/// A code hierarchy as a tree. The leaves (nodes `0..leaves`) are the codes met in the data; every
/// path ends at the root `*`.
#[derive(Debug)]
pub struct CodeTree {
    labels: Vec<String>,
    /// Each leaf's ancestors, its parent first and the root last.
    ancestors: Vec<Vec<u32>>,
    leaves_under: Vec<u32>,
    leaves: usize,
}

impl CodeTree {
    /// A tree from each leaf's labels, the leaf's own first and the top (`*`) last, all of the
    /// same length. An error when a group has two parents (the levels are not a hierarchy).
    pub fn new(paths: &[Vec<String>]) -> Result<CodeTree, String> {
        let depth = paths.first().map_or(0, Vec::len);
        if paths.iter().any(|p| p.len() != depth || depth < 2) {
            return Err("every code needs the same levels, the top included".into());
        }
        let mut labels: Vec<String> = Vec::new();
        let mut parent: Vec<u32> = Vec::new();
        let mut ids: HashMap<(usize, &str), u32> = HashMap::new();
        for (leaf, path) in paths.iter().enumerate() {
            if ids.insert((0, path[0].as_str()), leaf as u32).is_some() {
                return Err("a code is listed twice".into());
            }
            labels.push(path[0].clone());
            parent.push(u32::MAX);
        }
        for path in paths {
            for level in 1..depth {
                let next = ids.len() as u32;
                let id = *ids.entry((level, path[level].as_str())).or_insert_with(|| {
                    labels.push(path[level].clone());
                    parent.push(u32::MAX);
                    next
                });
                let child = ids[&(level - 1, path[level - 1].as_str())];
                match parent[child as usize] {
                    u32::MAX => parent[child as usize] = id,
                    p if p != id => {
                        return Err(format!(
                            "a group at level {} has two parents at level {level} (values not \
                             shown): its levels are not a hierarchy",
                            level - 1
                        ));
                    }
                    _ => {}
                }
            }
        }
        if ids.keys().filter(|(level, _)| *level == depth - 1).count() != 1 {
            return Err("the top level must be one value (`*`)".into());
        }
        let mut leaves_under = vec![0u32; labels.len()];
        let ancestors: Vec<Vec<u32>> = (0..paths.len() as u32)
            .map(|leaf| {
                let mut up = Vec::with_capacity(depth - 1);
                let mut node = leaf;
                while parent[node as usize] != u32::MAX {
                    node = parent[node as usize];
                    up.push(node);
                }
                up
            })
            .collect();
        for (leaf, up) in ancestors.iter().enumerate() {
            leaves_under[leaf] += 1;
            for &a in up {
                leaves_under[a as usize] += 1;
            }
        }
        Ok(CodeTree {
            labels,
            ancestors,
            leaves_under,
            leaves: paths.len(),
        })
    }

    pub fn leaves(&self) -> usize {
        self.leaves
    }

    pub fn label(&self, node: u32) -> &str {
        &self.labels[node as usize]
    }

    /// The codes under `node` (itself, for a code).
    fn codes_under(&self, node: u32) -> impl Iterator<Item = usize> + '_ {
        (0..self.leaves).filter(move |&l| l == node as usize || self.ancestors[l].contains(&node))
    }

    /// Normalised certainty penalty of releasing a node: 0 for a code, 1 for `*`.
    pub fn ncp(&self, node: u32) -> f64 {
        if self.leaves <= 1 {
            return 0.0;
        }
        (self.leaves_under[node as usize] - 1) as f64 / (self.leaves - 1) as f64
    }

    /// The nearest ancestor of cut node `node` (reached from leaf `leaf`) that covers more codes
    /// than it: raising to a group of one child would release the same codes under another name.
    fn wider_ancestor(&self, leaf: u32, node: u32) -> Option<u32> {
        let under = self.leaves_under[node as usize];
        self.ancestors[leaf as usize]
            .iter()
            .copied()
            .skip_while(|&a| a != node && node != leaf)
            .find(|&a| self.leaves_under[a as usize] > under)
    }
}

/// A global generalisation: the node each code is released as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    of_leaf: Vec<u32>,
}

impl Cut {
    /// Every code released as itself.
    pub fn identity(tree: &CodeTree) -> Cut {
        Cut {
            of_leaf: (0..tree.leaves as u32).collect(),
        }
    }

    /// The node code `leaf` is released as.
    pub fn node(&self, leaf: u32) -> u32 {
        self.of_leaf[leaf as usize]
    }

    /// Releases every code under `ancestor` as `ancestor`.
    fn raise_to(&mut self, tree: &CodeTree, ancestor: u32) {
        for leaf in tree.codes_under(ancestor) {
            self.of_leaf[leaf] = ancestor;
        }
    }

    /// Releases the codes under cut node `group` one step finer: each as the widest node below
    /// `group` on its path that covers fewer codes (or itself).
    fn split(&mut self, tree: &CodeTree, group: u32) {
        let under = tree.leaves_under[group as usize];
        for (leaf, node) in self.of_leaf.iter_mut().enumerate() {
            if *node != group {
                continue;
            }
            let below = &tree.ancestors[leaf];
            let at = below.iter().position(|&a| a == group).unwrap_or(0);
            *node = below[..at]
                .iter()
                .rev()
                .copied()
                .find(|&a| tree.leaves_under[a as usize] < under)
                .unwrap_or(leaf as u32);
        }
    }

    /// The nodes of the cut that are groups, not codes, each once, in order.
    fn groups(&self) -> Vec<u32> {
        let mut groups: Vec<u32> = self
            .of_leaf
            .iter()
            .enumerate()
            .filter(|(leaf, node)| **node != *leaf as u32)
            .map(|(_, node)| *node)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    /// How many codes are released at each height above themselves (0: as themselves).
    pub fn heights(&self, tree: &CodeTree) -> Vec<usize> {
        let depth = tree.ancestors.first().map_or(0, Vec::len) + 1;
        let mut counts = vec![0; depth];
        for (leaf, &node) in self.of_leaf.iter().enumerate() {
            let h = if node == leaf as u32 {
                0
            } else {
                1 + tree.ancestors[leaf]
                    .iter()
                    .position(|&a| a == node)
                    .unwrap_or(0)
            };
            counts[h] += 1;
        }
        counts
    }
}

/// The persons' codes: each person's distinct leaves, and the class each person belongs to.
pub struct Persons<'a> {
    pub codes: &'a [Vec<u32>],
    /// The person table's class of each person ((k, k^m)-anonymity); all one class without it.
    pub classes: Option<&'a [u32]>,
}

impl Persons<'_> {
    fn class(&self, p: usize) -> u32 {
        self.classes.map_or(0, |c| c[p])
    }

    /// Person `p`'s codes as released by `cut`, sorted, each once.
    fn released(&self, cut: &Cut, p: usize) -> Vec<u32> {
        let mut nodes: Vec<u32> = self.codes[p].iter().map(|&l| cut.node(l)).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

/// An itemset of up to four nodes with its class, as one key.
type Key = (u32, u128);

fn pack(nodes: &[u32]) -> u128 {
    nodes
        .iter()
        .fold(0u128, |key, &n| (key << 32) | (n as u128 + 1))
}

fn unpack(mut key: u128) -> Vec<u32> {
    let mut nodes = Vec::new();
    while key != 0 {
        nodes.push((key & 0xffff_ffff) as u32 - 1);
        key >>= 32;
    }
    nodes.reverse();
    nodes
}

/// Calls `each` with every combination of `size` of `items` (sorted), in order.
fn combinations(items: &[u32], size: usize, each: &mut impl FnMut(&[u32])) {
    fn walk(
        items: &[u32],
        size: usize,
        from: usize,
        chosen: &mut Vec<u32>,
        each: &mut impl FnMut(&[u32]),
    ) {
        if chosen.len() == size {
            each(chosen);
            return;
        }
        for i in from..=items.len() - (size - chosen.len()) {
            chosen.push(items[i]);
            walk(items, size, i + 1, chosen, each);
            chosen.pop();
        }
    }
    if size <= items.len() {
        walk(items, size, 0, &mut Vec::with_capacity(size), each);
    }
}

/// The number of active persons holding each itemset of `size` codes, by class.
fn supports(persons: &Persons, cut: &Cut, active: &[bool], size: usize) -> HashMap<Key, u32> {
    (0..persons.codes.len())
        .into_par_iter()
        .filter(|&p| active[p])
        .fold(HashMap::new, |mut counts, p| {
            let class = persons.class(p);
            combinations(&persons.released(cut, p), size, &mut |items| {
                *counts.entry((class, pack(items))).or_insert(0) += 1;
            });
            counts
        })
        .reduce(HashMap::new, |a, b| {
            let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (key, n) in small {
                *big.entry(key).or_insert(0) += n;
            }
            big
        })
}

/// What one check of a cut found: the smallest itemset size with a rare itemset, those itemsets
/// (rarest first), and the active persons holding one of them.
struct Rare {
    itemsets: Vec<(u32, Vec<u32>)>,
    holders: Vec<bool>,
    count: usize,
}

/// The rare itemsets of the smallest size that has any, among the active persons.
fn rare(persons: &Persons, cut: &Cut, active: &[bool], model: &Model) -> Option<Rare> {
    for size in 1..=model.m {
        let counts = supports(persons, cut, active, size);
        let mut itemsets: Vec<(u32, Key)> = counts
            .iter()
            .filter(|(_, n)| **n < model.k)
            .map(|(key, n)| (*n, *key))
            .collect();
        if itemsets.is_empty() {
            continue;
        }
        itemsets.sort_unstable();
        let rare: HashSet<Key> = itemsets.iter().map(|(_, key)| *key).collect();
        let holders: Vec<bool> = (0..persons.codes.len())
            .into_par_iter()
            .map(|p| {
                let mut holds = false;
                if active[p] {
                    let class = persons.class(p);
                    combinations(&persons.released(cut, p), size, &mut |items| {
                        holds |= rare.contains(&(class, pack(items)));
                    });
                }
                holds
            })
            .collect();
        let count = holders.iter().filter(|&&h| h).count();
        return Some(Rare {
            itemsets: itemsets
                .into_iter()
                .map(|(n, (_, key))| (n, unpack(key)))
                .collect(),
            holders,
            count,
        });
    }
    None
}

/// The persons to suppress so that `cut` holds among the others: the holders of a rare itemset,
/// again until none is left (each removal can make another itemset rare). None when they would
/// be more than `budget`.
///
/// `already`: persons known to be among them (those a coarser cut suppresses: a set of persons
/// among whom a finer cut holds is one among whom the coarser holds), left out from the start.
fn suppression(
    persons: &Persons,
    cut: &Cut,
    model: &Model,
    budget: usize,
    already: Option<&[bool]>,
) -> Option<Vec<bool>> {
    let mut active: Vec<bool> = match already {
        Some(gone) => gone.iter().map(|g| !g).collect(),
        None => vec![true; persons.codes.len()],
    };
    let mut removed = active.iter().filter(|a| !**a).count();
    while let Some(r) = rare(persons, cut, &active, model) {
        removed += r.count;
        if removed > budget {
            return None;
        }
        for (a, h) in active.iter_mut().zip(r.holders) {
            *a &= !h;
        }
    }
    Some(active.into_iter().map(|a| !a).collect())
}

/// The chosen generalisation and the persons suppressed.
#[derive(Debug)]
pub struct Anonymised {
    pub cut: Cut,
    /// For each person, whether they are suppressed.
    pub suppressed: Vec<bool>,
    /// Information loss: the mean normalised certainty penalty of the persons' codes (a suppressed
    /// person's count 1), 0 for the codes themselves and 1 for all `*`.
    pub loss: f64,
    /// How many times the search generalised a group of codes.
    pub generalisations: usize,
}

/// Why no cut meets the model: even all codes released as `*`, too many persons would be
/// suppressed (fewer than k persons hold a code at all, say).
#[derive(Debug)]
pub struct Infeasible {
    pub persons: usize,
    pub budget: usize,
}

/// The apriori search: starting from the codes themselves, while the persons holding a rare
/// itemset (of the smallest size that has one; sizes grow as each is settled) are more than the
/// suppression limit allows, codes are raised to the next wider group of the hierarchy. A raise
/// is ranked by the information it costs per rare itemset it touches, so that a rare code met in
/// many rare pairs is generalised before two common codes that seldom meet; each round applies
/// the best raise and those, on other codes, nearly as good. Then the holders of what remains
/// rare are suppressed, and the cut is refined ([`refine`]).
pub fn anonymise(
    tree: &CodeTree,
    persons: &Persons,
    model: &Model,
) -> Result<Anonymised, Infeasible> {
    assert!(
        (1..=crate::permit::MAX_SET_VALUED_M).contains(&model.m),
        "m is validated with the permit"
    );
    let budget = (model.suppression_limit * persons.codes.len() as f64).floor() as usize;
    let frequency = frequencies(tree, persons);
    let mut cut = Cut::identity(tree);
    let all = vec![true; persons.codes.len()];
    let mut generalisations = 0;
    while let Some(r) = rare(persons, &cut, &all, model) {
        if r.count <= budget && suppression(persons, &cut, model, budget, None).is_some() {
            break;
        }
        let raises = ranked_raises(tree, &cut, &frequency, &r.itemsets);
        let Some(&(best, _)) = raises.first() else {
            return Err(Infeasible {
                persons: r.count,
                budget,
            });
        };
        let mut claimed = vec![false; tree.leaves];
        for (ratio, to) in raises {
            if ratio > best * NEARLY_AS_GOOD {
                break;
            }
            let under: Vec<usize> = tree.codes_under(to).collect();
            if under.iter().any(|&l| claimed[l]) {
                continue;
            }
            for l in under {
                claimed[l] = true;
            }
            cut.raise_to(tree, to);
            generalisations += 1;
        }
    }
    let suppressed =
        suppression(persons, &cut, model, budget, None).expect("the search's cut holds");
    let (cut, suppressed) = refine(tree, persons, model, budget, cut, suppressed);
    let loss = loss(tree, persons, &cut, &suppressed);
    Ok(Anonymised {
        cut,
        suppressed,
        loss,
        generalisations,
    })
}

/// The search raises several groups a round, some of which a later raise makes needless: each
/// group of the cut is split one step finer again while the model still holds within the limit,
/// until no single split does (the cut is then minimal: every finer neighbour breaks the model).
/// A split first meets a quick count ([`split_breaks_at_once`]); the full check starts from the
/// persons the current cut suppresses.
fn refine(
    tree: &CodeTree,
    persons: &Persons,
    model: &Model,
    budget: usize,
    mut cut: Cut,
    mut suppressed: Vec<bool>,
) -> (Cut, Vec<bool>) {
    let mut pending = cut.groups();
    while let Some(group) = pending.pop() {
        let mut finer = cut.clone();
        finer.split(tree, group);
        if split_breaks_at_once(
            tree,
            persons,
            &cut,
            &finer,
            group,
            &suppressed,
            model,
            budget,
        ) {
            continue;
        }
        if let Some(now) = suppression(persons, &finer, model, budget, Some(&suppressed)) {
            let before = cut.groups();
            cut = finer;
            suppressed = now;
            pending.extend(cut.groups().into_iter().filter(|g| !before.contains(g)));
        }
    }
    (cut, suppressed)
}

/// Whether splitting `group` (giving `finer`) makes rare itemsets whose holders, with the persons
/// the current cut suppresses, exceed the budget: a quick refusal that counts only the persons
/// holding a code of the group and only the itemsets with one of its new nodes (their supports
/// among the persons not yet suppressed are exact: nobody else holds them). The persons
/// suppressed under `finer` include all of those, so `finer` cannot hold.
#[allow(clippy::too_many_arguments)]
fn split_breaks_at_once(
    tree: &CodeTree,
    persons: &Persons,
    cut: &Cut,
    finer: &Cut,
    group: u32,
    suppressed: &[bool],
    model: &Model,
    budget: usize,
) -> bool {
    let touched: Vec<usize> = (0..persons.codes.len())
        .into_par_iter()
        .filter(|&p| !suppressed[p] && persons.codes[p].iter().any(|&l| cut.node(l) == group))
        .collect();
    let new: HashSet<u32> = (0..tree.leaves as u32)
        .filter(|&l| cut.node(l) == group)
        .map(|l| finer.node(l))
        .collect();
    // Each touched person's itemsets that hold a new node.
    let keys: Vec<Vec<Key>> = touched
        .par_iter()
        .map(|&p| {
            let released = persons.released(finer, p);
            let class = persons.class(p);
            let mut keys = Vec::new();
            for size in 1..=model.m {
                combinations(&released, size, &mut |items| {
                    if items.iter().any(|n| new.contains(n)) {
                        keys.push((class, pack(items)));
                    }
                });
            }
            keys
        })
        .collect();
    let mut counts: HashMap<Key, u32> = HashMap::new();
    for key in keys.iter().flatten() {
        *counts.entry(*key).or_insert(0) += 1;
    }
    let holders = keys
        .iter()
        .filter(|keys| keys.iter().any(|key| counts[key] < model.k))
        .count();
    holders + suppressed.iter().filter(|s| **s).count() > budget
}

/// How much worse than the best a raise may be to be applied in the same round.
const NEARLY_AS_GOOD: f64 = 2.0;

/// Each possible raise (a node of a rare itemset to its next wider group) with the information it
/// costs per rare itemset it touches, best first.
fn ranked_raises(
    tree: &CodeTree,
    cut: &Cut,
    frequency: &[u64],
    itemsets: &[(u32, Vec<u32>)],
) -> Vec<(f64, u32)> {
    // A leaf under each node of the cut, to find the node's path.
    let mut leaf_of: HashMap<u32, u32> = HashMap::new();
    for leaf in 0..tree.leaves as u32 {
        leaf_of.entry(cut.node(leaf)).or_insert(leaf);
    }
    let mut touched: HashMap<u32, u32> = HashMap::new();
    for (_, itemset) in itemsets {
        for &node in itemset {
            if let Some(to) = tree.wider_ancestor(leaf_of[&node], node) {
                *touched.entry(to).or_insert(0) += 1;
            }
        }
    }
    let mut ranked: Vec<(f64, u32)> = touched
        .into_iter()
        .map(|(to, n)| (cost(tree, cut, frequency, to) / n as f64, to))
        .collect();
    ranked.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    ranked
}

/// How many persons hold each code.
fn frequencies(tree: &CodeTree, persons: &Persons) -> Vec<u64> {
    let mut frequency = vec![0u64; tree.leaves];
    for codes in persons.codes {
        for &leaf in codes {
            frequency[leaf as usize] += 1;
        }
    }
    frequency
}

/// The information lost by releasing every code under `to` as `to`.
fn cost(tree: &CodeTree, cut: &Cut, frequency: &[u64], to: u32) -> f64 {
    let target = tree.ncp(to);
    tree.codes_under(to)
        .map(|l| frequency[l] as f64 * (target - tree.ncp(cut.node(l as u32))))
        .sum()
}

/// The mean penalty of the persons' codes under `cut`, a suppressed person's codes counting 1.
pub fn loss(tree: &CodeTree, persons: &Persons, cut: &Cut, suppressed: &[bool]) -> f64 {
    let (mut lost, mut total) = (0.0, 0usize);
    for (codes, &gone) in persons.codes.iter().zip(suppressed) {
        total += codes.len();
        lost += codes
            .iter()
            .map(|&l| if gone { 1.0 } else { tree.ncp(cut.node(l)) })
            .sum::<f64>();
    }
    if total == 0 { 0.0 } else { lost / total as f64 }
}

/// The itemsets of up to m codes held by fewer than k of the persons not suppressed (by class),
/// and how many persons hold one: 0 when the cut meets the model.
pub fn persons_at_risk(persons: &Persons, cut: &Cut, suppressed: &[bool], model: &Model) -> usize {
    let active: Vec<bool> = suppressed.iter().map(|s| !s).collect();
    rare(persons, cut, &active, model).map_or(0, |r| r.count)
}

/// What a dataset's set-valued attribute was released under, for the report and the manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    /// The delivered column whose codes make each person's set.
    pub column: String,
    pub k: u32,
    pub m: usize,
    pub suppression_limit: f64,
    /// (k, k^m): the dataset whose classes the sets were counted within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    /// Persons holding a code in the dataset (before suppression).
    pub persons: u64,
    pub persons_suppressed: u64,
    /// Their rows, left out of the dataset.
    #[serde(default)]
    pub rows_suppressed: u64,
    /// Distinct codes, and how many are released at each height above themselves (0: as
    /// themselves; the last: `*`).
    pub codes: u64,
    pub codes_by_height: Vec<u64>,
    /// Mean normalised certainty penalty of the persons' codes (suppressed persons' count 1).
    pub information_loss: f64,
    /// Groups of codes the search raised before the cut was refined.
    pub generalisations: u64,
    /// Persons of the written file holding a set of up to m codes that fewer than k persons hold:
    /// counted again from the file, 0 or the delivery is refused.
    pub persons_at_risk_after: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> CodeTree {
        // E10, E11 under E1; I10 under I1; all under *.
        let path = |a: &str, b: &str| vec![a.to_string(), b.to_string(), "*".to_string()];
        CodeTree::new(&[path("E10", "E1"), path("E11", "E1"), path("I10", "I1")]).unwrap()
    }

    #[test]
    fn the_tree_counts_leaves_and_penalties() {
        let t = tree();
        assert_eq!(t.leaves(), 3);
        assert_eq!(t.ncp(0), 0.0);
        let e1 = t.ancestors[0][0];
        assert_eq!(t.label(e1), "E1");
        assert_eq!(t.ncp(e1), 0.5);
        assert_eq!(t.ncp(t.ancestors[0][1]), 1.0);
        // I1 has one child: raising I10 goes to * directly.
        assert_eq!(t.label(t.wider_ancestor(2, 2).unwrap()), "*");
    }

    #[test]
    fn levels_that_are_not_a_hierarchy_are_refused() {
        let path = |a: &str, b: &str, c: &str| {
            vec![a.to_string(), b.to_string(), c.to_string(), "*".into()]
        };
        let e = CodeTree::new(&[path("a1", "a", "x"), path("a2", "a", "y")]).unwrap_err();
        assert!(e.contains("two parents"), "{e}");
    }

    #[test]
    fn combinations_are_all_subsets_of_the_size() {
        let mut seen = Vec::new();
        combinations(&[1, 2, 3, 4], 2, &mut |c| seen.push(c.to_vec()));
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[0], vec![1, 2]);
        assert_eq!(seen[5], vec![3, 4]);
        assert_eq!(unpack(pack(&[0, 7, 3])), vec![0, 7, 3]);
    }

    #[test]
    fn a_rare_pair_is_generalised() {
        let t = tree();
        // Two persons hold E10 and I10, two E11 and I10: singles are held by 2, the pairs by 2.
        let codes = vec![vec![0, 2], vec![0, 2], vec![1, 2], vec![1, 2]];
        let persons = Persons {
            codes: &codes,
            classes: None,
        };
        let model = Model {
            k: 4,
            m: 2,
            suppression_limit: 0.0,
        };
        let a = anonymise(&t, &persons, &model).unwrap();
        assert_eq!(t.label(a.cut.node(0)), "E1");
        assert_eq!(a.cut.node(0), a.cut.node(1));
        assert_eq!(a.cut.node(2), 2, "I10 is held by all four");
        assert_eq!(persons_at_risk(&persons, &a.cut, &a.suppressed, &model), 0);
        assert!((a.loss - 0.25).abs() < 1e-12, "{}", a.loss);
    }
}
