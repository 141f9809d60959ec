//! `DiffusionTransformer`: a bidirectional (or, by config, causal) pre-norm transformer that maps
//! a noisy sequence -- token ids or input embeddings, optionally a time t -- to logits at every
//! position. Generic over the burn backend through burn's device dispatch: the same code runs on
//! Flex (CPU) and Vulkan (GPU).

use super::fused::{self, attention, linear, matmul, swiglu};
use super::kv_cache::{CachePass, KvCache, KvPair, run_layers};
use crate::error::{FlowError, Result};
use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
    RmsNorm, RmsNormConfig,
};
use burn::tensor::activation::{gelu, silu};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

fn default_model_type() -> String {
    "flowlm-diffusion-transformer".into()
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_init_std() -> f64 {
    0.02
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionEncoding {
    /// Rotary embeddings in every attention layer (default).
    Rope,
    /// Seed 002's fixed sin/cos table added to the input.
    Sinusoidal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    Rms,
    Layer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Swiglu,
    Gelu,
}

/// The model's `config.json`; field names follow Hugging Face conventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionTransformerConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_position")]
    pub position_encoding: PositionEncoding,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_norm")]
    pub norm: NormKind,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Adds seed 002's time embedding; needed by uniform diffusion, optional elsewhere.
    #[serde(default)]
    pub time_conditioning: bool,
    /// Causal attention: the autoregressive baseline is this model with this switch on.
    #[serde(default)]
    pub causal: bool,
    #[serde(default = "default_init_std")]
    pub initializer_range: f64,
}

fn default_position() -> PositionEncoding {
    PositionEncoding::Rope
}
fn default_norm() -> NormKind {
    NormKind::Rms
}
fn default_activation() -> Activation {
    Activation::Swiglu
}

impl DiffusionTransformerConfig {
    /// A small default: 4 layers, hidden 256, 4 heads.
    pub fn small(vocab_size: usize, max_position_embeddings: usize) -> Self {
        Self {
            model_type: default_model_type(),
            vocab_size,
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 683,
            max_position_embeddings,
            position_encoding: PositionEncoding::Rope,
            rope_theta: default_rope_theta(),
            norm: NormKind::Rms,
            norm_eps: default_norm_eps(),
            hidden_act: Activation::Swiglu,
            tie_word_embeddings: true,
            time_conditioning: false,
            causal: false,
            initializer_range: default_init_std(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, field: &str, message: String| {
            if ok {
                Ok(())
            } else {
                Err(FlowError::config(field, message))
            }
        };
        check(self.vocab_size > 0, "vocab_size", "must be positive".into())?;
        check(
            self.hidden_size > 0,
            "hidden_size",
            "must be positive".into(),
        )?;
        check(
            self.num_hidden_layers > 0,
            "num_hidden_layers",
            "must be positive".into(),
        )?;
        check(
            self.num_attention_heads > 0,
            "num_attention_heads",
            "must be positive".into(),
        )?;
        check(
            self.hidden_size.is_multiple_of(self.num_attention_heads),
            "hidden_size",
            format!(
                "{} is not divisible by num_attention_heads = {}",
                self.hidden_size, self.num_attention_heads
            ),
        )?;
        check(
            (self.hidden_size / self.num_attention_heads).is_multiple_of(2),
            "hidden_size",
            "the head size (hidden_size / num_attention_heads) must be even for RoPE".into(),
        )?;
        check(
            self.intermediate_size > 0,
            "intermediate_size",
            "must be positive".into(),
        )?;
        check(
            self.max_position_embeddings > 0,
            "max_position_embeddings",
            "must be positive".into(),
        )
    }

    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn init(&self, device: &Device) -> DiffusionTransformer {
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).with_bias(false).init(device);
        let norm = || match self.norm {
            NormKind::Rms => Norm::Rms(
                RmsNormConfig::new(self.hidden_size)
                    .with_epsilon(self.norm_eps)
                    .init(device),
            ),
            NormKind::Layer => Norm::Layer(
                LayerNormConfig::new(self.hidden_size)
                    .with_epsilon(self.norm_eps)
                    .init(device),
            ),
        };
        let (d, f) = (self.hidden_size, self.intermediate_size);
        let layers = (0..self.num_hidden_layers)
            .map(|_| TransformerBlock {
                attention_norm: norm(),
                query: linear(d, d),
                key: linear(d, d),
                value: linear(d, d),
                output: linear(d, d),
                feed_forward_norm: norm(),
                feed_forward: match self.hidden_act {
                    Activation::Swiglu => FeedForward::Swiglu(SwigluFeedForward {
                        gate: linear(d, f),
                        up: linear(d, f),
                        down: linear(f, d),
                    }),
                    Activation::Gelu => FeedForward::Gelu(GeluFeedForward {
                        up: LinearConfig::new(d, f).init(device),
                        down: LinearConfig::new(f, d).init(device),
                    }),
                },
                num_heads: self.num_attention_heads,
            })
            .collect();
        let embed = EmbeddingConfig::new(self.vocab_size, d)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: self.initializer_range,
            })
            .init(device);
        let time_embedding = self.time_conditioning.then(|| TimeEmbedding {
            first: LinearConfig::new(d, d).init(device),
            second: LinearConfig::new(d, d).init(device),
        });
        let lm_head = (!self.tie_word_embeddings).then(|| linear(d, self.vocab_size));
        DiffusionTransformer {
            embed_tokens: embed,
            time_embedding,
            layers,
            final_norm: norm(),
            lm_head,
            hidden_size: d,
            head_size: self.head_size(),
            rope: self.position_encoding == PositionEncoding::Rope,
            rope_theta: self.rope_theta,
            causal: self.causal,
        }
    }
}

