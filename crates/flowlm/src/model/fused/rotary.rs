//! Rotary position embedding (rotate-half convention) in one pass, with its own backward.
//!
//! burn's composition -- two slices, a negation, a concatenation, two products and a sum -- walks
//! the heads six times forward and again in the backward; every attention layer rotates both
//! queries and keys. Here each (batch row, head) pair is one rayon task over its rows:
//! `y = x * cos + rotate_half(x) * sin` with `rotate_half([a, b]) = [-b, a]`, and the gradient
//! `dx = g * cos + rotate_half^T(g * sin)` with `rotate_half^T([a, b]) = [b, -a]`.

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::{Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{
    Placed, TrainedTensor, contiguous, placed, readable, register, values, widest_vectors,
};

/// `x * cos + rotate_half(x) * sin` for heads `x` `[B, H, L, size]` and tables `cos`, `sin`
/// `[B, 1, L, size]` (constants: no gradient reaches them).
pub fn rotary(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    match placed([&x, &cos, &sin]) {
        Placed::Plain([x, cos, sin]) => {
            let tables = Tables::new(cos, sin);
            Tensor::from_primitive::<Flex>(rotate(&x, &tables, Turn::Forward))
        }
        Placed::Trained([x, cos, sin]) => {
            let tables = Tables::new(cos.into_primitive(), sin.into_primitive());
            Tensor::from_primitive::<Autodiff<Flex>>(record(x, tables))
        }
        Placed::Elsewhere => composed(x, cos, sin),
    }
}

/// burn's operators, for every other tensor (the GPU, bf16, checkpointed autodiff).
fn composed(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    let [b, h, l, d] = x.dims();
    let first = x.clone().slice([0..b, 0..h, 0..l, 0..d / 2]);
    let second = x.clone().slice([0..b, 0..h, 0..l, d / 2..d]);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    x * cos + rotated * sin
}

fn record(x: TrainedTensor, tables: Tables) -> TrainedTensor {
    match RotaryBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let output = rotate(x.primitive(), &tables, Turn::Forward);
            prep.finish(tables, output)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(rotate(&x.into_primitive(), &tables, Turn::Forward))
        }
    }
}

/// The cos and sin tables `[B, 1, L, size]`, contiguous.
#[derive(Debug, Clone)]
struct Tables {
    cos: FlexTensor,
    sin: FlexTensor,
}

impl Tables {
    fn new(cos: FlexTensor, sin: FlexTensor) -> Self {
        Self {
            cos: contiguous(cos),
            sin: contiguous(sin),
        }
    }
}

#[derive(Debug)]
struct RotaryBackward;

impl Backward<Flex, 1> for RotaryBackward {
    type State = Tables;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<Flex>(&ops.node);
        register(grads, &ops, [rotate(&grad, &ops.state, Turn::Backward)]);
    }
}

/// The rotation (forward) or its transpose (the gradient).
#[derive(Clone, Copy, PartialEq)]
enum Turn {
    Forward,
    Backward,
}

/// `x` `[B, H, L, size]` rotated, into a fresh contiguous tensor of its shape; `x` is read
/// through its strides (the heads split from a projection are a transposed view).
fn rotate(x: &FlexTensor, tables: &Tables, turn: Turn) -> FlexTensor {
    // Rows are read as runs, so the last dimension must be dense.
    let x = if x.layout().strides()[3] == 1 {
        readable(x.clone())
    } else {
        contiguous(x.clone())
    };
    let layout = x.layout();
    let shape = layout.shape().clone();
    let (heads, length, size) = (shape[1], shape[2], shape[3]);
    let stride = |i: usize| layout.strides()[i] as usize;
    let (storage, start) = (x.storage::<f32>(), layout.start_offset());
    let (cos, sin) = (values(&tables.cos), values(&tables.sin));
    let mut output = vec![0.0f32; shape.num_elements()];
    output
        .par_chunks_mut(length * size)
        .enumerate()
        .for_each(|(pair, out)| {
            let (row, head) = (pair / heads, pair % heads);
            let x = &storage[start + row * stride(0) + head * stride(1)..];
            let row_stride = stride(2);
            let cos = &cos[row * length * size..][..length * size];
            let sin = &sin[row * length * size..][..length * size];
            let backward = turn == Turn::Backward;
            widest_vectors!(rotate_rows(
                out: &mut [f32],
                x: &[f32],
                row_stride: usize,
                cos: &[f32],
                sin: &[f32],
                size: usize,
                backward: bool
            ));
        });
    FlexTensor::from_data(TensorData::new(output, shape))
}

