//! Dream (`model_type` "Dream", `DreamModel`): a Qwen2 network with bidirectional attention,
//! trained from an autoregressive model so that the output at slot i - 1 predicts slot i. Its
//! logits are therefore shifted right by one slot (slot 0 keeps its own), as Dream's
//! `generation_utils.py` does. Qwen2 names: `model.embed_tokens`, `model.layers.N.{self_attn.
//! {q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}`,
//! `model.norm`, `lm_head` (or tied embeddings); q/k/v carry biases, grouped-query heads,
//! rotary positions. The mask id comes from `config.json` (151666 in Dream 7B).

use super::layers::{
    GatedBlock, GatedBlockNames, HeadShape, RmsNorm, RotaryTables, project, run_gated_blocks,
};
use crate::error::{FlowError, Result};
use crate::model::kv_cache::{CachePass, KvCache};
use crate::model::weights::Weights;
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

    fn heads(&self) -> HeadShape<'static> {
        HeadShape {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            keys: ["hidden_size", "num_attention_heads", "num_key_value_heads"],
        }
    }

    fn validate(&self) -> Result<()> {
        self.heads().validate()?;
        crate::limits::within(self.max_position_embeddings, 1, crate::limits::MAX_SEQUENCE)
            .map_err(|m| FlowError::config("config.json", format!("max_position_embeddings {m}")))
    }
}

/// Qwen2's names for a layer's tensors (`model.layers.N.*`).
const LAYER_NAMES: GatedBlockNames = [
    "input_layernorm",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "post_attention_layernorm",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// A Dream denoiser network.
pub struct DreamModel {
    pub config: DreamConfig,
    embeddings: Tensor<2>,
    layers: Vec<GatedBlock>,
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
        // Qwen2: biases on q/k/v only.
        let layers = (0..config.num_hidden_layers)
            .map(|n| {
                GatedBlock::new(
                    weights,
                    &format!("model.layers.{n}"),
                    &LAYER_NAMES,
                    &config.heads(),
                    config.intermediate_size,
                    config.rms_norm_eps,
                    (true, false),
                    device,
                )
            })
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
        pass: Option<&CachePass>,
    ) -> Result<(Tensor<3>, KvCache)> {
        // Column c is predicted by the output at c - 1 (column 0 keeps its own), so a window
        // also computes the column before it.
        let wanted_start = pass.map_or(0, |p| p.columns(ids.dims()[1]).start);
        let widened = pass.map(|p| p.starting_at(wanted_start.saturating_sub(1)));
        let (ids, positions) = super::pass_columns(ids, positions, widened.as_ref());
        let [batch, length] = ids.dims();
        let x = self
            .embeddings
            .clone()
            .select(0, ids.reshape([batch * length]))
            .reshape([batch, length, self.config.hidden_size]);
        let (x, cache) = run_gated_blocks(
            &self.layers,
            x,
            &self.rotary,
            &positions,
            padding,
            widened.as_ref(),
        );
        let logits = project(self.final_norm.forward(x), &self.head);
        if length < 2 {
            return Ok((logits, cache));
        }
        let vocab = self.config.vocab_size;
        let shifted = logits.clone().slice([0..batch, 0..length - 1, 0..vocab]);
        if wanted_start > 0 {
            return Ok((shifted, cache));
        }
        let first = logits.slice([0..batch, 0..1, 0..vocab]);
        Ok((Tensor::cat(vec![first, shifted], 1), cache))
    }
}

/// The family registry's constructor: `config` is the text of `config.json`.
pub fn load(config: &str, weights: &Weights, device: &Device) -> Result<Box<dyn super::Network>> {
    let config: DreamConfig = super::parse_config(config, "Dream")?;
    Ok(Box::new(DreamModel::new(config, weights, device)?))
}
