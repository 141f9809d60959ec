//! MDLM's diffusion transformer (`model_type` "mdlm", the `MDLM` class of the published
//! `kuleshov-group/mdlm-owt` checkpoint, whose backbone is `models/dit.py`'s DiT): pre-norm
//! blocks of weight-only LayerNorm, adaLN modulation from a time embedding, rotary attention
//! (rotate-half) from one packed `attn_qkv` matrix, a tanh-GELU MLP, gated residuals, and an
//! adaLN-modulated output layer with its own linear head. Names: `backbone.{vocab_embed.
//! embedding, sigma_map.mlp.{0,2}, blocks.N.{norm1, attn_qkv, attn_out, norm2, mlp.{0,2},
//! adaLN_modulation}, output_layer.{norm_final, linear, adaLN_modulation}}`.
//!
//! The published checkpoints are not time-conditioned (`time_conditioning` false: the time
//! embedding reads sigma = 0), so every block's modulation is one vector, computed once here.
//! Time-conditioned checkpoints are refused by name. MDLM's mask is the tokenizer's mask token,
//! or the last id of the vocabulary when the tokenizer has none (GPT-2's tokenizer + 1 in
//! `mdlm-owt`), which is the id FlowLM's tokenizer adds.

use super::layers::{LayerNorm, Linear, Matrix, RotaryTables, attend, split_heads};
use crate::error::{FlowError, Result};
use crate::model::kv_cache::{CachePass, KvCache, KvPair, run_layers};
use crate::model::weights::Weights;
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::Deserialize;

/// `config.json` of an MDLM checkpoint (`MDLMConfig`); keys FlowLM does not use are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct MdlmConfig {
    pub vocab_size: usize,
    /// The sequence length it was trained on (its context).
    pub model_length: usize,
    pub hidden_dim: usize,
    pub cond_dim: usize,
    pub n_blocks: usize,
    pub n_heads: usize,
    #[serde(default)]
    pub time_conditioning: bool,
}

/// Width of the sinusoidal time features the time embedding reads (`TimestepEmbedder`).
const TIME_FEATURES: usize = 256;
/// MLP width as a multiple of the hidden width (`DDiTBlock`'s `mlp_ratio`).
const MLP_RATIO: usize = 4;
/// `F.layer_norm`'s default epsilon.
const LAYER_NORM_EPS: f64 = 1e-5;
/// The rotary base of `models/dit.py`'s `Rotary`.
const ROTARY_BASE: f64 = 10_000.0;

impl MdlmConfig {
    fn validate(&self) -> Result<()> {
        let invalid =
            |key: &str, message: String| FlowError::config(format!("config.json {key}"), message);
        let (hidden, heads) = (self.hidden_dim, self.n_heads);
        if heads == 0 || hidden == 0 || !hidden.is_multiple_of(heads) {
            return Err(invalid(
                "hidden_dim",
                format!("{hidden} must be a positive multiple of n_heads {heads}"),
            ));
        }
        if !(hidden / heads).is_multiple_of(2) {
            return Err(invalid(
                "n_heads",
                "hidden_dim / n_heads must be even (rotary)".into(),
            ));
        }
        if self.cond_dim == 0 {
            return Err(invalid("cond_dim", "must be positive".into()));
        }
        if self.time_conditioning {
            return Err(invalid(
                "time_conditioning",
                "true is not supported: FlowLM runs MDLM's unconditioned checkpoints (sigma = 0)"
                    .into(),
            ));
        }
        crate::limits::within(self.model_length, 1, crate::limits::MAX_SEQUENCE)
            .map_err(|m| invalid("model_length", m))
    }
}

/// The adaLN vectors of one block (or of the output layer), `[1, 1, hidden]` each.
struct Modulation {
    shift: Tensor<3>,
    scale: Tensor<3>,
}

impl Modulation {
    fn apply(&self, x: Tensor<3>) -> Tensor<3> {
        x * (self.scale.clone() + 1.0) + self.shift.clone()
    }
}

