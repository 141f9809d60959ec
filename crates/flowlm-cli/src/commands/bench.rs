use super::task_names;
use anyhow::Context;
use clap::{Args, ValueEnum};
use flowlm::eval::throughput::{Throughput, bench_generate, bench_train, peak_memory_bytes};
use flowlm::model::SavedModel;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum)]
enum What {
    /// Training steps (forward + backward + AdamW) with the model's shape
    Train,
    /// LLaDA generation with the model (temperature 0, one block, one step per token)
    Generate,
    /// Fast-dLLM's modes side by side: no cache, prefix cache, dual cache, each with one token
    /// per step and with the threshold rule; with --task-model, their accuracy on a task
    Cache,
}

/// Throughput, cores used and peak memory. `benches/reference.py` runs this beside a PyTorch
/// eager implementation of the same model and prints the ratios.
#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    what: What,
    /// Model directory whose shape (train: a FlowLM model) or weights (generate, cache: any model
    /// FlowLM opens, pretrained checkpoints included) to use [default: models/default]
    #[arg(long)]
    model: Option<PathBuf>,
    /// generate: instead of --model, a checkpoint of these shapes built in memory with random
    /// bf16 weights, no file (llada-8b: LLaDA-8B's 8.0B parameters, 16 GB; llada-46m)
    #[arg(long, value_name = "PRESET", conflicts_with = "model")]
    random_weights: Option<String>,
    /// Training batch; generate runs batch 1 and this batch
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Timed iterations (training steps; generations, divided among the batch's rows; cache:
    /// rounds timing every mode once, medians reported) [default: 10, cache: 3]
    #[arg(long)]
    iterations: Option<usize>,
    /// train: data-parallel shards per batch (1 = one replica, as a plain training step)
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// generate: tokens to generate (steps = this, one block) [default: 64, cache: 256]
    #[arg(long)]
    gen_length: Option<usize>,
    /// cache: the speed run's prompt (empty: unconditional, the whole context is the answer)
    #[arg(long, default_value = "")]
    prompt: String,
    /// cache: block length of the speed run
    #[arg(long, default_value_t = 32)]
    block_length: usize,
    /// cache: the threshold rule's confidence tau
    #[arg(long, default_value_t = 0.9)]
    threshold: f64,
    /// cache: a task model (FlowLM directory) whose accuracy each mode is scored on
    #[arg(long, requires_all = ["task", "task_data"])]
    task_model: Option<PathBuf>,
    /// cache: the task's name
    #[arg(long, value_parser = task_names())]
    task: Option<String>,
    /// cache: held-out prompt/response JSONL of the task (`flowlm data task` writes test.jsonl)
    #[arg(long)]
    task_data: Option<PathBuf>,
    /// cache: block length on the task (the answer is decoded into whole blocks; a task model trained on rows padded with its end token writes that token in the slots past the answer)
    #[arg(long, default_value_t = 8)]
    task_block_length: usize,
    /// cache: task examples to score (the first N)
    #[arg(long, default_value_t = 300)]
    examples: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print one JSON object instead of text (read by benches/reference.py)
    #[arg(long)]
    json: bool,
}

impl BenchArgs {
    fn cache_args(&self, gen_length: usize, iterations: usize) -> super::bench_cache::CacheBench {
        super::bench_cache::CacheBench {
            prompt: self.prompt.clone(),
            gen_length,
            block_length: self.block_length,
            threshold: self.threshold,
            repeats: iterations,
            task: self
                .task_model
                .clone()
                .zip(self.task.clone())
                .zip(self.task_data.clone())
                .map(|((model, name), data)| super::bench_cache::TaskBench {
                    model,
                    name,
                    data,
                    block_length: self.task_block_length,
                    examples: self.examples,
                    batch_size: self.batch_size,
                }),
        }
    }
}

/// `x` with three significant digits (0.0734, 7.34, 734), so that an 8B model's rate reads as
/// more than "0.1".
fn three_digits(x: f64) -> String {
    let decimals = if x > 0.0 {
        (2.0 - x.abs().log10().floor()).max(0.0) as usize
    } else {
        1
    };
    format!("{x:.decimals$}")
}

