//! MDLM's diffusion transformer (`model_type` "mdlm", the `MDLM` class of the published
//! `kuleshov-group/mdlm-owt` checkpoint, whose backbone is `models/dit.py`'s DiT): pre-norm
//! blocks of weight-only LayerNorm, adaLN modulation from a time embedding, rotary attention
//! (rotate-half) from one packed `attn_qkv` matrix, a tanh-GELU MLP, gated residuals, and an
//! adaLN-modulated output layer with its own linear head. Names: `backbone.{vocab_embed.
//! embedding, sigma_map.mlp.{0,2}, blocks.N.{norm1, attn_qkv, attn_out, norm2, mlp.{0,2},
//! adaLN_modulation}, output_layer.{norm_final, linear, adaLN_modulation}}`.
//!
//! The published checkpoints are not time-conditioned (`time_conditioning` false: the time
//! embedding reads sigma = 0, and the conditioning vector is computed once here). A
//! time-conditioned checkpoint reads each row's noise level sigma(t) = -log(1 - (1 - 1e-3) t),
//! MDLM's log-linear schedule (`noise_schedule.py`); samplers that carry no time give it the
//! row's masked share of the answer, the t at which MDLM's forward process leaves that share
//! masked. MDLM's mask is the tokenizer's mask token,
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
        crate::limits::within(self.model_length, 1, crate::limits::MAX_SEQUENCE)
            .map_err(|m| invalid("model_length", m))
    }
}

/// The adaLN shift and scale, `[B or 1, 1, hidden]` each.
struct Modulation {
    shift: Tensor<3>,
    scale: Tensor<3>,
}

impl Modulation {
    fn apply(&self, x: Tensor<3>) -> Tensor<3> {
        x * (self.scale.clone() + 1.0) + self.shift.clone()
    }
}

/// `prefix.adaLN_modulation`: the conditioning vector `[B, 1, cond]` to `parts` vectors of the
/// hidden width.
struct AdaLn {
    affine: Linear,
    hidden: usize,
}

impl AdaLn {
    fn new(
        weights: &Weights,
        prefix: &str,
        cond: usize,
        hidden: usize,
        parts: usize,
        device: &Device,
    ) -> Result<Self> {
        let name = format!("{prefix}.adaLN_modulation");
        let affine = Linear::new(weights, &name, cond, parts * hidden, true, device)?;
        Ok(Self { affine, hidden })
    }

    /// The `N` vectors (`N` = the `parts` it was loaded with).
    fn vectors<const N: usize>(&self, condition: &Tensor<3>) -> [Tensor<3>; N] {
        let all = self.affine.forward(condition.clone());
        let rows = all.dims()[0];
        std::array::from_fn(|i| {
            all.clone()
                .slice([0..rows, 0..1, i * self.hidden..(i + 1) * self.hidden])
        })
    }
}

/// One `DDiTBlock`.
struct DitBlock {
    /// Six vectors: attention shift, scale, gate, then the MLP's.
    modulation: AdaLn,
    attention_norm: LayerNorm,
    /// `[3 hidden, hidden]`: queries, keys, values stacked.
    qkv: Matrix,
    attention_output: Linear,
    mlp_norm: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
}

