//! The `Denoiser` concept: a noisy canvas (optionally a time t) -> logits at every position.
//! Samplers see only this trait, so a test double with fixed logits can drive any of them.

mod diffusion_transformer;
pub mod families;
pub mod filtered;
pub mod fused;
mod initialization;
pub mod kv_cache;
pub mod open;
pub mod sampled;
pub mod saved;
pub mod saved_defaults;
mod trainable;
pub mod weights;
pub use initialization::seeded_init;

pub use diffusion_transformer::{
    Activation, DenoiserInput, DiffusionTransformer, DiffusionTransformerConfig, NormKind,
    PositionEncoding, default_positions,
};
pub use kv_cache::{CacheMode, CachePass, KvCache};
pub use saved::{FlowlmMetadata, ModelDenoiser, SavedModel, stable_parameter_ids};
pub use trainable::LossModel;

use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use burn::tensor::{Tensor, TensorData};
use std::ops::Range;

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

    /// The logits of canvas `columns` only, `[batch, columns, vocab]`.
    pub fn columns(&self, columns: Range<usize>) -> Result<Self> {
        if columns.is_empty() || columns.end > self.length {
            return Err(FlowError::argument(
                "columns",
                format!("{columns:?} is not inside the {} columns", self.length),
            ));
        }
        let mut values = Vec::with_capacity(self.batch * columns.len() * self.vocab);
        for row in 0..self.batch {
            for column in columns.clone() {
                values.extend_from_slice(self.at(row, column));
            }
        }
        Ok(Self {
            batch: self.batch,
            length: columns.len(),
            vocab: self.vocab,
            values,
        })
    }

    pub fn at_mut(&mut self, row: usize, position: usize) -> &mut [f32] {
        let start = (row * self.length + position) * self.vocab;
        &mut self.values[start..start + self.vocab]
    }
}

/// Per slot of a canvas (or of the columns `first_column..first_column + length`), the most
/// probable token (the mask token excluded) and its softmax probability over the whole
/// vocabulary; `[batch, length]` row-major. Everything a temperature-0 confidence sampler (LLaDA
/// low-confidence, greedy) reads from a step.
#[derive(Debug, Clone, PartialEq)]
pub struct TopChoices {
    pub length: usize,
    /// The canvas column of the first slot held.
    pub first_column: usize,
    pub tokens: Vec<u32>,
    pub probabilities: Vec<f64>,
}

impl TopChoices {
    /// (token, probability) at `row`, canvas column `column`.
    pub fn at(&self, row: usize, column: usize) -> (u32, f64) {
        let i = row * self.length + column - self.first_column;
        (self.tokens[i], self.probabilities[i])
    }

    /// The figures computed on the device from logits `[B, L, V]` of the columns starting at
    /// `first_column`, `forbidden` never chosen: only `[B, L]` values reach the host.
    pub fn on_device(logits: Tensor<3>, forbidden: u32, first_column: usize) -> Result<Self> {
        let [_, length, _] = logits.dims();
        if let Some((tokens, probabilities)) = fused::top_choices(&logits, forbidden) {
            return Ok(Self {
                length,
                first_column,
                tokens,
                probabilities,
            });
        }
        let logits = forbidding(logits, forbidden);
        let (max, argmax) = logits.clone().max_dim_with_indices(2);
        // p(argmax) = 1 / sum_v exp(l_v - max).
        let normalizer = (logits - max).exp().sum_dim(2);
        let tokens = host_values("top tokens", argmax.into_data())?;
        let normalizer = host_values("top probabilities", normalizer.into_data())?;
        Ok(Self {
            length,
            first_column,
            tokens: tokens.iter().map(|&t| t as u32).collect(),
            probabilities: normalizer.iter().map(|&z| 1.0 / z).collect(),
        })
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
            first_column: 0,
            tokens,
            probabilities,
        }
    }
}

/// A device tensor's values on the host as f64; `what` names them in the error.
pub(crate) fn host_values(what: &str, data: TensorData) -> Result<Vec<f64>> {
    data.convert::<f64>()
        .try_into_vec::<f64>()
        .map_err(|e| FlowError::Unsupported(format!("reading {what}: {e:?}")))
}

/// log sum_v exp(x_v) over the last axis of `[B, L, V]`: `[B, L]` (-inf max kept finite).
pub(crate) fn log_sum_exp(x: Tensor<3>) -> Tensor<2> {
    let max = x.clone().max_dim(2).clamp_min(-1e30);
    ((x - max.clone()).exp().sum_dim(2).log() + max).squeeze_dim(2)
}

/// The error for samplers' uniforms that do not number one per slot.
pub(crate) fn check_uniforms(uniforms: &[f64], slots: usize) -> Result<()> {
    if uniforms.len() != slots {
        return Err(FlowError::argument(
            "uniforms",
            format!("{} given for {slots} slots", uniforms.len()),
        ));
    }
    Ok(())
}

