//! LLaDA's `generate`: semi-autoregressive blocks, a fixed number of commits per step, low-
//! confidence or random remasking, classifier-free guidance, and Gumbel-max in float64.

use super::{Observer, Sampler, SamplerReport, StepEvent, commit, gumbel_argmax, predict};
use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::{Denoiser, Logits, TopChoices, softmax};
use crate::random::StdRng;
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remasking {
    /// Keep the most confident predictions (softmax at the candidate, untempered).
    #[default]
    LowConfidence,
    /// Keep predictions in a random order.
    Random,
}

#[derive(Debug, Clone)]
pub struct LladaSampler {
    pub steps: usize,
    pub block_length: usize,
    pub temperature: f64,
    pub remasking: Remasking,
    pub cfg_scale: f64,
    /// Gives these predicted tokens -inf confidence (the intent of the reference's EOS/EoT
    /// suppression, which there only acts when T > 0; here it always acts). They are still
    /// committed when nothing else is left in the block.
    pub suppress_tokens: Vec<u32>,
}

impl Default for LladaSampler {
    fn default() -> Self {
        Self {
            steps: 128,
            block_length: 128,
            temperature: 0.0,
            remasking: Remasking::LowConfidence,
            cfg_scale: 0.0,
            suppress_tokens: Vec::new(),
        }
    }
}

/// What one step read from the denoiser.
enum StepPrediction {
    Top(TopChoices),
    Logits(Logits),
}

/// Commits per step for M masked slots over s steps: floor(M / s) + [i < M mod s].
pub fn commit_schedule(masked: usize, steps: usize) -> Vec<usize> {
    (0..steps)
        .map(|i| masked / steps + usize::from(i < masked % steps))
        .collect()
}

impl LladaSampler {
    /// (blocks, steps per block), or a clear error when the divisions are not exact.
    pub fn plan(&self, gen_length: usize) -> Result<(usize, usize)> {
        if gen_length == 0 {
            return Err(FlowError::argument("--gen-length", "must be at least 1"));
        }
        if self.block_length == 0 || !gen_length.is_multiple_of(self.block_length) {
            return Err(FlowError::argument(
                "--block-length",
                format!(
                    "gen_length {gen_length} must be a multiple of block_length {} (LLaDA splits the answer into equal blocks)",
                    self.block_length
                ),
            ));
        }
        let blocks = gen_length / self.block_length;
        if self.steps == 0 || !self.steps.is_multiple_of(blocks) {
            return Err(FlowError::argument(
                "--steps",
                format!(
                    "steps {} must be a positive multiple of the number of blocks {blocks} (gen_length / block_length)",
                    self.steps
                ),
            ));
        }
        Ok((blocks, self.steps / blocks))
    }

    /// At temperature 0 without guidance a step needs only each slot's argmax and its
    /// probability (random remasking draws its order on the host either way), which the
    /// denoiser computes on its device.
    fn needs_only_top_choices(&self) -> bool {
        self.temperature <= 0.0 && self.cfg_scale <= 0.0
    }

    /// This step's prediction: top choices, or full logits when sampling needs them.
    fn predict_step(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &Canvas,
    ) -> Result<(StepPrediction, usize)> {
        if self.needs_only_top_choices() {
            let choices = denoiser.top_choices(canvas, None, canvas.mask_id)?;
            return Ok((StepPrediction::Top(choices), 1));
        }
        let (logits, passes) = self.guided_logits(denoiser, canvas)?;
        Ok((StepPrediction::Logits(logits), passes))
    }

    fn guided_logits(&self, denoiser: &dyn Denoiser, canvas: &Canvas) -> Result<(Logits, usize)> {
        let conditional = predict(denoiser, canvas, None)?;
        // The conditional side has the mask forbidden (-inf); that column is kept as is below
        // rather than mixed, which would give NaN.
        if self.cfg_scale <= 0.0 {
            return Ok((conditional, 1));
        }
        let unconditional = denoiser.logits(&canvas.with_prompt_masked(), None)?;
        let w = self.cfg_scale as f32;
        let mut guided = conditional;
        for (c, u) in guided.values.iter_mut().zip(&unconditional.values) {
            if c.is_finite() {
                *c = u + (w + 1.0) * (*c - u);
            }
        }
        Ok((guided, 2))
    }
}

impl Sampler for LladaSampler {
    fn name(&self) -> &'static str {
        "llada"
    }

    fn run(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport> {
        let (blocks, steps_per_block) = self.plan(canvas.response_length())?;
        let mut report = SamplerReport::default();
        for block in 0..blocks {
            let start = canvas.response_start + block * self.block_length;
            let end = start + self.block_length;
            let schedules: Vec<Vec<usize>> = (0..canvas.batch())
                .map(|row| {
                    let masked = (start..end).filter(|&c| canvas.is_masked(row, c)).count();
                    commit_schedule(masked, steps_per_block)
                })
                .collect();
            for step in 0..steps_per_block {
                let (prediction, passes) = self.predict_step(denoiser, canvas)?;
                report.forward_passes += passes;
                let mut event = StepEvent {
                    step: report.steps,
                    changes: Vec::new(),
                };
                for (row, schedule) in schedules.iter().enumerate() {
                    // Candidates: masked slots of the current block only; everything else
                    // has confidence -inf in the reference and is never committed here.
                    let mut candidates: Vec<(usize, u32, f64, f64)> = Vec::new();
                    for column in start..end {
                        if !canvas.is_masked(row, column) {
                            continue;
                        }
                        let (token, probability) = match &prediction {
                            StepPrediction::Top(choices) => {
                                let (token, probability) = choices.at(row, column);
                                (token as usize, probability)
                            }
                            StepPrediction::Logits(logits) => {
                                let l = logits.at(row, column);
                                let token = gumbel_argmax(l, self.temperature, rng);
                                (token, softmax(l)[token])
                            }
                        };
                        let mut confidence = match self.remasking {
                            Remasking::LowConfidence => probability,
                            Remasking::Random => rng.random::<f64>(),
                        };
                        if self.suppress_tokens.contains(&(token as u32)) {
                            confidence = f64::NEG_INFINITY;
                        }
                        candidates.push((column, token as u32, confidence, probability));
                    }
                    candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
                    for &(column, token, _, probability) in candidates.iter().take(schedule[step]) {
                        commit(canvas, &mut event, row, column, token, probability);
                    }
                }
                report.steps += 1;
                observer(&event, canvas);
            }
        }
        Ok(report)
    }
}
