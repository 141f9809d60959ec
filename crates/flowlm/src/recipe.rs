//! Training recipes: TOML files in `configs/`. Every field has a documented default; unknown
//! keys are errors; `--set section.key=value` overrides a field; a run directory keeps the
//! resolved recipe it ran with (`recipe.toml`).

use crate::corruption::CorruptionConfig;
use crate::error::{FlowError, Result};
use crate::model::{Activation, NormKind, PositionEncoding};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    pub data: DataSection,
    pub tokenizer: TokenizerSection,
    pub model: ModelSection,
    pub corruption: CorruptionConfig,
    pub training: TrainingSection,
    pub sampler: crate::model::saved_defaults::SamplerDefaults,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// A text file, a JSONL file or a folder of them.
    pub path: PathBuf,
    /// Tokens per training row.
    pub sequence_length: usize,
    /// Share of rows held out for validation.
    pub validation_fraction: f64,
    /// Cache tokenized corpora on disk (`$FLOWLM_CACHE_DIR`).
    pub cache: bool,
    /// File names under `path` left out of training (held out for evaluation).
    pub exclude: Vec<String>,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("../shared/data/shakespeare"),
            sequence_length: 128,
            validation_fraction: 0.02,
            cache: true,
            exclude: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// Train a byte-level BPE of `vocab_size` on the training data.
    Bpe,
    /// GPT-2 from `path` (a folder with encoder.json + vocab.bpe).
    Gpt2,
    /// Any tokenizer.json at `path`.
    File,
    /// Seed 002's character vocabulary built from the data.
    Char,
    /// Seed 002's word vocabulary built from the data.
    Word,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerSection {
    pub kind: TokenizerKind,
    pub vocab_size: usize,
    pub path: Option<PathBuf>,
    /// Minimum count of a unit in the simple vocabularies.
    pub min_count: usize,
}

impl Default for TokenizerSection {
    fn default() -> Self {
        Self {
            kind: TokenizerKind::Bpe,
            vocab_size: 4096,
            path: None,
            min_count: 1,
        }
    }
}

/// The architecture; `vocab_size` and `max_position_embeddings` follow from the tokenizer and
/// the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub position_encoding: PositionEncoding,
    pub norm: NormKind,
    pub hidden_act: Activation,
    pub tie_word_embeddings: bool,
    pub time_conditioning: bool,
    pub causal: bool,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 683,
            position_encoding: PositionEncoding::Rope,
            norm: NormKind::Rms,
            hidden_act: Activation::Swiglu,
            tie_word_embeddings: true,
            time_conditioning: false,
            causal: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSection {
    pub seed: u64,
    pub batch_size: usize,
    pub gradient_accumulation: usize,
    /// Data-parallel shards per micro-batch: each runs forward and backward on its own model
    /// replica and thread, and their gradients are summed. Part of what a run computes (each
    /// shard draws its own corruption), so it is a recipe setting, not a machine setting.
    pub data_parallel_shards: usize,
    pub max_steps: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    /// The cosine decay ends at learning_rate * this.
    pub final_learning_rate_ratio: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    pub gradient_clip: f64,
    /// LLaDA: this share of batches is cut to a random shorter length.
    pub random_length_probability: f64,
    pub eval_every: usize,
    pub eval_batches: usize,
    pub sample_every: usize,
    pub checkpoint_every: usize,
    pub log_every: usize,
    /// Prompt for the samples printed during training.
    pub sample_prompt: String,
}

impl Default for TrainingSection {
    fn default() -> Self {
        Self {
            seed: 42,
            batch_size: 16,
            gradient_accumulation: 1,
            data_parallel_shards: 2,
            max_steps: 2000,
            learning_rate: 1e-3,
            warmup_steps: 100,
            final_learning_rate_ratio: 0.1,
            weight_decay: 0.01,
            gradient_clip: 1.0,
            random_length_probability: 0.01,
            eval_every: 250,
            eval_batches: 8,
            sample_every: 500,
            checkpoint_every: 500,
            log_every: 10,
            sample_prompt: String::new(),
        }
    }
}

