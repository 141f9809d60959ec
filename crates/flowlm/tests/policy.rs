//! Tests of the learned step policy: special functions, the Beta distribution and its sampler,
//! the exact expected action, hand-written gradients, GRPO updates, features and persistence.

use flowlm::policy::{
    Adam, AdamConfig, Beta, Decision, FEATURE_COUNT, GrpoConfig, GrpoStats, PolicyConfig,
    StepFeatures, StepPolicy, clipped_surrogate, digamma, group_advantages, group_token_advantages,
    grpo_gradients, grpo_update, ln_gamma, normalized_top4_entropy, step_features,
    step_features_from_row, token_rewards, top4,
};
use flowlm::sampler::{FlowDecision, FlowTrace};
use flowlm::trainer::step_policy::grpo_decisions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn assert_close(actual: f64, expected: f64, relative: f64, what: &str) {
    let tolerance = relative * expected.abs().max(actual.abs()) + 1e-12;
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} (relative tolerance {relative})"
    );
}

fn random_features(rng: &mut StdRng) -> StepFeatures {
    let mut probabilities: Vec<f32> = (0..50).map(|_| rng.random::<f32>().powi(6)).collect();
    let total: f32 = probabilities.iter().sum();
    probabilities.iter_mut().for_each(|p| *p /= total);
    step_features_from_row(&probabilities, rng.random(), rng.random_range(0..16), 16)
}

/// A policy whose parameters are large enough that hidden units and output sigmoids are far
/// from their linear regime, so gradient checks exercise every nonlinearity.
fn scrambled_policy(seed: u64, scale: f64) -> StepPolicy {
    let mut policy = StepPolicy::new(PolicyConfig::default(), seed).unwrap();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xABCD);
    for parameter in policy.parameters_mut() {
        *parameter = scale * (2.0 * rng.random::<f64>() - 1.0);
    }
    policy
}

/// Composite Simpson's rule on [lower, upper] with `intervals` (even) sub-intervals.
fn simpson(function: impl Fn(f64) -> f64, lower: f64, upper: f64, intervals: usize) -> f64 {
    let width = (upper - lower) / intervals as f64;
    let mut sum = function(lower) + function(upper);
    for index in 1..intervals {
        let weight = if index % 2 == 1 { 4.0 } else { 2.0 };
        sum += weight * function(lower + index as f64 * width);
    }
    sum * width / 3.0
}

/// ∫_0^1 g(y) y^(α−1) (1−y)^(β−1) dy without any normalising constant. Each half of [0, 1]
/// with a shape below 1 is integrated after the substitution y = s^(1/α) (or 1 − y = s^(1/β)),
/// which turns the endpoint singularity into a smooth integrand.
fn unnormalized_beta_integral(alpha: f64, beta: f64, function: impl Fn(f64) -> f64) -> f64 {
    let intervals = 200_000;
    let density = |y: f64| y.powf(alpha - 1.0) * (1.0 - y).powf(beta - 1.0);
    let left = if alpha < 1.0 {
        simpson(
            |s: f64| {
                let y = s.powf(1.0 / alpha);
                function(y) * (1.0 - y).powf(beta - 1.0) / alpha
            },
            0.0,
            0.5f64.powf(alpha),
            intervals,
        )
    } else {
        simpson(|y| function(y) * density(y), 0.0, 0.5, intervals)
    };
    let right = if beta < 1.0 {
        simpson(
            |s: f64| {
                let y = 1.0 - s.powf(1.0 / beta);
                function(y) * y.powf(alpha - 1.0) / beta
            },
            0.0,
            0.5f64.powf(beta),
            intervals,
        )
    } else {
        simpson(|y| function(y) * density(y), 0.5, 1.0, intervals)
    };
    left + right
}

fn integrated_expectation(alpha: f64, beta: f64, function: impl Fn(f64) -> f64) -> f64 {
    unnormalized_beta_integral(alpha, beta, function)
        / unnormalized_beta_integral(alpha, beta, |_| 1.0)
}

