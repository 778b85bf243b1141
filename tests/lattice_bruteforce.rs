//! The lattice search against brute force on small random data sets: a naive evaluator written here
//! from the definitions (rows grouped by their generalised labels in a hash map, models and metrics
//! computed from the groups) scores every transformation; the search must return the best feasible
//! one (or one tied with it), or none exactly when none is feasible.

use std::collections::HashMap;

use ehds_prep::privacy::hierarchy::Hierarchy;
use ehds_prep::privacy::lattice::{self, Bounds, Budget, Watch};
use ehds_prep::privacy::table::{
    AverageRisk, DeltaPresence, Estimator, HighestRisk, LDiversity, Metric, Models,
    PopulationUniqueness, Sensitive, TCloseness, Table, TableBuilder,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// A random hierarchy over `n` values: level l of value v is v / (branching^l), top `*`.
fn random_hierarchy(rng: &mut ChaCha8Rng, n: usize) -> (Vec<Vec<String>>, Hierarchy) {
    let height = rng.random_range(2..=4usize);
    let branching = rng.random_range(2..=3usize);
    let labels: Vec<Vec<String>> = (0..n)
        .map(|v| {
            (0..height)
                .map(|l| {
                    if l + 1 == height {
                        "*".to_string()
                    } else {
                        format!("{l}:{}", v / branching.pow(l as u32))
                    }
                })
                .collect()
        })
        .collect();
    let h = Hierarchy::from_paths(
        labels.iter().map(|p| (p[0].clone(), p[1..].to_vec())),
        "random",
    )
    .unwrap();
    (labels, h)
}

struct Naive {
    /// Per row: label path per quasi-identifier, person, sensitive value.
    rows: Vec<(Vec<usize>, usize, usize)>,
    labels: Vec<Vec<Vec<String>>>,
    sensitive_values: usize,
    persons: bool,
    /// With a research subset (`rows` its rows): every row of the dataset, as label indices, with
    /// its person.
    population: Option<Vec<(Vec<usize>, usize)>>,
}

struct NaiveResult {
    feasible: bool,
    score: f64,
}

impl Naive {
    fn evaluate(&self, levels: &[u8], models: &Models, metric: Metric) -> NaiveResult {
        let n = self.rows.len() as f64;
        let key = |row: &(Vec<usize>, usize, usize)| -> Vec<String> {
            row.0
                .iter()
                .enumerate()
                .map(|(j, &v)| self.labels[j][v][levels[j] as usize].clone())
                .collect()
        };
        let mut classes: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            classes.entry(key(row)).or_default().push(i);
        }
        // The population's size per class: distinct persons, or rows.
        let mut population_rows: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
        for (i, (values, person)) in self.population.iter().flatten().enumerate() {
            population_rows
                .entry(key(&(values.clone(), 0, 0)))
                .or_default()
                .push(if self.persons { *person } else { i });
        }
        let population: HashMap<Vec<String>, usize> = population_rows
            .into_iter()
            .map(|(class, mut members)| {
                members.sort();
                members.dedup();
                (class, members.len())
            })
            .collect();
        let delta = |delivered: usize, of: usize| {
            let share = if delivered == 0 {
                0.0
            } else {
                delivered as f64 / of as f64
            };
            models
                .delta_presence
                .is_none_or(|d| share >= d.min && share <= d.max)
        };
        // A population class with no delivered row has a share of 0: it cannot be suppressed.
        let population_holds = population.len() == classes.len() || delta(0, 1);
        let mut global = vec![0f64; self.sensitive_values];
        for row in &self.rows {
            global[row.2] += 1.0 / n;
        }
        let (mut suppressed, mut kept_classes, mut squares) = (Vec::new(), 0u64, 0f64);
        let (mut kept, mut kept_squares) = (Vec::new(), 0f64);
        let mut passing: Vec<(usize, Vec<usize>)> = Vec::new();
        for members in classes.values() {
            let rows = members.len() as f64;
            squares += rows * rows;
            let mut persons: Vec<usize> = members.iter().map(|&i| self.rows[i].1).collect();
            persons.sort();
            persons.dedup();
            let size = if self.persons {
                persons.len()
            } else {
                members.len()
            };
            let mut counts = vec![0f64; self.sensitive_values];
            for &i in members {
                counts[self.rows[i].2] += 1.0;
            }
            let present = counts.iter().filter(|&&c| c > 0.0).count();
            let entropy: f64 = counts
                .iter()
                .filter(|&&c| c > 0.0)
                .map(|&c| -(c / rows) * (c / rows).ln())
                .sum();
            let mut ok = models.k.is_none_or(|k| size >= k as usize);
            if self.population.is_some() {
                let of = population[&key(&self.rows[members[0]])];
                ok &= models.population_k.is_none_or(|k| of >= k as usize) && delta(size, of);
            }
            match models.l_diversity {
                Some(LDiversity::Distinct(l)) => ok &= present >= l as usize,
                Some(LDiversity::Entropy(l)) => ok &= entropy >= l.ln(),
                Some(LDiversity::Recursive { c, l }) => {
                    let mut r: Vec<f64> = counts.iter().copied().filter(|&c| c > 0.0).collect();
                    r.sort_by(|a, b| b.total_cmp(a));
                    ok &=
                        r.len() >= l as usize && r[0] < c * r[l as usize - 1..].iter().sum::<f64>();
                }
                None => {}
            }
            match models.t_closeness {
                Some(TCloseness::Equal(t)) => {
                    let d: f64 = counts
                        .iter()
                        .zip(&global)
                        .map(|(c, g)| (c / rows - g).abs())
                        .sum::<f64>()
                        / 2.0;
                    ok &= d <= t;
                }
                Some(TCloseness::Ordered(t)) => {
                    // Over the values the table holds, in numeric order (the labels are numbers):
                    // the mass moved one step at a time, over the m − 1 steps.
                    let held: Vec<usize> = (0..self.sensitive_values)
                        .filter(|&v| global[v] > 0.0)
                        .collect();
                    let mut moved = 0.0;
                    for i in 0..held.len() {
                        let below: f64 = held[..=i]
                            .iter()
                            .map(|&v| counts[v] / rows - global[v])
                            .sum();
                        moved += below.abs();
                    }
                    ok &= moved / (held.len().max(2) - 1) as f64 <= t;
                }
                _ => {}
            }
            if ok {
                passing.push((size, members.clone()));
            } else {
                suppressed.extend(members.iter().copied());
            }
        }
        // Risk-based models: the smallest passing classes (by persons, then rows) suppressed, one at
        // a time, until the average risk (mean over kept rows of 1 / size), the share of rows in
        // classes below the highest risk's size and the share of rows in classes of one hold.
        passing.sort_by_key(|(size, members)| (*size, members.len()));
        let holds = |passing: &[(usize, Vec<usize>)]| {
            let rows: usize = passing.iter().map(|p| p.1.len()).sum();
            if rows == 0 {
                return true;
            }
            let share = |f: &dyn Fn(usize) -> bool| {
                passing
                    .iter()
                    .filter(|p| f(p.0))
                    .map(|p| p.1.len())
                    .sum::<usize>() as f64
                    / rows as f64
            };
            let risk: f64 = passing
                .iter()
                .map(|p| p.1.len() as f64 / p.0 as f64)
                .sum::<f64>()
                / rows as f64;
            models.average_risk.is_none_or(|a| {
                risk <= a.average + 1e-12
                    && a.highest.is_none_or(|h| {
                        share(&|size| (size as f64) < 1.0 / h.risk - 1e-9) <= h.records_at_risk
                    })
            }) && models
                .sample_uniqueness
                .is_none_or(|u| share(&|size| size == 1) <= u)
                && models.population_uniqueness.is_none_or(|p| {
                    let mut frequencies: Vec<(u64, u64)> = Vec::new();
                    for (size, _) in passing {
                        match frequencies.last_mut() {
                            Some(last) if last.0 == *size as u64 => last.1 += 1,
                            _ => frequencies.push((*size as u64, 1)),
                        }
                    }
                    p.holds(&frequencies)
                })
        };
        let cut = if models.population_uniqueness.is_some() {
            arx_bisection(passing.len(), |cut| holds(&passing[cut..]))
        } else {
            // The other risks never rise as small classes go: the first cut that holds.
            (0..=passing.len())
                .find(|&cut| holds(&passing[cut..]))
                .unwrap()
        };
        for (_, members) in &passing[..cut] {
            suppressed.extend(members.iter().copied());
        }
        for (_, members) in &passing[cut..] {
            kept_classes += 1;
            kept_squares += (members.len() * members.len()) as f64;
            kept.extend(members.iter().copied());
        }
        let budget = (models.suppression_limit * n).floor() as usize;
        // NUE-mono from its definition: every row, every quasi-identifier.
        let nue_mono: f64 = (0..self.labels.len())
            .map(|j| {
                let count = |level: usize, label: &String| {
                    self.rows
                        .iter()
                        .filter(|r| &self.labels[j][r.0[j]][level] == label)
                        .count() as f64
                };
                self.rows
                    .iter()
                    .map(|r| {
                        let path = &self.labels[j][r.0[j]];
                        -(count(0, &path[0]) / count(levels[j] as usize, &path[levels[j] as usize]))
                            .log2()
                    })
                    .sum::<f64>()
            })
            .sum();
        let score = match metric {
            Metric::NueMono => nue_mono,
            Metric::Nue => {
                let s = suppressed.len() as f64;
                let mut extra = 0.0;
                for (j, (labels, &level)) in self.labels.iter().zip(levels).enumerate() {
                    let mut c: HashMap<&String, f64> = HashMap::new();
                    for &i in &suppressed {
                        *c.entry(&labels[self.rows[i].0[j]][level as usize])
                            .or_default() += 1.0;
                    }
                    extra -= c.values().map(|&c| c * (c / s).log2()).sum::<f64>();
                }
                nue_mono + extra
            }
            Metric::Discernibility => squares,
            Metric::DiscernibilityWithSuppression => kept_squares + n * suppressed.len() as f64,
            Metric::Height => levels.iter().map(|&l| l as f64).sum(),
            Metric::Loss => {
                // Per column: the share of the hierarchy's values (all of them, present or not)
                // under each kept row's label, 1 per suppressed row, normalised; geometric mean.
                let q = levels.len() as f64;
                let mut product = 1.0;
                for (j, labels) in self.labels.iter().enumerate() {
                    let level = levels[j] as usize;
                    let domain = labels.len() as f64;
                    let share = |label: &String| {
                        labels.iter().filter(|p| &p[level] == label).count() as f64 / domain
                    };
                    let raw: f64 = kept
                        .iter()
                        .map(|&i| share(&labels[self.rows[i].0[j]][level]))
                        .sum::<f64>()
                        + suppressed.len() as f64;
                    let least = n / domain;
                    let loss = ((raw - least) / (n - least)).max(0.0);
                    product *= (1.0 + loss).powf(1.0 / q);
                }
                product - 1.0
            }
            Metric::Aecs => n / (kept_classes + u64::from(!suppressed.is_empty())).max(1) as f64,
            Metric::Precision => {
                levels
                    .iter()
                    .enumerate()
                    .map(|(j, &l)| l as f64 / (self.labels[j][0].len() - 1) as f64)
                    .sum::<f64>()
                    / levels.len() as f64
            }
        };
        NaiveResult {
            feasible: suppressed.len() <= budget && population_holds,
            score,
        }
    }
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Recursive (c,ℓ)-diversity with c off the ratios of small counts.
fn recursive(rng: &mut ChaCha8Rng) -> LDiversity {
    LDiversity::Recursive {
        c: rng.random_range(5..=30) as f64 / 10.0 + 0.0137,
        l: rng.random_range(1..=3),
    }
}

/// Equal- or ordered-distance t-closeness, t off the rationals small classes produce.
fn closeness(rng: &mut ChaCha8Rng) -> TCloseness {
    let t = rng.random_range(2..=5) as f64 / 10.0 + 0.0137;
    if rng.random_bool(0.5) {
        TCloseness::Equal(t)
    } else {
        TCloseness::Ordered(t)
    }
}

/// How many of the smallest classes ARX suppresses under a risk-based model, as its
/// `suppressWhileNotFulfilledBinary` bisects, `holds(cut)` telling whether the model holds with the
/// `cut` smallest suppressed. Once the first class is suppressed the bisection never restores it.
fn arx_bisection(classes: usize, holds: impl Fn(usize) -> bool) -> usize {
    if holds(0) {
        return 0;
    }
    let (mut low, mut high) = (0i64, classes as i64 - 1);
    let mut mid = (low + high) / 2;
    let mut cut = mid as usize + 1;
    while low <= high {
        if holds(cut) {
            high = mid - 1;
            mid = (low + high) / 2;
            cut = cut.min(mid as usize + 1);
        } else {
            low = mid + 1;
            mid = (low + high) / 2;
            cut = cut.max(mid as usize + 1);
        }
    }
    if !holds(cut) && cut < classes {
        cut += 1;
    }
    cut
}

/// A random small data set, its table and the models to search it under: any model when
/// `non_monotone` is false, else entropy ℓ-diversity or t-closeness with suppression.
fn random_case(rng: &mut ChaCha8Rng, non_monotone: bool) -> (Table, Naive, Models, usize) {
    let q = rng.random_range(1..=3usize);
    let sizes: Vec<usize> = (0..q).map(|_| rng.random_range(2..=7usize)).collect();
    let hierarchies: Vec<(Vec<Vec<String>>, Hierarchy)> =
        sizes.iter().map(|&n| random_hierarchy(rng, n)).collect();
    let persons = rng.random_bool(0.5);
    let sensitive_values = rng.random_range(2..=4usize);
    let n = rng.random_range(5..=60usize);
    let person_count = (n / 2).max(1);
    let rows: Vec<(Vec<usize>, usize, usize)> = (0..n)
        .map(|_| {
            (
                sizes.iter().map(|&s| rng.random_range(0..s)).collect(),
                rng.random_range(0..person_count),
                rng.random_range(0..sensitive_values),
            )
        })
        .collect();
    let models = if non_monotone {
        // Entropy or recursive ℓ-diversity, or t-closeness, with suppression: feasibility need not
        // be upward closed.
        let diversity = rng.random_bool(0.6);
        Models {
            k: rng.random_bool(0.6).then(|| rng.random_range(2..=4)),
            l_diversity: diversity.then(|| {
                if rng.random_bool(0.5) {
                    LDiversity::Entropy(rng.random_range(12..=22) as f64 / 10.0 + 0.0137)
                } else {
                    recursive(rng)
                }
            }),
            t_closeness: (!diversity || rng.random_bool(0.3)).then(|| closeness(rng)),
            suppression_limit: [0.05, 0.2, 0.5][rng.random_range(0..3)],
            ..Models::default()
        }
    } else {
        Models {
            k: rng.random_bool(0.8).then(|| rng.random_range(2..=5)),
            l_diversity: match rng.random_range(0..5) {
                0 => Some(LDiversity::Distinct(rng.random_range(1..=3))),
                // Thresholds off the rationals small classes produce, so that no class sits on one.
                1 => Some(LDiversity::Entropy(
                    rng.random_range(10..=25) as f64 / 10.0 + 0.0137,
                )),
                2 => Some(recursive(rng)),
                _ => None,
            },
            t_closeness: rng.random_bool(0.25).then(|| closeness(rng)),
            // Bounds off the ratios small tables produce.
            average_risk: rng.random_bool(0.25).then(|| AverageRisk {
                average: rng.random_range(15..=60) as f64 / 100.0 + 0.00137,
                highest: rng.random_bool(0.5).then(|| HighestRisk {
                    risk: rng.random_range(2..=6) as f64 / 10.0 + 0.0137,
                    records_at_risk: rng.random_range(1..=5) as f64 / 10.0 + 0.0137,
                }),
            }),
            k_map: None,
            population_uniqueness: None,
            population_k: None,
            delta_presence: None,
            sample_uniqueness: rng
                .random_bool(0.2)
                .then(|| rng.random_range(0..=3) as f64 / 10.0 + 0.0137),
            suppression_limit: [0.0, 0.05, 0.2, 0.5][rng.random_range(0..4)],
        }
    };

    let sensitive_hierarchy = Hierarchy::from_paths(
        (0..sensitive_values).map(|v| (v.to_string(), Vec::new())),
        "sensitive",
    )
    .unwrap();
    let mut builder = TableBuilder::new(persons);
    for (values, person, s) in &rows {
        let mut codes: Vec<u32> = values
            .iter()
            .zip(&hierarchies)
            .map(|(&v, (labels, h))| h.code(&labels[v][0]).unwrap())
            .collect();
        codes.push(sensitive_hierarchy.code(&s.to_string()).unwrap());
        // Persons by a scattered 64-bit identity, as the profile hashes them.
        let identity = (*person as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        builder.add(&codes, if persons { identity } else { 0 }, 1);
    }
    let table = builder
        .finish(
            hierarchies.iter().map(|(_, h)| h.clone()).collect(),
            Some(Sensitive {
                hierarchy: sensitive_hierarchy,
            }),
        )
        .unwrap();
    let naive = Naive {
        rows: rows.clone(),
        labels: hierarchies.iter().map(|(l, _)| l.clone()).collect(),
        sensitive_values,
        persons,
        population: None,
    };
    (table, naive, models, q)
}

/// Searches `table` and compares with brute force over every transformation; returns whether any
/// transformation was feasible and whether feasibility was upward closed.
fn check_against_brute_force(
    table: &Table,
    naive: &Naive,
    models: &Models,
    metric: Metric,
    q: usize,
    case: usize,
) -> (bool, bool) {
    let bounds = Bounds::full(table);
    let mut best: Option<(f64, Vec<u8>)> = None;
    let mut all = vec![bounds.min.clone()];
    for j in 0..q {
        all = all
            .into_iter()
            .flat_map(|n| {
                (0..=bounds.max[j]).map(move |l| {
                    let mut m = n.clone();
                    m[j] = l;
                    m
                })
            })
            .collect();
    }
    for levels in &all {
        let r = naive.evaluate(levels, models, metric);
        if r.feasible
            && best
                .as_ref()
                .is_none_or(|(s, _)| r.score < *s && !same(r.score, *s))
        {
            best = Some((r.score, levels.clone()));
        }
    }
    let found = lattice::search(table, models, metric, &bounds).optimum;
    let context = format!(
        "case {case}: {models:?} {metric:?} persons {}",
        naive.persons
    );
    let any_feasible = best.is_some();
    match (best, found) {
        (None, None) => {}
        (Some((score, levels)), Some(e)) => {
            assert!(
                same(e.score, score),
                "{context}: search {:?} scores {}, brute force {levels:?} scores {score}",
                e.levels,
                e.score
            );
            let check = naive.evaluate(&e.levels, models, metric);
            assert!(check.feasible, "{context}: {:?} is not feasible", e.levels);
            assert!(same(check.score, e.score), "{context}: scores differ");
        }
        (best, found) => panic!("{context}: brute force {best:?}, search {found:?}"),
    }
    // The exhaustive evaluation the library offers agrees with the naive one everywhere.
    let every = lattice::evaluate_all(table, models, metric, &bounds);
    for e in &every {
        let r = naive.evaluate(&e.levels, models, metric);
        assert_eq!(e.feasible, r.feasible, "{context}: {:?}", e.levels);
        assert!(
            same(e.score, r.score),
            "{context}: {:?} {} vs {}",
            e.levels,
            e.score,
            r.score
        );
    }
    let upward_closed = every.iter().filter(|e| e.feasible).all(|f| {
        every
            .iter()
            .filter(|g| g.levels.iter().zip(&f.levels).all(|(a, b)| a >= b))
            .all(|g| g.feasible)
    });
    (any_feasible, upward_closed)
}

/// `metric`, or NUE-mono where a risk-based model makes it depend on which of several classes of one
/// size are suppressed (the engine's choice, by generalised values): NUE and loss count which rows
/// were suppressed, the other metrics only how many and in what classes' sizes.
fn comparable(metric: Metric, models: &Models) -> Metric {
    match metric {
        Metric::Nue | Metric::Loss if models.risk_based() => Metric::NueMono,
        m => m,
    }
}

#[test]
fn search_finds_the_brute_force_optimum() {
    let metrics = [
        Metric::NueMono,
        Metric::Nue,
        Metric::Discernibility,
        Metric::Aecs,
        Metric::Precision,
        Metric::DiscernibilityWithSuppression,
        Metric::Height,
        Metric::Loss,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(2029);
    let mut infeasible_cases = 0;
    for case in 0..480 {
        let (table, naive, models, q) = random_case(&mut rng, false);
        let metric = comparable(metrics[case % metrics.len()], &models);
        let (feasible, _) = check_against_brute_force(&table, &naive, &models, metric, q, case);
        infeasible_cases += usize::from(!feasible);
    }
    // The random cases include some without any feasible transformation, and mostly ones with.
    assert!(
        infeasible_cases > 0 && infeasible_cases < 240,
        "{infeasible_cases}"
    );
}

/// Under entropy ℓ-diversity and t-closeness with suppression a more general transformation can be
/// infeasible above a feasible one; the search prunes there only by the models' monotone part (k and
/// the rows ℓ needs). Cases are drawn until 60 of them are not upward closed.
#[test]
fn non_monotone_models_with_suppression_are_searched_exactly() {
    let metrics = [
        Metric::NueMono,
        Metric::Nue,
        Metric::Discernibility,
        Metric::DiscernibilityWithSuppression,
        Metric::Loss,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(327);
    let mut not_closed = 0;
    let mut case = 0;
    while not_closed < 60 {
        assert!(
            case < 5000,
            "only {not_closed} non-monotone cases in {case}"
        );
        let (table, naive, models, q) = random_case(&mut rng, true);
        let metric = metrics[case % metrics.len()];
        let (_, closed) = check_against_brute_force(&table, &naive, &models, metric, q, case);
        not_closed += usize::from(!closed);
        case += 1;
    }
}

/// Population uniqueness, under each estimator, alone or with the other models: an estimate may
/// rise as classes merge, so the search may not prune by it; the optimum is the brute force's.
#[test]
fn population_uniqueness_is_searched_exactly() {
    let estimators = [
        Estimator::Pitman,
        Estimator::Zayatz,
        Estimator::Snb,
        Estimator::Dankar,
    ];
    let metrics = [
        Metric::NueMono,
        Metric::Discernibility,
        Metric::Aecs,
        Metric::Height,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(2012);
    let (mut binding, mut not_closed) = (0, 0);
    for case in 0..240 {
        let (table, naive, mut models, q) = random_case(&mut rng, false);
        if rng.random_bool(0.5) {
            models = Models::default();
        }
        models.suppression_limit = [0.0, 0.1, 0.3, 0.6][rng.random_range(0..4)];
        let metric = comparable(metrics[case % metrics.len()], &models);
        let bottom = Bounds::full(&table).min;
        let feasible_without = naive.evaluate(&bottom, &models, metric).feasible;
        models.population_uniqueness = Some(PopulationUniqueness {
            threshold: [0.0002, 0.001, 0.005, 0.02][rng.random_range(0..4)],
            population: table.rows * rng.random_range(2..=200),
            estimator: estimators[case % estimators.len()],
        });
        binding +=
            usize::from(feasible_without && !naive.evaluate(&bottom, &models, metric).feasible);
        let (_, closed) = check_against_brute_force(&table, &naive, &models, metric, q, case);
        not_closed += usize::from(!closed);
    }
    // The model decides: it refuses transformations the others accept, and not upward closed.
    assert!(binding >= 20, "{binding} cases where the model binds");
    assert!(not_closed > 0, "every case was upward closed");
}

/// δ-presence and k-map counted in the population, with a random research subset of rows or of
/// persons' rows, alone or with k and the risk-based models: the search's optimum is the brute
/// force's (δ-presence with suppression is not monotone).
#[test]
fn research_subset_models_are_searched_exactly() {
    let metrics = [
        Metric::NueMono,
        Metric::Nue,
        Metric::Discernibility,
        Metric::Aecs,
        Metric::Loss,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(2006);
    let (mut feasible_cases, mut not_closed) = (0, 0);
    for case in 0..300 {
        let (table, mut naive, _, q) = random_case(&mut rng, false);
        // A random part of the dataset is the research subset.
        let persons = naive.persons;
        let population: Vec<(Vec<usize>, usize)> =
            naive.rows.iter().map(|r| (r.0.clone(), r.1)).collect();
        let share = rng.random_range(2..=8) as f64 / 10.0;
        naive.rows.retain(|_| rng.random_bool(share));
        if naive.rows.is_empty() {
            continue;
        }
        let codes = |values: &[usize]| -> Vec<u32> {
            values
                .iter()
                .enumerate()
                .map(|(j, &v)| table.hierarchies[j].code(&naive.labels[j][v][0]).unwrap())
                .collect()
        };
        // Persons by a scattered 64-bit identity, as the profile hashes them.
        let identity = |person: usize| {
            if persons {
                (person as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            } else {
                0
            }
        };
        let mut subset_builder = TableBuilder::new(persons);
        for row in &naive.rows {
            subset_builder.add(&codes(&row.0), identity(row.1), 1);
        }
        let mut population_builder = TableBuilder::new(persons);
        for (values, person) in &population {
            population_builder.add(&codes(values), identity(*person), 1);
        }
        let mut subset = subset_builder
            .finish(table.hierarchies.clone(), None)
            .unwrap();
        subset.attach_population(
            population_builder
                .finish(table.hierarchies.clone(), None)
                .unwrap(),
        );
        naive.population = Some(population);
        let models = Models {
            k: rng.random_bool(0.3).then(|| rng.random_range(2..=3)),
            population_k: rng.random_bool(0.5).then(|| rng.random_range(2..=6)),
            delta_presence: rng.random_bool(0.7).then(|| DeltaPresence {
                min: [0.0, 0.05, 0.15][rng.random_range(0..3)] + 0.0013,
                max: [0.35, 0.6, 0.85, 1.0][rng.random_range(0..4)] - 0.0013,
            }),
            sample_uniqueness: rng
                .random_bool(0.2)
                .then(|| rng.random_range(1..=3) as f64 / 10.0 + 0.0137),
            suppression_limit: [0.0, 0.1, 0.3, 0.6][rng.random_range(0..4)],
            ..Models::default()
        };
        let metric = comparable(metrics[case % metrics.len()], &models);
        let (feasible, closed) =
            check_against_brute_force(&subset, &naive, &models, metric, q, case);
        feasible_cases += usize::from(feasible);
        not_closed += usize::from(!closed);
    }
    assert!(feasible_cases >= 40, "{feasible_cases} feasible cases");
    assert!(not_closed > 0, "every case was upward closed");
}

/// A search with a node budget stops early: what it returns is feasible and scored right, its lower
/// bound is at most the true optimum's score (so the reported gap is an upper bound of the real one),
/// a search that reports itself complete found the optimum, and the same budget gives the same answer.
#[test]
fn a_budgeted_search_returns_a_feasible_transformation_and_a_true_lower_bound() {
    let metrics = [
        Metric::NueMono,
        Metric::Nue,
        Metric::Discernibility,
        Metric::Aecs,
        Metric::Loss,
        Metric::Height,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(2025);
    let (mut stopped, mut completed) = (0, 0);
    for case in 0..300 {
        let (table, naive, models, _) = random_case(&mut rng, case % 3 == 0);
        let metric = comparable(metrics[case % metrics.len()], &models);
        let bounds = Bounds::full(&table);
        let optimum = lattice::evaluate_all(&table, &models, metric, &bounds)
            .into_iter()
            .filter(|e| e.feasible)
            .map(|e| e.score)
            .min_by(f64::total_cmp);
        let budget = Budget {
            nodes: Some(rng.random_range(1..=6)),
            seconds: None,
        };
        let search =
            || lattice::search_watched(&table, &models, metric, &bounds, budget, &Watch::default());
        let outcome = search();
        let context = format!("case {case}: {models:?} {metric:?} {budget:?}");
        if let Some(e) = &outcome.optimum {
            let check = naive.evaluate(&e.levels, &models, metric);
            assert!(check.feasible, "{context}: {:?} is not feasible", e.levels);
            assert!(same(check.score, e.score), "{context}: scores differ");
        }
        if outcome.complete {
            completed += 1;
            assert_eq!(outcome.lower_bound, None, "{context}");
            match (&outcome.optimum, optimum) {
                (Some(e), Some(best)) => assert!(same(e.score, best), "{context}"),
                (None, None) => {}
                (found, best) => panic!("{context}: complete search {found:?}, optimum {best:?}"),
            }
        } else {
            stopped += 1;
            let lower = outcome
                .lower_bound
                .expect("an incomplete search gives a bound");
            if let Some(best) = optimum {
                assert!(
                    lower <= best + 1e-9 * best.abs().max(1.0),
                    "{context}: lower bound {lower} above the optimum {best}"
                );
            }
        }
        let again = search();
        assert_eq!(
            again.optimum.map(|e| e.levels),
            outcome.optimum.map(|e| e.levels),
            "{context}"
        );
        assert_eq!(again.lower_bound, outcome.lower_bound, "{context}");
    }
    assert!(
        stopped > 30 && completed > 30,
        "{stopped} stopped, {completed} completed"
    );
}
