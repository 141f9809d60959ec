//! `flowlm eval budget`: accuracy per sampler and step budget on a checkable task; and
//! `flowlm eval flow-states`: accuracy on the states the x-prediction flow visits.

use super::task_names;
use anyhow::{Context, bail};
use clap::Args;
use flowlm::eval::budget::{
    BudgetCell, answer_tokens, budget_sampler, csv, markdown_table, plot_budget, steps_for_budget,
    task_accuracy,
};
use flowlm::eval::flow_states::{flow_state_accuracy, markdown_table as flow_markdown_table};
use flowlm::model::SavedModel;
use flowlm::tasks::{Example, task_for_data};
use indicatif::ProgressBar;
use std::path::PathBuf;

#[derive(Args)]
pub struct BudgetArgs {
    /// The diffusion model directory
    #[arg(long)]
    model: PathBuf,
    /// Task name
    #[arg(long, value_parser = task_names())]
    task: String,
    /// Held-out prompt/response JSONL (`flowlm data task ... --out DIR` writes DIR/test.jsonl)
    #[arg(long)]
    data: PathBuf,
    /// Budgets as fractions of the answer length (steps = budget x answer tokens)
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,1")]
    budgets: Vec<f64>,
    /// Samplers: llada, xflow, xflow-learned, ar (ar needs --ar-model)
    #[arg(long, value_delimiter = ',', default_value = "llada,xflow")]
    samplers: Vec<String>,
    /// The autoregressive baseline's model directory, for the `ar` row
    #[arg(long)]
    ar_model: Option<PathBuf>,
    /// Examples to score (the first N of --data)
    #[arg(long, default_value_t = 200)]
    examples: usize,
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Where budget.csv and budget.png go (default: the model directory)
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn read_examples(path: &PathBuf, limit: usize) -> anyhow::Result<Vec<Example>> {
    if limit == 0 {
        bail!("--examples: 0 is too few (at least 1)");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut examples = Vec::new();
    for (line, row) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let example: Example = serde_json::from_str(row).with_context(|| {
            format!(
                "{} line {}: expected {{\"prompt\", \"response\"}}",
                path.display(),
                line + 1
            )
        })?;
        examples.push(example);
        if examples.len() == limit {
            break;
        }
    }
    if examples.is_empty() {
        bail!("{} holds no examples", path.display());
    }
    Ok(examples)
}

pub fn run(args: BudgetArgs) -> anyhow::Result<()> {
    let device = super::device(&args.device)?;
    let saved = SavedModel::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let task = task_for_data(&args.task, &args.data)?;
    let examples = read_examples(&args.data, args.examples)?;
    let answer_length = answer_tokens(&saved, &examples)?;
    if let Some(bad) = args.budgets.iter().find(|b| !(**b > 0.0 && **b <= 1.0)) {
        bail!("--budgets: {bad} is not in (0, 1]");
    }
    let batches = examples.len().div_ceil(args.batch_size.max(1));
    let diffusion: Vec<&String> = args.samplers.iter().filter(|s| *s != "ar").collect();
    let bar = ProgressBar::new((batches * diffusion.len() * args.budgets.len()) as u64);
    let mut cells = Vec::new();
    for name in &diffusion {
        for &budget in &args.budgets {
            let steps = steps_for_budget(budget, answer_length);
            let sampler = budget_sampler(name, steps, answer_length, &saved)?;
            let correct = task_accuracy(
                &saved,
                task.as_ref(),
                &examples,
                answer_length,
                sampler.as_ref(),
                args.batch_size,
                &device,
                &mut || bar.inc(1),
            )?
            .correct;
            cells.push(BudgetCell {
                sampler: name.to_string(),
                budget,
                steps,
                correct,
                total: examples.len(),
            });
        }
    }
    bar.finish_and_clear();
    if args.samplers.iter().any(|s| s == "ar") {
        let dir = args.ar_model.as_ref().context(
            "the `ar` row needs --ar-model DIR (a model trained with the autoregressive recipe)",
        )?;
        let ar =
            SavedModel::load(dir, &device).with_context(|| format!("loading {}", dir.display()))?;
        let sampler = budget_sampler("ar", answer_length, answer_length, &ar)?;
        let correct = task_accuracy(
            &ar,
            task.as_ref(),
            &examples,
            answer_length,
            sampler.as_ref(),
            args.batch_size,
            &device,
            &mut || {},
        )?
        .correct;
        // Left to right always takes one step per token: it appears under the full budget.
        cells.push(BudgetCell {
            sampler: "ar".into(),
            budget: 1.0,
            steps: answer_length,
            correct,
            total: examples.len(),
        });
    }
    println!(
        "{} on {} ({} examples, answers of {answer_length} tokens)\n",
        args.model.display(),
        args.task,
        examples.len()
    );
    print!("{}", markdown_table(&cells, &args.budgets));
    let out = args.out.clone().unwrap_or_else(|| args.model.clone());
    std::fs::create_dir_all(&out)?;
    let csv_path = out.join(format!("budget-{}.csv", args.task));
    flowlm::io::write_atomic(&csv_path, csv(&cells).as_bytes())
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let png_path = out.join(format!("budget-{}.png", args.task));
    // The data file names the split (e.g. sudoku4-open/test.jsonl: puzzles with several solutions).
    let title = format!(
        "{} on {} ({}, {} examples)",
        args.model.display(),
        args.task,
        args.data.display(),
        examples.len()
    );
    plot_budget(&png_path, &cells, &title)?;
    println!("\nwrote {} and {}", csv_path.display(), png_path.display());
    Ok(())
}

#[derive(Args)]
pub struct FlowStatesArgs {
    /// The diffusion model directory
    #[arg(long)]
    model: PathBuf,
    /// Held-out prompt/response JSONL (`flowlm data task ... --out DIR` writes DIR/test.jsonl)
    #[arg(long)]
    data: PathBuf,
    /// Blend weights s: each answer slot reads (1 - s) mask + s token
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,0.9,1")]
    blends: Vec<f64>,
    /// Examples to score (the first N of --data)
    #[arg(long, default_value_t = 200)]
    examples: usize,
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Seed of the wrong tokens
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run_flow_states(args: FlowStatesArgs) -> anyhow::Result<()> {
    let device = super::device(&args.device)?;
    let saved = SavedModel::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let examples = read_examples(&args.data, args.examples)?;
    let results = flow_state_accuracy(
        &saved,
        &examples,
        &args.blends,
        args.batch_size,
        args.seed,
        &device,
    )?;
    println!(
        "{}: answer-slot accuracy on blended inputs ({} examples of {})\n",
        args.model.display(),
        examples.len(),
        args.data.display()
    );
    print!("{}", flow_markdown_table(&results));
    Ok(())
}
