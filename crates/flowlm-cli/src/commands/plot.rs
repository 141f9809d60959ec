use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlotArgs {
    /// Run directory written by `flowlm train` (reads its metrics.jsonl)
    run: PathBuf,
    /// PNG to write [default: RUN/loss.png]
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let out = args
        .out
        .unwrap_or_else(|| args.run.join(flowlm::trainer::PLOT_FILE));
    flowlm::plot::plot_run(&args.run, &out)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
