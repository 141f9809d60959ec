//! Group-relative policy optimisation (GRPO) for the step policy (ALGORITHMS.md, "GRPO").
//!
//! The caller samples G trajectories per prompt with the current policy, recording each
//! decision's log-prob at sampling time: that policy is then the frozen old policy. Rewards are
//! per token, R_{g,i} = task reward of trajectory g + λ · t_i (token i's final progress; see
//! [`token_rewards`]), so each token's decisions get their own advantage, standardised within
//! the group at that token: A_{g,i} = (R_{g,i} − mean_g R_{·,i}) / (std_g R_{·,i} + 1e-6).
//! [`grpo_update`] then runs several epochs over the same decisions, each maximising the *sum*
//! over decisions of the PPO clipped surrogate min(r A, clip(r, 1 − ε, 1 + ε) A),
//! r = exp(log π_new − log π_old), minus β times the k3 estimate of KL(π_new ‖ π_ref). From the
//! second epoch on r ≠ 1, which is what lets the clip act.
//! This module knows nothing about diffusion models: it only sees features, draws and rewards.

use serde::{Deserialize, Serialize};

use super::adam::Adam;
use super::features::StepFeatures;
use super::network::StepPolicy;

/// Added to the group's standard deviation so near-constant groups do not explode.
pub const ADVANTAGE_EPSILON: f64 = 1e-6;

/// Clip range, KL weight and optimisation epochs of the GRPO objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpoConfig {
    /// ε of the ratio clip [1 − ε, 1 + ε].
    pub clip: f64,
    /// β, the weight of the KL penalty towards the reference policy.
    pub kl_beta: f64,
    /// Optimisation epochs over one batch of trajectories (each one Adam step).
    pub epochs: usize,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            clip: 0.2,
            kl_beta: 0.04,
            epochs: 4,
        }
    }
}

/// One sampled action, recorded when the trajectory was generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub features: StepFeatures,
    /// The unit action y that was drawn.
    pub y: f64,
    /// log π_old(y | features) under the policy that generated the trajectory, recorded when
    /// it was drawn (never recomputed from the policy being updated).
    pub old_log_prob: f64,
    /// log π_ref(y | features) under the frozen reference policy, if a KL penalty is wanted.
    pub reference_log_prob: Option<f64>,
    /// The group-relative advantage of this decision's token in its trajectory.
    pub advantage: f64,
}

/// What one GRPO epoch saw, before its Adam step (objective and surrogate are sums over
/// decisions, as optimised; clipped fraction and KL are means).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GrpoStats {
    /// Summed surrogate minus kl_beta · summed KL: the quantity being maximised.
    pub objective: f64,
    /// Summed clipped surrogate alone.
    pub surrogate: f64,
    /// Fraction of decisions where the min picked the clipped branch (their gradient is zero).
    pub clipped_fraction: f64,
    /// Mean k3 KL estimate (decisions without a reference log-prob count as 0).
    pub kl: f64,
    /// Global norm of the objective's gradient before clipping.
    pub gradient_norm: f64,
}

/// Per-token rewards of one trajectory: the task reward plus λ times each token's final
/// progress t_i (pushes every token to finish).
pub fn token_rewards(task_reward: f64, final_progress: &[f64], progress_weight: f64) -> Vec<f64> {
    final_progress
        .iter()
        .map(|t| task_reward + progress_weight * t)
        .collect()
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

/// Per-token advantages of one group: `rewards[g][i]` is token i's reward in trajectory g; each
/// token is standardised across the group's trajectories ([`group_advantages`] per column).
pub fn group_token_advantages(rewards: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let tokens = rewards.first().map_or(0, Vec::len);
    assert!(
        rewards.iter().all(|row| row.len() == tokens),
        "every trajectory of a group has the same tokens"
    );
    let mut advantages = vec![vec![0.0; tokens]; rewards.len()];
    for token in 0..tokens {
        let column: Vec<f64> = rewards.iter().map(|row| row[token]).collect();
        for (row, advantage) in group_advantages(&column).into_iter().enumerate() {
            advantages[row][token] = advantage;
        }
    }
    advantages
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

/// The gradient of the summed objective over `decisions` (negated, for Adam, which minimises)
/// and what this epoch saw.
pub fn grpo_gradients(
    policy: &StepPolicy,
    decisions: &[Decision],
    config: &GrpoConfig,
) -> (Vec<f64>, GrpoStats) {
    let mut gradients = policy.zero_gradients();
    let mut surrogate = 0.0;
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
        surrogate += term.value;
        clipped_count += usize::from(term.clipped);
        let mut d_objective_d_log_prob = term.gradient_wrt_log_prob;
        if let Some(reference) = decision.reference_log_prob {
            let (kl, d_kl) = k3_kl(reference, log_prob);
            kl_sum += kl;
            d_objective_d_log_prob -= config.kl_beta * d_kl;
        }
        if d_objective_d_log_prob != 0.0 {
            policy.backward(&pass, decision.y, -d_objective_d_log_prob, &mut gradients);
        }
    }
    let count = decisions.len().max(1) as f64;
    let stats = GrpoStats {
        objective: surrogate - config.kl_beta * kl_sum,
        surrogate,
        clipped_fraction: clipped_count as f64 / count,
        kl: kl_sum / count,
        gradient_norm: 0.0,
    };
    (gradients.values, stats)
}

/// One GRPO update: `config.epochs` Adam ascent steps on the summed objective over the same
/// `decisions`, whose `old_log_prob`s stay those of the policy that sampled them. Returns each
/// epoch's statistics; an empty batch changes nothing.
pub fn grpo_update(
    policy: &mut StepPolicy,
    decisions: &[Decision],
    config: &GrpoConfig,
    optimizer: &mut Adam,
) -> Vec<GrpoStats> {
    if decisions.is_empty() {
        return Vec::new();
    }
    (0..config.epochs)
        .map(|_| {
            let (gradients, mut stats) = grpo_gradients(policy, decisions, config);
            stats.gradient_norm = optimizer.step(policy.parameters_mut(), &gradients);
            stats
        })
        .collect()
}
