//! `flowlm eval correct` and `flowlm eval masked-ce`.

use anyhow::Context;
use clap::Args;
use flowlm::data::{cache_directory, tokenize_cached};
use flowlm::eval::{CorrectionOptions, correction_benchmark, masked_cross_entropy};
use flowlm::model::SavedModel;
use flowlm::sampler::Revision;
use indicatif::ProgressBar;
use std::path::PathBuf;

#[derive(Args)]
pub struct CorrectArgs {
    /// Model directory (default: models/default)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Held-out text to corrupt (a file, JSONL or folder)
    #[arg(long)]
    data: PathBuf,
    /// Share of visible tokens replaced by random tokens
    #[arg(long, default_value_t = 0.1)]
    substitute: f64,
    /// Share of tokens masked as well
    #[arg(long, default_value_t = 0.0)]
    mask: f64,
    /// Rows (of the model's sequence length) to corrupt
    #[arg(long, default_value_t = 32)]
    rows: usize,
    /// Step budget of the correct sampler
    #[arg(long, default_value_t = 32)]
    steps: usize,
    /// Replace a token whose own probability falls below this
    #[arg(long, default_value_t = 0.3)]
    edit_threshold: f64,
    /// Replace a token when another is predicted with more than this
    #[arg(long, default_value_t = 0.9)]
    accept_threshold: f64,
    /// A distrusted token is `replace`d by the prediction at once, or `remask`ed and refilled
    /// from the context on a later step (the visible wrong token no longer pulls the guess)
    #[arg(long, default_value = "replace",
          value_parser = clap::builder::PossibleValuesParser::new(Revision::NAMES))]
    revision: String,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
pub struct MaskedCeArgs {
    /// Model directory (default: models/default)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Held-out text (a file, JSONL or folder)
    #[arg(long)]
    data: PathBuf,
    /// Comma-separated hiding rates
    #[arg(long, value_delimiter = ',', default_value = "0.15,0.5,0.85")]
    rates: Vec<f64>,
    /// Rows (of the model's sequence length) to score
    #[arg(long, default_value_t = 64)]
    rows: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn load(
    model: &Option<PathBuf>,
    device: &str,
) -> anyhow::Result<(SavedModel, PathBuf, burn::tensor::Device)> {
    let device = super::device(device)?;
    let dir = model.clone().unwrap_or_else(super::default_model_dir);
    let saved =
        SavedModel::load(&dir, &device).with_context(|| format!("loading {}", dir.display()))?;
    Ok((saved, dir, device))
}

pub fn run_correct(args: CorrectArgs) -> anyhow::Result<()> {
    let (saved, dir, device) = load(&args.model, &args.device)?;
    let (documents, _) = tokenize_cached(
        &args.data,
        &[],
        &saved.tokenizer,
        None,
        Some(&cache_directory()),
    )?;
    let options = CorrectionOptions {
        substitute: args.substitute,
        mask: args.mask,
        rows: args.rows,
        batch_size: args.batch_size,
        steps: args.steps,
        edit_threshold: args.edit_threshold,
        accept_threshold: args.accept_threshold,
        revision: Revision::parse(&args.revision)?,
        seed: args.seed,
    };
    let bar = ProgressBar::new(args.rows.div_ceil(args.batch_size.max(1)) as u64);
    let report = correction_benchmark(&saved, &documents, &options, &device, || bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "model                  {} ({})",
        dir.display(),
        saved.metadata.corruption.name()
    );
    println!(
        "data                   {} ({} rows x {} tokens; substitute {}, mask {})",
        args.data.display(),
        report.rows,
        saved.metadata.sequence_length,
        args.substitute,
        args.mask
    );
    println!(
        "substitutions restored {:.1}% ({} of {})",
        100.0 * report.restored_share(),
        report.restored,
        report.substituted
    );
    println!(
        "clean tokens changed   {:.1}% ({} of {})",
        100.0 * report.wrongly_changed_share(),
        report.wrongly_changed,
        report.clean
    );
    if report.masked > 0 {
        println!(
            "masks filled correctly {:.1}% ({} of {})",
            100.0 * report.masks_correct_share(),
            report.masks_correct,
            report.masked
        );
    }
    println!(
        "steps used             {:.1} per row (budget {})",
        report.mean_steps(),
        args.steps
    );
    Ok(())
}

pub fn run_masked_ce(args: MaskedCeArgs) -> anyhow::Result<()> {
    let (saved, dir, device) = load(&args.model, &args.device)?;
    let (documents, _) = tokenize_cached(
        &args.data,
        &[],
        &saved.tokenizer,
        None,
        Some(&cache_directory()),
    )?;
    let batches = args.rows.div_ceil(args.batch_size.max(1)) * args.rates.len();
    let bar = ProgressBar::new(batches as u64);
    let results = masked_cross_entropy(
        &saved,
        &documents,
        &args.rates,
        args.rows,
        args.batch_size,
        args.seed,
        &device,
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    println!(
        "model {} ({})",
        dir.display(),
        saved.metadata.corruption.name()
    );
    println!("| rate | CE (nats) | hidden tokens | hidden by |");
    println!("|---:|---:|---:|---|");
    for r in &results {
        println!(
            "| {:.2} | {:.4} | {} | {} |",
            r.rate, r.cross_entropy, r.hidden, r.hidden_by
        );
    }
    Ok(())
}
