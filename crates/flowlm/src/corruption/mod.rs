//! The forward process q(x_t | x_0). A corruption turns a clean batch into the network's input,
//! the targets, and the per-position loss weights (taken from its `Schedule`). The trainer only
//! sees this interface, so it does not know which corruption it runs.

mod mask;

pub use mask::{MaskCorruption, TimeSampling};

use crate::random::StdRng;
use crate::schedule::Schedule;
use serde::{Deserialize, Serialize};

/// Clean training sequences, `[batch, length]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanBatch {
    pub tokens: Vec<u32>,
    pub batch: usize,
    pub length: usize,
    /// Positions that may be corrupted and are scored (false for an SFT prompt).
    pub eligible: Vec<bool>,
}

impl CleanBatch {
    /// A batch where every position is eligible (pretraining).
    pub fn unconditional(tokens: Vec<u32>, batch: usize, length: usize) -> Self {
        let eligible = vec![true; tokens.len()];
        Self {
            tokens,
            batch,
            length,
            eligible,
        }
    }

    pub fn eligible_in_row(&self, row: usize) -> usize {
        self.eligible[row * self.length..(row + 1) * self.length]
            .iter()
            .filter(|&&e| e)
            .count()
    }
}

/// What the corruption did, and how each position is scored.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptedBatch {
    pub input: Vec<u32>,
    pub targets: Vec<u32>,
    /// Loss weight per position (0 = not scored). The loss is sum(w * CE) / normalizer.
    pub weights: Vec<f32>,
    pub normalizer: f32,
    /// Noise level per row (1 = all noise).
    pub time: Vec<f32>,
    pub masked: Vec<bool>,
    pub substituted: Vec<bool>,
}

pub trait Corruption {
    fn corrupt(&self, clean: &CleanBatch, rng: &mut StdRng) -> CorruptedBatch;
    fn schedule(&self) -> Schedule;
}

/// The corruption of a recipe and of a saved model (`flowlm.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CorruptionConfig {
    /// Absorbing-state masked diffusion (LLaDA / MDLM).
    Mask {
        #[serde(default)]
        time: TimeSampling,
    },
}

impl Default for CorruptionConfig {
    fn default() -> Self {
        CorruptionConfig::Mask {
            time: TimeSampling::default(),
        }
    }
}

impl CorruptionConfig {
    pub fn build(&self, mask_id: u32) -> Box<dyn Corruption> {
        match self {
            CorruptionConfig::Mask { time } => Box::new(MaskCorruption {
                mask_id,
                time: *time,
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CorruptionConfig::Mask { .. } => "mask",
        }
    }

    /// Whether a sampler can drive models trained with this corruption.
    pub fn supports_sampler(&self, sampler: &str) -> bool {
        match self {
            CorruptionConfig::Mask { .. } => matches!(sampler, "greedy" | "llada" | "remask"),
        }
    }
}

impl CorruptionConfig {
    /// The corruption used for validation figures: for masked models the MDLM ELBO itself
    /// (antithetic t over (0, 1]), whatever rate the training used, so the NELBO is honest.
    pub fn evaluation(&self, mask_id: u32) -> Box<dyn Corruption> {
        match self {
            CorruptionConfig::Mask { .. } => Box::new(MaskCorruption {
                mask_id,
                time: TimeSampling::Antithetic,
            }),
        }
    }
}
