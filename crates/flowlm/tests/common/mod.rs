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
    // One directory per call: tests of one binary run in parallel threads, and two of them
    // asking for the same name must not write into each other's files.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("flowlm-test-{name}-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

pub fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.is_dir().then_some(p)
}

/// The directory of the committed model `models/<name>`.
pub fn committed_model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name)
}

/// The bundled default model's directory.
pub fn default_model_dir() -> PathBuf {
    committed_model_dir("default")
}

/// The bundled default model rewritten as a LLaDA checkpoint (LLaDA's tensor names, `[out, in]`
/// linear weights, LLaDA's `config.json`) in a scratch directory `name`: FlowLM's network has
/// LLaDA's architecture, so the LLaDA family must compute what FlowLM's model computes.
pub fn llada_checkpoint(name: &str) -> PathBuf {
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    let root = default_model_dir();
    let dir = scratch(name);
    let bytes = std::fs::read(root.join("model.safetensors")).unwrap();
    let source = SafeTensors::deserialize(&bytes).unwrap();
    let mut converted: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in source.tensors() {
        let rename = |n: &str| -> (String, bool) {
            let blocks = |rest: &str| format!("model.transformer.blocks.{rest}");
            let parts: Vec<&str> = n.split('.').collect();
            match parts.as_slice() {
                ["embed_tokens", "weight"] => ("model.transformer.wte.weight".into(), false),
                ["final_norm", "Rms", "gamma"] => ("model.transformer.ln_f.weight".into(), false),
                ["layers", i, "attention_norm", "Rms", "gamma"] => {
                    (blocks(&format!("{i}.attn_norm.weight")), false)
                }
                ["layers", i, "feed_forward_norm", "Rms", "gamma"] => {
                    (blocks(&format!("{i}.ff_norm.weight")), false)
                }
                ["layers", i, "feed_forward", "Swiglu", part, "weight"] => {
                    let to = match *part {
                        "gate" => "ff_proj",
                        "up" => "up_proj",
                        _ => "ff_out",
                    };
                    (blocks(&format!("{i}.{to}.weight")), true)
                }
                ["layers", i, part, "weight"] => {
                    let to = match *part {
                        "query" => "q_proj",
                        "key" => "k_proj",
                        "value" => "v_proj",
                        _ => "attn_out",
                    };
                    (blocks(&format!("{i}.{to}.weight")), true)
                }
                _ => panic!("unexpected tensor {n}"),
            }
        };
        let (new_name, transpose) = rename(&name);
        let shape = view.shape().to_vec();
        let data = view.data().to_vec();
        let (shape, data) = if transpose {
            let (rows, columns) = (shape[0], shape[1]);
            let size = data.len() / (rows * columns);
            let mut out = vec![0u8; data.len()];
            for r in 0..rows {
                for c in 0..columns {
                    let from = (r * columns + c) * size;
                    let to = (c * rows + r) * size;
                    out[to..to + size].copy_from_slice(&data[from..from + size]);
                }
            }
            (vec![columns, rows], out)
        } else {
            (shape, data)
        };
        converted.push((new_name, view.dtype(), shape, data));
    }
    let views: Vec<(String, TensorView)> = converted
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    std::fs::copy(root.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": 384,
            "n_heads": 6, "n_kv_heads": 6, "n_layers": 8, "mlp_hidden_size": 1024,
            "vocab_size": 4096, "embedding_size": 4096, "max_sequence_length": 256,
            "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "weight_tying": true,
            "include_bias": false, "mask_token_id": 1, "activation_type": "silu"}"#,
    )
    .unwrap();

    dir
}