#[derive(Module, Debug)]
pub enum Norm {
    Rms(RmsNorm),
    Layer(LayerNorm),
}

impl Norm {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Norm::Rms(n) => n.forward(x),
            Norm::Layer(n) => n.forward(x),
        }
    }
}

#[derive(Module, Debug)]
pub struct SwigluFeedForward {
    gate: Linear,
    up: Linear,
    down: Linear,
}

#[derive(Module, Debug)]
pub struct GeluFeedForward {
    up: Linear,
    down: Linear,
}

#[derive(Module, Debug)]
pub enum FeedForward {
    Swiglu(SwigluFeedForward),
    Gelu(GeluFeedForward),
}

impl FeedForward {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            FeedForward::Swiglu(f) => linear(
                &f.down,
                swiglu(linear(&f.gate, x.clone()), linear(&f.up, x)),
            ),
            FeedForward::Gelu(f) => f.down.forward(gelu(f.up.forward(x))),
        }
    }
}

/// Seed 002's time embedding: sinusoidal features of t, then a two-layer SiLU MLP.
#[derive(Module, Debug)]
pub struct TimeEmbedding {
    first: Linear,
    second: Linear,
}

#[derive(Module, Debug)]
pub struct TransformerBlock {
    attention_norm: Norm,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    feed_forward_norm: Norm,
    feed_forward: FeedForward,
    num_heads: usize,
}

/// Rotary tables for one forward pass, `[B, 1, L, head]` each.
#[derive(Clone)]
struct Rotary {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rotary {
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        fused::rotary(x, self.cos.clone(), self.sin.clone())
    }
}

impl TransformerBlock {
    /// The block on `x` (the columns a pass computes); also returns the keys/values it attended
    /// to, which a recording pass keeps. `cache` is the pass and this layer's index.
    fn forward(
        &self,
        x: Tensor<3>,
        rotary: Option<&Rotary>,
        mask: Option<Tensor<4, Bool>>,
        cache: Option<(&CachePass, usize)>,
    ) -> (Tensor<3>, KvPair) {
        let [batch, length, hidden] = x.dims();
        let head = hidden / self.num_heads;
        let h = self.attention_norm.forward(x.clone());
        let split = |t: Tensor<3>| {
            t.reshape([batch, length, self.num_heads, head])
                .swap_dims(1, 2)
        };
        let mut q = split(linear(&self.query, h.clone()));
        let mut k = split(linear(&self.key, h.clone()));
        let v = split(linear(&self.value, h));
        if let Some(r) = rotary {
            q = r.apply(q);
            k = r.apply(k);
        }
        let fresh = KvPair { keys: k, values: v };
        let attended = match cache {
            Some((pass, layer)) => pass.attended(layer, fresh),
            None => fresh,
        };
        // The fused operator in training on the CPU, burn's otherwise (module `fused`).
        let output = attention(q, attended.keys.clone(), attended.values.clone(), mask)
            .swap_dims(1, 2)
            .reshape([batch, length, hidden]);
        let x = x + linear(&self.output, output);
        let f = self
            .feed_forward
            .forward(self.feed_forward_norm.forward(x.clone()));
        (x + f, attended)
    }
}