#[test]
fn expected_action_matches_numerical_integration() {
    let policy = StepPolicy::new(PolicyConfig::default(), 1).unwrap();
    let shapes = [
        (0.1, 1.9),
        (0.3, 0.7),
        (0.5, 2.0),
        (2.0, 3.0),
        (12.0, 15.0),
        (40.0, 5.0),
        (2.5, 0.4),
    ];
    for (alpha, beta) in shapes {
        let distribution = Beta::new(alpha, beta);
        let exact = policy.expected_action_under(&distribution);
        let integrated = integrated_expectation(alpha, beta, |y| policy.action_from_unit(y));
        assert_close(
            exact,
            integrated,
            1e-4,
            &format!("E[a] for Beta({alpha}, {beta})"),
        );
        // The negative-argument branch (Kummer's transformation) of the MGF as well.
        let mgf = distribution.expected_exp(-3.0);
        let integrated_mgf = integrated_expectation(alpha, beta, |y| (-3.0 * y).exp());
        assert_close(
            mgf,
            integrated_mgf,
            1e-4,
            &format!("E[e^-3Y] for Beta({alpha}, {beta})"),
        );
    }
}

#[test]
fn expected_action_differs_from_action_at_mean_for_wide_distribution() {
    let policy = StepPolicy::new(PolicyConfig::default(), 1).unwrap();
    let wide = Beta::new(0.5, 0.5);
    let expected = policy.expected_action_under(&wide);
    let at_mean = policy.action_from_unit(wide.mean());
    assert_close(
        at_mean,
        1.0 / 16.0,
        1e-12,
        "a(1/2) is the geometric midpoint",
    );
    // a(y) is convex, so Jensen's inequality puts E[a] well above a(E[y]).
    assert!(
        expected > 2.0 * at_mean,
        "E[a] = {expected} should exceed a(E[y]) = {at_mean} by far"
    );
}

#[test]
fn ln_gamma_and_digamma_match_known_values() {
    assert_close(ln_gamma(5.0), 24f64.ln(), 1e-12, "ln Γ(5)");
    assert_close(
        ln_gamma(0.5),
        std::f64::consts::PI.sqrt().ln(),
        1e-12,
        "ln Γ(1/2)",
    );
    assert!(ln_gamma(1.0).abs() < 1e-13 && ln_gamma(2.0).abs() < 1e-13);
    assert_close(ln_gamma(0.1), 2.252_712_651_734_206, 1e-12, "ln Γ(0.1)");
    assert_close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-12, "ln Γ(100)");
    assert_close(digamma(1.0), -0.577_215_664_901_532_9, 1e-10, "ψ(1)");
    assert_close(
        digamma(0.5),
        -0.577_215_664_901_532_9 - 2.0 * 2f64.ln(),
        1e-10,
        "ψ(1/2)",
    );
    // ψ is the derivative of ln Γ.
    for x in [0.07, 0.9, 3.3, 27.0] {
        let step = 1e-5;
        let numeric = (ln_gamma(x + step) - ln_gamma(x - step)) / (2.0 * step);
        assert_close(digamma(x), numeric, 1e-7, &format!("ψ({x}) vs d ln Γ"));
    }
}

#[test]
fn beta_log_prob_gradient_matches_finite_differences() {
    let step = 1e-6;
    for (alpha, beta, y) in [(0.3, 0.8, 0.2), (2.0, 5.0, 0.7), (20.0, 3.0, 0.93)] {
        let (d_alpha, d_beta) = Beta::new(alpha, beta).log_prob_gradient(y);
        let numeric_alpha = (Beta::new(alpha + step, beta).log_prob(y)
            - Beta::new(alpha - step, beta).log_prob(y))
            / (2.0 * step);
        let numeric_beta = (Beta::new(alpha, beta + step).log_prob(y)
            - Beta::new(alpha, beta - step).log_prob(y))
            / (2.0 * step);
        assert_close(d_alpha, numeric_alpha, 1e-6, "d log_prob / d alpha");
        assert_close(d_beta, numeric_beta, 1e-6, "d log_prob / d beta");
    }
}

