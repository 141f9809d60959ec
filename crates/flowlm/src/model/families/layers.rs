//! Building blocks of the pretrained families, loaded by checkpoint name from [`Weights`]:
//! PyTorch's `[out, in]` linear weights are transposed once at load, never per forward pass.

use crate::error::Result;
use crate::model::kv_cache::{CachePass, KvCache, KvPair, run_layers};
use crate::model::weights::Weights;
use burn::tensor::{Bool, DType, Device, FloatDType, Int, Tensor};

/// A weight matrix as the checkpoint stores it, `[rows, columns]` (a linear layer's
/// `[out, in]`, an embedding table's `[vocab, hidden]`), in its stored precision: f16 and bf16
/// stay 16-bit in memory ([`Weights::matrix`]) and are widened to f32 when a product reads
/// them ([`crate::model::fused::stored_matmul`], block by block on the CPU). Widening is exact,
/// so the results equal those of weights widened at load.
#[derive(Clone)]
pub struct Matrix(Tensor<2>);

impl Matrix {
    pub fn load(weights: &Weights, name: &str, shape: [usize; 2], device: &Device) -> Result<Self> {
        Ok(Self(weights.matrix(name, shape, device)?))
    }

    /// `x @ M^T`: `[B, L, columns]` -> `[B, L, rows]`.
    pub fn apply(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, length, columns] = x.dims();
        let rows = self.0.dims()[0];
        crate::model::fused::stored_matmul(x.reshape([batch * length, columns]), &self.0)
            .reshape([batch, length, rows])
    }

    /// The rows `ids` `[B, L]` picks, `[B, L, columns]` in f32 (an embedding lookup).
    pub fn rows(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, length] = ids.dims();
        let columns = self.0.dims()[1];
        let picked = self.0.clone().select(0, ids.reshape([batch * length]));
        let picked = if picked.dtype() == DType::F32 {
            picked
        } else {
            picked.cast(FloatDType::F32)
        };
        picked.reshape([batch, length, columns])
    }
}

/// `x @ weight^T + bias`, weight stored `[out, in]`.
pub struct Linear {
    weight: Matrix,
    bias: Option<Tensor<1>>,
}

impl Linear {
    /// `prefix.weight` `[out, in]` and, when `bias`, `prefix.bias` `[out]`.
    pub fn new(
        weights: &Weights,
        prefix: &str,
        inputs: usize,
        outputs: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let weight = Matrix::load(
            weights,
            &format!("{prefix}.weight"),
            [outputs, inputs],
            device,
        )?;
        let bias = bias
            .then(|| weights.tensor(&format!("{prefix}.bias"), [outputs], device))
            .transpose()?;
        Ok(Self { weight, bias })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = self.weight.apply(x);
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze(),
            None => y,
        }
    }
}

/// Layer normalisation with a learned scale and an optional shift (ModernBERT has none). Old
/// BERT checkpoints name them `gamma`/`beta`, newer ones `weight`/`bias`: both are read.
pub struct LayerNorm {
    weight: Tensor<1>,
    bias: Option<Tensor<1>>,
    epsilon: f64,
}

