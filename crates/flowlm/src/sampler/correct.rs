//! FlowLM's `correct` sampler (seed 000): every step predicts all positions. Masked slots are
//! filled by confidence as in LLaDA (enough per step to finish within the budget), and any filled
//! token the model no longer trusts is replaced: its own probability fell below
//! `edit_threshold`, or a different token is predicted with more than `accept_threshold`. The run
//! stops when a step changes nothing or the budget ends. Revisions are reported as
//! `ChangeKind::Revised`, so the live view shows corrections happening.
//!
//! [`Revision::Remask`] is a variant of the replacement: a distrusted token goes back to the mask
//! and is refilled by the fill rule on a later step. A model trained with substitutions keeps a
//! strong prior that a visible token is right, so its prediction at a wrong visible token leans
//! towards that token; from a mask it predicts from the context alone, and refilling one slot at a
//! time lets neighbouring corrections see each other.

use super::{Observer, Sampler, SamplerReport, StepEvent, commit, gumbel_argmax, predict};
use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::{Denoiser, softmax};
use crate::random::StdRng;
use crate::vocabulary::Vocabulary;
use rand::Rng;

/// What the response slots start as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Initialization {
    /// Leave masked slots masked.
    Mask,
    /// Every masked slot becomes a random ordinary token.
    Random,
    /// Each masked slot becomes a random token with probability `random_share`.
    Mixed { random_share: f64 },
}

impl Initialization {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "mask" => Ok(Initialization::Mask),
            "random" => Ok(Initialization::Random),
            "mixed" => Ok(Initialization::Mixed { random_share: 0.5 }),
            other => Err(FlowError::argument(
                "--init",
                format!("`{other}` is not one of mask, random, mixed"),
            )),
        }
    }

    /// Applies this initialization to the masked response slots of `canvas`.
    pub fn apply(&self, canvas: &mut Canvas, vocabulary: &Vocabulary, rng: &mut StdRng) {
        let share = match *self {
            Initialization::Mask => return,
            Initialization::Random => 1.0,
            Initialization::Mixed { random_share } => random_share,
        };
        for row in 0..canvas.batch() {
            for column in canvas.response_start..canvas.width() {
                if canvas.is_masked(row, column) && rng.random::<f64>() < share {
                    canvas.rows[row][column] = vocabulary.random_token(rng);
                }
            }
        }
    }
}

/// What happens to a filled token the model no longer trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revision {
    /// Replaced by the model's prediction at once (ALGORITHMS.md's rule).
    #[default]
    Replace,
    /// Masked, then refilled from the context by the fill rule on a later step; on the budget's
    /// last step it is replaced instead, so no slot ends masked.
    Remask,
}

impl Revision {
    pub const NAMES: [&'static str; 2] = ["replace", "remask"];

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "replace" => Ok(Revision::Replace),
            "remask" => Ok(Revision::Remask),
            other => Err(FlowError::argument(
                "--revision",
                format!("`{other}` is not one of replace, remask"),
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CorrectSampler {
    /// Step budget.
    pub steps: usize,
    /// Replace a filled token whose own probability is below this.
    pub edit_threshold: f64,
    /// Replace a filled token when another token is predicted above this.
    pub accept_threshold: f64,
    /// Temperature of the tokens that fill masked slots (0 = argmax).
    pub temperature: f64,
    pub initialization: Initialization,
    pub revision: Revision,
    pub vocabulary: Vocabulary,
}

impl CorrectSampler {
    pub fn new(steps: usize, vocabulary: Vocabulary) -> Self {
        Self {
            steps,
            edit_threshold: 0.3,
            accept_threshold: 0.9,
            temperature: 0.0,
            initialization: Initialization::Mask,
            revision: Revision::Replace,
            vocabulary,
        }
    }

    /// Whether the filled `current` token should be replaced, and by what.
    pub fn replacement(&self, probabilities: &[f64], current: u32) -> Option<(u32, f64)> {
        let (best, best_probability) =
            probabilities
                .iter()
                .enumerate()
                .fold((0usize, f64::NEG_INFINITY), |b, (i, &p)| {
                    if p > b.1 { (i, p) } else { b }
                });
        let own = probabilities.get(current as usize).copied().unwrap_or(0.0);
        let distrusted = own < self.edit_threshold || best_probability > self.accept_threshold;
        (best as u32 != current && distrusted).then_some((best as u32, best_probability))
    }
}

impl Sampler for CorrectSampler {
    fn name(&self) -> &'static str {
        "correct"
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
        self.initialization.apply(canvas, &self.vocabulary, rng);
        let mut report = SamplerReport::default();
        for step in 0..self.steps {
            let logits = predict(denoiser, canvas, None)?;
            report.forward_passes += 1;
            let mut event = StepEvent {
                step,
                changes: Vec::new(),
            };
            let remaining = self.steps - step;
            let remask = self.revision == Revision::Remask && remaining > 1;
            for row in 0..canvas.batch() {
                let (masked, filled): (Vec<usize>, Vec<usize>) = (canvas.response_start
                    ..canvas.width())
                    .partition(|&c| canvas.is_masked(row, c));
                // Revisions first, judged on the canvas the model saw.
                for column in filled {
                    let probabilities = softmax(logits.at(row, column));
                    if let Some((token, confidence)) =
                        self.replacement(&probabilities, canvas.rows[row][column])
                    {
                        let token = if remask { canvas.mask_id } else { token };
                        commit(canvas, &mut event, row, column, token, confidence);
                    }
                }
                // Fill ceil(masked / steps left) slots, most confident first.
                let quota = masked.len().div_ceil(remaining);
                let mut candidates: Vec<(usize, u32, f64)> = masked
                    .iter()
                    .map(|&column| {
                        let values = logits.at(row, column);
                        let token = gumbel_argmax(values, self.temperature, rng);
                        (column, token as u32, softmax(values)[token])
                    })
                    .collect();
                candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
                for &(column, token, confidence) in candidates.iter().take(quota) {
                    commit(canvas, &mut event, row, column, token, confidence);
                }
            }
            report.steps += 1;
            let unchanged = event.changes.is_empty();
            observer(&event, canvas);
            if unchanged {
                break;
            }
        }
        Ok(report)
    }
}
