//! The forward process q(x_t | x_0). A corruption turns a clean batch into the network's input,
//! the targets, and the per-position loss weights (taken from its `Schedule`). The trainer only
//! sees this interface, so it does not know which corruption it runs.

mod autoregressive;
mod blend;
mod gaussian_soft;
mod mask;
mod substitute;
mod uniform;

pub use autoregressive::NextToken;
pub use blend::MaskAndBlend;
pub use gaussian_soft::{
    GaussianParameterization, GaussianSoftCorruption, TemperatureAnnealing,
    effective_clean_probability,
};
pub use mask::{MaskCorruption, TimeSampling};
pub use substitute::MaskAndSubstitute;
pub use uniform::UniformCorruption;

use crate::error::Result;
use crate::model::{DenoiserInput, LossModel, default_positions};
use crate::random::StdRng;
use crate::schedule::Schedule;
use crate::vocabulary::Vocabulary;
use burn::tensor::{Device, Tensor, TensorData};
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

impl CorruptedBatch {
    /// Nothing corrupted or scored yet: input and targets are the clean tokens, one time per row.
    pub fn untouched(clean: &CleanBatch, time: Vec<f32>) -> Self {
        let n = clean.tokens.len();
        Self {
            input: clean.tokens.clone(),
            targets: clean.tokens.clone(),
            weights: vec![0.0; n],
            normalizer: 0.0,
            time,
            masked: vec![false; n],
            substituted: vec![false; n],
        }
    }
}

/// `Send + Sync`: data-parallel shards share one corruption across threads.
pub trait Corruption: Send + Sync {
    fn corrupt(&self, clean: &CleanBatch, rng: &mut StdRng) -> CorruptedBatch;
    fn schedule(&self) -> Schedule;

    /// The training loss of one clean batch. Token corruptions use the weighted cross-entropy of
    /// `corrupt`; corruptions with another input or objective (soft tokens) override this.
    fn loss(
        &self,
        model: &dyn LossModel,
        clean: &CleanBatch,
        training_step: usize,
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let _ = training_step;
        let corrupted = self.corrupt(clean, rng);
        crate::objective::token_cross_entropy(model, &corrupted, clean.batch, clean.length, device)
    }
}

/// Logits `[batch, length, vocab]` of FlowLM's transformer reading soft inputs: each slot's
/// `weights` over the vocabulary (`[batch * length * vocab]`) times the input embeddings, at
/// noise levels `time` (one per row). `kind` names the corruption in the error a pretrained
/// family (which has no such input) gets.
pub(crate) fn soft_input_logits(
    model: &dyn LossModel,
    kind: &str,
    weights: Vec<f32>,
    [batch, length, vocab]: [usize; 3],
    time: Vec<f32>,
    device: &Device,
) -> Result<Tensor<3>> {
    let model = model.transformer().ok_or_else(|| {
        crate::error::FlowError::config(
            "corruption.kind",
            format!(
                "{kind} feeds soft token embeddings to FlowLM's own transformer; a pretrained family trains with mask, mask_and_substitute or uniform"
            ),
        )
    })?;
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [batch * length, vocab]), device);
    let embeddings = weights.matmul(model.input_embeddings());
    let hidden = embeddings.dims()[1];
    let input = DenoiserInput::Embeddings(embeddings.reshape([batch, length, hidden]));
    let time = Tensor::<1>::from_data(TensorData::new(time, [batch]), device);
    let positions = default_positions(batch, length, device);
    Ok(model.forward(input, positions, Some(time), None))
}

fn default_corruption_rate() -> f64 {
    0.15
}

fn default_blend_rate() -> f64 {
    0.5
}

fn default_wrong_rate() -> f64 {
    0.25
}

