//! Training checkpoints: `RUN/checkpoint/` is a complete model directory plus the optimizer
//! state and `trainer_state.json`. It is written to a temporary directory and swapped in by
//! rename, so an interruption at any moment leaves the previous checkpoint intact.

use crate::error::{FlowError, Result};
use crate::model::{DiffusionTransformer, DiffusionTransformerConfig, FlowlmMetadata, SavedModel};
use crate::tokenizer::Tokenizer;
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

pub struct CheckpointParts<'a> {
    pub config: &'a DiffusionTransformerConfig,
    pub metadata: &'a FlowlmMetadata,
    pub tokenizer: &'a Tokenizer,
    pub model: &'a DiffusionTransformer,
    pub optimizer: &'a ModuleOptimizer,
    pub state: &'a TrainerState,
}

pub fn write_checkpoint(run: &Path, parts: &CheckpointParts<'_>) -> Result<()> {
    let staging = run.join(".checkpoint.tmp");
    let previous = run.join(".checkpoint.old");
    let target = checkpoint_path(run);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| FlowError::io(&staging, e))?;
    }
    SavedModel::save_parts(
        &staging,
        parts.config,
        parts.metadata,
        parts.tokenizer,
        parts.model,
    )?;
    let optimizer_path = staging.join(OPTIMIZER_FILE);
    parts
        .optimizer
        .save(&optimizer_path)
        .map_err(|e| FlowError::Checkpoint(format!("{}: {e:?}", optimizer_path.display())))?;
    crate::io::write_json(&staging.join(STATE_FILE), parts.state)?;
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
