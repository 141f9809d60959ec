//! A saved model is a directory, Hugging Face style: `config.json`, `model.safetensors`,
//! `tokenizer.json`, and `flowlm.json` (corruption, special ids, sampler defaults).

use super::kv_cache::{CachePass, KvCache};
pub use super::saved_defaults::SamplerDefaults;
use super::{DenoiserInput, DiffusionTransformer, DiffusionTransformerConfig, Logits, TopChoices};
use crate::canvas::Canvas;
use crate::corruption::CorruptionConfig;
use crate::error::{FlowError, Result};
use crate::tokenizer::Tokenizer;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::store::{FloatCastAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Bool, DType, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const METADATA_FILE: &str = "flowlm.json";

/// `flowlm.json`: what the weights alone do not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowlmMetadata {
    pub format_version: u32,
    pub mask_token_id: u32,
    pub pad_token_id: u32,
    pub eos_token_id: u32,
    pub corruption: CorruptionConfig,
    #[serde(default)]
    pub sampler_defaults: SamplerDefaults,
    /// Sequence length the model was trained on.
    pub sequence_length: usize,
    /// Free-form training summary (steps, tokens, validation figures).
    #[serde(default)]
    pub training: serde_json::Value,
}

/// The `flowlm.json` format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

impl FlowlmMetadata {
    /// Ids inside the vocabulary, a known format, a usable length, valid corruption and sampler
    /// defaults; errors name the field of `path`.
    pub fn validate(&self, vocab_size: usize, path: &Path) -> Result<()> {
        let invalid = |message: String| FlowError::Model {
            path: path.to_path_buf(),
            message,
        };
        if self.format_version != FORMAT_VERSION {
            return Err(invalid(format!(
                "format_version is {}; this build reads version {FORMAT_VERSION}",
                self.format_version
            )));
        }
        for (name, id) in [
            ("mask_token_id", self.mask_token_id),
            ("pad_token_id", self.pad_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if id as usize >= vocab_size {
                return Err(invalid(format!(
                    "{name} is {id}; allowed: 0 to {} (config.json's vocab_size is {vocab_size})",
                    vocab_size - 1
                )));
            }
        }
        if self.sequence_length == 0 {
            return Err(invalid("sequence_length is 0; allowed: at least 1".into()));
        }
        let wrap = |e: FlowError| invalid(e.to_string());
        self.corruption.validate().map_err(wrap)?;
        self.sampler_defaults
            .validate("sampler_defaults")
            .map_err(wrap)
    }
}

/// A model directory loaded into memory.
pub struct SavedModel {
    pub directory: PathBuf,
    pub config: DiffusionTransformerConfig,
    pub metadata: FlowlmMetadata,
    pub tokenizer: Tokenizer,
    pub model: DiffusionTransformer,
}

fn require(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else if dir.join("checkpoint").join(name).is_file() {
        Err(FlowError::Model {
            path: dir.to_path_buf(),
            message: format!(
                "this is a run directory; its model is {}",
                dir.join("checkpoint").display()
            ),
        })
    } else {
        Err(FlowError::Model {
            path: dir.to_path_buf(),
            message: format!(
                "missing {name}; a model directory holds {CONFIG_FILE}, {WEIGHTS_FILE}, {TOKENIZER_FILE} and {METADATA_FILE}"
            ),
        })
    }
}

impl SavedModel {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(FlowError::Model {
                path: dir.to_path_buf(),
                message: "not a directory (pass a model directory such as models/default)".into(),
            });
        }
        let config: DiffusionTransformerConfig = crate::io::read_json(&require(dir, CONFIG_FILE)?)?;
        config.validate()?;
        let metadata_path = require(dir, METADATA_FILE)?;
        let metadata: FlowlmMetadata = crate::io::read_json(&metadata_path)?;
        metadata.validate(config.vocab_size, &metadata_path)?;
        let tokenizer = Tokenizer::from_file(&require(dir, TOKENIZER_FILE)?)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(FlowError::Model {
                path: dir.to_path_buf(),
                message: format!(
                    "the tokenizer has {} tokens but config.json says vocab_size = {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let model = load_weights(config.init(device), &require(dir, WEIGHTS_FILE)?)?;
        Ok(Self {
            directory: dir.to_path_buf(),
            config,
            metadata,
            tokenizer,
            model,
        })
    }

    /// Writes the four files of a model directory (each one atomically).
    pub fn save_parts(
        dir: &Path,
        config: &DiffusionTransformerConfig,
        metadata: &FlowlmMetadata,
        tokenizer: &Tokenizer,
        model: &DiffusionTransformer,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| FlowError::io(dir, e))?;
        crate::io::write_json(&dir.join(CONFIG_FILE), config)?;
        crate::io::write_json(&dir.join(METADATA_FILE), metadata)?;
        tokenizer.save(&dir.join(TOKENIZER_FILE))?;
        save_weights(model, &dir.join(WEIGHTS_FILE))
    }

    /// Writes this model as a new directory `out`, weights in `precision` (`flowlm export`).
    /// An existing `out` is refused: exporting never replaces a model.
    pub fn export(&self, out: &Path, precision: WeightPrecision) -> Result<()> {
        if out.exists() {
            return Err(FlowError::argument(
                "--out",
                format!(
                    "{} already exists; choose a new directory (nothing was written)",
                    out.display()
                ),
            ));
        }
        std::fs::create_dir_all(out).map_err(|e| FlowError::io(out, e))?;
        crate::io::write_json(&out.join(CONFIG_FILE), &self.config)?;
        crate::io::write_json(&out.join(METADATA_FILE), &self.metadata)?;
        self.tokenizer.save(&out.join(TOKENIZER_FILE))?;
        save_weights_as(&self.model, &out.join(WEIGHTS_FILE), precision)
    }

    pub fn denoiser(&self, device: &Device) -> ModelDenoiser {
        ModelDenoiser {
            model: self.model.clone(),
            device: device.clone(),
        }
    }
}

pub fn save_weights(model: &DiffusionTransformer, path: &Path) -> Result<()> {
    save_weights_as(model, path, WeightPrecision::F32)
}

/// The module path of the first float parameter holding NaN or infinity, if any: such weights
/// are never saved.
pub fn non_finite_parameter<M: Module>(model: &M) -> Option<String> {
    struct Finder {
        path: Vec<String>,
        found: Option<String>,
    }
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.found.is_none()
                && !param
                    .val()
                    .is_finite()
                    .all()
                    .try_into_scalar::<bool>()
                    .unwrap_or(false)
            {
                self.found = Some(self.path.join("."));
            }
        }
    }
    let mut finder = Finder {
        path: Vec::new(),
        found: None,
    };
    model.visit(&mut finder);
    finder.found
}

