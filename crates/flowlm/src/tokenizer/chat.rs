//! Chat templates as checkpoints ship them: the Jinja `chat_template` of
//! `tokenizer_config.json`, rendered with `minijinja` the way transformers'
//! `apply_chat_template` does (messages, `add_generation_prompt`, the special-token strings,
//! `raise_exception`; Python string methods through minijinja-contrib's pycompat).

use crate::error::{FlowError, Result};
use serde::Serialize;
use std::path::Path;

pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A model's chat template and the special-token strings it may refer to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
    path: std::path::PathBuf,
}

/// A special token in `tokenizer_config.json`: a string, or an object with `content`.
fn token_text(value: Option<&serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Object(map)) => map
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// The template of the model in `dir`; an error when it has none.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(TOKENIZER_CONFIG_FILE);
        if !path.is_file() {
            return Err(FlowError::argument(
                "--chat",
                format!(
                    "{} has no {TOKENIZER_CONFIG_FILE}, so no chat template; use --prompt",
                    dir.display()
                ),
            ));
        }
        Self::find(dir)?.ok_or_else(|| {
            FlowError::argument(
                "--chat",
                format!("{} has no chat_template; use --prompt", path.display()),
            )
        })
    }

    /// The template of the model in `dir`, `None` when it ships none; an error when its
    /// `tokenizer_config.json` cannot be read.
    pub fn find(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(TOKENIZER_CONFIG_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let config: serde_json::Value = crate::io::read_json(&path)?;
        // A template is a string, or a list of named templates of which "default" is used.
        let source = match config.get("chat_template") {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(serde_json::Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template").and_then(|s| s.as_str()))
                .map(str::to_string),
            _ => None,
        };
        Ok(source.map(|source| Self {
            source,
            bos_token: token_text(config.get("bos_token")),
            eos_token: token_text(config.get("eos_token")),
            path,
        }))
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text of `messages`, ending with the assistant's turn opened when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let failed = |e: minijinja::Error| FlowError::Parse {
            path: self.path.clone(),
            message: format!("chat_template: {e}"),
        };
        let mut environment = minijinja::Environment::new();
        // transformers renders with trim_blocks and lstrip_blocks; whitespace must match.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(failed)?;
        environment.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut environment);
        environment
            .set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        environment.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        environment
            .add_template("chat", &self.source)
            .map_err(failed)?;
        environment
            .get_template("chat")
            .map_err(failed)?
            .render(minijinja::context! {
                messages => minijinja::value::Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(failed)
    }
}
