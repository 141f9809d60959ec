//! Fused operators for the CPU backend, for sampling and for training.
//!
//! `silu(gate) * up` (every SwiGLU feed-forward) costs three passes over memory through burn's
//! operators, and burn-flex computes the sigmoid with the scalar libm `expf` on one thread: in a
//! profile of batch-1 generation on the bundled model it was the largest share of the work left on
//! the calling thread while gemm's workers waited (7-10% of all samples). Here it is one pass, in
//! place over the gate's buffer, vectorised (a Cephes-style `exp` that the compiler widens to
//! AVX-512 or AVX2 lanes, chosen at run time) and split over the rayon pool.
//!
//! Training (burn's autodiff on the CPU backend) gets the same operator with its own backward:
//! one pass computes both gradients, `d gate = grad * up * s * (1 + gate * (1 - s))` and
//! `d up = grad * gate * s` with `s = sigmoid(gate)`, where burn's composition of sigmoid, two
//! products and their backward steps walks the tensors about eight times and calls `expf` twice.
//! The projections and the tied output head go through [`matmul`], which calls gemm into a fresh
//! `f32` buffer (forward and backward) instead of burn-flex's zeroed-then-copied output.
//!
//! Attention (`attention`), the rotary embedding (`rotary`), the per-row cross-entropy
//! (`cross_entropy`) and temperature-0 top choices (`top_choices`) follow the same pattern, one
//! submodule each; `stored_matmul` multiplies by a pretrained checkpoint's matrix as stored
//! (`[out, in]`, f16 and bf16 included).
//!
//! Any other tensor -- the GPU, bf16 activations, checkpointed autodiff -- takes burn's operators.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Shape, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

mod attention;
mod cross_entropy;
mod rotary;
mod stored_matmul;
mod strided;
mod top_choices;
pub use attention::attention;
pub use cross_entropy::cross_entropy;
pub use rotary::rotary;
pub use stored_matmul::stored_matmul;
pub use top_choices::top_choices;

/// Elements per rayon task: large enough that scheduling costs little, small enough that a
/// batch-1 feed-forward (tens of thousands of elements) spreads over the cores.
const CHUNK: usize = 8 * 1024;

/// `silu(gate) * up`, fused on the CPU backend; the two tensors have one shape.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if gate.dims() != up.dims() {
        return silu(gate) * up;
    }
    match on_cpu(gate, up) {
        Route::Plain(gate, up) => Tensor::from_primitive::<Flex>(swiglu_values(gate, up)),
        Route::Trained(gate, up) => Tensor::from_primitive::<Autodiff<Flex>>(record_binary(
            SwigluBackward,
            gate,
            up,
            swiglu_values,
        )),
        Route::Elsewhere(gate, up) => silu(gate) * up,
    }
}

/// Where a fused operator on two tensors runs.
// Taken apart as soon as it is returned; boxing the large variant would allocate on every call.
#[allow(clippy::large_enum_variant)]
enum Route<const D: usize, const E: usize> {
    /// Both on the CPU backend without autodiff (sampling).
    Plain(FlexTensor, FlexTensor),
    /// Both on the CPU backend under autodiff without checkpointing (training).
    Trained(TrainedTensor, TrainedTensor),
    /// Anything else (the GPU, bf16, checkpointed autodiff, mixed devices): burn's operators.
    Elsewhere(Tensor<D>, Tensor<E>),
}

