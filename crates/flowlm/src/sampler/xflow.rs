//! x-prediction flow decoding (seed 003). Each response slot carries an input embedding x_i and a
//! progress t_i in [0, 1], starting at the mask embedding m and 0. Every step the denoiser reads
//! the embeddings and predicts x_pred = Embed(argmax); then per unfinished slot:
//! - re-edit when c_i - t_i < -0.1 (the model is less sure than the slot's progress claims):
//!   x_i = c_i x_pred + (1 - c_i) m, t_i = c_i;
//! - otherwise a velocity step v = (x_pred - x) / (1 - t), dt = a (1 - t), with a in
//!   [1/256, 1] from the step policy: x += v dt, t += dt;
//! - hard commitment: of the slots with t_i < 0.99, the most confident one is fixed to its
//!   prediction with t_i = 1.
//!
//! After the last step every slot is read out as its prediction. The step policy is a confidence
//! heuristic (y = c) by default, or the GRPO-trained Beta-MLP of [`crate::policy`].

use super::{Observer, Sampler, SamplerReport, StepEvent, commit};
use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::{Denoiser, argmax, softmax};
use crate::policy::{StepFeatures, StepPolicy, step_features, top4_of};
use crate::random::StdRng;

/// The learned step policy's file inside a model directory (`flowlm train-policy` writes it).
pub const POLICY_FILE: &str = "step_policy.json";

impl StepPolicyChoice {
    /// `heuristic`, or `learned` (the policy saved beside the model in `model_dir`).
    pub fn load(name: &str, model_dir: &std::path::Path) -> Result<Self> {
        match name {
            "heuristic" => Ok(StepPolicyChoice::Heuristic),
            "learned" => {
                let path = model_dir.join(POLICY_FILE);
                if !path.is_file() {
                    return Err(FlowError::argument(
                        "--policy",
                        format!(
                            "{} does not exist; train one with `flowlm train-policy --model {}`",
                            path.display(),
                            model_dir.display()
                        ),
                    ));
                }
                Ok(StepPolicyChoice::Learned {
                    policy: StepPolicy::load(&path)?,
                    sample: false,
                })
            }
            other => Err(FlowError::argument(
                "--policy",
                format!("`{other}` is not one of heuristic, learned"),
            )),
        }
    }
}

/// Re-edit when confidence trails progress by more than this.
pub const REEDIT_MARGIN: f64 = 0.1;
/// Slots at or above this progress are finished and not hard-committed.
pub const FINISHED_PROGRESS: f64 = 0.99;
pub const ACTION_MIN: f64 = 1.0 / 256.0;
pub const ACTION_MAX: f64 = 1.0;

/// Where the step sizes come from.
#[derive(Debug, Clone)]
pub enum StepPolicyChoice {
    /// a = a_min^(1 - c): confident slots jump, unsure ones creep.
    Heuristic,
    /// The learned policy: expected action when `sample` is false, a Beta draw when true.
    Learned { policy: StepPolicy, sample: bool },
}

/// One decision of the step policy, kept for GRPO.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowDecision {
    pub row: usize,
    /// The response slot (token) the decision moved.
    pub slot: usize,
    pub features: StepFeatures,
    /// The unit action y in [0, 1].
    pub unit_action: f64,
    /// log π(y | features) under the policy that drew y (GRPO's frozen old policy); NaN when
    /// the action was not sampled.
    pub log_prob: f64,
}

/// What a run did, for policy training.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowTrace {
    pub decisions: Vec<FlowDecision>,
    /// Progress of every slot before the final readout, per row.
    pub final_progress: Vec<Vec<f64>>,
}

#[derive(Debug, Clone)]
pub struct XFlowSampler {
    pub steps: usize,
    pub policy: StepPolicyChoice,
}

/// a = 2^(log2 a_min + y (log2 a_max - log2 a_min)).
pub fn action_from_unit(unit: f64) -> f64 {
    (ACTION_MIN.log2() + unit.clamp(0.0, 1.0) * (ACTION_MAX.log2() - ACTION_MIN.log2())).exp2()
}

/// The velocity update of one slot: v = (x_pred - x) / (1 - t), dt = a (1 - t).
pub fn flow_update(x: &mut [f32], prediction: &[f32], progress: &mut f64, action: f64) {
    let dt = action * (1.0 - *progress);
    let remaining = (1.0 - *progress).max(f64::MIN_POSITIVE);
    for (value, &target) in x.iter_mut().zip(prediction) {
        let velocity = (target as f64 - *value as f64) / remaining;
        *value = (*value as f64 + velocity * dt) as f32;
    }
    *progress = (*progress + dt).min(1.0);
}

/// The re-edit rule: returns true (and resets the slot) when c - t < -0.1.
pub fn reedit(
    x: &mut [f32],
    prediction: &[f32],
    mask: &[f32],
    progress: &mut f64,
    confidence: f64,
) -> bool {
    if confidence - *progress >= -REEDIT_MARGIN {
        return false;
    }
    for ((value, &target), &m) in x.iter_mut().zip(prediction).zip(mask) {
        *value = (confidence * target as f64 + (1.0 - confidence) * m as f64) as f32;
    }
    *progress = confidence;
    true
}

