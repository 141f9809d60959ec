//! Dream's decoding (`diffusion_generate` in Dream's `generation_utils.py`, with its confidence
//! algorithms `maskgit_plus`, `topk_margin` and `entropy`). There are no blocks: every masked
//! slot of the answer competes at every step. Over the times t_i = 1 - i (1 - eps) / steps,
//! step i commits floor(M (1 - t_{i+1} / t_i)) of the row's M masked slots, and the last step
//! commits all that are left.
//!
//! The slots committed are the most confident ones. Confidence is one of:
//! - the chosen token's probability (`maskgit_plus`);
//! - the margin between the two most probable tokens (`topk_margin`);
//! - the prediction's negative entropy, sum p ln(p + 1e-10) (`entropy`, Dream's recommendation).
//!
//! At temperature 0 the token is the argmax of softmax(logits). Above it, the token is drawn from
//! the temperature-, top-k- and top-p-filtered distribution, and the confidences are read from
//! that distribution, as Dream reads them. Both are computed where the logits are
//! ([`crate::model::filtered`]). The schedule's arithmetic is done in f32, as Dream's
//! tensors do it, so the truncation lands where Dream's does.
//!
//! Unlike Dream, the mask token itself is never predicted (every FlowLM sampler forbids it). For
//! Dream's checkpoints the difference is moot, since they never rank the mask first.

use super::sampling::filtered_choices;
use super::{Observer, Sampler, SamplerReport, StepEvent, commit};
use crate::canvas::Canvas;
use crate::error::Result;
use crate::model::Denoiser;
use crate::model::filtered::{Filter, FilteredChoice};
use crate::random::StdRng;

/// How Dream ranks the masked slots (its `alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DreamConfidence {
    /// `maskgit_plus`: the chosen token's probability.
    Probability,
    /// `topk_margin`: top-1 minus top-2 probability.
    Margin,
    /// `entropy`: the negative entropy of the prediction.
    #[default]
    NegativeEntropy,
}