/// Rows `size` wide (those of `x` `row_stride` apart), halves `a` and `b`. Forward:
/// `[a c1 - b s1, b c2 + a s2]`; backward (the transpose): `[a c1 + b s2, b c2 - a s1]`.
#[inline(always)]
fn rotate_rows(
    out: &mut [f32],
    x: &[f32],
    row_stride: usize,
    cos: &[f32],
    sin: &[f32],
    size: usize,
    backward: bool,
) {
    let half = size / 2;
    let rows = out
        .chunks_exact_mut(size)
        .enumerate()
        .map(|(i, out)| (out, &x[i * row_stride..][..size]))
        .zip(cos.chunks_exact(size).zip(sin.chunks_exact(size)));
    for ((out, x), (cos, sin)) in rows {
        let (out_a, out_b) = out.split_at_mut(half);
        let (a, b) = x.split_at(half);
        let (c1, c2) = cos.split_at(half);
        let (s1, s2) = sin.split_at(half);
        // With the forward's sines the first half subtracts, in the backward the second.
        let (s_a, s_b, sign) = if backward {
            (s2, s1, -1.0)
        } else {
            (s1, s2, 1.0)
        };
        for i in 0..half {
            out_a[i] = a[i] * c1[i] - sign * b[i] * s_a[i];
            out_b[i] = b[i] * c2[i] + sign * a[i] * s_b[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::tests::values;
    use burn::tensor::Device;

    const SHAPE: [usize; 4] = [2, 3, 7, 8];
    const TABLES: [usize; 4] = [2, 1, 7, 8];

    fn tensor(shape: [usize; 4], seed: u32, device: &Device) -> Tensor<4> {
        let n = shape.iter().product();
        Tensor::<4>::from_data(TensorData::new(values(n, 1.0, seed), shape), device)
    }

    #[test]
    fn the_fused_rotation_equals_burns_composition_on_a_strided_input() {
        let device = Device::flex();
        // A transposed view, as the heads split from a projection are.
        let x = tensor([2, 7, 3, 8], 1, &device).swap_dims(1, 2);
        let (cos, sin) = (tensor(TABLES, 2, &device), tensor(TABLES, 3, &device));
        let fused = rotary(x.clone(), cos.clone(), sin.clone()).into_data();
        let reference = composed(x, cos, sin).into_data();
        fused.assert_approx_eq::<f32>(&reference, burn::tensor::Tolerance::rel_abs(1e-5, 1e-6));
    }

    #[test]
    fn the_fused_rotations_gradient_equals_burns() {
        let device = Device::flex().autodiff();
        let gradient = |fused: bool| {
            let x = tensor(SHAPE, 1, &device).require_grad();
            // Distinct halves in the tables, so a backward that swapped s1 and s2 fails.
            let (cos, sin) = (tensor(TABLES, 2, &device), tensor(TABLES, 3, &device));
            let y = if fused {
                rotary(x.clone(), cos, sin)
            } else {
                composed(x.clone(), cos, sin)
            };
            // Through a transposition, so the gradient reaches the rotation as a strided view.
            let y = y.swap_dims(1, 2);
            let grads = (y * tensor([2, 7, 3, 8], 4, &device)).sum().backward();
            x.grad(&grads).expect("a gradient").into_data()
        };
        gradient(true).assert_approx_eq::<f32>(
            &gradient(false),
            burn::tensor::Tolerance::rel_abs(1e-5, 1e-6),
        );
    }
}
