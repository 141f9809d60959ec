//! Objectives: the loss from logits, x_0 and what the corruption did.
//!
//! The masked-diffusion ELBO, the correction CE and uniform diffusion's x_0 CE are all the same
//! computation -- a weighted cross-entropy whose weights the corruption took from its schedule --
//! so one function serves them.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::corruption::CorruptedBatch;

/// sum_i w_i * CE(logits_i, target_i) / normalizer, as a scalar tensor.
pub fn weighted_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    weights: Tensor<2>,
    normalizer: f32,
) -> Tensor<1> {
    let [batch, length, _] = logits.dims();
    let log_probs = log_softmax(logits, 2);
    let picked = log_probs
        .gather(2, targets.reshape([batch, length, 1]))
        .reshape([batch, length]);
    (picked.neg() * weights).sum().div_scalar(normalizer)
}

/// Device tensors for a corrupted batch: (input ids, targets, weights, time).
pub fn batch_tensors(
    batch: &CorruptedBatch,
    rows: usize,
    length: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>, Tensor<1>) {
    let ids = |v: &[u32]| {
        let data: Vec<i64> = v.iter().map(|&t| t as i64).collect();
        Tensor::<2, Int>::from_data(TensorData::new(data, [rows, length]), device)
    };
    let weights = Tensor::<2>::from_data(
        TensorData::new(batch.weights.clone(), [rows, length]),
        device,
    );
    let time = Tensor::<1>::from_data(TensorData::new(batch.time.clone(), [rows]), device);
    (ids(&batch.input), ids(&batch.targets), weights, time)
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

/// Seed 001's per-row scale of the symmetric KL, t / (V (1 - t) + t): rows with little noise
/// (easy) count less, so the hardest rows do not dominate the gradient.
pub fn view_scale(time: f64, vocab: usize) -> f64 {
    time / (vocab as f64 * (1.0 - time) + time)
}

/// The default loss of a token-level corruption: weighted cross-entropy of the model's logits on
/// the corrupted ids.
pub fn token_cross_entropy(
    model: &crate::model::DiffusionTransformer,
    corrupted: &CorruptedBatch,
    rows: usize,
    length: usize,
    device: &Device,
) -> Tensor<1> {
    let (ids, targets, weights, time) = batch_tensors(corrupted, rows, length, device);
    let positions = crate::model::default_positions(rows, length, device);
    let logits = model.forward(
        crate::model::DenoiserInput::Tokens(ids),
        positions,
        Some(time),
        None,
    );
    weighted_cross_entropy(logits, targets, weights, corrupted.normalizer)
}