fn default_uniform_steps() -> usize {
    1000
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
    /// FlowLM (seed 000): masks plus random substitutions of visible tokens.
    MaskAndSubstitute {
        #[serde(default)]
        time: TimeSampling,
        #[serde(default = "default_corruption_rate")]
        corruption_rate: f64,
        #[serde(default)]
        score_all: bool,
    },
    /// Masks, some of them read as blends towards a token: the states x-prediction flow
    /// decoding visits (seed 003).
    MaskAndBlend {
        #[serde(default)]
        time: TimeSampling,
        #[serde(default = "default_blend_rate")]
        blend_rate: f64,
        #[serde(default = "default_wrong_rate")]
        wrong_rate: f64,
        #[serde(default)]
        own_rate: f64,
    },
    /// Uniform diffusion (seed 002, LDLM): cosine schedule over `steps` discrete steps.
    Uniform {
        #[serde(default = "default_uniform_steps")]
        steps: usize,
    },
    /// Duo-style Gaussian soft tokens (seed 001).
    GaussianSoft {
        #[serde(default)]
        parameterization: GaussianParameterization,
        #[serde(default)]
        temperature: TemperatureAnnealing,
        /// The per-row weight of the symmetric KL (recorded in the model's flowlm.json).
        #[serde(default)]
        view_scale: crate::objective::ViewScale,
        /// The per-position loss: `symmetric_kl` (seed 001, default) or `cross_entropy`.
        #[serde(default)]
        loss: crate::objective::SoftTokenLoss,
    },
    /// No corruption: next-token prediction with a causal model (the autoregressive baseline).
    Autoregressive,
}

impl Default for CorruptionConfig {
    fn default() -> Self {
        CorruptionConfig::Mask {
            time: TimeSampling::default(),
        }
    }
}

impl CorruptionConfig {
    pub fn build(&self, vocabulary: &Vocabulary) -> Box<dyn Corruption> {
        let vocabulary = vocabulary.clone();
        match self {
            CorruptionConfig::Mask { time } => Box::new(MaskCorruption {
                mask_id: vocabulary.mask,
                time: *time,
            }),
            CorruptionConfig::MaskAndSubstitute {
                time,
                corruption_rate,
                score_all,
            } => Box::new(MaskAndSubstitute {
                vocabulary,
                time: *time,
                corruption_rate: *corruption_rate,
                score_all: *score_all,
            }),
            CorruptionConfig::MaskAndBlend {
                time,
                blend_rate,
                wrong_rate,
                own_rate,
            } => Box::new(MaskAndBlend {
                vocabulary,
                time: *time,
                blend_rate: *blend_rate,
                wrong_rate: *wrong_rate,
                own_rate: *own_rate,
            }),
            CorruptionConfig::Uniform { steps } => Box::new(UniformCorruption {
                vocabulary,
                steps: *steps,
            }),
            CorruptionConfig::GaussianSoft {
                parameterization,
                temperature,
                view_scale,
                loss,
            } => Box::new(GaussianSoftCorruption {
                vocabulary,
                parameterization: *parameterization,
                temperature: *temperature,
                view_scale: *view_scale,
                loss: *loss,
            }),
            CorruptionConfig::Autoregressive => Box::new(NextToken),
        }
    }

