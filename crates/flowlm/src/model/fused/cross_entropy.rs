//! Per-row cross-entropy `logsumexp(x) - x[target]` over a vocabulary, forward and backward in
//! one pass each.
//!
//! burn's `log_softmax` and `gather` walk the `[rows, vocab]` logits about six times forward,
//! with scalar `expf`, and their backward as often again; the logits are the largest tensor of a
//! training step (rows x a vocabulary of thousands). Here the forward reads each row once (its
//! maximum, then a vectorised `exp` sum) and keeps the log-normaliser per row; the backward
//! writes `grad * (softmax(x) - one_hot(target))` in one pass.

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::sync::Arc;

use super::{
    Placed, TrainedTensor, contiguous, exp, exp_sum, lanes_max, placed, register, values,
    widest_vectors,
};

/// `-ln softmax(logits[i])[targets[i]]` for each row of `logits` `[rows, vocab]` -> `[rows]`.
///
/// # Panics
/// When `targets` does not have one entry per row or names a token outside the vocabulary
/// (the callers' tokenizers guarantee both).
pub fn cross_entropy(logits: Tensor<2>, targets: &[u32]) -> Tensor<1> {
    let [rows, vocab] = logits.dims();
    assert_eq!(targets.len(), rows, "one target per row");
    assert!(
        targets.iter().all(|&t| (t as usize) < vocab),
        "a target outside the vocabulary of {vocab}"
    );
    match placed([&logits]) {
        Placed::Plain([logits]) => {
            Tensor::from_primitive::<Flex>(Rows::new(logits, targets).forward())
        }
        Placed::Trained([logits]) => {
            Tensor::from_primitive::<Autodiff<Flex>>(record(logits, targets))
        }
        Placed::Elsewhere => composed(logits, targets),
    }
}

/// burn's operators, for every other tensor (the GPU, bf16, checkpointed autodiff).
fn composed(logits: Tensor<2>, targets: &[u32]) -> Tensor<1> {
    let rows = targets.len();
    let device = logits.device();
    let targets = Tensor::<2, Int>::from_data(
        TensorData::new(
            targets.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [rows, 1],
        ),
        &device,
    );
    log_softmax(logits, 1)
        .gather(1, targets)
        .neg()
        .reshape([rows])
}

fn record(logits: TrainedTensor, targets: &[u32]) -> TrainedTensor {
    match CrossEntropyBackward
        .prepare::<NoCheckpointing>([logits.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let mut rows = Rows::new(logits.primitive().clone(), targets);
            let losses = rows.forward();
            prep.finish(rows, losses)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(Rows::new(logits.into_primitive(), targets).forward())
        }
    }
}

/// The logits (contiguous), their targets and, once [`Rows::forward`] ran, each row's
/// log-normaliser.
#[derive(Debug, Clone)]
struct Rows {
    logits: FlexTensor,
    targets: Arc<Vec<u32>>,
    normalisers: Arc<Vec<f32>>,
}

impl Rows {
    fn new(logits: FlexTensor, targets: &[u32]) -> Self {
        Self {
            logits: contiguous(logits),
            targets: Arc::new(targets.to_vec()),
            normalisers: Arc::default(),
        }
    }

    fn vocab(&self) -> usize {
        self.logits.layout().shape()[1]
    }

    /// The losses `[rows]`; keeps the log-normalisers for the gradient.
    fn forward(&mut self) -> FlexTensor {
        let vocab = self.vocab();
        let normalisers: Vec<f32> = values(&self.logits)
            .par_chunks(vocab)
            .map(|row| widest_vectors!(log_normaliser(row: &[f32]) -> f32))
            .collect();
        let losses: Vec<f32> = values(&self.logits)
            .chunks_exact(vocab)
            .zip(self.targets.iter())
            .zip(&normalisers)
            .map(|((row, &target), &normaliser)| normaliser - row[target as usize])
            .collect();
        self.normalisers = Arc::new(normalisers);
        let count = losses.len();
        FlexTensor::from_data(TensorData::new(losses, [count]))
    }

    /// `grad[i] * (softmax(row i) - one_hot(target i))`, `[rows, vocab]`.
    fn gradient(&self, grad: &[f32]) -> FlexTensor {
        let vocab = self.vocab();
        let mut output = vec![0.0f32; self.logits.layout().num_elements()];
        output
            .par_chunks_mut(vocab)
            .zip(values(&self.logits).par_chunks(vocab))
            .zip(self.normalisers.par_iter().zip(grad))
            .zip(self.targets.par_iter())
            .for_each(|(((out, row), (&normaliser, &g)), &target)| {
                widest_vectors!(scaled_softmax(
                    out: &mut [f32],
                    row: &[f32],
                    normaliser: f32,
                    g: f32
                ));
                out[target as usize] -= g;
            });
        FlexTensor::from_data(TensorData::new(output, [grad.len(), vocab]))
    }
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl Backward<Flex, 1> for CrossEntropyBackward {
    type State = Rows;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        register(grads, &ops, [ops.state.gradient(values(&grad))]);
    }
}

/// `ln sum exp(row)`, shifted by the row's maximum so nothing overflows.
#[inline(always)]
fn log_normaliser(row: &[f32]) -> f32 {
    let max = lanes_max(row);
    max + exp_sum(row, max).ln()
}

#[inline(always)]
fn scaled_softmax(out: &mut [f32], row: &[f32], normaliser: f32, g: f32) {
    for (o, &x) in out.iter_mut().zip(row) {
        *o = g * exp(x - normaliser);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::tests::values;
    use burn::tensor::Device;

    const ROWS: usize = 37;
    const VOCAB: usize = 1_003;

    fn logits(device: &Device) -> Tensor<2> {
        // Logits up to 30 and one of 80, whose plain exp overflows f32: the shift must act.
        let mut v = values(ROWS * VOCAB, 30.0, 1);
        v[5] = 80.0;
        Tensor::<2>::from_data(TensorData::new(v, [ROWS, VOCAB]), device)
    }

    fn targets() -> Vec<u32> {
        (0..ROWS as u32).map(|i| (i * 271) % VOCAB as u32).collect()
    }

    #[test]
    fn the_fused_cross_entropy_equals_log_softmax_and_gather() {
        let device = Device::flex();
        let fused = cross_entropy(logits(&device), &targets()).into_data();
        let reference = composed(logits(&device), &targets()).into_data();
        fused.assert_approx_eq::<f32>(&reference, burn::tensor::Tolerance::rel_abs(1e-5, 1e-5));
    }

    #[test]
    fn the_fused_cross_entropys_gradient_equals_burns() {
        let device = Device::flex().autodiff();
        let upstream =
            Tensor::<1>::from_data(TensorData::new(values(ROWS, 1.0, 2), [ROWS]), &device);
        let gradient = |fused: bool| {
            let x = logits(&device).require_grad();
            let losses = if fused {
                cross_entropy(x.clone(), &targets())
            } else {
                composed(x.clone(), &targets())
            };
            let grads = (losses * upstream.clone()).sum().backward();
            x.grad(&grads).expect("a gradient").into_data()
        };
        gradient(true).assert_approx_eq::<f32>(
            &gradient(false),
            burn::tensor::Tolerance::rel_abs(1e-4, 1e-6),
        );
    }
}
