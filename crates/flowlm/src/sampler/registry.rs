//! Samplers by name, built from one settings struct, so the CLI, the trainer's samples and the
//! benchmarks agree on what `--sampler NAME` means and on which models each one can drive.

use super::{
    AncestralSampler, AutoregressiveSampler, CorrectSampler, GreedySampler, Initialization,
    LladaSampler, RemaskOrder, RemaskSampler, Remasking, Sampler, UniformProcess,
};
use crate::corruption::CorruptionConfig;
use crate::error::{FlowError, Result};
use crate::vocabulary::Vocabulary;

/// Every sampler, in the order `--help` lists them, with the line `--help` shows.
pub const SAMPLERS: &[(&str, &str)] = &[
    (
        "greedy",
        "One token per step, the most confident masked position (seed 001)",
    ),
    (
        "llada",
        "LLaDA generate: blocks, low-confidence/random remasking, CFG, Fast-dLLM's rules and caches",
    ),
    (
        "dream",
        "Dream's diffusion_generate: the most confident masks by probability, margin or entropy (--alg)",
    ),
    (
        "remask",
        "Seed 004: sample all masks, re-mask a share each round",
    ),
    (
        "correct",
        "FlowLM: fill masks by confidence and revise any token the model distrusts",
    ),
    (
        "uniform",
        "Uniform diffusion: ancestral reverse process from random tokens (strided T)",
    ),
    (
        "duo",
        "Duo: ancestral sampling from random tokens, greedy last step",
    ),
    (
        "autoregressive",
        "Left-to-right greedy decoding of the autoregressive baseline",
    ),
    (
        "xflow",
        "x-prediction flow in embedding space with re-editing and hard commitment (seed 003)",
    ),
];

/// Whether `name` is a sampler.
pub fn is_sampler(name: &str) -> bool {
    SAMPLERS.iter().any(|(known, _)| *known == name)
}

/// Every sampler name, comma-separated (for errors).
pub fn sampler_names() -> String {
    let names: Vec<&str> = SAMPLERS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// The knobs of all samplers; each sampler reads the ones it has.
#[derive(Debug, Clone)]
pub struct SamplerSettings {
    pub steps: usize,
    pub block_length: usize,
    pub temperature: f64,
    pub remasking: Remasking,
    pub cfg_scale: f64,
    pub suppress_tokens: Vec<u32>,
    pub top_k: usize,
    pub top_p: f64,
    pub remask_ratio: f64,
    pub edit_threshold: f64,
    pub accept_threshold: f64,
    pub initialization: Initialization,
    /// correct: what happens to a distrusted token.
    pub revision: super::Revision,
    /// xflow: where the step sizes come from.
    pub step_policy: super::StepPolicyChoice,
    /// llada: LLaDA's fixed commit schedule, or Fast-dLLM's threshold or factor rule.
    pub parallel: super::ParallelRule,
    /// llada: end a row's answer once a block is all of these (EOS/EoT); empty = off.
    pub end_tokens: Vec<u32>,
    /// llada: Fast-dLLM's key/value cache mode.
    pub cache: crate::model::CacheMode,
    /// dream: how the masked slots are ranked (Dream's `alg`).
    pub dream_confidence: super::DreamConfidence,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        Self {
            steps: 64,
            block_length: 64,
            temperature: 0.0,
            remasking: Remasking::LowConfidence,
            cfg_scale: 0.0,
            suppress_tokens: Vec::new(),
            top_k: 50,
            top_p: 0.9,
            remask_ratio: 0.5,
            edit_threshold: 0.3,
            accept_threshold: 0.9,
            initialization: Initialization::Mask,
            revision: super::Revision::Replace,
            step_policy: super::StepPolicyChoice::Heuristic,
            parallel: super::ParallelRule::Schedule,
            end_tokens: Vec::new(),
            cache: crate::model::CacheMode::None,
            dream_confidence: super::DreamConfidence::default(),
        }
    }
}

impl SamplerSettings {
    /// The LLaDA sampler these settings describe (what `build_sampler("llada", ..)` returns;
    /// a server steps it row by row).
    pub fn llada(&self) -> LladaSampler {
        LladaSampler {
            steps: self.steps,
            block_length: self.block_length,
            temperature: self.temperature,
            remasking: self.remasking,
            cfg_scale: self.cfg_scale,
            suppress_tokens: self.suppress_tokens.clone(),
            parallel: self.parallel,
            end_tokens: self.end_tokens.clone(),
            cache: self.cache,
            cache_refresh: 0,
        }
    }

