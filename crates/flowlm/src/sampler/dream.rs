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
//! that distribution, as Dream reads them. The schedule's arithmetic is done in f32, as Dream's
//! tensors do it, so the truncation lands where Dream's does.
//!
//! Unlike Dream, the mask token itself is never predicted (every FlowLM sampler forbids it). For
//! Dream's checkpoints the difference is moot, since they never rank the mask first.

use super::sampling::{draw, filtered_distribution};
use super::{Observer, Sampler, SamplerReport, StepEvent, commit, predict};
use crate::canvas::Canvas;
use crate::error::Result;
use crate::model::Denoiser;
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

    /// A sampled token for one slot and its confidence, from the slot's logits: drawn from the
    /// filtered distribution (temperature > 0), ranked on that distribution.
    fn choose(&self, logits: &[f32], rng: &mut StdRng) -> (u32, f64) {
        let distribution = filtered_distribution(logits, self.temperature, self.top_k, self.top_p);
        // The two largest probabilities, the first of equals winning (as the argmax does).
        let (mut first, mut second) = ((0, f64::NEG_INFINITY), 0.0);
        for &(token, p) in &distribution {
            if p > first.1 {
                second = first.1.max(0.0);
                first = (token, p);
            } else if p > second {
                second = p;
            }
        }
        let (token, probability) = distribution[draw(&distribution, rng)];
        let confidence = match self.confidence {
            DreamConfidence::Probability => probability,
            DreamConfidence::Margin => first.1 - second,
            DreamConfidence::NegativeEntropy => distribution
                .iter()
                .map(|&(_, p)| p * (p + 1e-10).ln())
                .sum(),
        };
        (token as u32, confidence)
    }
}

/// A step's prediction: full host logits when sampling, device-computed rankings at 0.
enum Prediction {
    Logits(crate::model::Logits),
    Ranked(crate::model::RankedChoices),
}

impl DreamSampler {
    /// The argmax and its confidence at temperature 0, from a slot's (token, probability,
    /// second probability, negative entropy).
    fn rank(
        &self,
        (token, probability, second, negative_entropy): (u32, f64, f64, f64),
    ) -> (u32, f64) {
        let confidence = match self.confidence {
            DreamConfidence::Probability => probability,
            DreamConfidence::Margin => probability - second,
            DreamConfidence::NegativeEntropy => negative_entropy,
        };
        (token, confidence)
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
        for step in 0..self.steps {
            if (0..canvas.batch()).all(|r| canvas.masked_count(r) == 0) {
                break;
            }
            // At temperature 0 the rankings need [batch, columns] figures, computed where the
            // logits are; sampling draws from the filtered distribution on the host.
            let columns = canvas.response_start..canvas.width();
            let prediction = if self.temperature > 0.0 {
                Prediction::Logits(predict(denoiser, canvas, None)?)
            } else {
                Prediction::Ranked(denoiser.ranked_choices_in(
                    canvas,
                    columns.clone(),
                    canvas.mask_id,
                )?)
            };
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
                        let (token, confidence) = match &prediction {
                            Prediction::Logits(logits) => self.choose(logits.at(row, column), rng),
                            Prediction::Ranked(ranked) => self.rank(ranked.at(row, column)),
                        };
                        (column, token, confidence)
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
            let mut dream = sampler(4);
            let slot = ranked.at(0, 0);
            dream.confidence = DreamConfidence::Probability;
            let (token, p) = dream.rank(slot);
            assert_eq!(token, 0);
            assert!((p - probabilities[0]).abs() < 1e-6);
            dream.confidence = DreamConfidence::Margin;
            let (_, margin) = dream.rank(slot);
            assert!((margin - (probabilities[0] - probabilities[1])).abs() < 1e-6);
            dream.confidence = DreamConfidence::NegativeEntropy;
            let (_, negative_entropy) = dream.rank(slot);
            assert!((negative_entropy - expected_entropy).abs() < 1e-6);
        }
    }
}
