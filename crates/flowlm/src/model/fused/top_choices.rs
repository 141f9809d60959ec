//! Each row's most probable token and its probability, for temperature-0 confidence samplers,
//! in one read of the row.
//!
//! Through burn's operators the same figures take a bias added to forbid the mask token, a
//! maximum with indices, a subtraction, a scalar `expf` and a sum, each a pass over the
//! `[batch, columns, vocab]` logits of every sampling step. Here one vectorised pass per row
//! finds the maximum and one sums the shifted exponentials; only `[batch, columns]` values are
//! returned.

use burn::tensor::Tensor;
use rayon::prelude::*;

use super::{Placed, contiguous, exp_sum, lanes_max, placed, values, widest_vectors};

/// Per row of `logits` `[B, L, V]` (row-major over B and L): the first most probable token other
/// than `forbidden` and its softmax probability over the vocabulary without `forbidden`; `None`
/// unless the logits are f32 on the CPU backend without autodiff (the caller's operators then
/// compute the same figures).
pub fn top_choices(logits: &Tensor<3>, forbidden: u32) -> Option<(Vec<u32>, Vec<f64>)> {
    let Placed::Plain([logits]) = placed([logits]) else {
        return None;
    };
    let logits = contiguous(logits);
    let vocab = logits.layout().shape()[2];
    let forbidden = forbidden as usize;
    let (tokens, probabilities) = values(&logits)
        .par_chunks(vocab)
        .map(|row| widest_vectors!(top(row: &[f32], forbidden: usize) -> (u32, f64)))
        .unzip();
    Some((tokens, probabilities))
}

#[inline(always)]
fn top(row: &[f32], forbidden: usize) -> (u32, f64) {
    let (before, after) = if forbidden < row.len() {
        (&row[..forbidden], &row[forbidden + 1..])
    } else {
        (row, &[][..])
    };
    let max = lanes_max(before).max(lanes_max(after));
    let token = row
        .iter()
        .enumerate()
        .position(|(i, &x)| x == max && i != forbidden)
        .unwrap_or(0);
    let total = exp_sum(before, max) + exp_sum(after, max);
    (token as u32, 1.0 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::tests::values;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn fused_top_choices_take_the_first_maximum_and_skip_the_forbidden_token() {
        let (rows, vocab) = (3 * 5, 517);
        let mut v = values(rows * vocab, 6.0, 1);
        // Row 0: a tie for the maximum (the first wins); row 1: the forbidden token is the
        // largest logit; row 2: a maximum past the forbidden token.
        v[10] = 50.0;
        v[300] = 50.0;
        v[vocab + 4] = 60.0;
        v[vocab + 7] = 20.0;
        v[2 * vocab + 400] = 30.0;
        let logits =
            Tensor::<3>::from_data(TensorData::new(v.clone(), [3, 5, vocab]), &Device::flex());
        let (tokens, probabilities) = top_choices(&logits, 4).expect("f32 on the CPU");
        assert_eq!(&tokens[..3], &[10, 7, 400]);
        // The figures in f64 on the host, row by row.
        for (row, values) in v.chunks(vocab).enumerate() {
            let allowed = || values.iter().enumerate().filter(|&(i, _)| i != 4);
            let max = allowed().map(|(_, &x)| x).fold(f32::NEG_INFINITY, f32::max);
            let first = allowed().find(|&(_, &x)| x == max).map(|(i, _)| i as u32);
            let total: f64 = allowed().map(|(_, &x)| (x as f64 - max as f64).exp()).sum();
            assert_eq!(Some(tokens[row]), first, "row {row}");
            let (p, r) = (probabilities[row], 1.0 / total);
            assert!((p - r).abs() <= 1e-5 * r, "row {row}: {p} vs {r}");
        }
    }
}
