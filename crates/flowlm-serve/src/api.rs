//! The OpenAI-compatible request bodies, read field by field so that an invalid value gets a
//! 400 naming the field, and unknown fields are ignored as OpenAI clients expect.
//!
//! OpenAI fields: `prompt` (completions) or `messages` (chat), `max_tokens` (the generation
//! length), `temperature`, `top_p`, `seed`, `stop`, `n`, `stream`. Diffusion extensions:
//! `sampler`, `steps`, `block_length`, `remasking` (`low-confidence` | `random`), `cache`
//! (`none` | `prefix` | `dual`), `threshold`, and `stream_steps` (stream every denoising step's
//! changes, for clients that draw the canvas).

use axum::http::StatusCode;
use flowlm::model::CacheMode;
use flowlm::sampler::{Remasking, is_sampler, sampler_names};
use flowlm::tokenizer::chat::Message;
use serde_json::{Map, Value, json};

/// An error as OpenAI's API writes it: status, message, the offending field.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub kind: &'static str,
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.to_string()),
            kind: "invalid_request_error",
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": Value::Null,
        }})
    }
}

/// What a client asked to be written after.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Prompt(String),
    Chat(Vec<Message>),
}

/// The decoding settings of a request; requests with equal settings can share a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeParams {
    pub sampler: Option<String>,
    pub max_tokens: Option<usize>,
    pub steps: Option<usize>,
    pub block_length: Option<usize>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub remasking: Option<Remasking>,
    pub cache: CacheMode,
    pub threshold: Option<f64>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub input: Input,
    pub params: DecodeParams,
    pub seed: u64,
    pub stop: Vec<String>,
    pub n: usize,
    pub stream: bool,
    pub stream_steps: bool,
}

/// The most tokens one request may ask for (the model's context bounds it further).
pub const MAX_TOKENS: usize = 65_536;
/// The most choices one request may ask for.
pub const MAX_CHOICES: usize = 16;
/// The most stop strings (OpenAI allows 4).
pub const MAX_STOPS: usize = 4;

/// Reads a completions (`chat` false) or chat completions body.
pub fn parse_request(body: &[u8], chat: bool) -> Result<Request, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid("body", "the body must be a JSON object"));
    };
    let fields = Fields(&fields);
    let input = if chat {
        Input::Chat(fields.messages()?)
    } else {
        Input::Prompt(fields.prompt()?)
    };
    let sampler = fields.string("sampler")?;
    if let Some(name) = &sampler
        && !is_sampler(name)
    {
        return Err(ApiError::invalid(
            "sampler",
            format!(
                "`{name}` is not a sampler; choose one of {}",
                sampler_names()
            ),
        ));
    }
    let remasking = match fields.string("remasking")?.as_deref() {
        None => None,
        Some("low-confidence" | "low_confidence") => Some(Remasking::LowConfidence),
        Some("random") => Some(Remasking::Random),
        Some(other) => {
            return Err(ApiError::invalid(
                "remasking",
                format!("`{other}`: choose low-confidence or random"),
            ));
        }
    };
    let cache = match fields.string("cache")? {
        None => CacheMode::None,
        Some(name) => CacheMode::parse(&name).ok_or_else(|| {
            ApiError::invalid(
                "cache",
                format!("`{name}`: choose one of {}", CacheMode::NAMES.join(", ")),
            )
        })?,
    };
    let params = DecodeParams {
        sampler,
        max_tokens: fields.count("max_tokens", 1, MAX_TOKENS)?,
        steps: fields.count("steps", 1, flowlm::limits::MAX_STEPS)?,
        block_length: fields.count("block_length", 1, MAX_TOKENS)?,
        // OpenAI allows temperatures up to 2; a diffusion sampler takes any finite one.
        temperature: fields.number("temperature", 0.0, 100.0)?,
        top_p: fields.number("top_p", 0.0, 1.0)?,
        remasking,
        cache,
        threshold: fields.number("threshold", 0.0, 1.0)?,
    };
    Ok(Request {
        input,
        params,
        seed: fields.seed()?,
        stop: fields.stop()?,
        n: fields.count("n", 1, MAX_CHOICES)?.unwrap_or(1),
        stream: fields.flag("stream")?,
        stream_steps: fields.flag("stream_steps")?,
    })
}

