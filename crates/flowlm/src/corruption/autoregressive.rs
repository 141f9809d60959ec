//! The autoregressive baseline as a "corruption": the input is the clean sequence and the target
//! at position i is the token at i + 1. With a causal `DiffusionTransformer` this is next-token
//! prediction, so the baseline is the same network with a config switch, not a second model.

use super::{CleanBatch, CorruptedBatch, Corruption};
use crate::random::StdRng;
use crate::schedule::Schedule;

pub struct NextToken;

impl Corruption for NextToken {
    fn schedule(&self) -> Schedule {
        Schedule::LogLinear
    }

    fn corrupt(&self, clean: &CleanBatch, _rng: &mut StdRng) -> CorruptedBatch {
        let mut out = CorruptedBatch::untouched(clean, vec![0.0; clean.batch]);
        for row in 0..clean.batch {
            let start = row * clean.length;
            // Scored: predictions of eligible tokens (the answer in SFT), from the position before.
            let scored = (1..clean.length)
                .filter(|&i| clean.eligible[start + i])
                .count();
            if scored == 0 {
                continue;
            }
            out.normalizer += 1.0;
            for i in 0..clean.length - 1 {
                out.targets[start + i] = clean.tokens[start + i + 1];
                if clean.eligible[start + i + 1] {
                    out.weights[start + i] = 1.0 / scored as f32;
                }
            }
        }
        out.normalizer = out.normalizer.max(1.0);
        out
    }
}
