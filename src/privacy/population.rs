//! Population uniqueness: how many persons of the population the delivered sample was drawn from
//! are alone in their class, estimated from the sample's class sizes alone, with the estimators
//! ARX offers (Pitman's sampling formula, Zayatz's, the shifted negative binomial of Chen and
//! Keller-McNulty, and Dankar et al.'s rule choosing between them).
//!
//! Every estimator reads the frequencies of the kept classes' sizes — `(size, classes of that
//! size)` ascending — and the population's size, and gives a number of population uniques, or none
//! where its equations have no usable solution. A delivery meets the model when the estimated
//! uniques are a share of the population at most the threshold, or when no class of the sample is
//! unique; without an estimate it does not (ARX's rule).

/// The estimator of population uniques.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    Pitman,
    Zayatz,
    Snb,
    /// Dankar et al. (2012): Pitman where at most a tenth of the population is sampled, else the
    /// smaller of Zayatz's and SNB's (Zayatz's where SNB has none).
    Dankar,
}

impl Estimator {
    pub fn name(self) -> &'static str {
        match self {
            Estimator::Pitman => "Pitman",
            Estimator::Zayatz => "Zayatz",
            Estimator::Snb => "SNB",
            Estimator::Dankar => "Dankar",
        }
    }
}

/// At most `threshold` of the population unique on the delivered quasi-identifiers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PopulationUniqueness {
    pub threshold: f64,
    /// Persons in the population the dataset is a sample of.
    pub population: u64,
    pub estimator: Estimator,
}

impl PopulationUniqueness {
    /// Whether kept classes of these sizes meet the model.
    pub fn holds(&self, sizes: &[(u64, u64)]) -> bool {
        let sample = Sample::of(sizes, self.population as f64);
        if sample.records == 0.0 || sample.uniques == 0.0 {
            return true;
        }
        sample
            .uniques_in_population(self.estimator)
            .is_some_and(|u| u > 0.0 && u / sample.population <= self.threshold)
    }

    /// The estimated share of the population unique, for the report (0 when no class is unique,
    /// `None` without an estimate).
    pub fn estimated_share(&self, sizes: &[(u64, u64)]) -> Option<f64> {
        let sample = Sample::of(sizes, self.population as f64);
        if sample.uniques == 0.0 {
            return Some(0.0);
        }
        sample
            .uniques_in_population(self.estimator)
            .map(|u| u / sample.population)
    }
}

/// What the estimators read from the sample.
struct Sample<'a> {
    sizes: &'a [(u64, u64)],
    population: f64,
    /// n: the records (persons) the classes hold.
    records: f64,
    /// u: the classes.
    classes: f64,
    /// Classes of size 1 and 2.
    uniques: f64,
    pairs: f64,
}

