//! Dream (`model_type` "Dream", `DreamModel`): a Qwen2 network with bidirectional attention,
//! trained from an autoregressive model so that the output at slot i - 1 predicts slot i. Its
//! logits are therefore shifted right by one slot (slot 0 keeps its own), as Dream's
//! `generation_utils.py` does. Qwen2 names: `model.embed_tokens`, `model.layers.N.{self_attn.
//! {q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}`,
//! `model.norm`, `lm_head` (or tied embeddings); q/k/v carry biases, grouped-query heads,
//! rotary positions. The mask id comes from `config.json` (151666 in Dream 7B).

use super::layers::{Linear, RmsNorm, RotaryTables, attend, repeat_heads, split_heads};
use crate::error::{FlowError, Result};
use crate::model::weights::Weights;
use burn::tensor::activation::silu;
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::Deserialize;

/// `config.json` of a Dream checkpoint; keys FlowLM does not use are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct DreamConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub max_position_embeddings: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub mask_token_id: Option<u32>,
}

fn default_rope_theta() -> f64 {
    1_000_000.0
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}

impl DreamConfig {
    fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |message: String| FlowError::config("config.json", message);
        let heads = self.num_attention_heads;
        if heads == 0 || self.hidden_size == 0 || !self.hidden_size.is_multiple_of(heads) {
            return Err(invalid(format!(
                "hidden_size {} must be a positive multiple of num_attention_heads {heads}",
                self.hidden_size
            )));
        }
        if !(self.hidden_size / heads).is_multiple_of(2) {
            return Err(invalid("the head size must be even (rotary)".into()));
        }
        let kv = self.kv_heads();
        if kv == 0 || !heads.is_multiple_of(kv) {
            return Err(invalid(format!(
                "num_key_value_heads {kv} must divide num_attention_heads {heads}"
            )));
        }
        crate::limits::within(self.max_position_embeddings, 1, crate::limits::MAX_SEQUENCE)
            .map_err(|m| invalid(format!("max_position_embeddings {m}")))
    }
}

struct DreamLayer {
    input_norm: RmsNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    post_attention_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl DreamLayer {
    fn new(config: &DreamConfig, weights: &Weights, index: usize, device: &Device) -> Result<Self> {
        let prefix = format!("model.layers.{index}");
        let h = config.hidden_size;
        let kv = config.kv_heads() * (h / config.num_attention_heads);
        let i = config.intermediate_size;
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
        let norm = |name: &str| {
            RmsNorm::new(
                weights,
                &format!("{prefix}.{name}"),
                h,
                config.rms_norm_eps,
                device,
            )
        };
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            query: linear("self_attn.q_proj", h, h, true)?,
            key: linear("self_attn.k_proj", h, kv, true)?,
            value: linear("self_attn.v_proj", h, kv, true)?,
            output: linear("self_attn.o_proj", h, h, false)?,
            post_attention_norm: norm("post_attention_layernorm")?,
            gate: linear("mlp.gate_proj", h, i, false)?,
            up: linear("mlp.up_proj", h, i, false)?,
            down: linear("mlp.down_proj", i, h, false)?,
        })
    }
}

/// A Dream denoiser network.
pub struct DreamModel {
    pub config: DreamConfig,
    embeddings: Tensor<2>,
    layers: Vec<DreamLayer>,
    final_norm: RmsNorm,
    /// `[hidden, vocab]`: `lm_head` transposed once, or the tied embeddings.
    head: Tensor<2>,
    rotary: RotaryTables,
}

impl DreamModel {
    pub fn new(config: DreamConfig, weights: &Weights, device: &Device) -> Result<Self> {
        config.validate()?;
        let (h, v) = (config.hidden_size, config.vocab_size);
        let embeddings = weights.tensor("model.embed_tokens.weight", [v, h], device)?;
        let head = if config.tie_word_embeddings && !weights.contains("lm_head.weight") {
            embeddings.clone().transpose()
        } else {
            weights
                .tensor("lm_head.weight", [v, h], device)?
                .transpose()
        };
        let layers = (0..config.num_hidden_layers)
            .map(|n| DreamLayer::new(&config, weights, n, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            final_norm: RmsNorm::new(weights, "model.norm", h, config.rms_norm_eps, device)?,
            rotary: RotaryTables::new(
                h / config.num_attention_heads,
                config.max_position_embeddings,
                config.rope_theta,
                device,
            ),
            embeddings,
            layers,
            head,
            config,
        })
    }
}

impl super::Network for DreamModel {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn context_length(&self) -> usize {
        self.config.max_position_embeddings
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
        let (heads, kv_heads) = (self.config.num_attention_heads, self.config.kv_heads());
        let mut x = self
            .embeddings
            .clone()
            .select(0, ids.reshape([batch * length]))
            .reshape([batch, length, self.config.hidden_size]);
        for layer in &self.layers {
            let h = layer.input_norm.forward(x.clone());
            let q = self.rotary.apply(
                split_heads(layer.query.forward(h.clone()), heads),
                positions.clone(),
            );
            let k = self.rotary.apply(
                split_heads(layer.key.forward(h.clone()), kv_heads),
                positions.clone(),
            );
            let v = split_heads(layer.value.forward(h), kv_heads);
            let attended = attend(
                q,
                repeat_heads(k, heads),
                repeat_heads(v, heads),
                padding.clone(),
            );
            x = x.clone() + layer.output.forward(attended);
            let h = layer.post_attention_norm.forward(x.clone());
            x = x + layer
                .down
                .forward(silu(layer.gate.forward(h.clone())) * layer.up.forward(h));
        }
        let logits = self
            .final_norm
            .forward(x)
            .matmul(self.head.clone().unsqueeze());
        // Slot i is predicted by the output at slot i - 1; slot 0 keeps its own.
        if length < 2 {
            return logits;
        }
        let vocab = self.config.vocab_size;
        Tensor::cat(
            vec![
                logits.clone().slice([0..batch, 0..1, 0..vocab]),
                logits.slice([0..batch, 0..length - 1, 0..vocab]),
            ],
            1,
        )
    }
}

/// The family registry's constructor: `config` is the text of `config.json`.
pub fn load(config: &str, weights: &Weights, device: &Device) -> Result<Box<dyn super::Network>> {
    let config: DreamConfig = serde_json::from_str(config)
        .map_err(|e| FlowError::config("config.json", format!("not a Dream config: {e}")))?;
    Ok(Box::new(DreamModel::new(config, weights, device)?))
}
