//! The HTTP endpoints: OpenAI's completions, chat completions and models, health, Prometheus
//! metrics, and the page that draws the denoising.

use crate::api::{ApiError, parse_request};
use crate::engine::{Completion, Engine, JobEvent};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// The largest request body taken (a prompt of about a million characters).
const MAX_BODY_BYTES: usize = 1 << 20;

const PAGE: &str = include_str!("page.html");

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(engine)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn health(State(engine): State<Arc<Engine>>) -> Json<Value> {
    Json(
        json!({"status": "ok", "model": engine.info.id, "queue_length": engine.metrics.queue_length()}),
    )
}

async fn metrics(State(engine): State<Arc<Engine>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        engine.metrics.render(),
    )
        .into_response()
}

async fn models(State(engine): State<Arc<Engine>>) -> Json<Value> {
    let info = &engine.info;
    Json(json!({"object": "list", "data": [{
        "id": info.id,
        "object": "model",
        "created": 0,
        "owned_by": "flowlm",
        "context_length": info.context_length,
        "default_sampler": info.metadata.sampler_defaults.sampler,
    }]}))
}

async fn completions(State(engine): State<Arc<Engine>>, body: Bytes) -> Response {
    generate(engine, body, false).await
}

async fn chat_completions(State(engine): State<Arc<Engine>>, body: Bytes) -> Response {
    generate(engine, body, true).await
}

fn error_response(engine: &Engine, endpoint: &str, error: ApiError) -> Response {
    engine.metrics.responded(endpoint, error.status.as_u16());
    (error.status, Json(error.body())).into_response()
}

async fn generate(engine: Arc<Engine>, body: Bytes, chat: bool) -> Response {
    let endpoint = if chat {
        "/v1/chat/completions"
    } else {
        "/v1/completions"
    };
    let request = match parse_request(&body, chat) {
        Ok(request) => request,
        Err(e) => return error_response(&engine, endpoint, e),
    };
    let mut events = match engine.submit(&request) {
        Ok(events) => events,
        Err(e) => return error_response(&engine, endpoint, e),
    };
    let shape = Shape::new(chat, &engine.info.id);
    if request.stream {
        engine.metrics.responded(endpoint, 200);
        return stream(shape, events);
    }
    // Dropping `events` (the client went away and this future with it) cancels the work.
    while let Some(event) = events.recv().await {
        match event {
            JobEvent::Done(completion) => {
                engine.metrics.responded(endpoint, 200);
                return Json(shape.body(&completion)).into_response();
            }
            JobEvent::Failed(error) => return error_response(&engine, endpoint, error),
            JobEvent::Step { .. } | JobEvent::Text { .. } => {}
        }
    }
    let stopped = ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: "the engine dropped this request (see the server's log)".into(),
        param: None,
        kind: "server_error",
    };
    error_response(&engine, endpoint, stopped)
}

/// The OpenAI response shapes of one request (completion or chat).
#[derive(Clone)]
struct Shape {
    chat: bool,
    id: String,
    created: u64,
    model: String,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Shape {
    fn new(chat: bool, model: &str) -> Self {
        let number = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Self {
            chat,
            id: format!("{}-{number}", if chat { "chatcmpl" } else { "cmpl" }),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_string(),
        }
    }

    fn body(&self, completion: &Completion) -> Value {
        let choices: Vec<Value> = completion
            .choices
            .iter()
            .map(|c| {
                if self.chat {
                    json!({"index": c.index, "message": {"role": "assistant", "content": c.text},
                           "logprobs": null, "finish_reason": c.finish_reason})
                } else {
                    json!({"index": c.index, "text": c.text, "logprobs": null,
                           "finish_reason": c.finish_reason})
                }
            })
            .collect();
        json!({
            "id": self.id,
            "object": if self.chat { "chat.completion" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            },
            "flowlm": {"steps": completion.steps, "forward_passes": completion.forward_passes},
        })
    }

    /// One streamed chunk: `delta` text of choice `index`, or its end with `finish_reason`.
    fn chunk(&self, index: usize, delta: &str, first: bool, finish_reason: Option<&str>) -> Event {
        let choice = if self.chat {
            let delta = if first {
                json!({"role": "assistant", "content": delta})
            } else {
                json!({"content": delta})
            };
            json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason})
        } else {
            json!({"index": index, "text": delta, "logprobs": null, "finish_reason": finish_reason})
        };
        let object = if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        Event::default().data(
            json!({"id": self.id, "object": object, "created": self.created, "model": self.model,
                   "choices": [choice]})
            .to_string(),
        )
    }
}

/// Server-sent events: text chunks as text becomes final, `flowlm.step` events (named, so
/// OpenAI clients skip them) with every step's changes when asked, then `data: [DONE]`.
fn stream(shape: Shape, mut events: mpsc::UnboundedReceiver<JobEvent>) -> Response {
    let (sender, receiver) = mpsc::unbounded_channel::<Result<Event, Infallible>>();
    tokio::spawn(async move {
        // Text sent so far per choice.
        let mut sent: HashMap<usize, String> = HashMap::new();
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                // The client went away: dropping `events` cancels the work.
                () = sender.closed() => return,
            };
            let Some(event) = event else { return };
            let mut out = Vec::new();
            let finished = matches!(event, JobEvent::Done(_) | JobEvent::Failed(_));
            match event {
                JobEvent::Step {
                    step,
                    masked,
                    changes,
                } => out.push(
                    Event::default().event("flowlm.step").data(
                        json!({"object": "flowlm.step", "step": step, "masked": masked,
                               "changes": changes})
                        .to_string(),
                    ),
                ),
                JobEvent::Text { index, delta } => {
                    let first = !sent.contains_key(&index);
                    sent.entry(index).or_default().push_str(&delta);
                    out.push(shape.chunk(index, &delta, first, None));
                }
                JobEvent::Done(completion) => {
                    for choice in &completion.choices {
                        let already = sent.get(&choice.index).map_or("", String::as_str);
                        let rest = choice.text.strip_prefix(already).unwrap_or(&choice.text);
                        let first = !sent.contains_key(&choice.index);
                        if !rest.is_empty() || first {
                            out.push(shape.chunk(choice.index, rest, first, None));
                        }
                        out.push(shape.chunk(choice.index, "", false, Some(choice.finish_reason)));
                    }
                }
                JobEvent::Failed(error) => {
                    out.push(Event::default().data(error.body().to_string()))
                }
            }
            if finished {
                out.push(Event::default().data("[DONE]"));
            }
            for event in out {
                if sender.send(Ok(event)).is_err() {
                    return;
                }
            }
            if finished {
                return;
            }
        }
    });
    Sse::new(UnboundedReceiverStream::new(receiver))
        .keep_alive(KeepAlive::default())
        .into_response()
}