/// How float weights are stored on disk. Training always keeps f32; a half-precision copy halves
/// a bundled model's size and loads back into f32 (see [`load_weights`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightPrecision {
    F32,
    F16,
    BF16,
}

impl WeightPrecision {
    pub const NAMES: [&'static str; 3] = ["f32", "f16", "bf16"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "bf16" => Some(Self::BF16),
            _ => None,
        }
    }

    fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
        }
    }
}

/// Writes `model`'s weights to `path` atomically, float tensors cast to `precision`.
pub fn save_weights_as(
    model: &DiffusionTransformer,
    path: &Path,
    precision: WeightPrecision,
) -> Result<()> {
    if let Some(parameter) = non_finite_parameter(model) {
        return Err(FlowError::Checkpoint(format!(
            "{}: not written: the weight `{parameter}` holds NaN or infinity (the training diverged; lower the learning rate or resume from an earlier checkpoint)",
            path.display()
        )));
    }
    let temporary = crate::io::temporary_sibling(path);
    let mut store = SafetensorsStore::from_file(temporary.clone())
        .with_to_adapter(FloatCastAdapter::to(precision.dtype()));
    model
        .save_into(&mut store)
        .map_err(|e| FlowError::Checkpoint(format!("{}: {e}", path.display())))?;
    std::fs::rename(&temporary, path).map_err(|e| FlowError::io(path, e))
}

/// Loads weights into `model`; any missing, unused or mis-shaped tensor is an error. Float
/// tensors of any precision (f32, f16, bf16) are cast to f32, the precision every backend
/// computes this model in: burn would otherwise keep the file's dtype in the parameters.
pub fn load_weights(mut model: DiffusionTransformer, path: &Path) -> Result<DiffusionTransformer> {
    let mut store = SafetensorsStore::from_file(path.to_path_buf())
        .with_from_adapter(FloatCastAdapter::to(DType::F32));
    let mismatch = |message: String| FlowError::Model {
        path: path.to_path_buf(),
        message: format!("the weights do not match config.json: {message}"),
    };
    let result = model
        .load_from(&mut store)
        .map_err(|e| mismatch(e.to_string()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(mismatch(format!(
            "errors {:?}, missing {:?}, unexpected {:?}",
            result.errors, result.missing, result.unused
        )));
    }
    Ok(stable_parameter_ids(model))
}

/// Renumbers parameter ids 0, 1, 2, ... in module order. Optimizer state is keyed by these ids,
/// and safetensors does not store them, so a resumed run must see the same ids as the run that
/// saved the state.
pub fn stable_parameter_ids<M: Module>(module: M) -> M {
    struct Renumber(u64);
    impl ModuleMapper for Renumber {
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.id = ParamId::from(self.0);
            self.0 += 1;
            param
        }
        fn map_int<const D: usize>(
            &mut self,
            mut param: Param<Tensor<D, Int>>,
        ) -> Param<Tensor<D, Int>> {
            param.id = ParamId::from(self.0);
            self.0 += 1;
            param
        }
        fn map_bool<const D: usize>(
            &mut self,
            mut param: Param<Tensor<D, Bool>>,
        ) -> Param<Tensor<D, Bool>> {
            param.id = ParamId::from(self.0);
            self.0 += 1;
            param
        }
    }
    module.map(&mut Renumber(0))
}

