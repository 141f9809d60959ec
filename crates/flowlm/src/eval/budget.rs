//! The decoding-budget table (seed 003): exact-match accuracy of each sampler on a checkable
//! task at step budgets of budget x answer length, plus the autoregressive baseline's row.

use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::SavedModel;
use crate::plot::{Chart, Line, plot_lines};
use crate::random::rng_for;
use crate::sampler::{AutoregressiveSampler, xflow::POLICY_FILE};
use crate::sampler::{LladaSampler, Sampler, StepPolicyChoice, XFlowSampler};
use crate::tasks::{Example, Task};
use burn::tensor::Device;

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCell {
    pub sampler: String,
    pub budget: f64,
    pub steps: usize,
    pub correct: usize,
    pub total: usize,
}

impl BudgetCell {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

/// What decoding a task's examples gave and cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRun {
    pub correct: usize,
    /// Forward passes over all batches.
    pub forward_passes: usize,
}

/// Exact-match accuracy of `sampler` on `examples`, decoding `batch_size` prompts at a time
/// into `answer_slots` slots each (at least the answer's tokens; the rest holds the end token).
#[allow(clippy::too_many_arguments)]
pub fn task_accuracy(
    saved: &SavedModel,
    task: &dyn Task,
    examples: &[Example],
    answer_slots: usize,
    sampler: &dyn Sampler,
    batch_size: usize,
    device: &Device,
    on_batch: &mut dyn FnMut(),
) -> Result<TaskRun> {
    let special = saved.tokenizer.special();
    let denoiser = saved.denoiser(device);
    let mut run = TaskRun {
        correct: 0,
        forward_passes: 0,
    };
    for (index, chunk) in examples.chunks(batch_size.max(1)).enumerate() {
        let prompts = chunk
            .iter()
            .map(|e| saved.tokenizer.encode(&e.prompt))
            .collect::<Result<Vec<_>>>()?;
        let mut canvas = Canvas::new(&prompts, answer_slots, special.mask, special.pad)?;
        let report = sampler.run(
            &denoiser,
            &mut canvas,
            &mut rng_for(0, index as u64),
            &mut |_, _| {},
        )?;
        run.forward_passes += report.forward_passes;
        for (row, example) in chunk.iter().enumerate() {
            let answer = saved.tokenizer.decode(canvas.response(row))?;
            if task.score(&example.prompt, &answer) >= 1.0 {
                run.correct += 1;
            }
        }
        on_batch();
    }
    Ok(run)
}

/// Tokens of the (fixed-length) answers.
pub fn answer_tokens(saved: &SavedModel, examples: &[Example]) -> Result<usize> {
    let first = examples
        .first()
        .ok_or_else(|| FlowError::argument("--data", "holds no examples"))?;
    Ok(saved.tokenizer.encode(&first.response)?.len())
}

/// Steps for a budget: budget x answer length, at least 1.
pub fn steps_for_budget(budget: f64, answer_length: usize) -> usize {
    ((budget * answer_length as f64).round() as usize).max(1)
}

/// The sampler a budget-table column names, at `steps`.
pub fn budget_sampler(
    name: &str,
    steps: usize,
    answer_length: usize,
    saved: &SavedModel,
) -> Result<Box<dyn Sampler>> {
    Ok(match name {
        "llada" => Box::new(LladaSampler {
            steps,
            block_length: answer_length,
            ..Default::default()
        }),
        "xflow" => Box::new(XFlowSampler {
            steps,
            policy: StepPolicyChoice::Heuristic,
        }),
        "xflow-learned" => Box::new(XFlowSampler {
            steps,
            policy: StepPolicyChoice::load("learned", &saved.directory)?,
        }),
        "ar" => Box::new(AutoregressiveSampler::default()),
        other => {
            return Err(FlowError::argument(
                "--samplers",
                format!(
                    "`{other}` is not one of llada, xflow, xflow-learned, ar (the learned policy is read from {POLICY_FILE})"
                ),
            ));
        }
    })
}

/// The samplers of `cells`, in first-seen order.
fn sampler_names(cells: &[BudgetCell]) -> Vec<&str> {
    let mut samplers: Vec<&str> = Vec::new();
    for cell in cells {
        if !samplers.contains(&cell.sampler.as_str()) {
            samplers.push(&cell.sampler);
        }
    }
    samplers
}

/// Accuracy (percent) against decoding steps, one line per sampler, written to `path`.
pub fn plot_budget(path: &std::path::Path, cells: &[BudgetCell], title: &str) -> Result<()> {
    let lines: Vec<Line> = sampler_names(cells)
        .into_iter()
        .map(|sampler| Line {
            label: sampler.to_string(),
            points: cells
                .iter()
                .filter(|c| c.sampler == sampler)
                .map(|c| (c.steps as f64, 100.0 * c.accuracy()))
                .collect(),
            markers: true,
        })
        .collect();
    let mut chart = Chart::fitted(title, "decoding steps", "exact-match accuracy (%)", &lines);
    chart.x_range.0 = 0.0;
    chart.y_range = (0.0, 102.0);
    plot_lines(path, &chart, &lines)
}

/// Markdown table: one row per sampler, one column per budget.
pub fn markdown_table(cells: &[BudgetCell], budgets: &[f64]) -> String {
    let samplers = sampler_names(cells);
    let mut out = String::from("| sampler |");
    for b in budgets {
        out.push_str(&format!(" budget {b} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(budgets.len()));
    out.push('\n');
    for sampler in samplers {
        out.push_str(&format!("| {sampler} |"));
        for &b in budgets {
            match cells.iter().find(|c| c.sampler == sampler && c.budget == b) {
                Some(c) => out.push_str(&format!(
                    " {:.1}% ({} steps) |",
                    100.0 * c.accuracy(),
                    c.steps
                )),
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out
}

pub fn csv(cells: &[BudgetCell]) -> String {
    let mut out = String::from("sampler,budget,steps,correct,total,accuracy\n");
    for c in cells {
        out.push_str(&format!(
            "{},{},{},{},{},{:.4}\n",
            c.sampler,
            c.budget,
            c.steps,
            c.correct,
            c.total,
            c.accuracy()
        ));
    }
    out
}
