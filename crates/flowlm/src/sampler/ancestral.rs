//! Ancestral sampling for uniform-state processes: uniform diffusion (seed 002, `uniform`) and
//! Duo's Gaussian soft tokens read at tau -> 0 (`duo`). Start from uniformly random tokens at the
//! top noise level; each step predicts x_0 and draws x_s from the exact posterior
//! q(x_s | x_t, x_0) of the uniform process, marginalised over the prediction:
//!   q(x_s = j) ∝ [a_ts 1(x_t = j) + (1 - a_ts) / N] [a_s p_j + (1 - a_s) / N],
//! with a the probability a token is still clean and a_ts = a_t / a_s. The last step returns x_0
//! itself: sampled, or the argmax ("greedy tail", Duo).

use super::{Observer, Sampler, SamplerReport, StepEvent, commit, predict};
use crate::canvas::Canvas;
use crate::corruption::{GaussianParameterization, effective_clean_probability};
use crate::error::{FlowError, Result};
use crate::model::{Denoiser, argmax, softmax};
use crate::random::StdRng;
use crate::schedule::Schedule;
use crate::vocabulary::Vocabulary;
use rand::Rng;

/// The process being reversed: how a time maps to the clean probability a(t).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UniformProcess {
    /// Seed 002: T discrete steps of the cosine schedule, walked with a stride.
    Cosine { total_steps: usize },
    /// Duo: the argmax of the Gaussian-noised one-hot, over its training time range.
    Gaussian(GaussianParameterization),
}

impl UniformProcess {
    /// Times visited, from the noisiest to the cleanest (`steps + 1` of them).
    pub fn times(&self, steps: usize) -> Vec<f64> {
        match *self {
            UniformProcess::Cosine { total_steps } => (0..=steps)
                .map(|i| {
                    // Integer steps k of T, strided: T, ..., 0.
                    let k = (total_steps * (steps - i)).div_ceil(steps);
                    k as f64 / total_steps as f64
                })
                .collect(),
            UniformProcess::Gaussian(parameterization) => {
                let (low, high) = parameterization.time_range();
                (0..=steps)
                    .map(|i| high + (low - high) * i as f64 / steps as f64)
                    .collect()
            }
        }
    }

    /// Probability that a token is clean at time t (the rest is uniform over N tokens).
    pub fn clean_probability(&self, time: f64, tokens: usize) -> f64 {
        match *self {
            UniformProcess::Cosine { total_steps } => {
                1.0 - Schedule::Cosine { steps: total_steps }.noise(time)
            }
            UniformProcess::Gaussian(parameterization) => {
                let (clean, noise) = parameterization.scales(time);
                effective_clean_probability(clean, noise, tokens)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct AncestralSampler {
    pub steps: usize,
    /// Temperature of the x_0 prediction (0 = its argmax).
    pub temperature: f64,
    /// Return argmax x_0 at the last step instead of a sample.
    pub greedy_last_step: bool,
    pub process: UniformProcess,
    pub vocabulary: Vocabulary,
}

impl AncestralSampler {
    /// x_0 distribution at one slot over the vocabulary, tempered.
    fn prediction(&self, logits: &[f32]) -> Vec<f64> {
        if self.temperature <= 0.0 {
            let mut one_hot = vec![0.0; logits.len()];
            one_hot[argmax(logits).0] = 1.0;
            return one_hot;
        }
        let scaled: Vec<f32> = logits
            .iter()
            .map(|&l| (l as f64 / self.temperature) as f32)
            .collect();
        softmax(&scaled)
    }

    /// The posterior q(x_s | x_t, x_0 ~ p) of one slot.
    pub fn posterior(
        &self,
        prediction: &[f64],
        current: u32,
        clean_t: f64,
        clean_s: f64,
    ) -> Vec<f64> {
        let tokens = self.vocabulary.regular_count() as f64;
        let ratio = if clean_s > 0.0 {
            (clean_t / clean_s).min(1.0)
        } else {
            0.0
        };
        let mut weights: Vec<f64> = prediction
            .iter()
            .enumerate()
            .map(|(j, &p)| {
                let regular = !self.vocabulary.is_special(j as u32);
                let uniform = if regular { 1.0 / tokens } else { 0.0 };
                let forward = ratio * f64::from(j as u32 == current) + (1.0 - ratio) * uniform;
                let backward = clean_s * p + (1.0 - clean_s) * uniform;
                forward * backward
            })
            .collect();
        let total: f64 = weights.iter().sum();
        if total > 0.0 {
            weights.iter_mut().for_each(|w| *w /= total);
        }
        weights
    }
}

fn draw(distribution: &[f64], rng: &mut StdRng) -> usize {
    let u: f64 = rng.random();
    let mut cumulative = 0.0;
    for (i, &p) in distribution.iter().enumerate() {
        cumulative += p;
        if u < cumulative {
            return i;
        }
    }
    distribution.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

impl Sampler for AncestralSampler {
    fn name(&self) -> &'static str {
        match self.process {
            UniformProcess::Cosine { .. } => "uniform",
            UniformProcess::Gaussian(_) => "duo",
        }
    }

    fn run(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport> {
        if self.steps == 0 {
            return Err(FlowError::argument("--steps", "must be at least 1"));
        }
        if let UniformProcess::Cosine { total_steps } = self.process
            && self.steps > total_steps
        {
            return Err(FlowError::argument(
                "--steps",
                format!(
                    "{} is more than the model's T = {total_steps} diffusion steps",
                    self.steps
                ),
            ));
        }
        // The process starts from pure noise: masked slots become random tokens.
        for row in 0..canvas.batch() {
            for column in canvas.response_start..canvas.width() {
                if canvas.is_masked(row, column) {
                    canvas.rows[row][column] = self.vocabulary.random_token(rng);
                }
            }
        }
        let tokens = self.vocabulary.regular_count();
        let times = self.times();
        let mut report = SamplerReport::default();
        for step in 0..self.steps {
            let (t, s) = (times[step], times[step + 1]);
            let time = vec![t as f32; canvas.batch()];
            let logits = predict(denoiser, canvas, Some(&time))?;
            report.forward_passes += 1;
            let (clean_t, clean_s) = (
                self.process.clean_probability(t, tokens),
                self.process.clean_probability(s, tokens),
            );
            let last = step + 1 == self.steps;
            let mut event = StepEvent {
                step,
                changes: Vec::new(),
            };
            for row in 0..canvas.batch() {
                for column in canvas.response_start..canvas.width() {
                    let values = logits.at(row, column);
                    let token = if last && self.greedy_last_step {
                        argmax(values).0
                    } else if last {
                        draw(&self.prediction(values), rng)
                    } else {
                        let current = canvas.rows[row][column];
                        let posterior =
                            self.posterior(&self.prediction(values), current, clean_t, clean_s);
                        draw(&posterior, rng)
                    } as u32;
                    if token != canvas.rows[row][column] {
                        let confidence = softmax(values)[token as usize];
                        commit(canvas, &mut event, row, column, token, confidence);
                    }
                }
            }
            report.steps += 1;
            observer(&event, canvas);
        }
        Ok(report)
    }
}

impl AncestralSampler {
    fn times(&self) -> Vec<f64> {
        self.process.times(self.steps)
    }
}
