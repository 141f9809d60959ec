//! `flowlm train-policy`: GRPO on the x-flow step policy (seed 003). For each prompt the policy
//! decodes a group of G trajectories at the target budget; each token's reward is the task score
//! plus lambda x its own final progress (pushes every token to finish); advantages are
//! standardised within the group per token, and several clipped-ratio epochs (with a KL to the
//! initial policy) against the frozen sampling policy follow each batch. Only prompts the model
//! solves at full budget are used: the policy can only learn to keep what the model can do.

use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::eval::budget::{answer_tokens, steps_for_budget};
use crate::model::SavedModel;
use crate::policy::{
    Adam, AdamConfig, Decision, GrpoConfig, PolicyConfig, StepPolicy, group_token_advantages,
    grpo_update, token_rewards,
};
use crate::random::rng_for;
use crate::sampler::xflow::POLICY_FILE;
use crate::sampler::{FlowTrace, LladaSampler, Sampler, StepPolicyChoice, XFlowSampler};
use crate::tasks::{Example, Task};
use burn::tensor::Device;

#[derive(Debug, Clone)]
pub struct PolicyTrainingOptions {
    pub iterations: usize,
    /// Trajectories per prompt (G).
    pub group_size: usize,
    /// Prompts per update.
    pub prompts_per_batch: usize,
    /// Step budget as a share of the answer length.
    pub budget: f64,
    /// Weight of the final-progress term of the reward.
    pub progress_weight: f64,
    pub learning_rate: f64,
    /// Clip, KL weight and epochs per batch.
    pub grpo: GrpoConfig,
    pub seed: u64,
}

impl Default for PolicyTrainingOptions {
    fn default() -> Self {
        Self {
            iterations: 30,
            group_size: 8,
            prompts_per_batch: 8,
            budget: 0.25,
            progress_weight: 0.1,
            learning_rate: 3e-3,
            grpo: GrpoConfig::default(),
            seed: 0,
        }
    }
}

impl PolicyTrainingOptions {
    /// Every option against its range, naming the `flowlm train-policy` flag.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{MAX_BATCH, MAX_GROUP, finite_above, finite_within, flag, within};
        // GRPO's advantages compare trajectories of one prompt: a group needs two.
        flag("--group-size", within(self.group_size, 2, MAX_GROUP))?;
        flag("--prompts", within(self.prompts_per_batch, 1, MAX_BATCH))?;
        flag("--iterations", within(self.iterations, 1, 1_000_000))?;
        flag("--budget", finite_above(self.budget, 0.0, 1.0))?;
        flag(
            "--progress-weight",
            finite_within(self.progress_weight, 0.0, 100.0),
        )?;
        flag(
            "--learning-rate",
            finite_above(self.learning_rate, 0.0, 10.0),
        )?;
        flag("--epochs", within(self.grpo.epochs, 1, 1_000))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyIteration {
    pub iteration: usize,
    pub mean_reward: f64,
    /// Share of trajectories that solved their prompt.
    pub accuracy: f64,
    pub clipped_fraction: f64,
    pub kl: f64,
}

fn prompts_canvas(
    saved: &SavedModel,
    prompts: &[&Example],
    repeat: usize,
    length: usize,
) -> Result<Canvas> {
    let special = saved.tokenizer.special();
    let mut rows = Vec::new();
    for example in prompts {
        let ids = saved.tokenizer.encode(&example.prompt)?;
        rows.extend(std::iter::repeat_n(ids, repeat));
    }
    Canvas::new(&rows, length, special.mask, special.pad)
}

/// The examples the model answers exactly with LLaDA at full budget.
pub fn solvable_examples<'a>(
    saved: &SavedModel,
    task: &dyn Task,
    examples: &'a [Example],
    device: &Device,
) -> Result<Vec<&'a Example>> {
    let length = answer_tokens(saved, examples)?;
    let sampler = LladaSampler {
        steps: length,
        block_length: length,
        ..Default::default()
    };
    let denoiser = saved.denoiser(device);
    let mut kept = Vec::new();
    for chunk in examples.chunks(64) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let mut canvas = prompts_canvas(saved, &refs, 1, length)?;
        sampler.run(&denoiser, &mut canvas, &mut rng_for(0, 0), &mut |_, _| {})?;
        for (row, example) in chunk.iter().enumerate() {
            let answer = saved.tokenizer.decode(canvas.response(row))?;
            if task.score(&example.prompt, &answer) >= 1.0 {
                kept.push(example);
            }
        }
    }
    Ok(kept)
}

