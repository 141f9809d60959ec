//! The `Denoiser` concept: a noisy canvas (optionally a time t) -> logits at every position.
//! Samplers see only this trait, so a test double with fixed logits can drive any of them.

mod diffusion_transformer;
pub mod families;
mod initialization;
pub mod open;
pub mod saved;
pub mod saved_defaults;
pub mod weights;
pub use initialization::seeded_init;

pub use diffusion_transformer::{
    Activation, DenoiserInput, DiffusionTransformer, DiffusionTransformerConfig, NormKind,
    PositionEncoding, default_positions,
};
pub use saved::{FlowlmMetadata, ModelDenoiser, SavedModel, stable_parameter_ids};

use crate::canvas::Canvas;
use crate::error::Result;

/// Logits on the host, `[batch, length, vocab]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub batch: usize,
    pub length: usize,
    pub vocab: usize,
    pub values: Vec<f32>,
}

impl Logits {
    pub fn at(&self, row: usize, position: usize) -> &[f32] {
        let start = (row * self.length + position) * self.vocab;
        &self.values[start..start + self.vocab]
    }

    /// Makes `token` unpredictable everywhere (samplers must never write the mask token).
    pub fn forbid(&mut self, token: u32) {
        let token = token as usize;
        if token < self.vocab {
            for chunk in self.values.chunks_mut(self.vocab) {
                chunk[token] = f32::NEG_INFINITY;
            }
        }
    }

    pub fn at_mut(&mut self, row: usize, position: usize) -> &mut [f32] {
        let start = (row * self.length + position) * self.vocab;
        &mut self.values[start..start + self.vocab]
    }
}

/// Per slot of a canvas, the most probable token (the mask token excluded) and its softmax
/// probability over the whole vocabulary; `[batch, length]` row-major. Everything a
/// temperature-0 confidence sampler (LLaDA low-confidence, greedy) reads from a step.
#[derive(Debug, Clone, PartialEq)]
pub struct TopChoices {
    pub length: usize,
    pub tokens: Vec<u32>,
    pub probabilities: Vec<f64>,
}

impl TopChoices {
    /// (token, probability) at `row`, `position`.
    pub fn at(&self, row: usize, position: usize) -> (u32, f64) {
        let i = row * self.length + position;
        (self.tokens[i], self.probabilities[i])
    }

    /// The same figures computed on the host from full logits (the mask column already
    /// forbidden): first maximum on ties, softmax in f64.
    pub fn from_logits(logits: &Logits) -> Self {
        let slots = logits.batch * logits.length;
        let mut tokens = Vec::with_capacity(slots);
        let mut probabilities = Vec::with_capacity(slots);
        for slot in logits.values.chunks(logits.vocab) {
            let (token, _) = argmax(slot);
            tokens.push(token as u32);
            probabilities.push(softmax(slot)[token]);
        }
        Self {
            length: logits.length,
            tokens,
            probabilities,
        }
    }
}

/// The network as samplers see it.
pub trait Denoiser {
    fn vocab_size(&self) -> usize;
    /// Logits for every slot of every canvas row. `time` (one per row, 1 = all noise) is
    /// passed to models with a time embedding and ignored by the others.
    fn logits(&self, canvas: &Canvas, time: Option<&[f32]>) -> Result<Logits>;

    /// [`TopChoices`] for every slot with `forbidden` (the mask token) never chosen. The default
    /// reads the full host logits; a model computes it on its device, so that only `[batch,
    /// length]` values reach the host instead of `[batch, length, vocab]`.
    fn top_choices(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
        forbidden: u32,
    ) -> Result<TopChoices> {
        let mut logits = self.logits(canvas, time)?;
        logits.forbid(forbidden);
        Ok(TopChoices::from_logits(&logits))
    }

    /// The input embedding matrix `[vocab, hidden]` row-major, and `hidden`, for samplers that
    /// work in embedding space (x-prediction flow). `None` when the denoiser has none.
    fn embedding_table(&self) -> Option<(Vec<f32>, usize)> {
        None
    }

    /// Logits when the response slots are given as embeddings (`[batch, response, hidden]`)
    /// instead of tokens; prompt slots still read their tokens.
    fn logits_from_embeddings(&self, canvas: &Canvas, response: &[f32]) -> Result<Logits> {
        let _ = (canvas, response);
        Err(crate::error::FlowError::Unsupported(
            "this denoiser cannot read embeddings".into(),
        ))
    }
}

/// Softmax of one row of logits, in f64 for stable confidences.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut out: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = out.iter().sum();
    out.iter_mut().for_each(|p| *p /= sum);
    out
}

/// Index and value of the largest entry (first one on ties).
pub fn argmax(values: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}