impl DitBlock {
    fn new(
        weights: &Weights,
        prefix: &str,
        hidden: usize,
        cond: usize,
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
        let inner = MLP_RATIO * hidden;
        Ok(Self {
            modulation: AdaLn::new(weights, prefix, cond, hidden, 6, device)?,
            attention_norm: norm("norm1")?,
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

    /// The block on the columns a pass computes under `condition` `[B or 1, 1, cond]`; also
    /// returns the keys/values attended to.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: Tensor<3>,
        condition: &Tensor<3>,
        heads: usize,
        rotary: &RotaryTables,
        positions: &Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        cache: Option<(&CachePass, usize)>,
    ) -> (Tensor<3>, KvPair) {
        let [batch, length, hidden] = x.dims();
        let [shift, scale, attention_gate, mlp_shift, mlp_scale, mlp_gate] =
            self.modulation.vectors(condition);
        let attention_modulation = Modulation { shift, scale };
        let mlp_modulation = Modulation {
            shift: mlp_shift,
            scale: mlp_scale,
        };
        let normed = attention_modulation.apply(self.attention_norm.forward(x.clone()));
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
        let x = x + self.attention_output.forward(attended) * attention_gate;
        let normed = mlp_modulation.apply(self.mlp_norm.forward(x.clone()));
        let mlp = self
            .mlp_out
            .forward(gelu_approximate(self.mlp_in.forward(normed)));
        (x + mlp * mlp_gate, kv)
    }
}

/// An MDLM diffusion transformer.
pub struct MdlmModel {
    pub config: MdlmConfig,
    /// `[vocab, hidden]`.
    embeddings: Matrix,
    time_embedding: TimeEmbedding,
    /// The conditioning vector at sigma = 0 `[1, 1, cond]`, for unconditioned checkpoints.
    fixed_condition: Tensor<3>,
    blocks: Vec<DitBlock>,
    final_norm: LayerNorm,
    /// Shift and scale of the output layer.
    final_modulation: AdaLn,
    head: Linear,
    rotary: RotaryTables,
}

impl MdlmModel {
    pub fn new(config: MdlmConfig, weights: &Weights, device: &Device) -> Result<Self> {
        config.validate()?;
        let (h, v, cond) = (config.hidden_dim, config.vocab_size, config.cond_dim);
        let time_embedding = TimeEmbedding::new(weights, cond, device)?;
        let fixed_condition = time_embedding.forward(Tensor::zeros([1], device));
        let blocks = (0..config.n_blocks)
            .map(|n| DitBlock::new(weights, &format!("backbone.blocks.{n}"), h, cond, device))
            .collect::<Result<Vec<_>>>()?;
        let output = "backbone.output_layer";
        Ok(Self {
            embeddings: Matrix::load(weights, "backbone.vocab_embed.embedding", [v, h], device)?,
            time_embedding,
            fixed_condition,
            blocks,
            final_norm: LayerNorm::new(
                weights,
                &format!("{output}.norm_final"),
                h,
                LAYER_NORM_EPS,
                device,
            )?,
            final_modulation: AdaLn::new(weights, output, cond, h, 2, device)?,
            head: Linear::new(weights, &format!("{output}.linear"), h, v, true, device)?,
            rotary: RotaryTables::new(h / config.n_heads, config.model_length, ROTARY_BASE, device),
            config,
        })
    }

    /// The conditioning vectors: one per row from its time `[B]` for a time-conditioned
    /// checkpoint, the fixed sigma = 0 one otherwise.
    fn condition(&self, time: Tensor<1>) -> Tensor<3> {
        if !self.config.time_conditioning {
            return self.fixed_condition.clone();
        }
        // MDLM's log-linear total noise, sigma(t) = -log(1 - (1 - eps) t).
        let sigma = (time.mul_scalar(-(1.0 - SCHEDULE_EPS)) + 1.0).log().neg();
        self.time_embedding.forward(sigma)
    }
}

/// The epsilon of MDLM's log-linear schedule (`LogLinearNoise`).
const SCHEDULE_EPS: f64 = 1e-3;

/// `sigma_map` (`TimestepEmbedder`): sinusoidal features of sigma through a two-layer MLP, then
/// the SiLU the DiT applies.
struct TimeEmbedding {
    first: Linear,
    second: Linear,
    /// exp(-ln(10000) i / half), `[1, half]`.
    frequencies: Tensor<2>,
}

impl TimeEmbedding {
    fn new(weights: &Weights, cond: usize, device: &Device) -> Result<Self> {
        let map = "backbone.sigma_map.mlp";
        let half = TIME_FEATURES / 2;
        let frequencies: Vec<f32> = (0..half)
            .map(|i| (-(10_000f64.ln()) * i as f64 / half as f64).exp() as f32)
            .collect();
        Ok(Self {
            first: Linear::new(
                weights,
                &format!("{map}.0"),
                TIME_FEATURES,
                cond,
                true,
                device,
            )?,
            second: Linear::new(weights, &format!("{map}.2"), cond, cond, true, device)?,
            frequencies: Tensor::from_data(TensorData::new(frequencies, [1, half]), device),
        })
    }

    /// `silu(sigma_map(sigma))` `[B, 1, cond]` for sigma `[B]`.
    fn forward(&self, sigma: Tensor<1>) -> Tensor<3> {
        let rows = sigma.dims()[0];
        let angles = sigma.reshape([rows, 1]) * self.frequencies.clone();
        let features = Tensor::cat(vec![angles.clone().cos(), angles.sin()], 1).reshape([
            rows,
            1,
            TIME_FEATURES,
        ]);
        silu(self.second.forward(silu(self.first.forward(features))))
    }
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
        time: Tensor<1>,
        pass: Option<&CachePass>,
    ) -> Result<(Tensor<3>, KvCache)> {
        let (ids, positions) = super::pass_columns(ids, positions, pass);
        let condition = self.condition(time);
        let x = self.embeddings.rows(ids);
        let heads = self.config.n_heads;
        let (x, cache) = run_layers(&self.blocks, x, pass, |block, x, cache| {
            block.forward(
                x,
                &condition,
                heads,
                &self.rotary,
                &positions,
                padding.clone(),
                cache,
            )
        });
        let [shift, scale] = self.final_modulation.vectors(&condition);
        let x = Modulation { shift, scale }.apply(self.final_norm.forward(x));
        Ok((self.head.forward(x), cache))
    }
}

/// The family registry's constructor: `config` is the text of `config.json`.
pub fn load(config: &str, weights: &Weights, device: &Device) -> Result<Box<dyn super::Network>> {
    let config: MdlmConfig = super::parse_config(config, "MDLM")?;
    Ok(Box::new(MdlmModel::new(config, weights, device)?))
}
