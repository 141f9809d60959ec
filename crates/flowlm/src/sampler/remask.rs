//! Seed 004's sampler: each round fills every masked slot by sampling (temperature, top-k,
//! top-p); on every round but the last, a `remask_ratio` share of the response goes back to the
//! mask (least confident first, or at random) to be predicted again.

use super::sampling::filtered_choices;
use super::{Observer, Sampler, SamplerReport, StepEvent, commit};
use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::Denoiser;
use crate::model::filtered::Filter;
use crate::random::{StdRng, permutation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemaskOrder {
    LowestConfidence,
    Random,
}

#[derive(Debug, Clone)]
pub struct RemaskSampler {
    pub steps: usize,
    pub remask_ratio: f64,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    pub order: RemaskOrder,
}

impl Default for RemaskSampler {
    fn default() -> Self {
        Self {
            steps: 10,
            remask_ratio: 0.5,
            temperature: 0.8,
            top_k: 50,
            top_p: 0.9,
            order: RemaskOrder::LowestConfidence,
        }
    }
}

impl RemaskSampler {
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(FlowError::argument("--steps", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.remask_ratio) {
            return Err(FlowError::argument("--remask-ratio", "must be in [0, 1)"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(FlowError::argument("--top-p", "must be in (0, 1]"));
        }
        Ok(())
    }
}

impl Sampler for RemaskSampler {
    fn name(&self) -> &'static str {
        "remask"
    }

    fn run(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport> {
        self.validate()?;
        let length = canvas.response_length();
        let mut confidence = vec![vec![0.0f64; length]; canvas.batch()];
        let mut report = SamplerReport::default();
        let filter = Filter {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        };
        let columns = canvas.response_start..canvas.width();
        for round in 0..self.steps {
            let choices = filtered_choices(denoiser, canvas, columns.clone(), &filter, rng)?;
            report.forward_passes += 1;
            let mut event = StepEvent {
                step: report.steps,
                changes: Vec::new(),
            };
            for (row, row_confidence) in confidence.iter_mut().enumerate() {
                for column in columns.clone() {
                    if !canvas.is_masked(row, column) {
                        continue;
                    }
                    let choice = choices.at(row, column);
                    row_confidence[column - canvas.response_start] = choice.probability;
                    commit(
                        canvas,
                        &mut event,
                        row,
                        column,
                        choice.token,
                        choice.probability,
                    );
                }
                if round + 1 < self.steps {
                    let count = ((self.remask_ratio * length as f64).round() as usize).min(length);
                    let order: Vec<usize> = match self.order {
                        RemaskOrder::Random => permutation(length, rng),
                        RemaskOrder::LowestConfidence => {
                            let mut o: Vec<usize> = (0..length).collect();
                            o.sort_by(|&a, &b| {
                                row_confidence[a]
                                    .total_cmp(&row_confidence[b])
                                    .then(a.cmp(&b))
                            });
                            o
                        }
                    };
                    for &position in order.iter().take(count) {
                        let mask = canvas.mask_id;
                        commit(
                            canvas,
                            &mut event,
                            row,
                            canvas.response_start + position,
                            mask,
                            row_confidence[position],
                        );
                    }
                }
            }
            report.steps += 1;
            observer(&event, canvas);
        }
        Ok(report)
    }
}
