//! Samplers: the reverse process over a `Canvas`, one step at a time. Every sampler reports the
//! same per-step `StepEvent` (which positions changed, to what, with what confidence), so the
//! live terminal view, the benchmarks and the tests all read one thing.

mod ancestral;
mod autoregressive;
mod correct;
mod dream;
mod greedy;
mod llada;
mod registry;
mod remask;
mod sampling;
pub mod xflow;

pub use ancestral::{AncestralSampler, UniformProcess};
pub use autoregressive::AutoregressiveSampler;
pub use correct::{CorrectSampler, Initialization, Revision};
pub use dream::{DreamConfidence, DreamSampler};
pub use greedy::GreedySampler;
pub use llada::{
    LladaSampler, ParallelRule, Remasking, RowProgress, commit_schedule as llada_commit_schedule,
};
pub use registry::{SAMPLERS, SamplerSettings, build_sampler, is_sampler, sampler_names};
pub use remask::{RemaskOrder, RemaskSampler};
pub use sampling::gumbel_argmax;
pub use xflow::{FlowDecision, FlowTrace, StepPolicyChoice, XFlowSampler};

use crate::canvas::Canvas;
use crate::error::Result;
use crate::model::Denoiser;
use crate::random::StdRng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A masked slot received a token.
    Filled,
    /// A filled slot received a different token (self-correction).
    Revised,
    /// A filled slot went back to the mask.
    Remasked,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub row: usize,
    /// Index within the response (0 = first response slot).
    pub position: usize,
    pub token: u32,
    pub confidence: f64,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepEvent {
    pub step: usize,
    pub changes: Vec<Change>,
}

impl StepEvent {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }
}

/// What a finished run cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SamplerReport {
    pub steps: usize,
    pub forward_passes: usize,
}

/// Called after every step with the event and the canvas as it now is.
pub type Observer<'a> = dyn FnMut(&StepEvent, &Canvas) + 'a;

pub trait Sampler {
    fn name(&self) -> &'static str;
    /// Whether a filled slot may change again (revision, remasking, re-noising). When not, the
    /// answer's prefix up to its first mask is final as soon as it is written, and a server can
    /// stream it.
    fn revises(&self) -> bool {
        true
    }
    /// Runs the reverse process on `canvas` in place.
    fn run(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport>;
}

/// The denoiser's logits for `canvas`, with the mask token made unpredictable: a sampler that
/// committed the mask would leave the slot masked (and greedy would never finish).
pub(crate) fn predict(
    denoiser: &dyn Denoiser,
    canvas: &Canvas,
    time: Option<&[f32]>,
) -> Result<crate::model::Logits> {
    let mut logits = denoiser.logits(canvas, time)?;
    logits.forbid(canvas.mask_id);
    Ok(logits)
}

/// Writes `token` at `column` of `row` and records the change.
pub(crate) fn commit(
    canvas: &mut Canvas,
    event: &mut StepEvent,
    row: usize,
    column: usize,
    token: u32,
    confidence: f64,
) {
    let previous = canvas.rows[row][column];
    let kind = if token == canvas.mask_id {
        ChangeKind::Remasked
    } else if previous == canvas.mask_id {
        ChangeKind::Filled
    } else {
        ChangeKind::Revised
    };
    canvas.rows[row][column] = token;
    event.changes.push(Change {
        row,
        position: column - canvas.response_start,
        token,
        confidence,
        kind,
    });
}
