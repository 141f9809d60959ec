use anyhow::Context;
use clap::Args;
use flowlm::model::saved::{SavedModel, WeightPrecision};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// Model directory to copy, e.g. runs/shakespeare/checkpoint
    #[arg(long)]
    model: PathBuf,
    /// New model directory (must not exist yet)
    #[arg(long)]
    out: PathBuf,
    /// Precision of the written weights: f32, f16 or bf16 (loading always computes in f32)
    #[arg(long, default_value = "f16")]
    precision: String,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let precision = WeightPrecision::parse(&args.precision).with_context(|| {
        format!(
            "--precision {}: use one of {}",
            args.precision,
            WeightPrecision::NAMES.join(", ")
        )
    })?;
    let saved = SavedModel::load(&args.model, &flowlm::device::parse_device("cpu")?)
        .with_context(|| format!("loading {}", args.model.display()))?;
    saved.export(&args.out, precision)?;
    eprintln!("wrote {} ({} weights)", args.out.display(), args.precision);
    Ok(())
}
