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
        Self::with_responses(prompts, &vec![response; prompts.len()], mask_id, pad_id)
    }

    /// Each of `prompts` followed by its own `responses` slots (all of one length), as the rows
    /// of a running decode stand.
    pub fn with_responses<P: AsRef<[u32]>, R: AsRef<[u32]>>(
        prompts: &[P],
        responses: &[R],
        mask_id: u32,
        pad_id: u32,
    ) -> Result<Self> {
        if prompts.is_empty() {
            return Err(FlowError::argument(
                "prompt",
                "at least one prompt is needed",
            ));
        }
        let length = responses.first().map_or(0, |r| r.as_ref().len());
        if length == 0 {
            return Err(FlowError::argument("--gen-length", "must be at least 1"));
        }
        if responses.len() != prompts.len() || responses.iter().any(|r| r.as_ref().len() != length)
        {
            return Err(FlowError::argument(
                "responses",
                "one response per prompt, all of one length",
            ));
        }
        let longest = prompts.iter().map(|p| p.as_ref().len()).max().unwrap_or(0);
        let mut rows = Vec::with_capacity(prompts.len());
        let mut padding = Vec::with_capacity(prompts.len());
        for (prompt, response) in prompts.iter().zip(responses) {
            let pad = longest - prompt.as_ref().len();
            let mut row = vec![pad_id; pad];
            row.extend_from_slice(prompt.as_ref());
            row.extend_from_slice(response.as_ref());
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
