use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use flowlm::data::{cache_directory, load_documents, tokenize_cached};
use flowlm::eval::likelihood;
use flowlm::model::open::ScoredModel;
use indicatif::ProgressBar;
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    #[command(flatten)]
    likelihood: LikelihoodArgs,
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Plant random substitutions (and masks) in held-out text and let the `correct` sampler
    /// repair them: share restored, share of clean tokens wrongly changed, masks filled right
    Correct(super::eval_correction::CorrectArgs),
    /// Cross-entropy at hidden positions for fixed hiding rates (comparable across families)
    MaskedCe(super::eval_correction::MaskedCeArgs),
    /// Exact-match accuracy per sampler and step budget on a checkable task; Markdown table,
    /// CSV and PNG
    Budget(super::eval_budget::BudgetArgs),
    /// Accuracy on the states x-prediction flow decoding visits: every answer slot blended
    /// between the mask and a token's embedding, towards the right token and a wrong one
    FlowStates(super::eval_budget::FlowStatesArgs),
}

/// Without a subcommand: NELBO per token, perplexity bound, bits per byte.
#[derive(Args)]
pub struct LikelihoodArgs {
    /// Model directory (default: models/default)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Text file, JSONL file or folder to score
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// Monte-Carlo draws of t per sequence
    #[arg(long, default_value_t = 4)]
    samples: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Tokens per scored row (default: a FlowLM model's training length, a pretrained
    /// checkpoint's whole context); at most the model's context
    #[arg(long)]
    sequence_length: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    match args.command {
        Some(EvalCommand::Correct(a)) => super::eval_correction::run_correct(a),
        Some(EvalCommand::MaskedCe(a)) => super::eval_correction::run_masked_ce(a),
        Some(EvalCommand::Budget(a)) => super::eval_budget::run(a),
        Some(EvalCommand::FlowStates(a)) => super::eval_budget::run_flow_states(a),
        None => run_likelihood(args.likelihood),
    }
}

fn run_likelihood(args: LikelihoodArgs) -> anyhow::Result<()> {
    let data = args
        .data
        .clone()
        .context("--data is required (a text file, JSONL file or folder to score)")?;
    let device = super::device(&args.device)?;
    let dir = args.model.clone().unwrap_or_else(super::default_model_dir);
    let mut scored =
        ScoredModel::open(&dir, &device).with_context(|| format!("loading {}", dir.display()))?;
    if let Some(length) = args.sequence_length {
        if length < 2 || length > scored.context_length {
            bail!(
                "--sequence-length {length}: must be between 2 and the model's context, {}",
                scored.context_length
            );
        }
        scored.metadata.sequence_length = length;
    }
    let mut bytes = 0;
    for document in load_documents(&data)? {
        let (prompt, body) = document.prompt_and_body(None)?;
        bytes += prompt.len() + body.len() + 1;
    }
    let (documents, _) = tokenize_cached(
        &data,
        &[],
        &scored.tokenizer,
        None,
        Some(&cache_directory()),
    )?;
    let tokens: usize = documents.iter().map(|d| d.body.len() + 1).sum();
    let rows = tokens / scored.metadata.sequence_length;
    let bar = ProgressBar::new((rows.div_ceil(args.batch_size.max(1)) * args.samples) as u64);
    let report = likelihood(
        scored.model.as_ref(),
        &scored.metadata,
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
        data.display(),
        report.sequences,
        scored.metadata.sequence_length,
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
