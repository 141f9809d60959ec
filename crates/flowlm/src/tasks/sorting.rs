//! Sorting: prompt a comma-separated list ending in `=`, response the same numbers ascending.
//!
//! Numbers are drawn from `0..=max_value` (repeats allowed) and zero-padded to the width of
//! `max_value`, so prompt and response lengths are fixed: `42,07,19,88,03=` → `03,07,19,42,88`.

use rand::Rng;
use rand::rngs::StdRng;

use super::arithmetic::parse_decimal;
use super::{Example, Task, strip_decoded_tail};
use crate::error::{FlowError, Result};

/// The sorting task.
#[derive(Debug, Clone)]
pub struct Sorting {
    count: usize,
    max_value: u32,
    width: usize,
}

impl Sorting {
    /// Lists of `count` (at least 1) numbers in `0..=max_value`.
    pub fn new(count: usize, max_value: u32) -> Result<Sorting> {
        if count == 0 {
            return Err(FlowError::argument(
                "count",
                "sorting needs at least 1 number per list",
            ));
        }
        Ok(Sorting {
            count,
            max_value,
            width: max_value.to_string().len(),
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn max_value(&self) -> u32 {
        self.max_value
    }

    fn format_list(&self, numbers: &[u64]) -> String {
        let padded: Vec<String> = numbers
            .iter()
            .map(|n| format!("{n:0width$}", width = self.width))
            .collect();
        padded.join(",")
    }
}

impl Task for Sorting {
    fn name(&self) -> &str {
        "sorting"
    }

    fn example(&self, rng: &mut StdRng) -> Example {
        let mut numbers: Vec<u64> = (0..self.count)
            .map(|_| u64::from(rng.random_range(0..=self.max_value)))
            .collect();
        let prompt = format!("{}=", self.format_list(&numbers));
        numbers.sort_unstable();
        Example {
            prompt,
            response: self.format_list(&numbers),
        }
    }

    /// Recomputes the sorted list from the prompt; the response must be it, padded, exactly.
    fn score(&self, prompt: &str, response: &str) -> f64 {
        let numbers: Option<Vec<u64>> = prompt
            .strip_suffix('=')
            .and_then(|list| list.split(',').map(parse_decimal).collect());
        let Some(mut numbers) = numbers else {
            return 0.0;
        };
        numbers.sort_unstable();
        if strip_decoded_tail(response) == self.format_list(&numbers) {
            1.0
        } else {
            0.0
        }
    }

    fn response_length(&self) -> usize {
        self.count * (self.width + 1) - 1
    }

    fn prompt_length(&self) -> usize {
        self.count * (self.width + 1)
    }

    fn alphabet(&self) -> &str {
        "0123456789,="
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "count": self.count, "max_value": self.max_value })
    }
}