impl XFlowSampler {
    /// Decodes `canvas` in place; `trace` collects the policy's decisions when given.
    pub fn decode(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
        mut trace: Option<&mut FlowTrace>,
    ) -> Result<SamplerReport> {
        if self.steps == 0 {
            return Err(FlowError::argument("--steps", "must be at least 1"));
        }
        let (table, hidden) = denoiser.embedding_table().ok_or_else(|| {
            FlowError::Unsupported("xflow needs a denoiser that reads embeddings".into())
        })?;
        let embedding = |token: usize| &table[token * hidden..(token + 1) * hidden];
        let mask = embedding(canvas.mask_id as usize).to_vec();
        let (rows, slots, start) = (
            canvas.batch(),
            canvas.response_length(),
            canvas.response_start,
        );
        for row in 0..rows {
            for column in start..canvas.width() {
                canvas.rows[row][column] = canvas.mask_id;
            }
        }
        let mut x: Vec<f32> = mask
            .iter()
            .copied()
            .cycle()
            .take(rows * slots * hidden)
            .collect();
        let mut progress = vec![vec![0.0f64; slots]; rows];
        let mut committed = vec![vec![false; slots]; rows];
        let mut predicted = vec![vec![0u32; slots]; rows];
        let mut confidence = vec![vec![0.0f64; slots]; rows];
        let mut report = SamplerReport::default();
        for step in 0..self.steps {
            let mut logits = denoiser.logits_from_embeddings(canvas, &x)?;
            logits.forbid(canvas.mask_id);
            report.forward_passes += 1;
            let mut event = StepEvent {
                step,
                changes: Vec::new(),
            };
            for row in 0..rows {
                for slot in (0..slots).filter(|&s| !committed[row][s]) {
                    let values = logits.at(row, start + slot);
                    let probabilities = softmax(values);
                    let token = argmax(values).0;
                    let c = probabilities[token];
                    predicted[row][slot] = token as u32;
                    confidence[row][slot] = c;
                    let state =
                        &mut x[(row * slots + slot) * hidden..(row * slots + slot + 1) * hidden];
                    let t = &mut progress[row][slot];
                    if reedit(state, embedding(token), &mask, t, c) {
                        continue;
                    }
                    let features = step_features(top4_of(&probabilities), *t, step, self.steps);
                    let (unit, action, log_prob) = match &self.policy {
                        StepPolicyChoice::Heuristic => (c, action_from_unit(c), f64::NAN),
                        StepPolicyChoice::Learned {
                            policy,
                            sample: false,
                        } => (f64::NAN, policy.expected_action(&features), f64::NAN),
                        StepPolicyChoice::Learned {
                            policy,
                            sample: true,
                        } => {
                            let (unit, action) = policy.sample_action(&features, rng);
                            (unit, action, policy.log_prob(&features, unit))
                        }
                    };
                    if let Some(trace) = trace.as_deref_mut() {
                        trace.decisions.push(FlowDecision {
                            row,
                            slot,
                            features,
                            unit_action: unit,
                            log_prob,
                        });
                    }
                    flow_update(state, embedding(token), t, action);
                }
                // Hard commitment of the most confident unfinished slot.
                let best = (0..slots)
                    .filter(|&s| !committed[row][s] && progress[row][s] < FINISHED_PROGRESS)
                    .max_by(|&a, &b| {
                        confidence[row][a]
                            .total_cmp(&confidence[row][b])
                            .then(b.cmp(&a))
                    });
                if let Some(slot) = best {
                    let token = predicted[row][slot];
                    committed[row][slot] = true;
                    progress[row][slot] = 1.0;
                    x[(row * slots + slot) * hidden..(row * slots + slot + 1) * hidden]
                        .copy_from_slice(embedding(token as usize));
                    commit(
                        canvas,
                        &mut event,
                        row,
                        start + slot,
                        token,
                        confidence[row][slot],
                    );
                }
            }
            if step + 1 == self.steps {
                if let Some(trace) = trace.as_deref_mut() {
                    trace.final_progress = progress.clone();
                }
                // Final readout: every slot becomes its prediction.
                for row in 0..rows {
                    for slot in 0..slots {
                        if committed[row][slot] {
                            continue;
                        }
                        committed[row][slot] = true;
                        progress[row][slot] = 1.0;
                        let token = predicted[row][slot];
                        commit(
                            canvas,
                            &mut event,
                            row,
                            start + slot,
                            token,
                            confidence[row][slot],
                        );
                    }
                }
            }
            report.steps += 1;
            observer(&event, canvas);
        }
        Ok(report)
    }
}

impl Sampler for XFlowSampler {
    fn name(&self) -> &'static str {
        "xflow"
    }

    fn run(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport> {
        self.decode(denoiser, canvas, rng, observer, None)
    }
}
