//! LLaDA (`model_type` "llada", `LLaDAModelLM`): a bidirectional LLaMA-style mask predictor.
//! Names as its published `modeling_llada.py` writes them: `model.transformer.{wte,
//! blocks.N.{q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj, ff_out, attn_norm, ff_norm},
//! ln_f, ff_out}`. Pre-norm blocks with RMSNorm, rotary positions (rotate-half), SwiGLU
//! (`silu(ff_proj x) * up_proj x`), no causal mask; the output head is `ff_out` unless
//! `weight_tying`. The mask id comes from `config.json` (126336 in the 8B models).

use super::layers::{
    Biases, GatedBlock, GatedBlockLayout, GatedBlockNames, GatedNetwork, HeadShape, Matrix,
    RmsNorm, RotaryTables,
};
use crate::error::{FlowError, Result};
use crate::model::weights::Weights;
use burn::tensor::Device;
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
    /// Architecture switches of LLaDA's modeling file; FlowLM runs the released models' values
    /// (see [`LladaConfig::supported`]) and refuses others by name.
    #[serde(default)]
    pub block_type: Option<String>,
    #[serde(default)]
    pub activation_type: Option<String>,
    #[serde(default)]
    pub layer_norm_type: Option<String>,
    #[serde(default)]
    pub rope: Option<bool>,
    #[serde(default)]
    pub alibi: Option<bool>,
    #[serde(default)]
    pub include_qkv_bias: Option<bool>,
    #[serde(default)]
    pub attention_layer_norm: Option<bool>,
    #[serde(default)]
    pub input_emb_norm: Option<bool>,
    #[serde(default)]
    pub scale_logits: Option<bool>,
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

    fn heads(&self) -> HeadShape<'static> {
        HeadShape {
            hidden: self.d_model,
            heads: self.n_heads,
            kv_heads: self.kv_heads(),
            head_size: None,
            keys: ["d_model", "n_heads", "n_kv_heads"],
        }
    }

    /// The released checkpoints' architecture switches, which this family implements: a key
    /// that is absent or holds the listed value passes; any other value is named.
    fn supported(&self) -> Result<()> {
        let text = |value: &Option<String>, wanted: &str| {
            value
                .as_deref()
                .filter(|v| *v != wanted)
                .map(|v| (v.to_string(), wanted.to_string()))
        };
        let flag = |value: Option<bool>, wanted: bool| {
            value
                .filter(|v| *v != wanted)
                .map(|v| (v.to_string(), wanted.to_string()))
        };
        let checks = [
            ("block_type", text(&self.block_type, "llama")),
            ("activation_type", text(&self.activation_type, "silu")),
            ("layer_norm_type", text(&self.layer_norm_type, "rms")),
            ("rope", flag(self.rope, true)),
            ("alibi", flag(self.alibi, false)),
            ("include_qkv_bias", flag(self.include_qkv_bias, false)),
            (
                "attention_layer_norm",
                flag(self.attention_layer_norm, false),
            ),
            ("input_emb_norm", flag(self.input_emb_norm, false)),
            ("scale_logits", flag(self.scale_logits, false)),
        ];
        match checks
            .into_iter()
            .find_map(|(key, bad)| bad.map(|b| (key, b)))
        {
            Some((key, (value, wanted))) => Err(FlowError::config(
                format!("config.json {key}"),
                format!(
                    "`{value}` is not supported; FlowLM's LLaDA runs `{wanted}` (as the released models)"
                ),
            )),
            None => Ok(()),
        }
    }

    fn validate(&self) -> Result<()> {
        self.heads().validate()?;
        self.supported()?;
        crate::limits::within(self.max_sequence_length, 1, crate::limits::MAX_SEQUENCE)
            .map_err(|m| FlowError::config("config.json", format!("max_sequence_length {m}")))
    }
}

/// LLaDA's names for a block's tensors (`model.transformer.blocks.N.*`).
const BLOCK_NAMES: GatedBlockNames = [
    "attn_norm",
    "q_proj",
    "k_proj",
    "v_proj",
    "attn_out",
    "ff_norm",
    "ff_proj",
    "up_proj",
    "ff_out",
];

/// A LLaDA mask predictor.
pub fn network(config: LladaConfig, weights: &Weights, device: &Device) -> Result<GatedNetwork> {
    config.validate()?;
    let (d, rows) = (config.d_model, config.embedding_rows());
    let embeddings = Matrix::load(weights, "model.transformer.wte.weight", [rows, d], device)?;
    let head = if config.weight_tying {
        embeddings.clone()
    } else {
        Matrix::load(
            weights,
            "model.transformer.ff_out.weight",
            [rows, d],
            device,
        )?
    };
    let bias = config.include_bias;
    let layout = GatedBlockLayout {
        names: &BLOCK_NAMES,
        shape: config.heads(),
        feed_forward: config.mlp_hidden_size.unwrap_or(config.mlp_ratio * d),
        epsilon: config.rms_norm_eps,
        biases: Biases {
            query_key_value: bias,
            attention_output: bias,
            feed_forward: bias,
        },
        query_key_norms: None,
    };
    let blocks = (0..config.n_layers)
        .map(|n| {
            let prefix = format!("model.transformer.blocks.{n}");
            GatedBlock::new(weights, &prefix, &layout, device)
        })
        .collect::<Result<Vec<_>>>()?;
    let epsilon = config.rms_norm_eps;
    Ok(GatedNetwork {
        final_norm: RmsNorm::new(weights, "model.transformer.ln_f", d, epsilon, device)?,
        rotary: RotaryTables::new(
            d / config.n_heads,
            config.max_sequence_length,
            config.rope_theta,
            device,
        ),
        embeddings,
        blocks,
        head,
        vocab_size: rows,
        context_length: config.max_sequence_length,
        mask_token_id: config.mask_token_id,
    })
}

/// The family registry's constructor: `config` is the text of `config.json`.
pub fn load(config: &str, weights: &Weights, device: &Device) -> Result<Box<dyn super::Network>> {
    let config: LladaConfig = super::parse_config(config, "LLaDA")?;
    Ok(Box::new(network(config, weights, device)?))
}
