//! Cross-entropy at hidden positions for fixed hiding rates: one figure every model family can
//! report. A position is hidden the way the model's own corruption hides it -- the mask token for
//! masked models, a uniformly random token for uniform and Duo models, with the time input set to
//! the level whose noise rate equals the requested rate -- and scored against the clean token.

use crate::canvas::Canvas;
use crate::corruption::CorruptionConfig;
use crate::data::TokenizedDocument;
use crate::error::{FlowError, Result};
use crate::model::{Denoiser, SavedModel, softmax};
use crate::random::rng_for;
use crate::sampler::UniformProcess;
use crate::vocabulary::Vocabulary;
use burn::tensor::Device;
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskedCrossEntropy {
    pub rate: f64,
    /// Mean CE (nats) over hidden positions.
    pub cross_entropy: f64,
    pub hidden: usize,
    /// What the model was shown at hidden positions.
    pub hidden_by: &'static str,
}

/// The time input whose noise rate is `rate`, for uniform-state processes (bisection on the
/// process's clean probability, which falls as t grows).
fn time_for_rate(process: &UniformProcess, rate: f64, tokens: usize) -> f64 {
    let (mut low, mut high) = match process {
        UniformProcess::Cosine { .. } => (0.0, 1.0),
        UniformProcess::Gaussian(p) => p.time_range(),
    };
    for _ in 0..60 {
        let middle = 0.5 * (low + high);
        if 1.0 - process.clean_probability(middle, tokens) < rate {
            low = middle;
        } else {
            high = middle;
        }
    }
    0.5 * (low + high)
}

pub fn masked_cross_entropy(
    saved: &SavedModel,
    documents: &[TokenizedDocument],
    rates: &[f64],
    rows: usize,
    batch_size: usize,
    seed: u64,
    device: &Device,
    mut on_batch: impl FnMut(),
) -> Result<Vec<MaskedCrossEntropy>> {
    if let Some(bad) = rates.iter().find(|r| !(**r > 0.0 && **r <= 1.0)) {
        return Err(FlowError::argument(
            "--rates",
            format!("{bad} is not in (0, 1]"),
        ));
    }
    let sequences = super::evaluation_rows(saved, documents, rows, seed)?;
    let vocabulary = Vocabulary::for_tokenizer(&saved.tokenizer, saved.config.vocab_size);
    let process = match &saved.metadata.corruption {
        CorruptionConfig::Uniform { steps } => Some(UniformProcess::Cosine {
            total_steps: *steps,
        }),
        CorruptionConfig::GaussianSoft {
            parameterization, ..
        } => Some(UniformProcess::Gaussian(*parameterization)),
        _ => None,
    };
    let denoiser = saved.denoiser(device);
    let mut results = Vec::new();
    for (index, &rate) in rates.iter().enumerate() {
        let mut rng = rng_for(seed, 0x5EED + index as u64);
        let time = process
            .as_ref()
            .map(|p| time_for_rate(p, rate, vocabulary.regular_count()) as f32);
        let (mut total, mut hidden) = (0.0, 0usize);
        for batch in sequences.chunks(batch_size.max(1)) {
            let mut hidden_at = Vec::new();
            let mut canvas_rows = Vec::new();
            for clean in batch {
                let mut row = (*clean).clone();
                let mut flags = vec![false; row.len()];
                for (position, token) in row.iter_mut().enumerate() {
                    if vocabulary.is_special(*token) || rng.random::<f64>() >= rate {
                        continue;
                    }
                    flags[position] = true;
                    *token = if process.is_some() {
                        vocabulary.random_token(&mut rng)
                    } else {
                        vocabulary.mask
                    };
                }
                hidden_at.push(flags);
                canvas_rows.push(row);
            }
            let canvas = Canvas {
                padding: vec![0; canvas_rows.len()],
                rows: canvas_rows,
                response_start: 0,
                mask_id: vocabulary.mask,
                pad_id: saved.metadata.pad_token_id,
            };
            let times = time.map(|t| vec![t; canvas.batch()]);
            let logits = denoiser.logits(&canvas, times.as_deref())?;
            for (row, clean) in batch.iter().enumerate() {
                for (position, &flag) in hidden_at[row].iter().enumerate() {
                    if flag {
                        let probability =
                            softmax(logits.at(row, position))[clean[position] as usize];
                        total -= probability.max(1e-300).ln();
                        hidden += 1;
                    }
                }
            }
            on_batch();
        }
        results.push(MaskedCrossEntropy {
            rate,
            cross_entropy: total / hidden.max(1) as f64,
            hidden,
            hidden_by: if process.is_some() {
                "random tokens"
            } else {
                "mask"
            },
        });
    }
    Ok(results)
}