#[test]
fn network_log_prob_gradient_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(7);
    for (seed, scale) in [(3, 0.6), (4, 1.5)] {
        let mut policy = scrambled_policy(seed, scale);
        let features = random_features(&mut rng);
        let y = 0.05 + 0.9 * rng.random::<f64>();
        let mut gradients = policy.zero_gradients();
        let log_prob = policy.accumulate_log_prob_gradient(&features, y, 1.0, &mut gradients);
        assert_close(
            log_prob,
            policy.log_prob(&features, y),
            1e-14,
            "returned log_prob",
        );

        // The scale argument multiplies and accumulates.
        let mut doubled = policy.zero_gradients();
        policy.accumulate_log_prob_gradient(&features, y, 1.5, &mut doubled);
        policy.accumulate_log_prob_gradient(&features, y, 0.5, &mut doubled);
        for (twice, once) in doubled.values.iter().zip(&gradients.values) {
            assert_close(*twice, 2.0 * once, 1e-12, "accumulated gradient");
        }

        let count = policy.parameter_count();
        // A random sample of parameters plus the first and last of the flat vector.
        let mut indices: Vec<usize> = (0..25).map(|_| rng.random_range(0..count)).collect();
        indices.extend([0, count - 3, count - 2, count - 1]);
        // 1e-4 balances truncation error against the rounding noise of ln Γ and ψ.
        let step = 1e-4;
        for index in indices {
            let original = policy.parameters()[index];
            policy.parameters_mut()[index] = original + step;
            let plus = policy.log_prob(&features, y);
            policy.parameters_mut()[index] = original - step;
            let minus = policy.log_prob(&features, y);
            policy.parameters_mut()[index] = original;
            let numeric = (plus - minus) / (2.0 * step);
            let analytic = gradients.values[index];
            let tolerance = 1e-4 * numeric.abs().max(analytic.abs()) + 1e-8;
            assert!(
                (numeric - analytic).abs() <= tolerance,
                "parameter {index}: analytic {analytic} vs numeric {numeric}"
            );
        }
    }
}

#[test]
fn beta_sampler_matches_mean_and_variance() {
    let mut rng = StdRng::seed_from_u64(11);
    let draws = 20_000;
    for (alpha, beta) in [(0.3, 0.8), (5.0, 12.0)] {
        let distribution = Beta::new(alpha, beta);
        let samples: Vec<f64> = (0..draws).map(|_| distribution.sample(&mut rng)).collect();
        assert!(samples.iter().all(|&y| (0.0..=1.0).contains(&y)));
        let mean = samples.iter().sum::<f64>() / draws as f64;
        let variance = samples.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / draws as f64;
        let standard_error = (distribution.variance() / draws as f64).sqrt();
        assert!(
            (mean - distribution.mean()).abs() < 5.0 * standard_error,
            "Beta({alpha}, {beta}) sample mean {mean} vs {}",
            distribution.mean()
        );
        assert_close(variance, distribution.variance(), 0.05, "sample variance");
    }
}

