//! Seed 002's `SimpleTokenizer`: a vocabulary of characters or words built from a corpus, with
//! `<pad>`, `<unk>`, `<start>`, `<end>` and a `<mask>` for masked diffusion.

use super::SpecialTokens;
use crate::error::{FlowError, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const PAD: &str = "<pad>";
pub const UNK: &str = "<unk>";
pub const START: &str = "<start>";
pub const END: &str = "<end>";
pub const MASK: &str = "<mask>";
const SPECIALS: [&str; 5] = [PAD, UNK, START, END, MASK];
/// Marks a saved file as ours rather than a Hugging Face tokenizer.
const FORMAT_TAG: &str = "flowlm-simple-tokenizer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimpleUnit {
    Char,
    Word,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimpleTokenizer {
    format: String,
    unit: SimpleUnit,
    /// Tokens by id; the five specials come first.
    vocab: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl SimpleTokenizer {
    /// Builds the vocabulary from `texts`: every unit seen at least `min_count` times, most
    /// frequent first (ties broken alphabetically, so the result does not depend on hash order).
    pub fn build(unit: SimpleUnit, texts: &[&str], min_count: usize) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in texts {
            for piece in split(unit, text) {
                *counts.entry(piece).or_default() += 1;
            }
        }
        let mut units: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, c)| *c >= min_count.max(1))
            .collect();
        units.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let vocab = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(
                units
                    .into_iter()
                    .map(|(u, _)| u)
                    .filter(|u| !SPECIALS.contains(&u.as_str())),
            )
            .collect();
        Self::from_vocab(unit, vocab)
    }

    fn from_vocab(unit: SimpleUnit, vocab: Vec<String>) -> Self {
        let index = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Self {
            format: FORMAT_TAG.into(),
            unit,
            vocab,
            index,
        }
    }

    pub fn is_simple_json(text: &str) -> bool {
        text.contains(FORMAT_TAG)
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let parsed: SimpleTokenizer = serde_json::from_str(text).map_err(|e| FlowError::Parse {
            path: path.to_path_buf(),
            message: format!("malformed simple tokenizer: {e}"),
        })?;
        if parsed.vocab.len() < SPECIALS.len()
            || SPECIALS.iter().zip(&parsed.vocab).any(|(s, v)| s != v)
        {
            return Err(FlowError::Parse {
                path: path.to_path_buf(),
                message: format!("the vocabulary must start with {SPECIALS:?}"),
            });
        }
        Ok(Self::from_vocab(parsed.unit, parsed.vocab))
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| FlowError::Tokenizer(e.to_string()))
    }

    pub fn unit(&self) -> SimpleUnit {
        self.unit
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let unk = self.index[UNK];
        split(self.unit, text)
            .into_iter()
            .map(|p| self.index.get(&p).copied().unwrap_or(unk))
            .collect()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        let pieces = ids
            .iter()
            .filter(|&&id| id as usize >= SPECIALS.len() && (id as usize) < self.vocab.len())
            .map(|&id| self.vocab[id as usize].as_str());
        match self.unit {
            SimpleUnit::Char => pieces.collect(),
            SimpleUnit::Word => pieces.collect::<Vec<_>>().join(" "),
        }
    }

    pub fn token_text(&self, id: u32) -> String {
        self.vocab.get(id as usize).cloned().unwrap_or_default()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn special(&self) -> SpecialTokens {
        SpecialTokens {
            mask: self.index[MASK],
            pad: self.index[PAD],
            eos: self.index[END],
            bos: Some(self.index[START]),
            unk: Some(self.index[UNK]),
        }
    }

    pub fn special_ids(&self) -> Vec<u32> {
        (0..SPECIALS.len() as u32).collect()
    }
}

/// Characters, or words with punctuation split off (seed 002 splits on whitespace).
fn split(unit: SimpleUnit, text: &str) -> Vec<String> {
    match unit {
        SimpleUnit::Char => text.chars().map(String::from).collect(),
        SimpleUnit::Word => {
            let mut words = Vec::new();
            let mut current = String::new();
            for c in text.chars() {
                if c.is_alphanumeric() || c == '\'' {
                    current.push(c);
                    continue;
                }
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
                if !c.is_whitespace() {
                    words.push(c.to_string());
                }
            }
            if !current.is_empty() {
                words.push(current);
            }
            words
        }
    }
}
