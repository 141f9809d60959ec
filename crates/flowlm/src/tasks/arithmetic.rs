//! Multi-digit addition: prompt `a+b=`, response the sum.
//!
//! Each operand first draws its number of digits uniformly from `1..=digits` and then a value
//! with exactly that many digits, so short and long operands are equally common (drawing values
//! uniformly would make almost every operand `digits` long). Operands are zero-padded to
//! `digits` and the sum to `digits + 1` characters: `042+007=` → `0049`.

use rand::Rng;
use rand::rngs::StdRng;

use super::{Example, Task, strip_decoded_tail};
use crate::error::{FlowError, Result};

/// Operands up to 18 digits keep every sum inside `u64`.
pub const MAX_DIGITS: usize = 18;

/// The addition task.
#[derive(Debug, Clone)]
pub struct Addition {
    digits: usize,
}

impl Addition {
    /// Operands of up to `digits` (1..=18) digits.
    pub fn new(digits: usize) -> Result<Addition> {
        if !(1..=MAX_DIGITS).contains(&digits) {
            return Err(FlowError::argument(
                "digits",
                format!("addition needs 1..={MAX_DIGITS} digits, got {digits}"),
            ));
        }
        Ok(Addition { digits })
    }

    pub fn digits(&self) -> usize {
        self.digits
    }

    fn operand(&self, rng: &mut StdRng) -> u64 {
        let length = rng.random_range(1..=self.digits) as u32;
        let low = if length == 1 {
            0
        } else {
            10u64.pow(length - 1)
        };
        rng.random_range(low..10u64.pow(length))
    }

    fn format_sum(&self, sum: u64) -> String {
        format!("{sum:0width$}", width = self.digits + 1)
    }
}

impl Task for Addition {
    fn name(&self) -> &str {
        "addition"
    }

    fn example(&self, rng: &mut StdRng) -> Example {
        let (a, b) = (self.operand(rng), self.operand(rng));
        Example {
            prompt: format!("{a:0width$}+{b:0width$}=", width = self.digits),
            response: self.format_sum(a + b),
        }
    }

    /// Recomputes `a + b` from the prompt; the response must be the zero-padded sum exactly.
    fn score(&self, prompt: &str, response: &str) -> f64 {
        let sum = prompt
            .strip_suffix('=')
            .and_then(|sum| sum.split_once('+'))
            .and_then(|(a, b)| parse_decimal(a)?.checked_add(parse_decimal(b)?));
        match sum {
            Some(sum) if strip_decoded_tail(response) == self.format_sum(sum) => 1.0,
            _ => 0.0,
        }
    }

    fn response_length(&self) -> usize {
        self.digits + 1
    }

    fn prompt_length(&self) -> usize {
        2 * self.digits + 2
    }

    fn alphabet(&self) -> &str {
        "0123456789+="
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "digits": self.digits })
    }
}

/// A non-empty run of ASCII digits (leading zeros allowed) as a number; None otherwise, also on
/// overflow. `str::parse` alone would accept a leading `+`.
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
