//! Scaled dot-product attention on the CPU backend, forward and backward in one
//! operator.
//!
//! Under autodiff burn runs attention as its fallback composition: a batched `q k^T`, a scale, a
//! mask fill, a five-pass softmax with scalar `expf`, a batched product with `v`, and then the
//! backward of each step (the products' backward copies transposed operands). Here each
//! (batch row, head) pair is one task on the rayon pool: gemm computes its scores, one vectorised
//! pass turns them into probabilities, gemm multiplies them with the values. The backward keeps
//! those probabilities and needs four more products per head plus one pass for the softmax's
//! gradient, `dS = P * (dP - rowsum(dP * P)) * scale`.
//!
//! Sampling runs the same forward without keeping the probabilities: burn-flex's own kernel
//! without autodiff computes its scores with scalar loops and `expf` (3-4% of a batch-1
//! generation profile). The GPU, bf16 and checkpointed autodiff keep burn's operator.

use super::strided::{Destination, Matrix, multiply, multiply_into};
use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::sync::Arc;

use super::{
    Placed, TrainedTensor, exp, lanes_dot, lanes_max, lanes_sum, placed, readable, register,
    values, widest_vectors,
};

/// softmax(q k^T / sqrt(size), masked) v for `q` `[B, H, L, size]` and `k`, `v` `[B, H, K, size]`;
/// `mask` broadcasts to `[B, 1 or H, L, K]` and is true where a query must not see a key (a row
/// that sees no key gets zeros, as in burn's operator). Returns `[B, H, L, size]`.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
) -> Tensor<4> {
    let [batch, heads, length, _] = q.dims();
    let keys = k.dims()[2];
    let shared_by_heads = mask.as_ref().is_none_or(|m| m.dims()[1] == 1);
    // One `[B, L, K]` mask on the host, read by every head.
    let blocked = |mask: Option<Tensor<4, Bool>>| {
        mask.map(|m| {
            let m = m.expand([batch, 1, length, keys]).into_data();
            Arc::new(m.iter::<bool>().collect::<Vec<_>>())
        })
    };
    match placed([&q, &k, &v]) {
        Placed::Plain([q, k, v]) if shared_by_heads => {
            let blocked = blocked(mask);
            let heads = Heads::new(q, k, v);
            let output = forward(&heads, blocked.as_deref().map(Vec::as_slice), false).0;
            Tensor::from_primitive::<Flex>(output)
        }
        Placed::Trained([q, k, v]) if shared_by_heads => {
            Tensor::from_primitive::<Autodiff<Flex>>(record(q, k, v, blocked(mask)))
        }
        _ => {
            let mask = mask.map(|m| m.expand([batch, heads, length, keys]));
            burn_attention(q, k, v, mask, None, AttentionModuleOptions::default())
        }
    }
}

/// Records the forward as one autodiff node that keeps its inputs and probabilities.
fn record(
    q: TrainedTensor,
    k: TrainedTensor,
    v: TrainedTensor,
    blocked: Option<Arc<Vec<bool>>>,
) -> TrainedTensor {
    match AttentionBackward
        .prepare::<NoCheckpointing>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let heads = Heads::new(
                q.primitive().clone(),
                k.primitive().clone(),
                v.primitive().clone(),
            );
            let (output, probabilities) =
                forward(&heads, blocked.as_deref().map(Vec::as_slice), true);
            prep.finish(
                AttentionState {
                    heads,
                    probabilities,
                },
                output,
            )
        }
        OpsKind::UnTracked(prep) => {
            let heads = Heads::new(q.into_primitive(), k.into_primitive(), v.into_primitive());
            prep.finish(forward(&heads, blocked.as_deref().map(Vec::as_slice), false).0)
        }
    }
}

/// Query, key and value heads `[B, H, rows, size]`, read through their strides.
#[derive(Debug, Clone)]
struct Heads {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    batch: usize,
    heads: usize,
    queries: usize,
    keys: usize,
    size: usize,
}

impl Heads {
    fn new(q: FlexTensor, k: FlexTensor, v: FlexTensor) -> Self {
        let q_shape = q.layout().shape().to_vec();
        let keys = k.layout().shape()[2];
        Self {
            q: readable(q),
            k: readable(k),
            v: readable(v),
            batch: q_shape[0],
            heads: q_shape[1],
            queries: q_shape[2],
            keys,
            size: q_shape[3],
        }
    }

