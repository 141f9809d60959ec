//! Any model directory `flowlm generate` can decode: FlowLM's own (with `flowlm.json`) or a
//! pretrained checkpoint of a known family (see [`super::families`]), as one [`OpenedModel`].

use super::Denoiser;
use super::families::{Family, Network, NetworkDenoiser, family};
use super::saved::{CONFIG_FILE, FlowlmMetadata, METADATA_FILE, SavedModel, TOKENIZER_FILE};
use super::saved_defaults::SamplerDefaults;
use super::weights::Weights;
use crate::corruption::CorruptionConfig;
use crate::error::{FlowError, Result};
use crate::tokenizer::Tokenizer;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// A model ready to decode.
pub struct OpenedModel {
    pub directory: PathBuf,
    pub tokenizer: Tokenizer,
    /// Special ids, corruption and sampler defaults (synthesised for pretrained checkpoints:
    /// a masked model, LLaDA's reference defaults).
    pub metadata: FlowlmMetadata,
    /// The longest canvas (prompt + answer) the model's positions cover.
    pub context_length: usize,
    /// Ids every prompt starts with (BERT's `[CLS]`).
    pub prompt_prefix: Vec<u32>,
    pub denoiser: Box<dyn Denoiser>,
}

#[derive(serde::Deserialize)]
struct ModelType {
    model_type: Option<String>,
}

/// The `model_type` of a pretrained checkpoint's `config.json` text (read from `path`).
pub fn model_type(config: &str, path: &Path) -> Result<String> {
    let model_type: ModelType = serde_json::from_str(config).map_err(|e| FlowError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    model_type.model_type.ok_or_else(|| FlowError::Model {
        path: path.to_path_buf(),
        message: format!("no model_type, and no {METADATA_FILE}: not a model FlowLM knows"),
    })
}

impl OpenedModel {
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        Self::open_with_progress(dir, device, |_, _| {})
    }

    /// [`Self::open`], calling `report(bytes read, total bytes)` as a pretrained checkpoint's
    /// tensors are read.
    pub fn open_with_progress(
        dir: &Path,
        device: &Device,
        report: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<Self> {
        if dir.join(METADATA_FILE).is_file() {
            let saved = SavedModel::load(dir, device)?;
            return Ok(Self {
                directory: saved.directory.clone(),
                context_length: saved.config.max_position_embeddings,
                denoiser: Box::new(saved.denoiser(device)),
                prompt_prefix: Vec::new(),
                tokenizer: saved.tokenizer,
                metadata: saved.metadata,
            });
        }
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.is_file() {
            // SavedModel's errors say what a model directory holds (and spot run directories).
            SavedModel::load(dir, device)?;
        }
        let config = crate::io::read_to_string(&config_path)?;
        let family = family(&model_type(&config, &config_path)?)?;
        let network = (family.load)(&config, &Weights::open(dir)?.with_progress(report), device)?;
        Self::with_network(dir, family, network, device)
    }

    /// The pretrained checkpoint in `dir` around an already built `network` of `family`: its
    /// tokenizer, special ids (`config.json`'s mask id winning) and context.
    pub(crate) fn with_network(
        dir: &Path,
        family: &Family,
        network: Box<dyn Network>,
        device: &Device,
    ) -> Result<Self> {
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        if !tokenizer_path.is_file() {
            return Err(FlowError::Model {
                path: dir.to_path_buf(),
                message: format!(
                    "missing {TOKENIZER_FILE} (FlowLM reads the Hugging Face tokenizer file)"
                ),
            });
        }
        let tokenizer = Tokenizer::from_file(&tokenizer_path)?;
        let mut special = tokenizer.special();
        if let Some(mask) = network.mask_token_id() {
            special.mask = mask;
        }
        let vocab_size = network.vocab_size();
        // FlowLM adds a mask token to tokenizers without one; a pretrained network has no
        // embedding for it, so such a checkpoint cannot be decoded by unmasking.
        if special.mask as usize >= vocab_size {
            return Err(FlowError::Model {
                path: tokenizer_path,
                message: format!(
                    "the tokenizer has no mask token inside the model's {vocab_size}-token vocabulary"
                ),
            });
        }
        let context_length = network.context_length();
        let metadata = FlowlmMetadata {
            format_version: super::saved::FORMAT_VERSION,
            mask_token_id: special.mask,
            pad_token_id: special.pad,
            eos_token_id: special.eos,
            corruption: CorruptionConfig::default(),
            sampler_defaults: SamplerDefaults::default(),
            sequence_length: context_length,
            training: serde_json::Value::Null,
        };
        Ok(Self {
            directory: dir.to_path_buf(),
            prompt_prefix: if family.starts_with_bos {
                special.bos.into_iter().collect()
            } else {
                Vec::new()
            },
            tokenizer,
            metadata,
            context_length,
            denoiser: Box::new(NetworkDenoiser {
                network,
                device: device.clone(),
            }),
        })
    }
}

/// A model directory opened for scoring text (`flowlm eval`): the loss model, its special ids
/// and row length, its tokenizer and the longest row its positions cover.
pub struct ScoredModel {
    pub model: Box<dyn super::LossModel>,
    pub metadata: FlowlmMetadata,
    pub tokenizer: Tokenizer,
    pub context_length: usize,
}

impl ScoredModel {
    /// FlowLM's own model (its training length), or a pretrained family (its whole context).
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        if super::families::is_pretrained(dir) {
            let parameters = super::families::FamilyParameters::open(dir, device)?;
            let opened = OpenedModel::with_network(
                dir,
                parameters.family()?,
                parameters.network(device)?,
                device,
            )?;
            return Ok(Self {
                model: Box::new(parameters),
                metadata: opened.metadata,
                tokenizer: opened.tokenizer,
                context_length: opened.context_length,
            });
        }
        let saved = SavedModel::load(dir, device)?;
        Ok(Self {
            context_length: saved.config.max_position_embeddings,
            model: Box::new(saved.model),
            metadata: saved.metadata,
            tokenizer: saved.tokenizer,
        })
    }
}
