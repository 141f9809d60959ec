//! Seed 001's `iter_mask_decode`: each step commits exactly one token per row -- the masked
//! position whose top probability is highest, with its argmax token.

use super::{Observer, Sampler, SamplerReport, StepEvent, commit, predict};
use crate::canvas::Canvas;
use crate::error::Result;
use crate::model::{Denoiser, argmax, softmax};
use crate::random::StdRng;

#[derive(Debug, Clone, Default)]
pub struct GreedySampler;

impl Sampler for GreedySampler {
    fn name(&self) -> &'static str {
        "greedy"
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
            let logits = predict(denoiser, canvas, None)?;
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
                    let l = logits.at(row, column);
                    let (token, _) = argmax(l);
                    let confidence = softmax(l)[token];
                    if best.is_none_or(|b| confidence > b.2) {
                        best = Some((column, token as u32, confidence));
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