    fn pairs(&self) -> usize {
        self.batch * self.heads
    }

    fn scale(&self) -> f32 {
        1.0 / (self.size as f32).sqrt()
    }

    /// Room for a `[B, H, rows, size]` result that the pairs fill in parallel.
    fn result(&self, rows: usize) -> Interleaved {
        Interleaved::new(self.batch, self.heads, rows, self.size)
    }
}

/// Pair `pair`'s `[rows, size]` matrix of `t` `[B, H, rows, size]` (strides all non-negative).
fn head_matrix(t: &FlexTensor, heads: usize, pair: usize) -> Matrix<'_> {
    let layout = t.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    let stride = |i: usize| strides[i] as usize;
    let offset = layout.start_offset() + pair / heads * stride(0) + pair % heads * stride(1);
    Matrix::strided(
        &t.storage::<f32>()[offset..],
        shape[2],
        shape[3],
        stride(2),
        stride(3),
    )
}

/// The output `[B, H, L, size]` and, when `keep` (for the backward), the probabilities
/// `[B * H, L, K]`; without it each task reuses one scratch buffer and the second tensor is empty.
fn forward(heads: &Heads, blocked: Option<&[bool]>, keep: bool) -> (FlexTensor, FlexTensor) {
    let (l, kk) = (heads.queries, heads.keys);
    let mut output = heads.result(l);
    let destinations = output.destinations();
    let mut probabilities = vec![0.0f32; if keep { heads.pairs() * l * kk } else { 0 }];
    let scale = heads.scale();
    let attend = |pair: usize, p: &mut [f32]| {
        let matrix = |t| head_matrix(t, heads.heads, pair);
        multiply(p, matrix(&heads.q), matrix(&heads.k).transposed());
        let rows_blocked = blocked.map_or(&[][..], |b| {
            let row = pair / heads.heads;
            &b[row * l * kk..][..l * kk]
        });
        widest_vectors!(softmax_rows(
            p: &mut [f32],
            rows_blocked: &[bool],
            kk: usize,
            scale: f32
        ));
        // SAFETY: each pair is attended once, and pairs write disjoint rows of `output`, which
        // outlives this loop.
        unsafe {
            multiply_into(
                destinations.of(pair),
                Matrix::row_major(p, l, kk),
                matrix(&heads.v),
            )
        };
    };
    if keep {
        probabilities
            .par_chunks_mut(l * kk)
            .enumerate()
            .for_each(|(pair, p)| attend(pair, p));
    } else {
        (0..heads.pairs())
            .into_par_iter()
            .for_each_init(|| vec![0.0f32; l * kk], |p, pair| attend(pair, p));
    }
    let kept = if keep { heads.pairs() } else { 0 };
    let probabilities = FlexTensor::from_data(TensorData::new(probabilities, [kept, l, kk]));
    (output.into_heads(), probabilities)
}

#[derive(Debug)]
struct AttentionBackward;

#[derive(Debug, Clone)]
struct AttentionState {
    heads: Heads,
    probabilities: FlexTensor,
}

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = readable(grads.consume::<Flex>(&ops.node));
        let gradients = gradients(&ops.state, &grad);
        register(grads, &ops, gradients);
    }
}

/// The gradients of q, k and v for the output's gradient `grad` `[B, H, L, size]`.
fn gradients(state: &AttentionState, grad: &FlexTensor) -> [FlexTensor; 3] {
    let heads = &state.heads;
    let (l, kk) = (heads.queries, heads.keys);
    let probabilities = values(&state.probabilities);
    let scale = heads.scale();
    let (mut d_q, mut d_k, mut d_v) = (heads.result(l), heads.result(kk), heads.result(kk));
    let (q_rows, k_rows, v_rows) = (d_q.destinations(), d_k.destinations(), d_v.destinations());
    probabilities.par_chunks(l * kk).enumerate().for_each_init(
        || vec![0.0f32; l * kk],
        |d_scores, (pair, p)| {
            let matrix = |t| head_matrix(t, heads.heads, pair);
            let p = Matrix::row_major(p, l, kk);
            let d_out = matrix(grad);
            // SAFETY (each `multiply_into` below): every pair runs once and writes its own
            // rows of d_q, d_k and d_v, which outlive this loop.
            unsafe { multiply_into(v_rows.of(pair), p.transposed(), d_out) };
            // d P, then d S = P * (d P - rowsum(d P * P)) * scale in its place.
            multiply(d_scores, d_out, matrix(&heads.v).transposed());
            let (d_p, p) = (&mut d_scores[..], p.values);
            widest_vectors!(softmax_gradient_rows(
                d_p: &mut [f32],
                p: &[f32],
                kk: usize,
                scale: f32
            ));
            let d_s = Matrix::row_major(d_scores, l, kk);
            unsafe { multiply_into(q_rows.of(pair), d_s, matrix(&heads.k)) };
            unsafe { multiply_into(k_rows.of(pair), d_s.transposed(), matrix(&heads.q)) };
        },
    );
    [d_q.into_heads(), d_k.into_heads(), d_v.into_heads()]
}