/// Device logits `[B, L, V]` with `forbidden` at -inf in every slot (never chosen).
pub(crate) fn forbidding(logits: Tensor<3>, forbidden: u32) -> Tensor<3> {
    let vocab = logits.dims()[2];
    let mut bias = vec![0.0f32; vocab];
    if let Some(b) = bias.get_mut(forbidden as usize) {
        *b = f32::NEG_INFINITY;
    }
    let bias = Tensor::<1>::from_data(TensorData::new(bias, [vocab]), &logits.device());
    logits + bias.reshape([1, 1, vocab])
}

/// Per slot of some columns, what Dream's rankings read at temperature 0: the top choice and
/// its probability (as [`TopChoices`]), the second-largest probability (`topk_margin`) and
/// sum_v p_v ln(p_v + 1e-10) (`entropy`, Dream's negative entropy), the forbidden token at
/// probability 0.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedChoices {
    pub top: TopChoices,
    second: Vec<f64>,
    negative_entropy: Vec<f64>,
}

impl RankedChoices {
    /// From device logits `[B, L, V]` of the columns starting at `first_column`: only
    /// `[B, L]` values reach the host.
    pub fn on_device(logits: Tensor<3>, forbidden: u32, first_column: usize) -> Result<Self> {
        let [batch, length, _] = logits.dims();
        let device = logits.device();
        let logits = forbidding(logits, forbidden);
        let (max, argmax) = logits.clone().max_dim_with_indices(2);
        let shifted = logits.clone() - max;
        let normalizer = shifted.clone().exp().sum_dim(2);
        let probabilities = shifted.clone().exp() / normalizer.clone();
        let negative_entropy = (probabilities.clone() * (probabilities + 1e-10).log()).sum_dim(2);
        // The second largest: the maximum once the argmax is out.
        let others = shifted.scatter(
            2,
            argmax.clone(),
            Tensor::<3>::full([batch, length, 1], f32::NEG_INFINITY, &device),
            burn::tensor::IndexingUpdateOp::Assign,
        );
        let second = others.max_dim(2).exp() / normalizer.clone();
        let tokens = host_values("top tokens", argmax.into_data())?;
        let normalizer = host_values("top probabilities", normalizer.into_data())?;
        Ok(Self {
            top: TopChoices {
                length,
                first_column,
                tokens: tokens.iter().map(|&t| t as u32).collect(),
                probabilities: normalizer.iter().map(|&z| 1.0 / z).collect(),
            },
            second: host_values("second probabilities", second.into_data())?,
            negative_entropy: host_values("entropies", negative_entropy.into_data())?,
        })
    }

    /// The same figures from host logits (the forbidden token already at -inf), in f64.
    pub fn from_logits(logits: &Logits) -> Self {
        let top = TopChoices::from_logits(logits);
        let (mut second, mut negative_entropy) = (Vec::new(), Vec::new());
        for (slot, &token) in logits.values.chunks(logits.vocab).zip(&top.tokens) {
            let probabilities = softmax(slot);
            let runner_up = probabilities
                .iter()
                .enumerate()
                .filter(|&(v, _)| v != token as usize)
                .map(|(_, &p)| p)
                .fold(0.0, f64::max);
            second.push(runner_up);
            negative_entropy.push(probabilities.iter().map(|&p| p * (p + 1e-10).ln()).sum());
        }
        Self {
            top,
            second,
            negative_entropy,
        }
    }

    /// (token, its probability, the second-largest probability, negative entropy) at `row`,
    /// canvas `column`.
    pub fn at(&self, row: usize, column: usize) -> (u32, f64, f64, f64) {
        let i = row * self.top.length + column - self.top.first_column;
        let (token, probability) = self.top.at(row, column);
        (token, probability, self.second[i], self.negative_entropy[i])
    }
}

/// The network as samplers see it.
pub trait Denoiser {
    fn vocab_size(&self) -> usize;
    /// Logits for every slot of every canvas row. `time` (one per row, 1 = all noise) is
    /// passed to models with a time embedding and ignored by the others.
    fn logits(&self, canvas: &Canvas, time: Option<&[f32]>) -> Result<Logits>;

    /// Device logits `[B, C, V]` of the `columns` of every row after a pass over the whole canvas
    /// (`time` as for [`Self::logits`]), for a denoiser that computes on a device: the choices
    /// below are then computed there, so that only what they need reaches the host instead of
    /// `[batch, length, vocab]` logits. `None` (the default): they read the host logits.
    fn device_logits_in(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
        columns: Range<usize>,
    ) -> Option<Result<Tensor<3>>> {
        let _ = (canvas, time, columns);
        None
    }

