//! The library's error type: every variant names what was wrong and, where it can, what fixes it.

use std::path::PathBuf;

/// Errors returned by the FlowLM library.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} line {line}: {message}")]
    Jsonl {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid configuration `{field}`: {message}")]
    Config { field: String, message: String },
    #[error("invalid argument `{argument}`: {message}")]
    InvalidArgument { argument: String, message: String },
    #[error("model directory {path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Unsupported(String),
}

impl FlowError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FlowError::Io {
            path: path.into(),
            error: source,
        }
    }

    pub fn argument(argument: impl Into<String>, message: impl Into<String>) -> Self {
        FlowError::InvalidArgument {
            argument: argument.into(),
            message: message.into(),
        }
    }

    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        FlowError::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = FlowError> = std::result::Result<T, E>;
