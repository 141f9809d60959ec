//! The trainer: one loop for every corruption and objective. AdamW, warmup + cosine learning
//! rate, global gradient clipping, gradient accumulation, periodic validation and samples,
//! `metrics.jsonl`, a loss-curve PNG, atomic checkpoints, exact resume, and a clean stop on
//! Ctrl-C (the caller sets the interrupt flag; the loop checkpoints and returns).
//!
//! Why a hand-written loop rather than burn-train's `Learner`: the loop must own the data order
//! and every random draw (keyed by seed and step) for resume to be exact, and it must run
//! corruptions that live on the host. The scale-out path stays open: the step is
//! `forward -> backward -> GradientsParams -> optimizer.step`, exactly the unit burn's DDP
//! strategy all-reduces, so a multi-device run swaps `GradientsParams` for burn's
//! `MultiGradientsParams` and `step` for `step_multi` without touching the rest.

pub mod align;
mod checkpoint;
mod clipping;
pub mod data_parallel;
mod run_lock;
mod schedule;
pub mod step_policy;

pub use checkpoint::{TrainerState, checkpoint_path, find_checkpoint};
pub use clipping::clip_global_norm;
pub use schedule::LearningRateSchedule;

use crate::canvas::Canvas;
use crate::corruption::{CleanBatch, Corruption};
use crate::data::{PackedDataset, Sequence, pack, tokenize_cached};
use crate::error::{FlowError, Result};
use crate::model::families::FamilyParameters;
use crate::model::{
    Denoiser, DiffusionTransformer, DiffusionTransformerConfig, FlowlmMetadata, LossModel,
    ModelDenoiser, saved::load_weights, seeded_init, stable_parameter_ids,
};
use crate::random::{permutation, rng_for};
use crate::recipe::{Recipe, TokenizerKind, TokenizerSection};
use crate::tokenizer::chat::ChatTemplate;
use crate::tokenizer::{SimpleTokenizer, SimpleUnit, Tokenizer, train_byte_level_bpe};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, ModuleOptimizer};
use burn::tensor::Device;
use checkpoint::{load_optimizer, write_checkpoint};
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Salts of the random streams, so no two uses share draws.
const EPOCH_STREAM: u64 = 1 << 40;
const CORRUPTION_STREAM: u64 = 2 << 40;
const LENGTH_STREAM: u64 = 3 << 40;
pub const VALIDATION_STREAM: u64 = 4 << 40;
const SAMPLE_STREAM: u64 = 5 << 40;

pub const RECIPE_FILE: &str = "recipe.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const PLOT_FILE: &str = "loss.png";

pub struct TrainOptions {
    pub run_dir: PathBuf,
    pub resume: bool,
    /// A new run may replace an existing run in `run_dir` (its checkpoint and metrics).
    pub force: bool,
    /// The plain device; the trainer adds autodiff.
    pub device: Device,
    /// A model directory to start from instead of the recipe's fresh model: a FlowLM model
    /// (its config and tokenizer replace the recipe's `[model]` and `[tokenizer]`) or a
    /// pretrained family's checkpoint (fine-tuning). Ignored when resuming.
    pub init: Option<PathBuf>,
    pub show_progress: bool,
    pub interrupt: Arc<AtomicBool>,
}

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub state: TrainerState,
    pub interrupted: bool,
    pub checkpoint: PathBuf,
}

