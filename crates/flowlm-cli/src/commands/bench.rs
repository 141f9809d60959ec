use anyhow::Context;
use clap::{Args, ValueEnum};
use flowlm::eval::throughput::{Throughput, bench_generate, bench_train, peak_memory_bytes};
use flowlm::model::SavedModel;
use serde_json::json;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum What {
    /// Training steps (forward + backward + AdamW) with the model's shape
    Train,
    /// LLaDA generation with the model (temperature 0, one block, one step per token)
    Generate,
}

/// Throughput, cores used and peak memory. `benches/reference.py` runs this beside a PyTorch
/// eager implementation of the same model and prints the ratios.
#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    what: What,
    /// Model directory whose shape (train) or weights (generate) to use [default: models/default]
    #[arg(long)]
    model: Option<PathBuf>,
    /// Training batch; generate runs batch 1 and this batch
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Timed iterations (training steps; generations, divided among the batch's rows)
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// train: data-parallel shards per batch (1 = one replica, as a plain training step)
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// generate: tokens to generate (steps = this, one block)
    #[arg(long, default_value_t = 64)]
    gen_length: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print one JSON object instead of text (read by benches/reference.py)
    #[arg(long)]
    json: bool,
}

fn cores_used(result: &Throughput) -> f64 {
    result.cpu_seconds / result.seconds.max(1e-9)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    use flowlm::limits::{MAX_BATCH, MAX_SHARDS, within};
    for (flag, value, max) in [
        ("--batch-size", args.batch_size, MAX_BATCH),
        ("--iterations", args.iterations, 1_000_000),
        (
            "--shards",
            args.shards,
            MAX_SHARDS.min(args.batch_size.max(1)),
        ),
        (
            "--gen-length",
            args.gen_length,
            flowlm::limits::MAX_SEQUENCE,
        ),
    ] {
        within(value, 1, max).map_err(|message| anyhow::anyhow!("{flag} {message}"))?;
    }
    let device = super::device(&args.device)?;
    let dir = args.model.clone().unwrap_or_else(super::default_model_dir);
    let saved =
        SavedModel::load(&dir, &device).with_context(|| format!("loading {}", dir.display()))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut report = serde_json::Map::new();
    match args.what {
        What::Train => {
            let length = saved.metadata.sequence_length;
            let result = bench_train(
                &saved.config,
                args.batch_size,
                length,
                args.iterations,
                2,
                args.shards,
                &device,
            );
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
        }
        What::Generate => {
            let special = saved.tokenizer.special();
            let prompt = saved.tokenizer.encode("ROMEO:")?;
            let room = saved.metadata.sequence_length.saturating_sub(prompt.len());
            if room == 0 {
                anyhow::bail!("the model's sequence length leaves no room after the prompt");
            }
            let gen_length = args.gen_length.min(room);
            let denoiser = saved.denoiser(&device);
            report.insert("prompt".into(), json!(prompt));
            for batch in [1, args.batch_size] {
                let result = bench_generate(
                    &denoiser,
                    &prompt,
                    special.mask,
                    special.pad,
                    gen_length,
                    gen_length,
                    batch,
                    args.iterations.div_ceil(batch).max(1),
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
                        "bench generate: batch {batch}, {gen_length} tokens in {gen_length} steps: {:.1} generated tokens/s ({:.1} forward passes/s), {:.2} cores used",
                        t.tokens_per_second,
                        t.tokens_per_second / batch as f64,
                        cores_used(t)
                    );
                }
            }
        }
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
