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

use crate::corruption::{CleanBatch, Corruption};
use crate::cpu::{compute_threads, parallel_map};
use crate::error::Result;
use crate::model::LossModel;
use crate::random::StdRng;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};

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
pub fn sharded_gradients<M, F>(
    model: &M,
    shards: usize,
    threads: usize,
    loss: F,
) -> Result<(GradientsParams, f64)>
where
    M: Module + Send + Sync,
    F: Fn(&M, usize) -> Result<Tensor<1>> + Sync,
{
    let device = model.devices().into_iter().next();
    let replicas: Vec<(usize, M)> = (0..shards)
        .map(|shard| match &device {
            Some(device) => (shard, model.clone().fork(device)),
            None => (shard, model.clone()),
        })
        .collect();
    let results = parallel_map(replicas, threads, |(shard, replica)| {
        let value = loss(&replica, shard)?;
        let scalar = value.clone().into_scalar::<f32>() as f64;
        Ok((
            GradientsParams::from_grads(value.backward(), &replica),
            scalar,
        ))
    });
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut total = 0.0;
    for result in results {
        let (gradients, value) = result?;
        accumulator.accumulate(model, gradients);
        total += value;
    }
    Ok((accumulator.grads(), total))
}

/// Gradients and loss of `corruption`'s loss on one clean batch, split into up to `shards`
/// row shards run on this process's cores. Each shard's loss is weighted by its share of the
/// rows times `scale` (1 / gradient accumulation in the trainer); `rng(shard)` is the shard's
/// corruption stream.
#[allow(clippy::too_many_arguments)]
pub fn batch_gradients<M: Module + LossModel + Send>(
    model: &M,
    corruption: &dyn Corruption,
    clean: &CleanBatch,
    training_step: usize,
    shards: usize,
    scale: f64,
    rng: impl Fn(usize) -> StdRng + Sync,
    device: &Device,
) -> Result<(GradientsParams, f64)> {
    let ranges = shard_rows(clean.batch, shards);
    sharded_gradients(model, ranges.len(), compute_threads(), |replica, shard| {
        let rows = rows_of(clean, ranges[shard].clone());
        let share = scale * rows.batch as f64 / clean.batch as f64;
        let mut shard_rng = rng(shard);
        Ok(corruption
            .loss(replica, &rows, training_step, &mut shard_rng, device)?
            .mul_scalar(share))
    })
}
