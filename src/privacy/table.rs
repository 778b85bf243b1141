//! Privacy models and utility metrics over an encoded table of quasi-identifiers.
//!
//! The table holds each distinct combination of level-0 codes (quasi-identifiers, then the person, then
//! the sensitive value) once, with its number of rows, packed into one `u128` whose high bits are the
//! quasi-identifiers. Generalising a column rewrites its bits through the hierarchy and re-sorts; the
//! equivalence classes of a transformation are then runs of equal high bits. Every model and metric
//! is evaluated on those runs, never on raw rows.
//!
//! Rules, in the terms of ARX and the permit:
//! - an equivalence class is the set of rows with equal generalised quasi-identifiers;
//! - with a person column, a class's size for k-anonymity is its number of **distinct persons**, and a
//!   person with rows in several classes counts in each of them (every row of a delivered class is
//!   then shared by at least k persons); without one, rows are counted;
//! - ℓ-diversity and t-closeness look at the distribution of the sensitive value over the class's
//!   rows;
//! - every row of a class that violates any model is suppressed; a transformation is feasible when at
//!   most `floor(limit × rows)` rows are suppressed.

use rayon::prelude::*;

use crate::privacy::hierarchy::Hierarchy;
pub use crate::privacy::population::{Estimator, PopulationUniqueness};

/// A transformation: one generalisation level per quasi-identifier.
pub type Levels = Vec<u8>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LDiversity {
    /// At least ℓ distinct sensitive values per class.
    Distinct(u32),
    /// Shannon entropy of the sensitive values at least log(ℓ).
    Entropy(f64),
    /// Recursive (c,ℓ)-diversity (Machanavajjhala et al. 2007): with the class's value counts
    /// r1 ≥ r2 ≥ … ≥ rm, at least ℓ values and r1 < c (rℓ + … + rm): the most frequent value is
    /// rarer than c times the values beyond the ℓ − 1 most frequent.
    Recursive { c: f64, l: u32 },
}

impl LDiversity {
    /// ℓ, whatever the kind.
    pub fn l(self) -> f64 {
        match self {
            LDiversity::Distinct(l) | LDiversity::Recursive { l, .. } => l as f64,
            LDiversity::Entropy(l) => l,
        }
    }

    /// The kind, as the permit names it.
    pub fn kind(self) -> &'static str {
        match self {
            LDiversity::Distinct(_) => "distinct",
            LDiversity::Entropy(_) => "entropy",
            LDiversity::Recursive { .. } => "recursive",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TCloseness {
    /// Earth mover's distance with equal ground distance (half the L1 distance) at most t.
    Equal(f64),
    /// Earth mover's distance over the sensitive value's hierarchy at most t.
    Hierarchical(f64),
    /// Earth mover's distance with ordered ground distance (|i − j| / (m − 1) between the i-th and
    /// j-th of m values in order: numeric when every value is a number, else by text) at most t.
    Ordered(f64),
}

impl TCloseness {
    pub fn t(self) -> f64 {
        match self {
            TCloseness::Equal(t) | TCloseness::Hierarchical(t) | TCloseness::Ordered(t) => t,
        }
    }

    /// The ground distance, as the permit names it.
    pub fn kind(self) -> &'static str {
        match self {
            TCloseness::Equal(_) => "equal",
            TCloseness::Hierarchical(_) => "hierarchical",
            TCloseness::Ordered(_) => "ordered",
        }
    }
}

/// A bound on the average prosecutor risk of the kept rows (the mean over rows of 1 / their class's
/// size), as the EMA's Policy 0070 and Health Canada set it; optionally also at most
/// `records_at_risk` of the kept rows in classes whose risk exceeds `highest` (ARX's
/// `AverageReidentificationRisk`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AverageRisk {
    pub average: f64,
    pub highest: Option<HighestRisk>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HighestRisk {
    pub risk: f64,
    pub records_at_risk: f64,
}

impl HighestRisk {
    /// The smallest class size whose risk 1 / size is at most `risk` (a relative tolerance of
    /// 1e-9 keeps 1/3 from meaning 4).
    pub fn least_size(&self) -> u64 {
        let size = 1.0 / self.risk;
        let floor = size.floor();
        if 1.0 / floor - self.risk >= 1e-9 * self.risk {
            floor as u64 + 1
        } else {
            floor as u64
        }
    }
}

/// k-map estimated from the population (ARX's `KMap` with an estimator): every class of the sample
/// stands for at least k persons of a population of `population`, at significance `significance`,
/// with the population's class sizes modelled as Poisson (or zero-truncated Poisson) of mean
/// k × sampling fraction. It holds as k'-anonymity of the sample, k' derived from that model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMap {
    pub k: u32,
    pub population: u64,
    pub significance: f64,
    pub zero_truncated: bool,
}

impl KMap {
    /// k' for a sample of `rows` (ARX's derivation): the smallest class size at which the estimated
    /// probability that the class's population count reaches k is at least 1 − significance, never
    /// above k nor above the sample.
    pub fn derived_k(&self, rows: u64) -> u64 {
        let lambda = rows as f64 / self.population as f64 * self.k as f64;
        let threshold = 1.0 - self.significance;
        let k = self.k as u64;
        // P(i) = e^−λ λ^i / i!, called for i = 0, 1, 2, … in turn: carried from one to the next in
        // logs, so that it stays finite for any λ.
        let mut ln_p = -lambda;
        let mut next = |i: u64| {
            if i > 0 {
                ln_p += lambda.ln() - (i as f64).ln();
            }
            ln_p.exp()
        };
        let derived = if self.zero_truncated {
            let positive = 1.0 - next(0);
            let (mut counter, mut value) = (1u64, 0.0);
            while value < threshold {
                value += next(counter) / positive;
                counter += 1;
                if counter >= k {
                    break;
                }
            }
            counter
        } else {
            let (mut counter, mut cumulative) = (0u64, 0.0);
            loop {
                cumulative += next(counter);
                counter += 1;
                if cumulative >= threshold || counter >= k {
                    break;
                }
            }
            counter + 1
        };
        derived.min(rows).min(k)
    }
}

/// δ-presence: in every class of the population, the share of its rows that are delivered lies
/// between `min` and `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeltaPresence {
    pub min: f64,
    pub max: f64,
}

impl DeltaPresence {
    /// Whether a class of `delivered` rows among `population` meets it.
    pub fn holds(&self, delivered: u64, population: u64) -> bool {
        let delta = if delivered == 0 {
            0.0
        } else {
            delivered as f64 / population as f64
        };
        delta >= self.min && delta <= self.max
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Models {
    pub k: Option<u32>,
    /// k-map, enforced as k'-anonymity ([`KMap::derived_k`]).
    pub k_map: Option<KMap>,
    pub l_diversity: Option<LDiversity>,
    pub t_closeness: Option<TCloseness>,
    /// Risk-based models, which hold over all kept rows rather than class by class: after the
    /// class-based models, the smallest kept classes are suppressed until they hold.
    pub average_risk: Option<AverageRisk>,
    /// At most this share of the kept rows in classes of one person (rows without a person column).
    pub sample_uniqueness: Option<f64>,
    /// At most this share of the population unique, as estimated from the kept classes' sizes.
    pub population_uniqueness: Option<PopulationUniqueness>,
    /// With a research subset: every delivered class holds at least this many rows of the
    /// population (k-map counted in the population table).
    pub population_k: Option<u32>,
    /// With a research subset: δ-presence.
    pub delta_presence: Option<DeltaPresence>,
    /// Fraction of rows that may be suppressed, in [0, 1].
    pub suppression_limit: f64,
}

impl Models {
    /// Whether every transformation more general than a feasible one is feasible. True for
    /// k-anonymity and distinct ℓ-diversity with suppression (a merged class never holds fewer persons
    /// or distinct values than either part, so no row that was kept becomes suppressed) and, without
    /// suppression, for every model here (a merged class's entropy never falls below the smaller of
    /// its parts', and its distance to the table never exceeds the larger). With suppression,
    /// merging a violating class into a compliant one can make both violate entropy ℓ-diversity or
    /// t-closeness.
    /// An estimate of population uniqueness may rise or fall as classes merge (its fitted
    /// parameters move), with or without suppression: never monotone.
    /// Nor is δ-presence: suppressing a class changes no population count, and where persons count,
    /// a person in both merged classes counts once, so a merged class's share need not lie between
    /// its parts' (even without suppression).
    pub fn monotone(&self) -> bool {
        let monotone_l = matches!(self.l_diversity, None | Some(LDiversity::Distinct(_)));
        ((monotone_l && self.t_closeness.is_none()) || self.suppression_limit == 0.0)
            && self.population_uniqueness.is_none()
            && self.delta_presence.is_none()
    }

    /// Whether a model counts classes in the population of a research subset.
    pub fn counts_population(&self) -> bool {
        self.population_k.is_some() || self.delta_presence.is_some()
    }

    /// The fewest persons (rows without a person column) a class of a table of `rows` rows must
    /// hold: k, or k-map's k' if larger.
    pub fn least_size(&self, rows: u64) -> Option<u64> {
        let k = self.k.map(u64::from);
        let derived = self.k_map.map(|m| m.derived_k(rows));
        k.max(derived)
    }

    /// The fewest rows a class may hold under ℓ-diversity (ℓ distinct values need ℓ rows): with
    /// `least_size`, the part of the models that stays monotone with suppression, which prunes the
    /// search when the whole is not.
    pub fn least_rows(&self) -> u64 {
        self.l_diversity.map_or(0, |l| l.l().ceil() as u64)
    }

    /// The smallest class size whose rows are not at risk under `average_risk`'s `highest` (0
    /// without it).
    fn least_size_not_at_risk(&self) -> u64 {
        self.average_risk
            .and_then(|a| a.highest)
            .map_or(0, |h| h.least_size())
    }

    /// Whether a risk-based model (over all kept rows) is set.
    pub fn risk_based(&self) -> bool {
        self.average_risk.is_some()
            || self.sample_uniqueness.is_some()
            || self.population_uniqueness.is_some()
    }

    /// Whether kept classes of these (rows, size) meet the risk-based models: the average risk,
    /// the share of rows at risk and of sample-unique rows. With nothing kept, they hold.
    pub fn risks_hold(&self, kept: &KeptRisk) -> bool {
        if kept.rows == 0 {
            return true;
        }
        let rows = kept.rows as f64;
        // As ARX compares it: 1 / (rows / classes) without persons, where the sum of rows/size is
        // the number of classes.
        let average_holds = self.average_risk.is_none_or(|a| {
            1.0 / (rows / kept.risk_sum) <= a.average
                && a.highest
                    .is_none_or(|h| kept.rows_at_risk as f64 / rows <= h.records_at_risk)
        });
        average_holds
            && self
                .sample_uniqueness
                .is_none_or(|u| kept.unique_rows as f64 / rows <= u)
            && self
                .population_uniqueness
                .is_none_or(|p| p.holds(&kept.size_frequencies()))
    }

    /// Under population uniqueness, its estimator's share of population uniques for kept classes
    /// of these (rows, size).
    pub fn estimated_population_uniqueness(
        &self,
        kept: impl IntoIterator<Item = (u64, u64)>,
    ) -> Option<f64> {
        let model = self.population_uniqueness?;
        model.estimated_share(&KeptRisk::of(self, kept).size_frequencies())
    }
}

/// What the risk-based models look at in the kept classes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeptRisk {
    pub rows: u64,
    /// Σ over kept classes of rows / size: the rows' summed prosecutor risk.
    pub risk_sum: f64,
    /// Rows in classes smaller than `HighestRisk::least_size`.
    pub rows_at_risk: u64,
    /// Rows in classes of size 1.
    pub unique_rows: u64,
    /// Classes per size, kept only under population uniqueness (its estimators read them).
    sizes: Option<std::collections::BTreeMap<u64, u64>>,
    least_size: u64,
}

impl KeptRisk {
    /// Nothing kept yet, counting what `models` look at.
    fn new(models: &Models) -> KeptRisk {
        KeptRisk {
            sizes: models.population_uniqueness.map(|_| Default::default()),
            least_size: models.least_size_not_at_risk(),
            ..KeptRisk::default()
        }
    }

