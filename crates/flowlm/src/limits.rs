//! The bounds every input is checked against before work starts, in one place. Each check
//! returns a message that names the value and the allowed range; callers wrap it in an error
//! that names the flag, field or file. Limits are generous for real use and small enough that a
//! typo cannot ask for unbounded memory or time.

use std::fmt::Display;

/// Most denoising steps one generation may take.
pub const MAX_STEPS: usize = 100_000;
/// Largest batch (rows per optimizer step or per generation).
pub const MAX_BATCH: usize = 65_536;
/// Most micro-batches accumulated into one optimizer step.
pub const MAX_ACCUMULATION: usize = 4_096;
/// Most data-parallel shards per micro-batch.
pub const MAX_SHARDS: usize = 1_024;
/// Most optimizer steps of one run.
pub const MAX_TRAINING_STEPS: usize = 100_000_000;
/// Longest sequence a recipe may train on.
pub const MAX_SEQUENCE: usize = 1 << 20;
/// Largest model width, depth, head count and feed-forward size.
pub const MAX_HIDDEN: usize = 65_536;
pub const MAX_LAYERS: usize = 1_024;
pub const MAX_FEED_FORWARD: usize = 1 << 20;
/// Largest tokenizer vocabulary.
pub const MAX_VOCABULARY: usize = 1 << 20;
/// Most examples `flowlm data task` writes per split.
pub const MAX_TASK_EXAMPLES: usize = 10_000_000;
/// Most trajectories per prompt in GRPO.
pub const MAX_GROUP: usize = 1_024;

/// A failed check as an error naming the config field (recipe, config.json, flowlm.json).
pub fn field(name: &str, check: Result<(), String>) -> crate::Result<()> {
    check.map_err(|message| crate::FlowError::config(name, message))
}

/// A failed check as an error naming the command-line flag.
pub fn flag(name: &str, check: Result<(), String>) -> crate::Result<()> {
    check.map_err(|message| crate::FlowError::argument(name, message))
}

/// `value` in `min..=max`.
pub fn within<T: PartialOrd + Display>(value: T, min: T, max: T) -> Result<(), String> {
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(format!("is {value}; allowed: {min} to {max}"))
    }
}

/// A finite `value` in `min..=max` (NaN and infinities are refused by name).
pub fn finite_within(value: f64, min: f64, max: f64) -> Result<(), String> {
    if !value.is_finite() {
        return Err(format!(
            "is {value}; allowed: a finite number from {min} to {max}"
        ));
    }
    within(value, min, max)
}

/// A finite `value` above `min` (exclusive) and at most `max`.
pub fn finite_above(value: f64, min: f64, max: f64) -> Result<(), String> {
    if !value.is_finite() || value <= min || value > max {
        return Err(format!("is {value}; allowed: above {min}, at most {max}"));
    }
    Ok(())
}