/// What the network reads: token ids or input embeddings (soft tokens, flow states).
pub enum DenoiserInput {
    Tokens(Tensor<2, Int>),
    Embeddings(Tensor<3>),
}

#[derive(Module, Debug)]
pub struct DiffusionTransformer {
    pub embed_tokens: Embedding,
    time_embedding: Option<TimeEmbedding>,
    layers: Vec<TransformerBlock>,
    final_norm: Norm,
    lm_head: Option<Linear>,
    hidden_size: usize,
    head_size: usize,
    rope: bool,
    rope_theta: f64,
    causal: bool,
}

impl DiffusionTransformer {
    /// Logits `[B, L, V]`.
    ///
    /// - `positions` `[B, L]`: position of each slot (rows padded on the left start later, so
    ///   a padded row sees the same positions as the row alone);
    /// - `time` `[B]`: noise level in [0, 1], used only when the model has a time embedding;
    /// - `key_padding` `[B, L]`: true where a slot is padding and must not be attended to.
    pub fn forward(
        &self,
        input: DenoiserInput,
        positions: Tensor<2>,
        time: Option<Tensor<1>>,
        key_padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let h = self.hidden_states(input, positions, time, key_padding);
        let [batch, length, hidden] = h.dims();
        let logits = self.output_logits(h.reshape([batch * length, hidden]));
        let vocab = logits.dims()[1];
        logits.reshape([batch, length, vocab])
    }

    /// The final-normed hidden states `[B, L, hidden]` (what the output head reads); arguments
    /// as in [`Self::forward`].
    pub fn hidden_states(
        &self,
        input: DenoiserInput,
        positions: Tensor<2>,
        time: Option<Tensor<1>>,
        key_padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let x = self.input_states(input, &positions, time);
        self.run_layers(x, positions, key_padding, None).0
    }

    /// Hidden states of the columns `pass` computes, and every layer's keys/values (what a
    /// recording pass keeps). `ids`, `positions` and `key_padding` span the whole canvas; no
    /// time embedding (the samplers that cache read masks).
    pub fn cached_hidden_states(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2>,
        key_padding: Option<Tensor<2, Bool>>,
        pass: &CachePass,
    ) -> (Tensor<3>, KvCache) {
        let [batch, width] = ids.dims();
        let columns = pass.columns(width);
        let ids = ids.slice([0..batch, columns.clone()]);
        let positions = positions.slice([0..batch, columns]);
        let x = self.input_states(DenoiserInput::Tokens(ids), &positions, None);
        self.run_layers(x, positions, key_padding, Some(pass))
    }

    /// Token (or given) embeddings plus the time embedding and, without rotary, the fixed
    /// positional table.
    fn input_states(
        &self,
        input: DenoiserInput,
        positions: &Tensor<2>,
        time: Option<Tensor<1>>,
    ) -> Tensor<3> {
        let mut x = match input {
            DenoiserInput::Tokens(ids) => self.embed_tokens.forward(ids),
            DenoiserInput::Embeddings(e) => e,
        };
        let [batch, _, hidden] = x.dims();
        if let (Some(te), Some(t)) = (&self.time_embedding, time) {
            // t in [0,1] is scaled to seed 002's 0..1000 step range before the sin/cos features.
            let features = sinusoidal(t.mul_scalar(1000.0).reshape([batch, 1]), hidden);
            let e = te.second.forward(silu(te.first.forward(features)));
            x = x + e.reshape([batch, 1, hidden]);
        }
        if !self.rope {
            x = x + sinusoidal_positions(positions.clone(), hidden);
        }
        x
    }

    /// The layers and the final norm on `x` (the columns `pass` computes, all without one);
    /// `key_padding` spans every key.
    fn run_layers(
        &self,
        x: Tensor<3>,
        positions: Tensor<2>,
        key_padding: Option<Tensor<2, Bool>>,
        pass: Option<&CachePass>,
    ) -> (Tensor<3>, KvCache) {
        let [batch, length, _] = x.dims();
        let device = x.device();
        let keys = pass.map_or(length, |p| p.key_length(length));
        let rotary = self.rope.then(|| self.rotary_tables(positions));
        let mask = self.attention_mask(batch, length, keys, key_padding, &device);
        let (x, cache) = run_layers(&self.layers, x, pass, |layer, x, cache| {
            layer.forward(x, rotary.as_ref(), mask.clone(), cache)
        });
        (self.final_norm.forward(x), cache)
    }

