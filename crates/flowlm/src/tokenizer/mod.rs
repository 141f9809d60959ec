//! Text <-> token ids. One `Tokenizer` type over two kinds: any Hugging Face `tokenizer.json`
//! (BPE, WordPiece, byte-level; GPT-2 built from its vocab + merges; BPE trained here) and the
//! simple char/word vocabularies of seed 002. Every tokenizer knows its special ids; a mask token
//! is added when the vocabulary has none.

pub mod chat;
mod hf;
mod simple;

pub use hf::{gpt2_from_files, train_byte_level_bpe};
pub use simple::{SimpleTokenizer, SimpleUnit};

use crate::error::{FlowError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The special token ids a diffusion model needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub mask: u32,
    pub pad: u32,
    /// End of text; also the document separator when packing.
    pub eos: u32,
    pub bos: Option<u32>,
    pub unk: Option<u32>,
}

/// A tokenizer of either kind.
#[derive(Clone)]
pub enum Tokenizer {
    Hf(Box<hf::HfTokenizer>),
    Simple(SimpleTokenizer),
}

impl Tokenizer {
    /// Loads `tokenizer.json`: a FlowLM simple vocabulary or any Hugging Face tokenizer file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| FlowError::io(path, e))?;
        if SimpleTokenizer::is_simple_json(&text) {
            return Ok(Tokenizer::Simple(SimpleTokenizer::from_json(&text, path)?));
        }
        Ok(Tokenizer::Hf(Box::new(hf::HfTokenizer::from_json(
            &text, path,
        )?)))
    }

    /// Loads `DIR/tokenizer.json`, or builds GPT-2 from `DIR/encoder.json` + `DIR/vocab.bpe`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_file(&json);
        }
        let (vocab, merges) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
        if vocab.exists() && merges.exists() {
            return gpt2_from_files(&vocab, &merges);
        }
        Err(FlowError::Tokenizer(format!(
            "{} holds neither tokenizer.json nor encoder.json + vocab.bpe",
            dir.display()
        )))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = match self {
            Tokenizer::Hf(t) => t.to_json()?,
            Tokenizer::Simple(t) => t.to_json()?,
        };
        crate::io::write_atomic(path, text.as_bytes())
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Hf(t) => t.encode(text),
            Tokenizer::Simple(t) => Ok(t.encode(text)),
        }
    }

    /// Decodes ids, keeping special tokens out of the text.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Hf(t) => t.decode(ids),
            Tokenizer::Simple(t) => Ok(t.decode(ids)),
        }
    }

    /// The text of one token, with a visible form for special tokens (used by live views).
    pub fn token_text(&self, id: u32) -> String {
        match self {
            Tokenizer::Hf(t) => t.token_text(id),
            Tokenizer::Simple(t) => t.token_text(id),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Hf(t) => t.vocab_size(),
            Tokenizer::Simple(t) => t.vocab_size(),
        }
    }

    pub fn special(&self) -> SpecialTokens {
        match self {
            Tokenizer::Hf(t) => t.special,
            Tokenizer::Simple(t) => t.special(),
        }
    }

    /// Ids that must never be produced by random substitution or counted as text.
    pub fn special_ids(&self) -> Vec<u32> {
        match self {
            Tokenizer::Hf(t) => t.special_ids(),
            Tokenizer::Simple(t) => t.special_ids(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Tokenizer::Hf(_) => "huggingface",
            Tokenizer::Simple(t) => match t.unit() {
                SimpleUnit::Char => "simple-char",
                SimpleUnit::Word => "simple-word",
            },
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({}, vocab {})", self.kind(), self.vocab_size())
    }
}
