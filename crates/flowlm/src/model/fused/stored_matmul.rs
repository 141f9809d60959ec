//! `x @ W^T` for a weight kept as its checkpoint stores it: `[out, in]`, in f32, f16 or bf16.
//!
//! Pretrained families keep 16-bit matrices 16-bit in memory. Through burn, every product first
//! widened the whole matrix to a fresh f32 buffer on one thread, then gemm packed that buffer
//! read through a transposed view, from memory: in a batch-1 generation profile of a bf16
//! LLaDA-shaped model the widening was 8% and gemm's packing 41%, the kernel itself 32%. Here
//! the output's columns are cut in blocks; each block of `W`'s rows is widened into a small f32
//! panel that stays in cache, and gemm multiplies `x` by it straight into those output columns.
//! Blocks are spread over the rayon pool, one single-threaded gemm each. The weight is read once,
//! in its own precision; the values are those of the widened product (widening is exact).

use super::strided::{Destination, Matrix, multiply_into};
use super::{FlexTensor, rows};
use burn::tensor::{DType, Device, FloatDType, Tensor};
use burn_flex::Flex;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

/// f32 values per panel (512 KiB): a block of `W`'s rows widened, sized to stay in a core's L2
/// cache. At LLaDA-8B's shapes, bf16, on 2 cores: 64 KiB panels fell to 0.8x of the widened
/// product at 1,024 rows (gemm re-packs `x` for every narrow block); 512 KiB ran 3.7x faster than
/// it at 64 rows and 1.37x at 1,024; 1 and 2 MiB lost a third at 64 rows x 4,096 inputs.
const PANEL_VALUES: usize = 128 * 1024;

