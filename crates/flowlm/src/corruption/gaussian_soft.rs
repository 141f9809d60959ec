//! Duo-style Gaussian soft tokens (seed 001). A token's one-hot e_x is noised in logit space,
//! w = clean * e_x + noise * eps, and the network reads the soft token softmax(w / tau) @ E. As
//! tau -> 0 the soft token becomes the embedding of argmax(w): a uniform-state corruption whose
//! clean probability [`effective_clean_probability`] computes (Duo's diffusion transformation).
//! The loss is the symmetric KL to the one-hot target, scaled per row by the view scale.

use super::{CleanBatch, CorruptedBatch, Corruption};
use crate::error::Result;
use crate::model::LossModel;
use crate::objective::{
    SoftTokenLoss, ViewScale, cross_entropy_per_position, symmetric_kl_to_one_hot,
};
use crate::random::{StdRng, open_unit};
use crate::schedule::Schedule;
use crate::vocabulary::Vocabulary;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How t maps to the clean and noise scales of w.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case", deny_unknown_fields)]
pub enum GaussianParameterization {
    /// Seed 001: alpha = 1 - t, w = alpha e_x + sqrt(1 - alpha^2) eps, t ~ U(time_min, time_max).
    Seed { time_min: f64, time_max: f64 },
    /// Duo: w = sqrt(sigmoid(-g)) e_x + sqrt(sigmoid(g)) eps, g linear in t from
    /// `gamma_start` (t = 0) to `gamma_end` (t = 1), t ~ U(0, 1).
    Duo { gamma_start: f64, gamma_end: f64 },
}