/// Each row of `scores` (`width` wide) scaled, masked where `blocked` (empty: nothing is) and
/// turned into probabilities; a row with every key blocked becomes zeros.
#[inline(always)]
fn softmax_rows(scores: &mut [f32], blocked: &[bool], width: usize, scale: f32) {
    for (i, row) in scores.chunks_exact_mut(width).enumerate() {
        if blocked.is_empty() {
            row.iter_mut().for_each(|x| *x *= scale);
        } else {
            let blocked = &blocked[i * width..][..width];
            for (x, &b) in row.iter_mut().zip(blocked) {
                *x = if b { f32::NEG_INFINITY } else { *x * scale };
            }
        }
        let max = lanes_max(row);
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            continue;
        }
        for x in row.iter_mut() {
            // Blocked entries are -inf, which the clamped `exp` would not send to 0.
            *x = if *x == f32::NEG_INFINITY {
                0.0
            } else {
                exp(*x - max)
            };
        }
        let inverse = 1.0 / lanes_sum(row);
        row.iter_mut().for_each(|x| *x *= inverse);
    }
}

/// `d_p` (the probabilities' gradient) becomes the scores' gradient, row by row:
/// `p * (d_p - sum(d_p * p)) * scale`.
#[inline(always)]
fn softmax_gradient_rows(d_p: &mut [f32], p: &[f32], width: usize, scale: f32) {
    for (d_row, p_row) in d_p.chunks_exact_mut(width).zip(p.chunks_exact(width)) {
        let along = lanes_dot(d_row, p_row);
        for (d, &p) in d_row.iter_mut().zip(p_row) {
            *d = p * (*d - along) * scale;
        }
    }
}

/// A `[B, H, rows, size]` result stored as `[B, rows, H, size]`: in that order a head's rows are
/// already where the caller's `swap_dims(1, 2)` and reshape to `[B, rows, H * size]` (the next
/// projection's input, or the split's gradient) need them, so neither copies.
struct Interleaved {
    values: Vec<f32>,
    batch: usize,
    heads: usize,
    rows: usize,
    size: usize,
}

impl Interleaved {
    fn new(batch: usize, heads: usize, rows: usize, size: usize) -> Self {
        Self {
            values: vec![0.0; batch * rows * heads * size],
            batch,
            heads,
            rows,
            size,
        }
    }

    /// Where each pair's rows go; valid while `self` is neither moved nor dropped.
    fn destinations(&mut self) -> Destinations {
        Destinations {
            start: self.values.as_mut_ptr(),
            heads: self.heads,
            rows: self.rows,
            size: self.size,
        }
    }

    fn into_heads(self) -> FlexTensor {
        let shape = [self.batch, self.rows, self.heads, self.size];
        FlexTensor::from_data(TensorData::new(self.values, shape)).transpose(1, 2)
    }
}

/// The pairs' rows in an [`Interleaved`] buffer, shared by the tasks that fill it: pair
/// (b, h) owns the elements `b * rows * H * size + r * H * size + h * size + (0..size)`, which
/// no other pair touches.
#[derive(Clone, Copy)]
struct Destinations {
    start: *mut f32,
    heads: usize,
    rows: usize,
    size: usize,
}

// SAFETY: the tasks that share it write disjoint elements (one pair each).
unsafe impl Send for Destinations {}
unsafe impl Sync for Destinations {}

