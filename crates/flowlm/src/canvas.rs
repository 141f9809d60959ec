//! The canvas every sampler works on: rows of [left padding, prompt, response slots]. Rows with
//! shorter prompts are padded on the left so that all responses start at the same column; the
//! padding is never attended to and position ids skip it, so a padded row computes what it
//! would compute alone.

use crate::error::{FlowError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    pub rows: Vec<Vec<u32>>,
    /// Left padding per row.
    pub padding: Vec<usize>,
    /// Column where the response begins (same for every row).
    pub response_start: usize,
    pub mask_id: u32,
    pub pad_id: u32,
}

impl Canvas {
    /// `prompts` followed by `gen_length` mask slots each.
    pub fn new(prompts: &[Vec<u32>], gen_length: usize, mask_id: u32, pad_id: u32) -> Result<Self> {
        Self::with_response(prompts, &vec![mask_id; gen_length], mask_id, pad_id)
    }

    /// `prompts` followed by the same initial `response` slots (masks, noise, or a draft).
    pub fn with_response(
        prompts: &[Vec<u32>],
        response: &[u32],
        mask_id: u32,
        pad_id: u32,
    ) -> Result<Self> {
        if prompts.is_empty() {
            return Err(FlowError::argument(
                "prompt",
                "at least one prompt is needed",
            ));
        }
        if response.is_empty() {
            return Err(FlowError::argument("--gen-length", "must be at least 1"));
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut rows = Vec::with_capacity(prompts.len());
        let mut padding = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let pad = longest - prompt.len();
            let mut row = vec![pad_id; pad];
            row.extend_from_slice(prompt);
            row.extend_from_slice(response);
            rows.push(row);
            padding.push(pad);
        }
        Ok(Self {
            rows,
            padding,
            response_start: longest,
            mask_id,
            pad_id,
        })
    }

    pub fn batch(&self) -> usize {
        self.rows.len()
    }

    pub fn width(&self) -> usize {
        self.rows.first().map_or(0, Vec::len)
    }

    pub fn response_length(&self) -> usize {
        self.width() - self.response_start
    }

    pub fn response(&self, row: usize) -> &[u32] {
        &self.rows[row][self.response_start..]
    }

    pub fn is_masked(&self, row: usize, column: usize) -> bool {
        self.rows[row][column] == self.mask_id
    }

    /// Masked slots left in the response of `row`.
    pub fn masked_count(&self, row: usize) -> usize {
        self.response(row)
            .iter()
            .filter(|&&t| t == self.mask_id)
            .count()
    }

    /// The same canvas with every prompt token replaced by the mask (classifier-free guidance's
    /// unconditional branch).
    pub fn with_prompt_masked(&self) -> Canvas {
        let mut copy = self.clone();
        for (row, pad) in copy.rows.iter_mut().zip(&self.padding) {
            for slot in &mut row[*pad..self.response_start] {
                *slot = self.mask_id;
            }
        }
        copy
    }
}
