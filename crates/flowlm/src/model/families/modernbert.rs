//! ModernBERT masked language models (`model_type` "modernbert", `ModernBertForMaskedLM`), the
//! family of seed 001's diffusion chat model. Names as transformers writes them:
//! `model.embeddings.{tok_embeddings, norm}`, `model.layers.N.{attn_norm, attn.Wqkv, attn.Wo,
//! mlp_norm, mlp.Wi, mlp.Wo}`, `model.final_norm`, `head.{dense, norm}`, `decoder.bias`, the
//! decoder tied to the token embeddings. Pre-norm layers (layer 0 has no attention norm),
//! rotary positions with a global theta on full-attention layers and a local theta on
//! sliding-window layers (|i - j| <= local_attention / 2), GeGLU feed-forward, bias-free
//! LayerNorms. Both config styles are read: `layer_types` + `rope_parameters` (transformers 5)
//! and `global_attn_every_n_layers` + `global_rope_theta` / `local_rope_theta` (the originals).
//! Reference: transformers' `modeling_modernbert.py`.

use super::layers::{
    HeadShape, LayerNorm, Linear, Matrix, RotaryTables, attend_masked, split_heads,
};
use crate::error::{FlowError, Result};
use crate::model::kv_cache::{CachePass, KvCache, KvPair, run_layers};
use crate::model::weights::Weights;
use burn::tensor::activation::gelu;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Deserialize)]
struct RopeParameters {
    rope_theta: f64,
}

/// `config.json` of a ModernBERT checkpoint; keys FlowLM does not use are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ModernBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_local_attention")]
    pub local_attention: usize,
    #[serde(default = "default_global_every")]
    pub global_attn_every_n_layers: usize,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default)]
    rope_parameters: Option<HashMap<String, RopeParameters>>,
    #[serde(default = "default_global_theta")]
    pub global_rope_theta: f64,
    #[serde(default = "default_local_theta")]
    pub local_rope_theta: f64,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub classifier_bias: bool,
    #[serde(default = "default_true")]
    pub decoder_bias: bool,
    #[serde(default = "default_gelu")]
    pub hidden_activation: String,
    #[serde(default = "default_gelu")]
    pub classifier_activation: String,
}

fn default_norm_eps() -> f64 {
    1e-5
}
fn default_local_attention() -> usize {
    128
}
fn default_global_every() -> usize {
    3
}
fn default_global_theta() -> f64 {
    160_000.0
}
fn default_local_theta() -> f64 {
    10_000.0
}
fn default_true() -> bool {
    true
}
fn default_gelu() -> String {
    "gelu".into()
}

impl ModernBertConfig {
    /// Whether layer `index` attends to the whole sequence (else a sliding window).
    fn is_global(&self, index: usize) -> bool {
        match &self.layer_types {
            Some(types) => types.get(index).is_some_and(|t| t == "full_attention"),
            None => index.is_multiple_of(self.global_attn_every_n_layers.max(1)),
        }
    }

    fn theta(&self, global: bool) -> f64 {
        let (key, fallback) = if global {
            ("full_attention", self.global_rope_theta)
        } else {
            ("sliding_attention", self.local_rope_theta)
        };
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get(key))
            .map_or(fallback, |p| p.rope_theta)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |message: String| FlowError::config("config.json", message);
        HeadShape {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.num_attention_heads,
            head_size: None,
            keys: ["hidden_size", "num_attention_heads", "num_attention_heads"],
        }
        .validate()?;
        crate::limits::within(self.max_position_embeddings, 1, crate::limits::MAX_SEQUENCE)
            .map_err(|m| invalid(format!("max_position_embeddings {m}")))?;
        for (name, activation) in [
            ("hidden_activation", &self.hidden_activation),
            ("classifier_activation", &self.classifier_activation),
        ] {
            if activation != "gelu" {
                return Err(invalid(format!(
                    "{name} `{activation}`: FlowLM's ModernBERT runs `gelu` (erf) only"
                )));
            }
        }
        if let Some(types) = &self.layer_types
            && types.len() != self.num_hidden_layers
        {
            return Err(invalid(format!(
                "layer_types lists {} layers, num_hidden_layers is {}",
                types.len(),
                self.num_hidden_layers
            )));
        }
        Ok(())
    }
}

struct ModernBertLayer {
    attention_norm: Option<LayerNorm>,
    qkv: Linear,
    attention_output: Linear,
    feed_forward_norm: LayerNorm,
    input: Linear,
    output: Linear,
    global: bool,
}

impl ModernBertLayer {
    fn new(
        config: &ModernBertConfig,
        weights: &Weights,
        index: usize,
        device: &Device,
    ) -> Result<Self> {
        let prefix = format!("model.layers.{index}");
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.norm_eps,
        );
        let norm =
            |name: &str| LayerNorm::new(weights, &format!("{prefix}.{name}"), h, eps, device);
        let linear = |name: &str, inputs, outputs, bias| {
            Linear::new(
                weights,
                &format!("{prefix}.{name}"),
                inputs,
                outputs,
                bias,
                device,
            )
        };
        Ok(Self {
            attention_norm: (index > 0).then(|| norm("attn_norm")).transpose()?,
            qkv: linear("attn.Wqkv", h, 3 * h, config.attention_bias)?,
            attention_output: linear("attn.Wo", h, h, config.attention_bias)?,
            feed_forward_norm: norm("mlp_norm")?,
            input: linear("mlp.Wi", h, 2 * i, config.mlp_bias)?,
            output: linear("mlp.Wo", i, h, config.mlp_bias)?,
            global: config.is_global(index),
        })
    }
}

