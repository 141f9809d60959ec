//! The decoding engine: one thread owns the model and decodes queued requests.
//!
//! Requests wait in a bounded queue (a full queue answers 429). The engine takes the oldest:
//! - LLaDA without a cache is decoded step by step (`continuous`): requests with the same
//!   settings join between steps, up to `max_batch` rows, each row with its own random stream;
//! - anything else is decoded with the waiting requests of the same settings as one batch
//!   (`batch`); requests that sample there share the batch's random stream, so they run alone.
//!
//! Each row of a left-padded batch computes what it would compute alone, so a batched request
//! returns exactly what it returns alone. Every step's changes go to the requests that stream
//! them; a request whose client has gone or whose deadline has passed stops costing anything.

use crate::api::{ApiError, DecodeParams, Input, Request, apply_stop};
use crate::metrics::Metrics;
use axum::http::StatusCode;
use flowlm::model::open::OpenedModel;
use flowlm::model::{CacheMode, Denoiser, FlowlmMetadata};
use flowlm::sampler::{ChangeKind, SamplerSettings, build_sampler};
use flowlm::tokenizer::Tokenizer;
use flowlm::tokenizer::chat::{ChatTemplate, Message};
use flowlm::vocabulary::Vocabulary;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the HTTP side needs to know about the model (the weights stay on the engine thread).
pub struct ModelInfo {
    /// The name clients pass as `model` (the directory's name).
    pub id: String,
    pub directory: PathBuf,
    pub tokenizer: Tokenizer,
    pub metadata: FlowlmMetadata,
    pub context_length: usize,
    pub prompt_prefix: Vec<u32>,
    pub chat_template: Option<ChatTemplate>,
    pub vocabulary: Vocabulary,
}

/// One change of a streamed step, as the page draws it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CanvasChange {
    /// The choice (row) of the request.
    pub index: usize,
    /// Position within the answer.
    pub position: usize,
    pub token: u32,
    pub text: String,
    pub confidence: f64,
    /// `filled`, `revised` or `remasked`.
    pub kind: &'static str,
}

/// One finished choice.
#[derive(Debug, Clone)]
pub struct Choice {
    pub index: usize,
    pub text: String,
    /// `stop` (a stop string or end of text) or `length`.
    pub finish_reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub choices: Vec<Choice>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub steps: usize,
    pub forward_passes: usize,
}

/// What a request hears from the engine.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// A denoising step's changes to this request's rows (only with `stream_steps`).
    Step {
        step: usize,
        masked: usize,
        changes: Vec<CanvasChange>,
    },
    /// Newly final text of one choice (only from samplers that never revise).
    Text {
        index: usize,
        delta: String,
    },
    Done(Completion),
    Failed(ApiError),
}

/// A request ready to decode.
pub struct Job {
    pub(crate) prompt: Vec<u32>,
    pub(crate) sampler: String,
    pub(crate) settings: SamplerSettings,
    pub(crate) gen_length: usize,
    /// Requests with equal keys share a batch.
    pub(crate) batch_key: String,
    /// Sampling requests run alone (one random stream per batch).
    pub(crate) alone: bool,
    /// Decoded step by step, joining others between steps (LLaDA without a cache).
    pub(crate) steppable: bool,
    pub(crate) seed: u64,
    pub(crate) n: usize,
    pub(crate) stop: Vec<String>,
    pub(crate) stream_steps: bool,
    pub(crate) stream_text: bool,
    pub(crate) deadline: Instant,
    pub(crate) enqueued: Instant,
    pub(crate) events: mpsc::UnboundedSender<JobEvent>,
}

impl Job {
    pub(crate) fn abandoned(&self, now: Instant) -> bool {
        self.events.is_closed() || now > self.deadline
    }
}

/// Engine limits.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    pub max_batch: usize,
    pub queue: usize,
    pub timeout: Duration,
}

/// The HTTP side's handle on the engine.
pub struct Engine {
    pub info: Arc<ModelInfo>,
    pub metrics: Arc<Metrics>,
    queue: mpsc::Sender<Job>,
    options: EngineOptions,
}

