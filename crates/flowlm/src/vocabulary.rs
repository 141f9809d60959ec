//! Which token ids are ordinary text. Substitutions, uniform noise and random initial canvases
//! draw only from these: a random `<mask>` or `<pad>` would be a different corruption.

use crate::random::StdRng;
use rand::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    /// Rows of the embedding matrix.
    pub size: usize,
    pub mask: u32,
    /// Ordinary tokens, ascending.
    regular: Vec<u32>,
    is_special: Vec<bool>,
}

impl Vocabulary {
    /// `size` tokens of which `special` (mask, pad, eos, ...) are never drawn at random.
    pub fn new(size: usize, mask: u32, special: &[u32]) -> Self {
        let mut is_special = vec![false; size];
        for &id in special.iter().chain(std::iter::once(&mask)) {
            if let Some(flag) = is_special.get_mut(id as usize) {
                *flag = true;
            }
        }
        let regular = (0..size as u32)
            .filter(|&id| !is_special[id as usize])
            .collect();
        Self {
            size,
            mask,
            regular,
            is_special,
        }
    }

    pub fn is_special(&self, token: u32) -> bool {
        self.is_special.get(token as usize).copied().unwrap_or(true)
    }

    /// Number of ordinary tokens: the N of the uniform process.
    pub fn regular_count(&self) -> usize {
        self.regular.len()
    }

    pub fn regular(&self) -> &[u32] {
        &self.regular
    }

    /// A uniformly random ordinary token.
    pub fn random_token(&self, rng: &mut StdRng) -> u32 {
        self.regular[rng.random_range(0..self.regular.len())]
    }

    /// A uniformly random ordinary token other than `token` (a real substitution).
    pub fn random_token_except(&self, token: u32, rng: &mut StdRng) -> u32 {
        if self.regular.len() < 2 {
            return self.random_token(rng);
        }
        loop {
            let candidate = self.random_token(rng);
            if candidate != token {
                return candidate;
            }
        }
    }
}

impl Vocabulary {
    /// The vocabulary of a model with `model_vocab_size` embedding rows and `tokenizer`: the
    /// tokenizer's special tokens, and any row the tokenizer cannot decode, are never drawn.
    pub fn for_tokenizer(tokenizer: &crate::tokenizer::Tokenizer, model_vocab_size: usize) -> Self {
        Self::for_tokenizer_with_mask(tokenizer, model_vocab_size, tokenizer.special().mask)
    }

    /// [`Self::for_tokenizer`] with the mask id a checkpoint's `config.json` declares.
    pub fn for_tokenizer_with_mask(
        tokenizer: &crate::tokenizer::Tokenizer,
        model_vocab_size: usize,
        mask: u32,
    ) -> Self {
        let mut special = tokenizer.special_ids();
        special.extend(tokenizer.vocab_size() as u32..model_vocab_size as u32);
        Self::new(model_vocab_size, mask, &special)
    }
}
