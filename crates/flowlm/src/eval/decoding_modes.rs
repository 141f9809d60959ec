//! Fast-dLLM's decoding modes side by side (`flowlm bench cache`): uncached LLaDA, prefix cache
//! and dual cache, each with LLaDA's one-token-per-step schedule and with the threshold rule;
//! tokens per second and forward passes on one prompt, and exact-match accuracy on a checkable
//! task.

use super::budget::{answer_tokens, task_accuracy};
use crate::canvas::Canvas;
use crate::error::Result;
use crate::model::{CacheMode, Denoiser, SavedModel};
use crate::random::rng_for;
use crate::sampler::{LladaSampler, ParallelRule, Sampler};
use crate::tasks::{Example, Task};
use burn::tensor::Device;
use std::time::Instant;

/// One column of the comparison: a cache mode with or without the threshold rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodingMode {
    pub cache: CacheMode,
    pub threshold: Option<f64>,
}

impl DecodingMode {
    /// The six modes, uncached schedule first (the baseline every ratio divides by).
    pub fn grid(threshold: f64) -> Vec<Self> {
        let mut modes = Vec::new();
        for threshold in [None, Some(threshold)] {
            for cache in [CacheMode::None, CacheMode::Prefix, CacheMode::Dual] {
                modes.push(Self { cache, threshold });
            }
        }
        modes
    }

    pub fn label(&self) -> String {
        let cache = match self.cache {
            CacheMode::None => "no cache",
            CacheMode::Prefix => "prefix cache",
            CacheMode::Dual => "dual cache",
        };
        match self.threshold {
            Some(tau) => format!("{cache}, threshold {tau}"),
            None => format!("{cache}, 1 token/step"),
        }
    }

    /// LLaDA at temperature 0 over `gen_length` slots in blocks of `block_length`: one step per
    /// token, or the threshold rule (at most one step per token).
    pub fn sampler(&self, gen_length: usize, block_length: usize) -> LladaSampler {
        LladaSampler {
            steps: gen_length,
            block_length,
            parallel: self
                .threshold
                .map_or(ParallelRule::Schedule, ParallelRule::Threshold),
            cache: self.cache,
            ..Default::default()
        }
    }
}

/// What one mode cost on the speed prompt.
#[derive(Debug, Clone)]
pub struct SpeedRow {
    pub mode: DecodingMode,
    pub tokens_per_second: f64,
    /// Forward passes per generation (a cached step counts one, however few columns it runs).
    pub forward_passes: usize,
    /// Median seconds per generation.
    pub seconds: f64,
    /// Tokens per second over the first mode's.
    pub speedup: f64,
    /// Share of answer tokens equal to the first mode's answer.
    pub agreement: f64,
}

/// Generates `gen_length` tokens after `prompt` with every mode: after one untimed warm-up
/// generation, `rounds` rounds that each time every mode once, in turn, so that a slow spell of
/// a noisy machine hits every mode alike; each mode's time is its median. `on_round` hears
/// each finished round's number.
#[allow(clippy::too_many_arguments)]
pub fn compare_speed(
    denoiser: &dyn Denoiser,
    prompt: &[u32],
    (mask, pad): (u32, u32),
    gen_length: usize,
    block_length: usize,
    modes: &[DecodingMode],
    rounds: usize,
    on_round: &mut dyn FnMut(usize),
) -> Result<Vec<SpeedRow>> {
    let generate = |mode: &DecodingMode| -> Result<(Vec<u32>, usize, f64)> {
        let sampler = mode.sampler(gen_length, block_length);
        let mut canvas = Canvas::new(&[prompt.to_vec()], gen_length, mask, pad)?;
        let started = Instant::now();
        let report = sampler.run(denoiser, &mut canvas, &mut rng_for(0, 0), &mut |_, _| {})?;
        let seconds = started.elapsed().as_secs_f64();
        Ok((canvas.response(0).to_vec(), report.forward_passes, seconds))
    };
    if let Some(last) = modes.last() {
        generate(last)?;
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut answers = vec![(Vec::new(), 0); modes.len()];
    for round in 0..rounds.max(1) {
        for (index, mode) in modes.iter().enumerate() {
            let (tokens, passes, seconds) = generate(mode)?;
            times[index].push(seconds);
            answers[index] = (tokens, passes);
        }
        on_round(round + 1);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let seconds: Vec<f64> = times.iter_mut().map(median).collect();
    let reference_seconds = seconds.first().copied().unwrap_or(1.0);
    let reference_tokens = answers.first().map(|a| a.0.clone()).unwrap_or_default();
    Ok(modes
        .iter()
        .zip(answers)
        .zip(seconds)
        .map(|((&mode, (tokens, forward_passes)), seconds)| {
            let equal = tokens.iter().zip(&reference_tokens).filter(|(a, b)| a == b);
            SpeedRow {
                mode,
                tokens_per_second: gen_length as f64 / seconds.max(1e-9),
                forward_passes,
                seconds,
                speedup: reference_seconds / seconds.max(1e-9),
                agreement: equal.count() as f64 / gen_length as f64,
            }
        })
        .collect())
}

/// One mode on the task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskFigures {
    pub correct: usize,
    pub total: usize,
    /// Forward passes per batch of examples.
    pub passes_per_batch: f64,
    /// Answer tokens per second, decoding `batch_size` examples at a time.
    pub tokens_per_second: f64,
    /// Tokens per second over the first mode's.
    pub speedup: f64,
}

impl TaskFigures {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

/// Exact-match accuracy, forward passes and speed of every mode on `examples` of `task`, the
/// answer decoded in blocks of `block_length`: its slots are the answer's tokens rounded up to
/// whole blocks, the model writing its end token in the rest (as a task model trained on rows
/// padded with it does).
#[allow(clippy::too_many_arguments)]
pub fn compare_accuracy(
    saved: &SavedModel,
    task: &dyn Task,
    examples: &[Example],
    block_length: usize,
    modes: &[DecodingMode],
    batch_size: usize,
    device: &Device,
    on_mode: &mut dyn FnMut(DecodingMode, &TaskFigures),
) -> Result<Vec<TaskFigures>> {
    let gen_length = answer_tokens(saved, examples)?.next_multiple_of(block_length.max(1));
    let batches = examples.len().div_ceil(batch_size.max(1)).max(1);
    let mut results = Vec::new();
    for &mode in modes {
        let sampler = mode.sampler(gen_length, block_length);
        let started = Instant::now();
        let run = task_accuracy(
            saved,
            task,
            examples,
            gen_length,
            &sampler,
            batch_size,
            device,
            &mut || {},
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let figures = TaskFigures {
            correct: run.correct,
            total: examples.len(),
            passes_per_batch: run.forward_passes as f64 / batches as f64,
            tokens_per_second: (examples.len() * gen_length) as f64 / seconds.max(1e-9),
            speedup: 1.0,
        };
        let figures = TaskFigures {
            speedup: figures.tokens_per_second
                / results
                    .first()
                    .map_or(figures.tokens_per_second, |f: &TaskFigures| {
                        f.tokens_per_second
                    }),
            ..figures
        };
        on_mode(mode, &figures);
        results.push(figures);
    }
    Ok(results)
}
