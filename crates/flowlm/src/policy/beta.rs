//! The Beta distribution the step policy draws its unit action from, with the special functions
//! it needs: `ln_gamma`, `digamma` and Kummer's confluent hypergeometric function 1F1.
//!
//! Everything is computed in `f64` by hand so the policy has no numerical dependencies and the
//! gradients used by GRPO are exact closed forms rather than autodiff approximations.

use rand::Rng;
use rand::rngs::StdRng;

/// Unit draws are clamped into `[Y_EPSILON, 1 - Y_EPSILON]` before taking logs, so a sample
/// that rounded to exactly 0 or 1 still has a finite log-probability.
pub const Y_EPSILON: f64 = 1e-6;

/// Lanczos approximation coefficients for g = 7, n = 9 (relative accuracy ~1e-15).
const LANCZOS_G: f64 = 7.0;
const LANCZOS_COEFFICIENTS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// Natural log of |Γ(x)| via the Lanczos approximation, with the reflection formula below 1/2.
pub fn ln_gamma(x: f64) -> f64 {
    if x < 0.5 {
        // Γ(x) Γ(1 - x) = π / sin(πx); the Lanczos sum is only accurate for x >= 1/2.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin().abs()).ln() - ln_gamma(1.0 - x);
    }
    let shifted = x - 1.0;
    let mut series = LANCZOS_COEFFICIENTS[0];
    for (index, coefficient) in LANCZOS_COEFFICIENTS.iter().enumerate().skip(1) {
        series += coefficient / (shifted + index as f64);
    }
    let base = shifted + LANCZOS_G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (shifted + 0.5) * base.ln() - base + series.ln()
}

/// The digamma function ψ(x) = d/dx ln Γ(x).
///
/// Shifts x upward with ψ(x) = ψ(x + 1) − 1/x until the asymptotic series is accurate to about
/// 1e-14, then sums that series. Negative non-integers use the reflection formula.
pub fn digamma(x: f64) -> f64 {
    if x <= 0.0 && x == x.floor() {
        return f64::NAN;
    }
    if x < 0.0 {
        let pi = std::f64::consts::PI;
        return digamma(1.0 - x) - pi / (pi * x).tan();
    }
    let mut value = 0.0;
    let mut shifted = x;
    while shifted < 10.0 {
        value -= 1.0 / shifted;
        shifted += 1.0;
    }
    let inverse_square = 1.0 / (shifted * shifted);
    // Bernoulli-number terms B_2k / (2k x^2k) for k = 1..5, in Horner form.
    let tail = inverse_square
        * (1.0 / 12.0
            - inverse_square
                * (1.0 / 120.0
                    - inverse_square
                        * (1.0 / 252.0 - inverse_square * (1.0 / 240.0 - inverse_square / 132.0))));
    value + shifted.ln() - 0.5 / shifted - tail
}

/// Kummer's confluent hypergeometric function 1F1(a; b; z) for a, b > 0 by its power series.
///
/// For z < 0 it first applies Kummer's transformation 1F1(a; b; z) = e^z 1F1(b − a; b; −z), so
/// the summed series always has positive terms and suffers no cancellation.
pub fn confluent_hypergeometric_1f1(a: f64, b: f64, z: f64) -> f64 {
    if z < 0.0 {
        return z.exp() * confluent_hypergeometric_1f1(b - a, b, -z);
    }
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 0..10_000 {
        let n = n as f64;
        term *= (a + n) / (b + n) * z / (n + 1.0);
        sum += term;
        // Once n + 1 > z the ratio of successive terms is below 1 and keeps shrinking, so a
        // tiny term means the remaining tail is tiny too.
        if n + 1.0 > z && term.abs() < 1e-16 * sum.abs() {
            break;
        }
    }
    sum
}

/// A Beta(alpha, beta) distribution on (0, 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beta {
    pub alpha: f64,
    pub beta: f64,
}