impl Default for GaussianParameterization {
    fn default() -> Self {
        GaussianParameterization::Seed {
            time_min: 0.03,
            time_max: 0.15,
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl GaussianParameterization {
    /// (clean scale, noise scale) of w at time t.
    pub fn scales(&self, t: f64) -> (f64, f64) {
        match *self {
            GaussianParameterization::Seed { .. } => {
                let alpha = (1.0 - t).clamp(0.0, 1.0);
                (alpha, (1.0 - alpha * alpha).sqrt())
            }
            GaussianParameterization::Duo {
                gamma_start,
                gamma_end,
            } => {
                let gamma = gamma_start + t * (gamma_end - gamma_start);
                (sigmoid(-gamma).sqrt(), sigmoid(gamma).sqrt())
            }
        }
    }

    /// The range t is drawn from in training, and which the sampler walks down.
    pub fn time_range(&self) -> (f64, f64) {
        match *self {
            GaussianParameterization::Seed { time_min, time_max } => (time_min, time_max),
            GaussianParameterization::Duo { .. } => (0.0, 1.0),
        }
    }
}

/// Soft-token temperature, annealed by training step (seed 001):
/// tau = max(start (1 - step / steps), 0) + floor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureAnnealing {
    pub start: f64,
    pub steps: f64,
    pub floor: f64,
}

impl Default for TemperatureAnnealing {
    fn default() -> Self {
        Self {
            start: 1e-3,
            steps: 5e5,
            floor: 1e-8,
        }
    }
}

impl TemperatureAnnealing {
    pub fn at(&self, training_step: usize) -> f64 {
        (self.start * (1.0 - training_step as f64 / self.steps)).max(0.0) + self.floor
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let polynomial = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * polynomial.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

fn standard_normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// P(argmax w = x) for w = clean e_x + noise eps over `tokens` columns, as the uniform process's
/// alpha: the probability the token is kept "on purpose", so that
/// P(argmax = x) = alpha + (1 - alpha) / tokens. Integrates E_z[Phi(clean / noise + z)^(N-1)].
pub fn effective_clean_probability(clean: f64, noise: f64, tokens: usize) -> f64 {
    if tokens < 2 {
        return 1.0;
    }
    if noise <= 0.0 {
        return 1.0;
    }
    let ratio = clean / noise;
    let points = 4000;
    let (low, high) = (-10.0f64, 10.0f64);
    let width = (high - low) / points as f64;
    let mut total = 0.0;
    for i in 0..=points {
        let z = low + i as f64 * width;
        let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let edge = if i == 0 || i == points { 0.5 } else { 1.0 };
        total += edge * density * standard_normal_cdf(ratio + z).powi(tokens as i32 - 1) * width;
    }
    let uniform = 1.0 / tokens as f64;
    ((total - uniform) / (1.0 - uniform)).clamp(0.0, 1.0)
}

pub struct GaussianSoftCorruption {
    pub vocabulary: Vocabulary,
    pub parameterization: GaussianParameterization,
    pub temperature: TemperatureAnnealing,
    pub view_scale: ViewScale,
    pub loss: SoftTokenLoss,
}

/// Standard normal draw (Box-Muller on the host RNG, so corruption is reproducible).
fn normal(rng: &mut StdRng) -> f64 {
    let u = open_unit(rng);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

impl GaussianSoftCorruption {
    fn draw_times(&self, rows: usize, rng: &mut StdRng) -> Vec<f64> {
        let (low, high) = self.parameterization.time_range();
        (0..rows).map(|_| rng.random_range(low..=high)).collect()
    }

    /// The noisy logits of one token over the ordinary tokens.
    fn noisy_logits(&self, token: u32, clean: f64, noise: f64, rng: &mut StdRng) -> Vec<f64> {
        self.vocabulary
            .regular()
            .iter()
            .map(|&id| if id == token { clean } else { 0.0 } + noise * normal(rng))
            .collect()
    }

    /// The soft input (`[B * L * V]` mixture weights), the row times, and the argmax tokens.
    fn soft_input(
        &self,
        clean: &CleanBatch,
        temperature: f64,
        rng: &mut StdRng,
    ) -> (Vec<f32>, Vec<f64>, CorruptedBatch) {
        let vocab = self.vocabulary.size;
        let times = self.draw_times(clean.batch, rng);
        let n = clean.tokens.len();
        let mut soft = vec![0f32; n * vocab];
        let mut out = CorruptedBatch::untouched(clean, times.iter().map(|&t| t as f32).collect());
        out.normalizer = 1.0;
        let scored = clean.eligible.iter().filter(|&&e| e).count().max(1) as f64;
        for (i, &token) in clean.tokens.iter().enumerate() {
            let row = i / clean.length;
            let weights = &mut soft[i * vocab..(i + 1) * vocab];
            if !clean.eligible[i] || self.vocabulary.is_special(token) {
                weights[token as usize] = 1.0;
                if clean.eligible[i] {
                    out.weights[i] = (self.view_scale.at(times[row], vocab) / scored) as f32;
                }
                continue;
            }
            out.weights[i] = (self.view_scale.at(times[row], vocab) / scored) as f32;
            let (clean_scale, noise_scale) = self.parameterization.scales(times[row]);
            let logits = self.noisy_logits(token, clean_scale, noise_scale, rng);
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exponentials: Vec<f64> = logits
                .iter()
                .map(|&w| ((w - max) / temperature).exp())
                .collect();
            let sum: f64 = exponentials.iter().sum();
            let mut best = (0usize, f64::NEG_INFINITY);
            for (k, (&id, &e)) in self
                .vocabulary
                .regular()
                .iter()
                .zip(&exponentials)
                .enumerate()
            {
                weights[id as usize] = (e / sum) as f32;
                if logits[k] > best.1 {
                    best = (k, logits[k]);
                }
            }
            let argmax = self.vocabulary.regular()[best.0];
            out.input[i] = argmax;
            out.substituted[i] = argmax != token;
        }
        (soft, times, out)
    }
}

impl Corruption for GaussianSoftCorruption {
    /// Loss weights come from the view scale, not from a discrete schedule; the log-linear
    /// schedule only names the time axis.
    fn schedule(&self) -> Schedule {
        Schedule::LogLinear
    }

    /// The tau -> 0 view: argmax(w) as tokens, weights = view scale / scored tokens.
    fn corrupt(&self, clean: &CleanBatch, rng: &mut StdRng) -> CorruptedBatch {
        self.soft_input(clean, self.temperature.floor, rng).2
    }

    fn loss(
        &self,
        model: &dyn LossModel,
        clean: &CleanBatch,
        training_step: usize,
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let temperature = self.temperature.at(training_step);
        let (soft, times, corrupted) = self.soft_input(clean, temperature, rng);
        let (batch, length) = (clean.batch, clean.length);
        let logits = super::soft_input_logits(
            model,
            "gaussian_soft",
            soft,
            [batch, length, self.vocabulary.size],
            times.iter().map(|&t| t as f32).collect(),
            device,
        )?;
        let per_position = match self.loss {
            SoftTokenLoss::SymmetricKl => {
                symmetric_kl_to_one_hot(logits, &corrupted.targets, device)
            }
            SoftTokenLoss::CrossEntropy => cross_entropy_per_position(logits, &corrupted.targets),
        };
        let weights =
            Tensor::<2>::from_data(TensorData::new(corrupted.weights, [batch, length]), device);
        Ok((per_position * weights).sum())
    }
}
