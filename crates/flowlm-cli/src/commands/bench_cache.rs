//! `flowlm bench cache`: Fast-dLLM's decoding modes side by side (speed on one prompt, accuracy
//! on a task model), printed as one markdown table.

use anyhow::Context;
use flowlm::eval::decoding_modes::{
    DecodingMode, SpeedRow, TaskFigures, compare_accuracy, compare_speed,
};
use flowlm::model::SavedModel;
use flowlm::tasks::task_for_data;
use std::path::{Path, PathBuf};

/// What `bench cache` measures.
pub struct CacheBench {
    pub prompt: String,
    pub gen_length: usize,
    pub block_length: usize,
    pub threshold: f64,
    pub repeats: usize,
    pub task: Option<TaskBench>,
}

/// The accuracy column's task model and data.
pub struct TaskBench {
    pub model: PathBuf,
    pub name: String,
    pub data: PathBuf,
    pub block_length: usize,
    pub examples: usize,
    pub batch_size: usize,
}

pub fn run(bench: &CacheBench, dir: &Path, device: &burn::tensor::Device) -> anyhow::Result<()> {
    flowlm::limits::flag(
        "--threshold",
        flowlm::limits::finite_above(bench.threshold, 0.0, 1.0),
    )?;
    let model = super::open_model(dir, device)?;
    let mut prompt = model.prompt_prefix.clone();
    prompt.extend(model.tokenizer.encode(&bench.prompt)?);
    let width = prompt.len() + bench.gen_length;
    if width > model.context_length {
        anyhow::bail!(
            "--gen-length {}: with the {}-token prompt that is {width} positions, more than the model's context of {} (use a shorter --gen-length or a model with a longer context)",
            bench.gen_length,
            prompt.len(),
            model.context_length
        );
    }
    let modes = DecodingMode::grid(bench.threshold);
    println!(
        "bench cache: {} ({}-position context), prompt {:?} ({} tokens), {} tokens in blocks of {}, temperature 0, batch 1, {} timed round(s) of every mode (medians)",
        dir.display(),
        model.context_length,
        bench.prompt,
        prompt.len(),
        bench.gen_length,
        bench.block_length,
        bench.repeats
    );
    let ids = &model.metadata;
    let speed = compare_speed(
        &*model.denoiser,
        &prompt,
        (ids.mask_token_id, ids.pad_token_id),
        bench.gen_length,
        bench.block_length,
        &modes,
        bench.repeats,
        &mut |round| eprintln!("  timed round {round} of {}", bench.repeats),
    )?;
    let accuracy = match &bench.task {
        Some(task) => Some(task_accuracy(task, &modes, device)?),
        None => None,
    };
    print_table(&speed, accuracy.as_deref());
    Ok(())
}

fn task_accuracy(
    task: &TaskBench,
    modes: &[DecodingMode],
    device: &burn::tensor::Device,
) -> anyhow::Result<Vec<TaskFigures>> {
    let saved = SavedModel::load(&task.model, device)
        .with_context(|| format!("loading {}", task.model.display()))?;
    let checker = task_for_data(&task.name, &task.data)?;
    let examples = super::eval_budget::read_examples(&task.data, task.examples)?;
    println!(
        "task: {} on {} held-out examples of {} ({}), blocks of {}, batches of {}",
        task.model.display(),
        examples.len(),
        task.name,
        task.data.display(),
        task.block_length,
        task.batch_size
    );
    Ok(compare_accuracy(
        &saved,
        &*checker,
        &examples,
        task.block_length,
        modes,
        task.batch_size,
        device,
        &mut |mode, f| eprintln!("  scored {}: {}/{}", mode.label(), f.correct, f.total),
    )?)
}

fn print_table(speed: &[SpeedRow], task: Option<&[TaskFigures]>) {
    println!();
    println!(
        "| mode | tokens/s | speed-up | forward passes | same tokens as uncached | task accuracy | task tokens/s | task speed-up | task passes per batch |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (index, row) in speed.iter().enumerate() {
        let task_columns =
            task.and_then(|t| t.get(index))
                .map_or("- | - | - | -".to_string(), |f| {
                    format!(
                        "{:.1}% ({}/{}) | {:.0} | {:.2}x | {:.1}",
                        100.0 * f.accuracy(),
                        f.correct,
                        f.total,
                        f.tokens_per_second,
                        f.speedup,
                        f.passes_per_batch
                    )
                });
        println!(
            "| {} | {:.1} | {:.2}x | {} | {:.0}% | {task_columns} |",
            row.mode.label(),
            row.tokens_per_second,
            row.speedup,
            row.forward_passes,
            100.0 * row.agreement
        );
    }
}
