//! LLaDA's `generate`: semi-autoregressive blocks, a fixed number of commits per step, low-
//! confidence or random remasking, classifier-free guidance, and Gumbel-max in float64; and
//! Fast-dLLM's parallel rules (threshold, factor), which commit as many confident slots per step
//! as the rule accepts, with an early stop once a row's block is all end tokens; and its prefix
//! and dual key/value caches, recorded at each block's first step.

use super::{Observer, Sampler, SamplerReport, StepEvent, commit, gumbel_argmax, predict};
use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::sampled::SampledChoices;
use crate::model::{CacheMode, Denoiser, KvCache, Logits, TopChoices, softmax};
use crate::random::{StdRng, split};
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remasking {
    /// Keep the most confident predictions (softmax at the candidate, untempered).
    #[default]
    LowConfidence,
    /// Keep predictions in a random order.
    Random,
}

#[derive(Debug, Clone)]
pub struct LladaSampler {
    pub steps: usize,
    pub block_length: usize,
    pub temperature: f64,
    pub remasking: Remasking,
    pub cfg_scale: f64,
    /// Gives these predicted tokens -inf confidence (the intent of the reference's EOS/EoT
    /// suppression, which there only acts when T > 0; here it always acts). They are still
    /// committed when nothing else is left in the block.
    pub suppress_tokens: Vec<u32>,
    /// How many slots a step commits: LLaDA's fixed schedule, or a Fast-dLLM rule.
    pub parallel: ParallelRule,
    /// Fast-dLLM's early stop: once a row's block holds only these tokens (EOS/EoT), the rest
    /// of that row's answer is filled with the first of them and never computed. Empty: off.
    pub end_tokens: Vec<u32>,
    /// Fast-dLLM's key/value cache: which columns a step inside a block recomputes.
    pub cache: CacheMode,
    /// With a cache, also run the whole canvas (refreshing the cache) every this many steps of
    /// a block; 0: only at each block's first step, as Fast-dLLM does.
    pub cache_refresh: usize,
}

/// How many of a block's masked slots a step commits (ALGORITHMS.md, "Fast-dLLM").
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ParallelRule {
    /// LLaDA: floor(M / s) + [i < M mod s] per step, `steps` steps per block.
    #[default]
    Schedule,
    /// Every slot with confidence >= tau, and at least the most confident one.
    Threshold(f64),
    /// Sorted confidences c_1 >= c_2 >= ...: accept c_k while c_k >= 1 - f / (k + 1); c_1 always.
    Factor(f64),
}

impl ParallelRule {
    /// How many of `sorted` (confidences, highest first) a step commits under a parallel rule.
    pub fn accepted(self, sorted: &[f64]) -> usize {
        let accepted = match self {
            ParallelRule::Schedule => 0,
            ParallelRule::Threshold(tau) => sorted.iter().take_while(|&&c| c >= tau).count(),
            ParallelRule::Factor(f) => {
                1 + sorted
                    .iter()
                    .enumerate()
                    .skip(1)
                    .take_while(|&(i, &c)| c >= 1.0 - f / ((i + 1) as f64 + 1.0))
                    .count()
            }
        };
        accepted.max(1).min(sorted.len())
    }
}

impl Default for LladaSampler {
    fn default() -> Self {
        Self {
            steps: 128,
            block_length: 128,
            temperature: 0.0,
            remasking: Remasking::LowConfidence,
            cfg_scale: 0.0,
            suppress_tokens: Vec::new(),
            parallel: ParallelRule::Schedule,
            end_tokens: Vec::new(),
            cache: CacheMode::None,
            cache_refresh: 0,
        }
    }
}

/// What one step read from the denoiser.
enum StepPrediction {
    Top(TopChoices),
    /// Temperature sampling without guidance: Gumbel-max candidates computed where the logits
    /// are (see [`SampledChoices`]).
    Sampled(SampledChoices),
    Logits(Logits),
}

/// Commits per step for M masked slots over s steps: floor(M / s) + [i < M mod s].
pub fn commit_schedule(masked: usize, steps: usize) -> Vec<usize> {
    (0..steps)
        .map(|i| masked / steps + usize::from(i < masked % steps))
        .collect()
}

impl LladaSampler {
    /// (blocks, steps per block), or a clear error when the divisions are not exact.
    pub fn plan(&self, gen_length: usize) -> Result<(usize, usize)> {
        if gen_length == 0 {
            return Err(FlowError::argument("--gen-length", "must be at least 1"));
        }
        if self.block_length == 0 || !gen_length.is_multiple_of(self.block_length) {
            return Err(FlowError::argument(
                "--block-length",
                format!(
                    "gen_length {gen_length} must be a multiple of block_length {} (LLaDA splits the answer into equal blocks)",
                    self.block_length
                ),
            ));
        }
        let blocks = gen_length / self.block_length;
        if self.steps == 0 || !self.steps.is_multiple_of(blocks) {
            return Err(FlowError::argument(
                "--steps",
                format!(
                    "steps {} must be a positive multiple of the number of blocks {blocks} (gen_length / block_length)",
                    self.steps
                ),
            ));
        }
        Ok((blocks, self.steps / blocks))
    }

