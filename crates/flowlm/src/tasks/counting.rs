//! Counting: prompt a zero-padded number ending in `=`, response the next `count` numbers, each
//! zero-padded to the same width: `00372=` → `00373,00374,00375`. Every number is the one before
//! it plus one, so a long answer is built from local rules (copy the high digits, carry into
//! them) that a small model learns quickly; the task model for decoding long answers in
//! parallel (Fast-dLLM's threshold rule and caches at 256 tokens).

use rand::Rng;
use rand::rngs::StdRng;

use super::arithmetic::parse_decimal;
use super::{Example, Task, strip_decoded_tail};
use crate::error::{FlowError, Result};

/// Numbers up to 18 digits stay inside `u64`.
pub const MAX_DIGITS: usize = 18;

/// The counting task.
#[derive(Debug, Clone)]
pub struct Counting {
    count: usize,
    digits: usize,
}

impl Counting {
    /// Answers of `count` (at least 1) numbers of `digits` (1..=18) digits; the start leaves
    /// room for all of them below `10^digits`.
    pub fn new(count: usize, digits: usize) -> Result<Counting> {
        if !(1..=MAX_DIGITS).contains(&digits) {
            return Err(FlowError::argument(
                "digits",
                format!("counting needs 1..={MAX_DIGITS} digits per number, got {digits}"),
            ));
        }
        if count == 0 || count as u64 >= 10u64.pow(digits as u32) {
            return Err(FlowError::argument(
                "count",
                format!("counting needs 1 to 10^{digits} - 1 numbers per answer, got {count}"),
            ));
        }
        Ok(Counting { count, digits })
    }

    /// The largest start whose answer still fits in `digits` digits.
    fn last_start(&self) -> u64 {
        10u64.pow(self.digits as u32) - 1 - self.count as u64
    }

    fn answer(&self, start: u64) -> String {
        let numbers: Vec<String> = (1..=self.count as u64)
            .map(|step| format!("{:0width$}", start + step, width = self.digits))
            .collect();
        numbers.join(",")
    }
}

impl Task for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn example(&self, rng: &mut StdRng) -> Example {
        let start = rng.random_range(0..=self.last_start());
        Example {
            prompt: format!("{start:0width$}=", width = self.digits),
            response: self.answer(start),
        }
    }

    /// Recounts from the prompt's number; the response must be the padded numbers exactly.
    fn score(&self, prompt: &str, response: &str) -> f64 {
        let start = prompt
            .strip_suffix('=')
            .filter(|number| number.len() == self.digits)
            .and_then(parse_decimal)
            .filter(|&start| start <= self.last_start());
        match start {
            Some(start) if strip_decoded_tail(response) == self.answer(start) => 1.0,
            _ => 0.0,
        }
    }

    fn response_length(&self) -> usize {
        self.count * (self.digits + 1) - 1
    }

    fn prompt_length(&self) -> usize {
        self.digits + 1
    }

    fn alphabet(&self) -> &str {
        "0123456789,="
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "count": self.count, "digits": self.digits })
    }
}