    /// The output head on rows of hidden states: `[N, hidden]` -> logits `[N, V]`. One 2-D
    /// product, so the tied head reads the embedding matrix through strides instead of copying
    /// its transpose per batch row.
    pub fn output_logits(&self, h: Tensor<2>) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.forward(h),
            None => matmul(h, self.embed_tokens.weight.val().transpose()),
        }
    }

    /// Convenience: ids `[B, L]`, positions 0..L, no time, no padding.
    pub fn forward_ids(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, length] = ids.dims();
        let positions = default_positions(batch, length, &ids.device());
        self.forward(DenoiserInput::Tokens(ids), positions, None, None)
    }

    /// The input embedding matrix `[V, hidden]`.
    /// Rows of the embedding matrix.
    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.weight.dims()[0]
    }

    pub fn input_embeddings(&self) -> Tensor<2> {
        self.embed_tokens.weight.val()
    }

    pub fn is_causal(&self) -> bool {
        self.causal
    }

    fn rotary_tables(&self, positions: Tensor<2>) -> Rotary {
        let [batch, length] = positions.dims();
        let half = self.head_size / 2;
        let device = positions.device();
        let inverse_frequency: Vec<f32> = (0..half)
            .map(|i| (1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_size as f64)) as f32)
            .collect();
        let inverse_frequency =
            Tensor::<1>::from_data(TensorData::new(inverse_frequency, [half]), &device);
        let angles =
            positions.reshape([batch, length, 1]) * inverse_frequency.reshape([1, 1, half]);
        let angles = Tensor::cat(vec![angles.clone(), angles], 2).reshape([
            batch,
            1,
            length,
            self.head_size,
        ]);
        Rotary {
            cos: angles.clone().cos(),
            sin: angles.sin(),
        }
    }

    /// True where a query (`queries` of them) must not see a key (`keys`): padding keys, and
    /// future keys in a causal model (whose passes always compute every column).
    fn attention_mask(
        &self,
        batch: usize,
        queries: usize,
        keys: usize,
        key_padding: Option<Tensor<2, Bool>>,
        device: &Device,
    ) -> Option<Tensor<4, Bool>> {
        let padding = key_padding.map(|p| {
            p.reshape([batch, 1, 1, keys])
                .expand([batch, 1, queries, keys])
        });
        let causal = self.causal.then(|| {
            let mut future = vec![false; queries * keys];
            for i in 0..queries {
                for j in i + 1..keys {
                    future[i * keys + j] = true;
                }
            }
            Tensor::<2, Bool>::from_data(TensorData::new(future, [queries, keys]), device)
                .reshape([1, 1, queries, keys])
                .expand([batch, 1, queries, keys])
        });
        match (padding, causal) {
            (Some(p), Some(c)) => Some(p.bool_or(c)),
            (p, c) => p.or(c),
        }
    }
}

/// Positions 0..L for every row, as floats `[B, L]`.
pub fn default_positions(batch: usize, length: usize, device: &Device) -> Tensor<2> {
    Tensor::<1, Int>::arange(0..length as i64, device)
        .float()
        .reshape([1, length])
        .expand([batch, length])
}

/// Transformer sin/cos features of scalar values `[B, 1]` -> `[B, width]`.
fn sinusoidal(values: Tensor<2>, width: usize) -> Tensor<2> {
    let [batch, _] = values.dims();
    let half = width / 2;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| (-(10_000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let frequencies =
        Tensor::<1>::from_data(TensorData::new(frequencies, [half]), &values.device());
    let angles = values * frequencies.reshape([1, half]);
    let features = Tensor::cat(vec![angles.clone().sin(), angles.cos()], 1);
    if width % 2 == 1 {
        let zeros = Tensor::zeros([batch, 1], &features.device());
        return Tensor::cat(vec![features, zeros], 1);
    }
    features
}

/// Seed 002's fixed positional table for positions `[B, L]` -> `[B, L, width]`.
fn sinusoidal_positions(positions: Tensor<2>, width: usize) -> Tensor<3> {
    let [batch, length] = positions.dims();
    sinusoidal(positions.reshape([batch * length, 1]), width).reshape([batch, length, width])
}
