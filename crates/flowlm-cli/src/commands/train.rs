use anyhow::{Context, bail};
use clap::Args;
use flowlm::recipe::Recipe;
use flowlm::trainer::{RECIPE_FILE, TrainOptions, train};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Args)]
pub struct TrainArgs {
    /// Recipe file, e.g. configs/shakespeare.toml
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a recipe field: --set training.max_steps=500 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run directory (checkpoint, metrics.jsonl, loss.png); default runs/<recipe name>
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory exactly where its checkpoint stopped
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Start from this model instead of a fresh one: a FlowLM model directory (continue it with
    /// the recipe's objective and data; its config and tokenizer replace the recipe's [model]
    /// and [tokenizer]) or a pretrained checkpoint of a known family (fine-tuning with mask,
    /// mask_and_substitute or uniform; the run's checkpoint is that family's directory)
    #[arg(long, value_name = "MODEL_DIR")]
    init: Option<PathBuf>,
    /// Replace the run already in --out (its checkpoint, metrics and recipe) with a new one
    #[arg(long)]
    force: bool,
    /// cpu (Flex) or vulkan (needs the `gpu` feature)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print log lines instead of a progress bar
    #[arg(long)]
    no_progress: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let (recipe, run_dir, resume) = match (&args.resume, &args.config) {
        (Some(_), _) if args.init.is_some() => bail!(
            "--init starts a new run; --resume continues one from its own checkpoint (give one of them)"
        ),
        (Some(_), Some(_)) => bail!(
            "give either --config (a new run) or --resume RUN_DIR (which reads RUN_DIR/{RECIPE_FILE}), not both"
        ),
        (Some(run), None) => {
            let recipe =
                Recipe::load(&run.join(RECIPE_FILE), &args.overrides).with_context(|| {
                    format!(
                        "{} is not a run directory written by `flowlm train`",
                        run.display()
                    )
                })?;
            (recipe, run.clone(), true)
        }
        (None, Some(config)) => {
            let recipe = Recipe::load(config, &args.overrides)?;
            let name = config
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs").join(name));
            (recipe, out, false)
        }
        (None, None) => bail!(
            "give --config configs/NAME.toml to start a run, or --resume RUN_DIR to continue one"
        ),
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("second Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted (Ctrl-C or SIGTERM): finishing the step and writing a checkpoint (again to abort)"
        );
    })
    .context("installing the Ctrl-C handler")?;
    let options = TrainOptions {
        run_dir: run_dir.clone(),
        resume,
        force: args.force,
        device: super::device(&args.device)?,
        init: args.init.clone(),
        show_progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        interrupt,
    };
    let outcome = train(&recipe, &options, &mut |line| eprintln!("{line}"))?;
    let state = &outcome.state;
    println!(
        "{} after {} steps ({} tokens, {:.0} s). Model: {}",
        if outcome.interrupted {
            "stopped"
        } else {
            "finished"
        },
        state.step,
        state.tokens_seen,
        state.elapsed_seconds,
        outcome.checkpoint.display()
    );
    if let Some((_, v)) = state.validation_losses.last() {
        println!(
            "validation loss {v:.4}{}",
            flowlm::trainer::perplexity_note(&recipe.corruption, *v)
        );
    }
    if outcome.interrupted {
        std::process::exit(130);
    }
    Ok(())
}
