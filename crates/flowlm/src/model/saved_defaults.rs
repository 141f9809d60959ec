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

impl SamplerDefaults {
    /// Checks the defaults where they are written (a recipe's `[sampler]`, a model's
    /// `flowlm.json`), so that a bad value fails there and not later at `generate`. `section`
    /// prefixes the field names in errors.
    pub fn validate(&self, section: &str) -> crate::Result<()> {
        use crate::limits::{MAX_STEPS, finite_within, within};
        let field = |name: &str, check: std::result::Result<(), String>| {
            check.map_err(|message| crate::FlowError::config(format!("{section}.{name}"), message))
        };
        if !crate::sampler::is_sampler(&self.sampler) {
            return Err(crate::FlowError::config(
                format!("{section}.sampler"),
                format!(
                    "`{}` is not a sampler; choose one of {}",
                    self.sampler,
                    crate::sampler::sampler_names()
                ),
            ));
        }
        field("steps", within(self.steps, 1, MAX_STEPS))?;
        field(
            "gen_length",
            within(self.gen_length, 1, crate::limits::MAX_SEQUENCE),
        )?;
        field(
            "block_length",
            within(self.block_length, 1, self.gen_length),
        )?;
        field("temperature", finite_within(self.temperature, 0.0, 100.0))
    }
}