/// Takes `a` and `b` apart into CPU primitives when both are f32 on the Flex device with the
/// same autodiff setting, and hands them back otherwise.
fn on_cpu<const D: usize, const E: usize>(a: Tensor<D>, b: Tensor<E>) -> Route<D, E> {
    let (a_device, b_device) = (a.device(), b.device());
    // Device equality ignores autodiff, so the plain and the trained device are told apart here.
    let fusable = a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a_device.clone().without_autodiff() == Device::flex()
        && b_device.clone().without_autodiff() == Device::flex()
        && a_device.is_autodiff() == b_device.is_autodiff();
    if !fusable {
        return Route::Elsewhere(a, b);
    }
    if !a_device.is_autodiff() {
        let (Ok(a), Ok(b)) = (
            a.try_into_primitive::<Flex>(),
            b.try_into_primitive::<Flex>(),
        ) else {
            unreachable!("float tensors on the plain Flex device are Flex primitives")
        };
        return Route::Plain(a, b);
    }
    // Checkpointed autodiff is another backend type: the conversion fails and the tensors go
    // back to burn's operators, so it works on clones (sharing the same buffers).
    let trained_a = a.clone().try_into_primitive::<Autodiff<Flex>>();
    let trained_b = b.clone().try_into_primitive::<Autodiff<Flex>>();
    match (trained_a, trained_b) {
        (Ok(a), Ok(b)) => Route::Trained(a, b),
        _ => Route::Elsewhere(a, b),
    }
}

type TrainedTensor = burn::backend::tensor::FloatTensor<Autodiff<Flex>>;

/// Where a fused operator on `N` tensors of one rank runs, with their CPU primitives.
enum Placed<const N: usize> {
    /// All f32 on the CPU backend without autodiff (sampling).
    Plain([FlexTensor; N]),
    /// All f32 on the CPU backend under autodiff without checkpointing (training).
    Trained([TrainedTensor; N]),
    /// Anything else: the caller runs burn's operators on the tensors it still holds.
    Elsewhere,
}

/// The primitives of `tensors` (cloned: buffers are shared, so this copies nothing) when a fused
/// operator can take them.
fn placed<const D: usize, const N: usize>(tensors: [&Tensor<D>; N]) -> Placed<N> {
    let autodiff = tensors.first().is_some_and(|t| t.device().is_autodiff());
    let fusable = tensors.iter().all(|t| {
        let device = t.device();
        t.dtype() == DType::F32
            && device.is_autodiff() == autodiff
            && device.without_autodiff() == Device::flex()
    });
    if !fusable {
        return Placed::Elsewhere;
    }
    // Checkpointed autodiff is another backend type: its conversion fails.
    fn every<T, const N: usize>(primitives: [Option<T>; N]) -> Option<[T; N]> {
        let primitives: Vec<T> = primitives.into_iter().collect::<Option<_>>()?;
        primitives.try_into().ok()
    }
    if autodiff {
        every(tensors.map(|t| t.clone().try_into_primitive::<Autodiff<Flex>>().ok()))
            .map_or(Placed::Elsewhere, Placed::Trained)
    } else {
        every(tensors.map(|t| t.clone().try_into_primitive::<Flex>().ok()))
            .map_or(Placed::Elsewhere, Placed::Plain)
    }
}

/// Records `forward(a, b)` as one autodiff node whose backward is `op`, which reads both inputs'
/// values. A tracked input keeps its buffer for the backward pass, so `forward` then gets shared
/// buffers (an in-place kernel copies first).
fn record_binary<O>(
    op: O,
    a: TrainedTensor,
    b: TrainedTensor,
    forward: impl Fn(FlexTensor, FlexTensor) -> FlexTensor,
) -> TrainedTensor
where
    O: Backward<Flex, 2, State = (NodeId, NodeId)>,
{
    match op
        .prepare::<NoCheckpointing>([a.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&a), prep.checkpoint(&b));
            let output = forward(a.primitive().clone(), b.primitive().clone());
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(a.into_primitive(), b.into_primitive())),
    }
}

/// A [`record_binary`] node's two input values and the gradient that reached it.
fn recorded_values(
    ops: &Ops<(NodeId, NodeId), 2>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let a = checkpointer.retrieve_node_output(ops.state.0);
    let b = checkpointer.retrieve_node_output(ops.state.1);
    (a, b, grads.consume::<Flex>(&ops.node))
}

/// Registers the gradient of each of a node's inputs, for the inputs that are tracked.
fn register<S, const N: usize>(grads: &mut Gradients, ops: &Ops<S, N>, gradients: [FlexTensor; N]) {
    for (node, gradient) in ops.parents.iter().zip(gradients) {
        if let Some(node) = node {
            grads.register::<Flex>(node.id, gradient);
        }
    }
}

