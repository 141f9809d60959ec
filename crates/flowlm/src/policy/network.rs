//! The step-policy network: a 2-hidden-layer SiLU MLP from the 8 step features to a Beta
//! distribution over the unit action `y`, and the map from `y` to the step size `a`.
//!
//! Raw outputs (u, v) become mu = 0.05 + 0.9 σ(u) and kappa = κ_min + (κ_max − κ_min) σ(v),
//! then Beta(mu·kappa, (1 − mu)·kappa). The step size is log-uniform in y:
//! a = exp(ln a_min + y (ln a_max − ln a_min)). Forward and backward are written out by hand;
//! all parameters live in one flat vector so the optimizer and serialisation stay trivial.
//! Saving and loading live in `persistence.rs`.

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::beta::{Beta, sample_standard_normal};
use super::features::{FEATURE_COUNT, StepFeatures};
use super::layers::{dense, dense_backward, sigmoid, silu, silu_derivative};
use crate::error::FlowError;

/// Lower bound of mu; keeping mu away from 0 and 1 keeps both Beta shapes >= 0.05 κ_min.
pub const MU_FLOOR: f64 = 0.05;
/// Width of mu's range, so mu lies in [0.05, 0.95].
pub const MU_RANGE: f64 = 0.9;
/// Upper bound of mu (0.05 + 0.9 rounds to just above 0.95 in f64, hence its own constant).
pub const MU_CEILING: f64 = 0.95;
/// The network has two raw outputs: u (for mu) and v (for kappa).
const OUTPUT_COUNT: usize = 2;
/// Output-layer weights start this small so that the initial policy has mu ≈ 0.5.
const OUTPUT_INIT_SCALE: f64 = 0.01;

/// Shape and output ranges of the step policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// Width of both hidden layers.
    pub hidden: usize,
    /// Smallest step fraction a (reached at y = 0).
    pub a_min: f64,
    /// Largest step fraction a (reached at y = 1).
    pub a_max: f64,
    /// Smallest Beta concentration (widest distribution).
    pub kappa_min: f64,
    /// Largest Beta concentration (narrowest distribution).
    pub kappa_max: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            hidden: 32,
            a_min: 1.0 / 256.0,
            a_max: 1.0,
            kappa_min: 2.0,
            kappa_max: 50.0,
        }
    }
}

impl PolicyConfig {
    pub fn validate(&self) -> crate::Result<()> {
        if self.hidden == 0 {
            return Err(FlowError::config("policy.hidden", "must be at least 1"));
        }
        if !(self.a_min > 0.0 && self.a_min < self.a_max && self.a_max <= 1.0) {
            return Err(FlowError::config(
                "policy.a_min/a_max",
                format!(
                    "need 0 < a_min < a_max <= 1, got a_min = {}, a_max = {}",
                    self.a_min, self.a_max
                ),
            ));
        }
        if !(self.kappa_min > 0.0 && self.kappa_min < self.kappa_max && self.kappa_max.is_finite())
        {
            return Err(FlowError::config(
                "policy.kappa_min/kappa_max",
                format!(
                    "need 0 < kappa_min < kappa_max < inf, got kappa_min = {}, kappa_max = {}",
                    self.kappa_min, self.kappa_max
                ),
            ));
        }
        Ok(())
    }

    /// Number of parameters of the network this config describes.
    pub fn parameter_count(&self) -> usize {
        Layout::new(self.hidden).total
    }

    /// c = ln a_max − ln a_min, the slope of ln a in y.
    pub fn log_action_span(&self) -> f64 {
        self.a_max.ln() - self.a_min.ln()
    }
}

/// Offsets of each tensor inside the flat parameter vector (row-major weights, output-major).
#[derive(Debug, Clone, Copy)]
struct Layout {
    hidden: usize,
    first_weights: usize,
    first_bias: usize,
    second_weights: usize,
    second_bias: usize,
    output_weights: usize,
    output_bias: usize,
    total: usize,
}

impl Layout {
    fn new(hidden: usize) -> Self {
        let first_weights = 0;
        let first_bias = first_weights + hidden * FEATURE_COUNT;
        let second_weights = first_bias + hidden;
        let second_bias = second_weights + hidden * hidden;
        let output_weights = second_bias + hidden;
        let output_bias = output_weights + OUTPUT_COUNT * hidden;
        Layout {
            hidden,
            first_weights,
            first_bias,
            second_weights,
            second_bias,
            output_weights,
            output_bias,
            total: output_bias + OUTPUT_COUNT,
        }
    }
}

/// A gradient with the same flat layout as the policy's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    pub values: Vec<f64>,
}

