//! Masks plus the states x-prediction flow decoding visits (seed 003): the flow moves each slot's
//! input embedding from the mask embedding m towards the embedding of its current prediction,
//! so a masked model reads inputs (1 - s) m + s E[y] it never saw in training. Here, of the
//! slots masked at rate t (as MDLM masks them), a `blend_rate` share reads such a blend instead,
//! with s uniform in (0, 1] and y the clean token; or, with probability `wrong_rate`, a random
//! ordinary token (a prediction the flow will have to revise); or, with probability `own_rate`,
//! the model's own prediction from the masked input (its own mistakes, as the flow meets them:
//! one more forward pass per step). Every masked slot, blended or not, is scored against its
//! clean token with the masked loss weight.

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
    /// Share of the blends towards the model's own prediction (`wrong_rate + own_rate <= 1`).
    pub own_rate: f64,
}

impl MaskAndBlend {
    fn masks(&self) -> MaskCorruption {
        MaskCorruption {
            mask_id: self.vocabulary.mask,
            time: self.time,
        }
    }

    /// `tokens` as one-hot weights over the vocabulary `[slots * vocab]`.
    fn one_hot(&self, tokens: &[u32]) -> Vec<f32> {
        let vocab = self.vocabulary.size;
        let mut weights = vec![0f32; tokens.len() * vocab];
        for (i, &token) in tokens.iter().enumerate() {
            weights[i * vocab + token as usize] = 1.0;
        }
        weights
    }

    /// Each slot's input as weights over the vocabulary `[slots * vocab]`: one-hot at its input
    /// token, or (1 - s) at the mask and s at the blended token. `own` holds the model's
    /// prediction per slot; without it, the `own_rate` share of blends goes to random tokens.
    pub fn input_weights(
        &self,
        corrupted: &CorruptedBatch,
        own: Option<&[u32]>,
        rng: &mut StdRng,
    ) -> Vec<f32> {
        let vocab = self.vocabulary.size;
        let mask = self.vocabulary.mask as usize;
        let mut weights = self.one_hot(&corrupted.input);
        for i in 0..corrupted.input.len() {
            if !corrupted.masked[i] || rng.random::<f64>() >= self.blend_rate {
                continue;
            }
            let slot = &mut weights[i * vocab..(i + 1) * vocab];
            let clean = corrupted.targets[i];
            let u = rng.random::<f64>();
            let towards = match own {
                Some(own) if u < self.own_rate => own[i],
                _ if u < self.own_rate + self.wrong_rate => {
                    self.vocabulary.random_token_except(clean, rng)
                }
                _ => clean,
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
        let shape = [clean.batch, clean.length, self.vocabulary.size];
        let read = |weights: Vec<f32>| {
            let time = corrupted.time.clone();
            super::soft_input_logits(model, "mask_and_blend", weights, shape, time, device)
        };
        let own = if self.own_rate > 0.0 {
            // The model's predictions from the masked input, as the flow's first step makes them.
            let predictions = read(self.one_hot(&corrupted.input))?
                .detach()
                .argmax(2)
                .into_data();
            let predictions = crate::model::host_values("own predictions", predictions)?;
            Some(predictions.iter().map(|&t| t as u32).collect::<Vec<_>>())
        } else {
            None
        };
        let logits = read(self.input_weights(&corrupted, own.as_deref(), rng))?;
        let per_position = cross_entropy_per_position(logits, &corrupted.targets);
        let scores = TensorData::new(corrupted.weights, [clean.batch, clean.length]);
        let scores = Tensor::<2>::from_data(scores, device);
        Ok((per_position * scores)
            .sum()
            .div_scalar(corrupted.normalizer))
    }
}
