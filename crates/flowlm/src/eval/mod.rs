//! Numbers a researcher reports: NELBO per token with its perplexity bound and bits per byte,
//! and throughput.

pub mod budget;
pub mod correction;
pub mod decoding_modes;
pub mod flow_states;
pub mod masked_ce;
pub mod throughput;

pub use correction::{CorrectionOptions, CorrectionReport, correction_benchmark};
pub use masked_ce::{MaskedCrossEntropy, masked_cross_entropy};

use crate::corruption::MaskCorruption;
use crate::corruption::TimeSampling;
use crate::data::{Sequence, TokenizedDocument, pack};
use crate::error::{FlowError, Result};
use crate::model::{FlowlmMetadata, LossModel, SavedModel};
use burn::tensor::Device;

/// `rows` rows of the model's length, spread evenly over held-out `documents` (both the
/// correction benchmark and the masked CE read the same rows for one seed).
pub fn evaluation_rows(
    saved: &SavedModel,
    documents: &[TokenizedDocument],
    rows: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    let length = saved.metadata.sequence_length;
    let dataset = pack(documents, length, saved.metadata.eos_token_id, 0.0, seed)?;
    if dataset.train.is_empty() {
        return Err(FlowError::argument(
            "--data",
            format!("holds fewer than {length} tokens, the model's sequence length"),
        ));
    }
    let rows = rows.max(1);
    let stride = (dataset.train.len() / rows).max(1);
    Ok(dataset
        .train
        .into_iter()
        .step_by(stride)
        .take(rows)
        .map(|s| s.tokens)
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LikelihoodReport {
    pub nelbo_per_token: f64,
    pub perplexity_bound: f64,
    pub bits_per_byte: f64,
    pub tokens: usize,
    pub bytes: usize,
    pub sequences: usize,
}

/// The masked-diffusion NELBO of `documents` (text) under `model`: rows of the model's length,
/// `samples` Monte-Carlo draws of t per row with a fixed seed. Bits per byte =
/// NELBO summed over the tokens / bytes of those tokens / ln 2. `model` is FlowLM's transformer
/// or a pretrained family's parameters; `metadata` gives the row length and the special ids.
#[allow(clippy::too_many_arguments)]
pub fn likelihood(
    model: &dyn LossModel,
    metadata: &FlowlmMetadata,
    documents: &[TokenizedDocument],
    text_bytes: usize,
    samples: usize,
    batch_size: usize,
    seed: u64,
    device: &Device,
    on_batch: impl FnMut(),
) -> Result<LikelihoodReport> {
    if samples == 0 {
        return Err(FlowError::argument("--samples", "must be at least 1"));
    }
    let length = metadata.sequence_length;
    let eos = metadata.eos_token_id;
    let dataset = pack(documents, length, eos, 0.0, seed)?;
    let sequences: Vec<Sequence> = dataset.train;
    let total_tokens: usize = documents.iter().map(|d| d.body.len() + 1).sum();
    let corruption = MaskCorruption {
        mask_id: metadata.mask_token_id,
        time: TimeSampling::Antithetic,
    };
    let nelbo = crate::trainer::mean_loss(
        model,
        &corruption,
        &sequences,
        batch_size,
        samples,
        seed,
        device,
        on_batch,
    )?;
    let tokens = sequences.len() * length;
    // Bytes covered by the scored rows, in proportion to the tokens they hold.
    let bytes = (text_bytes as f64 * tokens as f64 / total_tokens.max(1) as f64).round() as usize;
    Ok(LikelihoodReport {
        nelbo_per_token: nelbo,
        perplexity_bound: nelbo.exp(),
        bits_per_byte: nelbo * tokens as f64 / bytes.max(1) as f64 / std::f64::consts::LN_2,
        tokens,
        bytes,
        sequences: sequences.len(),
    })
}
