//! A2D ("autoregressive to diffusion", `model_type` "a2d-llama", "a2d-qwen2", "a2d-qwen3"):
//! Llama, Qwen2 and Qwen3 decoders whose causal mask the dllm project replaced by a padding-only
//! one and then trained as masked diffusion models (`Qwen3-0.6B-diffusion-mdlm` and kin). The
//! weights keep their autoregressive names: `model.embed_tokens`, `model.layers.N.{self_attn.
//! {q,k,v,o}_proj, [self_attn.{q,k}_norm,] mlp.{gate,up,down}_proj, input_layernorm,
//! post_attention_layernorm}`, `model.norm`, `lm_head` (or tied embeddings). Output i predicts
//! slot i (no shift, unlike Dream, which builds on this network). The mask id comes from the
//! tokenizer the conversion saved (its `mask_token`), or `mask_token_id` in `config.json`.
//!
//! The three architectures differ in biases (Qwen2: query/key/value always; Llama and Qwen3:
//! `attention_bias` on all four attention linears; Llama: `mlp_bias`), in Qwen3's per-head
//! RMSNorms on queries and keys, and in their default `rope_theta`. RoPE scaling "linear" and
//! "llama3" are applied to the frequencies once; other scaling rules are refused by name.

use super::layers::{
    Biases, GatedBlock, GatedBlockLayout, GatedBlockNames, GatedNetwork, HeadShape, Matrix,
    RmsNorm, RotaryTables, rotary_frequencies,
};
use crate::error::{FlowError, Result};
use crate::model::weights::Weights;
use burn::tensor::Device;
use serde::Deserialize;

/// What sets one decoder architecture apart from the others.
#[derive(Debug, Clone, Copy)]
pub struct Architecture {
    pub name: &'static str,
    /// Query/key/value biases whatever `attention_bias` says (Qwen2).
    pub always_qkv_bias: bool,
    /// Per-head RMSNorms on queries and keys before rotary (Qwen3).
    pub query_key_norms: bool,
    /// `rope_theta` when the config omits it (the architecture's config class default).
    pub default_rope_theta: f64,
}

pub const LLAMA: Architecture = Architecture {
    name: "Llama",
    always_qkv_bias: false,
    query_key_norms: false,
    default_rope_theta: 10_000.0,
};
pub const QWEN2: Architecture = Architecture {
    name: "Qwen2",
    always_qkv_bias: true,
    query_key_norms: false,
    default_rope_theta: 10_000.0,
};
pub const QWEN3: Architecture = Architecture {
    name: "Qwen3",
    always_qkv_bias: false,
    query_key_norms: true,
    default_rope_theta: 10_000.0,
};

/// `config.json` of a Llama/Qwen2/Qwen3-shaped checkpoint; keys FlowLM does not use are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct DecoderConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// A head's width when it is not `hidden_size / num_attention_heads` (Qwen3).
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// transformers 4's name for the RoPE settings.
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// transformers 5's name (it also carries `rope_theta`).
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// transformers' `PretrainedConfig` default is true, and a saved config omits defaults.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub mask_token_id: Option<u32>,
}

/// RoPE settings (`rope_parameters` or `rope_scaling`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeParameters {
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<f64>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}

impl DecoderConfig {
    fn heads(&self) -> HeadShape<'static> {
        HeadShape {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_size: self.head_dim,
            keys: ["hidden_size", "num_attention_heads", "num_key_value_heads"],
        }
    }

    fn validate(&self) -> Result<()> {
        self.heads().validate()?;
        if let Some(activation) = self.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(FlowError::config(
                "config.json hidden_act",
                format!("`{activation}` is not supported; these decoders run `silu`"),
            ));
        }
        crate::limits::within(self.max_position_embeddings, 1, crate::limits::MAX_SEQUENCE)
            .map_err(|m| FlowError::config("config.json", format!("max_position_embeddings {m}")))
    }

    /// A head's rotary frequencies after the config's RoPE scaling rule.
    pub fn rotary_frequencies(&self, architecture: &Architecture) -> Result<Vec<f64>> {
        let rope = self
            .rope_parameters
            .clone()
            .or_else(|| self.rope_scaling.clone())
            .unwrap_or_default();
        let theta = rope
            .rope_theta
            .or(self.rope_theta)
            .unwrap_or(architecture.default_rope_theta);
        let base = rotary_frequencies(self.heads().size(), theta);
        let field = |name: &str| {
            let key = format!("config.json rope_parameters.{name}");
            move || FlowError::config(key, "is required by this rope_type")
        };
        match rope.rope_type.as_deref().unwrap_or("default") {
            "default" => Ok(base),
            "linear" => {
                let factor = rope.factor.ok_or_else(field("factor"))?;
                Ok(base.into_iter().map(|f| f / factor).collect())
            }
            "llama3" => Ok(llama3_frequencies(
                base,
                rope.factor.ok_or_else(field("factor"))?,
                rope.low_freq_factor.ok_or_else(field("low_freq_factor"))?,
                rope.high_freq_factor
                    .ok_or_else(field("high_freq_factor"))?,
                rope.original_max_position_embeddings
                    .ok_or_else(field("original_max_position_embeddings"))?,
            )),
            other => Err(FlowError::config(
                "config.json rope_parameters.rope_type",
                format!("`{other}` is not supported; FlowLM runs default, linear and llama3"),
            )),
        }
    }
}

