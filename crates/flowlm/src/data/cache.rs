//! On-disk token cache: a corpus is tokenized once per (files, tokenizer); later runs read the
//! ids back. The key covers each file's path, size and modification time and the tokenizer file.

use super::documents::{data_files_excluding, load_documents_excluding};
use crate::error::{FlowError, Result};
use crate::tokenizer::Tokenizer;
use crate::tokenizer::chat::ChatTemplate;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

/// A tokenized document: prompt ids (empty for plain text) and response/text ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedDocument {
    pub prompt: Vec<u32>,
    pub body: Vec<u32>,
}

/// `$FLOWLM_CACHE_DIR`, else `$HOME/.cache/flowlm`, else `.flowlm-cache`.
pub fn cache_directory() -> PathBuf {
    if let Ok(dir) = std::env::var("FLOWLM_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var("HOME") {
        Ok(home) => Path::new(&home).join(".cache").join("flowlm"),
        Err(_) => PathBuf::from(".flowlm-cache"),
    }
}

fn cache_key(
    path: &Path,
    exclude: &[String],
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> Result<u64> {
    let mut hasher = DefaultHasher::new();
    template.map(ChatTemplate::source).hash(&mut hasher);
    for file in data_files_excluding(path, exclude)? {
        let meta = std::fs::metadata(&file).map_err(|e| FlowError::io(&file, e))?;
        file.hash(&mut hasher);
        meta.len().hash(&mut hasher);
        meta.modified().ok().hash(&mut hasher);
    }
    // The serialized tokenizer identifies it exactly.
    let json = match tokenizer {
        Tokenizer::Hf(t) => t.to_json()?,
        Tokenizer::Simple(t) => t.to_json()?,
    };
    json.hash(&mut hasher);
    Ok(hasher.finish())
}

/// Tokenizes every document under `path` (chat rows rendered by `template` when given, see
/// [`Document::prompt_and_body`]), reading from / writing to the token cache in `cache`
/// (usually [`cache_directory`]; `None`: no cache). Returns the documents and whether the
/// cache was used.
pub fn tokenize_cached(
    path: &Path,
    exclude: &[String],
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    cache: Option<&Path>,
) -> Result<(Vec<TokenizedDocument>, bool)> {
    let key = cache_key(path, exclude, tokenizer, template)?;
    let file = cache.map(|dir| dir.join(format!("tokens-{key:016x}.bin")));
    if let Some(file) = &file
        && let Some(documents) = read_cache(file, tokenizer.vocab_size())
    {
        return Ok((documents, true));
    }
    let mut tokenized = Vec::new();
    for document in load_documents_excluding(path, exclude)? {
        let (prompt, body) = document.prompt_and_body(template)?;
        tokenized.push(TokenizedDocument {
            prompt: tokenizer.encode(&prompt)?,
            body: tokenizer.encode(&body)?,
        });
    }
    if let (Some(dir), Some(file)) = (cache, &file)
        && std::fs::create_dir_all(dir).is_ok()
    {
        // A failed cache write only costs the next run a re-tokenization.
        let _ = crate::io::write_atomic(file, &encode_cache(&tokenized));
    }
    Ok((tokenized, false))
}

fn push_ids(out: &mut Vec<u8>, ids: &[u32]) {
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
}

/// The cache file's first bytes (the format's version).
const MAGIC: &[u8] = b"FLTK2";

/// FNV-1a over the payload: a damaged cache whose structure still parses is caught by it.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// MAGIC, the document count, each document's prompt and body ids, then the checksum of
/// everything before it.
fn encode_cache(documents: &[TokenizedDocument]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(documents.len() as u64).to_le_bytes());
    for d in documents {
        push_ids(&mut out, &d.prompt);
        push_ids(&mut out, &d.body);
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// The cached documents, or None when the file is missing, of another version, fails its
/// checksum, is truncated or longer than its count says, or holds an id outside the vocabulary:
/// a damaged cache is re-tokenized, never trusted.
fn read_cache(file: &Path, vocab_size: usize) -> Option<Vec<TokenizedDocument>> {
    let bytes = std::fs::read(file).ok()?;
    let (payload, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if checksum(payload).to_le_bytes() != sum {
        return None;
    }
    let mut cursor = payload.strip_prefix(MAGIC)?;
    let take_u64 = |c: &mut &[u8]| -> Option<u64> {
        let (head, tail) = c.split_at_checked(8)?;
        *c = tail;
        Some(u64::from_le_bytes(head.try_into().ok()?))
    };
    let count = take_u64(&mut cursor)?;
    let mut documents = Vec::new();
    for _ in 0..count {
        let mut parts = [Vec::new(), Vec::new()];
        for part in &mut parts {
            let n = usize::try_from(take_u64(&mut cursor)?).ok()?;
            let (head, tail) = cursor.split_at_checked(n.checked_mul(4)?)?;
            cursor = tail;
            *part = head
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
        }
        if parts.iter().flatten().any(|&id| id as usize >= vocab_size) {
            return None;
        }
        let [prompt, body] = parts;
        documents.push(TokenizedDocument { prompt, body });
    }
    cursor.is_empty().then_some(documents)
}
