//! Cipher: decode a message written in the letters `a`..`j` with a key that gives each letter a
//! distinct digit. The prompt lists the key's ten pairs in a random order, then the message:
//! `c4a7j0...b2:jacb=` → `0742`. Every answer digit is a lookup (find the message letter's pair
//! in the key), so a long answer is many independent, checkable decisions: the task model for
//! decoding long answers in parallel (Fast-dLLM's threshold rule and caches at 256 tokens).

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{Example, Task, strip_decoded_tail};
use crate::error::{FlowError, Result};

/// The message alphabet; the key maps each of these letters to a distinct digit.
const LETTERS: &[u8; 10] = b"abcdefghij";

/// Longest message (the prompt holds the message, so it bounds the canvas too).
pub const MAX_LENGTH: usize = 4096;

/// The cipher task.
#[derive(Debug, Clone)]
pub struct Cipher {
    length: usize,
}

impl Cipher {
    /// Messages of `length` (1..=4096) letters.
    pub fn new(length: usize) -> Result<Cipher> {
        if !(1..=MAX_LENGTH).contains(&length) {
            return Err(FlowError::argument(
                "count",
                format!("cipher needs 1..={MAX_LENGTH} letters per message, got {length}"),
            ));
        }
        Ok(Cipher { length })
    }

    /// The digit of each letter the prompt's key gives, and the message; `None` for a prompt
    /// that is not `<ten letter-digit pairs>:<message>=`.
    fn parse<'a>(&self, prompt: &'a str) -> Option<([u8; 10], &'a str)> {
        let (key, message) = prompt.strip_suffix('=')?.split_once(':')?;
        if key.len() != 2 * LETTERS.len() || message.len() != self.length {
            return None;
        }
        let mut digits = [u8::MAX; 10];
        for pair in key.as_bytes().chunks(2) {
            let letter = LETTERS.iter().position(|&l| l == pair[0])?;
            pair[1].is_ascii_digit().then_some(())?;
            digits[letter] = pair[1];
        }
        digits
            .iter()
            .all(|&d| d != u8::MAX)
            .then_some((digits, message))
    }
}

impl Task for Cipher {
    fn name(&self) -> &str {
        "cipher"
    }

    fn example(&self, rng: &mut StdRng) -> Example {
        let mut digits: Vec<u8> = (b'0'..=b'9').collect();
        digits.shuffle(rng);
        let mut order: Vec<usize> = (0..LETTERS.len()).collect();
        order.shuffle(rng);
        let key: String = order
            .iter()
            .flat_map(|&l| [LETTERS[l] as char, digits[l] as char])
            .collect();
        let letters: Vec<usize> = (0..self.length)
            .map(|_| rng.random_range(0..LETTERS.len()))
            .collect();
        let message: String = letters.iter().map(|&l| LETTERS[l] as char).collect();
        let response: String = letters.iter().map(|&l| digits[l] as char).collect();
        Example {
            prompt: format!("{key}:{message}="),
            response,
        }
    }

    /// Decodes the prompt's message with the prompt's key; the response must be it exactly.
    fn score(&self, prompt: &str, response: &str) -> f64 {
        let Some((digits, message)) = self.parse(prompt) else {
            return 0.0;
        };
        let decoded: String = message
            .bytes()
            .map(|b| {
                LETTERS
                    .iter()
                    .position(|&l| l == b)
                    .map(|l| digits[l] as char)
            })
            .collect::<Option<String>>()
            .unwrap_or_default();
        if !decoded.is_empty() && strip_decoded_tail(response) == decoded {
            1.0
        } else {
            0.0
        }
    }

    fn response_length(&self) -> usize {
        self.length
    }

    fn prompt_length(&self) -> usize {
        2 * LETTERS.len() + 1 + self.length + 1
    }

    fn alphabet(&self) -> &str {
        "abcdefghij0123456789:="
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "count": self.length })
    }
}
