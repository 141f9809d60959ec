//! Throughput and memory figures for `flowlm bench`.

use crate::canvas::Canvas;
use crate::corruption::{CleanBatch, MaskCorruption, TimeSampling};
use crate::model::{Denoiser, DiffusionTransformerConfig, stable_parameter_ids};
use crate::random::rng_for;
use crate::sampler::{LladaSampler, Sampler};
use crate::trainer::batch_loss;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use std::time::Instant;

/// Peak resident memory of this process so far (VmHWM), in bytes.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub tokens_per_second: f64,
    pub seconds: f64,
    pub iterations: usize,
}

/// Full training steps (forward, backward, AdamW) on random tokens of `vocab` ids.
pub fn bench_train(
    config: &DiffusionTransformerConfig,
    batch: usize,
    length: usize,
    steps: usize,
    warmup: usize,
    device: &Device,
) -> Throughput {
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
            timed = Some(Instant::now());
        }
        let tokens = (0..batch * length)
            .map(|i| ((i * 2_654_435_761 + step) % (config.vocab_size - 1)) as u32)
            .collect();
        let clean = CleanBatch::unconditional(tokens, batch, length);
        let loss = batch_loss(
            &model,
            &corruption,
            &clean,
            step,
            &mut rng_for(0, step as u64),
            &train_device,
        );
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-4, model, gradients);
    }
    let seconds = timed.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Throughput {
        tokens_per_second: (steps * batch * length) as f64 / seconds.max(1e-9),
        seconds,
        iterations: steps,
    }
}

/// LLaDA generation of `gen_length` tokens (one block, `steps` steps) after a prompt; tokens
/// per second counts generated tokens.
pub fn bench_generate(
    denoiser: &dyn Denoiser,
    prompt: &[u32],
    mask_id: u32,
    pad_id: u32,
    gen_length: usize,
    steps: usize,
    batch: usize,
    repeats: usize,
) -> crate::Result<Throughput> {
    let sampler = LladaSampler {
        steps,
        block_length: gen_length,
        ..Default::default()
    };
    let prompts = vec![prompt.to_vec(); batch];
    // One untimed run warms caches and allocators.
    let mut canvas = Canvas::new(&prompts, gen_length, mask_id, pad_id)?;
    sampler.run(denoiser, &mut canvas, &mut rng_for(0, 0), &mut |_, _| {})?;
    let started = Instant::now();
    for repeat in 0..repeats {
        let mut canvas = Canvas::new(&prompts, gen_length, mask_id, pad_id)?;
        sampler.run(
            denoiser,
            &mut canvas,
            &mut rng_for(0, repeat as u64),
            &mut |_, _| {},
        )?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Throughput {
        tokens_per_second: (repeats * batch * gen_length) as f64 / seconds.max(1e-9),
        seconds,
        iterations: repeats,
    })
}