/// The burn model as a `Denoiser`.
#[derive(Clone)]
pub struct ModelDenoiser {
    pub model: DiffusionTransformer,
    pub device: Device,
}

/// Tensors for a canvas: ids, positions that skip the left padding, and the padding mask.
pub fn canvas_tensors(
    canvas: &Canvas,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2>, Option<Tensor<2, Bool>>) {
    let (batch, width) = (canvas.batch(), canvas.width());
    let ids: Vec<i64> = canvas.rows.iter().flatten().map(|&t| t as i64).collect();
    let mut positions = Vec::with_capacity(batch * width);
    let mut padding = Vec::with_capacity(batch * width);
    for &pad in &canvas.padding {
        for column in 0..width {
            positions.push(column.saturating_sub(pad) as f32);
            padding.push(column < pad);
        }
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, width]), device);
    let positions = Tensor::<2>::from_data(TensorData::new(positions, [batch, width]), device);
    let any_padding = canvas.padding.iter().any(|&p| p > 0);
    let padding = any_padding
        .then(|| Tensor::<2, Bool>::from_data(TensorData::new(padding, [batch, width]), device));
    (ids, positions, padding)
}

pub(crate) fn host_logits(logits: Tensor<3>) -> Result<Logits> {
    let [batch, length, vocab] = logits.dims();
    let values = logits
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| FlowError::Unsupported(format!("reading logits: {e:?}")))?;
    Ok(Logits {
        batch,
        length,
        vocab,
        values,
    })
}

impl ModelDenoiser {
    /// Logits `[B, L, V]` for a canvas, left on the device.
    ///
    /// A batch of several rows is split into row shards that run on their own threads (one per
    /// core): rows never read each other, and a small model's operators are too small to keep
    /// both cores busy one at a time. Every shard keeps the batch's padding width, so a row's
    /// logits are what the whole batch gives it.
    /// Only the `columns` get logits: the output head (the largest single product for a large
    /// vocabulary) runs on those rows of hidden states alone.
    fn device_logits(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
        columns: Range<usize>,
    ) -> Tensor<3> {
        let (ids, positions, padding) = canvas_tensors(canvas, &self.device);
        let time = time
            .map(|t| Tensor::<1>::from_data(TensorData::new(t.to_vec(), [t.len()]), &self.device));
        let shards = crate::trainer::data_parallel::shard_rows(
            canvas.batch(),
            crate::cpu::compute_threads(),
        );
        if shards.len() == 1 {
            return column_logits(&self.model, ids, positions, time, padding, &columns);
        }
        let width = canvas.width();
        let jobs: Vec<_> = shards
            .into_iter()
            .map(|rows| (self.model.clone(), rows))
            .collect();
        let outputs =
            crate::cpu::parallel_map(jobs, crate::cpu::compute_threads(), |(model, rows)| {
                column_logits(
                    &model,
                    ids.clone().slice([rows.clone(), 0..width]),
                    positions.clone().slice([rows.clone(), 0..width]),
                    time.clone().map(|t| t.slice([rows.clone()])),
                    padding.clone().map(|p| p.slice([rows, 0..width])),
                    &columns,
                )
            });
        Tensor::cat(outputs, 0)
    }
}

/// An error unless `columns` is a non-empty range inside the canvas.
fn check_columns(canvas: &Canvas, columns: &Range<usize>) -> Result<()> {
    if columns.is_empty() || columns.end > canvas.width() {
        return Err(FlowError::argument(
            "columns",
            format!(
                "{columns:?} is not inside the canvas's {} columns",
                canvas.width()
            ),
        ));
    }
    Ok(())
}

