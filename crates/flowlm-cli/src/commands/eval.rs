use anyhow::Context;
use clap::Args;
use flowlm::data::{load_documents, tokenize_cached};
use flowlm::eval::likelihood;
use flowlm::model::SavedModel;
use indicatif::ProgressBar;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    /// Model directory (default: models/default)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Text file, JSONL file or folder to score
    #[arg(long)]
    data: PathBuf,
    /// Monte-Carlo draws of t per sequence
    #[arg(long, default_value_t = 4)]
    samples: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let device = super::device(&args.device)?;
    let dir = args.model.clone().unwrap_or_else(super::default_model_dir);
    let saved =
        SavedModel::load(&dir, &device).with_context(|| format!("loading {}", dir.display()))?;
    let bytes: usize = load_documents(&args.data)?
        .iter()
        .map(|d| match d {
            flowlm::data::Document::Text(t) => t.len() + 1,
            flowlm::data::Document::PromptResponse { prompt, response } => {
                prompt.len() + response.len() + 1
            }
        })
        .sum();
    let (documents, _) = tokenize_cached(&args.data, &[], &saved.tokenizer, true)?;
    let tokens: usize = documents.iter().map(|d| d.body.len() + 1).sum();
    let rows = tokens / saved.metadata.sequence_length;
    let bar = ProgressBar::new((rows.div_ceil(args.batch_size.max(1)) * args.samples) as u64);
    let report = likelihood(
        &saved,
        &documents,
        bytes,
        args.samples,
        args.batch_size.max(1),
        args.seed,
        &device,
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    println!("model            {}", dir.display());
    println!(
        "data             {} ({} sequences x {} tokens, {} bytes)",
        args.data.display(),
        report.sequences,
        saved.metadata.sequence_length,
        report.bytes
    );
    println!(
        "NELBO per token  {:.4} nats ({} Monte-Carlo samples, seed {})",
        report.nelbo_per_token, args.samples, args.seed
    );
    println!("perplexity bound {:.2}", report.perplexity_bound);
    println!("bits per byte    {:.4}", report.bits_per_byte);
    Ok(())
}
