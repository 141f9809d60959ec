//! Token choice: Gumbel-max in float64 from one row of logits (LLaDA), and temperature / top-k /
//! top-p sampling (seed 004) over a step's columns.

use crate::canvas::Canvas;
use crate::error::Result;
use crate::model::filtered::{Filter, FilteredChoices};
use crate::model::{Denoiser, argmax};
use crate::random::{StdRng, open_unit};
use rand::Rng;
use std::ops::Range;

/// LLaDA's candidate: argmax(exp(l) / (-log U)^T), i.e. argmax(l - T log(-log U)), in f64.
/// T = 0 is the plain argmax.
pub fn gumbel_argmax(logits: &[f32], temperature: f64, rng: &mut StdRng) -> usize {
    if temperature <= 0.0 {
        return argmax(logits).0;
    }
    let mut best = (0, f64::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        let u = open_unit(rng);
        let score = l as f64 - temperature * (-u.ln()).ln();
        if score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

/// One choice per slot of `columns` in every row: the argmax at temperature 0 (ranked on the
/// untempered distribution), else a draw from seed 004's filtered distribution, computed where
/// the logits are. The uniforms that draw come from `rng`, one per slot, row-major.
pub(crate) fn filtered_choices(
    denoiser: &dyn Denoiser,
    canvas: &Canvas,
    columns: Range<usize>,
    filter: &Filter,
    rng: &mut StdRng,
) -> Result<FilteredChoices> {
    if filter.temperature <= 0.0 {
        let ranked = denoiser.ranked_choices_in(canvas, columns, canvas.mask_id)?;
        return Ok(ranked.into());
    }
    let uniforms: Vec<f64> = (0..canvas.batch() * columns.len())
        .map(|_| rng.random())
        .collect();
    denoiser.filtered_choices_in(canvas, columns, canvas.mask_id, filter, &uniforms)
}