impl Destinations {
    fn of(&self, pair: usize) -> Destination {
        let (b, h) = (pair / self.heads, pair % self.heads);
        let row_stride = self.heads * self.size;
        Destination {
            // In bounds: pair < batch * heads, so the offset lies inside the buffer.
            start: self
                .start
                .wrapping_add(b * self.rows * row_stride + h * self.size),
            rows: self.rows,
            columns: self.size,
            row_stride,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::tests::values;
    use burn::tensor::Device;

    const SHAPE: [usize; 4] = [2, 3, 5, 8];

    /// Row 0 pads its first key and its query 3 sees no key at all; row 1 is causal.
    fn mask(device: &Device) -> Tensor<4, Bool> {
        let (l, k) = (SHAPE[2], SHAPE[2]);
        let mut blocked = vec![false; 2 * l * k];
        for i in 0..l {
            blocked[i * k] = true;
            for j in i + 1..k {
                blocked[l * k + i * k + j] = true;
            }
        }
        blocked[3 * k..4 * k].fill(true);
        Tensor::<4, Bool>::from_data(TensorData::new(blocked, [2, 1, l, k]), device)
    }

    #[test]
    fn fused_attention_and_its_gradients_equal_burns_operator() {
        let device = Device::flex().autodiff();
        let n = SHAPE.iter().product();
        // Heads as a projection's split gives them: a transposed view of [B, L, H, size].
        let tensor = |seed: u32| {
            let [b, h, l, d] = SHAPE;
            let data = TensorData::new(values(n, 2.0, seed), [b, l, h, d]);
            Tensor::<4>::from_data(data, &device).swap_dims(1, 2)
        };
        let run = |fused: bool| {
            let (q, k, v) = (
                tensor(1).require_grad(),
                tensor(2).require_grad(),
                tensor(3).require_grad(),
            );
            let output = if fused {
                let fused_path = matches!(placed([&q, &k, &v]), Placed::Trained(_));
                assert!(fused_path, "the fused path is taken");
                attention(q.clone(), k.clone(), v.clone(), Some(mask(&device)))
            } else {
                let m = mask(&device).expand([2, 3, 5, 5]);
                let options = AttentionModuleOptions::default();
                burn_attention(q.clone(), k.clone(), v.clone(), Some(m), None, options)
            };
            // A non-uniform upstream gradient, so each element's chain rule is checked.
            let grads = (output.clone() * tensor(4)).sum().backward();
            let read = |t: &Tensor<4>| t.grad(&grads).expect("a gradient").into_data();
            [output.into_data(), read(&q), read(&k), read(&v)]
        };
        let tolerance = burn::tensor::Tolerance::<f32>::rel_abs(1e-4, 1e-5);
        for (fused, reference) in run(true).iter().zip(&run(false)) {
            fused.assert_approx_eq::<f32>(reference, tolerance);
        }
    }

    #[test]
    fn sampling_attention_over_more_keys_than_queries_equals_burns_operator() {
        let device = Device::flex();
        // Two queries over five cached keys, as a cached pass computes them.
        let tensor = |seed: u32, length: usize| {
            let shape = [2, length, 3, 8];
            let n = shape.iter().product();
            Tensor::<4>::from_data(TensorData::new(values(n, 2.0, seed), shape), &device)
                .swap_dims(1, 2)
        };
        let (q, k, v) = (tensor(1, 2), tensor(2, 5), tensor(3, 5));
        let mask = mask(&device).slice([0..2, 0..1, 1..3, 0..5]);
        let fused = attention(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
        let options = AttentionModuleOptions::default();
        let mask = mask.expand([2, 3, 2, 5]);
        let reference = burn_attention(q, k, v, Some(mask), None, options);
        let tolerance = burn::tensor::Tolerance::<f32>::rel_abs(1e-4, 1e-5);
        fused
            .into_data()
            .assert_approx_eq::<f32>(&reference.into_data(), tolerance);
    }

    #[test]
    fn a_query_that_sees_no_key_gets_zeros_and_no_gradient() {
        let device = Device::flex().autodiff();
        let n = SHAPE.iter().product();
        let tensor = |seed: u32| {
            Tensor::<4>::from_data(TensorData::new(values(n, 2.0, seed), SHAPE), &device)
        };
        let q = tensor(1).require_grad();
        let output = attention(q.clone(), tensor(2), tensor(3), Some(mask(&device)));
        let grads = (output.clone() * tensor(4)).sum().backward();
        let [_, _, _, d] = SHAPE;
        let blind = |t: Tensor<4>| {
            t.slice([0..1, 0..3, 3..4, 0..d])
                .abs()
                .max()
                .into_scalar::<f32>()
        };
        assert_eq!(blind(output.inner()), 0.0);
        assert_eq!(blind(q.grad(&grads).expect("a gradient")), 0.0);
    }
}