impl Beta {
    pub fn new(alpha: f64, beta: f64) -> Self {
        debug_assert!(
            alpha > 0.0 && beta > 0.0,
            "Beta({alpha}, {beta}) is not valid"
        );
        Beta { alpha, beta }
    }

    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    pub fn variance(&self) -> f64 {
        let total = self.alpha + self.beta;
        self.alpha * self.beta / (total * total * (total + 1.0))
    }

    /// ln B(alpha, beta), the log of the normalising constant.
    pub fn ln_beta_function(&self) -> f64 {
        ln_gamma(self.alpha) + ln_gamma(self.beta) - ln_gamma(self.alpha + self.beta)
    }

    /// Log density at `y`, clamped into `[Y_EPSILON, 1 - Y_EPSILON]`.
    pub fn log_prob(&self, y: f64) -> f64 {
        let y = clamp_unit(y);
        (self.alpha - 1.0) * y.ln() + (self.beta - 1.0) * (1.0 - y).ln() - self.ln_beta_function()
    }

    /// (d log_prob / d alpha, d log_prob / d beta) at `y` (clamped like `log_prob`).
    pub fn log_prob_gradient(&self, y: f64) -> (f64, f64) {
        let y = clamp_unit(y);
        let digamma_total = digamma(self.alpha + self.beta);
        (
            y.ln() - digamma(self.alpha) + digamma_total,
            (1.0 - y).ln() - digamma(self.beta) + digamma_total,
        )
    }

    /// E[e^{cY}], the moment generating function, which is 1F1(alpha; alpha + beta; c).
    pub fn expected_exp(&self, c: f64) -> f64 {
        confluent_hypergeometric_1f1(self.alpha, self.alpha + self.beta, c)
    }

    /// One draw as X / (X + Z) with X ~ Gamma(alpha), Z ~ Gamma(beta), formed from the Gamma
    /// draws' logarithms so that very small shapes cannot underflow both to zero.
    pub fn sample(&self, rng: &mut StdRng) -> f64 {
        let log_x = sample_log_gamma(self.alpha, rng);
        let log_z = sample_log_gamma(self.beta, rng);
        1.0 / (1.0 + (log_z - log_x).exp())
    }
}

fn clamp_unit(y: f64) -> f64 {
    y.clamp(Y_EPSILON, 1.0 - Y_EPSILON)
}

/// Uniform draw in the open interval (0, 1), safe to take the log of.
fn open_unit(rng: &mut StdRng) -> f64 {
    loop {
        let u: f64 = rng.random();
        if u > 0.0 {
            return u;
        }
    }
}

/// A standard normal draw by the Box–Muller transform.
pub fn sample_standard_normal(rng: &mut StdRng) -> f64 {
    let radius = (-2.0 * open_unit(rng).ln()).sqrt();
    let angle = 2.0 * std::f64::consts::PI * rng.random::<f64>();
    radius * angle.cos()
}

/// ln of a Gamma(shape, 1) draw by Marsaglia–Tsang.
///
/// Marsaglia–Tsang needs shape >= 1; below that it uses the boost
/// Gamma(shape) = Gamma(shape + 1) · U^{1/shape}, applied in log space.
pub fn sample_log_gamma(shape: f64, rng: &mut StdRng) -> f64 {
    if shape < 1.0 {
        return sample_log_gamma(shape + 1.0, rng) + open_unit(rng).ln() / shape;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = sample_standard_normal(rng);
        let root = 1.0 + c * x;
        if root <= 0.0 {
            continue;
        }
        let v = root * root * root;
        let u = open_unit(rng);
        let x_squared = x * x;
        // Cheap squeeze first; the exact log test only when the squeeze is inconclusive.
        if u < 1.0 - 0.0331 * x_squared * x_squared
            || u.ln() < 0.5 * x_squared + d * (1.0 - v + v.ln())
        {
            return d.ln() + v.ln();
        }
    }
}