impl Recipe {
    /// Reads a recipe file and applies `overrides` (`section.key=value`, value in TOML syntax;
    /// a bare word is taken as a string).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = crate::io::read_to_string(path)?;
        Self::parse(&text, path, overrides)
    }

    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| FlowError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for entry in overrides {
            apply_override(&mut value, entry)?;
        }
        let names_sampler = value
            .get("sampler")
            .and_then(|section| section.get("sampler"))
            .is_some();
        let mut recipe: Recipe =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| FlowError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
        if !names_sampler {
            // A uniform or Duo model cannot run LLaDA's sampler, the section's default.
            recipe.sampler.sampler = recipe.corruption.default_sampler().to_string();
        }
        recipe.validate()?;
        Ok(recipe)
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| FlowError::config("recipe", e.to_string()))
    }

    /// Every field against its range (see [`crate::limits`]), before any work starts.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{
            MAX_ACCUMULATION, MAX_BATCH, MAX_FEED_FORWARD, MAX_HIDDEN, MAX_LAYERS, MAX_SEQUENCE,
            MAX_SHARDS, MAX_TRAINING_STEPS, MAX_VOCABULARY, field, finite_above, finite_within,
            within,
        };
        let t = &self.training;
        let m = &self.model;
        field("training.batch_size", within(t.batch_size, 1, MAX_BATCH))?;
        field(
            "training.gradient_accumulation",
            within(t.gradient_accumulation, 1, MAX_ACCUMULATION),
        )?;
        field(
            "training.data_parallel_shards",
            within(t.data_parallel_shards, 1, MAX_SHARDS.min(t.batch_size)),
        )?;
        field(
            "training.max_steps",
            within(t.max_steps, 1, MAX_TRAINING_STEPS),
        )?;
        field(
            "training.eval_batches",
            within(t.eval_batches, 1, 1_000_000),
        )?;
        field(
            "training.log_every",
            within(t.log_every, 1, MAX_TRAINING_STEPS),
        )?;
        field(
            "training.learning_rate",
            finite_above(t.learning_rate, 0.0, 10.0),
        )?;
        field(
            "training.final_learning_rate_ratio",
            finite_within(t.final_learning_rate_ratio, 0.0, 1.0),
        )?;
        field(
            "training.weight_decay",
            finite_within(t.weight_decay, 0.0, 10.0),
        )?;
        field(
            "training.gradient_clip",
            finite_within(t.gradient_clip, 0.0, 1e6),
        )?;
        field(
            "training.random_length_probability",
            finite_within(t.random_length_probability, 0.0, 1.0),
        )?;
        field(
            "data.sequence_length",
            within(self.data.sequence_length, 1, MAX_SEQUENCE),
        )?;
        if !self.data.validation_fraction.is_finite()
            || !(0.0..1.0).contains(&self.data.validation_fraction)
        {
            return Err(FlowError::config(
                "data.validation_fraction",
                format!(
                    "is {}; allowed: 0 to below 1",
                    self.data.validation_fraction
                ),
            ));
        }
        field(
            "tokenizer.vocab_size",
            within(self.tokenizer.vocab_size, 1, MAX_VOCABULARY),
        )?;
        field("model.hidden_size", within(m.hidden_size, 1, MAX_HIDDEN))?;
        field(
            "model.num_hidden_layers",
            within(m.num_hidden_layers, 1, MAX_LAYERS),
        )?;
        field(
            "model.num_attention_heads",
            within(m.num_attention_heads, 1, m.hidden_size),
        )?;
        field(
            "model.intermediate_size",
            within(m.intermediate_size, 1, MAX_FEED_FORWARD),
        )?;
        self.corruption.validate()?;
        self.sampler.validate("sampler")
    }
}

fn apply_override(table: &mut toml::Table, entry: &str) -> Result<()> {
    let (key, raw) = entry.split_once('=').ok_or_else(|| {
        FlowError::argument(
            "--set",
            format!("`{entry}` is not key=value (e.g. training.max_steps=500)"),
        )
    })?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut current = table;
    for part in &parts[..parts.len() - 1] {
        let next = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = next.as_table_mut().ok_or_else(|| {
            FlowError::argument("--set", format!("`{part}` in `{key}` is not a section"))
        })?;
    }
    current.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