impl<'a> Sample<'a> {
    fn of(sizes: &'a [(u64, u64)], population: f64) -> Sample<'a> {
        let of_size = |s: u64| {
            sizes
                .iter()
                .find(|&&(size, _)| size == s)
                .map_or(0.0, |&(_, c)| c as f64)
        };
        Sample {
            sizes,
            population,
            records: sizes.iter().map(|&(s, c)| (s * c) as f64).sum(),
            classes: sizes.iter().map(|&(_, c)| c as f64).sum(),
            uniques: of_size(1),
            pairs: of_size(2),
        }
    }

    fn sampling_fraction(&self) -> f64 {
        self.records / self.population
    }

    /// The estimate, `None` where the estimator has none (no solution, or zero).
    fn uniques_in_population(&self, estimator: Estimator) -> Option<f64> {
        let usable = |v: f64| (!v.is_nan() && v != 0.0).then_some(v);
        match estimator {
            Estimator::Pitman => self.pitman().and_then(usable),
            Estimator::Zayatz => usable(self.zayatz()),
            Estimator::Snb => self.snb().and_then(usable),
            Estimator::Dankar if self.sampling_fraction() <= 0.1 => self.pitman().and_then(usable),
            Estimator::Dankar => {
                let zayatz = self.zayatz();
                match self.snb().and_then(usable) {
                    Some(snb) if snb <= zayatz => Some(snb),
                    _ => usable(zayatz),
                }
            }
        }
    }

    /// Zayatz (1991): the sample uniques scaled by the chance that a sample unique is a population
    /// unique, the share of size-1 classes among the classes weighted by each size's chance of
    /// showing exactly one record in a sample of n drawn from the population (hypergeometric).
    fn zayatz(&self) -> f64 {
        let n = self.records;
        let big_n = self.population;
        // P(exactly one of a class's s records drawn) = s·n/(N−s+1) · Π_{i<s−1} (N−n−i)/(N−i),
        // carried from one size to the next (sizes ascend) in logarithms.
        let mut ln_product = 0.0;
        let mut product_terms = 0u64;
        let mut weighted = 0.0;
        let mut unique_term = 0.0;
        for &(s, count) in self.sizes {
            while product_terms + 1 < s {
                let i = product_terms as f64;
                ln_product += if big_n - n - i > 0.0 {
                    (-n / (big_n - i)).ln_1p()
                } else {
                    f64::NEG_INFINITY
                };
                product_terms += 1;
            }
            let s = s as f64;
            let one_drawn = s * n / (big_n - s + 1.0) * ln_product.exp();
            weighted += count as f64 / self.classes * one_drawn;
            if s == 1.0 {
                unique_term = count as f64 / self.classes * one_drawn;
            }
        }
        let conditional = unique_term / weighted;
        self.uniques * conditional / self.sampling_fraction()
    }

    /// Pitman's sampling formula, θ and α fitted by maximum likelihood (Newton's method from
    /// Hoshino's moment estimates, then ARX's fixed start points), population uniques
    /// Γ(θ+1)/Γ(θ+α) · N^α.
    fn pitman(&self) -> Option<f64> {
        let (u, n) = (self.classes, self.records);
        let c1 = self.uniques;
        let c2 = if self.pairs != 0.0 { self.pairs } else { 1.0 };
        let c = c1 * (c1 - 1.0) / c2;
        let theta = (n * u * c - c1 * (n - 1.0) * (2.0 * u + c)) / (2.0 * c1 * u + c1 * c - n * c);
        let alpha = (theta * (c1 - n) + (n - 1.0) * c1) / (n * u);
        let system = |t: f64, a: f64| self.pitman_likelihood_system(t, a);
        let (t, a) = newton(&system, (theta, alpha), |t, _| t >= 0.0)?;
        if a == 0.0 {
            return None;
        }
        let uniques = (ln_gamma(t + 1.0) - ln_gamma(t + a)).exp() * self.population.powf(a);
        (uniques >= 0.0 && uniques <= self.population).then_some(uniques)
    }

    /// The two likelihood equations of Pitman's model in θ and α (zero at the estimate) and their
    /// Jacobian: Σ_{i<u} 1/(θ+iα) − Σ_{i<n} 1/(θ+i) and Σ_{i<u} i/(θ+iα) − Σ_j F_j Σ_{i<j} 1/(i−α),
    /// F_j the classes of size j; the sums in closed form with digamma and trigamma, through
    /// s = θ/α (Σ_{i<u} 1/(θ+iα) = R(s)/α, Σ_{i<u} i/(θ+iα) = (u−1−sR(s))/α).
    fn pitman_likelihood_system(&self, t: f64, a: f64) -> ([f64; 2], [[f64; 2]; 2]) {
        let (u, n) = (self.classes, self.records);
        let s = t / a;
        let (r, q) = (
            reciprocal_sum(s, u - 1.0),
            reciprocal_square_sum(s, u - 1.0),
        );
        let mut by_class = 0.0;
        let mut by_class_slope = 0.0;
        for &(size, count) in self.sizes.iter().filter(|&&(size, _)| size != 1) {
            let m = size as f64 - 1.0;
            by_class += count as f64 * reciprocal_sum(-a, m);
            by_class_slope += count as f64 * reciprocal_square_sum(-a, m);
        }
        let a2 = a * a;
        let values = [
            r / a - reciprocal_sum(t, n - 1.0),
            (u - 1.0 - s * r) / a - by_class,
        ];
        let jacobian = [
            [
                -q / a2 + reciprocal_square_sum(t, n - 1.0),
                (s * q - r) / a2,
            ],
            [
                (s * q - r) / a2,
                -(u - 1.0 - 2.0 * s * r + s * s * q) / a2 - by_class_slope,
            ],
        ];
        (values, jacobian)
    }

    /// The shifted negative binomial model (Chen and Keller-McNulty 1998) as ARX fits it: the
    /// number of non-empty population classes K estimated from the sample, then α and β solved
    /// from the expected numbers of sample classes of size 1 and 2; population uniques K·β^α.
    fn snb(&self) -> Option<f64> {
        let f = self.sampling_fraction();
        let k = self.snb_population_classes(f);
        let (c1, c2) = (self.uniques, self.pairs);
        let equations = |a: f64, b: f64| {
            let d = (1.0 - f) * (1.0 - b);
            let q = 1.0 - d;
            [
                k * f * (b / q).powf(a) * (a * d / q + 1.0) - c1,
                k * a * b.powf(a) * f * f * (1.0 - b) / 2.0
                    * q.powf(a + 2.0)
                    * (2.0 - (1.0 - a) * d)
                    - c2,
            ]
        };
        let (a, b) = newton(&with_differences(equations), (1.0, 1.0), |_, _| true)?;
        Some(k * b.powf(a))
    }

    /// ARX's estimate of the population's non-empty classes for SNB.
    fn snb_population_classes(&self, f: f64) -> f64 {
        let (mut var1, mut var2, mut var3, mut var4) = (0.0, 0.0, 0.0, 0.0);
        for &(size, count) in self.sizes {
            let (s, c) = (size as f64, count as f64);
            let unseen = (1.0 - f).powf(s) * c;
            var1 += s * f * f * (1.0 - f * f).powf(s - 1.0) * c;
            // As ARX sums it: one subtracted per distinct size, not per class.
            var2 += unseen * (1.0 + f).powf(s) - 1.0;
            var3 += unseen;
            var4 += s * f * (1.0 - f).powf(s - 1.0) * c;
        }
        self.classes + self.uniques * (var1 / var2) * (var3 / var4) * (var3 / var4)
    }
}

/// Newton steps per start point.
const STEPS_PER_START: usize = 50;
/// Objective values below this are a solution.
const ACCURACY: f64 = 1e-6;

/// Two equations in two unknowns: their values at (x, y) and their Jacobian
/// [[∂f1/∂x, ∂f1/∂y], [∂f2/∂x, ∂f2/∂y]].
type System<'a> = dyn Fn(f64, f64) -> ([f64; 2], [[f64; 2]; 2]) + 'a;

/// The Jacobian of `equations` by central differences.
fn with_differences(
    equations: impl Fn(f64, f64) -> [f64; 2],
) -> impl Fn(f64, f64) -> ([f64; 2], [[f64; 2]; 2]) {
    move |x, y| {
        let hx = 1e-7 * x.abs().max(1.0);
        let hy = 1e-7 * y.abs().max(1.0);
        let [ax, bx] = equations(x + hx, y);
        let [cx, dx] = equations(x - hx, y);
        let [ay, by] = equations(x, y + hy);
        let [cy, dy] = equations(x, y - hy);
        (
            equations(x, y),
            [
                [(ax - cx) / (2.0 * hx), (ay - cy) / (2.0 * hy)],
                [(bx - dx) / (2.0 * hx), (by - dy) / (2.0 * hy)],
            ],
        )
    }
}

/// Solves a [`System`] by Newton's method from `start`, then (when a run diverges, leaves `allowed`
/// or runs out of steps) from ARX's fixed start points {0, 0.33, 0.66} × {0, 0.33, 0.66, 0.99} and
/// (0.99, 0), (0.99, 0.33), (0.99, 0.66): deterministic, as ARX's solver in its deterministic mode.
fn newton(
    system: &System,
    start: (f64, f64),
    allowed: impl Fn(f64, f64) -> bool,
) -> Option<(f64, f64)> {
    let grid = [0.0, 0.33, 0.66, 0.99];
    let starts = std::iter::once(start)
        .chain(grid.iter().flat_map(|&x| grid.iter().map(move |&y| (x, y))))
        .take(16);
    for (mut x, mut y) in starts {
        for _ in 0..=STEPS_PER_START {
            let ([f1, f2], [[j11, j12], [j21, j22]]) = system(x, y);
            if f1.abs() <= ACCURACY && f2.abs() <= ACCURACY {
                return Some((x, y));
            }
            let det = j11 * j22 - j12 * j21;
            x -= (j22 * f1 - j12 * f2) / det;
            y -= (j11 * f2 - j21 * f1) / det;
            if !allowed(x, y) || x.is_nan() || y.is_nan() {
                break;
            }
        }
    }
    None
}

/// Σ_{i=1}^{m} 1/(s+i) = ψ(s+m+1) − ψ(s+1). Where every s+i is negative the sum is taken as
/// ψ(−s−m) − ψ(−s), on positive arguments: the reflection formula would add two equal cotangents
/// of large arguments whose rounding, multiplied by the equations' large factors, keeps Newton's
/// method from ever reaching its accuracy (Pitman's α is negative for samples of few uniques).
fn reciprocal_sum(s: f64, m: f64) -> f64 {
    if s + m < 0.0 {
        digamma(-s - m) - digamma(-s)
    } else {
        digamma(s + m + 1.0) - digamma(s + 1.0)
    }
}

/// Σ_{i=1}^{m} 1/(s+i)² (minus the derivative of [`reciprocal_sum`] in s), on positive arguments
/// likewise.
fn reciprocal_square_sum(s: f64, m: f64) -> f64 {
    if s + m < 0.0 {
        trigamma(-s - m) - trigamma(-s)
    } else {
        trigamma(s + 1.0) - trigamma(s + m + 1.0)
    }
}

/// ψ(x), the digamma function: the recurrence ψ(x) = ψ(x+1) − 1/x up to x ≥ 12, then the
/// asymptotic series; reflection below 0.
fn digamma(x: f64) -> f64 {
    if x.is_nan() || x.is_infinite() {
        return f64::NAN;
    }
    if x <= 0.0 {
        if x == x.floor() {
            return f64::NAN;
        }
        return digamma(1.0 - x) - std::f64::consts::PI / (std::f64::consts::PI * x).tan();
    }
    let (mut x, mut result) = (x, 0.0);
    while x < 12.0 {
        result -= 1.0 / x;
        x += 1.0;
    }
    let r = 1.0 / (x * x);
    result + x.ln()
        - 0.5 / x
        - r * (1.0 / 12.0 - r * (1.0 / 120.0 - r * (1.0 / 252.0 - r * (1.0 / 240.0 - r / 132.0))))
}

/// ψ′(x), the trigamma function: the recurrence ψ′(x) = ψ′(x+1) + 1/x² up to x ≥ 12, then the
/// asymptotic series; reflection below 0.
fn trigamma(x: f64) -> f64 {
    if x.is_nan() || x.is_infinite() {
        return f64::NAN;
    }
    if x <= 0.0 {
        if x == x.floor() {
            return f64::NAN;
        }
        let pi = std::f64::consts::PI;
        let sine = (pi * x).sin();
        return pi * pi / (sine * sine) - trigamma(1.0 - x);
    }
    let (mut x, mut result) = (x, 0.0);
    while x < 12.0 {
        result += 1.0 / (x * x);
        x += 1.0;
    }
    let r = 1.0 / (x * x);
    result
        + 1.0 / x
        + r / 2.0
        + r / x
            * (1.0 / 6.0 - r * (1.0 / 30.0 - r * (1.0 / 42.0 - r * (1.0 / 30.0 - r * 5.0 / 66.0))))
}

/// ln Γ(x) for x > 0 (NaN otherwise): the recurrence up to x ≥ 15, then Stirling's series.
fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    let (mut x, mut shift) = (x, 0.0);
    while x < 15.0 {
        shift += x.ln();
        x += 1.0;
    }
    let r = 1.0 / (x * x);
    let series = (1.0 / 12.0 - r * (1.0 / 360.0 - r * (1.0 / 1260.0 - r / 1680.0))) / x;
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + series - shift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1.0)
    }

    #[test]
    fn special_functions_meet_known_values() {
        let euler = 0.577_215_664_901_532_9;
        assert!(close(digamma(1.0), -euler, 1e-13));
        assert!(close(digamma(0.5), -euler - 2.0 * 2f64.ln(), 1e-13));
        // ψ(n) = −γ + Σ_{k<n} 1/k
        let harmonic: f64 = (1..100).map(|k| 1.0 / k as f64).sum();
        assert!(close(digamma(100.0), -euler + harmonic, 1e-13));
        // Reflection: ψ(1−x) − ψ(x) = π cot(πx)
        let x = -0.3;
        let pi = std::f64::consts::PI;
        assert!(close(
            digamma(1.0 - x) - digamma(x),
            pi / (pi * x).tan(),
            1e-12
        ));
        assert!(close(ln_gamma(0.5), pi.sqrt().ln(), 1e-13));
        let factorial: f64 = (1..=20).map(|k| (k as f64).ln()).sum();
        assert!(close(ln_gamma(21.0), factorial, 1e-13));
        assert!(close(ln_gamma(1.0), 0.0, 1e-13));
        assert!(ln_gamma(0.0).is_nan());
    }

    /// Zayatz's hypergeometric weights, computed here from binomial coefficients in exact integer
    /// arithmetic on a small population, equal the estimator's product form.
    #[test]
    fn zayatz_matches_the_hypergeometric_law() {
        fn choose(n: u64, k: u64) -> f64 {
            if k > n {
                return 0.0;
            }
            (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        }
        let population = 60u64;
        let sizes = [(1u64, 4u64), (2, 3), (3, 1), (5, 2)];
        let n: u64 = sizes.iter().map(|&(s, c)| s * c).sum();
        let classes: u64 = sizes.iter().map(|&(_, c)| c).sum();
        let one_drawn = |s: u64| s as f64 * choose(population - s, n - 1) / choose(population, n);
        let weighted: f64 = sizes
            .iter()
            .map(|&(s, c)| c as f64 / classes as f64 * one_drawn(s))
            .sum();
        let conditional = 4.0 / classes as f64 * one_drawn(1) / weighted;
        let expected = 4.0 * conditional / (n as f64 / population as f64);
        let ours = Sample::of(&sizes, population as f64).zayatz();
        assert!(close(ours, expected, 1e-10), "{ours} vs {expected}");
    }

    /// Pitman's Jacobian is the derivative of its equations (central differences), α of either sign.
    #[test]
    fn pitman_jacobian_is_the_equations_derivative() {
        let sizes = [(1u64, 40u64), (2, 30), (3, 12), (5, 6), (9, 2)];
        let sample = Sample::of(&sizes, 1e5);
        let numeric = with_differences(|t, a| sample.pitman_likelihood_system(t, a).0);
        for (t, a) in [(30.0, 0.4), (250.0, -1.7), (3.0, 0.9), (80.0, 0.05)] {
            let (_, ours) = sample.pitman_likelihood_system(t, a);
            let (_, expected) = numeric(t, a);
            for (row, expected_row) in ours.iter().zip(&expected) {
                for (x, y) in row.iter().zip(expected_row) {
                    assert!(
                        close(*x, *y, 1e-5),
                        "at ({t}, {a}): {ours:?} vs {expected:?}"
                    );
                }
            }
        }
        let pi = std::f64::consts::PI;
        assert!(close(trigamma(1.0), pi * pi / 6.0, 1e-13));
        assert!(close(trigamma(0.5), pi * pi / 2.0, 1e-13));
        assert!(close(trigamma(-0.5), pi * pi / 2.0 + 4.0, 1e-12));
    }

    /// Pitman's estimate solves its likelihood equations, written here as the plain sums.
    #[test]
    fn pitman_solves_the_likelihood_equations() {
        let sizes = [
            (1u64, 900u64),
            (2, 300),
            (3, 120),
            (4, 60),
            (7, 20),
            (30, 3),
        ];
        let sample = Sample::of(&sizes, 1e7);
        let c1 = 900.0;
        let c2 = 300.0;
        let (u, n) = (sample.classes, sample.records);
        let c = c1 * (c1 - 1.0) / c2;
        let theta = (n * u * c - c1 * (n - 1.0) * (2.0 * u + c)) / (2.0 * c1 * u + c1 * c - n * c);
        let alpha = (theta * (c1 - n) + (n - 1.0) * c1) / (n * u);
        let (t, a) = newton(
            &|t, a| sample.pitman_likelihood_system(t, a),
            (theta, alpha),
            |t, _| t >= 0.0,
        )
        .expect("a solution");
        let first: f64 = (1..u as u64).map(|i| 1.0 / (t + i as f64 * a)).sum::<f64>()
            - (1..n as u64).map(|i| 1.0 / (t + i as f64)).sum::<f64>();
        let second: f64 = (1..u as u64)
            .map(|i| i as f64 / (t + i as f64 * a))
            .sum::<f64>()
            - sizes
                .iter()
                .map(|&(s, count)| count as f64 * (1..s).map(|i| 1.0 / (i as f64 - a)).sum::<f64>())
                .sum::<f64>();
        assert!(
            first.abs() < 1e-5 && second.abs() < 1e-5,
            "{first} {second}"
        );
        let uniques = sample.pitman().unwrap();
        let expected = (ln_gamma(t + 1.0) - ln_gamma(t + a)).exp() * 1e7f64.powf(a);
        assert!(close(uniques, expected, 1e-9));
        assert!(uniques > 900.0 && uniques < 1e7);
    }

    #[test]
    fn no_sample_unique_always_holds() {
        let model = PopulationUniqueness {
            threshold: 1e-9,
            population: 1_000_000,
            estimator: Estimator::Pitman,
        };
        assert!(model.holds(&[(2, 10), (5, 3)]));
        assert!(model.holds(&[]));
        assert_eq!(model.estimated_share(&[(2, 10)]), Some(0.0));
        assert!(!model.holds(&[(1, 500), (2, 10)]));
    }
}