/// `prefix.adaLN_modulation` applied to the conditioning vector `c` `[1, 1, cond]`, split into
/// `parts` vectors of the hidden width.
fn modulation_vectors(
    weights: &Weights,
    prefix: &str,
    condition: &Tensor<3>,
    hidden: usize,
    parts: usize,
    device: &Device,
) -> Result<Vec<Tensor<3>>> {
    let cond = condition.dims()[2];
    let affine = Linear::new(
        weights,
        &format!("{prefix}.adaLN_modulation"),
        cond,
        parts * hidden,
        true,
        device,
    )?;
    let all = affine.forward(condition.clone());
    Ok((0..parts)
        .map(|i| {
            all.clone()
                .slice([0..1, 0..1, i * hidden..(i + 1) * hidden])
        })
        .collect())
}

/// One `DDiTBlock`.
struct DitBlock {
    attention_norm: LayerNorm,
    attention_modulation: Modulation,
    attention_gate: Tensor<3>,
    /// `[3 hidden, hidden]`: queries, keys, values stacked.
    qkv: Matrix,
    attention_output: Linear,
    mlp_norm: LayerNorm,
    mlp_modulation: Modulation,
    mlp_gate: Tensor<3>,
    mlp_in: Linear,
    mlp_out: Linear,
}

impl DitBlock {
    fn new(
        weights: &Weights,
        prefix: &str,
        hidden: usize,
        condition: &Tensor<3>,
        device: &Device,
    ) -> Result<Self> {
        let norm = |name: &str| {
            LayerNorm::new(
                weights,
                &format!("{prefix}.{name}"),
                hidden,
                LAYER_NORM_EPS,
                device,
            )
        };
        let mut parts = modulation_vectors(weights, prefix, condition, hidden, 6, device)?;
        let mut next = || parts.remove(0);
        let (shift, scale, attention_gate) = (next(), next(), next());
        let (mlp_shift, mlp_scale, mlp_gate) = (next(), next(), next());
        let inner = MLP_RATIO * hidden;
        Ok(Self {
            attention_norm: norm("norm1")?,
            attention_modulation: Modulation { shift, scale },
            attention_gate,
            qkv: Matrix::load(
                weights,
                &format!("{prefix}.attn_qkv.weight"),
                [3 * hidden, hidden],
                device,
            )?,
            attention_output: Linear::new(
                weights,
                &format!("{prefix}.attn_out"),
                hidden,
                hidden,
                false,
                device,
            )?,
            mlp_norm: norm("norm2")?,
            mlp_modulation: Modulation {
                shift: mlp_shift,
                scale: mlp_scale,
            },
            mlp_gate,
            mlp_in: Linear::new(
                weights,
                &format!("{prefix}.mlp.0"),
                hidden,
                inner,
                true,
                device,
            )?,
            mlp_out: Linear::new(
                weights,
                &format!("{prefix}.mlp.2"),
                inner,
                hidden,
                true,
                device,
            )?,
        })
    }

    /// The block on the columns a pass computes; also returns the keys/values attended to.
    fn forward(
        &self,
        x: Tensor<3>,
        heads: usize,
        rotary: &RotaryTables,
        positions: &Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        cache: Option<(&CachePass, usize)>,
    ) -> (Tensor<3>, KvPair) {
        let [batch, length, hidden] = x.dims();
        let normed = self
            .attention_modulation
            .apply(self.attention_norm.forward(x.clone()));
        let qkv = self.qkv.apply(normed);
        let part = |i: usize| {
            let t = qkv
                .clone()
                .slice([0..batch, 0..length, i * hidden..(i + 1) * hidden]);
            split_heads(t, heads)
        };
        let fresh = KvPair {
            keys: rotary.apply(part(1), positions.clone()),
            values: part(2),
        };
        let kv = match cache {
            Some((pass, layer)) => pass.attended(layer, fresh),
            None => fresh,
        };
        let query = rotary.apply(part(0), positions.clone());
        let attended = attend(query, kv.keys.clone(), kv.values.clone(), padding);
        let x = x + self.attention_output.forward(attended) * self.attention_gate.clone();
        let normed = self.mlp_modulation.apply(self.mlp_norm.forward(x.clone()));
        let mlp = self
            .mlp_out
            .forward(gelu_approximate(self.mlp_in.forward(normed)));
        (x + mlp * self.mlp_gate.clone(), kv)
    }
}