/// A ModernBERT masked LM with its prediction head.
pub struct ModernBertMaskedLm {
    pub config: ModernBertConfig,
    /// `[vocab, hidden]`, also the tied decoder.
    embeddings: Matrix,
    embedding_norm: LayerNorm,
    layers: Vec<ModernBertLayer>,
    final_norm: LayerNorm,
    head: Linear,
    head_norm: LayerNorm,
    decoder_bias: Option<Tensor<1>>,
    global_rotary: RotaryTables,
    local_rotary: RotaryTables,
}

impl ModernBertMaskedLm {
    pub fn new(config: ModernBertConfig, weights: &Weights, device: &Device) -> Result<Self> {
        config.validate()?;
        let (h, v, eps) = (config.hidden_size, config.vocab_size, config.norm_eps);
        let head_size = h / config.num_attention_heads;
        let length = config.max_position_embeddings;
        let embeddings = Matrix::load(
            weights,
            "model.embeddings.tok_embeddings.weight",
            [v, h],
            device,
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|n| ModernBertLayer::new(&config, weights, n, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embedding_norm: LayerNorm::new(weights, "model.embeddings.norm", h, eps, device)?,
            final_norm: LayerNorm::new(weights, "model.final_norm", h, eps, device)?,
            head: Linear::new(weights, "head.dense", h, h, config.classifier_bias, device)?,
            head_norm: LayerNorm::new(weights, "head.norm", h, eps, device)?,
            decoder_bias: config
                .decoder_bias
                .then(|| weights.tensor("decoder.bias", [v], device))
                .transpose()?,
            global_rotary: RotaryTables::new(head_size, length, config.theta(true), device),
            local_rotary: RotaryTables::new(head_size, length, config.theta(false), device),
            embeddings,
            layers,
            config,
        })
    }

    /// `[1, 1, Q, K]` for query columns `queries` and K key columns: true where the columns
    /// are further apart than the sliding half-window.
    fn outside_window(
        &self,
        queries: std::ops::Range<usize>,
        keys: usize,
        device: &Device,
    ) -> Tensor<4, Bool> {
        let half = self.config.local_attention / 2;
        let rows = queries.len();
        let outside: Vec<bool> = queries
            .flat_map(|q| (0..keys).map(move |k| q.abs_diff(k) > half))
            .collect();
        Tensor::<2, Bool>::from_data(TensorData::new(outside, [rows, keys]), device)
            .reshape([1, 1, rows, keys])
    }
}

impl super::Network for ModernBertMaskedLm {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn context_length(&self) -> usize {
        self.config.max_position_embeddings
    }

    fn forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        _time: Tensor<1>,
        pass: Option<&CachePass>,
    ) -> Result<(Tensor<3>, KvCache)> {
        let [batch, width] = ids.dims();
        let columns = pass.map_or(0..width, |p| p.columns(width));
        let (ids, positions) = super::pass_columns(ids, positions, pass);
        let length = columns.len();
        let (h, heads) = (self.config.hidden_size, self.config.num_attention_heads);
        let device = ids.device();
        let embedded = self.embeddings.rows(ids);
        let x = self.embedding_norm.forward(embedded);
        let padding = padding.map(|p| p.reshape([batch, 1, 1, width]));
        let window = self.outside_window(columns, width, &device);
        let sliding = Some(match &padding {
            Some(p) => p
                .clone()
                .expand([batch, 1, length, width])
                .bool_or(window.expand([batch, 1, length, width])),
            None => window.expand([batch, 1, length, width]),
        });
        let (x, cache) = run_layers(&self.layers, x, pass, |layer, x, cache| {
            let normed = match &layer.attention_norm {
                Some(norm) => norm.forward(x.clone()),
                None => x.clone(),
            };
            // Wqkv's output is [q | k | v], each `hidden` wide.
            let qkv = layer.qkv.forward(normed);
            let part = |i: usize| qkv.clone().slice([0..batch, 0..length, i * h..(i + 1) * h]);
            let rotary = if layer.global {
                &self.global_rotary
            } else {
                &self.local_rotary
            };
            let q = rotary.apply(split_heads(part(0), heads), positions.clone());
            let fresh = KvPair {
                keys: rotary.apply(split_heads(part(1), heads), positions.clone()),
                values: split_heads(part(2), heads),
            };
            let kv = match cache {
                Some((pass, index)) => pass.attended(index, fresh),
                None => fresh,
            };
            let mask = if layer.global {
                padding.clone()
            } else {
                sliding.clone()
            };
            let attended = attend_masked(q, kv.keys.clone(), kv.values.clone(), mask);
            let x = x + layer.attention_output.forward(attended);
            let inner = layer
                .input
                .forward(layer.feed_forward_norm.forward(x.clone()));
            let intermediate = self.config.intermediate_size;
            let input = inner.clone().slice([0..batch, 0..length, 0..intermediate]);
            let gate = inner.slice([0..batch, 0..length, intermediate..2 * intermediate]);
            (x + layer.output.forward(gelu(input) * gate), kv)
        });
        let x = self
            .head_norm
            .forward(gelu(self.head.forward(self.final_norm.forward(x))));
        let logits = self.embeddings.apply(x);
        let logits = match &self.decoder_bias {
            Some(bias) => logits + bias.clone().unsqueeze(),
            None => logits,
        };
        Ok((logits, cache))
    }
}

/// The family registry's constructor: `config` is the text of `config.json`.
pub fn load(config: &str, weights: &Weights, device: &Device) -> Result<Box<dyn super::Network>> {
    let config: ModernBertConfig = super::parse_config(config, "ModernBERT")?;
    Ok(Box::new(ModernBertMaskedLm::new(config, weights, device)?))
}