impl LayerNorm {
    pub fn new(
        weights: &Weights,
        prefix: &str,
        size: usize,
        epsilon: f64,
        device: &Device,
    ) -> Result<Self> {
        let (scale, shift) = if weights.contains(&format!("{prefix}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        let shift = format!("{prefix}.{shift}");
        Ok(Self {
            weight: weights.tensor(&format!("{prefix}.{scale}"), [size], device)?,
            bias: weights
                .contains(&shift)
                .then(|| weights.tensor(&shift, [size], device))
                .transpose()?,
            epsilon,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (variance, mean) = x.clone().var_mean_bias(2);
        let scaled =
            (x - mean) / (variance + self.epsilon).sqrt() * self.weight.clone().unsqueeze();
        match &self.bias {
            Some(bias) => scaled + bias.clone().unsqueeze(),
            None => scaled,
        }
    }
}

/// `[B, L, heads * size]` -> `[B, heads, L, size]`.
pub fn split_heads(t: Tensor<3>, heads: usize) -> Tensor<4> {
    let [batch, length, hidden] = t.dims();
    t.reshape([batch, length, heads, hidden / heads])
        .swap_dims(1, 2)
}

/// Scaled dot-product attention of `[B, H, L, size]` query heads over `[B, H, K, size]` keys
/// and values, back to `[B, L, H * size]`; `key_padding` `[B, K]` is true where a key must not
/// be attended to.
pub fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_padding: Option<Tensor<2, Bool>>,
) -> Tensor<3> {
    let [batch, _, keys, _] = k.dims();
    let mask = key_padding.map(|p| p.reshape([batch, 1, 1, keys]));
    attend_masked(q, k, v, mask)
}

/// [`attend`] with any mask broadcastable to `[B, 1 or H, L, K]` (true = not attended).
pub fn attend_masked(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
) -> Tensor<3> {
    let [batch, heads, length, size] = q.dims();
    crate::model::fused::attention(q, k, v, mask)
        .swap_dims(1, 2)
        .reshape([batch, length, heads * size])
}

/// Grouped-query attention: each of `[B, kv, L, size]`'s heads serves `heads / kv` query heads.
pub fn repeat_heads(t: Tensor<4>, heads: usize) -> Tensor<4> {
    let [batch, kv, length, size] = t.dims();
    if kv == heads {
        return t;
    }
    t.reshape([batch, kv, 1, length, size])
        .expand([batch, kv, heads / kv, length, size])
        .reshape([batch, heads, length, size])
}

/// Root-mean-square normalisation with a learned scale (`prefix.weight`).
pub struct RmsNorm {
    weight: Tensor<1>,
    epsilon: f64,
}

impl RmsNorm {
    pub fn new(
        weights: &Weights,
        prefix: &str,
        size: usize,
        epsilon: f64,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            weight: weights.tensor(&format!("{prefix}.weight"), [size], device)?,
            epsilon,
        })
    }

    /// Normalises the last dimension (the hidden width, or a head's width for Qwen3's
    /// per-head query/key norms).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean_square = x.clone().powi_scalar(2).mean_dim(D - 1);
        x / (mean_square + self.epsilon).sqrt() * self.weight.clone().unsqueeze()
    }
}

/// Rotary position tables (rotate-half convention), built once for `length` positions.
pub struct RotaryTables {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl RotaryTables {
    pub fn new(head_size: usize, length: usize, theta: f64, device: &Device) -> Self {
        Self::from_frequencies(&rotary_frequencies(head_size, theta), length, device)
    }

    /// Tables for `length` positions from a head's `head_size / 2` angular frequencies (as a
    /// RoPE scaling rule rewrote them).
    pub fn from_frequencies(frequencies: &[f64], length: usize, device: &Device) -> Self {
        let head_size = 2 * frequencies.len();
        let mut angles = Vec::with_capacity(length * head_size);
        for position in 0..length {
            let row: Vec<f32> = frequencies
                .iter()
                .map(|frequency| (position as f64 * frequency) as f32)
                .collect();
            angles.extend_from_slice(&row);
            angles.extend_from_slice(&row);
        }
        let angles = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(angles, [length, head_size]),
            device,
        );
        Self {
            cos: angles.clone().cos(),
            sin: angles.sin(),
        }
    }

    /// Rotates `[B, H, L, size]` heads by the angles of `positions` `[B, L]`.
    pub fn apply(&self, x: Tensor<4>, positions: Tensor<2, Int>) -> Tensor<4> {
        let [batch, _, length, size] = x.dims();
        let rows = |table: &Tensor<2>| {
            table
                .clone()
                .select(0, positions.clone().reshape([batch * length]))
                .reshape([batch, 1, length, size])
        };
        crate::model::fused::rotary(x, rows(&self.cos), rows(&self.sin))
    }
}