impl Engine {
    /// Opens the model on a new engine thread (the weights never leave it) and starts decoding.
    pub fn start(
        model: PathBuf,
        device: burn::tensor::Device,
        options: EngineOptions,
        metrics: Arc<Metrics>,
    ) -> flowlm::Result<Self> {
        let (sender, receiver) = mpsc::channel(options.queue);
        let (opened, ready) = std::sync::mpsc::channel();
        let worker_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("flowlm-engine".into())
            .spawn(move || {
                // Decoding runs on a compute pool thread, so each operator's parallel parts
                // start from there (flowlm::cpu::on_compute_threads says why).
                flowlm::cpu::on_compute_threads(move || {
                    let model = match OpenedModel::open(&model, &device) {
                        Ok(model) => model,
                        Err(e) => {
                            let _ = opened.send(Err(e));
                            return;
                        }
                    };
                    let info = Arc::new(model_info(&model));
                    let _ = opened.send(Ok(info.clone()));
                    decode_forever(&*model.denoiser, &info, &worker_metrics, receiver, options);
                })
            })
            .map_err(|e| flowlm::FlowError::Unsupported(format!("starting the engine: {e}")))?;
        let info = ready.recv().map_err(|_| {
            flowlm::FlowError::Unsupported(
                "the engine thread stopped while opening the model".into(),
            )
        })??;
        Ok(Self {
            info,
            metrics,
            queue: sender,
            options,
        })
    }

    /// Validates `request` against the model and queues it; the receiver hears its events.
    pub fn submit(&self, request: &Request) -> Result<mpsc::UnboundedReceiver<JobEvent>, ApiError> {
        let (events, receiver) = mpsc::unbounded_channel();
        let job = self.prepare(request, events)?;
        self.queue.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "the queue is full ({} requests waiting); retry later",
                    self.options.queue
                ),
                param: None,
                kind: "rate_limit_exceeded",
            },
            mpsc::error::TrySendError::Closed(_) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the decoding engine has stopped; restart the server".into(),
                param: None,
                kind: "server_error",
            },
        })?;
        self.metrics.queued(1);
        Ok(receiver)
    }

    /// The request's tokens and sampler settings: the model's defaults, overridden by the
    /// request's fields, checked as `flowlm generate` checks its flags.
    fn prepare(
        &self,
        request: &Request,
        events: mpsc::UnboundedSender<JobEvent>,
    ) -> Result<Job, ApiError> {
        let info = &self.info;
        let prompt = encode_input(info, &request.input)?;
        let p = &request.params;
        let defaults = &info.metadata.sampler_defaults;
        let sampler = p
            .sampler
            .clone()
            .unwrap_or_else(|| defaults.sampler.clone());
        let gen_length = p.max_tokens.unwrap_or(defaults.gen_length);
        if prompt.len() + gen_length > info.context_length {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "the prompt ({} tokens) plus max_tokens {gen_length} exceeds the model's context of {} tokens",
                    prompt.len(),
                    info.context_length
                ),
            ));
        }
        let settings = sampler_settings(p, defaults, gen_length, info);
        if sampler == "llada" {
            // build_sampler cannot check the blocks: they depend on the answer's length.
            settings
                .llada()
                .plan(gen_length)
                .map_err(|e| invalid_setting(p, e))?;
        }
        build_sampler(
            &sampler,
            &settings,
            &info.metadata.corruption,
            &info.vocabulary,
        )
        .map_err(|e| invalid_setting(p, e))?;
        let alone = settings.temperature > 0.0
            || settings.remasking == flowlm::sampler::Remasking::Random
            || sampler != "llada" && sampler != "greedy";
        // LLaDA rows draw from their own streams, so sampling requests batch too.
        let steppable = sampler == "llada" && settings.cache == CacheMode::None;
        let now = Instant::now();
        Ok(Job {
            steppable,
            batch_key: format!("{sampler}/{gen_length}/{settings:?}"),
            prompt,
            sampler,
            settings,
            gen_length,
            alone,
            seed: request.seed,
            n: request.n,
            stop: request.stop.clone(),
            stream_steps: request.stream && request.stream_steps,
            stream_text: request.stream,
            deadline: now + self.options.timeout,
            enqueued: now,
            events,
        })
    }
}

fn model_info(model: &OpenedModel) -> ModelInfo {
    let id = model
        .directory
        .file_name()
        .map_or("flowlm".into(), |n| n.to_string_lossy().into_owned());
    ModelInfo {
        id,
        directory: model.directory.clone(),
        tokenizer: model.tokenizer.clone(),
        metadata: model.metadata.clone(),
        context_length: model.context_length,
        prompt_prefix: model.prompt_prefix.clone(),
        chat_template: ChatTemplate::load(&model.directory).ok(),
        vocabulary: Vocabulary::for_tokenizer(&model.tokenizer, model.denoiser.vocab_size()),
    }
}