    /// At temperature 0 without guidance a step needs only each slot's argmax and its
    /// probability (random remasking draws its order on the host either way), which the
    /// denoiser computes on its device.
    fn needs_only_top_choices(&self) -> bool {
        self.temperature <= 0.0 && self.cfg_scale <= 0.0
    }

    /// A full pass's prediction for the `columns` the step reads: top choices at temperature
    /// 0, Gumbel-max candidates when sampling (`uniforms`: one per slot of `columns`), full
    /// logits with guidance.
    fn predict_uncached(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &Canvas,
        columns: std::ops::Range<usize>,
        uniforms: &[f64],
    ) -> Result<(StepPrediction, usize)> {
        if self.needs_only_top_choices() {
            let choices = denoiser.top_choices_in(canvas, columns, canvas.mask_id)?;
            return Ok((StepPrediction::Top(choices), 1));
        }
        if self.cfg_scale <= 0.0 {
            let choices = denoiser.sampled_choices_in(
                canvas,
                columns,
                canvas.mask_id,
                self.temperature,
                uniforms,
            )?;
            return Ok((StepPrediction::Sampled(choices), 1));
        }
        let (logits, passes) = self.guided_logits(denoiser, canvas)?;
        Ok((StepPrediction::Logits(logits), passes))
    }

    /// A cached step's top choices for `block`: `step` counts from the block's start; `cache`
    /// holds the block's keys/values once its first step (or a refresh) has recorded them.
    fn predict_cached(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &Canvas,
        block: std::ops::Range<usize>,
        step: usize,
        cache: &mut Option<KvCache>,
    ) -> Result<StepPrediction> {
        if self.cache_refresh > 0 && step.is_multiple_of(self.cache_refresh) {
            *cache = None;
        }
        let computed = self.cache.window(block.clone(), canvas.width());
        let (choices, recorded) =
            denoiser.cached_top_choices(canvas, cache.as_ref(), computed, block, canvas.mask_id)?;
        if recorded.is_some() {
            *cache = recorded;
        }
        Ok(StepPrediction::Top(choices))
    }

