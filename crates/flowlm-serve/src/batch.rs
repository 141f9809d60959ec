//! Decoding a batch of requests with any sampler in one `Sampler::run`: requests join at the
//! next batch. (LLaDA requests without a cache are decoded step by step instead, `continuous`.)

use crate::engine::{
    Completion, Job, JobEvent, ModelInfo, completion, fail, final_text_delta, internal_error,
    step_update, timeout_error,
};
use crate::metrics::Metrics;
use flowlm::canvas::Canvas;
use flowlm::model::{Denoiser, KvCache, Logits, TopChoices};
use flowlm::random::rng_for;
use flowlm::sampler::{StepEvent, build_sampler};
use std::cell::Cell;
use std::ops::Range;
use std::time::Instant;

/// Decodes one batch and tells each request what became of it.
pub(crate) fn decode_batch(
    denoiser: &dyn Denoiser,
    info: &ModelInfo,
    metrics: &Metrics,
    jobs: Vec<Job>,
) {
    let now = Instant::now();
    let (jobs, gone): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| !j.abandoned(now));
    for job in gone {
        fail(&job, timeout_error(), metrics);
    }
    let Some(first) = jobs.first() else {
        return;
    };
    let rows: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.n).map(move |choice| (j, choice)))
        .collect();
    let prompts: Vec<Vec<u32>> = rows.iter().map(|&(j, _)| jobs[j].prompt.clone()).collect();
    let ids = &info.metadata;
    let built = Canvas::new(
        &prompts,
        first.gen_length,
        ids.mask_token_id,
        ids.pad_token_id,
    )
    .and_then(|canvas| {
        let sampler = build_sampler(
            &first.sampler,
            &first.settings,
            &ids.corruption,
            &info.vocabulary,
        )?;
        Ok((canvas, sampler))
    });
    let (mut canvas, sampler) = match built {
        Ok(built) => built,
        Err(e) => {
            for job in &jobs {
                fail(job, internal_error(&e), metrics);
            }
            return;
        }
    };
    let mut streams = StreamState::new(&jobs, &rows, !sampler.revises());
    let guarded = CancellableDenoiser {
        inner: denoiser,
        jobs: &jobs,
        cancelled: Cell::new(false),
    };
    let mut rng = rng_for(first.seed, 0);
    let result = sampler.run(&guarded, &mut canvas, &mut rng, &mut |event, canvas| {
        metrics.step();
        streams.observe(event, canvas, info, &jobs, metrics);
    });
    match result {
        Ok(report) => {
            metrics.forward_passes(report.forward_passes);
            for (j, job) in jobs.iter().enumerate() {
                if streams.failed[j] {
                    continue;
                }
                let completion = finish(job, j, &rows, &canvas, info, report);
                metrics.finished(completion.completion_tokens, job.enqueued.elapsed());
                let _ = job.events.send(JobEvent::Done(completion));
            }
        }
        Err(_) if guarded.cancelled.get() => {
            for (j, job) in jobs.iter().enumerate() {
                if !streams.failed[j] {
                    fail(job, timeout_error(), metrics);
                }
            }
        }
        Err(e) => {
            for job in &jobs {
                fail(job, internal_error(&e), metrics);
            }
        }
    }
}

fn finish(
    job: &Job,
    j: usize,
    rows: &[(usize, usize)],
    canvas: &Canvas,
    info: &ModelInfo,
    report: flowlm::sampler::SamplerReport,
) -> Completion {
    let answers: Vec<(usize, &[u32])> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.0 == j)
        .map(|(row, r)| (r.1, canvas.response(row)))
        .collect();
    completion(info, job, &answers, report.steps, report.forward_passes)
}

/// What each request has been sent so far.
struct StreamState<'a> {
    rows: &'a [(usize, usize)],
    /// Final text sent per row (only when the sampler never revises).
    sent: Vec<Option<String>>,
    failed: Vec<bool>,
}

impl<'a> StreamState<'a> {
    fn new(jobs: &[Job], rows: &'a [(usize, usize)], text_is_final: bool) -> Self {
        Self {
            rows,
            sent: rows
                .iter()
                .map(|&(j, _)| (text_is_final && jobs[j].stream_text).then(String::new))
                .collect(),
            failed: vec![false; jobs.len()],
        }
    }

    fn observe(
        &mut self,
        event: &StepEvent,
        canvas: &Canvas,
        info: &ModelInfo,
        jobs: &[Job],
        metrics: &Metrics,
    ) {
        let now = Instant::now();
        for (j, job) in jobs.iter().enumerate() {
            if self.failed[j] {
                continue;
            }
            if job.abandoned(now) {
                self.failed[j] = true;
                fail(job, timeout_error(), metrics);
                continue;
            }
            if job.stream_steps {
                let rows = self.rows;
                let choice_of = |row: usize| (rows[row].0 == j).then_some(rows[row].1);
                let update = step_update(event, canvas, info, event.step, choice_of);
                let _ = job.events.send(update);
            }
        }
        for (row, sent) in self.sent.iter_mut().enumerate() {
            let (j, index) = self.rows[row];
            let Some(sent) = sent else { continue };
            if self.failed[j] {
                continue;
            }
            if let Some(delta) = final_text_delta(info, canvas.response(row), &jobs[j].stop, sent) {
                let _ = jobs[j].events.send(JobEvent::Text { index, delta });
            }
        }
    }
}

/// The model, refusing its next forward pass once every request of the batch is abandoned.
struct CancellableDenoiser<'a> {
    inner: &'a dyn Denoiser,
    jobs: &'a [Job],
    cancelled: Cell<bool>,
}

impl CancellableDenoiser<'_> {
    fn check(&self) -> flowlm::Result<()> {
        let now = Instant::now();
        if self.jobs.iter().all(|j| j.abandoned(now)) {
            self.cancelled.set(true);
            return Err(flowlm::FlowError::Unsupported(
                "every request was abandoned".into(),
            ));
        }
        Ok(())
    }
}

impl Denoiser for CancellableDenoiser<'_> {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn logits(&self, canvas: &Canvas, time: Option<&[f32]>) -> flowlm::Result<Logits> {
        self.check()?;
        self.inner.logits(canvas, time)
    }

    fn top_choices(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
        forbidden: u32,
    ) -> flowlm::Result<TopChoices> {
        self.check()?;
        self.inner.top_choices(canvas, time, forbidden)
    }

    fn top_choices_in(
        &self,
        canvas: &Canvas,
        columns: Range<usize>,
        forbidden: u32,
    ) -> flowlm::Result<TopChoices> {
        self.check()?;
        self.inner.top_choices_in(canvas, columns, forbidden)
    }

    fn cached_top_choices(
        &self,
        canvas: &Canvas,
        cache: Option<&KvCache>,
        computed: Range<usize>,
        read: Range<usize>,
        forbidden: u32,
    ) -> flowlm::Result<(TopChoices, Option<KvCache>)> {
        self.check()?;
        self.inner
            .cached_top_choices(canvas, cache, computed, read, forbidden)
    }

    fn embedding_table(&self) -> Option<(Vec<f32>, usize)> {
        self.inner.embedding_table()
    }

    fn logits_from_embeddings(&self, canvas: &Canvas, response: &[f32]) -> flowlm::Result<Logits> {
        self.check()?;
        self.inner.logits_from_embeddings(canvas, response)
    }
}