/// A prompt's tokens; chat messages go through the model's chat template, or, for a model
/// without one, `role: content` lines and an `assistant:` cue.
fn encode_input(info: &ModelInfo, input: &Input) -> Result<Vec<u32>, ApiError> {
    let failed = |field: &str, e: flowlm::FlowError| ApiError::invalid(field, e.to_string());
    match input {
        Input::Prompt(text) => {
            let mut ids = info.prompt_prefix.clone();
            ids.extend(
                info.tokenizer
                    .encode(text)
                    .map_err(|e| failed("prompt", e))?,
            );
            Ok(ids)
        }
        Input::Chat(messages) => {
            let text = match &info.chat_template {
                Some(template) => template
                    .render(messages, true)
                    .map_err(|e| failed("messages", e))?,
                None => plain_chat(messages),
            };
            let mut ids = match &info.chat_template {
                // A template writes its own beginning token.
                Some(_) => Vec::new(),
                None => info.prompt_prefix.clone(),
            };
            ids.extend(
                info.tokenizer
                    .encode(&text)
                    .map_err(|e| failed("messages", e))?,
            );
            Ok(ids)
        }
    }
}

fn plain_chat(messages: &[Message]) -> String {
    let mut text: String = messages
        .iter()
        .map(|m| format!("{}: {}\n", m.role, m.content))
        .collect();
    text.push_str("assistant:");
    text
}

fn sampler_settings(
    p: &DecodeParams,
    defaults: &flowlm::model::saved::SamplerDefaults,
    gen_length: usize,
    info: &ModelInfo,
) -> SamplerSettings {
    SamplerSettings {
        steps: p.steps.unwrap_or(gen_length),
        // The model's block length when it divides the answer, else one block.
        block_length: p.block_length.unwrap_or(
            if gen_length.is_multiple_of(defaults.block_length.max(1)) {
                defaults.block_length
            } else {
                gen_length
            },
        ),
        temperature: p.temperature.unwrap_or(defaults.temperature),
        remasking: p.remasking.unwrap_or(defaults.remasking),
        top_p: p.top_p.unwrap_or(1.0),
        top_k: 0,
        parallel: p
            .threshold
            .map_or(flowlm::sampler::ParallelRule::Schedule, |tau| {
                flowlm::sampler::ParallelRule::Threshold(tau)
            }),
        cache: p.cache,
        // Answers end at end-of-text: LLaDA stops computing once a block is all EOS.
        end_tokens: vec![info.metadata.eos_token_id],
        ..SamplerSettings::default()
    }
}

/// Settings and sampler errors name a `flowlm generate` flag; the API names the field.
fn invalid_setting(p: &DecodeParams, error: flowlm::FlowError) -> ApiError {
    let message = error.to_string();
    let flag = match &error {
        flowlm::FlowError::InvalidArgument { argument, .. } => argument.as_str(),
        _ => "",
    };
    let field = match flag {
        "--gen-length" => "max_tokens",
        "--block-length" => "block_length",
        "--steps" => "steps",
        "--threshold/--factor" | "--threshold" => "threshold",
        "--temperature" => "temperature",
        "--top-p" => "top_p",
        "--cache" => "cache",
        "--remasking" => "remasking",
        _ if p.sampler.is_some() => "sampler",
        _ => "body",
    };
    ApiError::invalid(field, message)
}

/// The engine loop: decode batches until the HTTP side goes away.
fn decode_forever(
    denoiser: &dyn Denoiser,
    info: &ModelInfo,
    metrics: &Metrics,
    mut queue: mpsc::Receiver<Job>,
    options: EngineOptions,
) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        let first = match waiting.pop_front() {
            Some(job) => job,
            None => match queue.blocking_recv() {
                Some(job) => {
                    metrics.queued(-1);
                    job
                }
                None => return,
            },
        };
        while let Ok(job) = queue.try_recv() {
            metrics.queued(-1);
            waiting.push_back(job);
        }
        // A panic while decoding drops that round's requests (their clients get a 500) but
        // never the engine: the next requests are served.
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if first.steppable {
                crate::continuous::decode(
                    first,
                    denoiser,
                    info,
                    metrics,
                    &mut queue,
                    &mut waiting,
                    options.max_batch,
                );
            } else {
                let batch = take_batch(first, &mut waiting, options.max_batch);
                crate::batch::decode_batch(denoiser, info, metrics, batch);
            }
        }));
        if round.is_err() {
            eprintln!("flowlm serve: a decoding round panicked; its requests were answered 500");
        }
    }
}