impl DreamConfidence {
    /// Dream's names for them (`alg`).
    pub const NAMES: [&'static str; 3] = ["maskgit_plus", "topk_margin", "entropy"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "maskgit_plus" => Some(Self::Probability),
            "topk_margin" => Some(Self::Margin),
            "entropy" => Some(Self::NegativeEntropy),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DreamSampler {
    pub steps: usize,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    pub confidence: DreamConfidence,
}

/// Dream's final time (`eps` in its generation config).
const EPS: f32 = 1e-3;

impl DreamSampler {
    /// How many of `masked` slots step `step` commits. The arithmetic runs in f32, as Dream's
    /// tensors do: `torch.linspace(1, eps, steps + 1)` fills the first half of the points as
    /// start + i * delta and the second half as end - (steps - i) * delta.
    fn commits(&self, step: usize, masked: usize) -> usize {
        if step + 1 >= self.steps {
            return masked;
        }
        let delta = (EPS - 1.0) / self.steps as f32;
        let points = self.steps + 1;
        let time = |i: usize| {
            if i < points / 2 {
                1.0 + delta * i as f32
            } else {
                EPS - delta * (self.steps - i) as f32
            }
        };
        let share = 1.0 - time(step + 1) / time(step);
        (masked as f32 * share) as usize
    }

    /// The slot's confidence under this ranking.
    fn confidence(&self, choice: &FilteredChoice) -> f64 {
        match self.confidence {
            DreamConfidence::Probability => choice.filtered_probability,
            DreamConfidence::Margin => choice.margin,
            DreamConfidence::NegativeEntropy => choice.negative_entropy,
        }
    }
}

impl Sampler for DreamSampler {
    fn name(&self) -> &'static str {
        "dream"
    }

    fn revises(&self) -> bool {
        false
    }

    fn run(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport> {
        let mut report = SamplerReport::default();
        let filter = Filter {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        };
        let columns = canvas.response_start..canvas.width();
        for step in 0..self.steps {
            if (0..canvas.batch()).all(|r| canvas.masked_count(r) == 0) {
                break;
            }
            let choices = filtered_choices(denoiser, canvas, columns.clone(), &filter, rng)?;
            report.forward_passes += 1;
            let mut event = StepEvent {
                step,
                changes: Vec::new(),
            };
            for row in 0..canvas.batch() {
                let mut candidates: Vec<(usize, u32, f64)> = columns
                    .clone()
                    .filter(|&column| canvas.is_masked(row, column))
                    .map(|column| {
                        let choice = choices.at(row, column);
                        (column, choice.token, self.confidence(&choice))
                    })
                    .collect();
                let count = self.commits(step, candidates.len());
                // Most confident first; among equals the leftmost, as a stable order.
                candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
                for &(column, token, confidence) in candidates.iter().take(count) {
                    commit(canvas, &mut event, row, column, token, confidence);
                }
            }
            report.steps += 1;
            observer(&event, canvas);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(steps: usize) -> DreamSampler {
        DreamSampler {
            steps,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            confidence: DreamConfidence::Probability,
        }
    }

    /// Dream's schedules, computed with its formula in PyTorch (float32 `linspace`, then
    /// `int(M * (1 - s / t))` of the masks left, all at the last step).
    #[test]
    fn the_commit_schedule_is_dreams() {
        let schedule = |steps: usize, mut masked: usize| {
            let dream = sampler(steps);
            (0..steps)
                .map(|step| {
                    let n = dream.commits(step, masked);
                    masked -= n;
                    n
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(schedule(8, 16), [1, 2, 2, 2, 2, 2, 2, 3]);
        assert_eq!(schedule(5, 7), [1, 1, 1, 1, 3]);
        let long = schedule(64, 64);
        assert_eq!(long[0], 0);
        assert!(long[1..63].iter().all(|&n| n == 1));
        assert_eq!(long[63], 2);
    }

    /// Each ranking reads its definition at temperature 0, from rankings computed on the host
    /// and on the device alike (the forbidden token, here 3, at probability 0).
    #[test]
    fn confidences_follow_their_definitions() {
        use crate::model::{Logits, RankedChoices};
        let values = vec![2.0f32, 1.0, 0.0, 9.0];
        let probabilities: Vec<f64> = {
            let e: Vec<f64> = values[..3].iter().map(|&l| (l as f64).exp()).collect();
            let total: f64 = e.iter().sum();
            e.iter().map(|v| v / total).collect()
        };
        let mut logits = Logits {
            batch: 1,
            length: 1,
            vocab: 4,
            values: values.clone(),
        };
        logits.forbid(3);
        let device = burn::tensor::Device::flex();
        let tensor = burn::tensor::Tensor::<3>::from_data(
            burn::tensor::TensorData::new(values, [1, 1, 4]),
            &device,
        );
        let on_host = RankedChoices::from_logits(&logits);
        let on_device = RankedChoices::on_device(tensor, 3, 0).unwrap();
        let expected_entropy: f64 = probabilities.iter().map(|p| p * (p + 1e-10).ln()).sum();
        for ranked in [on_host, on_device] {
            let choice = crate::model::filtered::FilteredChoices::from(ranked).at(0, 0);
            let mut dream = sampler(4);
            assert_eq!(choice.token, 0);
            dream.confidence = DreamConfidence::Probability;
            assert!((dream.confidence(&choice) - probabilities[0]).abs() < 1e-6);
            dream.confidence = DreamConfidence::Margin;
            let margin = probabilities[0] - probabilities[1];
            assert!((dream.confidence(&choice) - margin).abs() < 1e-6);
            dream.confidence = DreamConfidence::NegativeEntropy;
            assert!((dream.confidence(&choice) - expected_entropy).abs() < 1e-6);
        }
    }
}
