//! Left-to-right decoding for the autoregressive baseline (a causal `DiffusionTransformer`
//! trained on next-token prediction): slot j takes the prediction made at position j - 1.
//! One forward pass per token; no KV cache, as the baseline only has to be correct.

use super::{Observer, Sampler, SamplerReport, StepEvent, commit, gumbel_argmax, predict};
use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::{Denoiser, softmax};
use crate::random::StdRng;

#[derive(Debug, Clone, Default)]
pub struct AutoregressiveSampler {
    /// 0 = greedy.
    pub temperature: f64,
}

impl Sampler for AutoregressiveSampler {
    fn name(&self) -> &'static str {
        "autoregressive"
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
        if canvas.response_start == 0 || canvas.padding.iter().any(|&p| p >= canvas.response_start)
        {
            return Err(FlowError::argument(
                "--prompt",
                "autoregressive decoding needs a non-empty prompt in every row",
            ));
        }
        let mut report = SamplerReport::default();
        for column in canvas.response_start..canvas.width() {
            let logits = predict(denoiser, canvas, None)?;
            report.forward_passes += 1;
            let mut event = StepEvent {
                step: report.steps,
                changes: Vec::new(),
            };
            for row in 0..canvas.batch() {
                let values = logits.at(row, column - 1);
                let token = gumbel_argmax(values, self.temperature, rng);
                let confidence = softmax(values)[token];
                commit(canvas, &mut event, row, column, token as u32, confidence);
            }
            report.steps += 1;
            observer(&event, canvas);
        }
        Ok(report)
    }
}