/// An MDLM diffusion transformer.
pub struct MdlmModel {
    pub config: MdlmConfig,
    /// `[vocab, hidden]`.
    embeddings: Matrix,
    blocks: Vec<DitBlock>,
    final_norm: LayerNorm,
    final_modulation: Modulation,
    head: Linear,
    rotary: RotaryTables,
}

impl MdlmModel {
    pub fn new(config: MdlmConfig, weights: &Weights, device: &Device) -> Result<Self> {
        config.validate()?;
        let (h, v) = (config.hidden_dim, config.vocab_size);
        let condition = time_condition(weights, config.cond_dim, device)?;
        let blocks = (0..config.n_blocks)
            .map(|n| {
                DitBlock::new(
                    weights,
                    &format!("backbone.blocks.{n}"),
                    h,
                    &condition,
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let output = "backbone.output_layer";
        let mut parts = modulation_vectors(weights, output, &condition, h, 2, device)?;
        let scale = parts.remove(1);
        Ok(Self {
            embeddings: Matrix::load(weights, "backbone.vocab_embed.embedding", [v, h], device)?,
            blocks,
            final_norm: LayerNorm::new(
                weights,
                &format!("{output}.norm_final"),
                h,
                LAYER_NORM_EPS,
                device,
            )?,
            final_modulation: Modulation {
                shift: parts.remove(0),
                scale,
            },
            head: Linear::new(weights, &format!("{output}.linear"), h, v, true, device)?,
            rotary: RotaryTables::new(h / config.n_heads, config.model_length, ROTARY_BASE, device),
            config,
        })
    }
}

/// `silu(sigma_map(features(0)))` `[1, 1, cond]`: the conditioning vector of an unconditioned
/// checkpoint. The sinusoidal features of sigma = 0 are cos(0) = 1 then sin(0) = 0.
fn time_condition(weights: &Weights, cond: usize, device: &Device) -> Result<Tensor<3>> {
    let half = TIME_FEATURES / 2;
    let features: Vec<f32> = (0..TIME_FEATURES)
        .map(|i| if i < half { 1.0 } else { 0.0 })
        .collect();
    let features = Tensor::<3>::from_data(TensorData::new(features, [1, 1, TIME_FEATURES]), device);
    let map = "backbone.sigma_map.mlp";
    let first = Linear::new(
        weights,
        &format!("{map}.0"),
        TIME_FEATURES,
        cond,
        true,
        device,
    )?;
    let second = Linear::new(weights, &format!("{map}.2"), cond, cond, true, device)?;
    Ok(silu(second.forward(silu(first.forward(features)))))
}

impl super::Network for MdlmModel {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn context_length(&self) -> usize {
        self.config.model_length
    }

    fn forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        pass: Option<&CachePass>,
    ) -> Result<(Tensor<3>, KvCache)> {
        let (ids, positions) = super::pass_columns(ids, positions, pass);
        let x = self.embeddings.rows(ids);
        let heads = self.config.n_heads;
        let (x, cache) = run_layers(&self.blocks, x, pass, |block, x, cache| {
            block.forward(x, heads, &self.rotary, &positions, padding.clone(), cache)
        });
        let x = self.final_modulation.apply(self.final_norm.forward(x));
        Ok((self.head.forward(x), cache))
    }
}

/// The family registry's constructor: `config` is the text of `config.json`.
pub fn load(config: &str, weights: &Weights, device: &Device) -> Result<Box<dyn super::Network>> {
    let config: MdlmConfig = super::parse_config(config, "MDLM")?;
    Ok(Box::new(MdlmModel::new(config, weights, device)?))
}