    /// With a cache the rows move through the blocks together (one cache per block for the
    /// whole batch); a row whose block is done commits nothing until the others are.
    fn run_cached(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport> {
        let (blocks, steps_per_block) = self.plan(canvas.response_length())?;
        let mut rngs = split(rng, canvas.batch());
        let mut report = SamplerReport::default();
        for block in 0..blocks {
            let columns = self.block_columns(canvas, block);
            let schedules = (0..canvas.batch())
                .map(|row| self.block_schedule(canvas, row, block))
                .collect::<Result<Vec<_>>>()?;
            // A rule commits at least one slot per row and step: a block ends within its length.
            let steps = match self.parallel {
                ParallelRule::Schedule => steps_per_block,
                _ => self.block_length,
            };
            let mut cache = None;
            for step in 0..steps {
                let masked = |row| columns.clone().any(|c| canvas.is_masked(row, c));
                if !(0..canvas.batch()).any(masked) {
                    break;
                }
                let prediction =
                    self.predict_cached(denoiser, canvas, columns.clone(), step, &mut cache)?;
                report.forward_passes += 1;
                let mut event = StepEvent {
                    step: report.steps,
                    changes: Vec::new(),
                };
                for (row, (schedule, rng)) in schedules.iter().zip(&mut rngs).enumerate() {
                    let scheduled = schedule[step];
                    self.commit_row(
                        &prediction,
                        canvas,
                        row,
                        columns.clone(),
                        scheduled,
                        rng,
                        &mut event,
                    );
                }
                report.steps += 1;
                observer(&event, canvas);
            }
            for row in 0..canvas.batch() {
                self.end_row_if_finished(canvas, row, columns.clone());
            }
        }
        Ok(report)
    }

    /// The masked slots of `block` in `row` as (column, token, confidence, probability), most
    /// confident first; slots outside the block are never candidates (-inf in the reference).
    fn candidates(
        &self,
        prediction: &StepPrediction,
        canvas: &Canvas,
        row: usize,
        block: std::ops::Range<usize>,
        rng: &mut StdRng,
    ) -> Vec<(usize, u32, f64, f64)> {
        let mut candidates = Vec::new();
        for column in block.filter(|&c| canvas.is_masked(row, c)) {
            let (token, probability) = match prediction {
                StepPrediction::Top(choices) => {
                    let (token, probability) = choices.at(row, column);
                    (token as usize, probability)
                }
                StepPrediction::Sampled(choices) => {
                    let (token, probability) = choices.draw(row, column, rng);
                    (token as usize, probability)
                }
                StepPrediction::Logits(logits) => {
                    let l = logits.at(row, column);
                    let token = gumbel_argmax(l, self.temperature, rng);
                    (token, softmax(l)[token])
                }
            };
            let mut confidence = match self.remasking {
                Remasking::LowConfidence => probability,
                Remasking::Random => rng.random::<f64>(),
            };
            if self.suppress_tokens.contains(&(token as u32)) {
                confidence = f64::NEG_INFINITY;
            }
            candidates.push((column, token as u32, confidence, probability));
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        candidates
    }

    /// Early stop: when `row`'s finished block is all end tokens, the rest of its answer is
    /// filled with the first end token. Each row decides alone, so a batch gives every row what
    /// it gets alone.
    fn end_row_if_finished(&self, canvas: &mut Canvas, row: usize, block: std::ops::Range<usize>) {
        let Some(&fill) = self.end_tokens.first() else {
            return;
        };
        let ended = block
            .clone()
            .all(|c| self.end_tokens.contains(&canvas.rows[row][c]));
        if ended {
            for slot in &mut canvas.rows[row][block.end..] {
                *slot = fill;
            }
        }
    }

    fn guided_logits(&self, denoiser: &dyn Denoiser, canvas: &Canvas) -> Result<(Logits, usize)> {
        let conditional = predict(denoiser, canvas, None)?;
        // The conditional side has the mask forbidden (-inf); that column is kept as is below
        // rather than mixed, which would give NaN.
        if self.cfg_scale <= 0.0 {
            return Ok((conditional, 1));
        }
        let unconditional = denoiser.logits(&canvas.with_prompt_masked(), None)?;
        let w = self.cfg_scale as f32;
        let mut guided = conditional;
        for (c, u) in guided.values.iter_mut().zip(&unconditional.values) {
            if c.is_finite() {
                *c = u + (w + 1.0) * (*c - u);
            }
        }
        Ok((guided, 2))
    }
}

/// Where one row of a LLaDA decode stands: its block, the step within that block, the
/// block's commit schedule, and the row's own random stream. Rows advance on their own, so a
/// row can join a batch between any two steps (`flowlm serve` does) and still compute what it
/// computes alone.
#[derive(Debug, Clone)]
pub struct RowProgress {
    block: usize,
    step: usize,
    schedule: Vec<usize>,
    rng: StdRng,
}

impl LladaSampler {
    /// Checks the settings for an answer of `gen_length` slots; (blocks, steps per block).
    fn check(&self, gen_length: usize) -> Result<(usize, usize)> {
        let plan = self.plan(gen_length)?;
        if self.parallel != ParallelRule::Schedule && self.remasking == Remasking::Random {
            return Err(FlowError::argument(
                "--threshold/--factor",
                "the parallel rules read the model's confidences; use --remasking low-confidence",
            ));
        }
        if self.cache != CacheMode::None && !self.needs_only_top_choices() {
            return Err(FlowError::argument(
                "--cache",
                "cached steps read each slot's most probable token; use --temperature 0 without --cfg-scale, or --cache none",
            ));
        }
        Ok(plan)
    }

    /// The canvas columns of `row`'s block `block`.
    fn block_columns(&self, canvas: &Canvas, block: usize) -> std::ops::Range<usize> {
        let start = canvas.response_start + block * self.block_length;
        start..start + self.block_length
    }

    /// `row`'s commit schedule for `block` (it spreads the block's masks over its steps).
    fn block_schedule(&self, canvas: &Canvas, row: usize, block: usize) -> Result<Vec<usize>> {
        let (_, steps_per_block) = self.plan(canvas.response_length())?;
        let masked = self
            .block_columns(canvas, block)
            .filter(|&c| canvas.is_masked(row, c))
            .count();
        Ok(commit_schedule(masked, steps_per_block))
    }

    /// A row starting its answer, drawing from `rng` (see [`crate::random::split`]); an error
    /// when the settings do not fit the canvas.
    pub fn start_row(&self, canvas: &Canvas, row: usize, rng: StdRng) -> Result<RowProgress> {
        self.check(canvas.response_length())?;
        Ok(RowProgress {
            block: 0,
            step: 0,
            schedule: self.block_schedule(canvas, row, 0)?,
            rng,
        })
    }

    /// One step for rows that each stand at their own block (`None`: finished, or not in this
    /// decode): one forward pass, then every row commits what its schedule or rule allows in its
    /// block. A row whose block is done moves on (with the early stop), and past its last block
    /// becomes `None`. Returns the step's changes (`step` numbers the event) and forward passes.
    pub fn step_rows(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rows: &mut [Option<RowProgress>],
        step: usize,
    ) -> Result<(StepEvent, usize)> {
        // The blocks the unfinished rows stand in: all a step reads.
        let blocks = rows
            .iter()
            .flatten()
            .map(|p| self.block_columns(canvas, p.block));
        let read = blocks
            .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
            .unwrap_or(canvas.response_start..canvas.width());
        // The uniforms that pick a sampled slot's token among the unlikely ones: each row draws
        // them for its own block from its own stream, as it would alone.
        let mut uniforms = vec![0.5; canvas.batch() * read.len()];
        if !self.needs_only_top_choices() {
            for (row, progress) in rows.iter_mut().enumerate() {
                if let Some(current) = progress {
                    for column in self.block_columns(canvas, current.block) {
                        uniforms[row * read.len() + column - read.start] =
                            crate::random::open_unit(&mut current.rng);
                    }
                }
            }
        }
        let (prediction, passes) = self.predict_uncached(denoiser, canvas, read, &uniforms)?;
        let mut event = StepEvent {
            step,
            changes: Vec::new(),
        };
        for (row, progress) in rows.iter_mut().enumerate() {
            let Some(mut current) = progress.take() else {
                continue;
            };
            let block = self.block_columns(canvas, current.block);
            let scheduled = current.schedule.get(current.step).copied().unwrap_or(0);
            let rng = &mut current.rng;
            self.commit_row(&prediction, canvas, row, block, scheduled, rng, &mut event);
            current.step += 1;
            *progress = self.advance(canvas, row, current)?;
        }
        Ok((event, passes))
    }

    /// `progress` after a step: the same block while it has masks and steps left, else the
    /// next block that has masks (early stop applied), or `None` past the last block.
    fn advance(
        &self,
        canvas: &mut Canvas,
        row: usize,
        mut progress: RowProgress,
    ) -> Result<Option<RowProgress>> {
        let (blocks, steps_per_block) = self.plan(canvas.response_length())?;
        loop {
            let block = self.block_columns(canvas, progress.block);
            let masked = block.clone().any(|c| canvas.is_masked(row, c));
            let steps_left = match self.parallel {
                ParallelRule::Schedule => progress.step < steps_per_block,
                // A rule commits at least one slot per step: it ends with the masks.
                _ => true,
            };
            if masked && steps_left {
                return Ok(Some(progress));
            }
            self.end_row_if_finished(canvas, row, block);
            if progress.block + 1 == blocks {
                return Ok(None);
            }
            progress.block += 1;
            progress.step = 0;
            progress.schedule = self.block_schedule(canvas, row, progress.block)?;
        }
    }

    /// Commits in `row`'s `block` the slots LLaDA's schedule (`scheduled` of them) or the
    /// parallel rule selects, most confident first.
    #[allow(clippy::too_many_arguments)]
    fn commit_row(
        &self,
        prediction: &StepPrediction,
        canvas: &mut Canvas,
        row: usize,
        block: std::ops::Range<usize>,
        scheduled: usize,
        rng: &mut StdRng,
        event: &mut StepEvent,
    ) {
        let candidates = self.candidates(prediction, canvas, row, block, rng);
        let count = match self.parallel {
            ParallelRule::Schedule => scheduled,
            rule => {
                let confidences: Vec<f64> = candidates.iter().map(|c| c.2).collect();
                rule.accepted(&confidences)
            }
        };
        for &(column, token, _, probability) in candidates.iter().take(count) {
            commit(canvas, event, row, column, token, probability);
        }
    }
}

impl Sampler for LladaSampler {
    fn name(&self) -> &'static str {
        "llada"
    }

    fn revises(&self) -> bool {
        false
    }

    fn run(
        &self,
        denoiser: &dyn Denoiser,
        canvas: &mut Canvas,
        rng: &mut StdRng,
        observer: &mut Observer<'_>,
    ) -> Result<SamplerReport> {
        self.check(canvas.response_length())?;
        if self.cache != CacheMode::None {
            return self.run_cached(denoiser, canvas, rng, observer);
        }
        let mut rows = split(rng, canvas.batch())
            .into_iter()
            .enumerate()
            .map(|(row, stream)| self.start_row(canvas, row, stream).map(Some))
            .collect::<Result<Vec<_>>>()?;
        // A row whose first block holds no masks (a prefilled answer) moves on at once.
        for (row, progress) in rows.iter_mut().enumerate() {
            if let Some(current) = progress.take() {
                *progress = self.advance(canvas, row, current)?;
            }
        }
        let mut report = SamplerReport::default();
        while rows.iter().any(Option::is_some) {
            let (event, passes) = self.step_rows(denoiser, canvas, &mut rows, report.steps)?;
            report.forward_passes += passes;
            report.steps += 1;
            observer(&event, canvas);
        }
        Ok(report)
    }
}
