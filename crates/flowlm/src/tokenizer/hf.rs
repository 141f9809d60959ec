//! Hugging Face tokenizers through the `tokenizers` crate.

use super::{SpecialTokens, Tokenizer};
use crate::error::{FlowError, Result};
use std::path::Path;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfInner};

/// Names under which tokenizers in the wild spell their special tokens, most common first.
const MASK_NAMES: &[&str] = &["[MASK]", "<mask>", "<|mask|>", "<|mdm_mask|>"];
const PAD_NAMES: &[&str] = &["[PAD]", "<pad>", "<|pad|>"];
const EOS_NAMES: &[&str] = &["<|endoftext|>", "</s>", "[SEP]", "<eos>", "<|eot_id|>"];
const BOS_NAMES: &[&str] = &["<s>", "[CLS]", "<bos>", "<|begin_of_text|>"];
const UNK_NAMES: &[&str] = &["[UNK]", "<unk>", "<|unk|>"];

/// The names FlowLM adds when a tokenizer lacks a token.
const ADDED_MASK: &str = "<|mask|>";
const ADDED_EOS: &str = "<|endoftext|>";

#[derive(Clone)]
pub struct HfTokenizer {
    inner: HfInner,
    pub special: SpecialTokens,
}

impl HfTokenizer {
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let invalid = |message: String| FlowError::Parse {
            path: path.to_path_buf(),
            message: format!("not a valid Hugging Face tokenizer.json: {message}"),
        };
        // The tokenizers crate unwraps some inner parse errors (its decoder deserializer panics
        // on malformed JSON, found by tests/fuzz.rs): syntax is checked here first, and a panic
        // on well-formed but wrong content still becomes this error.
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| invalid(e.to_string()))?;
        let parsed = std::panic::catch_unwind(|| HfInner::from_bytes(text.as_bytes()))
            .map_err(|_| invalid("the tokenizers crate could not read its content".into()))?;
        let inner = parsed.map_err(|e| invalid(e.to_string()))?;
        Ok(Self::with_specials(inner))
    }

    /// Finds the special ids, adding a mask (and an end-of-text) token when missing.
    fn with_specials(mut inner: HfInner) -> Self {
        // Documents and prompts are encoded whole: a Hub file's truncation (BERT's 512 tokens)
        // would silently cut every document, and its padding would add ids that are not text.
        // Clearing truncation cannot fail (only a stride longer than a limit does).
        let _ = inner.with_truncation(None);
        inner.with_padding(None);
        let find =
            |inner: &HfInner, names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        if find(&inner, MASK_NAMES).is_none() {
            inner.add_special_tokens(&[AddedToken::from(ADDED_MASK, true)]);
        }
        if find(&inner, EOS_NAMES).is_none() {
            inner.add_special_tokens(&[AddedToken::from(ADDED_EOS, true)]);
        }
        let mask = find(&inner, MASK_NAMES).expect("mask token was just added");
        let eos = find(&inner, EOS_NAMES).expect("eos token was just added");
        // Packed training never pads; SFT pads answers with EOS as LLaDA does.
        let pad = find(&inner, PAD_NAMES).unwrap_or(eos);
        let special = SpecialTokens {
            mask,
            pad,
            eos,
            bos: find(&inner, BOS_NAMES),
            unk: find(&inner, UNK_NAMES),
        };
        Self { inner, special }
    }

    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| FlowError::Tokenizer(e.to_string()))
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| FlowError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| FlowError::Tokenizer(e.to_string()))
    }

    pub fn token_text(&self, id: u32) -> String {
        if self.special_ids().contains(&id) {
            return self.inner.id_to_token(id).unwrap_or_default();
        }
        self.inner.decode(&[id], false).unwrap_or_default()
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| *id)
            .collect();
        let s = self.special;
        ids.extend([s.mask, s.pad, s.eos]);
        ids.extend(s.bos);
        ids.extend(s.unk);
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

fn byte_level_pipeline(model: BPE) -> HfInner {
    let mut inner = HfInner::new(model);
    inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    inner.with_decoder(Some(ByteLevel::default()));
    inner
}

/// GPT-2's byte-level BPE from the original `encoder.json` (vocab) and `vocab.bpe` (merges).
pub fn gpt2_from_files(vocab: &Path, merges: &Path) -> Result<Tokenizer> {
    let (vocab_s, merges_s) = (vocab.to_string_lossy(), merges.to_string_lossy());
    let model = BPE::from_file(&vocab_s, &merges_s)
        .build()
        .map_err(|e| FlowError::Tokenizer(format!("{}: {e}", vocab.display())))?;
    let mut inner = byte_level_pipeline(model);
    inner.add_special_tokens(&[AddedToken::from(ADDED_EOS, true)]);
    Ok(Tokenizer::Hf(Box::new(HfTokenizer::with_specials(inner))))
}

/// Trains a byte-level BPE with `vocab_size` entries (special tokens included) on `files`.
pub fn train_byte_level_bpe(files: &[std::path::PathBuf], vocab_size: usize) -> Result<Tokenizer> {
    // 256 bytes plus the special tokens is the smallest byte-level vocabulary.
    use crate::limits::{MAX_VOCABULARY, flag, within};
    flag("--vocab-size", within(vocab_size, 300, MAX_VOCABULARY))?;
    for file in files {
        if !file.is_file() {
            return Err(FlowError::io(
                file,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
    }
    let specials = vec![
        AddedToken::from(ADDED_EOS, true),
        AddedToken::from(ADDED_MASK, true),
    ];
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let mut inner = byte_level_pipeline(BPE::default());
    let names = files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    inner
        .train_from_files(&mut trainer, names)
        .map_err(|e| FlowError::Tokenizer(format!("BPE training failed: {e}")))?;
    Ok(Tokenizer::Hf(Box::new(HfTokenizer::with_specials(inner))))
}
