//! Noise schedules: the one place that maps a time t in [0, 1] (or a step k of T) to a noise
//! level and to the loss weight. Objectives read the weight from here; nobody re-types it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// MDLM / LLaDA log-linear schedule: a token is noised with probability t; the masked
    /// diffusion ELBO weight is 1 / t.
    LogLinear,
    /// Seed 002's cosine schedule over `steps` discrete steps (T = 1000 by default):
    /// noise(k) = 1 - cos^2((k/T + s) / (1 + s) * pi / 2), s = 0.008.
    Cosine { steps: usize },
}

/// Offset of the cosine schedule (Nichol & Dhariwal), keeps noise(0) just above zero.
const COSINE_OFFSET: f64 = 0.008;

impl Schedule {
    /// Probability that a token is noised at time t.
    pub fn noise(&self, t: f64) -> f64 {
        match self {
            Schedule::LogLinear => t.clamp(0.0, 1.0),
            Schedule::Cosine { .. } => {
                let angle = (t.clamp(0.0, 1.0) + COSINE_OFFSET) / (1.0 + COSINE_OFFSET)
                    * std::f64::consts::FRAC_PI_2;
                (1.0 - angle.cos().powi(2)).clamp(0.0, 1.0)
            }
        }
    }

    /// Noise at discrete step k of T (cosine schedule; for log-linear k/T).
    pub fn noise_at_step(&self, step: usize) -> f64 {
        self.noise(self.time_of_step(step))
    }

    pub fn time_of_step(&self, step: usize) -> f64 {
        match self {
            Schedule::LogLinear => step as f64 / 1000.0,
            Schedule::Cosine { steps } => step as f64 / *steps as f64,
        }
    }

    /// Weight of the cross-entropy of a noised token. For the absorbing (mask) process with the
    /// log-linear schedule, -alpha'(t) / (1 - alpha(t)) = 1 / t: the MDLM NELBO weight.
    /// Uniform diffusion trains x0-prediction with weight 1 (seed 002).
    pub fn loss_weight(&self, t: f64) -> f64 {
        match self {
            Schedule::LogLinear => 1.0 / t.max(f64::MIN_POSITIVE),
            Schedule::Cosine { .. } => 1.0,
        }
    }
}
