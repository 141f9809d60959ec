//! `flowlm bench cache`: Fast-dLLM's decoding modes side by side (speed on one prompt, accuracy
//! on a task model), printed as one markdown table.

use anyhow::Context;
use flowlm::eval::decoding_modes::{DecodingMode, SpeedRow, compare_accuracy, compare_speed};
use flowlm::model::SavedModel;
use flowlm::model::open::OpenedModel;
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
    let model =
        OpenedModel::open(dir, device).with_context(|| format!("opening {}", dir.display()))?;
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
        "bench cache: {} ({}-position context), prompt {:?} ({} tokens), {} tokens in blocks of {}, temperature 0, batch 1, {} timed run(s) per mode",
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
        &mut |row| {
            eprintln!(
                "  measured {}: {:.1} tokens/s",
                row.mode.label(),
                row.tokens_per_second
            )
        },
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
) -> anyhow::Result<Vec<(usize, usize)>> {
    let saved = SavedModel::load(&task.model, device)
        .with_context(|| format!("loading {}", task.model.display()))?;
    let checker = task_for_data(&task.name, &task.data)?;
    let examples = super::eval_budget::read_examples(&task.data, task.examples)?;
    println!(
        "accuracy: {} on {} held-out examples of {} ({}), blocks of {}",
        task.model.display(),
        examples.len(),
        task.name,
        task.data.display(),
        task.block_length
    );
    Ok(compare_accuracy(
        &saved,
        &*checker,
        &examples,
        task.block_length,
        modes,
        task.batch_size,
        device,
        &mut |mode, correct, total| eprintln!("  scored {}: {correct}/{total}", mode.label()),
    )?)
}

fn print_table(speed: &[SpeedRow], accuracy: Option<&[(usize, usize)]>) {
    println!();
    println!(
        "| mode | tokens/s | speed-up | forward passes | same tokens as uncached | task accuracy |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (index, row) in speed.iter().enumerate() {
        let score =
            accuracy
                .and_then(|a| a.get(index))
                .map_or("-".to_string(), |&(correct, total)| {
                    format!(
                        "{:.1}% ({correct}/{total})",
                        100.0 * correct as f64 / total.max(1) as f64
                    )
                });
        println!(
            "| {} | {:.1} | {:.2}x | {} | {:.0}% | {score} |",
            row.mode.label(),
            row.tokens_per_second,
            row.speedup,
            row.forward_passes,
            100.0 * row.agreement
        );
    }
}
