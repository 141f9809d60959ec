//! Seed 001's `iter_mask_decode`: each step commits exactly one token per row -- the masked
//! position whose top probability is highest, with its argmax token.

use super::{Observer, Sampler, SamplerReport, StepEvent, commit};
use crate::canvas::Canvas;
use crate::error::Result;
use crate::model::Denoiser;
use crate::random::StdRng;

#[derive(Debug, Clone, Default)]
pub struct GreedySampler;

impl Sampler for GreedySampler {
    fn name(&self) -> &'static str {
        "greedy"
    }

    fn revises(&self) -> bool {
        false
    }

    fn run(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        _rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport> {
        let mut report = SamplerReport::default();
        loop {
            if (0..canvas.batch()).all(|r| canvas.masked_count(r) == 0) {
                return Ok(report);
            }
            let choices = denoiser.top_choices(canvas, None, canvas.mask_id)?;
            report.forward_passes += 1;
            let mut event = StepEvent {
                step: report.steps,
                changes: Vec::new(),
            };
            for row in 0..canvas.batch() {
                let mut best: Option<(usize, u32, f64)> = None;
                for column in canvas.response_start..canvas.width() {
                    if !canvas.is_masked(row, column) {
                        continue;
                    }
                    let (token, confidence) = choices.at(row, column);
                    if best.is_none_or(|b| confidence > b.2) {
                        best = Some((column, token, confidence));
                    }
                }
                if let Some((column, token, confidence)) = best {
                    commit(canvas, &mut event, row, column, token, confidence);
                }
            }
            report.steps += 1;
            observer(&event, canvas);
        }
    }
}
