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