/// Builds the tokenizer a recipe asks for.
pub fn build_tokenizer(
    section: &TokenizerSection,
    data: &Path,
    exclude: &[String],
    scratch: &Path,
) -> Result<Tokenizer> {
    let path = || {
        section
            .path
            .clone()
            .ok_or_else(|| FlowError::config("tokenizer.path", "this tokenizer kind needs a path"))
    };
    match section.kind {
        TokenizerKind::File => Tokenizer::from_file(&path()?),
        TokenizerKind::Gpt2 => Tokenizer::from_dir(&path()?),
        TokenizerKind::Bpe => {
            // Train on the documents' text (so JSONL trains on its contents, not its syntax).
            let documents = crate::data::load_documents_excluding(data, exclude)?;
            let corpus = scratch.join(".bpe-corpus.txt");
            let mut text = String::new();
            for d in documents {
                let (prompt, body) = d.prompt_and_body(None)?;
                text.push_str(&prompt);
                text.push_str(&body);
                text.push('\n');
            }
            std::fs::write(&corpus, text).map_err(|e| FlowError::io(&corpus, e))?;
            let tokenizer = train_byte_level_bpe(std::slice::from_ref(&corpus), section.vocab_size);
            let _ = std::fs::remove_file(&corpus);
            tokenizer
        }
        TokenizerKind::Char | TokenizerKind::Word => {
            let documents = crate::data::load_documents_excluding(data, exclude)?;
            let mut texts = Vec::new();
            for d in documents {
                let (prompt, body) = d.prompt_and_body(None)?;
                texts.extend([prompt, body]);
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let unit = if section.kind == TokenizerKind::Char {
                SimpleUnit::Char
            } else {
                SimpleUnit::Word
            };
            Ok(Tokenizer::Simple(SimpleTokenizer::build(
                unit,
                &refs,
                section.min_count,
            )))
        }
    }
}

/// The model config a recipe implies for a tokenizer.
pub fn model_config(recipe: &Recipe, vocab_size: usize) -> DiffusionTransformerConfig {
    let m = &recipe.model;
    let mut config = DiffusionTransformerConfig::small(vocab_size, recipe.data.sequence_length);
    config.hidden_size = m.hidden_size;
    config.num_hidden_layers = m.num_hidden_layers;
    config.num_attention_heads = m.num_attention_heads;
    config.intermediate_size = m.intermediate_size;
    config.position_encoding = m.position_encoding;
    config.norm = m.norm;
    config.hidden_act = m.hidden_act;
    config.tie_word_embeddings = m.tie_word_embeddings;
    config.time_conditioning = m.time_conditioning;
    config.causal = m.causal;
    config
}

/// The data order: row k of the endless stream is train[perm_epoch[k mod n]].
struct DataOrder {
    seed: u64,
    size: usize,
    cached_epoch: Option<(usize, Vec<usize>)>,
}

impl DataOrder {
    fn indices(&mut self, start: usize, count: usize) -> Vec<usize> {
        (start..start + count)
            .map(|k| {
                let epoch = k / self.size;
                if self.cached_epoch.as_ref().is_none_or(|c| c.0 != epoch) {
                    let order = permutation(
                        self.size,
                        &mut rng_for(self.seed, EPOCH_STREAM + epoch as u64),
                    );
                    self.cached_epoch = Some((epoch, order));
                }
                self.cached_epoch
                    .as_ref()
                    .map(|c| c.1[k % self.size])
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// LLaDA: a small share of batches is cut to a random shorter length.
fn maybe_shorten(
    clean: CleanBatch,
    probability: f64,
    rng: &mut crate::random::StdRng,
) -> CleanBatch {
    if probability <= 0.0 || clean.length < 4 || rng.random::<f64>() >= probability {
        return clean;
    }
    let length = rng.random_range(2..clean.length);
    let keep = |v: &[u32]| {
        v.chunks(clean.length)
            .flat_map(|r| r[..length].to_vec())
            .collect::<Vec<_>>()
    };
    let eligible = clean
        .eligible
        .chunks(clean.length)
        .flat_map(|r| r[..length].to_vec())
        .collect();
    CleanBatch {
        tokens: keep(&clean.tokens),
        batch: clean.batch,
        length,
        eligible,
    }
}

/// "Loss of RUN: MODEL on DATA" for `loss.png`.
fn loss_plot_title(run: &Path, recipe: &Recipe, model: &str) -> String {
    let name = run
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.display().to_string());
    format!(
        "{name}: {model}, `{}` on {}",
        recipe.corruption.name(),
        recipe.data.path.display()
    )
}

/// The loss of one corrupted batch on `device` (a scalar tensor, differentiable when the model is).
pub fn batch_loss(
    model: &dyn LossModel,
    corruption: &dyn Corruption,
    clean: &CleanBatch,
    training_step: usize,
    rng: &mut crate::random::StdRng,
    device: &Device,
) -> Result<burn::tensor::Tensor<1>> {
    corruption.loss(model, clean, training_step, rng, device)
}

/// Mean loss over `sequences` in batches, `repeats` Monte-Carlo passes, draws keyed by `seed`.
pub fn mean_loss(
    model: &dyn LossModel,
    corruption: &dyn Corruption,
    sequences: &[Sequence],
    batch_size: usize,
    repeats: usize,
    seed: u64,
    device: &Device,
    mut on_batch: impl FnMut(),
) -> Result<f64> {
    let mut total = 0.0;
    let mut count = 0usize;
    for repeat in 0..repeats {
        for (index, chunk) in (0..sequences.len())
            .collect::<Vec<_>>()
            .chunks(batch_size)
            .enumerate()
        {
            let clean = PackedDataset::batch(sequences, chunk);
            let mut rng = rng_for(
                seed,
                VALIDATION_STREAM + (repeat * 1_000_003 + index) as u64,
            );
            let loss = batch_loss(model, corruption, &clean, usize::MAX, &mut rng, device)?
                .into_scalar::<f32>() as f64;
            total += loss * chunk.len() as f64;
            count += chunk.len();
            on_batch();
        }
    }
    Ok(total / count.max(1) as f64)
}

/// Appends one record to `metrics.jsonl`; a failed write stops the run (a run whose metrics
/// silently stop is worse than one that says why it stopped).
fn append_metric(run: &Path, value: serde_json::Value) -> Result<()> {
    let path = run.join(METRICS_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| FlowError::io(&path, e))?;
    writeln!(file, "{value}").map_err(|e| FlowError::io(&path, e))
}

/// A new run into a directory that already holds one needs `force`; `--resume` continues it.
fn prepare_new_run(run: &Path, force: bool) -> Result<()> {
    let previous = [RECIPE_FILE, METRICS_FILE, "checkpoint"]
        .iter()
        .map(|name| run.join(name))
        .filter(|path| path.exists())
        .collect::<Vec<_>>();
    if previous.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(FlowError::argument(
            "--out",
            format!(
                "{} already holds a run ({}); continue it with --resume {0}, choose another --out, or pass --force to replace it",
                run.display(),
                previous
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    for path in previous {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| FlowError::io(&path, e))?;
    }
    Ok(())
}

/// What exp(validation loss) is for a corruption: a perplexity bound for the masked ELBO, a
/// perplexity for next-token loss, nothing for the other objectives (their losses bound no
/// likelihood).
pub fn perplexity_figure(
    corruption: &crate::corruption::CorruptionConfig,
    loss: f64,
) -> Option<(&'static str, f64)> {
    use crate::corruption::CorruptionConfig as C;
    match corruption {
        C::Mask { .. } => Some(("perplexity_bound", loss.exp())),
        C::Autoregressive => Some(("perplexity", loss.exp())),
        _ => None,
    }
}

/// [`perplexity_figure`] as a note for log lines: " (perplexity bound 12.34)".
pub fn perplexity_note(corruption: &crate::corruption::CorruptionConfig, loss: f64) -> String {
    perplexity_figure(corruption, loss)
        .map(|(name, value)| format!(" ({} {value:.2})", name.replace('_', " ")))
        .unwrap_or_default()
}

/// A generation shown during training: what `flowlm generate` prints on the checkpoint with
/// the recipe's `[sampler]` settings (which the saved model carries), the answer capped at
/// `max_length` tokens (one block when capped).
pub fn training_sample(
    denoiser: &dyn Denoiser,
    tokenizer: &Tokenizer,
    corruption: &crate::corruption::CorruptionConfig,
    defaults: &crate::model::saved_defaults::SamplerDefaults,
    prompt: &str,
    max_length: usize,
    seed: u64,
) -> Result<String> {
    let special = tokenizer.special();
    let mut prompt_ids = tokenizer.encode(prompt)?;
    if prompt_ids.is_empty() && !corruption.uses_mask() {
        // Left-to-right decoding needs something to continue from.
        prompt_ids.push(special.eos);
    }
    let length = defaults.gen_length.clamp(1, max_length.max(1));
    let mut canvas = Canvas::new(&[prompt_ids], length, special.mask, special.pad)?;
    let vocabulary = crate::vocabulary::Vocabulary::for_tokenizer(tokenizer, denoiser.vocab_size());
    let block_length = if length < defaults.gen_length {
        length
    } else {
        defaults.block_length
    };
    let settings = crate::sampler::SamplerSettings {
        steps: defaults.steps.min(length),
        block_length,
        temperature: defaults.temperature,
        remasking: defaults.remasking,
        ..Default::default()
    };
    let sampler =
        crate::sampler::build_sampler(&defaults.sampler, &settings, corruption, &vocabulary)?;
    sampler.run(
        denoiser,
        &mut canvas,
        &mut rng_for(seed, SAMPLE_STREAM),
        &mut |_, _| {},
    )?;
    Ok(format!("{prompt}{}", tokenizer.decode(canvas.response(0))?))
}

/// Where a run's weights come from.
enum Start {
    /// FlowLM's transformer as the recipe's `[model]` section shapes it, seeded.
    Fresh,
    /// A FlowLM model directory (`--init`) or a FlowLM run's checkpoint (`--resume`).
    Flowlm(PathBuf),
    /// A pretrained family's checkpoint (`--init`) or a fine-tuning run's checkpoint.
    Family(PathBuf),
}

impl Start {
    fn of(dir: Option<PathBuf>) -> Self {
        match dir {
            None => Start::Fresh,
            Some(dir) if crate::model::families::is_pretrained(&dir) => Start::Family(dir),
            Some(dir) => Start::Flowlm(dir),
        }
    }
}

pub fn train(
    recipe: &Recipe,
    options: &TrainOptions,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome> {
    let run = &options.run_dir;
    if run.exists() && !run.is_dir() {
        return Err(FlowError::argument(
            "--out",
            format!("{} is a file, not a run directory", run.display()),
        ));
    }
    if let Some(init) = &options.init {
        if !init.is_dir() {
            return Err(FlowError::argument(
                "--init",
                format!(
                    "{} is not a model directory (give a FlowLM model or a pretrained checkpoint)",
                    init.display()
                ),
            ));
        }
        if same_directory(init, run) {
            return Err(FlowError::argument(
                "--init",
                format!(
                    "{} is also --out; a run never writes into its input",
                    init.display()
                ),
            ));
        }
    }
    std::fs::create_dir_all(run).map_err(|e| FlowError::io(run, e))?;
    let _lock = run_lock::RunLock::acquire(run)?;
    if !options.resume {
        prepare_new_run(run, options.force)?;
    }
    let start = if options.resume {
        Start::of(Some(find_checkpoint(run)?))
    } else {
        Start::of(options.init.clone())
    };
    match start {
        Start::Fresh | Start::Flowlm(_) => train_flowlm(recipe, options, &start, log),
        Start::Family(dir) => train_family(recipe, options, &dir, log),
    }
}

fn same_directory(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Trains FlowLM's own transformer: from scratch, from `--init`, or resumed.
fn train_flowlm(
    recipe: &Recipe,
    options: &TrainOptions,
    start: &Start,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome> {
    let run = &options.run_dir;
    let (tokenizer, config, weights, lineage) = match start {
        Start::Flowlm(dir) => {
            let saved = crate::model::SavedModel::load(dir, &options.device)?;
            // A resumed run keeps its checkpoint's record of where it started.
            let lineage = if options.resume {
                saved.metadata.training.get("init").cloned()
            } else {
                Some(init_record(dir, &saved.metadata.training))
            };
            if saved.config.max_position_embeddings < recipe.data.sequence_length {
                return Err(FlowError::config(
                    "data.sequence_length",
                    format!(
                        "{} exceeds the {} positions of the model in {}",
                        recipe.data.sequence_length,
                        saved.config.max_position_embeddings,
                        dir.display()
                    ),
                ));
            }
            let weights = dir.join(crate::model::saved::WEIGHTS_FILE);
            (saved.tokenizer, saved.config, Some(weights), lineage)
        }
        _ => {
            log(&format!(
                "building the {:?} tokenizer",
                recipe.tokenizer.kind
            ));
            let tokenizer = build_tokenizer(
                &recipe.tokenizer,
                &recipe.data.path,
                &recipe.data.exclude,
                run,
            )?;
            let config = model_config(recipe, tokenizer.vocab_size());
            config.validate()?;
            (tokenizer, config, None, None)
        }
    };
    let special = tokenizer.special();
    let dataset = prepare_data(recipe, &tokenizer, None, special.eos, log)?;
    let metadata = FlowlmMetadata {
        format_version: crate::model::saved::FORMAT_VERSION,
        mask_token_id: special.mask,
        pad_token_id: special.pad,
        eos_token_id: special.eos,
        corruption: recipe.corruption.clone(),
        sampler_defaults: recipe.sampler.clone(),
        sequence_length: recipe.data.sequence_length,
        training: serde_json::Value::Null,
    };
    let train_device = options.device.clone().autodiff();
    let starts_from_weights = weights.is_some();
    let model = match weights {
        Some(path) => load_weights(config.init(&train_device), &path)?,
        None => stable_parameter_ids(seeded_init(
            config.init(&train_device),
            recipe.training.seed,
            config.initializer_range,
        )),
    };
    let description = match start {
        Start::Flowlm(dir) if !options.resume => format!("init {}", dir.display()),
        _ => format!(
            "hidden {} x {} layers",
            config.hidden_size, config.num_hidden_layers
        ),
    };
    let vocabulary = crate::vocabulary::Vocabulary::for_tokenizer(&tokenizer, config.vocab_size);
    let steps = Steps {
        recipe,
        options,
        tokenizer: &tokenizer,
        dataset: &dataset,
        vocabulary,
        description,
        validate_at_start: starts_from_weights,
    };
    let write_model = |model: &DiffusionTransformer, state: &TrainerState, dir: &Path| {
        let mut metadata = metadata.clone();
        metadata.training = serde_json::json!({
            "steps": state.step,
            "tokens_seen": state.tokens_seen,
            "validation_loss": state.validation_losses.last().map(|v| v.1),
            "elapsed_seconds": state.elapsed_seconds,
        });
        if let Some(lineage) = &lineage {
            metadata.training["init"] = lineage.clone();
        }
        crate::model::SavedModel::save_parts(dir, &config, &metadata, &tokenizer, model)
    };
    let denoiser = |model: &DiffusionTransformer, device: &Device| -> Result<Box<dyn Denoiser>> {
        Ok(Box::new(ModelDenoiser {
            model: model.clone(),
            device: device.clone(),
        }))
    };
    steps.run(model, &write_model, &denoiser, log)
}

/// What a run continued with `--init` started from: the model directory and that model's own
/// training record (which names its own start in turn), so a model's `flowlm.json` tells every
/// step and token it was trained on.
fn init_record(dir: &Path, training: &serde_json::Value) -> serde_json::Value {
    let mut record = match training {
        serde_json::Value::Object(fields) => fields.clone(),
        _ => serde_json::Map::new(),
    };
    record.insert("model".into(), dir.display().to_string().into());
    serde_json::Value::Object(record)
}

/// Fine-tunes a pretrained family's checkpoint (`--init`), or resumes such a run.
fn train_family(
    recipe: &Recipe,
    options: &TrainOptions,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome> {
    use crate::corruption::CorruptionConfig as C;
    if matches!(
        recipe.corruption,
        C::GaussianSoft { .. } | C::MaskAndBlend { .. } | C::Autoregressive
    ) {
        return Err(FlowError::config(
            "corruption.kind",
            format!(
                "`{}` cannot fine-tune a pretrained family (soft tokens and blends need FlowLM's own embeddings; the families attend both ways); use mask, mask_and_substitute or uniform",
                recipe.corruption.name()
            ),
        ));
    }
    // The weights are read once, into the trainable copy; its network (on the plain device)
    // gives the tokenizer, the special ids (config.json's mask id included) and the context.
    let model = FamilyParameters::open(dir, &options.device.clone().autodiff())?;
    let opened = crate::model::open::OpenedModel::with_network(
        dir,
        model.family()?,
        model.valid().network(&options.device)?,
        &options.device,
    )?;
    if opened.context_length < recipe.data.sequence_length {
        return Err(FlowError::config(
            "data.sequence_length",
            format!(
                "{} exceeds the {}-position context of {}",
                recipe.data.sequence_length,
                opened.context_length,
                dir.display()
            ),
        ));
    }
    let (tokenizer, metadata) = (opened.tokenizer, opened.metadata);
    let template = ChatTemplate::find(dir)?;
    if template.is_some() {
        log("chat rows are rendered with the checkpoint's chat_template");
    }
    let dataset = prepare_data(
        recipe,
        &tokenizer,
        template.as_ref(),
        metadata.eos_token_id,
        log,
    )?;
    let vocabulary = crate::vocabulary::Vocabulary::for_tokenizer_with_mask(
        &tokenizer,
        model.vocab_size(),
        metadata.mask_token_id,
    );
    let steps = Steps {
        recipe,
        options,
        tokenizer: &tokenizer,
        dataset: &dataset,
        vocabulary,
        description: format!("fine-tuning {}", dir.display()),
        validate_at_start: true,
    };
    let write_model = |model: &FamilyParameters, _: &TrainerState, dir: &Path| model.save(dir);
    let denoiser = |model: &FamilyParameters, device: &Device| model.denoiser(device);
    steps.run(model, &write_model, &denoiser, log)
}

/// Tokenizes (or reads from the cache) and packs the recipe's data; chat rows are rendered
/// by `template` when the model has one.
fn prepare_data(
    recipe: &Recipe,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    eos: u32,
    log: &mut dyn FnMut(&str),
) -> Result<PackedDataset> {
    let cache = recipe.data.cache.then(crate::data::cache_directory);
    let (documents, cached) = tokenize_cached(
        &recipe.data.path,
        &recipe.data.exclude,
        tokenizer,
        template,
        cache.as_deref(),
    )?;
    let dataset = pack(
        &documents,
        recipe.data.sequence_length,
        eos,
        recipe.data.validation_fraction,
        recipe.training.seed,
    )?;
    log(&format!(
        "data: {} train rows, {} validation rows of {} tokens ({})",
        dataset.train.len(),
        dataset.validation.len(),
        dataset.sequence_length,
        if cached {
            "token cache hit"
        } else {
            "tokenized"
        }
    ));
    Ok(dataset)
}

/// Everything the training steps read besides the model: the same for every kind of model.
struct Steps<'a> {
    recipe: &'a Recipe,
    options: &'a TrainOptions,
    tokenizer: &'a Tokenizer,
    dataset: &'a PackedDataset,
    vocabulary: crate::vocabulary::Vocabulary,
    /// What is trained, for the loss plot's title.
    description: String,
    /// Whether to score the model on the validation rows before the first step.
    validate_at_start: bool,
}

impl Steps<'_> {
    /// The mean loss of the evaluation corruption over the validation rows.
    fn validate<M: Module + LossModel>(
        &self,
        model: &M,
        evaluation: &dyn Corruption,
    ) -> Result<f64> {
        let t = &self.recipe.training;
        let rows = &self.dataset.validation;
        mean_loss(
            &model.valid(),
            evaluation,
            &rows[..rows.len().min(t.eval_batches * t.batch_size)],
            t.batch_size,
            1,
            t.seed,
            &self.options.device,
            || {},
        )
    }

    /// Records a validation loss in the state, the log and `metrics.jsonl`.
    fn report_validation(
        &self,
        state: &mut TrainerState,
        validation: f64,
        bar: &ProgressBar,
        log: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let corruption = &self.recipe.corruption;
        state.validation_losses.push((state.step, validation));
        let line = format!(
            "step {} validation loss {validation:.4}{}",
            state.step,
            perplexity_note(corruption, validation)
        );
        bar.println(&line);
        if !self.options.show_progress {
            log(&line);
        }
        let mut record = serde_json::json!({
            "step": state.step, "validation_loss": validation,
        });
        if let Some((name, value)) = perplexity_figure(corruption, validation) {
            record[name] = value.into();
        }
        append_metric(&self.options.run_dir, record)
    }
}

type WriteModel<'a, M> = dyn Fn(&M, &TrainerState, &Path) -> Result<()> + 'a;
type MakeDenoiser<'a, M> = dyn Fn(&M, &Device) -> Result<Box<dyn Denoiser>> + 'a;

impl Steps<'_> {
    /// The training loop: from the checkpoint when resuming (weights, optimizer, state), else
    /// from `model` at step 0.
    fn run<M: Module + LossModel + Send + Sync>(
        &self,
        model: M,
        write_model: &WriteModel<'_, M>,
        make_denoiser: &MakeDenoiser<'_, M>,
        log: &mut dyn FnMut(&str),
    ) -> Result<TrainOutcome> {
        let (recipe, options, t) = (self.recipe, self.options, &self.recipe.training);
        let run = &options.run_dir;
        let mut optimizer: ModuleOptimizer = AdamWConfig::new()
            .with_weight_decay(t.weight_decay as f32)
            .with_epsilon(1e-8)
            .init();
        let mut state = if options.resume {
            let dir = find_checkpoint(run)?;
            optimizer = load_optimizer(optimizer, &dir)?;
            let state: TrainerState = crate::io::read_json(&dir.join(checkpoint::STATE_FILE))?;
            log(&format!(
                "resuming {} at step {}",
                run.display(),
                state.step
            ));
            state
        } else {
            crate::io::write_atomic(&run.join(RECIPE_FILE), recipe.to_toml()?.as_bytes())?;
            TrainerState {
                step: 0,
                tokens_seen: 0,
                elapsed_seconds: 0.0,
                train_losses: Vec::new(),
                validation_losses: Vec::new(),
            }
        };
        let mut model = model;
        log(&format!(
            "model: {} parameters ({}), corruption `{}`",
            model.num_params(),
            self.description,
            recipe.corruption.name()
        ));
        let corruption = recipe.corruption.build(&self.vocabulary);
        let evaluation = recipe.corruption.evaluation(&self.vocabulary);
        let schedule = LearningRateSchedule {
            peak: t.learning_rate,
            warmup_steps: t.warmup_steps,
            total_steps: t.max_steps,
            final_ratio: t.final_learning_rate_ratio,
        };
        let mut order = DataOrder {
            seed: t.seed,
            size: self.dataset.train.len(),
            cached_epoch: None,
        };
        let bar = if options.show_progress {
            ProgressBar::new(t.max_steps as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(state.step as u64);
        let started = Instant::now();
        let elapsed_before = state.elapsed_seconds;
        let mut window = (Instant::now(), 0u64);
        let base_device = options.device.clone();
        let train_device = options.device.clone().autodiff();
        let save = |model: &M, optimizer: &ModuleOptimizer, state: &TrainerState| {
            write_checkpoint(run, &|dir| write_model(model, state, dir), optimizer, state)
        };
        // A model that starts from weights is scored before its first step: the figure
        // fine-tuning is measured against.
        if self.validate_at_start && state.step == 0 && !self.dataset.validation.is_empty() {
            let validation = self.validate(&model, evaluation.as_ref())?;
            self.report_validation(&mut state, validation, &bar, log)?;
        }

        while state.step < t.max_steps {
            if options.interrupt.load(Ordering::SeqCst) {
                state.elapsed_seconds = elapsed_before + started.elapsed().as_secs_f64();
                save(&model, &optimizer, &state)?;
                bar.abandon();
                log(&format!(
                    "interrupted: checkpoint at step {} written; continue with --resume {}",
                    state.step,
                    run.display()
                ));
                return Ok(TrainOutcome {
                    state,
                    interrupted: true,
                    checkpoint: checkpoint_path(run),
                });
            }
            let step = state.step;
            let mut accumulator = GradientsAccumulator::<M>::new();
            let mut loss_sum = 0.0f64;
            let mut step_tokens = 0u64;
            for micro in 0..t.gradient_accumulation {
                let micro_index = step * t.gradient_accumulation + micro;
                let indices = order.indices(micro_index * t.batch_size, t.batch_size);
                let clean = PackedDataset::batch(&self.dataset.train, &indices);
                let clean = maybe_shorten(
                    clean,
                    t.random_length_probability,
                    &mut rng_for(t.seed, LENGTH_STREAM + micro_index as u64),
                );
                step_tokens += (clean.batch * clean.length) as u64;
                // One corruption stream per (micro-batch, shard); a single shard keeps the
                // stream of the whole micro-batch.
                let (gradients, loss) = data_parallel::batch_gradients(
                    &model,
                    corruption.as_ref(),
                    &clean,
                    step,
                    t.data_parallel_shards,
                    1.0 / t.gradient_accumulation as f64,
                    |shard| {
                        let stream = micro_index * t.data_parallel_shards + shard;
                        rng_for(t.seed, CORRUPTION_STREAM + stream as u64)
                    },
                    &train_device,
                )?;
                loss_sum += loss;
                accumulator.accumulate(&model, gradients);
            }
            if !loss_sum.is_finite() {
                return Err(FlowError::Checkpoint(format!(
                    "the loss became {loss_sum} at step {step}; lower training.learning_rate (the last checkpoint is intact)"
                )));
            }
            let (gradients, gradient_norm) =
                clip_global_norm(&model, accumulator.grads(), t.gradient_clip);
            let learning_rate = schedule.at(step);
            model = optimizer.step(learning_rate, model, gradients);
            state.step += 1;
            state.tokens_seen += step_tokens;
            state.train_losses.push((state.step, loss_sum));
            window.1 += step_tokens;
            bar.inc(1);

            if state.step % t.log_every == 0 || state.step == t.max_steps {
                let seconds = window.0.elapsed().as_secs_f64().max(1e-9);
                let tokens_per_second = window.1 as f64 / seconds;
                window = (Instant::now(), 0);
                bar.set_message(format!(
                    "loss {loss_sum:.4} lr {learning_rate:.2e} {tokens_per_second:.0} tok/s"
                ));
                if !options.show_progress {
                    log(&format!(
                        "step {} loss {loss_sum:.4} lr {learning_rate:.2e} {tokens_per_second:.0} tok/s",
                        state.step
                    ));
                }
                append_metric(
                    run,
                    serde_json::json!({
                        "step": state.step, "loss": loss_sum, "learning_rate": learning_rate,
                        "gradient_norm": gradient_norm, "tokens_per_second": tokens_per_second,
                        "tokens_seen": state.tokens_seen,
                    }),
                )?;
            }
            let last = state.step == t.max_steps;
            // Without validation rows there is no validation loss to report (not a loss of 0).
            let validation_rows = &self.dataset.validation;
            let validate = !validation_rows.is_empty()
                && ((t.eval_every > 0 && state.step % t.eval_every == 0) || last);
            if validate {
                let validation = self.validate(&model, evaluation.as_ref())?;
                self.report_validation(&mut state, validation, &bar, log)?;
            }
            if (t.sample_every > 0 && state.step % t.sample_every == 0) || last {
                // A failed sample is reported, not fatal: it says nothing about the weights.
                let sample = make_denoiser(&model.valid(), &base_device).and_then(|denoiser| {
                    training_sample(
                        denoiser.as_ref(),
                        self.tokenizer,
                        &recipe.corruption,
                        &recipe.sampler,
                        &t.sample_prompt,
                        recipe.data.sequence_length,
                        t.seed,
                    )
                });
                let line = match sample {
                    Ok(text) => format!("sample @ {}: {}", state.step, text.replace('\n', " / ")),
                    Err(error) => format!("sample @ {} failed: {error}", state.step),
                };
                bar.println(&line);
                if !options.show_progress {
                    log(&line);
                }
            }
            if (t.checkpoint_every > 0 && state.step % t.checkpoint_every == 0) || last {
                state.elapsed_seconds = elapsed_before + started.elapsed().as_secs_f64();
                save(&model, &optimizer, &state)?;
            }
        }
        bar.finish_and_clear();
        // The plot is a convenience: a run that trained must not fail over it.
        let _ = crate::plot::plot_losses(
            &run.join(PLOT_FILE),
            &loss_plot_title(run, recipe, &self.description),
            &state.train_losses,
            &state.validation_losses,
        );
        Ok(TrainOutcome {
            state,
            interrupted: false,
            checkpoint: checkpoint_path(run),
        })
    }
}