/// A body's fields with typed getters; `null` reads as absent, as OpenAI treats it.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(
                name,
                format!("`{name}` must be a string"),
            )),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ApiError::invalid(
                name,
                format!("`{name}` must be true or false"),
            )),
        }
    }

    /// A whole number in `min..=max`.
    fn count(&self, name: &str, min: usize, max: usize) -> Result<Option<usize>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let out_of_range = || {
            ApiError::invalid(
                name,
                format!("`{name}` must be a whole number from {min} to {max}, got {value}"),
            )
        };
        let number = value.as_u64().ok_or_else(out_of_range)?;
        let number = usize::try_from(number).map_err(|_| out_of_range())?;
        if number < min || number > max {
            return Err(out_of_range());
        }
        Ok(Some(number))
    }

    /// A finite number in `min..=max`.
    fn number(&self, name: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        match value.as_f64() {
            Some(x) if x.is_finite() && (min..=max).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                name,
                format!("`{name}` must be a number from {min} to {max}, got {value}"),
            )),
        }
    }

    fn seed(&self) -> Result<u64, ApiError> {
        match self.get("seed") {
            None => Ok(0),
            Some(value) => value.as_u64().ok_or_else(|| {
                ApiError::invalid(
                    "seed",
                    format!("`seed` must be a non-negative integer, got {value}"),
                )
            }),
        }
    }

    /// `prompt`: a string, or a list holding one string (OpenAI also takes batches of prompts;
    /// ask with `n` or several requests instead).
    fn prompt(&self) -> Result<String, ApiError> {
        match self.get("prompt") {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
                Ok(items[0].as_str().unwrap_or_default().to_string())
            }
            Some(_) => Err(ApiError::invalid(
                "prompt",
                "`prompt` must be a string (or a list of one string)",
            )),
        }
    }

    fn messages(&self) -> Result<Vec<Message>, ApiError> {
        let Some(Value::Array(items)) = self.get("messages") else {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must be a non-empty list of {role, content}",
            ));
        };
        if items.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty",
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);
                match (text("role"), text("content")) {
                    (Some(role), Some(content)) => Ok(Message { role, content }),
                    _ => Err(ApiError::invalid(
                        &format!("messages[{i}]"),
                        "each message needs a string `role` and a string `content`",
                    )),
                }
            })
            .collect()
    }

    fn stop(&self) -> Result<Vec<String>, ApiError> {
        let stops = match self.get("stop") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    ApiError::invalid("stop", "`stop` must be a string or a list of strings")
                })?,
            Some(_) => {
                return Err(ApiError::invalid(
                    "stop",
                    "`stop` must be a string or a list of strings",
                ));
            }
        };
        if stops.len() > MAX_STOPS || stops.iter().any(String::is_empty) {
            return Err(ApiError::invalid(
                "stop",
                format!("at most {MAX_STOPS} non-empty stop strings"),
            ));
        }
        Ok(stops)
    }
}

/// `text` cut at the first stop string; whether one was found.
pub fn apply_stop(text: &str, stops: &[String]) -> (String, bool) {
    let first = stops.iter().filter_map(|s| text.find(s.as_str())).min();
    match first {
        Some(at) => (text[..at].to_string(), true),
        None => (text.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str, chat: bool) -> ApiError {
        parse_request(body.as_bytes(), chat).unwrap_err()
    }

    #[test]
    fn fields_map_onto_the_request_and_unknown_ones_are_ignored() {
        let request = parse_request(
            br#"{"prompt": "ROMEO:", "max_tokens": 32, "temperature": 0, "seed": 3,
                 "stop": ["\n"], "n": 2, "stream": true, "sampler": "llada", "steps": 16,
                 "block_length": 16, "cache": "dual", "threshold": 0.9, "user": "x",
                 "logprobs": null, "stream_steps": true}"#,
            false,
        )
        .unwrap();
        assert_eq!(request.input, Input::Prompt("ROMEO:".into()));
        assert_eq!(request.params.max_tokens, Some(32));
        assert_eq!(request.params.cache, CacheMode::Dual);
        assert_eq!(request.params.threshold, Some(0.9));
        assert_eq!((request.seed, request.n), (3, 2));
        assert_eq!(request.stop, vec!["\n".to_string()]);
        assert!(request.stream && request.stream_steps);
    }

    #[test]
    fn invalid_values_name_their_field() {
        for (body, field) in [
            (r#"{"max_tokens": "many"}"#, "max_tokens"),
            (r#"{"max_tokens": 18446744073709551615}"#, "max_tokens"),
            (r#"{"max_tokens": 0}"#, "max_tokens"),
            (r#"{"temperature": -1}"#, "temperature"),
            (r#"{"top_p": 2}"#, "top_p"),
            (r#"{"n": 100}"#, "n"),
            (r#"{"seed": -4}"#, "seed"),
            (r#"{"stop": [1]}"#, "stop"),
            (r#"{"sampler": "beam"}"#, "sampler"),
            (r#"{"cache": "triple"}"#, "cache"),
            (r#"{"stream": "yes"}"#, "stream"),
            (r#"{"prompt": 5}"#, "prompt"),
            (r#"[1, 2]"#, "body"),
            (r#"{"prompt": "#, "body"),
        ] {
            let e = error(body, false);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param.as_deref(), Some(field), "{body}: {}", e.message);
        }
        assert_eq!(
            error(r#"{"messages": []}"#, true).param.as_deref(),
            Some("messages")
        );
        assert_eq!(
            error(r#"{"messages": [{"role": "user"}]}"#, true)
                .param
                .as_deref(),
            Some("messages[0]")
        );
    }

    #[test]
    fn stop_strings_cut_at_the_first_match() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(
            apply_stop("a b\n\nc END", &stops),
            ("a b".to_string(), true)
        );
        assert_eq!(apply_stop("abc", &stops), ("abc".to_string(), false));
    }
}