/// `t` itself, or a copy when a stride is negative (a flipped view), so that every stride reads
/// forward from the view's start.
fn readable(t: FlexTensor) -> FlexTensor {
    if t.layout().strides().iter().all(|&s| s >= 0) {
        t
    } else {
        t.to_contiguous()
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    /// The gate's and up's nodes, whose values the gradients read.
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (gate, up, grad) = recorded_values(&ops, grads, checkpointer);
        let (d_gate, d_up) = swiglu_gradients(gate, up, grad);
        register(grads, &ops, [d_gate, d_up]);
    }
}

/// `layer.forward(x)`: a bias-free layer through [`matmul`], one with a bias through burn.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    match &layer.bias {
        None => matmul(x, layer.weight.val()),
        Some(_) => layer.forward(x),
    }
}

/// `x [.., in] @ weight [in, out]` (any strides: the tied output head passes a transposed
/// embedding), with the product's output allocated once.
///
/// burn-flex builds every matrix product's output as a zeroed byte vector that it then copies
/// into a 64-byte-aligned buffer (a `Vec<u8>` reports alignment 1): in a training profile that
/// copy, its zeroing and the fresh pages it touches were the largest cost outside gemm. Here
/// gemm writes straight into an `f32` vector, forward and backward. Other tensors take burn's
/// `linear`.
pub fn matmul<const D: usize>(x: Tensor<D>, weight: Tensor<2>) -> Tensor<D> {
    match on_cpu(x, weight) {
        Route::Plain(x, weight) => Tensor::from_primitive::<Flex>(project(&x, &weight)),
        Route::Trained(x, weight) => {
            let output = record_binary(LinearBackward, x, weight, |x, w| project(&x, &w));
            Tensor::from_primitive::<Autodiff<Flex>>(output)
        }
        Route::Elsewhere(x, weight) => burn::tensor::module::linear(x, weight, None),
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    /// The input's and the weight's nodes.
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (x, weight, grad) = recorded_values(&ops, grads, checkpointer);
        let [x_node, weight_node] = ops.parents;
        if let Some(node) = x_node {
            // d x = grad @ weight^T, back in x's shape.
            let d_x = product(&rows(&grad), &weight.transpose(0, 1));
            grads.register::<Flex>(node.id, d_x.reshape(x.layout().shape().clone()));
        }
        if let Some(node) = weight_node {
            // d weight = x^T @ grad over every row of the batch.
            grads.register::<Flex>(node.id, product(&rows(&x).transpose(0, 1), &rows(&grad)));
        }
    }
}

/// `x [.., in] @ weight [in, out]` -> `[.., out]`.
fn project(x: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    let output = product(&rows(x), weight);
    let mut dims = x.layout().shape().to_vec();
    *dims.last_mut().expect("at least one dimension") = weight.layout().shape()[1];
    output.reshape(Shape::from(dims))
}

/// `t [.., width]` as a matrix `[rows, width]`, every leading dimension folded into the rows.
fn rows(t: &FlexTensor) -> FlexTensor {
    let shape = t.layout().shape();
    let width = shape[shape.num_dims() - 1];
    contiguous(t.clone()).reshape(Shape::new([shape.num_elements() / width, width]))
}