impl Gradients {
    pub fn zeros(parameter_count: usize) -> Self {
        Gradients {
            values: vec![0.0; parameter_count],
        }
    }

    pub fn clear(&mut self) {
        self.values.fill(0.0);
    }
}

/// Everything a forward pass computed, kept so the backward pass needs no recomputation.
#[derive(Debug, Clone)]
pub struct ForwardPass {
    pub features: StepFeatures,
    pub first_preactivation: Vec<f64>,
    pub first_activation: Vec<f64>,
    pub second_preactivation: Vec<f64>,
    pub second_activation: Vec<f64>,
    /// Raw output u, mapped to mu.
    pub mean_logit: f64,
    /// Raw output v, mapped to kappa.
    pub concentration_logit: f64,
    pub mu: f64,
    pub kappa: f64,
    pub distribution: Beta,
}

/// The learned step-size policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPolicy {
    pub config: PolicyConfig,
    #[serde(with = "super::exact_floats")]
    parameters: Vec<f64>,
}

impl StepPolicy {
    /// A freshly initialised policy: hidden layers get He-style normal weights, the output
    /// layer near-zero weights and zero bias, so every token starts at mu ≈ 0.5 and the middle
    /// of the kappa range.
    pub fn new(config: PolicyConfig, seed: u64) -> crate::Result<Self> {
        config.validate()?;
        let layout = Layout::new(config.hidden);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut parameters = vec![0.0; layout.total];
        let mut fill_normal = |range: std::ops::Range<usize>, scale: f64| {
            for value in &mut parameters[range] {
                *value = scale * sample_standard_normal(&mut rng);
            }
        };
        fill_normal(
            layout.first_weights..layout.first_bias,
            (2.0 / FEATURE_COUNT as f64).sqrt(),
        );
        fill_normal(
            layout.second_weights..layout.second_bias,
            (2.0 / config.hidden as f64).sqrt(),
        );
        fill_normal(
            layout.output_weights..layout.output_bias,
            OUTPUT_INIT_SCALE / (config.hidden as f64).sqrt(),
        );
        Ok(StepPolicy { config, parameters })
    }

    pub fn parameters(&self) -> &[f64] {
        &self.parameters
    }

    pub fn parameters_mut(&mut self) -> &mut [f64] {
        &mut self.parameters
    }

    pub fn parameter_count(&self) -> usize {
        self.parameters.len()
    }

    pub fn zero_gradients(&self) -> Gradients {
        Gradients::zeros(self.parameters.len())
    }

    fn layout(&self) -> Layout {
        Layout::new(self.config.hidden)
    }

    /// Runs the network and keeps its activations.
    pub fn forward(&self, features: &StepFeatures) -> ForwardPass {
        let layout = self.layout();
        let hidden = layout.hidden;
        let p = &self.parameters;

        let mut first_preactivation = vec![0.0; hidden];
        dense(
            &p[layout.first_weights..layout.first_bias],
            &p[layout.first_bias..layout.second_weights],
            features,
            &mut first_preactivation,
        );
        let first_activation: Vec<f64> = first_preactivation.iter().map(|&z| silu(z)).collect();

        let mut second_preactivation = vec![0.0; hidden];
        dense(
            &p[layout.second_weights..layout.second_bias],
            &p[layout.second_bias..layout.output_weights],
            &first_activation,
            &mut second_preactivation,
        );
        let second_activation: Vec<f64> = second_preactivation.iter().map(|&z| silu(z)).collect();

        let mut outputs = [0.0; OUTPUT_COUNT];
        dense(
            &p[layout.output_weights..layout.output_bias],
            &p[layout.output_bias..layout.total],
            &second_activation,
            &mut outputs,
        );
        let [mean_logit, concentration_logit] = outputs;
        // The clamps only absorb rounding when a sigmoid saturates at exactly 0 or 1.
        let mu = (MU_FLOOR + MU_RANGE * sigmoid(mean_logit)).clamp(MU_FLOOR, MU_CEILING);
        let kappa = (self.config.kappa_min
            + (self.config.kappa_max - self.config.kappa_min) * sigmoid(concentration_logit))
        .clamp(self.config.kappa_min, self.config.kappa_max);
        ForwardPass {
            features: *features,
            first_preactivation,
            first_activation,
            second_preactivation,
            second_activation,
            mean_logit,
            concentration_logit,
            mu,
            kappa,
            distribution: Beta::new(mu * kappa, (1.0 - mu) * kappa),
        }
    }