/// The standard rotary frequencies `theta^(-2i / head_size)`, `i < head_size / 2`.
pub fn rotary_frequencies(head_size: usize, theta: f64) -> Vec<f64> {
    (0..head_size / 2)
        .map(|i| theta.powf(-2.0 * i as f64 / head_size as f64))
        .collect()
}

/// Head counts of a rotary attention layer and the config keys that set them (for errors).
pub struct HeadShape<'a> {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// A head's width when the config sets it (`head_dim`); else `hidden / heads`.
    pub head_size: Option<usize>,
    /// Config keys of hidden size, heads and key/value heads, as the family's config names them.
    pub keys: [&'a str; 3],
}

impl HeadShape<'_> {
    /// A head's width (after [`HeadShape::validate`]).
    pub fn size(&self) -> usize {
        self.head_size.unwrap_or(self.hidden / self.heads.max(1))
    }

    /// Positive counts, heads dividing the width (unless `head_dim` sets a head's width), an
    /// even head size (rotary), and key/value heads dividing the query heads.
    pub fn validate(&self) -> Result<()> {
        let [hidden_key, heads_key, kv_key] = self.keys;
        let invalid = |message: String| crate::error::FlowError::config("config.json", message);
        let (hidden, heads, kv) = (self.hidden, self.heads, self.kv_heads);
        let divides = self.head_size.is_some() || hidden.is_multiple_of(heads.max(1));
        if heads == 0 || hidden == 0 || !divides {
            return Err(invalid(format!(
                "{hidden_key} {hidden} must be a positive multiple of {heads_key} {heads}"
            )));
        }
        if self.size() == 0 || !self.size().is_multiple_of(2) {
            return Err(invalid(format!(
                "the head size ({}) must be positive and even (rotary)",
                self.head_size
                    .map_or(format!("{hidden_key} / {heads_key}"), |_| "head_dim".into())
            )));
        }
        if kv == 0 || !heads.is_multiple_of(kv) {
            return Err(invalid(format!(
                "{kv_key} {kv} must divide {heads_key} {heads}"
            )));
        }
        Ok(())
    }
}

