//! `flowlm align` (seed 003): before decoding a masked diffusion model as a flow in embedding
//! space, teach it to return the clean state: on self-generated answers X_0, a masked input, and
//! loss = || softmax(logits) @ W_in - Embed(X_0) ||^2 at all positions (prompt and answer,
//! padding aside), so an already clean slot maps to itself. The masked-position CE is measured before and after, as the
//! alignment must not cost the model its masked predictions.

use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::eval::budget::answer_tokens;
use crate::model::saved::canvas_tensors;
use crate::model::saved::{WEIGHTS_FILE, load_weights, save_weights};
use crate::model::{DenoiserInput, DiffusionTransformer, SavedModel};
use crate::random::rng_for;
use crate::sampler::{LladaSampler, Sampler};
use crate::tasks::Example;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct AlignOptions {
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for AlignOptions {
    fn default() -> Self {
        Self {
            steps: 300,
            batch_size: 32,
            learning_rate: 1e-4,
            seed: 0,
        }
    }
}

/// Figures on a fixed evaluation batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignFigures {
    pub mse_masked: f64,
    pub mse_unmasked: f64,
    pub masked_cross_entropy: f64,
}

/// A masked batch of prompt + answer rows; per position ([B, W] flattened): the clean token,
/// whether the loss scores it (every position but left padding) and whether it was masked.
struct AlignBatch {
    canvas: Canvas,
    clean: Vec<u32>,
    scored: Vec<bool>,
    masked: Vec<bool>,
}

fn masked_batch(
    answers: &[(Vec<u32>, Vec<u32>)],
    mask: u32,
    pad: u32,
    rng: &mut crate::random::StdRng,
) -> Result<AlignBatch> {
    let prompts: Vec<Vec<u32>> = answers.iter().map(|a| a.0.clone()).collect();
    let length = answers[0].1.len();
    let mut canvas = Canvas::new(&prompts, length, mask, pad)?;
    let (mut clean, mut scored, mut masked) = (Vec::new(), Vec::new(), Vec::new());
    for (row, (_, response)) in answers.iter().enumerate() {
        let rate: f64 = rng.random_range(0.05..1.0);
        for column in 0..canvas.width() {
            let in_answer = column >= canvas.response_start;
            let token = if in_answer {
                response[column - canvas.response_start]
            } else {
                canvas.rows[row][column]
            };
            let hide = in_answer && rng.random::<f64>() < rate;
            canvas.rows[row][column] = if hide { mask } else { token };
            clean.push(token);
            scored.push(column >= canvas.padding[row]);
            masked.push(hide);
        }
    }
    Ok(AlignBatch {
        canvas,
        clean,
        scored,
        masked,
    })
}

/// (loss, per-position squared error [B, W], per-position CE [B, W]).
fn losses(
    model: &DiffusionTransformer,
    batch: &AlignBatch,
    device: &Device,
) -> (Tensor<1>, Tensor<2>, Tensor<2>) {
    let (ids, positions, padding) = canvas_tensors(&batch.canvas, device);
    let logits = model.forward(DenoiserInput::Tokens(ids), positions, None, padding);
    let [rows, width, vocab] = logits.dims();
    let table = model.input_embeddings();
    let hidden = table.dims()[1];
    let expected = softmax(logits.clone(), 2)
        .reshape([rows * width, vocab])
        .matmul(table.clone());
    let clean: Vec<i64> = batch.clean.iter().map(|&t| t as i64).collect();
    let clean_ids =
        Tensor::<1, Int>::from_data(TensorData::new(clean.clone(), [rows * width]), device);
    let target = table.select(0, clean_ids).detach();
    let squared = (expected - target)
        .powi_scalar(2)
        .sum_dim(1)
        .reshape([rows, width])
        .div_scalar(hidden as f64);
    let weights: Vec<f32> = batch
        .scored
        .iter()
        .map(|&a| f32::from(u8::from(a)))
        .collect();
    let count = weights.iter().sum::<f32>().max(1.0);
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [rows, width]), device);
    let loss = (squared.clone() * weights).sum().div_scalar(count as f64);
    let targets = Tensor::<2, Int>::from_data(TensorData::new(clean, [rows, width]), device);
    let cross_entropy = log_softmax(logits, 2)
        .gather(2, targets.reshape([rows, width, 1]))
        .reshape([rows, width])
        .neg();
    (loss, squared, cross_entropy)
}