    /// [`TopChoices`] for every slot with `forbidden` (the mask token) never chosen.
    fn top_choices(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
        forbidden: u32,
    ) -> Result<TopChoices> {
        if let Some(logits) = self.device_logits_in(canvas, time, 0..canvas.width()) {
            return TopChoices::on_device(logits?, forbidden, 0);
        }
        let mut logits = self.logits(canvas, time)?;
        logits.forbid(forbidden);
        Ok(TopChoices::from_logits(&logits))
    }

    /// [`Self::top_choices`] for the `columns` of every row only (no time): a sampler that reads
    /// one block asks for that block, and a model runs its output head on those columns alone.
    /// On the host every column is computed (a superset, indexed the same way).
    fn top_choices_in(
        &self,
        canvas: &Canvas,
        columns: Range<usize>,
        forbidden: u32,
    ) -> Result<TopChoices> {
        if let Some(logits) = self.device_logits_in(canvas, None, columns.clone()) {
            return TopChoices::on_device(logits?, forbidden, columns.start);
        }
        self.top_choices(canvas, None, forbidden)
    }

    /// [`RankedChoices`] for the `columns` of every row (no time), `forbidden` never chosen.
    fn ranked_choices_in(
        &self,
        canvas: &Canvas,
        columns: Range<usize>,
        forbidden: u32,
    ) -> Result<RankedChoices> {
        if let Some(logits) = self.device_logits_in(canvas, None, columns.clone()) {
            return RankedChoices::on_device(logits?, forbidden, columns.start);
        }
        let mut choices =
            RankedChoices::from_logits(&host_columns(self, canvas, &columns, forbidden)?);
        choices.top.first_column = columns.start;
        Ok(choices)
    }

    /// [`sampled::SampledChoices`] for the `columns` of every row (no time) at `temperature`,
    /// `forbidden` never chosen, `uniforms` one per (row, column) of `columns`: what LLaDA's
    /// Gumbel-max sampling reads (`[batch, columns, K]` values from a device).
    fn sampled_choices_in(
        &self,
        canvas: &Canvas,
        columns: Range<usize>,
        forbidden: u32,
        temperature: f64,
        uniforms: &[f64],
    ) -> Result<sampled::SampledChoices> {
        let first = columns.start;
        if let Some(logits) = self.device_logits_in(canvas, None, columns.clone()) {
            return sampled::SampledChoices::on_device(
                logits?,
                forbidden,
                first,
                temperature,
                uniforms,
            );
        }
        let logits = host_columns(self, canvas, &columns, forbidden)?;
        let mut choices = sampled::SampledChoices::from_logits(&logits, temperature, uniforms)?;
        choices.first_column = first;
        Ok(choices)
    }

    /// [`filtered::FilteredChoices`] for the `columns` of every row (no time): a token drawn from
    /// seed 004's filtered distribution per slot, `forbidden` never chosen, `uniforms` one per
    /// (row, column) of `columns` (only the candidates come from a device).
    fn filtered_choices_in(
        &self,
        canvas: &Canvas,
        columns: Range<usize>,
        forbidden: u32,
        filter: &filtered::Filter,
        uniforms: &[f64],
    ) -> Result<filtered::FilteredChoices> {
        let first = columns.start;
        if let Some(logits) = self.device_logits_in(canvas, None, columns.clone()) {
            return filtered::FilteredChoices::on_device(
                logits?, forbidden, first, filter, uniforms,
            );
        }
        let logits = host_columns(self, canvas, &columns, forbidden)?;
        let mut choices = filtered::FilteredChoices::from_logits(&logits, filter, uniforms)?;
        choices.first_column = first;
        Ok(choices)
    }

    /// Fast-dLLM's cached decoding. Without `cache`, runs the whole canvas and also returns
    /// every layer's keys/values; with it, runs only the `computed` columns against the cached
    /// keys/values of the others (and returns no cache). Either way, [`TopChoices`] for the
    /// `read` columns (within `computed`), `forbidden` never chosen. Denoisers without a cache
    /// say so.
    fn cached_top_choices(
        &self,
        canvas: &Canvas,
        cache: Option<&KvCache>,
        computed: Range<usize>,
        read: Range<usize>,
        forbidden: u32,
    ) -> Result<(TopChoices, Option<KvCache>)> {
        let _ = (canvas, cache, computed, read, forbidden);
        Err(FlowError::Unsupported(
            "this model has no key/value cache; use --cache none".into(),
        ))
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
        Err(FlowError::Unsupported(
            "this denoiser cannot read embeddings".into(),
        ))
    }
}

/// The host logits of `columns` (no time), `forbidden` at -inf: what the choices read without a
/// device.
fn host_columns<D: Denoiser + ?Sized>(
    denoiser: &D,
    canvas: &Canvas,
    columns: &Range<usize>,
    forbidden: u32,
) -> Result<Logits> {
    let mut logits = denoiser.logits(canvas, None)?;
    logits.forbid(forbidden);
    logits.columns(columns.clone())
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
