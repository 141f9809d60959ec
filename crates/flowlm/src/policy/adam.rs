//! A minimal Adam optimizer over a flat parameter vector, with optional clipping of the
//! gradient's global L2 norm. It minimises: callers that ascend pass the negated gradient.

use serde::{Deserialize, Serialize};

/// Adam hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Rescale the gradient to at most this global L2 norm; `None` disables clipping.
    pub max_gradient_norm: Option<f64>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            max_gradient_norm: Some(1.0),
        }
    }
}

/// Adam state: first and second moment estimates and the step count for bias correction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub config: AdamConfig,
    first_moment: Vec<f64>,
    second_moment: Vec<f64>,
    steps: u64,
}

impl Adam {
    pub fn new(config: AdamConfig, parameter_count: usize) -> Self {
        Adam {
            config,
            first_moment: vec![0.0; parameter_count],
            second_moment: vec![0.0; parameter_count],
            steps: 0,
        }
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One descent step on `parameters` along `gradient` (clipped first if configured).
    /// Returns the gradient's global norm before clipping.
    pub fn step(&mut self, parameters: &mut [f64], gradient: &[f64]) -> f64 {
        assert_eq!(
            parameters.len(),
            self.first_moment.len(),
            "parameter count changed"
        );
        assert_eq!(gradient.len(), parameters.len(), "gradient length mismatch");
        let norm = global_norm(gradient);
        let clip_scale = match self.config.max_gradient_norm {
            Some(limit) if norm > limit && norm > 0.0 => limit / norm,
            _ => 1.0,
        };
        self.steps += 1;
        let step = self.steps as f64;
        let AdamConfig {
            learning_rate,
            beta1,
            beta2,
            epsilon,
            ..
        } = self.config;
        let first_correction = 1.0 - beta1.powf(step);
        let second_correction = 1.0 - beta2.powf(step);
        for (((parameter, &raw), first), second) in parameters
            .iter_mut()
            .zip(gradient)
            .zip(&mut self.first_moment)
            .zip(&mut self.second_moment)
        {
            let g = raw * clip_scale;
            *first = beta1 * *first + (1.0 - beta1) * g;
            *second = beta2 * *second + (1.0 - beta2) * g * g;
            let first_unbiased = *first / first_correction;
            let second_unbiased = *second / second_correction;
            *parameter -= learning_rate * first_unbiased / (second_unbiased.sqrt() + epsilon);
        }
        norm
    }
}

/// L2 norm of a flat vector.
pub fn global_norm(values: &[f64]) -> f64 {
    values.iter().map(|v| v * v).sum::<f64>().sqrt()
}
