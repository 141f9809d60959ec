//! Packing tokenized documents into fixed-length rows, and the deterministic split.

use super::cache::TokenizedDocument;
use crate::corruption::CleanBatch;
use crate::error::{FlowError, Result};
use crate::random::{permutation, rng_for};

/// One training row: ids and which of them are scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub eligible: Vec<bool>,
}

#[derive(Debug, Clone)]
pub struct PackedDataset {
    pub sequence_length: usize,
    pub train: Vec<Sequence>,
    pub validation: Vec<Sequence>,
}

/// Stream salt of the train/validation split.
const SPLIT_STREAM: u64 = 0x5_0117;

/// Plain text: documents joined by `separator` and cut into rows of `length` (the tail that does
/// not fill a row is dropped). Prompt/response documents: one row each, prompt + response +
/// `separator` padding (LLaDA pads answers with EOS, and the padding counts as answer).
pub fn pack(
    documents: &[TokenizedDocument],
    length: usize,
    separator: u32,
    validation_fraction: f64,
    seed: u64,
) -> Result<PackedDataset> {
    if length < 2 {
        return Err(FlowError::config(
            "data.sequence_length",
            "must be at least 2",
        ));
    }
    let mut sequences = Vec::new();
    let mut stream: Vec<u32> = Vec::new();
    for d in documents {
        if d.prompt.is_empty() {
            stream.extend_from_slice(&d.body);
            stream.push(separator);
            continue;
        }
        if d.prompt.len() >= length {
            continue;
        }
        let mut tokens = d.prompt.clone();
        tokens.extend_from_slice(&d.body);
        tokens.truncate(length);
        let mut eligible = vec![false; d.prompt.len()];
        eligible.resize(tokens.len(), true);
        tokens.resize(length, separator);
        eligible.resize(length, true);
        sequences.push(Sequence { tokens, eligible });
    }
    for chunk in stream.chunks_exact(length) {
        sequences.push(Sequence {
            tokens: chunk.to_vec(),
            eligible: vec![true; length],
        });
    }
    if sequences.is_empty() {
        return Err(FlowError::config(
            "data.sequence_length",
            format!(
                "the data holds fewer than {length} tokens; use a shorter sequence_length or more text"
            ),
        ));
    }
    let order = permutation(sequences.len(), &mut rng_for(seed, SPLIT_STREAM));
    let held_out = if validation_fraction > 0.0 {
        ((sequences.len() as f64 * validation_fraction).round() as usize)
            .clamp(1, sequences.len().saturating_sub(1).max(1))
    } else {
        0
    };
    let mut validation = Vec::with_capacity(held_out);
    let mut train = Vec::with_capacity(sequences.len() - held_out);
    for (rank, &index) in order.iter().enumerate() {
        if rank < held_out {
            validation.push(sequences[index].clone());
        } else {
            train.push(sequences[index].clone());
        }
    }
    if train.is_empty() {
        train = validation.clone();
    }
    Ok(PackedDataset {
        sequence_length: length,
        train,
        validation,
    })
}

impl PackedDataset {
    /// Rows `indices` of `split` as a clean batch.
    pub fn batch(split: &[Sequence], indices: &[usize]) -> CleanBatch {
        let length = split[0].tokens.len();
        let mut tokens = Vec::with_capacity(indices.len() * length);
        let mut eligible = Vec::with_capacity(indices.len() * length);
        for &i in indices {
            tokens.extend_from_slice(&split[i].tokens);
            eligible.extend_from_slice(&split[i].eligible);
        }
        CleanBatch {
            tokens,
            batch: indices.len(),
            length,
            eligible,
        }
    }
}
