//! FlowLM corruption-and-correction (seed 000): mask a fraction t of the tokens, then replace a
//! further `corruption_rate` of the still-visible ones with random ordinary tokens. The model must
//! restore both, so at inference it can be asked about every token, not only masked ones.

use super::{CleanBatch, CorruptedBatch, Corruption, TimeSampling};
use crate::random::StdRng;
use crate::schedule::Schedule;
use crate::vocabulary::Vocabulary;
use rand::Rng;

pub struct MaskAndSubstitute {
    pub vocabulary: Vocabulary,
    pub time: TimeSampling,
    /// Share of the unmasked eligible tokens replaced by a random token.
    pub corruption_rate: f64,
    /// Also score untouched positions (teaches "keep what is right" explicitly).
    pub score_all: bool,
}

impl Corruption for MaskAndSubstitute {
    fn schedule(&self) -> Schedule {
        Schedule::LogLinear
    }

    fn corrupt(&self, clean: &CleanBatch, rng: &mut StdRng) -> CorruptedBatch {
        let times = self.time.draw(clean.batch, rng);
        let schedule = self.schedule();
        let mut out = CorruptedBatch::untouched(clean, times.iter().map(|&t| t as f32).collect());
        for (row, &t) in times.iter().enumerate() {
            let eligible = clean.eligible_in_row(row);
            if eligible == 0 {
                continue;
            }
            out.normalizer += 1.0;
            // Masked slots carry the MDLM ELBO weight, so the masked part of this loss is the
            // masked model's loss; substituted and kept slots are plain cross-entropy (weight 1,
            // the schedule's weight at t = 1), as they are not part of the absorbing ELBO.
            let masked_weight = (schedule.loss_weight(t) / eligible as f64) as f32;
            let plain_weight = (schedule.loss_weight(1.0) / eligible as f64) as f32;
            for i in row * clean.length..(row + 1) * clean.length {
                // Special tokens (document separators) stay: substituting them would teach the
                // model to emit random separators.
                if !clean.eligible[i] || self.vocabulary.is_special(clean.tokens[i]) {
                    continue;
                }
                if rng.random::<f64>() < schedule.noise(t) {
                    out.input[i] = self.vocabulary.mask;
                    out.masked[i] = true;
                    out.weights[i] = masked_weight;
                } else if rng.random::<f64>() < self.corruption_rate {
                    out.input[i] = self.vocabulary.random_token_except(clean.tokens[i], rng);
                    out.substituted[i] = true;
                    out.weights[i] = plain_weight;
                } else if self.score_all {
                    out.weights[i] = plain_weight;
                }
            }
        }
        out.normalizer = out.normalizer.max(1.0);
        out
    }
}
