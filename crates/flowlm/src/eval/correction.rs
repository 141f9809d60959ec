//! The correction benchmark: plant random substitutions (and optionally masks) in held-out text,
//! run the `correct` sampler, and count what came back. A model that can revise tokens restores
//! the substitutions; a masked-only model has never been asked about a visible token.

use crate::canvas::Canvas;
use crate::data::TokenizedDocument;
use crate::error::{FlowError, Result};
use crate::model::SavedModel;
use crate::random::rng_for;
use crate::sampler::{CorrectSampler, Initialization, Revision, Sampler};
use crate::vocabulary::Vocabulary;
use burn::tensor::Device;
use rand::Rng;

#[derive(Debug, Clone)]
pub struct CorrectionOptions {
    /// Share of visible tokens replaced by a random token.
    pub substitute: f64,
    /// Share of tokens masked (before substitution).
    pub mask: f64,
    /// Rows of the model's sequence length to corrupt.
    pub rows: usize,
    pub batch_size: usize,
    pub steps: usize,
    pub edit_threshold: f64,
    pub accept_threshold: f64,
    pub revision: Revision,
    pub seed: u64,
}

impl Default for CorrectionOptions {
    fn default() -> Self {
        Self {
            substitute: 0.1,
            mask: 0.0,
            rows: 32,
            batch_size: 8,
            steps: 32,
            edit_threshold: 0.3,
            accept_threshold: 0.9,
            revision: Revision::Replace,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CorrectionReport {
    pub substituted: usize,
    /// Substituted tokens that ended as the original.
    pub restored: usize,
    pub clean: usize,
    /// Clean tokens that ended as something else.
    pub wrongly_changed: usize,
    pub masked: usize,
    pub masks_correct: usize,
    pub rows: usize,
    pub total_steps: usize,
}

impl CorrectionReport {
    fn share(part: usize, whole: usize) -> f64 {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    }
    pub fn restored_share(&self) -> f64 {
        Self::share(self.restored, self.substituted)
    }
    pub fn wrongly_changed_share(&self) -> f64 {
        Self::share(self.wrongly_changed, self.clean)
    }
    pub fn masks_correct_share(&self) -> f64 {
        Self::share(self.masks_correct, self.masked)
    }
    pub fn mean_steps(&self) -> f64 {
        Self::share(self.total_steps, self.rows)
    }
}

/// What was planted at one position.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Planted {
    Clean,
    Substituted,
    Masked,
    /// Special tokens (document separators) are left alone and not counted.
    Untouched,
}

pub fn correction_benchmark(
    saved: &SavedModel,
    documents: &[TokenizedDocument],
    options: &CorrectionOptions,
    device: &Device,
    mut on_batch: impl FnMut(),
) -> Result<CorrectionReport> {
    for (name, value) in [
        ("--substitute", options.substitute),
        ("--mask", options.mask),
    ] {
        if !(0.0..1.0).contains(&value) {
            return Err(FlowError::argument(name, "must be in [0, 1)"));
        }
    }
    if options.rows == 0 || options.batch_size == 0 {
        return Err(FlowError::argument("--rows", "must be at least 1"));
    }
    let rows = super::evaluation_rows(saved, documents, options.rows, options.seed)?;
    let vocabulary = Vocabulary::for_tokenizer(&saved.tokenizer, saved.config.vocab_size);
    let sampler = CorrectSampler {
        steps: options.steps,
        edit_threshold: options.edit_threshold,
        accept_threshold: options.accept_threshold,
        temperature: 0.0,
        initialization: Initialization::Mask,
        revision: options.revision,
        vocabulary: vocabulary.clone(),
    };
    let denoiser = saved.denoiser(device);
    let mut report = CorrectionReport::default();
    let mut rng = rng_for(options.seed, 0xC0FFEE);
    for batch in rows.chunks(options.batch_size) {
        let mut planted = Vec::new();
        let mut canvas_rows = Vec::new();
        for clean in batch {
            let mut row = (*clean).clone();
            let mut kinds = Vec::with_capacity(row.len());
            for token in row.iter_mut() {
                let kind = if vocabulary.is_special(*token) {
                    Planted::Untouched
                } else if rng.random::<f64>() < options.mask {
                    *token = vocabulary.mask;
                    Planted::Masked
                } else if rng.random::<f64>() < options.substitute {
                    *token = vocabulary.random_token_except(*token, &mut rng);
                    Planted::Substituted
                } else {
                    Planted::Clean
                };
                kinds.push(kind);
            }
            planted.push(kinds);
            canvas_rows.push(row);
        }
        let mut canvas = Canvas {
            padding: vec![0; canvas_rows.len()],
            rows: canvas_rows,
            response_start: 0,
            mask_id: vocabulary.mask,
            pad_id: saved.metadata.pad_token_id,
        };
        // Rows stop together; count each row's steps as those in which it still changed.
        let mut last_change = vec![0usize; batch.len()];
        sampler.run(&denoiser, &mut canvas, &mut rng, &mut |event, _| {
            for change in &event.changes {
                last_change[change.row] = event.step + 1;
            }
        })?;
        for (row, clean) in batch.iter().enumerate() {
            report.rows += 1;
            report.total_steps += last_change[row];
            for (position, kind) in planted[row].iter().enumerate() {
                let right = canvas.rows[row][position] == clean[position];
                match kind {
                    Planted::Clean => {
                        report.clean += 1;
                        report.wrongly_changed += usize::from(!right);
                    }
                    Planted::Substituted => {
                        report.substituted += 1;
                        report.restored += usize::from(right);
                    }
                    Planted::Masked => {
                        report.masked += 1;
                        report.masks_correct += usize::from(right);
                    }
                    Planted::Untouched => {}
                }
            }
        }
        on_batch();
    }
    Ok(report)
}
