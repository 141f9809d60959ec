//! File helpers: atomic writes (temporary name, then rename) so a crash never leaves half a file.

use crate::error::{FlowError, Result};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same directory, then renames it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = temporary_sibling(path);
    std::fs::write(&temporary, bytes).map_err(|e| FlowError::io(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| FlowError::io(path, e))
}

/// `DIR/.NAME.tmp` beside `path`.
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    path.with_file_name(format!(".{name}.tmp"))
}

pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| FlowError::io(path, e))
}

/// Parses a JSON file, naming the file in the error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| FlowError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| FlowError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}