    /// Every parameter against its range; errors name the `corruption.*` field.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::limits::{field, finite_above, finite_within, within};
        match self {
            CorruptionConfig::Mask { time } => time.validate(),
            CorruptionConfig::MaskAndSubstitute {
                time,
                corruption_rate,
                ..
            } => {
                time.validate()?;
                field(
                    "corruption.corruption_rate",
                    finite_within(*corruption_rate, 0.0, 1.0),
                )
            }
            CorruptionConfig::MaskAndBlend {
                time,
                blend_rate,
                wrong_rate,
                own_rate,
            } => {
                time.validate()?;
                field(
                    "corruption.blend_rate",
                    finite_within(*blend_rate, 0.0, 1.0),
                )?;
                field(
                    "corruption.wrong_rate",
                    finite_within(*wrong_rate, 0.0, 1.0),
                )?;
                // The two shares of the blends that do not go to the clean token.
                field(
                    "corruption.own_rate",
                    finite_within(*own_rate, 0.0, 1.0 - wrong_rate),
                )
            }
            CorruptionConfig::Uniform { steps } => field(
                "corruption.steps",
                within(*steps, 1, crate::limits::MAX_STEPS),
            ),
            CorruptionConfig::GaussianSoft {
                parameterization,
                temperature,
                ..
            } => {
                match *parameterization {
                    GaussianParameterization::Seed { time_min, time_max } => {
                        field(
                            "corruption.parameterization.time_min",
                            finite_within(time_min, 0.0, 1.0),
                        )?;
                        field(
                            "corruption.parameterization.time_max",
                            finite_within(time_max, time_min, 1.0),
                        )?;
                    }
                    GaussianParameterization::Duo {
                        gamma_start,
                        gamma_end,
                    } => {
                        field(
                            "corruption.parameterization.gamma_start",
                            finite_within(gamma_start, -100.0, 100.0),
                        )?;
                        field(
                            "corruption.parameterization.gamma_end",
                            finite_within(gamma_end, -100.0, 100.0),
                        )?;
                    }
                }
                field(
                    "corruption.temperature.start",
                    finite_above(temperature.start, 0.0, 1e6),
                )?;
                field(
                    "corruption.temperature.steps",
                    finite_above(temperature.steps, 0.0, 1e12),
                )?;
                field(
                    "corruption.temperature.floor",
                    finite_above(temperature.floor, 0.0, temperature.start),
                )
            }
            CorruptionConfig::Autoregressive => Ok(()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CorruptionConfig::Mask { .. } => "mask",
            CorruptionConfig::MaskAndSubstitute { .. } => "mask_and_substitute",
            CorruptionConfig::MaskAndBlend { .. } => "mask_and_blend",
            CorruptionConfig::Uniform { .. } => "uniform",
            CorruptionConfig::GaussianSoft { .. } => "gaussian_soft",
            CorruptionConfig::Autoregressive => "autoregressive",
        }
    }

    /// The samplers that can drive a model trained with this corruption.
    pub fn samplers(&self) -> &'static [&'static str] {
        match self {
            CorruptionConfig::Mask { .. } | CorruptionConfig::MaskAndBlend { .. } => {
                &["greedy", "llada", "dream", "remask", "correct", "xflow"]
            }
            CorruptionConfig::MaskAndSubstitute { .. } => {
                &["correct", "greedy", "llada", "dream", "remask", "xflow"]
            }
            CorruptionConfig::Uniform { .. } => &["uniform"],
            CorruptionConfig::GaussianSoft { .. } => &["duo"],
            CorruptionConfig::Autoregressive => &["autoregressive"],
        }
    }

    /// Whether a sampler can drive models trained with this corruption.
    pub fn supports_sampler(&self, sampler: &str) -> bool {
        self.samplers().contains(&sampler)
    }

    /// Whether the model has learnt what the mask token means.
    pub fn uses_mask(&self) -> bool {
        matches!(
            self,
            CorruptionConfig::Mask { .. }
                | CorruptionConfig::MaskAndSubstitute { .. }
                | CorruptionConfig::MaskAndBlend { .. }
        )
    }

    /// The corruption used for validation figures: for masked models the MDLM ELBO itself
    /// (antithetic t over (0, 1]), whatever rate the training used, so the NELBO is honest;
    /// the others validate on their own training loss.
    pub fn evaluation(&self, vocabulary: &Vocabulary) -> Box<dyn Corruption> {
        match self {
            CorruptionConfig::Mask { .. } | CorruptionConfig::MaskAndBlend { .. } => {
                Box::new(MaskCorruption {
                    mask_id: vocabulary.mask,
                    time: TimeSampling::Antithetic,
                })
            }
            other => other.build(vocabulary),
        }
    }
}
