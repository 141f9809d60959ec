//! Reading documents: `.txt`/`.md` files, folders of them, and JSONL with `{"text"}`,
//! `{"prompt","response"}` or `{"messages":[{"role","content"}]}` rows.

use crate::error::{FlowError, Result};
use crate::tokenizer::chat::{ChatTemplate, Message};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Document {
    Text(String),
    /// The prompt is conditioning only: never corrupted, never scored.
    PromptResponse {
        prompt: String,
        response: String,
    },
    /// A conversation ending with the assistant turn that is the response (see
    /// [`Document::prompt_and_body`]).
    Chat(Vec<Message>),
}

impl Document {
    /// The document as (prompt, body) text; the prompt is empty for plain text. A chat's
    /// prompt is every turn before the last (assistant) one and its body that turn: rendered by
    /// `template` when the model has one (the prompt with the assistant turn opened, the body
    /// the rest of the whole conversation's rendering, so the model learns the template's
    /// end-of-turn tokens too), else as `role: content` lines.
    pub fn prompt_and_body(&self, template: Option<&ChatTemplate>) -> Result<(String, String)> {
        Ok(match self {
            Document::Text(text) => (String::new(), text.clone()),
            Document::PromptResponse { prompt, response } => (prompt.clone(), response.clone()),
            Document::Chat(messages) => {
                let (turns, answer) = messages.split_at(messages.len().saturating_sub(1));
                let content = answer
                    .first()
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                match template {
                    Some(template) => {
                        let prompt = template.render(turns, true)?;
                        let whole = template.render(messages, false)?;
                        match whole.strip_prefix(&prompt) {
                            Some(rest) => (prompt, rest.to_string()),
                            None => (prompt, content),
                        }
                    }
                    None => {
                        let prompt = turns
                            .iter()
                            .map(|m| format!("{}: {}\n", m.role, m.content))
                            .chain(std::iter::once("assistant: ".to_string()))
                            .collect();
                        (prompt, content)
                    }
                }
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Row {
    Text { text: String },
    PromptResponse { prompt: String, response: String },
    Chat { messages: Vec<Message> },
}

/// The files a path stands for, in a stable order: the file itself, or every `.txt`, `.md` and
/// `.jsonl` file below a folder.
pub fn data_files(path: &Path) -> Result<Vec<PathBuf>> {
    data_files_excluding(path, &[])
}

/// [`data_files`] without the files whose names are in `exclude` (a held-out play, say).
pub fn data_files_excluding(path: &Path, exclude: &[String]) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        let message = if path.exists() {
            "is not a regular file or folder (a FIFO, socket or device); give a text file, a .jsonl file or a folder of them"
        } else {
            "no such file or folder (give a text file, a .jsonl file or a folder of them)"
        };
        return Err(FlowError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        ));
    }
    let wanted = |p: &Path| {
        matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("txt" | "md" | "jsonl")
        ) && !p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| exclude.iter().any(|e| e == n))
    };
    let mut files = Vec::new();
    // Folders by their real path: a symlink loop is walked once, and a file reached through
    // two links is read once (otherwise validation rows would repeat training rows).
    let mut seen_folders = std::collections::HashSet::new();
    let mut seen_files = std::collections::HashSet::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let real = dir.canonicalize().map_err(|e| FlowError::io(&dir, e))?;
        if !seen_folders.insert(real) {
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| FlowError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FlowError::io(&dir, e))?;
            let p = entry.path();
            if p.is_dir() {
                pending.push(p);
            } else if wanted(&p) {
                // A FIFO or device named like data would block or never end: refuse it.
                if !p.is_file() {
                    return Err(FlowError::io(
                        &p,
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "is not a regular file (a FIFO, socket, device or broken link); remove it from the data folder",
                        ),
                    ));
                }
                let real = p.canonicalize().map_err(|e| FlowError::io(&p, e))?;
                if seen_files.insert(real) {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(FlowError::Parse {
            path: path.to_path_buf(),
            message: "the folder holds no .txt, .md or .jsonl files".into(),
        });
    }
    Ok(files)
}

/// Reads every document under `path`.
pub fn load_documents(path: &Path) -> Result<Vec<Document>> {
    load_documents_excluding(path, &[])
}

/// [`load_documents`] without the files named in `exclude`.
pub fn load_documents_excluding(path: &Path, exclude: &[String]) -> Result<Vec<Document>> {
    let mut documents = Vec::new();
    for file in data_files_excluding(path, exclude)? {
        let text = crate::io::read_to_string(&file)?;
        // Editors on some systems start UTF-8 files with a byte-order mark; it is not text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_string();
        if file.extension().and_then(|e| e.to_str()) == Some("jsonl") {
            documents.extend(parse_jsonl(&text, &file)?);
        } else {
            documents.push(Document::Text(text));
        }
    }
    Ok(documents)
}

pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Document>> {
    let mut documents = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let error = |message: String| FlowError::Jsonl {
            path: path.to_path_buf(),
            line: index + 1,
            message,
        };
        let row: Row = serde_json::from_str(line).map_err(|e| {
            error(format!("{e}; each line must be {{\"text\"}}, {{\"prompt\",\"response\"}} or {{\"messages\":[{{\"role\",\"content\"}}]}}"))
        })?;
        documents.push(match row {
            Row::Text { text } => Document::Text(text),
            Row::PromptResponse { prompt, response } => {
                Document::PromptResponse { prompt, response }
            }
            Row::Chat { messages } => chat_document(messages).map_err(error)?,
        });
    }
    Ok(documents)
}

/// A chat row up to its last assistant turn (the response); later turns have no answer.
fn chat_document(mut messages: Vec<Message>) -> std::result::Result<Document, String> {
    let last = messages
        .iter()
        .rposition(|m| m.role == "assistant")
        .ok_or("a chat row needs at least one message with role \"assistant\"")?;
    messages.truncate(last + 1);
    Ok(Document::Chat(messages))
}
