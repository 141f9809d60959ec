//! Building blocks of the pretrained families, loaded by checkpoint name from [`Weights`]:
//! PyTorch's `[out, in]` linear weights are transposed once at load, never per forward pass.

use crate::error::Result;
use crate::model::weights::Weights;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};

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

/// Layer normalisation with a learned scale and shift. Old BERT checkpoints name them
/// `gamma`/`beta`, newer ones `weight`/`bias`: both are read.
pub struct LayerNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
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
        Ok(Self {
            weight: weights.tensor(&format!("{prefix}.{scale}"), [size], device)?,
            bias: weights.tensor(&format!("{prefix}.{shift}"), [size], device)?,
            epsilon,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (variance, mean) = x.clone().var_mean_bias(2);
        let normalized = (x - mean) / (variance + self.epsilon).sqrt();
        normalized * self.weight.clone().unsqueeze() + self.bias.clone().unsqueeze()
    }
}

/// Scaled dot-product attention over `heads` heads of `[B, L, hidden]` projections;
/// `key_padding` `[B, L]` is true where a key must not be attended to.
pub fn multi_head_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    key_padding: Option<Tensor<2, Bool>>,
) -> Tensor<3> {
    let [batch, length, hidden] = q.dims();
    let split = |t: Tensor<3>| {
        t.reshape([batch, length, heads, hidden / heads])
            .swap_dims(1, 2)
    };
    let mask = key_padding.map(|p| {
        p.reshape([batch, 1, 1, length])
            .expand([batch, heads, length, length])
    });
    attention(
        split(q),
        split(k),
        split(v),
        mask,
        None,
        AttentionModuleOptions::default(),
    )
    .swap_dims(1, 2)
    .reshape([batch, length, hidden])
}