    /// The kept classes' (rows, size) as the models look at them.
    pub fn of(models: &Models, classes: impl IntoIterator<Item = (u64, u64)>) -> KeptRisk {
        let mut kept = KeptRisk::new(models);
        for (rows, size) in classes {
            kept.add(rows, size);
        }
        kept
    }

    fn add(&mut self, rows: u64, size: u64) {
        self.rows += rows;
        self.risk_sum += rows as f64 / size.max(1) as f64;
        self.rows_at_risk += if size < self.least_size { rows } else { 0 };
        self.unique_rows += if size == 1 { rows } else { 0 };
        if let Some(sizes) = &mut self.sizes {
            *sizes.entry(size.max(1)).or_default() += 1;
        }
    }

    fn remove(&mut self, rows: u64, size: u64) {
        self.rows -= rows;
        self.risk_sum -= rows as f64 / size.max(1) as f64;
        self.rows_at_risk -= if size < self.least_size { rows } else { 0 };
        self.unique_rows -= if size == 1 { rows } else { 0 };
        if let Some(sizes) = &mut self.sizes
            && let std::collections::btree_map::Entry::Occupied(mut e) = sizes.entry(size.max(1))
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// (size, classes of that size) of the kept classes, ascending.
    fn size_frequencies(&self) -> Vec<(u64, u64)> {
        self.sizes
            .iter()
            .flatten()
            .map(|(&size, &classes)| (size, classes))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Non-uniform entropy, monotonic: the information lost by generalisation alone.
    NueMono,
    /// Non-uniform entropy, non-monotonic: NUE-mono plus the entropy of the suppressed rows.
    Nue,
    /// DM*: the sum over all classes (suppressed ones included) of the squared class size.
    Discernibility,
    /// DM, ARX's non-monotonic discernibility: Σ |E|² over kept classes plus rows × |E| over
    /// suppressed ones (a suppressed row is indiscernible from every row).
    DiscernibilityWithSuppression,
    /// Average equivalence class size: rows / classes, all suppressed rows counting as one class
    /// (as ARX counts it).
    Aecs,
    /// Precision loss: the mean over quasi-identifiers of level / (height − 1).
    Precision,
    /// Generalisation height: the sum of the levels.
    Height,
    /// ARX's loss metric (Iyengar's generalised loss, ARX's default): per quasi-identifier, the
    /// share of the domain each kept row's value covers (a suppressed row loses all of it),
    /// normalised between a table of level-0 values and one of suppressed rows, then the
    /// geometric mean over quasi-identifiers (Π (1 + loss) ^ (1/q) − 1).
    Loss,
}

impl Metric {
    /// Whether a more general transformation never scores lower, which lets the search prune every
    /// transformation above one that scores worse than the best found.
    pub fn monotone(self) -> bool {
        !matches!(
            self,
            Metric::Nue | Metric::Aecs | Metric::DiscernibilityWithSuppression | Metric::Loss
        )
    }

    /// Whether a lower bound of the score is known from the levels alone, before any counting.
    fn bound_from_levels(self) -> bool {
        matches!(
            self,
            Metric::NueMono | Metric::Nue | Metric::Precision | Metric::Height | Metric::Loss
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::NueMono => "non-uniform entropy (monotonic)",
            Metric::Nue => "non-uniform entropy (non-monotonic)",
            Metric::Discernibility => "discernibility (DM*)",
            Metric::DiscernibilityWithSuppression => "discernibility with suppression (DM)",
            Metric::Aecs => "average equivalence class size",
            Metric::Precision => "precision loss",
            Metric::Height => "generalisation height",
            Metric::Loss => "loss (geometric mean)",
        }
    }
}

/// Σ f ln f over a class's sensitive value counts: with the class size n, its entropy is
/// ln n − (1/n) Σ f ln f.
fn sum_f_ln_f(histogram: &[(u32, u64)]) -> f64 {
    histogram
        .iter()
        .map(|&(_, f)| f as f64 * (f as f64).ln())
        .sum()
}

/// Where each part of a packed key sits.
#[derive(Debug, Clone)]
struct Layout {
    shifts: Vec<u32>,
    masks: Vec<u128>,
    /// Bits below the quasi-identifiers (person and sensitive value).
    class_shift: u32,
    sensitive_bits: u32,
}

fn bits(cardinality: usize) -> u32 {
    if cardinality <= 1 {
        0
    } else {
        usize::BITS - (cardinality - 1).leading_zeros()
    }
}

/// Distinct combinations and their rows: `(packed key, rows)`, keys unique; sorted by key when
/// persons or sensitive values are packed below the quasi-identifiers. Keys are 64 bits wide when
/// every part fits, which halves the memory the search streams through.
#[derive(Debug, Clone)]
pub enum Groups {
    Narrow(Vec<(u64, u32)>),
    Wide(Vec<(u128, u32)>),
}

impl Groups {
    pub fn len(&self) -> usize {
        match self {
            Groups::Narrow(g) => g.len(),
            Groups::Wide(g) => g.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every group with its key widened (for the few passes outside the search).
    pub fn iter(&self) -> Box<dyn Iterator<Item = (u128, u32)> + '_> {
        match self {
            Groups::Narrow(g) => Box::new(g.iter().map(|&(k, r)| (k as u128, r))),
            Groups::Wide(g) => Box::new(g.iter().copied()),
        }
    }
}

/// A packed key: `u64` or `u128`.
trait Key: Copy + Eq + Ord + Send + Sync {
    fn widen(self) -> u128;
    fn narrow(key: u128) -> Self;
    /// Folds the key into 64 bits for hashing.
    fn mix(self) -> u64;
}

impl Key for u64 {
    fn widen(self) -> u128 {
        self as u128
    }
    fn narrow(key: u128) -> Self {
        key as u64
    }
    fn mix(self) -> u64 {
        self
    }
}

impl Key for u128 {
    fn widen(self) -> u128 {
        self
    }
    fn narrow(key: u128) -> Self {
        key
    }
    fn mix(self) -> u64 {
        self as u64 ^ (self >> 64) as u64
    }
}

/// What the delivered classes reach on the sensitive attribute: for one class, or the least
/// diverse and farthest over all of them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Reached {
    /// Distinct sensitive values (distinct ℓ).
    pub l_distinct: u64,
    /// e to the entropy of the values' shares (entropy ℓ).
    pub l_entropy: f64,
    /// Distance to the whole table's distribution, under a t-closeness model.
    pub t: Option<f64>,
}

impl Reached {
    /// The least diverse and the farthest of two.
    pub fn worst(self, other: Reached) -> Reached {
        Reached {
            l_distinct: self.l_distinct.min(other.l_distinct),
            l_entropy: self.l_entropy.min(other.l_entropy),
            t: match (self.t, other.t) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// The sensitive attribute's values (level 0) and, for hierarchical t-closeness, their hierarchy.
#[derive(Debug, Clone)]
pub struct Sensitive {
    pub hierarchy: Hierarchy,
}

/// The encoded quasi-identifiers of one dataset, ready for the search.
#[derive(Debug, Clone)]
pub struct Table {
    pub hierarchies: Vec<Hierarchy>,
    pub rows: u64,
    /// Distinct persons (rows without a person not counted), with a person column.
    pub persons: Option<usize>,
    /// Whether person number 0 stands for the rows without a person ([`NOBODY`]): they count
    /// in no class's size, as they may belong to any person, a person of the class included.
    nobody: bool,
    pub sensitive: Option<Sensitive>,
    layout: Layout,
    groups: Groups,
    /// Share of each sensitive value over all rows.
    sensitive_shares: Vec<f64>,
    /// The codes of the sensitive values the table holds, in their order, for ordered t-closeness.
    sensitive_order: Vec<u32>,
    /// NUE-mono of each quasi-identifier at each level.
    nue: Vec<Vec<f64>>,
    /// Per quasi-identifier, level and code: the share of the level-0 domain the code covers.
    shares: Vec<Vec<Vec<f64>>>,
    /// Per quasi-identifier and level: Σ over rows of the share of their value, suppression aside.
    generalised_shares: Vec<Vec<f64>>,
    /// With a research subset, this table holds the subset's rows and this the whole dataset's
    /// (the population), with the same hierarchies and persons counted alike.
    population: Option<Box<Table>>,
    /// The population's groups at recently evaluated transformations, which the next one is
    /// projected from: most are an ancestor of it with far fewer groups than level 0.
    population_projections: Projections,
}

/// Recent projections of a research subset's population, `(levels, groups)`, oldest first.
#[derive(Default)]
struct Projections(std::sync::Mutex<Vec<(Levels, std::sync::Arc<Groups>)>>);

/// Projections kept.
const PROJECTIONS_KEPT: usize = 32;

impl Projections {
    /// The kept projection closest below `levels` (the most generalised one it can be rolled up
    /// from), if any.
    fn closest_below(&self, levels: &[u8]) -> Option<(Levels, std::sync::Arc<Groups>)> {
        let kept = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.iter()
            .filter(|(l, _)| l.iter().zip(levels).all(|(a, b)| a <= b))
            .max_by_key(|(l, _)| l.iter().map(|&a| a as u32).sum::<u32>())
            .cloned()
    }

    fn keep(&self, levels: &[u8], groups: std::sync::Arc<Groups>) {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() >= PROJECTIONS_KEPT {
            kept.remove(0);
        }
        kept.push((levels.to_vec(), groups));
    }
}

impl Clone for Projections {
    fn clone(&self) -> Self {
        let kept = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Projections(std::sync::Mutex::new(kept.clone()))
    }
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Projections")
    }
}

/// Collects rows of level-0 codes (quasi-identifiers, then sensitive value if present) and each row's
/// person as a 64-bit identity (a hash of the pseudonym; 0 without a person column).
///
/// Persons get their dense codes only in [`Self::finish`], once per distinct combination: a row costs
/// one hash-map update, not a person-dictionary lookup as well (each a likely cache miss on millions
/// of persons). Two persons whose identities collide count as one, which can only make a class look
/// smaller than it is: more suppression, never less protection.
///
/// A combination's codes are packed into one u128, each column in as many bits as its largest code
/// so far needs (widths grow, and the kept keys are packed again, when a larger code arrives), and
/// kept in [`PARTITIONS`] maps chosen by a hash of the combination: a batch of rows is scattered by
/// partition and the partitions are updated in parallel, each map a fraction of the whole (fewer
/// cache misses). Codes that need more than 128 bits in all cannot make a table (its key holds at
/// least those bits): rows are no longer kept, and [`Self::finish`] says why.
pub struct TableBuilder {
    maps: Vec<foldhash::HashMap<PackedKey, u32>>,
    /// Whether rows come with their persons (else every person is 0 and rows are counted).
    persons: bool,
    /// How codes are packed; `None` once they no longer fit 128 bits.
    packing: Option<Packing>,
}

/// Each column's bits in a packed key, and where they sit (the first column the highest).
#[derive(Default)]
struct Packing {
    widths: Vec<u32>,
    shifts: Vec<u32>,
}

impl Packing {
    fn new(widths: Vec<u32>) -> Packing {
        let mut shifts = vec![0; widths.len()];
        for j in (0..widths.len().saturating_sub(1)).rev() {
            shifts[j] = shifts[j + 1] + widths[j + 1];
        }
        Packing { widths, shifts }
    }

    fn fits(&self, largest: &[u32]) -> bool {
        self.widths.len() == largest.len()
            && largest
                .iter()
                .zip(&self.widths)
                .all(|(&c, &w)| code_bits(c) <= w)
    }

    fn unpack(&self, packed: u128, j: usize) -> u32 {
        ((packed >> self.shifts[j]) & ((1u128 << self.widths[j]) - 1)) as u32
    }
}

/// Maps of packed combinations in a [`TableBuilder`].
const PARTITIONS: usize = 64;

/// Bits a code needs.
fn code_bits(code: u32) -> u32 {
    u32::BITS - code.leading_zeros()
}

impl TableBuilder {
    /// A builder of rows with (`persons`) or without their persons' identities.
    pub fn new(persons: bool) -> Self {
        TableBuilder {
            maps: (0..PARTITIONS).map(|_| Default::default()).collect(),
            persons,
            packing: Some(Packing::default()),
        }
    }

    /// Makes the packed keys wide enough for codes up to `largest` (per column); false when the
    /// codes cannot be packed (from now on: rows are dropped).
    fn fit(&mut self, largest: &[u32]) -> bool {
        let Some(old) = &self.packing else {
            return false;
        };
        if old.fits(largest) {
            return true;
        }
        let old = std::mem::take(&mut self.packing).expect("packed so far");
        // Two bits to spare per widened column (codes grow as values are first seen), if they fit.
        let grown = |spare: u32| -> Vec<u32> {
            (0..largest.len())
                .map(|j| {
                    let w = old.widths.get(j).copied().unwrap_or(0);
                    let need = code_bits(largest[j]);
                    if need <= w { w } else { need + spare }
                })
                .collect()
        };
        let new = [grown(2), grown(0)]
            .into_iter()
            .find(|w| w.iter().sum::<u32>() <= 128);
        let entries: Vec<(PackedKey, u32)> =
            self.maps.iter_mut().flat_map(|map| map.drain()).collect();
        let Some(new) = new.map(Packing::new) else {
            return false;
        };
        let repacked: Vec<(PackedKey, u32)> = entries
            .into_iter()
            .map(|((packed, person), n)| {
                let codes: Vec<u32> = (0..old.widths.len())
                    .map(|j| old.unpack(packed, j))
                    .collect();
                ((pack(&codes, &new.shifts), person), n)
            })
            .collect();
        self.packing = Some(new);
        self.add_packed(&repacked);
        true
    }

    /// Adds `rows` rows of the combination `codes` of `person`.
    pub fn add(&mut self, codes: &[u32], person: u64, rows: u32) {
        if !self.fit(codes) {
            return;
        }
        let shifts = &self.packing.as_ref().expect("fitted").shifts;
        let key = (pack(codes, shifts), person);
        *self.maps[partition(&key, self.persons)]
            .entry(key)
            .or_default() += rows;
    }

    /// Adds a batch of rows: one code column per column of the combination (all of one length),
    /// and each row's person when rows come with persons. Runs of equal rows are counted at once.
    pub fn add_batch(&mut self, columns: &[Vec<u32>], persons: Option<&[u64]>) {
        let rows = columns.first().map_or(0, Vec::len);
        if rows == 0 {
            return;
        }
        let largest: Vec<u32> = columns
            .par_iter()
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        let person = |r: usize| persons.map_or(NOBODY, |p| p[r]);
        if !self.fit(&largest) {
            return;
        }
        let shifts = &self.packing.as_ref().expect("fitted").shifts;
        const ROWS_PER_TASK: usize = 1 << 16;
        let keys: Vec<u128> = (0..rows.div_ceil(ROWS_PER_TASK))
            .into_par_iter()
            .flat_map_iter(|t| {
                let (from, to) = (t * ROWS_PER_TASK, ((t + 1) * ROWS_PER_TASK).min(rows));
                let mut keys = vec![0u128; to - from];
                for (c, &shift) in columns.iter().zip(shifts) {
                    for (key, &code) in keys.iter_mut().zip(&c[from..to]) {
                        *key |= (code as u128) << shift;
                    }
                }
                keys
            })
            .collect();
        let mut packed: Vec<(PackedKey, u32)> = Vec::new();
        for (r, &key) in keys.iter().enumerate() {
            let key = (key, person(r));
            match packed.last_mut() {
                Some((last, run)) if *last == key => *run += 1,
                _ => packed.push((key, 1)),
            }
        }
        self.add_packed(&packed);
    }

    /// Adds rows of packed combinations, the partitions updated in parallel.
    fn add_packed(&mut self, rows: &[(PackedKey, u32)]) {
        let mut starts = [0usize; PARTITIONS + 1];
        let parts: Vec<u8> = rows
            .iter()
            .map(|(key, _)| partition(key, self.persons) as u8)
            .collect();
        for &p in &parts {
            starts[p as usize + 1] += 1;
        }
        for p in 0..PARTITIONS {
            starts[p + 1] += starts[p];
        }
        let mut next = starts;
        let mut scattered = vec![((0u128, 0u64), 0u32); rows.len()];
        for (row, &p) in rows.iter().zip(&parts) {
            scattered[next[p as usize]] = *row;
            next[p as usize] += 1;
        }
        self.maps.par_iter_mut().enumerate().for_each(|(p, map)| {
            for &(key, n) in &scattered[starts[p]..starts[p + 1]] {
                *map.entry(key).or_default() += n;
            }
        });
    }
}

/// The identity of a row without a person. Such rows are delivered (their person is unknown) but
/// count as no person in a class's size: they may be another row of a person already in the
/// class, so only the identified persons are sure to be distinct (a class of such rows only holds
/// one person). The re-check of the written file and `assess` count the same way
/// (`risk::TextClass::size`).
pub const NOBODY: u64 = 0;

/// A packed combination and its person.
type PackedKey = (u128, u64);

/// Codes packed at `shifts` (each code fits its width).
fn pack(codes: &[u32], shifts: &[u32]) -> u128 {
    codes
        .iter()
        .zip(shifts)
        .fold(0u128, |key, (&c, &s)| key | (c as u128) << s)
}

/// The partition of a packed combination. With persons, the top bits of the person's identity (a
/// hash): partitions then hold disjoint persons, in order of identity, which lets `finish` number
/// them partition by partition. Without, the combination's top bits after a multiplicative mix.
fn partition(key: &PackedKey, persons: bool) -> usize {
    let bits = 64 - PARTITIONS.trailing_zeros();
    if persons {
        return (key.1 >> bits) as usize;
    }
    let mixed = (key.0 as u64 ^ (key.0 >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> bits) as usize
}

impl TableBuilder {
    /// Packs the combinations; errors when they cannot fit 128 bits. `persons`: whether the rows
    /// were added with their persons.
    pub fn finish(
        self,
        hierarchies: Vec<Hierarchy>,
        sensitive: Option<Sensitive>,
    ) -> crate::Result<Table> {
        // Codes that overflowed the builder's key overflow the table's, which says how.
        let Some(packing) = self.packing else {
            let sensitive_bits = sensitive
                .as_ref()
                .map_or(0, |s| bits(s.hierarchy.cardinality(0)));
            Layout::new(&hierarchies, sensitive_bits, sensitive_bits)?;
            return Err(crate::Error::Internal(
                "the profile's codes need more than 128 bits but its hierarchies do not".into(),
            ));
        };
        // Every combination, in parts: with persons, each part sorted by identity on its own
        // thread. Parts hold disjoint persons in order of identity (see `partition`), so the parts
        // in order list every person's combinations together and persons are numbered in one pass.
        let persons = self.persons;
        let mut parts: Vec<Vec<(u128, u64, u32)>> = self
            .maps
            .into_par_iter()
            .map(|map| {
                let mut part: Vec<(u128, u64, u32)> = map
                    .into_iter()
                    .map(|((packed, person), rows)| (packed, person, rows))
                    .collect();
                if persons {
                    part.sort_unstable_by_key(|c| c.1);
                }
                part
            })
            .collect();
        let (person_count, nobody) = if persons {
            let (count, nobody) = number_persons(&mut parts);
            (Some(count), nobody)
        } else {
            (None, false)
        };
        let q = hierarchies.len();
        let sensitive_bits = sensitive
            .as_ref()
            .map_or(0, |s| bits(s.hierarchy.cardinality(0)));
        let person_bits = person_count.map_or(0, |n| bits(n + usize::from(nobody)));
        let class_shift = sensitive_bits + person_bits;
        let (layout, at) = Layout::new(&hierarchies, class_shift, sensitive_bits)?;
        let key = |(packed, person, rows): (u128, u64, u32)| {
            let code = |i: usize| packing.unpack(packed, i);
            let mut key = (0..q).fold(0u128, |key, j| key | (code(j) as u128) << layout.shifts[j]);
            if persons {
                key |= (person as u128) << sensitive_bits;
            }
            if sensitive.is_some() {
                key |= code(q) as u128;
            }
            (key, rows)
        };
        // Narrow keys are built and sorted as such: half the bytes to move.
        let groups = if at <= 64 {
            let narrow = |c| {
                let (key, rows) = key(c);
                (key as u64, rows)
            };
            let mut groups: Vec<(u64, u32)> = parts.into_par_iter().flatten().map(narrow).collect();
            groups.par_sort_unstable_by_key(|g| g.0);
            Groups::Narrow(groups)
        } else {
            let mut groups: Vec<(u128, u32)> = parts.into_par_iter().flatten().map(key).collect();
            groups.par_sort_unstable_by_key(|g| g.0);
            Groups::Wide(groups)
        };
        let rows: u64 = groups.iter().map(|g| g.1 as u64).sum();
        let mut sensitive_shares = Vec::new();
        if let Some(s) = &sensitive {
            let mut counts = vec![0u64; s.hierarchy.cardinality(0)];
            let mask = (1u128 << sensitive_bits) - 1;
            for (key, r) in groups.iter() {
                counts[(key & mask) as usize] += r as u64;
            }
            sensitive_shares = counts.iter().map(|&c| c as f64 / rows as f64).collect();
        }
        let sensitive_order = sensitive.as_ref().map_or_else(Vec::new, |s| {
            let mut order = value_order(&s.hierarchy);
            order.retain(|&v| sensitive_shares[v as usize] > 0.0);
            order
        });
        let counts0: Vec<Vec<u64>> = (0..q)
            .map(|j| level0_counts(&hierarchies[j], &groups, &layout, j))
            .collect();
        let nue = (0..q)
            .map(|j| nue_per_level(&hierarchies[j], &counts0[j]))
            .collect();
        let shares: Vec<Vec<Vec<f64>>> = hierarchies.iter().map(domain_shares).collect();
        let generalised_shares = (0..q)
            .map(|j| {
                (0..hierarchies[j].height())
                    .map(|level| {
                        let map = hierarchies[j].level_map(level);
                        counts0[j]
                            .iter()
                            .enumerate()
                            .map(|(c0, &n)| n as f64 * shares[j][level][map[c0] as usize])
                            .sum()
                    })
                    .collect()
            })
            .collect();
        Ok(Table {
            hierarchies,
            rows,
            persons: person_count,
            nobody,
            sensitive,
            layout,
            groups,
            sensitive_shares,
            sensitive_order,
            nue,
            shares,
            generalised_shares,
            population: None,
            population_projections: Projections::default(),
        })
    }
}

/// A hierarchy's level-0 codes in the order of their values: numeric when every value parses as
/// a number, else by text (byte order).
fn value_order(h: &Hierarchy) -> Vec<u32> {
    let mut codes: Vec<u32> = (0..h.cardinality(0) as u32).collect();
    let numbers: Option<Vec<f64>> = codes
        .iter()
        .map(|&c| {
            h.label(0, c)
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
        })
        .collect();
    match numbers {
        Some(v) => codes.sort_by(|&a, &b| v[a as usize].total_cmp(&v[b as usize])),
        None => codes.sort_by(|&a, &b| h.label(0, a).cmp(h.label(0, b))),
    }
    codes
}

/// Rows per level-0 code of column `j`.
fn level0_counts(h: &Hierarchy, groups: &Groups, layout: &Layout, j: usize) -> Vec<u64> {
    let mut counts0 = vec![0u64; h.cardinality(0)];
    for (key, r) in groups.iter() {
        counts0[((key >> layout.shifts[j]) & layout.masks[j]) as usize] += r as u64;
    }
    counts0
}

/// Per level and code, the share of the hierarchy's level-0 values (its whole domain, values the
/// data lacks included, as ARX counts them) that the code generalises.
fn domain_shares(h: &Hierarchy) -> Vec<Vec<f64>> {
    let domain = h.cardinality(0) as f64;
    (0..h.height())
        .map(|level| {
            let mut covered = vec![0u64; h.cardinality(level)];
            for c in h.level_map(level) {
                covered[c as usize] += 1;
            }
            covered.iter().map(|&n| n as f64 / domain).collect()
        })
        .collect()
}

/// For each level of a column with rows per level-0 code `counts0`: the sum over rows of
/// −log2(count(level-0 value) / count(value at the level)), counts over all rows.
fn nue_per_level(h: &Hierarchy, counts0: &[u64]) -> Vec<f64> {
    (0..h.height())
        .map(|level| {
            let map = h.level_map(level);
            let mut counts = vec![0u64; h.cardinality(level)];
            for (c0, &n) in counts0.iter().enumerate() {
                counts[map[c0] as usize] += n;
            }
            counts0
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(c0, &n)| n as f64 * (counts[map[c0] as usize] as f64 / n as f64).log2())
                .sum()
        })
        .collect()
}

/// One equivalence class of a transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub rows: u64,
    /// Distinct persons, or rows when the table has no person column.
    pub size: u64,
    pub violates: bool,
    /// Too small for k or for ℓ (`Models::least_rows`), whatever its sensitive values: a class that
    /// stays so in every less general transformation.
    pub undersized: bool,
}

/// A transformation's outcome under the models and metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub levels: Levels,
    pub feasible: bool,
    pub suppressed_rows: u64,
    pub classes: u64,
    pub suppressed_classes: u64,
    /// Rows of undersized classes (`Class::undersized`): more than the budget makes this
    /// transformation and every less general one infeasible, whether or not the models are monotone.
    pub undersized_rows: u64,
    pub score: f64,
    /// A lower bound of the score of this transformation and of every more general one: the score
    /// itself for monotone metrics, NUE-mono for NUE, rows / all classes for AECS, DM* for DM, the
    /// loss of generalisation alone (every row kept) for loss.
    pub bound: f64,
}

impl Table {
    /// Makes this table a research subset's, `population` the whole dataset's (built from the same
    /// hierarchies, without sensitive values).
    pub fn attach_population(&mut self, population: Table) {
        self.population_projections = Projections::default();
        self.population = Some(Box::new(population));
    }

    /// The population's rows, with a research subset.
    pub fn population_rows(&self) -> Option<u64> {
        self.population.as_ref().map(|p| p.rows)
    }

    pub fn quasi_identifiers(&self) -> usize {
        self.hierarchies.len()
    }

    pub fn heights(&self) -> Vec<u8> {
        self.hierarchies.iter().map(|h| h.height() as u8).collect()
    }

    /// The level-0 groups.
    pub fn base(&self) -> &Groups {
        &self.groups
    }

    /// Largest number of rows that may be suppressed.
    pub fn suppression_budget(&self, models: &Models) -> u64 {
        (models.suppression_limit * self.rows as f64).floor() as u64
    }

    /// The groups of `to`, generalised from groups at `from` (each level in `to` ≥ the one in `from`).
    pub fn project(&self, groups: &Groups, from: &[u8], to: &[u8]) -> Groups {
        match groups {
            Groups::Narrow(g) => Groups::Narrow(self.project_keys(g, from, to)),
            Groups::Wide(g) => Groups::Wide(self.project_keys(g, from, to)),
        }
    }

    fn project_keys<K: Key>(&self, groups: &[(K, u32)], from: &[u8], to: &[u8]) -> Vec<(K, u32)> {
        // A column raised to a level of one value (the top, `*`) becomes code 0: its bits are cleared.
        let changed = (0..from.len()).filter(|&j| to[j] != from[j]);
        let (to_top, to_map): (Vec<usize>, Vec<usize>) =
            changed.partition(|&j| self.hierarchies[j].cardinality(to[j] as usize) == 1);
        let keep = !to_top.iter().fold(0u128, |m, &j| {
            m | self.layout.masks[j] << self.layout.shifts[j]
        });
        let maps: Vec<(u32, u128, Vec<u32>)> = to_map
            .into_iter()
            .map(|j| {
                let h = &self.hierarchies[j];
                let map = (0..h.cardinality(from[j] as usize) as u32)
                    .map(|c| (from[j]..to[j]).fold(c, |c, l| h.parent(l as usize, c)))
                    .collect();
                (self.layout.shifts[j], self.layout.masks[j], map)
            })
            .collect();
        let project = |&(key, rows): &(K, u32)| {
            let mut key = key.widen() & keep;
            for (shift, mask, map) in &maps {
                let code = ((key >> shift) & mask) as usize;
                key = (key & !(mask << shift)) | ((map[code] as u128) << shift);
            }
            (K::narrow(key), rows)
        };
        // Classes are runs of equal high bits: order matters only when persons or sensitive values sit
        // below the quasi-identifiers. Then the keys are sorted anyway, and equal keys summed as
        // neighbours after the sort, which is cheaper than merging them by hash first.
        if self.layout.class_shift > 0 {
            let mut out: Vec<(K, u32)> = if groups.len() > PARTITIONED_MERGE {
                groups.par_iter().map(project).collect()
            } else {
                groups.iter().map(project).collect()
            };
            radix_sort(&mut out);
            sum_equal_neighbours(&mut out);
            return out;
        }
        let seed = to.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &l| {
            (h ^ l as u64).wrapping_mul(0x100_0000_01B3)
        });
        if groups.len() > PARTITIONED_MERGE {
            let projected: Vec<(K, u32)> = groups.par_iter().map(project).collect();
            merge_equal_keys_partitioned(projected, seed)
        } else {
            merge_equal_keys(groups.iter().map(project), groups.len(), seed)
        }
    }

    /// The score's lower bound from the levels alone (for NUE, precision, height and loss), or None.
    pub fn bound(&self, metric: Metric, levels: &[u8]) -> Option<f64> {
        metric.bound_from_levels().then(|| match metric {
            Metric::Precision => self.precision(levels),
            Metric::Height => height(levels),
            Metric::Loss => mean_loss(&self.generalisation_loss(levels)),
            _ => self.nue_mono(levels),
        })
    }

    /// Per quasi-identifier, the loss of generalisation alone: every row counted as kept.
    fn generalisation_loss(&self, levels: &[u8]) -> Vec<f64> {
        levels
            .iter()
            .enumerate()
            .map(|(j, &l)| self.normalised_loss(j, self.generalised_shares[j][l as usize]))
            .collect()
    }

    /// A quasi-identifier's loss from its raw sum (Σ over rows of the share each keeps, 1 for a
    /// suppressed row), between 0 (every value at level 0) and 1 (every row suppressed), cut to
    /// ten decimals as ARX reports it.
    fn normalised_loss(&self, j: usize, raw: f64) -> f64 {
        let n = self.rows as f64;
        let least = n / self.hierarchies[j].cardinality(0) as f64;
        if n - least <= 0.0 {
            return 0.0;
        }
        let loss = ((raw - least) / (n - least)).max(0.0);
        (loss * 1e10).floor() / 1e10
    }

    /// Each quasi-identifier's loss from its raw sum ([`Self::add_class_loss`]).
    fn normalised_losses(&self, raw: &[f64]) -> Vec<f64> {
        raw.iter()
            .enumerate()
            .map(|(j, &r)| self.normalised_loss(j, r))
            .collect()
    }

    /// Adds a class's rows to the raw loss sums: each kept row the share of its value, each
    /// suppressed row 1 per quasi-identifier.
    fn add_class_loss(&self, raw: &mut [f64], levels: &[u8], class: u128, c: &Class) {
        let shift = self.layout.class_shift;
        for (j, sum) in raw.iter_mut().enumerate() {
            *sum += if c.violates {
                c.rows as f64
            } else {
                let code = (class >> (self.layout.shifts[j] - shift)) & self.layout.masks[j];
                c.rows as f64 * self.shares[j][levels[j] as usize][code as usize]
            };
        }
    }

    /// Per quasi-identifier, its loss (the `loss` metric before aggregation) at `levels`, whose
    /// groups are `groups`.
    pub fn loss_per_attribute(&self, levels: &[u8], groups: &Groups, models: &Models) -> Vec<f64> {
        let mut raw = vec![0.0; levels.len()];
        self.for_each_class(levels, groups, models, |class, c| {
            self.add_class_loss(&mut raw, levels, class, &c)
        });
        self.normalised_losses(&raw)
    }

    fn nue_mono(&self, levels: &[u8]) -> f64 {
        levels
            .iter()
            .enumerate()
            .map(|(j, &l)| self.nue[j][l as usize])
            .sum()
    }

    fn precision(&self, levels: &[u8]) -> f64 {
        let sum: f64 = levels
            .iter()
            .zip(&self.hierarchies)
            .map(|(&l, h)| {
                if h.height() > 1 {
                    l as f64 / (h.height() - 1) as f64
                } else {
                    0.0
                }
            })
            .sum();
        sum / levels.len().max(1) as f64
    }

    /// Calls `visit` with the class key (generalised codes) and statistics of every class of
    /// `groups`, `violates` telling whether its rows are suppressed: by a class-based model, or to
    /// meet the risk-based ones (`enforce_risk`).
    pub fn for_each_class(
        &self,
        levels: &[u8],
        groups: &Groups,
        models: &Models,
        visit: impl FnMut(u128, Class),
    ) -> bool {
        self.for_each_class_within(levels, groups, models, None, visit)
    }

    /// [`Self::for_each_class`], but where the risk-based models would need more than
    /// `budget` suppressed rows, their suppression stops there (the transformation is infeasible
    /// whatever more is suppressed).
    fn for_each_class_within(
        &self,
        levels: &[u8],
        groups: &Groups,
        models: &Models,
        budget: Option<u64>,
        mut visit: impl FnMut(u128, Class),
    ) -> bool {
        let population = self.population_classes(levels, models);
        let mut delivered_classes = 0usize;
        if models.risk_based() {
            let mut classes = Vec::new();
            self.each_class(groups, models, population.as_ref(), |key, c| {
                classes.push((key, c))
            });
            delivered_classes = classes.len();
            enforce_risk(&mut classes, models, budget);
            for (key, c) in classes {
                visit(key, c);
            }
        } else {
            self.each_class(groups, models, population.as_ref(), |key, c| {
                delivered_classes += 1;
                visit(key, c)
            });
        }
        // Every class of the subset is one of the population's; the others deliver no row, a share
        // of 0 that δ-presence allows only with a minimum of 0 (they cannot be suppressed: the
        // transformation fails, as ARX decides).
        population.is_none_or(|p| {
            p.len() == delivered_classes || models.delta_presence.is_none_or(|d| d.holds(0, 1))
        })
    }

    /// With a research subset and a model that counts in it, the population's class sizes
    /// (persons, or rows) at `levels`, by this table's class keys.
    fn population_classes(
        &self,
        levels: &[u8],
        models: &Models,
    ) -> Option<foldhash::HashMap<u128, u64>> {
        let population = self
            .population
            .as_ref()
            .filter(|_| models.counts_population())?;
        let projected =
            std::sync::Arc::new(match self.population_projections.closest_below(levels) {
                Some((from, groups)) => population.project(&groups, &from, levels),
                None => {
                    let zero = vec![0; levels.len()];
                    population.project(population.base(), &zero, levels)
                }
            });
        self.population_projections.keep(levels, projected.clone());
        // A class key holds the quasi-identifiers' codes, each at its shift less the bits below.
        let (from, to) = (&population.layout, &self.layout);
        let repack = |class: u128| {
            (0..self.hierarchies.len()).fold(0u128, |key, j| {
                let code = (class >> (from.shifts[j] - from.class_shift)) & from.masks[j];
                key | code << (to.shifts[j] - to.class_shift)
            })
        };
        let mut sizes = foldhash::HashMap::default();
        population.each_class(&projected, &Models::default(), None, |class, c| {
            sizes.insert(repack(class), c.size);
        });
        Some(sizes)
    }

    /// [`Self::for_each_class`] under the class-based models alone.
    fn each_class(
        &self,
        groups: &Groups,
        models: &Models,
        population: Option<&foldhash::HashMap<u128, u64>>,
        visit: impl FnMut(u128, Class),
    ) {
        match groups {
            Groups::Narrow(g) => self.for_each_class_of(g, models, population, visit),
            Groups::Wide(g) => self.for_each_class_of(g, models, population, visit),
        }
    }

    fn for_each_class_of<K: Key>(
        &self,
        groups: &[(K, u32)],
        models: &Models,
        population: Option<&foldhash::HashMap<u128, u64>>,
        mut visit: impl FnMut(u128, Class),
    ) {
        let shift = self.layout.class_shift;
        let person_shift = self.layout.sensitive_bits;
        let person_mask = (1u128 << (shift - person_shift)) - 1;
        let least_size = models.least_size(self.rows);
        let sensitive_mask = (1u128 << self.layout.sensitive_bits) - 1;
        let mut histogram: Vec<(u32, u64)> = Vec::new();
        let mut scratch = ClassScratch::default();
        let mut start = 0;
        while start < groups.len() {
            let class = groups[start].0.widen() >> shift;
            let mut end = start + 1;
            while end < groups.len() && groups[end].0.widen() >> shift == class {
                end += 1;
            }
            let run = &groups[start..end];
            let rows: u64 = run.iter().map(|g| g.1 as u64).sum();
            let size = if self.persons.is_some() {
                // Persons sort within their class, and the rows without one (number 0) first.
                let nobody = self.nobody && (run[0].0.widen() >> person_shift) & person_mask == 0;
                // A class of rows without a person holds at least one (unknown) person.
                (1 + run
                    .windows(2)
                    .filter(|w| {
                        (w[0].0.widen() >> person_shift) != (w[1].0.widen() >> person_shift)
                    })
                    .count() as u64
                    - u64::from(nobody))
                .max(1)
            } else {
                rows
            };
            let undersized = least_size.is_some_and(|k| size < k) || rows < models.least_rows();
            let mut violates = undersized;
            if let Some(population) = population {
                // The subset's rows are the population's: the class is there.
                let in_population = population.get(&class).copied().unwrap_or(size);
                violates |= models
                    .population_k
                    .is_some_and(|k| in_population < k as u64)
                    || models
                        .delta_presence
                        .is_some_and(|d| !d.holds(size, in_population));
            }
            if !violates && self.sensitive.is_some() {
                histogram.clear();
                histogram.extend(
                    run.iter()
                        .map(|g| ((g.0.widen() & sensitive_mask) as u32, g.1 as u64)),
                );
                if self.persons.is_some() {
                    histogram.sort_unstable_by_key(|h| h.0);
                    sum_equal_neighbours(&mut histogram);
                }
                violates = !self.diverse_and_close(&histogram, rows, models, &mut scratch);
            }
            visit(
                class,
                Class {
                    rows,
                    size,
                    violates,
                    undersized,
                },
            );
            start = end;
        }
    }

    /// Whether a class's sensitive histogram (level-0 code, rows) meets ℓ-diversity and t-closeness.
    pub fn class_meets(&self, histogram: &[(u32, u64)], rows: u64, models: &Models) -> bool {
        self.diverse_and_close(histogram, rows, models, &mut ClassScratch::default())
    }

    /// What a class's sensitive values reach: distinct values, entropy ℓ (e to the entropy of
    /// their shares) and, under a t-closeness model, the class's distance to the whole table by
    /// that model's measure. The report gives the least diverse and the farthest class.
    pub fn class_reached(&self, histogram: &[(u32, u64)], rows: u64, models: &Models) -> Reached {
        let n = rows as f64;
        Reached {
            l_distinct: histogram.len() as u64,
            l_entropy: (n.ln() - sum_f_ln_f(histogram) / n).exp(),
            t: models
                .t_closeness
                .map(|t| self.distance(t, histogram, rows, &mut ClassScratch::default())),
        }
    }

    /// A class's distance to the whole table's distribution, by the measure of model `t`.
    fn distance(
        &self,
        t: TCloseness,
        histogram: &[(u32, u64)],
        rows: u64,
        scratch: &mut ClassScratch,
    ) -> f64 {
        match t {
            TCloseness::Equal(_) => self.equal_distance(histogram, rows),
            TCloseness::Hierarchical(_) => self.hierarchical_emd(histogram, rows, scratch),
            TCloseness::Ordered(_) => {
                let steps = self.sensitive_order.len().saturating_sub(1).max(1) as f64;
                self.ordered_steps(histogram, rows, scratch, f64::INFINITY) / steps
            }
        }
    }

    /// ½ Σ over all values |p − q| = ½ (1 + Σ over present values (|p − q| − q)).
    fn equal_distance(&self, histogram: &[(u32, u64)], rows: u64) -> f64 {
        let n = rows as f64;
        let mut d = 1.0;
        for &(v, f) in histogram {
            let q = self.sensitive_shares[v as usize];
            d += (f as f64 / n - q).abs() - q;
        }
        d / 2.0
    }

    fn diverse_and_close(
        &self,
        histogram: &[(u32, u64)],
        rows: u64,
        models: &Models,
        scratch: &mut ClassScratch,
    ) -> bool {
        match models.l_diversity {
            Some(LDiversity::Distinct(l)) if (histogram.len() as u64) < l as u64 => return false,
            Some(LDiversity::Recursive { c, l }) => {
                if (histogram.len() as u64) < l as u64 {
                    return false;
                }
                scratch.counts.clear();
                scratch.counts.extend(histogram.iter().map(|h| h.1));
                scratch.counts.sort_unstable_by(|a, b| b.cmp(a));
                let tail: u64 = scratch.counts[l as usize - 1..].iter().sum();
                if scratch.counts[0] as f64 >= c * tail as f64 {
                    return false;
                }
            }
            Some(LDiversity::Entropy(l)) => {
                // H = ln(n) − (1/n) Σ f ln f ≥ ln ℓ, compared as ARX does: Σ f ln f ≤ n (ln n − ln ℓ).
                if (histogram.len() as f64) < l {
                    return false;
                }
                let n = rows as f64;
                if sum_f_ln_f(histogram) > n * (n.ln() - l.ln()) {
                    return false;
                }
            }
            _ => {}
        }
        match models.t_closeness {
            // Compared as ARX does, before dividing by the steps, stopping once beyond.
            Some(TCloseness::Ordered(t)) => {
                let limit = t * self.sensitive_order.len().saturating_sub(1) as f64;
                self.ordered_steps(histogram, rows, scratch, limit) <= limit
            }
            Some(model) => self.distance(model, histogram, rows, scratch) <= model.t(),
            None => true,
        }
    }

    /// Earth mover's distance with ordered ground distance, times the m − 1 steps between the first
    /// and last value: Σ over the values in order of |Σ up to it (p − q)|. Stops once above `limit`.
    fn ordered_steps(
        &self,
        histogram: &[(u32, u64)],
        rows: u64,
        s: &mut ClassScratch,
        limit: f64,
    ) -> f64 {
        let n = rows as f64;
        s.extra.clear();
        s.extra.resize(self.sensitive_shares.len(), 0.0);
        for &(v, f) in histogram {
            s.extra[v as usize] = f as f64 / n;
        }
        let (mut running, mut distance) = (0.0, 0.0);
        for &v in &self.sensitive_order {
            running += s.extra[v as usize] - self.sensitive_shares[v as usize];
            distance += f64::abs(running);
            if distance > limit {
                break;
            }
        }
        distance
    }

    /// Earth mover's distance between a class's sensitive distribution and the whole table's, with
    /// the hierarchy's ground distance (Li, Li & Venkatasubramanian 2007): every inner node at level
    /// `l` of a hierarchy of height `H` moves min(positive, negative extra) at cost l / (H − 1).
    fn hierarchical_emd(&self, histogram: &[(u32, u64)], rows: u64, s: &mut ClassScratch) -> f64 {
        let h = &self
            .sensitive
            .as_ref()
            .expect("validated: t-closeness has a sensitive column")
            .hierarchy;
        let height = h.height();
        if height < 2 {
            return 0.0;
        }
        let n = rows as f64;
        // extra[v] = p_v − q_v at the leaves, then summed into the parents level by level.
        s.extra.clear();
        s.extra.extend(self.sensitive_shares.iter().map(|q| -q));
        for &(v, f) in histogram {
            s.extra[v as usize] += f as f64 / n;
        }
        let mut cost = 0.0;
        for level in 0..height - 1 {
            let parents = h.cardinality(level + 1);
            s.positive.clear();
            s.positive.resize(parents, 0.0);
            s.negative.clear();
            s.negative.resize(parents, 0.0);
            for (c, &e) in s.extra.iter().enumerate() {
                let p = h.parent(level, c as u32) as usize;
                if e > 0.0 {
                    s.positive[p] += e;
                } else {
                    s.negative[p] -= e;
                }
            }
            let weight = (level + 1) as f64 / (height - 1) as f64;
            s.extra.clear();
            for p in 0..parents {
                cost += weight * s.positive[p].min(s.negative[p]);
                s.extra.push(s.positive[p] - s.negative[p]);
            }
        }
        cost
    }

    /// Evaluates one transformation given its groups.
    pub fn evaluate(
        &self,
        levels: &[u8],
        groups: &Groups,
        models: &Models,
        metric: Metric,
    ) -> Evaluation {
        self.evaluate_within(levels, groups, models, metric, None)
    }

    /// [`Self::evaluate`] for the search, which needs only to tell feasible transformations and
    /// score them: the risk-based models' suppression stops once over the suppression limit, so an
    /// infeasible transformation's score and suppressed rows are those of where it stopped.
    pub fn evaluate_for_search(
        &self,
        levels: &[u8],
        groups: &Groups,
        models: &Models,
        metric: Metric,
    ) -> Evaluation {
        let budget = self.suppression_budget(models);
        self.evaluate_within(levels, groups, models, metric, Some(budget))
    }

    fn evaluate_within(
        &self,
        levels: &[u8],
        groups: &Groups,
        models: &Models,
        metric: Metric,
        budget: Option<u64>,
    ) -> Evaluation {
        let (mut classes, mut suppressed_classes, mut suppressed_rows) = (0u64, 0u64, 0u64);
        let mut undersized_rows = 0u64;
        let (mut squares, mut kept_squares) = (0f64, 0f64);
        // For NUE: per quasi-identifier, suppressed rows per generalised code.
        let mut suppressed_codes: Vec<Vec<u64>> = if metric == Metric::Nue {
            levels
                .iter()
                .enumerate()
                .map(|(j, &l)| vec![0; self.hierarchies[j].cardinality(l as usize)])
                .collect()
        } else {
            Vec::new()
        };
        // For loss: per quasi-identifier, the raw sum of `add_class_loss`.
        let mut loss_raw: Vec<f64> = if metric == Metric::Loss {
            vec![0.0; levels.len()]
        } else {
            Vec::new()
        };
        let shift = self.layout.class_shift;
        let population_holds =
            self.for_each_class_within(levels, groups, models, budget, |class, c| {
                if metric == Metric::Loss {
                    self.add_class_loss(&mut loss_raw, levels, class, &c);
                }
                classes += 1;
                let square = (c.rows as f64) * (c.rows as f64);
                squares += square;
                if !c.violates {
                    kept_squares += square;
                }
                if c.undersized {
                    undersized_rows += c.rows;
                }
                if c.violates {
                    suppressed_classes += 1;
                    suppressed_rows += c.rows;
                    for (j, counts) in suppressed_codes.iter_mut().enumerate() {
                        let s = self.layout.shifts[j] - shift;
                        counts[((class >> s) & self.layout.masks[j]) as usize] += c.rows;
                    }
                }
            });
        let score = match metric {
            Metric::NueMono => self.nue_mono(levels),
            Metric::Nue => {
                let mut score = self.nue_mono(levels);
                if suppressed_rows > 0 {
                    let s = suppressed_rows as f64;
                    for counts in &suppressed_codes {
                        for &c in counts.iter().filter(|&&c| c > 0) {
                            score -= c as f64 * (c as f64 / s).log2();
                        }
                    }
                }
                score
            }
            Metric::Discernibility => squares,
            Metric::DiscernibilityWithSuppression => {
                kept_squares + self.rows as f64 * suppressed_rows as f64
            }
            Metric::Aecs => {
                let kept = classes - suppressed_classes + u64::from(suppressed_rows > 0);
                self.rows as f64 / kept.max(1) as f64
            }
            Metric::Precision => self.precision(levels),
            Metric::Height => height(levels),
            Metric::Loss => mean_loss(&self.normalised_losses(&loss_raw)),
        };
        let bound = match metric {
            Metric::Nue | Metric::Loss => self
                .bound(metric, levels)
                .expect("NUE and loss have bounds from the levels"),
            Metric::Aecs => self.rows as f64 / classes.max(1) as f64,
            Metric::DiscernibilityWithSuppression => squares,
            _ => score,
        };
        Evaluation {
            bound,
            levels: levels.to_vec(),
            feasible: suppressed_rows <= self.suppression_budget(models) && population_holds,
            suppressed_rows,
            classes,
            suppressed_classes,
            undersized_rows,
            score,
        }
    }

    /// Where quasi-identifier `j`'s code sits in a class key (as `for_each_class` gives them).
    pub fn class_key_shift(&self, j: usize) -> u32 {
        self.layout.shifts[j] - self.layout.class_shift
    }

    /// Quasi-identifier `j`'s code in a class key.
    pub fn class_code(&self, class: u128, j: usize) -> u32 {
        ((class >> self.class_key_shift(j)) & self.layout.masks[j]) as u32
    }
}

/// Generalisation height: the sum of the levels.
fn height(levels: &[u8]) -> f64 {
    levels.iter().map(|&l| l as f64).sum()
}

/// ARX's aggregate of per-quasi-identifier losses, their geometric mean: Π (1 + l)^(1/q) − 1.
pub fn mean_loss(per_attribute: &[f64]) -> f64 {
    let q = per_attribute.len().max(1) as f64;
    per_attribute
        .iter()
        .fold(1.0, |p, l| p * (1.0 + l).powf(1.0 / q))
        - 1.0
}

/// Suppresses, after the class-based models, the smallest kept classes (by persons, then rows;
/// ties broken by the generalised values — ARX breaks them by the order of the records, which this
/// engine never lets matter) until the risk-based models hold, the number found by ARX's binary
/// search. Removing a small class never raises the average risk or the shares at risk, so there the
/// search finds the least suppression; an estimate of population uniqueness need not fall
/// steadily, and the search then stops where ARX's does. With a `budget` of suppressed rows, it
/// stops as soon as the models fail with more suppressed (as ARX aborts): more suppression could
/// only leave the transformation infeasible.
fn enforce_risk(classes: &mut [(u128, Class)], models: &Models, budget: Option<u64>) {
    let mut kept = KeptRisk::new(models);
    let mut order: Vec<usize> = Vec::new();
    let mut violating_rows = 0;
    for (i, (_, c)) in classes.iter().enumerate() {
        if c.violates {
            violating_rows += c.rows;
        } else {
            kept.add(c.rows, c.size);
            order.push(i);
        }
    }
    let all_rows = violating_rows + kept.rows;
    if models.risks_hold(&kept) {
        return;
    }
    order.sort_unstable_by_key(|&i| (classes[i].1.size, classes[i].1.rows, classes[i].0));
    // `suppressed` smallest classes of `order` are suppressed.
    let mut suppressed = 0usize;
    let mut suppress_first = |n: usize, kept: &mut KeptRisk| {
        while suppressed < n {
            let c = &classes[order[suppressed]].1;
            kept.remove(c.rows, c.size);
            suppressed += 1;
        }
        while suppressed > n {
            suppressed -= 1;
            let c = &classes[order[suppressed]].1;
            kept.add(c.rows, c.size);
        }
        suppressed
    };
    // Bisection on the last suppressed index, as ARX's `suppressWhileNotFulfilledBinary`: `mid`
    // may reach 0 but the first class, once suppressed, stays so.
    let (mut low, mut high) = (0i64, order.len() as i64 - 1);
    let mut mid = (low + high) / 2;
    let mut count = suppress_first(mid as usize + 1, &mut kept);
    let mut aborted = false;
    while low <= high {
        let holds = models.risks_hold(&kept);
        if !holds && budget.is_some_and(|b| all_rows - kept.rows > b) {
            aborted = true;
            break;
        }
        if holds {
            high = mid - 1;
            mid = (low + high) / 2;
            count = suppress_first(count.min(mid as usize + 1), &mut kept);
        } else {
            low = mid + 1;
            mid = (low + high) / 2;
            count = suppress_first(count.max(mid as usize + 1), &mut kept);
        }
    }
    if !aborted && !models.risks_hold(&kept) && count < order.len() {
        count = suppress_first(count + 1, &mut kept);
    }
    for &i in &order[..count] {
        classes[i].1.violates = true;
    }
}

thread_local! {
    /// Each thread's open-addressing slots, reused from projection to projection: a fresh large
    /// allocation per projection costs page faults that outweigh the merging itself.
    static SLOTS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sorts groups by key: least significant digit first, 11 bits a pass over the bits the keys use
/// (a pass where every key has the same digit is skipped). A projection with sensitive values or
/// persons sorts its keys at every evaluation; this takes a few linear passes where a comparison
/// sort took a third of such a search.
fn radix_sort<K: Key>(items: &mut Vec<(K, u32)>) {
    const DIGIT: u32 = 11;
    const SMALL: usize = 512;
    if items.len() <= SMALL {
        items.sort_unstable_by_key(|g| g.0);
        return;
    }
    let used = items.iter().fold(0u128, |m, g| m | g.0.widen());
    let bits = u128::BITS - used.leading_zeros();
    let mask = (1u128 << DIGIT) - 1;
    let mut spare = items.clone();
    let mut counts = vec![0usize; 1 << DIGIT];
    for shift in (0..bits).step_by(DIGIT as usize) {
        let digit = |g: &(K, u32)| ((g.0.widen() >> shift) & mask) as usize;
        counts.fill(0);
        for g in items.iter() {
            counts[digit(g)] += 1;
        }
        if counts.contains(&items.len()) {
            continue;
        }
        let mut next = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = next;
            next += n;
        }
        for g in items.iter() {
            let d = digit(g);
            spare[counts[d]] = *g;
            counts[d] += 1;
        }
        std::mem::swap(items, &mut spare);
    }
}

/// Sums the counts of equal neighbouring keys of a sorted list into the first of them.
fn sum_equal_neighbours<K: PartialEq, N: std::ops::AddAssign + Copy>(items: &mut Vec<(K, N)>) {
    items.dedup_by(|later, kept| {
        let equal = later.0 == kept.0;
        if equal {
            kept.1 += later.1;
        }
        equal
    });
}

/// Groups above this many are projected on every thread, their keys partitioned before merging.
const PARTITIONED_MERGE: usize = 1 << 18;

/// The SplitMix64 finaliser of a key under `seed`.
fn hash_key<K: Key>(key: K, seed: u64) -> u64 {
    let mut z = key.mix() ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// [`merge_equal_keys`] for many groups: the items are first scattered into partitions by the top
/// bits of their hash (equal keys land in the same one), then each partition, small enough for the
/// cache, is merged on its own thread. Partitions in order, each in first-seen order: deterministic.
fn merge_equal_keys_partitioned<K: Key>(items: Vec<(K, u32)>, seed: u64) -> Vec<(K, u32)> {
    const BITS: u32 = 8;
    let partition = |key: K| (hash_key(key, seed) >> (64 - BITS)) as usize;
    let mut starts = vec![0usize; (1 << BITS) + 1];
    for &(key, _) in &items {
        starts[partition(key) + 1] += 1;
    }
    for p in 1..starts.len() {
        starts[p] += starts[p - 1];
    }
    let mut next = starts.clone();
    let mut scattered = vec![(K::narrow(0), 0u32); items.len()];
    for item in items {
        let p = partition(item.0);
        scattered[next[p]] = item;
        next[p] += 1;
    }
    // Within a partition the top bits agree: the merge hashes under another seed.
    let inner_seed = seed ^ 0x9E37_79B9_7F4A_7C15;
    let merged: Vec<Vec<(K, u32)>> = starts
        .par_windows(2)
        .map(|w| {
            let part = &scattered[w[0]..w[1]];
            merge_equal_keys(part.iter().copied(), part.len(), inner_seed)
        })
        .collect();
    merged.concat()
}

/// Sums the rows of equal keys (open addressing over indices into the output; first-seen order).
/// The input often comes in an order correlated with keys, so each call hashes under its own `seed`
/// with a strong mix; the result is deterministic.
fn merge_equal_keys<K: Key>(
    items: impl Iterator<Item = (K, u32)>,
    hint: usize,
    seed: u64,
) -> Vec<(K, u32)> {
    let capacity = (hint.max(8) * 2).next_power_of_two();
    let mask = capacity - 1;
    let shift = 64 - capacity.trailing_zeros();
    SLOTS.with_borrow_mut(|slots| {
        slots.clear();
        slots.resize(capacity, u32::MAX);
        let mut out: Vec<(K, u32)> = Vec::with_capacity(hint.min(1 << 16));
        for (key, rows) in items {
            let mut at = (hash_key(key, seed) >> shift) as usize;
            loop {
                match slots[at] {
                    u32::MAX => {
                        slots[at] = out.len() as u32;
                        out.push((key, rows));
                        break;
                    }
                    i if out[i as usize].0 == key => {
                        out[i as usize].1 += rows;
                        break;
                    }
                    _ => at = (at + 1) & mask,
                }
            }
        }
        out
    })
}

#[derive(Default)]
struct ClassScratch {
    extra: Vec<f64>,
    positive: Vec<f64>,
    negative: Vec<f64>,
    counts: Vec<u64>,
}

/// Replaces each combination's person identity by a dense number, in one pass over parts that
/// list every person's combinations together; returns the persons counted and whether the
/// identity of rows without a person (`NOBODY`, sorted first) is among them, not counted.
fn number_persons(parts: &mut [Vec<(u128, u64, u32)>]) -> (usize, bool) {
    // Identity 0 sorts first in the first part (partitions follow the identity's top bits).
    let nobody = parts.iter().flatten().next().is_some_and(|c| c.1 == NOBODY);
    let mut dense = 0u64;
    let mut previous = None;
    for c in parts.iter_mut().flatten() {
        if previous.is_some_and(|p| p != c.1) {
            dense += 1;
        }
        previous = Some(c.1);
        c.1 = dense;
    }
    let count = if previous.is_none() {
        0
    } else {
        dense as usize + 1 - usize::from(nobody)
    };
    (count, nobody)
}

impl Layout {
    /// Quasi-identifier codes packed above `class_shift` bits, the first the highest; also returns
    /// the bits the key needs in all.
    fn new(
        hierarchies: &[Hierarchy],
        class_shift: u32,
        sensitive_bits: u32,
    ) -> crate::Result<(Layout, u32)> {
        let q = hierarchies.len();
        let mut shifts = vec![0; q];
        let mut masks = vec![0; q];
        let mut at = class_shift;
        for j in (0..q).rev() {
            let b = bits(hierarchies[j].cardinality(0));
            shifts[j] = at;
            masks[j] = if b == 0 { 0 } else { (1u128 << b) - 1 };
            at += b;
        }
        if at > 128 {
            return Err(crate::Error::Privacy(format!(
                "the quasi-identifiers' distinct values need {at} bits, more than the 128 the search \
                 packs: declare fewer quasi-identifiers, or generalise one with a fixed rule first"
            )));
        }
        let layout = Layout {
            shifts,
            masks,
            class_shift,
            sensitive_bits,
        };
        Ok((layout, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes `q1` = {a} and `q2` = {b, c, d} over a sensitive attribute whose hierarchy is
    /// {a, b} → X, {c, d} → Y, {X, Y} → *; the whole table is uniform over a..d.
    fn table() -> Table {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let qi = Hierarchy::from_paths(
            [("q1".to_string(), s(&["*"])), ("q2".into(), s(&["*"]))],
            "qi",
        )
        .unwrap();
        let sensitive = Hierarchy::from_paths(
            [
                ("a".to_string(), s(&["X", "*"])),
                ("b".into(), s(&["X", "*"])),
                ("c".into(), s(&["Y", "*"])),
                ("d".into(), s(&["Y", "*"])),
            ],
            "sensitive",
        )
        .unwrap();
        let mut b = TableBuilder::new(false);
        for (q, v) in [("q1", "a"), ("q2", "b"), ("q2", "c"), ("q2", "d")] {
            b.add(&[qi.code(q).unwrap(), sensitive.code(v).unwrap()], 0, 1);
        }
        b.finish(
            vec![qi],
            Some(Sensitive {
                hierarchy: sensitive,
            }),
        )
        .unwrap()
    }

    #[test]
    fn partitioned_merge_sums_the_rows_of_equal_keys() {
        // More items than the partitioned path's threshold, many keys repeated.
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(11);
        let items: Vec<(u64, u32)> = (0..PARTITIONED_MERGE + 12_345)
            .map(|_| {
                (
                    rng.random_range(0..100_000u64) << 20,
                    rng.random_range(1..5),
                )
            })
            .collect();
        let mut expected = std::collections::BTreeMap::new();
        for &(key, rows) in &items {
            *expected.entry(key).or_insert(0u32) += rows;
        }
        let merged = merge_equal_keys_partitioned(items.clone(), 7);
        assert_eq!(merged.len(), expected.len());
        let mut sorted = merged.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected.into_iter().collect::<Vec<_>>());
        assert_eq!(merge_equal_keys_partitioned(items, 7), merged);
    }

    fn suppressed(models: Models) -> u64 {
        let t = table();
        t.evaluate(&[0], t.base(), &models, Metric::NueMono)
            .suppressed_rows
    }

    #[test]
    fn hierarchical_emd_matches_hand_computed_transport_costs() {
        // {a} moves ¼ to b at cost ½ and ½ to c, d at cost 1: 0.625.
        // {b, c, d} moves 1/12 from b to a at ½ and 1/6 across the root at 1: 5/24 ≈ 0.2083.
        let t = |t| Models {
            t_closeness: Some(TCloseness::Hierarchical(t)),
            ..Default::default()
        };
        assert_eq!(suppressed(t(0.2)), 4);
        assert_eq!(suppressed(t(0.21)), 1);
        assert_eq!(suppressed(t(0.62)), 1);
        assert_eq!(suppressed(t(0.63)), 0);
    }

    #[test]
    fn equal_distance_is_half_the_l1_distance() {
        // {a}: ½ (¾ + ¼ + ¼ + ¼) = 0.75; {b, c, d}: ½ (¼ + 3 × (⅓ − ¼)) = 0.25.
        let t = |t| Models {
            t_closeness: Some(TCloseness::Equal(t)),
            ..Default::default()
        };
        assert_eq!(suppressed(t(0.24)), 4);
        assert_eq!(suppressed(t(0.25)), 1);
        assert_eq!(suppressed(t(0.74)), 1);
        assert_eq!(suppressed(t(0.75)), 0);
    }

    /// k' by hand for adult's 30,162 rows in the US population (317,238,626): for k = 3 the mean
    /// λ = 2.85e-4 makes P(1 | ≥ 1) = λ e^−λ / (1 − e^−λ) ≈ 0.99986 ≥ 0.99 at once, so k' = 2; for
    /// k = 1000, λ = 0.0951: P(1 | ≥ 1) ≈ 0.9533, plus P(2 | ≥ 1) ≈ 0.0453 reaches 0.9987, so
    /// k' = 3. Poisson: P(0) = e^−λ ≈ 0.9997 gives 2 for k = 3; for k = 1000, P(≤ 0) ≈ 0.9093 and
    /// P(≤ 1) ≈ 0.9958 give 3. A k below the estimate, or a sample smaller than it, caps k'.
    #[test]
    fn k_map_derives_k_prime_as_arx_does() {
        let map = |k, zero_truncated| KMap {
            k,
            population: 317_238_626,
            significance: 0.01,
            zero_truncated,
        };
        assert_eq!(map(3, true).derived_k(30_162), 2);
        assert_eq!(map(1000, true).derived_k(30_162), 3);
        assert_eq!(map(3, false).derived_k(30_162), 2);
        assert_eq!(map(1000, false).derived_k(30_162), 3);
        assert_eq!(map(1, true).derived_k(30_162), 1);
        assert_eq!(map(1000, true).derived_k(2), 2);
        // A sample that is the whole population: every class must hold k.
        let whole = KMap {
            population: 1000,
            ..map(5, true)
        };
        assert_eq!(whole.derived_k(1000), 5);
    }

    #[test]
    fn l_diversity_distinct_and_entropy() {
        let l = |l| Models {
            l_diversity: Some(l),
            ..Default::default()
        };
        // {a} has 1 value, entropy 0; {b, c, d} has 3 values, entropy ln 3 ≈ 1.0986 = ln ℓ at ℓ = 3.
        assert_eq!(suppressed(l(LDiversity::Distinct(1))), 0);
        assert_eq!(suppressed(l(LDiversity::Distinct(3))), 1);
        assert_eq!(suppressed(l(LDiversity::Distinct(4))), 4);
        assert_eq!(suppressed(l(LDiversity::Entropy(2.99))), 1);
        assert_eq!(suppressed(l(LDiversity::Entropy(3.0))), 1);
        assert_eq!(suppressed(l(LDiversity::Entropy(3.01))), 4);
    }

    /// Rows added in batches (packed, scattered over partitions, updated in parallel) make the same
    /// table as rows added one by one, while codes grow past the packed widths (keys packed again);
    /// codes past 128 bits in all make no table, with the layout's error.
    #[test]
    fn batches_make_the_same_table_as_single_rows() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(65);
        let h = |n: usize| {
            Hierarchy::from_paths((0..n).map(|v| (v.to_string(), vec!["*".to_string()])), "qi")
                .unwrap()
        };
        // Per case: each column's number of values in each of five rounds (codes grow).
        let cases: [&[[u32; 5]]; 3] = [
            &[[7; 5], [3; 5]],
            &[[2, 9, 40, 300, 300], [3, 3, 3, 70_000, 70_000], [5; 5]],
            // Twelve columns of codes up to 1,024 need 132 bits: no table.
            &[[4, 4, 2048, 2048, 2048]; 12],
        ];
        for (case, cardinalities) in cases.iter().enumerate() {
            let (mut single, mut batched) = (TableBuilder::new(true), TableBuilder::new(true));
            let mut distinct = std::collections::HashSet::new();
            for round in 0..5 {
                let rows = 3_000;
                let columns: Vec<Vec<u32>> = cardinalities
                    .iter()
                    .map(|c| {
                        (0..rows)
                            .map(|_| rng.random_range(0..c[round] / 2 + 1))
                            .collect()
                    })
                    .collect();
                // Identities of real persons are never NOBODY (0); neighbours often repeat.
                let persons: Vec<u64> = (0..rows)
                    .map(|_| {
                        rng.random_range(1..401u64)
                            .wrapping_mul(0x2545_f491_4f6c_dd1d)
                    })
                    .collect();
                for r in 0..rows {
                    let codes: Vec<u32> = columns.iter().map(|c| c[r]).collect();
                    single.add(&codes, persons[r], 1);
                    distinct.insert(persons[r]);
                }
                batched.add_batch(&columns, Some(&persons));
            }
            let hierarchies = || {
                cardinalities
                    .iter()
                    .map(|c| h(*c.iter().max().unwrap() as usize / 2 + 1))
                    .collect::<Vec<_>>()
            };
            if case == 2 {
                for b in [single, batched] {
                    let error = b.finish(hierarchies(), None).unwrap_err().to_string();
                    assert!(error.contains("more than the 128"), "{error}");
                }
                continue;
            }
            let single = single.finish(hierarchies(), None).unwrap();
            let batched = batched.finish(hierarchies(), None).unwrap();
            assert_eq!(single.rows, 5 * 3_000);
            assert_eq!(
                (single.rows, single.persons),
                (batched.rows, batched.persons)
            );
            // Each person, spread over many classes and partitions, is numbered once.
            assert_eq!(single.persons, Some(distinct.len()), "case {case}");
            let groups = |t: &Table| t.groups.iter().collect::<Vec<_>>();
            assert_eq!(groups(&single), groups(&batched), "case {case}");
        }
    }

    /// The radix sort orders keys as a comparison sort does, narrow and wide, short and long lists,
    /// keys that use few bits, all bits, or share whole digits.
    #[test]
    fn radix_sort_orders_as_a_comparison_sort() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(67);
        for (len, bits) in [
            (0, 8),
            (300, 20),
            (513, 64),
            (5_000, 37),
            (20_000, 11),
            (20_000, 64),
        ] {
            // Keys of `bits` bits, with a digit that is the same in every key (skipped).
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            let narrow: Vec<(u64, u32)> = (0..len)
                .map(|i| ((rng.random::<u64>() & mask) | 1 << 12, i as u32))
                .collect();
            let wide: Vec<(u128, u32)> = narrow
                .iter()
                .map(|&(k, i)| ((k as u128) << 60 ^ rng.random::<u64>() as u128, i))
                .collect();
            let (mut sorted, mut expected) = (narrow.clone(), narrow);
            radix_sort(&mut sorted);
            expected.sort_unstable_by_key(|g| g.0);
            let keys = |v: &[(u64, u32)]| v.iter().map(|g| g.0).collect::<Vec<_>>();
            assert_eq!(keys(&sorted), keys(&expected), "{len} keys of {bits} bits");
            let (mut sorted, mut expected) = (wide.clone(), wide);
            radix_sort(&mut sorted);
            expected.sort_unstable_by_key(|g| g.0);
            let keys = |v: &[(u128, u32)]| v.iter().map(|g| g.0).collect::<Vec<_>>();
            assert_eq!(keys(&sorted), keys(&expected), "{len} wide keys");
            // Every item is kept with its count.
            let mut counts: Vec<u32> = sorted.iter().map(|g| g.1).collect();
            counts.sort_unstable();
            assert_eq!(counts, (0..len as u32).collect::<Vec<_>>());
        }
    }

    /// A projection with persons below the quasi-identifiers: keys sorted, equal keys summed, as
    /// computed from the base groups with a map.
    #[test]
    fn projections_with_persons_sum_equal_keys_in_order() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(66);
        // Column 0: 0..7 → its half → `*`; column 1: 0..3 → `*`.
        let halves = Hierarchy::from_paths(
            (0..7).map(|v| (v.to_string(), vec![(v / 2).to_string(), "*".into()])),
            "a",
        )
        .unwrap();
        let top =
            Hierarchy::from_paths((0..3).map(|v| (v.to_string(), vec!["*".into()])), "b").unwrap();
        for rows in [500, PARTITIONED_MERGE + 5_000] {
            let mut b = TableBuilder::new(true);
            let columns = [
                (0..rows).map(|_| rng.random_range(0..7u32)).collect(),
                (0..rows).map(|_| rng.random_range(0..3u32)).collect(),
            ];
            let persons: Vec<u64> = (0..rows)
                .map(|_| rng.random_range(0..(rows as u64 / 3)))
                .collect();
            b.add_batch(&columns, Some(&persons));
            let t = b.finish(vec![halves.clone(), top.clone()], None).unwrap();
            let (shifts, masks) = (&t.layout.shifts, &t.layout.masks);
            let mut expected: std::collections::BTreeMap<u128, u32> = Default::default();
            for (key, n) in t.base().iter() {
                let code0 = ((key >> shifts[0]) & masks[0]) as u32;
                let parent = t.hierarchies[0].parent(0, code0) as u128;
                let key = (key & !(masks[0] << shifts[0]) & !(masks[1] << shifts[1]))
                    | parent << shifts[0];
                *expected.entry(key).or_default() += n;
            }
            let projected = t.project(t.base(), &[0, 0], &[1, 1]);
            let got: Vec<(u128, u32)> = projected.iter().collect();
            assert_eq!(got, expected.into_iter().collect::<Vec<_>>(), "{rows} rows");
        }
    }

    #[test]
    fn persons_not_rows_make_a_class() {
        // One class of 3 rows from 2 persons, one class of 1 row.
        let h = Hierarchy::from_paths(
            [
                ("x".to_string(), vec!["*".to_string()]),
                ("y".into(), vec!["*".into()]),
            ],
            "qi",
        )
        .unwrap();
        // Persons are identities, not codes: any 64-bit values, numbered densely by `finish`.
        let mut b = TableBuilder::new(true);
        b.add(&[0], u64::MAX, 2);
        b.add(&[0], 7, 1);
        b.add(&[1], 1 << 40, 1);
        let t = b.finish(vec![h], None).unwrap();
        assert_eq!(t.persons, Some(3));
        let k = |k| Models {
            k: Some(k),
            ..Default::default()
        };
        let e = t.evaluate(&[0], t.base(), &k(2), Metric::Discernibility);
        assert_eq!((e.classes, e.suppressed_rows), (2, 1));
        // Three rows but two persons: k = 3 suppresses both classes.
        assert_eq!(
            t.evaluate(&[0], t.base(), &k(3), Metric::NueMono)
                .suppressed_rows,
            4
        );
        // Generalised to `*`: three persons in one class.
        let top = t.project(t.base(), &[0], &[1]);
        assert_eq!(
            t.evaluate(&[1], &top, &k(3), Metric::NueMono)
                .suppressed_rows,
            0
        );
        assert_eq!(
            t.evaluate(&[1], &top, &k(4), Metric::NueMono)
                .suppressed_rows,
            4
        );
    }

    /// Rows without a person (NOBODY) count as no one in their class, and a class of such rows
    /// only as one person; the table's persons leave them out.
    #[test]
    fn rows_without_a_person_count_as_no_one() {
        let h = Hierarchy::from_paths(
            ["x", "y", "z"].map(|v| (v.to_string(), vec!["*".to_string()])),
            "qi",
        )
        .unwrap();
        let mut b = TableBuilder::new(true);
        // x: two persons and rows without one; y: one person and rows without one; z: rows
        // without a person only.
        b.add(&[0], 11, 1);
        b.add(&[0], 12, 1);
        b.add(&[0], NOBODY, 5);
        b.add(&[1], 13, 1);
        b.add(&[1], NOBODY, 3);
        b.add(&[2], NOBODY, 2);
        let t = b.finish(vec![h], None).unwrap();
        assert_eq!((t.rows, t.persons), (13, Some(3)));
        let mut sizes = Vec::new();
        let models = Models::default();
        t.for_each_class(&[0], t.base(), &models, |_, c| sizes.push((c.rows, c.size)));
        sizes.sort();
        assert_eq!(sizes, vec![(2, 1), (4, 1), (7, 2)]);
        let k2 = Models {
            k: Some(2),
            ..Default::default()
        };
        let e = t.evaluate(&[0], t.base(), &k2, Metric::Discernibility);
        assert_eq!(e.suppressed_rows, 6);
        // At `*`: three persons, whatever the rows without one are.
        let top = t.project(t.base(), &[0], &[1]);
        let mut sizes = Vec::new();
        t.for_each_class(&[1], &top, &models, |_, c| sizes.push((c.rows, c.size)));
        assert_eq!(sizes, vec![(13, 3)]);
    }
}
