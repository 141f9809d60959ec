//! Continuous batching for LLaDA requests without a cache: each request's rows (lanes) carry
//! their own block, step and random stream ([`RowProgress`]), so a request joins the running
//! batch at the next step boundary and leaves as soon as its answer is done. Each lane computes
//! what it computes alone (left padding, per-row commits and draws), so joining changes no
//! answer, sampled ones included.

use crate::engine::{
    Job, JobEvent, ModelInfo, completion, fail, final_text_delta, internal_error, step_update,
    timeout_error,
};
use crate::metrics::Metrics;
use flowlm::canvas::Canvas;
use flowlm::model::Denoiser;
use flowlm::random::{rng_for, split};
use flowlm::sampler::{LladaSampler, RowProgress, StepEvent};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;
use tokio::sync::mpsc;

/// One row of a request: its prompt, its answer so far, and where its decode stands.
struct Lane {
    request: usize,
    choice: usize,
    prompt: Vec<u32>,
    response: Vec<u32>,
    progress: Option<RowProgress>,
    /// Final text streamed so far (streaming requests only).
    sent: Option<String>,
}

/// A request being decoded.
struct Running {
    job: Job,
    /// Finished choices: (index, answer tokens).
    answers: Vec<(usize, Vec<u32>)>,
    steps: usize,
    forward_passes: usize,
}

struct Decode<'a> {
    sampler: LladaSampler,
    info: &'a ModelInfo,
    metrics: &'a Metrics,
    requests: HashMap<usize, Running>,
    next_request: usize,
    lanes: Vec<Lane>,
}

/// Decodes `first` and every request that can join it (same settings), step by step, until
/// none is left or a request of another kind is waiting (which then goes next).
pub(crate) fn decode(
    first: Job,
    denoiser: &dyn Denoiser,
    info: &ModelInfo,
    metrics: &Metrics,
    queue: &mut mpsc::Receiver<Job>,
    waiting: &mut VecDeque<Job>,
    max_batch: usize,
) {
    let key = first.batch_key.clone();
    let mut decode = Decode {
        sampler: first.settings.llada(),
        info,
        metrics,
        requests: HashMap::new(),
        next_request: 0,
        lanes: Vec::new(),
    };
    decode.admit(first);
    loop {
        while let Ok(job) = queue.try_recv() {
            metrics.queued(-1);
            waiting.push_back(job);
        }
        // Newcomers join at this step boundary unless a request of another kind waits.
        if waiting.iter().all(|j| j.steppable && j.batch_key == key) {
            while let Some(job) = waiting.front() {
                if decode.lanes.len() + job.n > max_batch {
                    break;
                }
                if let Some(job) = waiting.pop_front() {
                    decode.admit(job);
                }
            }
        }
        decode.drop_abandoned();
        if decode.lanes.is_empty() {
            return;
        }
        if let Err(error) = decode.step(denoiser) {
            for (_, running) in decode.requests.drain() {
                fail(&running.job, internal_error(&error), metrics);
            }
            return;
        }
    }
}

