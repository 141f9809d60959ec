//! Group-relative policy optimisation (GRPO) for the step policy.
//!
//! The caller samples G trajectories per prompt with the current policy and scores each with
//! one scalar reward R_g = task reward + λ · mean_i t_i (final progress; see
//! [`trajectory_reward`]). Advantages are standardised within the group,
//! A_g = (R_g − mean R) / (std R + 1e-6), and every decision (one sampled y for one token at
//! one step) of trajectory g gets A_g. The update maximises the mean over decisions of the
//! PPO clipped surrogate min(r A, clip(r, 1 − ε, 1 + ε) A), r = exp(log π_new − log π_old),
//! minus β times the k3 estimate of KL(π_new ‖ π_ref) when a reference log-prob is given.
//! This module knows nothing about diffusion models: it only sees features, draws and rewards.

use serde::{Deserialize, Serialize};

use super::adam::Adam;
use super::features::StepFeatures;
use super::network::StepPolicy;

/// Added to the group's standard deviation so near-constant groups do not explode.
pub const ADVANTAGE_EPSILON: f64 = 1e-6;

/// Clip range and KL weight of the GRPO objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpoConfig {
    /// ε of the ratio clip [1 − ε, 1 + ε].
    pub clip: f64,
    /// β, the weight of the KL penalty towards the reference policy.
    pub kl_beta: f64,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            clip: 0.2,
            kl_beta: 0.04,
        }
    }
}

/// One sampled action, recorded when the trajectory was generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub features: StepFeatures,
    /// The unit action y that was drawn.
    pub y: f64,
    /// log π_old(y | features) under the policy that generated the trajectory.
    pub old_log_prob: f64,
    /// log π_ref(y | features) under the frozen reference policy, if a KL penalty is wanted.
    pub reference_log_prob: Option<f64>,
    /// The trajectory's group-relative advantage.
    pub advantage: f64,
}

/// What one GRPO update saw (all values are means over decisions, before the update).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GrpoStats {
    /// Mean surrogate minus kl_beta · kl: the quantity being maximised.
    pub objective: f64,
    /// Mean clipped surrogate alone.
    pub surrogate: f64,
    /// Fraction of decisions where the min picked the clipped branch (their gradient is zero).
    pub clipped_fraction: f64,
    /// Mean k3 KL estimate (decisions without a reference log-prob count as 0).
    pub kl: f64,
    /// Global norm of the objective's gradient before clipping.
    pub gradient_norm: f64,
}

/// The scalar reward of one trajectory: task reward plus λ times the mean final progress.
pub fn trajectory_reward(task_reward: f64, final_progress: &[f64], progress_weight: f64) -> f64 {
    if final_progress.is_empty() {
        return task_reward;
    }
    let mean_progress = final_progress.iter().sum::<f64>() / final_progress.len() as f64;
    task_reward + progress_weight * mean_progress
}

/// (R − mean R) / (std R + 1e-6) with the population std; all zeros when every reward is equal.
///
/// "Equal" allows for rounding: the mean of identical floats need not reproduce them exactly,
/// so a std below 1e-12 of the rewards' scale counts as zero.
pub fn group_advantages(rewards: &[f64]) -> Vec<f64> {
    if rewards.is_empty() {
        return Vec::new();
    }
    let count = rewards.len() as f64;
    let mean = rewards.iter().sum::<f64>() / count;
    let variance = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / count;
    let std = variance.sqrt();
    if std <= 1e-12 * (1.0 + mean.abs()) {
        return vec![0.0; rewards.len()];
    }
    rewards
        .iter()
        .map(|r| (r - mean) / (std + ADVANTAGE_EPSILON))
        .collect()
}

/// One decision's clipped surrogate term.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurrogateTerm {
    /// min(r A, clip(r, 1 − ε, 1 + ε) A).
    pub value: f64,
    /// d value / d log π_new: r A on the unclipped branch, 0 on the clipped one.
    pub gradient_wrt_log_prob: f64,
    /// Whether the min picked the (constant) clipped branch.
    pub clipped: bool,
}

/// The PPO clipped surrogate for log-ratio `log_ratio` = log π_new − log π_old.
pub fn clipped_surrogate(log_ratio: f64, advantage: f64, clip: f64) -> SurrogateTerm {
    let ratio = log_ratio.exp();
    let unclipped = ratio * advantage;
    let clipped_value = ratio.clamp(1.0 - clip, 1.0 + clip) * advantage;
    // Ties (ratio inside the clip range) take the unclipped branch, which carries the gradient.
    if unclipped <= clipped_value {
        SurrogateTerm {
            value: unclipped,
            gradient_wrt_log_prob: unclipped,
            clipped: false,
        }
    } else {
        SurrogateTerm {
            value: clipped_value,
            gradient_wrt_log_prob: 0.0,
            clipped: true,
        }
    }
}

/// The k3 KL estimator e^δ − δ − 1 with δ = log π_ref − log π_new, and its derivative with
/// respect to log π_new (1 − e^δ). It is non-negative and unbiased for KL(π_new ‖ π_ref).
pub fn k3_kl(reference_log_prob: f64, log_prob: f64) -> (f64, f64) {
    let delta = reference_log_prob - log_prob;
    let ratio = delta.exp();
    (ratio - delta - 1.0, 1.0 - ratio)
}

/// One GRPO update: the gradient of the mean objective over `decisions`, then one Adam ascent
/// step on `policy`. An empty batch changes nothing.
pub fn grpo_step(
    policy: &mut StepPolicy,
    decisions: &[Decision],
    config: &GrpoConfig,
    optimizer: &mut Adam,
) -> GrpoStats {
    if decisions.is_empty() {
        return GrpoStats::default();
    }
    let weight = 1.0 / decisions.len() as f64;
    let mut gradients = policy.zero_gradients();
    let mut surrogate_sum = 0.0;
    let mut kl_sum = 0.0;
    let mut clipped_count = 0usize;
    for decision in decisions {
        let pass = policy.forward(&decision.features);
        let log_prob = pass.distribution.log_prob(decision.y);
        let term = clipped_surrogate(
            log_prob - decision.old_log_prob,
            decision.advantage,
            config.clip,
        );
        surrogate_sum += term.value;
        clipped_count += usize::from(term.clipped);
        let mut d_objective_d_log_prob = term.gradient_wrt_log_prob;
        if let Some(reference) = decision.reference_log_prob {
            let (kl, d_kl) = k3_kl(reference, log_prob);
            kl_sum += kl;
            d_objective_d_log_prob -= config.kl_beta * d_kl;
        }
        // Adam minimises, so accumulate the gradient of the negated objective.
        if d_objective_d_log_prob != 0.0 {
            policy.backward(
                &pass,
                decision.y,
                -weight * d_objective_d_log_prob,
                &mut gradients,
            );
        }
    }
    let gradient_norm = optimizer.step(policy.parameters_mut(), &gradients.values);
    let surrogate = surrogate_sum * weight;
    let kl = kl_sum * weight;
    GrpoStats {
        objective: surrogate - config.kl_beta * kl,
        surrogate,
        clipped_fraction: clipped_count as f64 * weight,
        kl,
        gradient_norm,
    }
}