    /// Every setting against its range, naming the `flowlm generate` flag that sets it.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{MAX_STEPS, finite_above, finite_within, flag, within};
        flag("--steps", within(self.steps, 1, MAX_STEPS))?;
        flag("--block-length", within(self.block_length, 1, usize::MAX))?;
        flag("--temperature", finite_within(self.temperature, 0.0, 100.0))?;
        flag("--cfg-scale", finite_within(self.cfg_scale, 0.0, 100.0))?;
        flag("--top-p", finite_above(self.top_p, 0.0, 1.0))?;
        flag("--remask-ratio", finite_within(self.remask_ratio, 0.0, 1.0))?;
        flag(
            "--edit-threshold",
            finite_within(self.edit_threshold, 0.0, 1.0),
        )?;
        flag(
            "--accept-threshold",
            finite_within(self.accept_threshold, 0.0, 1.0),
        )?;
        if self.cache != crate::model::CacheMode::None
            && (self.temperature > 0.0 || self.cfg_scale > 0.0)
        {
            return Err(FlowError::argument(
                "--cache",
                "cached steps read each slot's most probable token; use --temperature 0 without --cfg-scale, or --cache none",
            ));
        }
        match self.parallel {
            super::ParallelRule::Schedule => Ok(()),
            super::ParallelRule::Threshold(tau) => flag("--threshold", finite_above(tau, 0.0, 1.0)),
            super::ParallelRule::Factor(f) => flag("--factor", finite_above(f, 0.0, 100.0)),
        }
    }
}

impl CorruptionConfig {
    /// The sampler a model trained with this corruption uses unless told otherwise.
    pub fn default_sampler(&self) -> &'static str {
        match self {
            CorruptionConfig::Mask { .. } | CorruptionConfig::MaskAndBlend { .. } => "llada",
            other => other.samplers()[0],
        }
    }
}

/// The sampler `name` for a model trained with `corruption`, or a clear error when that model
/// cannot be driven by it (a `duo` sampler on a masked-only model has no noise it understands).
pub fn build_sampler(
    name: &str,
    settings: &SamplerSettings,
    corruption: &CorruptionConfig,
    vocabulary: &Vocabulary,
) -> Result<Box<dyn Sampler>> {
    if !is_sampler(name) {
        return Err(FlowError::argument(
            "--sampler",
            format!(
                "unknown sampler `{name}`; choose one of {}",
                sampler_names()
            ),
        ));
    }
    if !corruption.supports_sampler(name) {
        return Err(FlowError::argument(
            "--sampler",
            format!(
                "the `{name}` sampler cannot drive this model: it was trained with the `{}` corruption, which supports {}",
                corruption.name(),
                corruption.samplers().join(", ")
            ),
        ));
    }
    settings.validate()?;
    let s = settings;
    Ok(match name {
        "greedy" => Box::new(GreedySampler),
        "llada" => Box::new(s.llada()),
        "dream" => Box::new(super::DreamSampler {
            steps: s.steps,
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            confidence: s.dream_confidence,
        }),
        "remask" => Box::new(RemaskSampler {
            steps: s.steps,
            remask_ratio: s.remask_ratio,
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            order: RemaskOrder::LowestConfidence,
        }),
        "correct" => Box::new(CorrectSampler {
            steps: s.steps,
            edit_threshold: s.edit_threshold,
            accept_threshold: s.accept_threshold,
            temperature: s.temperature,
            initialization: s.initialization,
            revision: s.revision,
            vocabulary: vocabulary.clone(),
        }),
        "uniform" | "duo" => {
            let process = match corruption {
                CorruptionConfig::Uniform { steps } => UniformProcess::Cosine {
                    total_steps: *steps,
                },
                CorruptionConfig::GaussianSoft {
                    parameterization, ..
                } => UniformProcess::Gaussian(*parameterization),
                _ => unreachable!("checked by supports_sampler"),
            };
            Box::new(AncestralSampler {
                steps: s.steps,
                temperature: s.temperature,
                greedy_last_step: name == "duo",
                process,
                vocabulary: vocabulary.clone(),
            })
        }
        "xflow" => Box::new(super::XFlowSampler {
            steps: s.steps,
            policy: s.step_policy.clone(),
        }),
        _ => Box::new(AutoregressiveSampler {
            temperature: s.temperature,
        }),
    })
}