/// Logits `[B, C, V]` of the C `columns` of a full forward pass over `ids`.
fn column_logits(
    model: &DiffusionTransformer,
    ids: Tensor<2, Int>,
    positions: Tensor<2>,
    time: Option<Tensor<1>>,
    padding: Option<Tensor<2, Bool>>,
    columns: &Range<usize>,
) -> Tensor<3> {
    let hidden = model.hidden_states(DenoiserInput::Tokens(ids), positions, time, padding);
    let [batch, _, width] = hidden.dims();
    let count = columns.len();
    let hidden = hidden.slice([0..batch, columns.clone(), 0..width]);
    let logits = model.output_logits(hidden.reshape([batch * count, width]));
    let vocab = logits.dims()[1];
    logits.reshape([batch, count, vocab])
}

impl super::Denoiser for ModelDenoiser {
    fn vocab_size(&self) -> usize {
        self.model.embed_tokens.weight.dims()[0]
    }

    fn embedding_table(&self) -> Option<(Vec<f32>, usize)> {
        let table = self.model.input_embeddings();
        let hidden = table.dims()[1];
        table
            .into_data()
            .try_to_vec::<f32>()
            .ok()
            .map(|v| (v, hidden))
    }

    fn logits_from_embeddings(&self, canvas: &Canvas, response: &[f32]) -> Result<Logits> {
        let (batch, slots) = (canvas.batch(), canvas.response_length());
        let hidden = self.model.input_embeddings().dims()[1];
        if response.len() != batch * slots * hidden {
            return Err(FlowError::argument(
                "response embeddings",
                format!(
                    "expected {} values, got {}",
                    batch * slots * hidden,
                    response.len()
                ),
            ));
        }
        let (ids, positions, padding) = canvas_tensors(canvas, &self.device);
        let response = Tensor::<3>::from_data(
            TensorData::new(response.to_vec(), [batch, slots, hidden]),
            &self.device,
        );
        // Prompt slots are embedded on the device; only the response state crosses from the host.
        let input = if canvas.response_start == 0 {
            response
        } else {
            let prompt = self
                .model
                .embed_tokens
                .forward(ids.slice([0..batch, 0..canvas.response_start]));
            Tensor::cat(vec![prompt, response], 1)
        };
        host_logits(
            self.model
                .forward(DenoiserInput::Embeddings(input), positions, None, padding),
        )
    }

    fn logits(&self, canvas: &Canvas, time: Option<&[f32]>) -> Result<Logits> {
        host_logits(self.device_logits(canvas, time, 0..canvas.width()))
    }

    fn device_logits_in(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
        columns: Range<usize>,
    ) -> Option<Result<Tensor<3>>> {
        Some(check_columns(canvas, &columns).map(|()| self.device_logits(canvas, time, columns)))
    }

    fn cached_top_choices(
        &self,
        canvas: &Canvas,
        cache: Option<&KvCache>,
        computed: Range<usize>,
        read: Range<usize>,
        forbidden: u32,
    ) -> Result<(TopChoices, Option<KvCache>)> {
        if self.model.is_causal() {
            return Err(FlowError::Unsupported(
                "a causal model has no diffusion key/value cache; use --cache none".into(),
            ));
        }
        let (ids, positions, padding) = canvas_tensors(canvas, &self.device);
        let pass = cache_pass(cache, computed);
        let (hidden, recorded) = self
            .model
            .cached_hidden_states(ids, positions, padding, &pass);
        let columns = pass.columns(canvas.width());
        let hidden = read_columns(hidden, &read, columns.start)?;
        let [batch, length, width] = hidden.dims();
        let logits = self
            .model
            .output_logits(hidden.reshape([batch * length, width]));
        let vocab = logits.dims()[1];
        let choices = TopChoices::on_device(
            logits.reshape([batch, length, vocab]),
            forbidden,
            read.start,
        )?;
        Ok((choices, cache.is_none().then_some(recorded)))
    }
}

/// The pass a cached step makes: record when there is no cache yet, else reuse it.
pub(crate) fn cache_pass(cache: Option<&KvCache>, computed: Range<usize>) -> CachePass<'_> {
    match cache {
        None => CachePass::Record,
        Some(cache) => CachePass::Reuse {
            cache,
            window: computed,
        },
    }
}

/// The `read` columns of `[B, L, X]` values computed for the columns from `first_computed` on;
/// an error when `read` is not inside them.
pub(crate) fn read_columns(
    values: Tensor<3>,
    read: &Range<usize>,
    first_computed: usize,
) -> Result<Tensor<3>> {
    let [batch, length, width] = values.dims();
    let start = read.start.checked_sub(first_computed);
    match start {
        Some(start) if start + read.len() <= length && !read.is_empty() => {
            Ok(values.slice([0..batch, start..start + read.len(), 0..width]))
        }
        _ => Err(FlowError::argument(
            "cache window",
            format!(
                "read columns {read:?} are not inside the computed columns {first_computed}..{}",
                first_computed + length
            ),
        )),
    }
}
