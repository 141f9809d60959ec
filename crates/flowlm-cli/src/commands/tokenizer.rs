use clap::{Args, Subcommand};
use flowlm::tokenizer::train_byte_level_bpe;
use std::path::PathBuf;

#[derive(Args)]
pub struct TokenizerArgs {
    #[command(subcommand)]
    command: TokenizerCommand,
}

#[derive(Subcommand)]
enum TokenizerCommand {
    /// Train a byte-level BPE on text files and write DIR/tokenizer.json
    Train {
        #[arg(long, default_value_t = 4096)]
        vocab_size: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(args: TokenizerArgs) -> anyhow::Result<()> {
    match args.command {
        TokenizerCommand::Train {
            vocab_size,
            out,
            files,
        } => {
            let mut inputs = Vec::new();
            for f in &files {
                inputs.extend(flowlm::data::data_files(f)?);
            }
            let tokenizer = train_byte_level_bpe(&inputs, vocab_size)?;
            std::fs::create_dir_all(&out)?;
            let path = out.join("tokenizer.json");
            tokenizer.save(&path)?;
            let s = tokenizer.special();
            println!(
                "wrote {} ({} tokens; mask id {}, end-of-text id {})",
                path.display(),
                tokenizer.vocab_size(),
                s.mask,
                s.eos
            );
        }
    }
    Ok(())
}