/// `x [m, in] @ weight^T` for `weight [out, in]` of any float dtype -> `[m, out]` in f32.
pub fn stored_matmul(x: Tensor<2>, weight: &Tensor<2>) -> Tensor<2> {
    let plain_cpu = |device: Device| !device.is_autodiff() && device == Device::flex();
    // A matrix within one panel gains nothing from blocks: it takes the whole-matrix product,
    // whose threads also split the rows (and its rounding stays that of earlier releases).
    let fusable = x.dtype() == DType::F32
        && matches!(weight.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && plain_cpu(x.device())
        && plain_cpu(weight.device())
        && weight.shape().num_elements() > PANEL_VALUES;
    if !fusable {
        let widened = match weight.dtype() {
            DType::F32 => weight.clone(),
            _ => weight.clone().cast(FloatDType::F32),
        };
        return super::matmul(x, widened.transpose());
    }
    let (Ok(x), Ok(weight)) = (
        x.try_into_primitive::<Flex>(),
        weight.clone().try_into_primitive::<Flex>(),
    ) else {
        unreachable!("float tensors on the plain Flex device are Flex primitives")
    };
    Tensor::from_primitive::<Flex>(product(&rows(&x), &super::contiguous(weight)))
}

/// `x [m, k]` (row-major) times the transpose of `weight [n, k]` (row-major).
fn product(x: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    let [m, k] = [x.layout().shape()[0], x.layout().shape()[1]];
    let n = weight.layout().shape()[0];
    assert_eq!(
        weight.layout().shape()[1],
        k,
        "inner dimensions of a product"
    );
    let block = block_rows(n, k, rayon::current_num_threads());
    let x_values = &x.storage::<f32>()[x.layout().start_offset()..][..m * k];
    let mut output: Vec<f32> = Vec::with_capacity(m * n);
    let whole = Destination {
        start: output.as_mut_ptr(),
        rows: m,
        columns: n,
        row_stride: n,
    };
    (0..n.div_ceil(block))
        .into_par_iter()
        .with_max_len(1)
        .for_each_init(Vec::new, |panel: &mut Vec<f32>, index| {
            let columns = index * block..((index + 1) * block).min(n);
            widen_rows(weight, columns.clone(), k, panel);
            // The panel holds rows of `W`: read transposed, they are the block's columns.
            let rows_of_w = Matrix::row_major(panel, columns.len(), k).transposed();
            // SAFETY: the output's capacity holds `m * n` values, and each block writes only
            // its own columns of them.
            unsafe {
                multiply_into(
                    whole.columns(columns),
                    Matrix::row_major(x_values, m, k),
                    rows_of_w,
                )
            };
        });
    // SAFETY: the blocks cover columns 0..n of every row, so all `m * n` values were written.
    unsafe { output.set_len(m * n) };
    FlexTensor::from_data(burn::tensor::TensorData::new(output, [m, n]))
}

/// Rows of `W` per block: a panel within [`PANEL_VALUES`], at least four blocks per thread when
/// `W` has the rows for it (an uneven last wave then idles a core for a small share), a multiple
/// of 16 (gemm's register tiles).
fn block_rows(n: usize, k: usize, threads: usize) -> usize {
    let by_cache = PANEL_VALUES / k.max(1);
    let by_balance = n / (4 * threads.max(1));
    (by_cache.min(by_balance) / 16 * 16).max(16)
}

/// The rows `rows` of the row-major `weight [n, k]` as f32, into `panel` (resized to fit).
fn widen_rows(weight: &FlexTensor, rows: std::ops::Range<usize>, k: usize, panel: &mut Vec<f32>) {
    let span = rows.start * k..rows.end * k;
    panel.resize(span.len(), 0.0);
    let start = weight.layout().start_offset();
    let span = start + span.start..start + span.end;
    match weight.dtype() {
        DType::F32 => panel.copy_from_slice(&weight.storage::<f32>()[span]),
        DType::F16 => weight.storage::<f16>()[span].convert_to_f32_slice(panel),
        DType::BF16 => weight.storage::<bf16>()[span].convert_to_f32_slice(panel),
        other => unreachable!("stored_matmul admits f32, f16 and bf16 weights, not {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorCreationOptions, TensorData};

    /// The product of `x` and `weight^T` with the weight widened first, through burn.
    fn widened_product(x: Tensor<2>, weight: &Tensor<2>) -> Vec<f32> {
        let weight = weight.clone().cast(FloatDType::F32);
        x.matmul(weight.transpose())
            .into_data()
            .try_to_vec()
            .unwrap()
    }

    fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{what}: value {i} is {a}, expected {e}"
            );
        }
    }

    #[test]
    fn stored_weights_of_every_precision_give_the_widened_product() {
        let device = Device::flex();
        // 250 output rows of 600 inputs: blocks of 16 rows and a short last one (2 threads).
        let (m, k, n) = (5, 600, 250);
        // x is a transposed view, so its rows are strided.
        let x = Tensor::<2>::random([k, m], Distribution::Normal(0.0, 1.0), &device).transpose();
        let values = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), &device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let options = TensorCreationOptions::new(device.clone()).with_dtype(dtype);
            let data = TensorData::new(values.clone(), [n, k]).convert_dtype(dtype);
            let weight = Tensor::<2>::from_data(data, options);
            assert_eq!(weight.dtype(), dtype);
            let fused = stored_matmul(x.clone(), &weight)
                .into_data()
                .try_to_vec()
                .unwrap();
            let reference = widened_product(x.clone(), &weight);
            assert_close(&fused, &reference, &format!("{dtype:?}"));
        }
    }

    #[test]
    fn every_row_count_matches_the_product_in_f64() {
        let device = Device::flex();
        let (k, n) = (600, 300);
        let weight = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), &device);
        let w: Vec<f32> = weight.clone().into_data().try_to_vec().unwrap();
        // One row (gemm's vector path), a partial register tile, a full one, and several.
        for m in [1, 3, 64, 65, 130] {
            let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
            let xs: Vec<f32> = x.clone().into_data().try_to_vec().unwrap();
            let fused: Vec<f32> = stored_matmul(x, &weight).into_data().try_to_vec().unwrap();
            for (index, value) in fused.iter().enumerate() {
                let (row, column) = (index / n, index % n);
                let exact: f64 = (0..k)
                    .map(|i| xs[row * k + i] as f64 * w[column * k + i] as f64)
                    .sum();
                assert!(
                    (*value as f64 - exact).abs() < 1e-4,
                    "m {m}: value ({row}, {column}) is {value}, exactly {exact}"
                );
            }
        }
    }

    #[test]
    fn a_weight_row_slice_is_read_from_its_offset() {
        let device = Device::flex();
        let x = Tensor::<2>::random([3, 600], Distribution::Normal(0.0, 1.0), &device);
        let whole = Tensor::<2>::random([300, 600], Distribution::Normal(0.0, 1.0), &device);
        let rows = whole.slice([5..290, 0..600]);
        let fused = stored_matmul(x.clone(), &rows)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_close(&fused, &widened_product(x, &rows), "row slice");
    }

    #[test]
    fn blocks_fit_the_cache_split_the_work_and_keep_gemm_tiles_whole() {
        assert_eq!(block_rows(4096, 4096, 2), 32);
        assert_eq!(block_rows(4096, 384, 2), 336);
        assert_eq!(block_rows(70, 24, 2), 16);
        assert_eq!(block_rows(126_464, 4096, 2), 32);
        assert_eq!(block_rows(1024, 64, 2), 128);
    }
}