/// Llama 3.1's frequency rule: wavelengths longer than `context / low` are stretched by
/// `factor`, shorter than `context / high` kept, and those between blended smoothly.
fn llama3_frequencies(base: Vec<f64>, factor: f64, low: f64, high: f64, context: f64) -> Vec<f64> {
    base.into_iter()
        .map(|frequency| {
            let wavelength = std::f64::consts::TAU / frequency;
            if wavelength < context / high {
                frequency
            } else if wavelength > context / low {
                frequency / factor
            } else {
                let smooth = (context / wavelength - low) / (high - low);
                (1.0 - smooth) * frequency / factor + smooth * frequency
            }
        })
        .collect()
}

/// Llama/Qwen names for a layer's tensors (`model.layers.N.*`).
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

/// An `architecture` decoder run bidirectionally.
pub fn decoder(
    config: DecoderConfig,
    architecture: &Architecture,
    weights: &Weights,
    device: &Device,
) -> Result<GatedNetwork> {
    config.validate()?;
    let (h, v) = (config.hidden_size, config.vocab_size);
    let embeddings = Matrix::load(weights, "model.embed_tokens.weight", [v, h], device)?;
    let tied = config.tie_word_embeddings.unwrap_or(true);
    let head = if tied && !weights.contains("lm_head.weight") {
        embeddings.clone()
    } else {
        Matrix::load(weights, "lm_head.weight", [v, h], device)?
    };
    let layout = GatedBlockLayout {
        names: &LAYER_NAMES,
        shape: config.heads(),
        feed_forward: config.intermediate_size,
        epsilon: config.rms_norm_eps,
        biases: Biases {
            query_key_value: architecture.always_qkv_bias || config.attention_bias,
            attention_output: config.attention_bias,
            feed_forward: config.mlp_bias,
        },
        query_key_norms: architecture
            .query_key_norms
            .then_some(["self_attn.q_norm", "self_attn.k_norm"]),
    };
    let blocks = (0..config.num_hidden_layers)
        .map(|n| GatedBlock::new(weights, &format!("model.layers.{n}"), &layout, device))
        .collect::<Result<Vec<_>>>()?;
    Ok(GatedNetwork {
        final_norm: RmsNorm::new(weights, "model.norm", h, config.rms_norm_eps, device)?,
        rotary: RotaryTables::from_frequencies(
            &config.rotary_frequencies(architecture)?,
            config.max_position_embeddings,
            device,
        ),
        embeddings,
        blocks,
        head,
        vocab_size: v,
        context_length: config.max_position_embeddings,
        mask_token_id: config.mask_token_id,
    })
}

/// `config` (the text of `config.json`) as an `architecture` decoder.
pub fn load_decoder(
    config: &str,
    architecture: &Architecture,
    weights: &Weights,
    device: &Device,
) -> Result<GatedNetwork> {
    let config: DecoderConfig = super::parse_config(config, architecture.name)?;
    decoder(config, architecture, weights, device)
}

/// The family registry's constructors.
pub fn load_llama(
    config: &str,
    weights: &Weights,
    device: &Device,
) -> Result<Box<dyn super::Network>> {
    Ok(Box::new(load_decoder(config, &LLAMA, weights, device)?))
}

pub fn load_qwen2(
    config: &str,
    weights: &Weights,
    device: &Device,
) -> Result<Box<dyn super::Network>> {
    Ok(Box::new(load_decoder(config, &QWEN2, weights, device)?))
}

pub fn load_qwen3(
    config: &str,
    weights: &Weights,
    device: &Device,
) -> Result<Box<dyn super::Network>> {
    Ok(Box::new(load_decoder(config, &QWEN3, weights, device)?))
}
