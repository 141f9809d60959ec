use anyhow::Context;
use clap::{Args, ValueEnum};
use flowlm::eval::throughput::{bench_generate, bench_train, peak_memory_bytes};
use flowlm::model::SavedModel;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum What {
    /// Training steps (forward + backward + AdamW) with the model's shape
    Train,
    /// LLaDA generation with the model
    Generate,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    what: What,
    /// Model directory whose shape (train) or weights (generate) to use
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Timed iterations
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// generate: tokens to generate (steps = this, one block)
    #[arg(long, default_value_t = 64)]
    gen_length: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = super::device(&args.device)?;
    let dir = args.model.clone().unwrap_or_else(super::default_model_dir);
    let saved =
        SavedModel::load(&dir, &device).with_context(|| format!("loading {}", dir.display()))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match args.what {
        What::Train => {
            let length = saved.metadata.sequence_length;
            let result = bench_train(
                &saved.config,
                args.batch_size,
                length,
                args.iterations,
                2,
                &device,
            );
            println!(
                "bench train: model {} (hidden {}, {} layers, vocab {}), batch {} x {} tokens, {} threads",
                dir.display(),
                saved.config.hidden_size,
                saved.config.num_hidden_layers,
                saved.config.vocab_size,
                args.batch_size,
                length,
                threads
            );
            println!(
                "  {:.0} tokens/s ({} steps in {:.2} s, {:.1} ms/step)",
                result.tokens_per_second,
                result.iterations,
                result.seconds,
                result.seconds * 1e3 / result.iterations as f64
            );
        }
        What::Generate => {
            let special = saved.tokenizer.special();
            let prompt = saved.tokenizer.encode("ROMEO:")?;
            let denoiser = saved.denoiser(&device);
            let gen_length = args
                .gen_length
                .min(saved.metadata.sequence_length - prompt.len());
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
                println!(
                    "bench generate: batch {batch}, {gen_length} tokens in {gen_length} steps: {:.1} generated tokens/s ({:.1} forward passes/s)",
                    result.tokens_per_second,
                    result.tokens_per_second / batch as f64
                );
            }
        }
    }
    if let Some(bytes) = peak_memory_bytes() {
        println!(
            "  peak memory (VmHWM) {:.0} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}
