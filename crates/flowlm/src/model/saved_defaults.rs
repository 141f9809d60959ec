//! Sampler settings that a model ships with in `flowlm.json`.

use serde::{Deserialize, Serialize};

/// Sampler settings a model ships with; CLI flags override them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerDefaults {
    pub sampler: String,
    pub steps: usize,
    pub gen_length: usize,
    pub block_length: usize,
    pub temperature: f64,
    /// LLaDA's order of commits: `low-confidence` (the reference default) or `random` (each
    /// step commits slots in random order, which samples the model's own distribution; small
    /// models decoded by confidence fill the answer with their most frequent tokens first).
    pub remasking: crate::sampler::Remasking,
}

impl Default for SamplerDefaults {
    fn default() -> Self {
        Self {
            sampler: "llada".into(),
            steps: 64,
            gen_length: 64,
            block_length: 64,
            temperature: 0.0,
            remasking: crate::sampler::Remasking::LowConfidence,
        }
    }
}
