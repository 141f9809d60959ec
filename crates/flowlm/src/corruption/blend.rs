//! Masks plus the states x-prediction flow decoding visits (seed 003): the flow moves each slot's
//! input embedding from the mask embedding m towards the embedding of its current prediction,
//! so a masked model reads inputs (1 - s) m + s E[y] it never saw in training. Here, of the
//! slots masked at rate t (as MDLM masks them), a `blend_rate` share reads such a blend instead,
//! with s uniform in (0, 1] and y the clean token, or with probability `wrong_rate` a random
//! ordinary token (a prediction the flow will have to revise). Every masked slot, blended or
//! not, is scored against its clean token with the masked loss weight.

use super::{CleanBatch, CorruptedBatch, Corruption, MaskCorruption, TimeSampling};
use crate::error::Result;
use crate::model::LossModel;
use crate::objective::cross_entropy_per_position;
use crate::random::StdRng;
use crate::schedule::Schedule;
use crate::vocabulary::Vocabulary;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;

pub struct MaskAndBlend {
    pub vocabulary: Vocabulary,
    pub time: TimeSampling,
    /// Share of the masked slots whose input is a blend instead of the mask.
    pub blend_rate: f64,
    /// Share of the blends towards a random token instead of the clean one.
    pub wrong_rate: f64,
}

impl MaskAndBlend {
    fn masks(&self) -> MaskCorruption {
        MaskCorruption {
            mask_id: self.vocabulary.mask,
            time: self.time,
        }
    }

    /// Each slot's input as weights over the vocabulary `[slots * vocab]`: one-hot at its input
    /// token, or (1 - s) at the mask and s at the blended token.
    pub fn input_weights(&self, corrupted: &CorruptedBatch, rng: &mut StdRng) -> Vec<f32> {
        let vocab = self.vocabulary.size;
        let mask = self.vocabulary.mask as usize;
        let mut weights = vec![0f32; corrupted.input.len() * vocab];
        for (i, &token) in corrupted.input.iter().enumerate() {
            let slot = &mut weights[i * vocab..(i + 1) * vocab];
            if !corrupted.masked[i] || rng.random::<f64>() >= self.blend_rate {
                slot[token as usize] = 1.0;
                continue;
            }
            let clean = corrupted.targets[i];
            let towards = if rng.random::<f64>() < self.wrong_rate {
                self.vocabulary.random_token_except(clean, rng)
            } else {
                clean
            };
            // s in (0, 1]: 1 - U with U in [0, 1).
            let s = 1.0 - rng.random::<f64>();
            slot[mask] = (1.0 - s) as f32;
            slot[towards as usize] += s as f32;
        }
        weights
    }
}

impl Corruption for MaskAndBlend {
    fn schedule(&self) -> Schedule {
        Schedule::LogLinear
    }

    /// The token view: the masks alone (what validation and token-level tools read).
    fn corrupt(&self, clean: &CleanBatch, rng: &mut StdRng) -> CorruptedBatch {
        self.masks().corrupt(clean, rng)
    }

    fn loss(
        &self,
        model: &dyn LossModel,
        clean: &CleanBatch,
        _training_step: usize,
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let corrupted = self.corrupt(clean, rng);
        let (batch, length) = (clean.batch, clean.length);
        let logits = super::soft_input_logits(
            model,
            "mask_and_blend",
            self.input_weights(&corrupted, rng),
            [batch, length, self.vocabulary.size],
            corrupted.time.clone(),
            device,
        )?;
        let per_position = cross_entropy_per_position(logits, &corrupted.targets, device);
        let scores =
            Tensor::<2>::from_data(TensorData::new(corrupted.weights, [batch, length]), device);
        Ok((per_position * scores)
            .sum()
            .div_scalar(corrupted.normalizer))
    }
}