/// Checkpoint names (after the layer prefix) of a [`GatedBlock`]'s nine tensors, in the order
/// attention norm, query, key, value, attention output, feed-forward norm, gate, up, down.
pub type GatedBlockNames = [&'static str; 9];

/// Which of a [`GatedBlock`]'s linears carry biases.
#[derive(Debug, Clone, Copy, Default)]
pub struct Biases {
    pub query_key_value: bool,
    pub attention_output: bool,
    pub feed_forward: bool,
}

/// Everything but the weights that shapes a [`GatedBlock`].
pub struct GatedBlockLayout<'a> {
    pub names: &'a GatedBlockNames,
    pub shape: HeadShape<'a>,
    pub feed_forward: usize,
    pub epsilon: f64,
    pub biases: Biases,
    /// Names of per-head RMSNorms on queries and keys before rotary (Qwen3's `q_norm`/`k_norm`).
    pub query_key_norms: Option<[&'a str; 2]>,
}

/// A LLaMA-style block: RMSNorm, rotary grouped-query attention, RMSNorm, SwiGLU
/// (`down(silu(gate x) * up x)`), both with residuals. LLaDA, Dream, Llama, Qwen2 and Qwen3
/// differ only in names, biases, head width and Qwen3's query/key norms.
pub struct GatedBlock {
    attention_norm: RmsNorm,
    query_key_norms: Option<[RmsNorm; 2]>,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    feed_forward_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    heads: usize,
    kv_heads: usize,
}

impl GatedBlock {
    pub fn new(
        weights: &Weights,
        prefix: &str,
        layout: &GatedBlockLayout,
        device: &Device,
    ) -> Result<Self> {
        let (shape, biases) = (&layout.shape, layout.biases);
        let (h, size) = (shape.hidden, shape.size());
        let (attended, kv) = (shape.heads * size, shape.kv_heads * size);
        let name = |i: usize| format!("{prefix}.{}", layout.names[i]);
        let linear = |i: usize, inputs, outputs, bias| {
            Linear::new(weights, &name(i), inputs, outputs, bias, device)
        };
        let norm = |name: &str, size| {
            RmsNorm::new(
                weights,
                &format!("{prefix}.{name}"),
                size,
                layout.epsilon,
                device,
            )
        };
        let query_key_norms = layout
            .query_key_norms
            .map(|[q, k]| Ok::<_, crate::error::FlowError>([norm(q, size)?, norm(k, size)?]))
            .transpose()?;
        let feed_forward = layout.feed_forward;
        Ok(Self {
            attention_norm: norm(layout.names[0], h)?,
            query_key_norms,
            query: linear(1, h, attended, biases.query_key_value)?,
            key: linear(2, h, kv, biases.query_key_value)?,
            value: linear(3, h, kv, biases.query_key_value)?,
            output: linear(4, attended, h, biases.attention_output)?,
            feed_forward_norm: norm(layout.names[5], h)?,
            gate: linear(6, h, feed_forward, biases.feed_forward)?,
            up: linear(7, h, feed_forward, biases.feed_forward)?,
            down: linear(8, feed_forward, h, biases.feed_forward)?,
            heads: shape.heads,
            kv_heads: shape.kv_heads,
        })
    }

    /// The block on `x` (the columns a pass computes, at `positions`); also returns the
    /// keys/values it attended to. `cache` is the pass and this layer's index.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rotary: &RotaryTables,
        positions: &Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        cache: Option<(&CachePass, usize)>,
    ) -> (Tensor<3>, KvPair) {
        let h = self.attention_norm.forward(x.clone());
        let rotate = |t: Tensor<3>, heads, norm: usize| {
            let t = split_heads(t, heads);
            let t = match &self.query_key_norms {
                Some(norms) => norms[norm].forward(t),
                None => t,
            };
            rotary.apply(t, positions.clone())
        };
        let q = rotate(self.query.forward(h.clone()), self.heads, 0);
        let fresh = KvPair {
            keys: rotate(self.key.forward(h.clone()), self.kv_heads, 1),
            values: split_heads(self.value.forward(h), self.kv_heads),
        };
        let kv = match cache {
            Some((pass, layer)) => pass.attended(layer, fresh),
            None => fresh,
        };
        let attended = attend(
            q,
            repeat_heads(kv.keys.clone(), self.heads),
            repeat_heads(kv.values.clone(), self.heads),
            padding,
        );
        let x = x + self.output.forward(attended);
        let h = self.feed_forward_norm.forward(x.clone());
        let x = x + self.down.forward(crate::model::fused::swiglu(
            self.gate.forward(h.clone()),
            self.up.forward(h),
        ));
        (x, kv)
    }
}

/// Token embeddings, a stack of [`GatedBlock`]s, a final RMSNorm and an output head: the whole
/// network of LLaDA, Dream and the A2D decoders, which differ only in how they build it.
pub struct GatedNetwork {
    /// `[vocab, hidden]`.
    pub embeddings: Matrix,
    pub blocks: Vec<GatedBlock>,
    pub final_norm: RmsNorm,
    /// `[vocab, hidden]`: a separate head, or the tied embeddings.
    pub head: Matrix,
    pub rotary: RotaryTables,
    pub vocab_size: usize,
    pub context_length: usize,
    pub mask_token_id: Option<u32>,
}

impl super::Network for GatedNetwork {
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn context_length(&self) -> usize {
        self.context_length
    }

    fn mask_token_id(&self) -> Option<u32> {
        self.mask_token_id
    }

    fn forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        _time: Tensor<1>,
        pass: Option<&CachePass>,
    ) -> Result<(Tensor<3>, KvCache)> {
        let (ids, positions) = super::pass_columns(ids, positions, pass);
        let x = self.embeddings.rows(ids);
        let (x, cache) = run_layers(&self.blocks, x, pass, |block, x, cache| {
            block.forward(x, &self.rotary, &positions, padding.clone(), cache)
        });
        Ok((self.head.apply(self.final_norm.forward(x)), cache))
    }
}
