//! Throughput and memory figures for `flowlm bench`.

use crate::canvas::Canvas;
use crate::corruption::{CleanBatch, MaskCorruption, TimeSampling};
use crate::error::Result;
use crate::model::{Denoiser, DiffusionTransformerConfig, stable_parameter_ids};
use crate::random::rng_for;
use crate::sampler::{LladaSampler, Sampler};
use crate::trainer::data_parallel::batch_gradients;
use burn::optim::AdamWConfig;
use burn::tensor::Device;
use std::time::Instant;

/// Peak resident memory of this process so far (VmHWM), in bytes.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system, all threads) this process has used so far, in seconds.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields
    // of the whole line, in USER_HZ ticks (100 per second in Linux's user ABI).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub tokens_per_second: f64,
    pub seconds: f64,
    pub iterations: usize,
    /// CPU seconds spent in the timed window (cores used = this / `seconds`).
    pub cpu_seconds: f64,
}

/// Wall and CPU clocks started together.
struct Stopwatch {
    wall: Instant,
    cpu: f64,
}

impl Stopwatch {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: process_cpu_seconds().unwrap_or(0.0),
        }
    }

    /// (wall seconds, CPU seconds) since `start`.
    fn stop(&self) -> (f64, f64) {
        let cpu = process_cpu_seconds().map_or(0.0, |now| now - self.cpu);
        (self.wall.elapsed().as_secs_f64(), cpu)
    }
}

/// Full training steps (forward, backward, AdamW) on random tokens of `vocab` ids, each batch
/// split into `shards` data-parallel shards as the trainer does.
pub fn bench_train(
    config: &DiffusionTransformerConfig,
    batch: usize,
    length: usize,
    steps: usize,
    warmup: usize,
    shards: usize,
    device: &Device,
) -> Result<Throughput> {
    let train_device = device.clone().autodiff();
    train_device.seed(0);
    let mut model = stable_parameter_ids(config.init(&train_device));
    let mut optimizer = AdamWConfig::new().init();
    let corruption = MaskCorruption {
        mask_id: (config.vocab_size - 1) as u32,
        time: TimeSampling::Antithetic,
    };
    let mut timed = None;
    for step in 0..warmup + steps {
        if step == warmup {
            timed = Some(Stopwatch::start());
        }
        let tokens = (0..batch * length)
            .map(|i| ((i * 2_654_435_761 + step) % (config.vocab_size - 1)) as u32)
            .collect();
        let clean = CleanBatch::unconditional(tokens, batch, length);
        let (gradients, _) = batch_gradients(
            &model,
            &corruption,
            &clean,
            step,
            shards,
            1.0,
            |shard| rng_for(0, (step * shards + shard) as u64),
            &train_device,
        )?;
        model = optimizer.step(1e-4, model, gradients);
    }
    let (seconds, cpu_seconds) = timed.map_or((0.0, 0.0), |t| t.stop());
    Ok(Throughput {
        tokens_per_second: (steps * batch * length) as f64 / seconds.max(1e-9),
        seconds,
        iterations: steps,
        cpu_seconds,
    })
}

/// What `bench_generate` measured, and the last generation's answer (row 0) for comparison
/// with a reference implementation.
#[derive(Debug, Clone)]
pub struct GenerateBench {
    pub throughput: Throughput,
    pub tokens: Vec<u32>,
    /// Whether every row of the batch (all the same prompt) produced row 0's answer.
    pub rows_agree: bool,
}

/// LLaDA generation of `gen_length` tokens (one block, `steps` steps, temperature 0) after a
/// prompt; tokens per second counts generated tokens.
pub fn bench_generate(
    denoiser: &dyn Denoiser,
    prompt: &[u32],
    mask_id: u32,
    pad_id: u32,
    gen_length: usize,
    steps: usize,
    batch: usize,
    repeats: usize,
) -> crate::Result<GenerateBench> {
    let sampler = LladaSampler {
        steps,
        block_length: gen_length,
        ..Default::default()
    };
    let prompts = vec![prompt.to_vec(); batch];
    // One untimed run warms caches and allocators.
    let mut canvas = Canvas::new(&prompts, gen_length, mask_id, pad_id)?;
    sampler.run(denoiser, &mut canvas, &mut rng_for(0, 0), &mut |_, _| {})?;
    let stopwatch = Stopwatch::start();
    for repeat in 0..repeats {
        canvas = Canvas::new(&prompts, gen_length, mask_id, pad_id)?;
        sampler.run(
            denoiser,
            &mut canvas,
            &mut rng_for(0, repeat as u64),
            &mut |_, _| {},
        )?;
    }
    let (seconds, cpu_seconds) = stopwatch.stop();
    let tokens = canvas.response(0).to_vec();
    let rows_agree = (0..batch).all(|row| canvas.response(row) == tokens.as_slice());
    Ok(GenerateBench {
        throughput: Throughput {
            tokens_per_second: (repeats * batch * gen_length) as f64 / seconds.max(1e-9),
            seconds,
            iterations: repeats,
            cpu_seconds,
        },
        tokens,
        rows_agree,
    })
}
