//! Data-parallel gradients: a batch is split into shards by rows, each shard runs forward and
//! backward on its own replica of the model (on its own thread), and the replicas' gradients are
//! summed in shard order.
//!
//! A replica is `Module::fork` of the model: the same parameter ids and values as fresh autodiff
//! leaves, so each shard's graph is independent and burn's autodiff runs them concurrently. This
//! is the unit burn's multi-device training all-reduces (`GradientsParams` keyed by parameter
//! id); the replicas here share one device, which on the CPU backend means the shards' operators
//! run on separate cores instead of one core waiting on the other's small kernels.
//!
//! What a step computes depends on the shard count only, never on how many threads ran them: the
//! shards, their random streams and the order of the gradient sum are fixed.

use crate::corruption::CleanBatch;
use crate::model::DiffusionTransformer;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;

/// Splits a batch into at most `shards` row ranges of near-equal size (never an empty one).
pub fn shard_rows(batch: usize, shards: usize) -> Vec<std::ops::Range<usize>> {
    let shards = shards.clamp(1, batch.max(1));
    (0..shards)
        .map(|i| (i * batch / shards)..((i + 1) * batch / shards))
        .collect()
}

/// The rows `range` of a clean batch.
pub fn rows_of(clean: &CleanBatch, range: std::ops::Range<usize>) -> CleanBatch {
    let span = range.start * clean.length..range.end * clean.length;
    CleanBatch {
        tokens: clean.tokens[span.clone()].to_vec(),
        batch: range.len(),
        length: clean.length,
        eligible: clean.eligible[span].to_vec(),
    }
}

/// Sum over shards of the gradients of `loss(replica, shard_index)`, and the sum of the losses.
///
/// `loss` must already carry each shard's share of the batch (e.g. rows / batch rows), so that
/// the sum is the batch's loss. Shards run on up to `threads` threads.
pub fn sharded_gradients<F>(
    model: &DiffusionTransformer,
    shards: usize,
    threads: usize,
    loss: F,
) -> (GradientsParams, f64)
where
    F: Fn(&DiffusionTransformer, usize) -> Tensor<1> + Sync,
{
    let run_shard = |replica: DiffusionTransformer, shard: usize| {
        let value = loss(&replica, shard);
        let scalar = value.clone().into_scalar::<f32>() as f64;
        let gradients = GradientsParams::from_grads(value.backward(), &replica);
        (gradients, scalar)
    };
    let device = model.devices().into_iter().next();
    let replica = || match &device {
        Some(device) => model.clone().fork(device),
        None => model.clone(),
    };
    let threads = threads.clamp(1, shards.max(1));
    let mut results: Vec<Option<(GradientsParams, f64)>> = (0..shards).map(|_| None).collect();
    for wave in (0..shards).collect::<Vec<_>>().chunks(threads) {
        let outputs: Vec<(usize, (GradientsParams, f64))> = std::thread::scope(|scope| {
            let handles: Vec<_> = wave[1..]
                .iter()
                .map(|&shard| {
                    let replica = replica();
                    let run_shard = &run_shard;
                    scope.spawn(move || (shard, run_shard(replica, shard)))
                })
                .collect();
            let mut outputs = vec![(wave[0], run_shard(replica(), wave[0]))];
            for handle in handles {
                match handle.join() {
                    Ok(output) => outputs.push(output),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            outputs
        });
        for (shard, output) in outputs {
            results[shard] = Some(output);
        }
    }
    let mut accumulator = GradientsAccumulator::<DiffusionTransformer>::new();
    let mut total = 0.0;
    for (gradients, value) in results.into_iter().flatten() {
        accumulator.accumulate(model, gradients);
        total += value;
    }
    (accumulator.grads(), total)
}
