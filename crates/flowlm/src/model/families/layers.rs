//! Building blocks of the pretrained families, loaded by checkpoint name from [`Weights`]:
//! PyTorch's `[out, in]` linear weights are transposed once at load, never per forward pass.

use crate::error::Result;
use crate::model::weights::Weights;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor};

/// `x @ weight + bias`, weight stored `[in, out]`.
pub struct Linear {
    weight: Tensor<2>,
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
        let weight = weights
            .tensor(&format!("{prefix}.weight"), [outputs, inputs], device)?
            .transpose();
        let bias = bias
            .then(|| weights.tensor(&format!("{prefix}.bias"), [outputs], device))
            .transpose()?;
        Ok(Self { weight, bias })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = x.matmul(self.weight.clone().unsqueeze());
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

/// Scaled dot-product attention of `[B, H, L, size]` heads back to `[B, L, H * size]`;
/// `key_padding` `[B, L]` is true where a key must not be attended to.
pub fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_padding: Option<Tensor<2, Bool>>,
) -> Tensor<3> {
    let [batch, _, length, _] = q.dims();
    let mask = key_padding.map(|p| p.reshape([batch, 1, 1, length]));
    attend_masked(q, k, v, mask)
}

/// [`attend`] with any mask broadcastable to `[B, 1 or H, L, L]` (true = not attended).
pub fn attend_masked(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
) -> Tensor<3> {
    let [batch, heads, length, size] = q.dims();
    let mask = mask.map(|m| m.expand([batch, heads, length, length]));
    attention(q, k, v, mask, None, AttentionModuleOptions::default())
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

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mean_square = x.clone().powi_scalar(2).mean_dim(2);
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
        let half = head_size / 2;
        let mut angles = Vec::with_capacity(length * head_size);
        for position in 0..length {
            let row: Vec<f32> = (0..half)
                .map(|i| (position as f64 / theta.powf(2.0 * i as f64 / head_size as f64)) as f32)
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
        let half = size / 2;
        let first = x
            .clone()
            .slice([0..batch, 0..x.dims()[1], 0..length, 0..half]);
        let second = x
            .clone()
            .slice([0..batch, 0..x.dims()[1], 0..length, half..size]);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        x * rows(&self.cos) + rotated * rows(&self.sin)
    }
}