#[test]
fn actions_and_distribution_parameters_stay_in_range() {
    let config = PolicyConfig {
        kappa_min: 3.0,
        kappa_max: 20.0,
        ..PolicyConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(5);
    for seed in 0..6 {
        let mut policy = StepPolicy::new(config.clone(), seed).unwrap();
        // Large parameters saturate the sigmoids, probing the ends of every range.
        let scale = [0.1, 1.0, 5.0, 30.0, 100.0, 300.0][seed as usize];
        for parameter in policy.parameters_mut() {
            *parameter = scale * (2.0 * rng.random::<f64>() - 1.0);
        }
        for _ in 0..50 {
            let features = random_features(&mut rng);
            let pass = policy.forward(&features);
            assert!((0.05..=0.95).contains(&pass.mu), "mu = {}", pass.mu);
            assert!((3.0..=20.0).contains(&pass.kappa), "kappa = {}", pass.kappa);
            let expected = policy.expected_action(&features);
            let (y, sampled) = policy.sample_action(&features, &mut rng);
            assert!((0.0..=1.0).contains(&y));
            for a in [expected, sampled] {
                assert!(
                    (config.a_min..=config.a_max).contains(&a) && a.is_finite(),
                    "a = {a}"
                );
            }
        }
    }
    let policy = StepPolicy::new(config.clone(), 0).unwrap();
    assert_close(policy.action_from_unit(0.0), 1.0 / 256.0, 1e-12, "a(0)");
    assert_close(policy.action_from_unit(1.0), 1.0, 1e-12, "a(1)");
    assert_eq!(policy.action_from_unit(-0.5), policy.action_from_unit(0.0));
    assert_eq!(policy.action_from_unit(1.5), policy.action_from_unit(1.0));
}

#[test]
fn fresh_policy_starts_near_mu_one_half() {
    let policy = StepPolicy::new(PolicyConfig::default(), 42).unwrap();
    assert_eq!(policy.parameter_count(), 1410);
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..20 {
        let mu = policy.forward(&random_features(&mut rng)).mu;
        assert!((mu - 0.5).abs() < 0.05, "initial mu = {mu}");
    }
    assert!(
        StepPolicy::new(
            PolicyConfig {
                hidden: 0,
                ..PolicyConfig::default()
            },
            0
        )
        .is_err()
    );
    let inverted = PolicyConfig {
        a_min: 0.5,
        a_max: 0.25,
        ..PolicyConfig::default()
    };
    assert!(StepPolicy::new(inverted, 0).is_err());
}

#[test]
fn group_advantages_are_standardized_within_the_group() {
    let rewards = [1.0, 0.0, 0.5, 2.0, 0.25, 0.0, 1.0, 0.75];
    let advantages = group_advantages(&rewards);
    let count = advantages.len() as f64;
    let mean = advantages.iter().sum::<f64>() / count;
    let std = (advantages.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / count).sqrt();
    assert!(mean.abs() < 1e-12, "mean advantage {mean}");
    assert_close(std, 1.0, 1e-5, "advantage std");
    assert!(advantages[3] > advantages[0] && advantages[0] > advantages[1]);
    assert_eq!(group_advantages(&[0.7; 8]), vec![0.0; 8]);
    assert!(group_advantages(&[]).is_empty());
}

/// ALGORITHMS.md: per-token reward = task reward + lambda * t_i, each token's decisions get
/// their own advantage. A trajectory-level reward (task + lambda * mean t) gives both
/// trajectories below the same reward and so no signal at all.
#[test]
fn rewards_and_advantages_are_per_token() {
    let first = token_rewards(1.0, &[1.0, 0.0], 0.2);
    let second = token_rewards(1.0, &[0.0, 1.0], 0.2);
    assert_eq!(first, vec![1.2, 1.0]);
    assert_eq!(second, vec![1.0, 1.2]);
    let advantages = group_token_advantages(&[first, second]);
    assert!(
        advantages[0][0] > 0.9 && advantages[0][1] < -0.9,
        "{advantages:?}"
    );
    assert!(
        advantages[1][0] < -0.9 && advantages[1][1] > 0.9,
        "{advantages:?}"
    );
}

/// The trainer hands each decision its own token's advantage and the log-prob recorded when the
/// action was drawn, not one recomputed from the policy being trained.
#[test]
fn decisions_keep_their_sampling_log_prob_and_token_advantage() {
    let policy = StepPolicy::new(PolicyConfig::default(), 9).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let decision = |row, slot, rng: &mut StdRng| FlowDecision {
        row,
        slot,
        features: random_features(rng),
        unit_action: 0.3,
        log_prob: -0.25 - slot as f64,
    };
    let trace = FlowTrace {
        decisions: vec![decision(0, 1, &mut rng), decision(1, 0, &mut rng)],
        final_progress: vec![vec![0.0, 1.0], vec![1.0, 0.0]],
    };
    let rewards = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
    let decisions = grpo_decisions(&trace, &rewards, 2, &policy);
    assert_eq!(decisions[0].old_log_prob, -1.25);
    assert_eq!(decisions[1].old_log_prob, -0.25);
    assert!(decisions[0].advantage > 0.9, "row 0 slot 1 was rewarded");
    assert!(decisions[1].advantage > 0.9, "row 1 slot 0 was rewarded");
    assert_ne!(
        decisions[0].old_log_prob,
        policy.log_prob(&decisions[0].features, 0.3)
    );
}

/// The objective is a sum over decisions: the same decisions twice give twice the gradient
/// (a mean would give the same gradient).
#[test]
fn grpo_objective_sums_over_decisions() {
    let policy = StepPolicy::new(PolicyConfig::default(), 9).unwrap();
    let decisions: Vec<Decision> = (0..3)
        .map(|seed| decision_at_current_policy(&policy, 1.0 - seed as f64, 40 + seed))
        .collect();
    let doubled: Vec<Decision> = decisions.iter().chain(&decisions).cloned().collect();
    let config = GrpoConfig::default();
    let (once, stats_once) = grpo_gradients(&policy, &decisions, &config);
    let (twice, stats_twice) = grpo_gradients(&policy, &doubled, &config);
    for (a, b) in once.iter().zip(&twice) {
        assert_close(*b, 2.0 * a, 1e-12, "doubled gradient");
    }
    assert_close(
        stats_twice.surrogate,
        2.0 * stats_once.surrogate,
        1e-12,
        "summed surrogate",
    );
}

/// Several epochs against the frozen sampling policy: after the first Adam step the ratio moves
/// away from 1, and with a large step the clip acts. With pi_old recomputed from the current
/// policy (or one epoch per batch) the clipped fraction would stay 0.
#[test]
fn grpo_epochs_reuse_the_frozen_old_policy_so_the_clip_acts() {
    let mut policy = StepPolicy::new(PolicyConfig::default(), 9).unwrap();
    let decisions: Vec<Decision> = (0..16)
        .map(|seed| decision_at_current_policy(&policy, 1.0, 60 + seed))
        .collect();
    let mut optimizer = Adam::new(
        AdamConfig {
            learning_rate: 0.05,
            ..Default::default()
        },
        policy.parameter_count(),
    );
    let config = GrpoConfig {
        epochs: 4,
        ..Default::default()
    };
    let epochs: Vec<GrpoStats> = grpo_update(&mut policy, &decisions, &config, &mut optimizer);
    assert_eq!(epochs.len(), 4);
    assert_eq!(
        epochs[0].clipped_fraction, 0.0,
        "ratio 1 in the first epoch"
    );
    assert_close(epochs[0].surrogate, 16.0, 1e-12, "sum of r A at r = 1");
    assert!(
        epochs.iter().skip(1).any(|e| e.clipped_fraction > 0.0),
        "the clip never acted: {epochs:?}"
    );
    assert!(
        (epochs[1].surrogate - epochs[0].surrogate).abs() > 1e-6,
        "the second epoch still saw r = 1"
    );
    assert_eq!(optimizer.steps(), 4);
}

/// One GRPO epoch with the default clip and KL weight.
fn one_epoch(policy: &mut StepPolicy, decisions: &[Decision], optimizer: &mut Adam) -> GrpoStats {
    let config = GrpoConfig {
        epochs: 1,
        ..Default::default()
    };
    grpo_update(policy, decisions, &config, optimizer)[0]
}

fn decision_at_current_policy(policy: &StepPolicy, advantage: f64, seed: u64) -> Decision {
    let mut rng = StdRng::seed_from_u64(seed);
    let features = random_features(&mut rng);
    let (y, _) = policy.sample_action(&features, &mut rng);
    Decision {
        features,
        y,
        old_log_prob: policy.log_prob(&features, y),
        reference_log_prob: None,
        advantage,
    }
}

#[test]
fn grpo_epoch_moves_log_prob_with_the_sign_of_the_advantage() {
    for (advantage, should_increase) in [(1.0, true), (-1.0, false)] {
        let mut policy = StepPolicy::new(PolicyConfig::default(), 9).unwrap();
        let mut optimizer = Adam::new(AdamConfig::default(), policy.parameter_count());
        let decision = decision_at_current_policy(&policy, advantage, 21);
        let before = policy.log_prob(&decision.features, decision.y);
        let stats = one_epoch(&mut policy, std::slice::from_ref(&decision), &mut optimizer);
        let after = policy.log_prob(&decision.features, decision.y);
        assert_eq!(stats.clipped_fraction, 0.0);
        assert_close(stats.objective, advantage, 1e-12, "objective at ratio 1");
        assert!(stats.gradient_norm > 0.0);
        assert_eq!(
            after > before,
            should_increase,
            "advantage {advantage}: log-prob {before} -> {after}"
        );
    }
}

#[test]
fn clipped_branch_has_zero_gradient() {
    let term = clipped_surrogate(1.5f64.ln(), 1.0, 0.2);
    assert!(term.clipped && term.gradient_wrt_log_prob == 0.0);
    assert_close(term.value, 1.2, 1e-12, "clipped surrogate value");
    // With a negative advantage the pessimistic min keeps the unclipped branch, which has
    // gradient r A.
    let term = clipped_surrogate(1.5f64.ln(), -1.0, 0.2);
    assert!(!term.clipped);
    assert_close(
        term.gradient_wrt_log_prob,
        -1.5,
        1e-12,
        "unclipped gradient",
    );

    // A full step whose only decision is clipped leaves the parameters untouched.
    let mut policy = StepPolicy::new(PolicyConfig::default(), 9).unwrap();
    let mut optimizer = Adam::new(AdamConfig::default(), policy.parameter_count());
    let mut decision = decision_at_current_policy(&policy, 1.0, 21);
    decision.old_log_prob -= 1.5f64.ln();
    let before = policy.parameters().to_vec();
    let stats = one_epoch(&mut policy, &[decision], &mut optimizer);
    assert_eq!(stats.clipped_fraction, 1.0);
    assert_eq!(stats.gradient_norm, 0.0);
    assert_eq!(policy.parameters(), before.as_slice());
}

#[test]
fn kl_penalty_pulls_log_prob_towards_the_reference() {
    let mut policy = StepPolicy::new(PolicyConfig::default(), 9).unwrap();
    let mut optimizer = Adam::new(AdamConfig::default(), policy.parameter_count());
    let mut decision = decision_at_current_policy(&policy, 0.0, 33);
    // The reference gives this draw a lower log-prob, so only the KL term pushes, downward.
    decision.reference_log_prob = Some(decision.old_log_prob - 1.0);
    let before = policy.log_prob(&decision.features, decision.y);
    let stats = one_epoch(&mut policy, std::slice::from_ref(&decision), &mut optimizer);
    let after = policy.log_prob(&decision.features, decision.y);
    assert_close(stats.kl, (-1f64).exp(), 1e-12, "k3 estimate e^-1 + 1 - 1");
    assert_close(stats.objective, -0.04 * stats.kl, 1e-12, "objective");
    assert!(after < before, "log-prob {before} -> {after}");
}

#[test]
fn features_follow_their_definitions() {
    let uniform = step_features([0.25; 4], 0.3, 3, 7);
    assert_close(uniform[4], 1.0, 1e-12, "H_4 of a uniform top 4");
    assert_eq!(uniform[5], 0.0);
    assert_close(uniform[6], 0.3, 0.0, "progress");
    assert_close(uniform[7], 0.5, 1e-15, "step fraction 3 / 6");

    let one_hot = step_features_from_row(&[0.0, 1.0, 0.0, 0.0, 0.0], 0.0, 0, 1);
    assert_eq!(one_hot[..4], [1.0, 0.0, 0.0, 0.0]);
    assert!(
        one_hot[4].abs() < 1e-12,
        "H_4 of a one-hot row = {}",
        one_hot[4]
    );
    assert_eq!(
        one_hot[7], 0.0,
        "a single-step schedule has step fraction 0"
    );
    assert_eq!(one_hot.len(), FEATURE_COUNT);

    let row = [0.05f32, 0.4, 0.1, 0.3, 0.15];
    let best = top4(&row);
    let expected = [0.4f32, 0.3, 0.15, 0.1].map(f64::from);
    assert_eq!(best, expected);
    let features = step_features_from_row(&row, 0.9, 9, 10);
    assert_close(
        features[5],
        f64::from(0.4f32) - f64::from(0.3f32),
        1e-15,
        "p1 - p2",
    );
    assert_eq!(features[7], 1.0);
    assert_eq!(top4(&[0.6, 0.4]), [0.6f32 as f64, 0.4f32 as f64, 0.0, 0.0]);

    // Two equal survivors carry ln 2 of entropy, half of the maximum ln 4; the renormalisation
    // makes the scale of the top 4 irrelevant.
    assert_close(
        normalized_top4_entropy([0.3, 0.3, 0.0, 0.0]),
        0.5,
        1e-12,
        "H_4 of 2 of 4",
    );
    let skewed = normalized_top4_entropy([0.7, 0.1, 0.1, 0.1]);
    assert!(skewed > 0.0 && skewed < 1.0);
}

#[test]
fn save_and_load_roundtrip_gives_identical_actions() {
    let policy = scrambled_policy(17, 0.8);
    let directory = std::env::temp_dir().join(format!("flowlm-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("policy.json");
    policy.save(&path).unwrap();
    let loaded = StepPolicy::load(&path).unwrap();
    assert_eq!(loaded, policy);
    let mut rng = StdRng::seed_from_u64(8);
    for _ in 0..10 {
        let features = random_features(&mut rng);
        assert_eq!(
            loaded.expected_action(&features),
            policy.expected_action(&features)
        );
        let mut first = StdRng::seed_from_u64(1);
        let mut second = StdRng::seed_from_u64(1);
        assert_eq!(
            loaded.sample_action(&features, &mut first),
            policy.sample_action(&features, &mut second)
        );
    }
    std::fs::write(
        &path,
        "{\"config\": {\"hidden\": 4}, \"parameters\": [1.0]}",
    )
    .unwrap();
    assert!(
        StepPolicy::load(&path).is_err(),
        "wrong parameter count must be rejected"
    );
    std::fs::remove_dir_all(&directory).unwrap();
}
