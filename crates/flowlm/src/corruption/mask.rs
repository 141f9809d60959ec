//! Absorbing (mask) corruption: each eligible token becomes the mask with probability t.

use super::{CleanBatch, CorruptedBatch, Corruption};
use crate::random::StdRng;
use crate::schedule::Schedule;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// MDLM's lower bound on t, so the 1/t weight stays finite.
pub const TIME_EPSILON: f64 = 1e-3;

/// How the per-row noise level t is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "sampling", rename_all = "snake_case", deny_unknown_fields)]
pub enum TimeSampling {
    /// MDLM: antithetic u/B + i/B mod 1, then (1 - eps) t + eps.
    #[default]
    Antithetic,
    /// BERT: a fixed rate (0.15).
    Fixed { rate: f64 },
    /// Seeds 001/004: uniform in [min, max] (0.15 to 0.99).
    Range { min: f64, max: f64 },
}

impl TimeSampling {
    /// Rates are shares of tokens: a fixed rate in (0, 1], a range 0 < min <= max <= 1.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::limits::{field, finite_above, finite_within};
        match *self {
            TimeSampling::Antithetic => Ok(()),
            TimeSampling::Fixed { rate } => {
                field("corruption.time.rate", finite_above(rate, 0.0, 1.0))
            }
            TimeSampling::Range { min, max } => {
                field("corruption.time.min", finite_above(min, 0.0, 1.0))?;
                field("corruption.time.max", finite_within(max, min, 1.0))
            }
        }
    }

    /// One t per row.
    pub fn draw(&self, rows: usize, rng: &mut StdRng) -> Vec<f64> {
        match *self {
            TimeSampling::Antithetic => {
                let u: f64 = rng.random();
                (0..rows)
                    .map(|i| {
                        let t = (u / rows as f64 + i as f64 / rows as f64) % 1.0;
                        (1.0 - TIME_EPSILON) * t + TIME_EPSILON
                    })
                    .collect()
            }
            TimeSampling::Fixed { rate } => vec![rate; rows],
            TimeSampling::Range { min, max } => {
                (0..rows).map(|_| rng.random_range(min..=max)).collect()
            }
        }
    }
}

pub struct MaskCorruption {
    pub mask_id: u32,
    pub time: TimeSampling,
}

impl Corruption for MaskCorruption {
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
            // Per-row division by the scored length: B * L for pretraining, the answer length
            // for SFT (LLaDA), both as ALGORITHMS.md states.
            let weight = (schedule.loss_weight(t) / eligible as f64) as f32;
            for i in row * clean.length..(row + 1) * clean.length {
                if clean.eligible[i] && rng.random::<f64>() < schedule.noise(t) {
                    out.input[i] = self.mask_id;
                    out.masked[i] = true;
                    out.weights[i] = weight;
                }
            }
        }
        out.normalizer = out.normalizer.max(1.0);
        out
    }
}
