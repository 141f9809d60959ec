//! `flowlm train-policy`: GRPO for the x-flow step policy.

use super::task_names;
use anyhow::Context;
use clap::Args;
use flowlm::model::SavedModel;
use flowlm::tasks::task_for_data;
use flowlm::trainer::step_policy::{PolicyTrainingOptions, train_policy};
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainPolicyArgs {
    /// The masked diffusion model directory (the policy is written there as step_policy.json)
    #[arg(long)]
    model: PathBuf,
    /// Task name
    #[arg(long, value_parser = task_names())]
    task: String,
    /// Prompt/response JSONL to draw prompts from (use the task's train.jsonl)
    #[arg(long)]
    data: PathBuf,
    /// Prompts scanned for ones the model solves at full budget
    #[arg(long, default_value_t = 256)]
    examples: usize,
    /// GRPO updates
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Step budget the policy is trained for (share of the answer length)
    #[arg(long, default_value_t = 0.25)]
    budget: f64,
    /// Trajectories per prompt (G)
    #[arg(long, default_value_t = 8)]
    group_size: usize,
    /// Prompts per update
    #[arg(long, default_value_t = 8)]
    prompts: usize,
    /// Reward weight of the slots' final progress
    #[arg(long, default_value_t = 0.1)]
    progress_weight: f64,
    #[arg(long, default_value_t = 3e-3)]
    learning_rate: f64,
    /// GRPO optimisation epochs over each batch of trajectories (the clip acts from the second)
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: TrainPolicyArgs) -> anyhow::Result<()> {
    let device = super::device(&args.device)?;
    let saved = SavedModel::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let task = task_for_data(&args.task, &args.data)?;
    let examples = super::eval_budget::read_examples(&args.data, args.examples)?;
    let options = PolicyTrainingOptions {
        iterations: args.iterations,
        group_size: args.group_size,
        prompts_per_batch: args.prompts,
        budget: args.budget,
        progress_weight: args.progress_weight,
        learning_rate: args.learning_rate,
        grpo: flowlm::policy::GrpoConfig {
            epochs: args.epochs,
            ..Default::default()
        },
        seed: args.seed,
    };
    eprintln!(
        "GRPO: {} iterations x {} prompts x {} trajectories at budget {}",
        options.iterations, options.prompts_per_batch, options.group_size, options.budget
    );
    let (_, history) = train_policy(
        &saved,
        task.as_ref(),
        &examples,
        &options,
        &device,
        &mut |it| {
            eprintln!(
                "iteration {:>3}  reward {:.3}  solved {:.1}%  clipped {:.2}  kl {:.4}",
                it.iteration,
                it.mean_reward,
                100.0 * it.accuracy,
                it.clipped_fraction,
                it.kl
            );
        },
    )?;
    if let (Some(first), Some(last)) = (history.first(), history.last()) {
        println!(
            "solved at budget {}: {:.1}% -> {:.1}%; policy saved to {}",
            args.budget,
            100.0 * first.accuracy,
            100.0 * last.accuracy,
            args.model
                .join(flowlm::sampler::xflow::POLICY_FILE)
                .display()
        );
    }
    Ok(())
}
