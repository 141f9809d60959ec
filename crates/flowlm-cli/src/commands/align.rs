//! `flowlm align`: x-prediction MSE alignment on self-generated answers.

use anyhow::Context;
use clap::Args;
use flowlm::model::SavedModel;
use flowlm::trainer::align::{AlignOptions, align};
use indicatif::ProgressBar;
use std::path::PathBuf;

#[derive(Args)]
pub struct AlignArgs {
    /// The masked diffusion model directory
    #[arg(long)]
    model: PathBuf,
    /// Prompt/response JSONL whose prompts the model answers itself (e.g. a task's train.jsonl)
    #[arg(long)]
    data: PathBuf,
    /// Where the aligned model goes (default: MODEL-aligned)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Prompts to self-generate answers for
    #[arg(long, default_value_t = 512)]
    examples: usize,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    learning_rate: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: AlignArgs) -> anyhow::Result<()> {
    let device = super::device(&args.device)?;
    let saved = SavedModel::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let examples = super::eval_budget::read_examples(&args.data, args.examples)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let mut name = args.model.as_os_str().to_owned();
        name.push("-aligned");
        PathBuf::from(name)
    });
    let options = AlignOptions {
        steps: args.steps,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        seed: args.seed,
    };
    let bar = ProgressBar::new(args.steps as u64);
    let (before, after) = align(
        &saved,
        &examples,
        &options,
        &out,
        &device,
        &mut |_, loss| {
            bar.set_message(format!("mse {loss:.4}"));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    println!("| | before | after |");
    println!("|---|---:|---:|");
    println!(
        "| MSE, masked positions | {:.4} | {:.4} |",
        before.mse_masked, after.mse_masked
    );
    println!(
        "| MSE, unmasked positions | {:.4} | {:.4} |",
        before.mse_unmasked, after.mse_unmasked
    );
    println!(
        "| masked-position CE (nats) | {:.4} | {:.4} |",
        before.masked_cross_entropy, after.masked_cross_entropy
    );
    let change = after.masked_cross_entropy / before.masked_cross_entropy.max(1e-12) - 1.0;
    println!(
        "\nmasked CE changed by {:+.1}%; aligned model in {}",
        100.0 * change,
        out.display()
    );
    Ok(())
}