/// GRPO decisions from a sampled trace: each keeps the log-prob recorded when it was drawn (the
/// frozen old policy) and gets its token's advantage within its group; `rewards[row][slot]`.
pub fn grpo_decisions(
    trace: &FlowTrace,
    rewards: &[Vec<f64>],
    group_size: usize,
    reference: &StepPolicy,
) -> Vec<Decision> {
    let advantages: Vec<Vec<f64>> = rewards
        .chunks(group_size)
        .flat_map(group_token_advantages)
        .collect();
    trace
        .decisions
        .iter()
        .map(|d| Decision {
            features: d.features,
            y: d.unit_action,
            old_log_prob: d.log_prob,
            reference_log_prob: Some(reference.log_prob(&d.features, d.unit_action)),
            advantage: advantages[d.row][d.slot],
        })
        .collect()
}

/// Trains the step policy and saves it as `POLICY_FILE` in the model directory.
pub fn train_policy(
    saved: &SavedModel,
    task: &dyn Task,
    examples: &[Example],
    options: &PolicyTrainingOptions,
    device: &Device,
    log: &mut dyn FnMut(&PolicyIteration),
) -> Result<(StepPolicy, Vec<PolicyIteration>)> {
    options.validate()?;
    let solvable = solvable_examples(saved, task, examples, device)?;
    if solvable.is_empty() {
        return Err(FlowError::argument(
            "--data",
            "the model solves none of these prompts at full budget; train the model longer first",
        ));
    }
    let length = answer_tokens(saved, examples)?;
    let steps = steps_for_budget(options.budget, length);
    let mut policy = StepPolicy::new(PolicyConfig::default(), options.seed)?;
    let reference = policy.clone();
    let mut optimizer = Adam::new(
        AdamConfig {
            learning_rate: options.learning_rate,
            ..Default::default()
        },
        policy.parameter_count(),
    );
    let denoiser = saved.denoiser(device);
    let mut history = Vec::new();
    for iteration in 0..options.iterations {
        let batch: Vec<&Example> = (0..options.prompts_per_batch)
            .map(|i| solvable[(iteration * options.prompts_per_batch + i) % solvable.len()])
            .collect();
        let mut canvas = prompts_canvas(saved, &batch, options.group_size, length)?;
        let sampler = XFlowSampler {
            steps,
            policy: StepPolicyChoice::Learned {
                policy: policy.clone(),
                sample: true,
            },
        };
        let mut trace = FlowTrace::default();
        let mut rng = rng_for(options.seed, 0x6_7270 + iteration as u64);
        sampler.decode(
            &denoiser,
            &mut canvas,
            &mut rng,
            &mut |_, _| {},
            Some(&mut trace),
        )?;
        let mut rewards = Vec::with_capacity(canvas.batch());
        let mut solved = 0usize;
        for (row, progress) in trace.final_progress.iter().enumerate() {
            let example = batch[row / options.group_size];
            let answer = saved.tokenizer.decode(canvas.response(row))?;
            let score = task.score(&example.prompt, &answer);
            solved += usize::from(score >= 1.0);
            rewards.push(token_rewards(score, progress, options.progress_weight));
        }
        let decisions = grpo_decisions(&trace, &rewards, options.group_size, &reference);
        let epochs = grpo_update(&mut policy, &decisions, &options.grpo, &mut optimizer);
        let last = epochs.last().copied().unwrap_or_default();
        let mean_reward = rewards.iter().flatten().sum::<f64>()
            / rewards.iter().map(Vec::len).sum::<usize>().max(1) as f64;
        let record = PolicyIteration {
            iteration,
            mean_reward,
            accuracy: solved as f64 / rewards.len().max(1) as f64,
            clipped_fraction: last.clipped_fraction,
            kl: last.kl,
        };
        log(&record);
        history.push(record);
    }
    policy.save(saved.directory.join(POLICY_FILE))?;
    Ok((policy, history))
}