    /// The Beta distribution over the unit action y for one token.
    pub fn distribution(&self, features: &StepFeatures) -> Beta {
        self.forward(features).distribution
    }

    /// Step fraction a for a unit action y: log-uniform between a_min (y = 0) and a_max (y = 1).
    pub fn action_from_unit(&self, y: f64) -> f64 {
        let y = y.clamp(0.0, 1.0);
        let log_action = self.config.a_min.ln() + y * self.config.log_action_span();
        // The clamp only absorbs rounding at the ends.
        log_action.exp().clamp(self.config.a_min, self.config.a_max)
    }

    /// E[a] under `distribution`: a = e^{d + cY} so E[a] = e^d · E[e^{cY}] (the Beta MGF).
    pub fn expected_action_under(&self, distribution: &Beta) -> f64 {
        let expected = self.config.a_min * distribution.expected_exp(self.config.log_action_span());
        expected.clamp(self.config.a_min, self.config.a_max)
    }

    /// The deterministic decoding action: the expected step fraction E[a] (not a(E[y])).
    pub fn expected_action(&self, features: &StepFeatures) -> f64 {
        self.expected_action_under(&self.distribution(features))
    }

    /// A sampled unit action y and its step fraction a.
    pub fn sample_action(&self, features: &StepFeatures, rng: &mut StdRng) -> (f64, f64) {
        let y = self.distribution(features).sample(rng);
        (y, self.action_from_unit(y))
    }

    /// log π(y | features).
    pub fn log_prob(&self, features: &StepFeatures, y: f64) -> f64 {
        self.distribution(features).log_prob(y)
    }

    /// Adds `scale · d log π(y | features) / d parameters` into `gradients` and returns
    /// log π(y | features).
    pub fn accumulate_log_prob_gradient(
        &self,
        features: &StepFeatures,
        y: f64,
        scale: f64,
        gradients: &mut Gradients,
    ) -> f64 {
        let pass = self.forward(features);
        let log_prob = pass.distribution.log_prob(y);
        self.backward(&pass, y, scale, gradients);
        log_prob
    }

    /// Backward pass of `scale · log π(y)` from a stored forward pass.
    pub fn backward(&self, pass: &ForwardPass, y: f64, scale: f64, gradients: &mut Gradients) {
        assert_eq!(
            gradients.values.len(),
            self.parameters.len(),
            "gradient buffer does not match the policy's parameter count"
        );
        let layout = self.layout();
        let hidden = layout.hidden;
        let p = &self.parameters;
        let g = &mut gradients.values;

        // Beta shapes: alpha = mu·kappa, beta = (1 − mu)·kappa.
        let (d_alpha, d_beta) = pass.distribution.log_prob_gradient(y);
        let d_mu = pass.kappa * (d_alpha - d_beta);
        let d_kappa = pass.mu * d_alpha + (1.0 - pass.mu) * d_beta;
        let mean_sigmoid = sigmoid(pass.mean_logit);
        let concentration_sigmoid = sigmoid(pass.concentration_logit);
        let kappa_range = self.config.kappa_max - self.config.kappa_min;
        let d_outputs = [
            scale * d_mu * MU_RANGE * mean_sigmoid * (1.0 - mean_sigmoid),
            scale * d_kappa * kappa_range * concentration_sigmoid * (1.0 - concentration_sigmoid),
        ];

        let mut d_second_activation = vec![0.0; hidden];
        dense_backward(
            &p[layout.output_weights..layout.output_bias],
            &pass.second_activation,
            &d_outputs,
            &mut g[layout.output_weights..layout.total],
            &mut d_second_activation,
        );
        let d_second_preactivation: Vec<f64> = d_second_activation
            .iter()
            .zip(&pass.second_preactivation)
            .map(|(d, &z)| d * silu_derivative(z))
            .collect();

        let mut d_first_activation = vec![0.0; hidden];
        dense_backward(
            &p[layout.second_weights..layout.second_bias],
            &pass.first_activation,
            &d_second_preactivation,
            &mut g[layout.second_weights..layout.output_weights],
            &mut d_first_activation,
        );
        let d_first_preactivation: Vec<f64> = d_first_activation
            .iter()
            .zip(&pass.first_preactivation)
            .map(|(d, &z)| d * silu_derivative(z))
            .collect();

        // The features are inputs, not parameters, so their gradient is discarded.
        let mut d_features = [0.0; FEATURE_COUNT];
        dense_backward(
            &p[layout.first_weights..layout.first_bias],
            &pass.features,
            &d_first_preactivation,
            &mut g[layout.first_weights..layout.second_weights],
            &mut d_features,
        );
    }
}