/// `first` and the waiting requests that can share its batch (oldest first), up to
/// `max_batch` rows; the others keep their place.
fn take_batch(first: Job, waiting: &mut VecDeque<Job>, max_batch: usize) -> Vec<Job> {
    let mut rows = first.n;
    let mut batch = vec![first];
    if batch[0].alone {
        return batch;
    }
    let mut kept = VecDeque::with_capacity(waiting.len());
    while let Some(job) = waiting.pop_front() {
        if !job.alone && job.batch_key == batch[0].batch_key && rows + job.n <= max_batch {
            rows += job.n;
            batch.push(job);
        } else {
            kept.push_back(job);
        }
    }
    *waiting = kept;
    batch
}

pub(crate) fn fail(job: &Job, error: ApiError, metrics: &Metrics) {
    metrics.failed();
    let _ = job.events.send(JobEvent::Failed(error));
}

pub(crate) fn timeout_error() -> ApiError {
    ApiError {
        status: StatusCode::REQUEST_TIMEOUT,
        message: "the request passed its deadline (or its client went away) before it finished"
            .into(),
        param: None,
        kind: "timeout",
    }
}

pub(crate) fn internal_error(error: &flowlm::FlowError) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: error.to_string(),
        param: None,
        kind: "server_error",
    }
}

/// A row's answer: cut at the first end-of-text, then at the first stop string.
pub(crate) fn answer_text(
    info: &ModelInfo,
    tokens: &[u32],
    stops: &[String],
) -> (String, bool, usize) {
    let eos = info.metadata.eos_token_id;
    let end = tokens.iter().position(|&t| t == eos);
    let kept = &tokens[..end.unwrap_or(tokens.len())];
    let text = info.tokenizer.decode(kept).unwrap_or_default();
    let (text, stopped) = apply_stop(&text, stops);
    (text, stopped || end.is_some(), kept.len())
}

/// The text newly final in `response` (the prefix up to its first mask, cut at the end of text
/// and at stop strings) beyond what was `sent`; `sent` grows by it.
pub(crate) fn final_text_delta(
    info: &ModelInfo,
    response: &[u32],
    stops: &[String],
    sent: &mut String,
) -> Option<String> {
    let mask = info.metadata.mask_token_id;
    let written = response
        .iter()
        .position(|&t| t == mask)
        .unwrap_or(response.len());
    let (text, _, _) = answer_text(info, &response[..written], stops);
    // A partly written character (a byte-level token cut mid-sequence) waits.
    let text = text.trim_end_matches('\u{FFFD}');
    if text.len() > sent.len() && text.starts_with(sent.as_str()) {
        let delta = text[sent.len()..].to_string();
        sent.push_str(&delta);
        return Some(delta);
    }
    None
}

/// A request's part of a step: the changes to its rows and the masks they still hold.
/// `choice_of` gives a canvas row's choice index when the row is the request's.
pub(crate) fn step_update(
    event: &flowlm::sampler::StepEvent,
    canvas: &flowlm::canvas::Canvas,
    info: &ModelInfo,
    step: usize,
    choice_of: impl Fn(usize) -> Option<usize>,
) -> JobEvent {
    let changes = event
        .changes
        .iter()
        .filter_map(|c| choice_of(c.row).map(|index| canvas_change(c, index, info)))
        .collect();
    let masked = (0..canvas.batch())
        .filter(|&row| choice_of(row).is_some())
        .map(|row| canvas.masked_count(row))
        .sum();
    JobEvent::Step {
        step,
        masked,
        changes,
    }
}

/// One step change as the page draws it; `index` is the request's choice.
fn canvas_change(change: &flowlm::sampler::Change, index: usize, info: &ModelInfo) -> CanvasChange {
    CanvasChange {
        index,
        position: change.position,
        token: change.token,
        text: info.tokenizer.token_text(change.token),
        confidence: change.confidence,
        kind: match change.kind {
            ChangeKind::Filled => "filled",
            ChangeKind::Revised => "revised",
            ChangeKind::Remasked => "remasked",
        },
    }
}

/// A request's completion from its choices' answers, (choice index, answer tokens) each.
pub(crate) fn completion(
    info: &ModelInfo,
    job: &Job,
    answers: &[(usize, &[u32])],
    steps: usize,
    forward_passes: usize,
) -> Completion {
    let mut choices = Vec::new();
    let mut completion_tokens = 0;
    for &(index, tokens) in answers {
        let (text, stopped, kept) = answer_text(info, tokens, &job.stop);
        completion_tokens += kept;
        choices.push(Choice {
            index,
            text,
            finish_reason: if stopped { "stop" } else { "length" },
        });
    }
    choices.sort_by_key(|c| c.index);
    Completion {
        choices,
        prompt_tokens: job.prompt.len(),
        completion_tokens,
        steps,
        forward_passes,
    }
}
