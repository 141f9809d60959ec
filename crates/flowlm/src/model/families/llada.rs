//! LLaDA (`model_type` "llada", `LLaDAModelLM`): a bidirectional LLaMA-style mask predictor.
//! Names as its published `modeling_llada.py` writes them: `model.transformer.{wte,
//! blocks.N.{q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj, ff_out, attn_norm, ff_norm},
//! ln_f, ff_out}`. Pre-norm blocks with RMSNorm, rotary positions (rotate-half), SwiGLU
//! (`silu(ff_proj x) * up_proj x`), no causal mask; the output head is `ff_out` unless
//! `weight_tying`. The mask id comes from `config.json` (126336 in the 8B models).

use super::layers::{Linear, RmsNorm, RotaryTables, attend, repeat_heads, split_heads};
use crate::error::{FlowError, Result};
use crate::model::weights::Weights;
use burn::tensor::activation::silu;
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::Deserialize;

/// `config.json` of a LLaDA checkpoint; keys FlowLM does not use are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct LladaConfig {
    pub d_model: usize,
    pub n_heads: usize,
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    pub n_layers: usize,
    #[serde(default)]
    pub mlp_hidden_size: Option<usize>,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
    pub vocab_size: usize,
    /// Rows of the embedding table (the vocabulary padded for speed).
    #[serde(default)]
    pub embedding_size: Option<usize>,
    pub max_sequence_length: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub weight_tying: bool,
    #[serde(default)]
    pub include_bias: bool,
    #[serde(default)]
    pub mask_token_id: Option<u32>,
}

fn default_mlp_ratio() -> usize {
    4
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_rms_norm_eps() -> f64 {
    1e-5
}

impl LladaConfig {
    fn kv_heads(&self) -> usize {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    fn embedding_rows(&self) -> usize {
        self.embedding_size
            .unwrap_or(self.vocab_size)
            .max(self.vocab_size)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |message: String| FlowError::config("config.json", message);
        let heads = self.n_heads;
        if heads == 0 || self.d_model == 0 || !self.d_model.is_multiple_of(heads) {
            return Err(invalid(format!(
                "d_model {} must be a positive multiple of n_heads {heads}",
                self.d_model
            )));
        }
        if !(self.d_model / heads).is_multiple_of(2) {
            return Err(invalid(
                "the head size d_model / n_heads must be even (rotary)".into(),
            ));
        }
        crate::limits::within(self.max_sequence_length, 1, crate::limits::MAX_SEQUENCE)
            .map_err(|m| invalid(format!("max_sequence_length {m}")))?;
        let kv = self.kv_heads();
        if kv == 0 || !heads.is_multiple_of(kv) {
            return Err(invalid(format!(
                "n_kv_heads {kv} must divide n_heads {heads}"
            )));
        }
        Ok(())
    }
}

struct LladaBlock {
    attention_norm: RmsNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    feed_forward_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl LladaBlock {
    fn new(config: &LladaConfig, weights: &Weights, prefix: &str, device: &Device) -> Result<Self> {
        let d = config.d_model;
        let kv = config.kv_heads() * (d / config.n_heads);
        let ff = config.mlp_hidden_size.unwrap_or(config.mlp_ratio * d);
        let bias = config.include_bias;
        let linear = |name: &str, inputs, outputs| {
            Linear::new(
                weights,
                &format!("{prefix}.{name}"),
                inputs,
                outputs,
                bias,
                device,
            )
        };
        let norm = |name: &str| {
            RmsNorm::new(
                weights,
                &format!("{prefix}.{name}"),
                d,
                config.rms_norm_eps,
                device,
            )
        };
        Ok(Self {
            attention_norm: norm("attn_norm")?,
            query: linear("q_proj", d, d)?,
            key: linear("k_proj", d, kv)?,
            value: linear("v_proj", d, kv)?,
            attention_output: linear("attn_out", d, d)?,
            feed_forward_norm: norm("ff_norm")?,
            gate: linear("ff_proj", d, ff)?,
            up: linear("up_proj", d, ff)?,
            down: linear("ff_out", ff, d)?,
        })
    }

    fn forward(
        &self,
        x: Tensor<3>,
        config: &LladaConfig,
        rotary: &RotaryTables,
        positions: &Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let (heads, kv_heads) = (config.n_heads, config.kv_heads());
        let h = self.attention_norm.forward(x.clone());
        let q = rotary.apply(
            split_heads(self.query.forward(h.clone()), heads),
            positions.clone(),
        );
        let k = rotary.apply(
            split_heads(self.key.forward(h.clone()), kv_heads),
            positions.clone(),
        );
        let v = split_heads(self.value.forward(h), kv_heads);
        let (k, v) = (repeat_heads(k, heads), repeat_heads(v, heads));
        let x = x + self.attention_output.forward(attend(q, k, v, padding));
        let h = self.feed_forward_norm.forward(x.clone());
        x + self
            .down
            .forward(silu(self.gate.forward(h.clone())) * self.up.forward(h))
    }
}

/// A LLaDA mask predictor.
pub struct LladaModel {
    pub config: LladaConfig,
    embeddings: Tensor<2>,
    blocks: Vec<LladaBlock>,
    final_norm: RmsNorm,
    /// `[d_model, embedding rows]`: `ff_out` transposed, or the tied embeddings transposed.
    head: Tensor<2>,
    rotary: RotaryTables,
}

impl LladaModel {
    pub fn new(config: LladaConfig, weights: &Weights, device: &Device) -> Result<Self> {
        config.validate()?;
        let (d, rows) = (config.d_model, config.embedding_rows());
        let embeddings = weights.tensor("model.transformer.wte.weight", [rows, d], device)?;
        let head = if config.weight_tying {
            embeddings.clone().transpose()
        } else {
            weights
                .tensor("model.transformer.ff_out.weight", [rows, d], device)?
                .transpose()
        };
        let blocks = (0..config.n_layers)
            .map(|n| {
                LladaBlock::new(
                    &config,
                    weights,
                    &format!("model.transformer.blocks.{n}"),
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            final_norm: RmsNorm::new(
                weights,
                "model.transformer.ln_f",
                d,
                config.rms_norm_eps,
                device,
            )?,
            rotary: RotaryTables::new(
                d / config.n_heads,
                config.max_sequence_length,
                config.rope_theta,
                device,
            ),
            embeddings,
            blocks,
            head,
            config,
        })
    }
}

impl super::Network for LladaModel {
    fn vocab_size(&self) -> usize {
        self.config.embedding_rows()
    }

    fn context_length(&self) -> usize {
        self.config.max_sequence_length
    }

    fn mask_token_id(&self) -> Option<u32> {
        self.config.mask_token_id
    }

    fn forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let [batch, length] = ids.dims();
        let mut x = self
            .embeddings
            .clone()
            .select(0, ids.reshape([batch * length]))
            .reshape([batch, length, self.config.d_model]);
        for block in &self.blocks {
            x = block.forward(x, &self.config, &self.rotary, &positions, padding.clone());
        }
        self.final_norm
            .forward(x)
            .matmul(self.head.clone().unsqueeze())
    }
}

/// The family registry's constructor: `config` is the text of `config.json`.
pub fn load(config: &str, weights: &Weights, device: &Device) -> Result<Box<dyn super::Network>> {
    let config: LladaConfig = serde_json::from_str(config)
        .map_err(|e| FlowError::config("config.json", format!("not a LLaDA config: {e}")))?;
    Ok(Box::new(LladaModel::new(config, weights, device)?))
}