fn figures(
    model: &DiffusionTransformer,
    batch: &AlignBatch,
    device: &Device,
) -> Result<AlignFigures> {
    let (_, squared, cross_entropy) = losses(model, batch, device);
    let read = |t: Tensor<2>| {
        t.into_data()
            .try_to_vec::<f32>()
            .map_err(|e| FlowError::Unsupported(format!("{e:?}")))
    };
    let (squared, cross_entropy) = (read(squared)?, read(cross_entropy)?);
    let mean = |values: &[f32], keep: &dyn Fn(usize) -> bool| {
        let picked: Vec<f64> = (0..values.len())
            .filter(|&i| keep(i))
            .map(|i| values[i] as f64)
            .collect();
        picked.iter().sum::<f64>() / picked.len().max(1) as f64
    };
    Ok(AlignFigures {
        mse_masked: mean(&squared, &|i| batch.masked[i]),
        mse_unmasked: mean(&squared, &|i| batch.scored[i] && !batch.masked[i]),
        masked_cross_entropy: mean(&cross_entropy, &|i| batch.masked[i]),
    })
}

/// Aligns the model on answers it generates itself for `examples`' prompts and writes the
/// aligned weights to `out` (a copy of the model directory). Returns (before, after).
pub fn align(
    saved: &SavedModel,
    examples: &[Example],
    options: &AlignOptions,
    out: &Path,
    device: &Device,
    log: &mut dyn FnMut(usize, f64),
) -> Result<(AlignFigures, AlignFigures)> {
    if out.exists() {
        return Err(FlowError::argument(
            "--out",
            format!(
                "{} already exists; choose a new directory (align writes a copy and never replaces a model)",
                out.display()
            ),
        ));
    }
    if options.steps == 0 || options.batch_size == 0 {
        return Err(FlowError::argument(
            "--steps/--batch-size",
            "must be at least 1",
        ));
    }
    let length = answer_tokens(saved, examples)?;
    let special = saved.tokenizer.special();
    // Self-generated answers X_0 (LLaDA at full budget).
    let sampler = LladaSampler {
        steps: length,
        block_length: length,
        ..Default::default()
    };
    let denoiser = saved.denoiser(device);
    let mut answers = Vec::new();
    for chunk in examples.chunks(64) {
        let prompts = chunk
            .iter()
            .map(|e| saved.tokenizer.encode(&e.prompt))
            .collect::<Result<Vec<_>>>()?;
        let mut canvas = Canvas::new(&prompts, length, special.mask, special.pad)?;
        sampler.run(
            &denoiser,
            &mut canvas,
            &mut rng_for(options.seed, 1),
            &mut |_, _| {},
        )?;
        for (row, prompt) in prompts.into_iter().enumerate() {
            answers.push((prompt, canvas.response(row).to_vec()));
        }
    }
    let held_out = answers.len().min(64);
    let evaluation = masked_batch(
        &answers[..held_out],
        special.mask,
        special.pad,
        &mut rng_for(options.seed, 2),
    )?;
    let before = figures(&saved.model, &evaluation, device)?;
    let train_device = device.clone().autodiff();
    let mut model = load_weights(
        saved.config.init(&train_device),
        &saved.directory.join(WEIGHTS_FILE),
    )?;
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut rng = rng_for(options.seed, 3);
    for step in 0..options.steps {
        let picked: Vec<(Vec<u32>, Vec<u32>)> = (0..options.batch_size)
            .map(|_| answers[rng.random_range(0..answers.len())].clone())
            .collect();
        let batch = masked_batch(&picked, special.mask, special.pad, &mut rng)?;
        let (loss, _, _) = losses(&model, &batch, &train_device);
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            return Err(FlowError::Checkpoint(format!(
                "the alignment loss became {value} at step {step}; lower --learning-rate (nothing was written)"
            )));
        }
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(options.learning_rate, model, gradients);
        log(step, value);
    }
    let aligned = model.valid();
    let after = figures(&aligned, &evaluation, device)?;
    copy_model_directory(&saved.directory, out)?;
    save_weights(&aligned, &out.join(WEIGHTS_FILE))?;
    Ok((before, after))
}

fn copy_model_directory(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| FlowError::io(to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| FlowError::io(from, e))?;
    for entry in entries {
        let path = entry.map_err(|e| FlowError::io(from, e))?.path();
        if path.is_file() {
            let target = to.join(path.file_name().unwrap_or_default());
            std::fs::copy(&path, &target).map_err(|e| FlowError::io(&target, e))?;
        }
    }
    Ok(())
}
