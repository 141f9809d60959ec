//! Uniform diffusion (seed 002, LDLM): at step k of T = 1000 each token is replaced, with the
//! cosine schedule's probability noise(k), by a uniformly random ordinary token. The model is
//! told k / T through its time embedding and predicts the clean token at every position.

use super::{CleanBatch, CorruptedBatch, Corruption};
use crate::random::StdRng;
use crate::schedule::Schedule;
use crate::vocabulary::Vocabulary;
use rand::Rng;

pub struct UniformCorruption {
    pub vocabulary: Vocabulary,
    /// T, the number of discrete steps.
    pub steps: usize,
}

impl Corruption for UniformCorruption {
    fn schedule(&self) -> Schedule {
        Schedule::Cosine { steps: self.steps }
    }

    fn corrupt(&self, clean: &CleanBatch, rng: &mut StdRng) -> CorruptedBatch {
        let schedule = self.schedule();
        // k uniform in 1..=T; k = 0 would be a clean input and teach nothing.
        let steps: Vec<usize> = (0..clean.batch)
            .map(|_| rng.random_range(1..=self.steps))
            .collect();
        let mut out = CorruptedBatch::untouched(
            clean,
            steps
                .iter()
                .map(|&k| schedule.time_of_step(k) as f32)
                .collect(),
        );
        for (row, &k) in steps.iter().enumerate() {
            let eligible = clean.eligible_in_row(row);
            if eligible == 0 {
                continue;
            }
            out.normalizer += 1.0;
            let noise = schedule.noise_at_step(k);
            let weight = (schedule.loss_weight(schedule.time_of_step(k)) / eligible as f64) as f32;
            for i in row * clean.length..(row + 1) * clean.length {
                if !clean.eligible[i] {
                    continue;
                }
                // x_0 prediction is scored everywhere, noised or not.
                out.weights[i] = weight;
                if self.vocabulary.is_special(clean.tokens[i]) {
                    continue;
                }
                if rng.random::<f64>() < noise {
                    let token = self.vocabulary.random_token(rng);
                    out.input[i] = token;
                    out.substituted[i] = token != clean.tokens[i];
                }
            }
        }
        out.normalizer = out.normalizer.max(1.0);
        out
    }
}