impl Decode<'_> {
    fn admit(&mut self, job: Job) {
        let id = self.next_request;
        self.next_request += 1;
        let ids = &self.info.metadata;
        // Choice i draws from the i-th stream of the request's seed, as row i of a
        // `flowlm generate` batch with that seed would.
        let streams = split(&mut rng_for(job.seed, 0), job.n);
        let starts = Canvas::new(
            std::slice::from_ref(&job.prompt),
            job.gen_length,
            ids.mask_token_id,
            ids.pad_token_id,
        )
        .and_then(|canvas| {
            streams
                .into_iter()
                .map(|stream| self.sampler.start_row(&canvas, 0, stream))
                .collect::<flowlm::Result<Vec<_>>>()
        });
        let starts = match starts {
            Ok(starts) => starts,
            Err(error) => {
                fail(&job, internal_error(&error), self.metrics);
                return;
            }
        };
        for (choice, progress) in starts.into_iter().enumerate() {
            self.lanes.push(Lane {
                request: id,
                choice,
                prompt: job.prompt.clone(),
                response: vec![ids.mask_token_id; job.gen_length],
                progress: Some(progress),
                sent: job.stream_text.then(String::new),
            });
        }
        self.requests.insert(
            id,
            Running {
                job,
                answers: Vec::new(),
                steps: 0,
                forward_passes: 0,
            },
        );
    }

    /// Requests whose client left or whose deadline passed: answered 408 (if anyone listens)
    /// and their lanes removed before the next step.
    fn drop_abandoned(&mut self) {
        let now = Instant::now();
        let gone: Vec<usize> = self
            .requests
            .iter()
            .filter(|(_, r)| r.job.abandoned(now))
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(running) = self.requests.remove(&id) {
                fail(&running.job, timeout_error(), self.metrics);
            }
            self.lanes.retain(|lane| lane.request != id);
        }
    }

    /// The lanes as one left-padded canvas.
    fn canvas(&self) -> flowlm::Result<Canvas> {
        let ids = &self.info.metadata;
        let prompts: Vec<&[u32]> = self.lanes.iter().map(|l| l.prompt.as_slice()).collect();
        let responses: Vec<&[u32]> = self.lanes.iter().map(|l| l.response.as_slice()).collect();
        Canvas::with_responses(&prompts, &responses, ids.mask_token_id, ids.pad_token_id)
    }

    /// One forward pass over every lane, then each request hears its part.
    fn step(&mut self, denoiser: &dyn Denoiser) -> flowlm::Result<()> {
        let mut canvas = self.canvas()?;
        let mut progress: Vec<Option<RowProgress>> =
            self.lanes.iter_mut().map(|l| l.progress.take()).collect();
        let (event, passes) = self
            .sampler
            .step_rows(denoiser, &mut canvas, &mut progress, 0)?;
        self.metrics.step();
        self.metrics.forward_passes(passes);
        for (row, lane) in self.lanes.iter_mut().enumerate() {
            lane.response = canvas.response(row).to_vec();
            lane.progress = progress[row].take();
        }
        self.stream(&event, &canvas, passes);
        self.finish_lanes();
        Ok(())
    }

    fn stream(&mut self, event: &StepEvent, canvas: &Canvas, passes: usize) {
        for (&id, running) in self.requests.iter_mut() {
            if running.job.stream_steps {
                let lanes = &self.lanes;
                let choice_of =
                    |row: usize| (lanes[row].request == id).then_some(lanes[row].choice);
                let update = step_update(event, canvas, self.info, running.steps, choice_of);
                let _ = running.job.events.send(update);
            }
            running.steps += 1;
            running.forward_passes += passes;
        }
        for lane in &mut self.lanes {
            let (Some(sent), Some(running)) = (&mut lane.sent, self.requests.get(&lane.request))
            else {
                continue;
            };
            if let Some(delta) =
                final_text_delta(self.info, &lane.response, &running.job.stop, sent)
            {
                let _ = running.job.events.send(JobEvent::Text {
                    index: lane.choice,
                    delta,
                });
            }
        }
    }

    /// Lanes past their last block leave; a request whose lanes have all left is answered.
    fn finish_lanes(&mut self) {
        let (done, active): (Vec<Lane>, Vec<Lane>) = std::mem::take(&mut self.lanes)
            .into_iter()
            .partition(|lane| lane.progress.is_none());
        self.lanes = active;
        for lane in done {
            let Some(running) = self.requests.get_mut(&lane.request) else {
                continue;
            };
            running.answers.push((lane.choice, lane.response));
            if running.answers.len() < running.job.n {
                continue;
            }
            if let Some(running) = self.requests.remove(&lane.request) {
                let answers: Vec<(usize, &[u32])> = running
                    .answers
                    .iter()
                    .map(|(index, tokens)| (*index, tokens.as_slice()))
                    .collect();
                let done = completion(
                    self.info,
                    &running.job,
                    &answers,
                    running.steps,
                    running.forward_passes,
                );
                self.metrics
                    .finished(done.completion_tokens, running.job.enqueued.elapsed());
                let _ = running.job.events.send(JobEvent::Done(done));
            }
        }
    }
}
