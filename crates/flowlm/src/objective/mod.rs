//! Objectives: the loss from logits, x_0 and what the corruption did.
//!
//! The masked-diffusion ELBO, the correction CE and uniform diffusion's x_0 CE are all the same
//! computation -- a weighted cross-entropy whose weights the corruption took from its schedule --
//! so one function serves them.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::fused::cross_entropy;

use crate::corruption::CorruptedBatch;

/// sum_i w_i * CE(logits_i, target_i) / normalizer, as a scalar tensor.
pub fn weighted_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    weights: Tensor<2>,
    normalizer: f32,
) -> Tensor<1> {
    let [batch, length, vocab] = logits.dims();
    let targets: Vec<u32> = targets
        .into_data()
        .iter::<i64>()
        .map(|t| t as u32)
        .collect();
    let logits = logits.reshape([batch * length, vocab]);
    weighted_rows(
        logits,
        &targets,
        weights.reshape([batch * length]),
        normalizer,
    )
}

/// [`weighted_cross_entropy`] over rows of logits `[N, V]` with host targets and weights `[N]`.
fn weighted_rows(
    logits: Tensor<2>,
    targets: &[u32],
    weights: Tensor<1>,
    normalizer: f32,
) -> Tensor<1> {
    (cross_entropy(logits, targets) * weights)
        .sum()
        .div_scalar(normalizer)
}

/// Device tensors for a corrupted batch's input: (ids `[rows, length]`, time `[rows]`).
pub fn input_tensors(
    batch: &CorruptedBatch,
    rows: usize,
    length: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<1>) {
    let ids: Vec<i64> = batch.input.iter().map(|&t| t as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, length]), device);
    let time = Tensor::<1>::from_data(TensorData::new(batch.time.clone(), [rows]), device);
    (ids, time)
}

/// Floor of the one-hot target inside the symmetric KL: KL(p || one-hot) is infinite without one.
pub const SYMMETRIC_KL_FLOOR: f32 = 1e-6;

/// Per-position symmetric KL, KL(p || q) + KL(q || p) = sum_i (p_i - q_i)(ln p_i - ln q_i), between
/// p = softmax(logits) and q = the one-hot target floored at [`SYMMETRIC_KL_FLOOR`]. `[B, L]`.
pub fn symmetric_kl_to_one_hot(logits: Tensor<3>, targets: &[u32], device: &Device) -> Tensor<2> {
    let [batch, length, vocab] = logits.dims();
    let mut target = vec![SYMMETRIC_KL_FLOOR; batch * length * vocab];
    for (position, &token) in targets.iter().enumerate() {
        target[position * vocab + token as usize] = 1.0;
    }
    let q = Tensor::<3>::from_data(TensorData::new(target, [batch, length, vocab]), device);
    let log_p = log_softmax(logits, 2);
    let p = log_p.clone().exp();
    ((p - q.clone()) * (log_p - q.log()))
        .sum_dim(2)
        .reshape([batch, length])
}

/// The per-position loss of soft-token training (Duo, seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftTokenLoss {
    /// Seed 001: the symmetric KL to the one-hot target (floored at [`SYMMETRIC_KL_FLOOR`]).
    #[default]
    SymmetricKl,
    /// The x0 cross-entropy -ln p(target) that uniform diffusion trains with, for comparison.
    CrossEntropy,
}

/// Per-position cross-entropy -ln softmax(logits)[target], `[B, L]`.
pub fn cross_entropy_per_position(logits: Tensor<3>, targets: &[u32]) -> Tensor<2> {
    let [batch, length, vocab] = logits.dims();
    cross_entropy(logits.reshape([batch * length, vocab]), targets).reshape([batch, length])
}

/// How seed 001's symmetric KL weighs each row by its noise level t (ALGORITHMS.md, Duo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewScale {
    /// The seed's stated intent: 1 at no noise and smaller for the noisiest rows,
    /// V (1 - t) / (V (1 - t) + t), so that rows of every noise level count.
    #[default]
    Intent,
    /// The formula the seed writes, t / (V (1 - t) + t): 0 at no noise, largest for the
    /// noisiest rows (with it a model learns only the unigram distribution).
    Literal,
}

impl ViewScale {
    /// The weight of a row at noise level `time` over a vocabulary of `vocab` tokens.
    pub fn at(self, time: f64, vocab: usize) -> f64 {
        let clean = vocab as f64 * (1.0 - time);
        match self {
            ViewScale::Intent => clean / (clean + time),
            ViewScale::Literal => time / (clean + time),
        }
    }
}

/// The default loss of a token-level corruption: weighted cross-entropy of the model's logits on
/// the corrupted ids, computed only at scored positions (weight != 0): the others add nothing.
pub fn token_cross_entropy(
    model: &dyn crate::model::LossModel,
    corrupted: &CorruptedBatch,
    rows: usize,
    length: usize,
    device: &Device,
) -> crate::error::Result<Tensor<1>> {
    let (ids, time) = input_tensors(corrupted, rows, length, device);
    let scored: Vec<usize> = (0..rows * length)
        .filter(|&i| corrupted.weights[i] != 0.0)
        .collect();
    if scored.is_empty() {
        // Nothing scored: a zero loss that still belongs to the graph (backward needs one).
        let first = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64], [1]), device);
        return Ok(model.scored_logits(ids, time, first)?.sum().mul_scalar(0.0));
    }
    let n = scored.len();
    let index = Tensor::<1, Int>::from_data(
        TensorData::new(scored.iter().map(|&i| i as i64).collect(), [n]),
        device,
    );
    let logits = model.scored_logits(ids, time, index)?;
    let targets: Vec<u32> = scored.iter().map(|&i| corrupted.targets[i]).collect();
    let weights = Tensor::<1>::from_data(
        TensorData::new(scored.iter().map(|&i| corrupted.weights[i]).collect(), [n]),
        device,
    );
    Ok(weighted_rows(
        logits,
        &targets,
        weights,
        corrupted.normalizer,
    ))
}