/// The 2-D product `a [m, k] @ b [k, n]` (any strides) into a fresh row-major `f32` buffer.
fn product(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (a_shape, b_shape) = (a.layout().shape(), b.layout().shape());
    let (m, k, n) = (a_shape[0], a_shape[1], b_shape[1]);
    assert_eq!(b_shape[0], k, "inner dimensions of a product");
    let (a_strides, b_strides) = (a.layout().strides(), b.layout().strides());
    let (a_values, b_values) = (a.storage::<f32>(), b.storage::<f32>());
    let len = m * n;
    let mut output: Vec<f32> = Vec::with_capacity(len);
    // Threads only pay off on large products (burn-flex's threshold, 192^3 multiply-adds).
    let parallelism = if m * n * k >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the pointers address `a`'s and `b`'s elements through their own strides and
    // offsets (the layouts describe views inside their storage); with `read_dst` false gemm
    // writes all `m * n` outputs before anything reads them, so `set_len` exposes initialised
    // values only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            output.as_mut_ptr(),
            1,
            n as isize,
            false,
            a_values.as_ptr().add(a.layout().start_offset()),
            a_strides[1],
            a_strides[0],
            b_values.as_ptr().add(b.layout().start_offset()),
            b_strides[1],
            b_strides[0],
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        output.set_len(len);
    }
    FlexTensor::from_data(burn::tensor::TensorData::new(output, [m, n]))
}

/// `t` with its values in one run of its buffer.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

/// `silu(gate) * up` into the gate's buffer (copied first when shared: copy-on-write).
fn swiglu_values(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
    let (mut gate, up) = (contiguous(gate), contiguous(up));
    let n = gate.layout().num_elements();
    let (start, _) = gate.layout().contiguous_offsets().expect("contiguous");
    let gate_values = &mut gate.storage_mut::<f32>()[start..start + n];
    gate_values
        .par_chunks_mut(CHUNK)
        .zip(values(&up).par_chunks(CHUNK))
        .for_each(|(g, u)| widest_vectors!(swiglu_lanes(g: &mut [f32], u: &[f32])));
    gate
}

/// The gradients of `silu(gate) * up` for the upstream gradient `grad`, in one pass.
fn swiglu_gradients(
    gate: FlexTensor,
    up: FlexTensor,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let shape = gate.layout().shape().clone();
    let (gate, up, grad) = (contiguous(gate), contiguous(up), contiguous(grad));
    let n = shape.num_elements();
    let (mut d_gate, mut d_up) = (vec![0.0f32; n], vec![0.0f32; n]);
    d_gate
        .par_chunks_mut(CHUNK)
        .zip(d_up.par_chunks_mut(CHUNK))
        .zip(values(&gate).par_chunks(CHUNK))
        .zip(values(&up).par_chunks(CHUNK))
        .zip(values(&grad).par_chunks(CHUNK))
        .for_each(|((((dg, du), g), u), o)| {
            widest_vectors!(swiglu_gradient_lanes(
                dg: &mut [f32],
                du: &mut [f32],
                g: &[f32],
                u: &[f32],
                o: &[f32]
            ))
        });
    let tensor =
        |v: Vec<f32>| FlexTensor::from_data(burn::tensor::TensorData::new(v, shape.clone()));
    (tensor(d_gate), tensor(d_up))
}

