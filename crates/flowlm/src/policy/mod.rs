//! A learned step-size policy for x-prediction flow decoding, trained with GRPO.
//!
//! In flow decoding every response token i carries a progress t_i ∈ [0, 1]. At each step the
//! policy chooses a per-token step fraction a_i ∈ [a_min, a_max] (default [1/256, 1]) and the
//! decoder advances dt_i = a_i (1 − t_i).
//!
//! * [`features`] turns a token's top-4 probabilities, its progress and the step index into the
//!   8 inputs `[p1, p2, p3, p4, H_4, p1 − p2, t_i, step / (T − 1)]`.
//! * [`network`] is a small SiLU MLP (8 → hidden → hidden → 2) whose outputs (u, v) give
//!   mu = 0.05 + 0.9 σ(u) and kappa = κ_min + (κ_max − κ_min) σ(v). The unit action is
//!   y ~ Beta(mu·kappa, (1 − mu)·kappa) and the step fraction is log-uniform in y:
//!   a = 2^(log2 a_min + y (log2 a_max − log2 a_min)).
//!   Deterministic decoding uses E[a] (computed exactly from the Beta moment generating
//!   function, Kummer's 1F1), not a(E[y]), which Jensen's inequality would bias low.
//! * [`beta`] holds the Beta distribution, its sampler (Marsaglia–Tsang Gamma draws) and the
//!   special functions (ln Γ, ψ, 1F1).
//! * [`adam`] is a flat-vector Adam with global-norm clipping.
//! * [`grpo`] computes per-token group-relative advantages and runs several epochs of
//!   clipped-surrogate updates against the frozen sampling policy, with an optional k3 KL
//!   penalty towards a reference policy.
//!
//! Forward and backward passes are written by hand in `f64`: the network has about 1.4k
//! parameters, so this is faster on CPU than a tensor library and keeps gradients exact.
//! The module is generic: callers run the decoder, record [`Decision`]s and rewards.

pub mod adam;
pub mod beta;
mod exact_floats;
pub mod features;
pub mod grpo;
mod layers;
pub mod network;
mod persistence;

pub use adam::{Adam, AdamConfig, global_norm};
pub use beta::{Beta, confluent_hypergeometric_1f1, digamma, ln_gamma};
pub use features::{
    FEATURE_COUNT, StepFeatures, normalized_top4_entropy, step_features, step_features_from_row,
    top4, top4_of,
};
pub use grpo::{
    Decision, GrpoConfig, GrpoStats, SurrogateTerm, clipped_surrogate, group_advantages,
    group_token_advantages, grpo_gradients, grpo_update, k3_kl, token_rewards,
};
pub use network::{ForwardPass, Gradients, PolicyConfig, StepPolicy};
