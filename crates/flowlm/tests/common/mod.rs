//! Shared test helpers: a `Denoiser` double with fixed logits, and scratch directories.
#![allow(dead_code)]

use flowlm::canvas::Canvas;
use flowlm::model::{Denoiser, Logits};
use std::path::PathBuf;

/// Returns the same logits for every canvas: `table[position][token]` for response position
/// `position` (prompt positions get zeros). Counts its calls.
pub struct FixedDenoiser {
    pub vocab: usize,
    pub table: Vec<Vec<f32>>,
    pub calls: std::cell::Cell<usize>,
}

impl FixedDenoiser {
    pub fn new(vocab: usize, table: Vec<Vec<f32>>) -> Self {
        Self {
            vocab,
            table,
            calls: std::cell::Cell::new(0),
        }
    }

    /// Position i prefers token `(i % (vocab - 2)) + 1` with a confidence that falls with i.
    pub fn descending(vocab: usize, length: usize) -> Self {
        let table = (0..length)
            .map(|i| {
                let mut row = vec![0.0; vocab];
                row[i % (vocab - 2) + 1] = 10.0 - i as f32 * 0.1;
                row
            })
            .collect();
        Self::new(vocab, table)
    }
}

impl Denoiser for FixedDenoiser {
    fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// One-hot embeddings (hidden = vocab), so embedding-space samplers can run on the double.
    fn embedding_table(&self) -> Option<(Vec<f32>, usize)> {
        let mut table = vec![0.0; self.vocab * self.vocab];
        for i in 0..self.vocab {
            table[i * self.vocab + i] = 1.0;
        }
        Some((table, self.vocab))
    }

    fn logits_from_embeddings(&self, canvas: &Canvas, _response: &[f32]) -> flowlm::Result<Logits> {
        self.logits(canvas, None)
    }

    fn logits(&self, canvas: &Canvas, _time: Option<&[f32]>) -> flowlm::Result<Logits> {
        self.calls.set(self.calls.get() + 1);
        let width = canvas.width();
        let mut values = vec![0.0; canvas.batch() * width * self.vocab];
        for row in 0..canvas.batch() {
            for column in canvas.response_start..width {
                let start = (row * width + column) * self.vocab;
                values[start..start + self.vocab]
                    .copy_from_slice(&self.table[column - canvas.response_start]);
            }
        }
        Ok(Logits {
            batch: canvas.batch(),
            length: width,
            vocab: self.vocab,
            values,
        })
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowlm-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

pub fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.is_dir().then_some(p)
}