/// Calls `lanes(args)` compiled for the widest vector unit this CPU has (AVX-512, else AVX2 +
/// FMA, else the build's baseline), chosen at run time; `-> type` names what `lanes` returns.
macro_rules! widest_vectors {
    ($lanes:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                $lanes($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                $lanes($($arg),*)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F (checked just above).
                unsafe { avx512($($arg),*) }
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { avx2($($arg),*) }
            } else {
                $lanes($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        $lanes($($arg),*)
    }};
}
use widest_vectors;

/// The loops every variant compiles: branch-free, so they vectorise.
#[inline(always)]
fn swiglu_lanes(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

#[inline(always)]
fn swiglu_gradient_lanes(
    d_gate: &mut [f32],
    d_up: &mut [f32],
    gate: &[f32],
    up: &[f32],
    grad: &[f32],
) {
    let inputs = gate.iter().zip(up).zip(grad);
    for ((dg, du), ((&g, &u), &o)) in d_gate.iter_mut().zip(d_up.iter_mut()).zip(inputs) {
        let s = 1.0 / (1.0 + exp(-g));
        *dg = o * u * s * (1.0 + g * (1.0 - s));
        *du = o * g * s;
    }
}

/// Lanes of partial results, so that the reductions vectorise (f32 addition is not
/// associative, so the compiler will not reorder a plain running sum).
const LANES: usize = 16;

#[inline(always)]
fn lanes_max(x: &[f32]) -> f32 {
    let mut partial = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in partial.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    partial
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[inline(always)]
fn lanes_sum(x: &[f32]) -> f32 {
    let mut partial = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (s, &v) in partial.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    partial.iter().chain(rest).sum()
}

#[inline(always)]
fn lanes_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut partial = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((s, &x), &y) in partial.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    partial.iter().sum::<f32>() + rest
}

/// `sum exp(x - shift)` over `x`, in blocks that stay in registers.
#[inline(always)]
fn exp_sum(x: &[f32], shift: f32) -> f32 {
    let mut shifted = [0.0f32; 64];
    let mut total = 0.0;
    for chunk in x.chunks(shifted.len()) {
        let part = &mut shifted[..chunk.len()];
        for (s, &v) in part.iter_mut().zip(chunk) {
            *s = exp(v - shift);
        }
        total += lanes_sum(part);
    }
    total
}

/// `e^x` for f32, branch-free (Cephes' `expf`: 2^n times a degree-6 polynomial on the
/// remainder), within 2 ulp of libm over the range where the result is a normal float; inputs
/// are clamped to it, so large negatives give ~1e-38 instead of 0 and large positives ~1e38.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HIGH is exact for the n that occur.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer and leaves it in the low mantissa bits.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // 2^n from n's bits: shifted's bits are ROUNDER's plus n, and n + 127 is the biased exponent.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn exp_is_within_two_ulp_of_libm_where_the_result_is_normal() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (ours, libm) = (exp(x), x.exp());
            worst = worst.max((ours - libm).abs() / libm);
            x += 0.001_7;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-200.0) < 1e-37 && exp(-200.0) >= 0.0);
        assert!(exp(200.0).is_finite() && exp(200.0) > 1e38);
    }

    pub(super) fn values(n: usize, scale: f32, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (h as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    #[test]
    fn fused_swiglu_equals_silu_times_up() {
        let device = Device::flex();
        // Several chunks plus a remainder; magnitudes up to 60 reach the clamped tails.
        let shape = [3, 7, 5_000];
        let n = shape.iter().product();
        let gate = values(n, 60.0, 1);
        let up = values(n, 3.0, 2);
        let tensor =
            |v: &Vec<f32>| Tensor::<3>::from_data(TensorData::new(v.clone(), shape), &device);
        let fused = swiglu(tensor(&gate), tensor(&up))
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for ((g, u), f) in gate.iter().zip(&up).zip(&fused) {
            let expected = g / (1.0 + (-g).exp()) * u;
            assert!(
                (f - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                "silu({g}) * {u}: fused {f}, expected {expected}"
            );
        }
    }

    #[test]
    fn fused_swiglu_reads_strided_and_shared_inputs_without_changing_them() {
        let device = Device::flex();
        let gate = Tensor::<2>::from_data(TensorData::new(values(600, 4.0, 3), [20, 30]), &device);
        let up = Tensor::<2>::from_data(TensorData::new(values(600, 2.0, 4), [30, 20]), &device)
            .transpose();
        let expected = silu(gate.clone()) * up.clone();
        // `gate` stays alive, so its buffer is shared and must be copied, not overwritten.
        let kept = gate.clone().into_data();
        let fused = swiglu(gate.clone(), up);
        fused
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Default::default());
        gate.into_data().assert_eq(&kept, true);
    }

    #[test]
    fn the_fused_backward_gives_the_gradients_of_silu_times_up() {
        let device = Device::flex().autodiff();
        let shape = [2, 9, 1_000];
        let n = shape.iter().product();
        let (gate, up, upstream) = (values(n, 12.0, 5), values(n, 3.0, 6), values(n, 1.0, 7));
        let gradients = |fused: bool| {
            let tensor =
                |v: &Vec<f32>| Tensor::<3>::from_data(TensorData::new(v.clone(), shape), &device);
            let (g, u) = (tensor(&gate).require_grad(), tensor(&up).require_grad());
            let output = if fused {
                swiglu(g.clone(), u.clone())
            } else {
                silu(g.clone()) * u.clone()
            };
            // A non-uniform upstream gradient, so each element's chain rule is checked.
            let grads = (output * tensor(&upstream)).sum().backward();
            let read = |t: &Tensor<3>| t.grad(&grads).expect("a gradient").into_data();
            (read(&g), read(&u))
        };
        let ((fused_gate, fused_up), (gate_grad, up_grad)) = (gradients(true), gradients(false));
        let tolerance = burn::tensor::Tolerance::<f32>::rel_abs(1e-4, 1e-5);
        fused_gate.assert_approx_eq::<f32>(&gate_grad, tolerance);
        fused_up.assert_approx_eq::<f32>(&up_grad, tolerance);
    }

    #[test]
    fn fused_linear_equals_linear_forward_and_its_gradients() {
        use burn::nn::LinearConfig;
        let run = |device: &Device, fused: bool| {
            let layer = LinearConfig::new(48, 40).with_bias(false).init(device);
            let x = Tensor::<3>::from_data(
                TensorData::new(values(3 * 50 * 48, 2.0, 8), [3, 50, 48]),
                device,
            );
            let x = if device.is_autodiff() {
                x.require_grad()
            } else {
                x
            };
            let y = if fused {
                linear(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let upstream = Tensor::<3>::from_data(
                TensorData::new(values(3 * 50 * 40, 1.0, 9), [3, 50, 40]),
                device,
            );
            let mut read = vec![y.clone().into_data()];
            if device.is_autodiff() {
                let grads = (y * upstream).sum().backward();
                read.push(x.grad(&grads).expect("an input gradient").into_data());
                read.push(
                    layer
                        .weight
                        .val()
                        .grad(&grads)
                        .expect("a weight gradient")
                        .into_data(),
                );
            }
            read
        };
        let tolerance = burn::tensor::Tolerance::<f32>::rel_abs(1e-4, 1e-5);
        for device in [Device::flex(), Device::flex().autodiff()] {
            // The same seed per device, so both layers start from the same weights.
            device.seed(3);
            let fused = run(&device, true);
            device.seed(3);
            let reference = run(&device, false);
            assert_eq!(fused.len(), if device.is_autodiff() { 3 } else { 1 });
            for (f, r) in fused.iter().zip(&reference) {
                f.assert_approx_eq::<f32>(r, tolerance);
            }
        }
    }

    #[test]
    fn fused_matmul_reads_a_transposed_weight_as_the_tied_head_passes_it() {
        let tolerance = burn::tensor::Tolerance::<f32>::rel_abs(1e-4, 1e-5);
        for device in [Device::flex(), Device::flex().autodiff()] {
            let run = |fused: bool| {
                let tensor = |n: usize, seed: u32, shape: [usize; 2]| {
                    Tensor::<2>::from_data(TensorData::new(values(n, 1.0, seed), shape), &device)
                };
                let (h, embedding) = (
                    tensor(70 * 32, 10, [70, 32]),
                    tensor(300 * 32, 11, [300, 32]),
                );
                let embedding = if device.is_autodiff() {
                    embedding.require_grad()
                } else {
                    embedding
                };
                let weight = embedding.clone().transpose();
                let logits = if fused {
                    matmul(h, weight)
                } else {
                    burn::tensor::module::linear(h, weight, None)
                };
                let mut read = vec![logits.clone().into_data()];
                if device.is_autodiff() {
                    let grads = (logits * tensor(70 * 300, 12, [70, 300])).sum().backward();
                    read.push(
                        embedding
                            .grad(&grads)
                            .expect("an embedding gradient")
                            .into_data(),
                    );
                }
                read
            };
            for (f, r) in run(true).iter().zip(&run(false)) {
                f.assert_approx_eq::<f32>(r, tolerance);
            }
        }
    }
}
