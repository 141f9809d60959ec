//! Training checkpoints: `RUN/checkpoint/` is a complete model directory plus the optimizer
//! state and `trainer_state.json`. It is written to a temporary directory and swapped in by
//! rename, so an interruption at any moment leaves the previous checkpoint intact.

use crate::error::{FlowError, Result};
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub const STATE_FILE: &str = "trainer_state.json";

/// Everything besides the weights and optimizer that exact resume needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub tokens_seen: u64,
    pub elapsed_seconds: f64,
    pub train_losses: Vec<(usize, f64)>,
    pub validation_losses: Vec<(usize, f64)>,
}

pub fn checkpoint_path(run: &Path) -> PathBuf {
    run.join(CHECKPOINT_DIR)
}

/// Writes `RUN/checkpoint`: the model directory `write_model` writes into the staging
/// directory, the optimizer state and `state`.
pub fn write_checkpoint(
    run: &Path,
    write_model: &dyn Fn(&Path) -> Result<()>,
    optimizer: &ModuleOptimizer,
    state: &TrainerState,
) -> Result<()> {
    let staging = run.join(".checkpoint.tmp");
    let previous = run.join(".checkpoint.old");
    let target = checkpoint_path(run);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| FlowError::io(&staging, e))?;
    }
    write_model(&staging)?;
    let optimizer_path = staging.join(OPTIMIZER_FILE);
    optimizer
        .save(&optimizer_path)
        .map_err(|e| FlowError::Checkpoint(format!("{}: {e:?}", optimizer_path.display())))?;
    crate::io::write_json(&staging.join(STATE_FILE), state)?;
    if target.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| FlowError::io(&previous, e))?;
        }
        std::fs::rename(&target, &previous).map_err(|e| FlowError::io(&target, e))?;
    }
    std::fs::rename(&staging, &target).map_err(|e| FlowError::io(&target, e))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| FlowError::io(&previous, e))?;
    }
    Ok(())
}

/// The checkpoint directory of a run, falling back to the previous one if a swap was cut short.
pub fn find_checkpoint(run: &Path) -> Result<PathBuf> {
    for candidate in [checkpoint_path(run), run.join(".checkpoint.old")] {
        if candidate.join(STATE_FILE).is_file() {
            return Ok(candidate);
        }
    }
    Err(FlowError::Checkpoint(format!(
        "{} holds no checkpoint ({CHECKPOINT_DIR}/{STATE_FILE} is missing); pass the run directory that `flowlm train --out` wrote",
        run.display()
    )))
}

pub fn load_optimizer(optimizer: ModuleOptimizer, checkpoint: &Path) -> Result<ModuleOptimizer> {
    let path = checkpoint.join(OPTIMIZER_FILE);
    optimizer
        .load(&path)
        .map_err(|e| FlowError::Checkpoint(format!("{}: {e:?}", path.display())))
}