fn cores_used(result: &Throughput) -> f64 {
    result.cpu_seconds / result.seconds.max(1e-9)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    use flowlm::limits::{MAX_BATCH, MAX_SHARDS, within};
    let cache = matches!(args.what, What::Cache);
    let iterations = args.iterations.unwrap_or(if cache { 3 } else { 10 });
    let gen_length = args.gen_length.unwrap_or(if cache { 256 } else { 64 });
    // Shards split a training batch; generation ignores them, so only training checks them.
    let shards_max = match args.what {
        What::Train => MAX_SHARDS.min(args.batch_size.max(1)),
        _ => MAX_SHARDS,
    };
    for (flag, value, max) in [
        ("--batch-size", args.batch_size, MAX_BATCH),
        ("--iterations", iterations, 1_000_000),
        ("--shards", args.shards, shards_max),
        ("--gen-length", gen_length, flowlm::limits::MAX_SEQUENCE),
        ("--examples", args.examples, 1_000_000),
    ] {
        within(value, 1, max).map_err(|message| anyhow::anyhow!("{flag} {message}"))?;
    }
    if args.random_weights.is_some() && !matches!(args.what, What::Generate) {
        anyhow::bail!("--random-weights is for `bench generate` (train and cache read --model)");
    }
    let device = super::device(&args.device)?;
    let dir = args.model.clone().unwrap_or_else(super::default_model_dir);
    let mut report = serde_json::Map::new();
    match args.what {
        What::Cache => {
            return super::bench_cache::run(
                &args.cache_args(gen_length, iterations),
                &dir,
                &device,
            );
        }
        What::Train => train(&args, iterations, &dir, &device, &mut report)?,
        What::Generate => generate(&args, iterations, gen_length, &dir, &device, &mut report)?,
    }
    let peak = peak_memory_bytes();
    report.insert("peak_memory_bytes".into(), json!(peak));
    if args.json {
        println!("{}", serde_json::Value::Object(report));
    } else if let Some(bytes) = peak {
        println!(
            "  peak memory (VmHWM) {:.0} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

/// `bench train`: training steps with the model's shape (a FlowLM model directory).
fn train(
    args: &BenchArgs,
    iterations: usize,
    dir: &Path,
    device: &burn::tensor::Device,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let saved =
        SavedModel::load(dir, device).with_context(|| format!("loading {}", dir.display()))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let length = saved.metadata.sequence_length;
    let result = bench_train(
        &saved.config,
        args.batch_size,
        length,
        iterations,
        2,
        args.shards,
        device,
    )?;
    report.insert("tokens_per_second".into(), json!(result.tokens_per_second));
    report.insert("seconds".into(), json!(result.seconds));
    report.insert("cpu_seconds".into(), json!(result.cpu_seconds));
    if !args.json {
        println!(
            "bench train: model {} (hidden {}, {} layers, vocab {}), batch {} x {} tokens, {} cores available",
            dir.display(),
            saved.config.hidden_size,
            saved.config.num_hidden_layers,
            saved.config.vocab_size,
            args.batch_size,
            length,
            threads
        );
        println!(
            "  {:.0} tokens/s ({} steps in {:.2} s, {:.1} ms/step), {:.2} cores used",
            result.tokens_per_second,
            result.iterations,
            result.seconds,
            result.seconds * 1e3 / result.iterations as f64,
            cores_used(&result)
        );
    }
    Ok(())
}

/// `bench generate`: LLaDA generation with any model FlowLM opens (its own or a pretrained
/// checkpoint), at batch 1 and `--batch-size`.
fn generate(
    args: &BenchArgs,
    iterations: usize,
    gen_length: usize,
    dir: &Path,
    device: &burn::tensor::Device,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    // (denoiser, prompt ids, mask id, pad id, context)
    let (denoiser, prompt, mask, pad, context) = match &args.random_weights {
        Some(preset) => {
            if !args.json {
                eprintln!("building {preset} with random bf16 weights in memory");
            }
            let network = flowlm::model::families::random_network(preset, device)?;
            let mask = network
                .mask_token_id()
                .context("the preset's config names no mask_token_id")?;
            let context = network.context_length();
            let denoiser: Box<dyn flowlm::model::Denoiser> =
                Box::new(flowlm::model::families::NetworkDenoiser {
                    network,
                    device: device.clone(),
                });
            // Random weights come without a tokenizer: six arbitrary ids stand for "ROMEO:".
            (denoiser, (1..=6).collect::<Vec<u32>>(), mask, 0, context)
        }
        None => {
            let model = super::open_model(dir, device)?;
            let mut prompt = model.prompt_prefix.clone();
            prompt.extend(model.tokenizer.encode("ROMEO:")?);
            let ids = &model.metadata;
            let (mask, pad) = (ids.mask_token_id, ids.pad_token_id);
            (model.denoiser, prompt, mask, pad, model.context_length)
        }
    };
    let room = context.saturating_sub(prompt.len());
    if room == 0 {
        anyhow::bail!("the model's context leaves no room after the prompt");
    }
    let gen_length = gen_length.min(room);
    report.insert("prompt".into(), json!(prompt));
    for batch in [1, args.batch_size] {
        let result = bench_generate(
            &*denoiser,
            &prompt,
            mask,
            pad,
            gen_length,
            gen_length,
            batch,
            iterations.div_ceil(batch).max(1),
        )?;
        let t = &result.throughput;
        report.insert(
            batch.to_string(),
            json!({
                "tokens_per_second": t.tokens_per_second,
                "seconds": t.seconds,
                "cpu_seconds": t.cpu_seconds,
                "tokens": result.tokens,
                "rows_agree": result.rows_agree,
            }),
        );
        if !args.json {
            println!(
                "bench generate: batch {batch}, {gen_length} tokens in {gen_length} steps: {} generated tokens/s ({} s per forward pass), {:.2} cores used",
                three_digits(t.tokens_per_second),
                three_digits(batch as f64 / t.tokens_per_second.max(1e-12)),
                cores_used(t)
            );
        }
    }
    Ok(())
}
