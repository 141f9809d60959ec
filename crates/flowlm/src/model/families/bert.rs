//! BERT masked language models (`model_type` "bert", `BertForMaskedLM`), decoded as masked
//! diffusion models: the MLM head's logits at every slot are the denoiser's prediction.
//! Names as transformers writes them (`bert.embeddings.*`, `bert.encoder.layer.N.*`,
//! `cls.predictions.*`), old `gamma`/`beta` layer-norm names included; the decoder is tied to the
//! word embeddings. Reference: transformers' `modeling_bert.py`.

use super::layers::{LayerNorm, Linear, Matrix, attend, split_heads};
use crate::error::{FlowError, Result};
use crate::model::kv_cache::{CachePass, KvCache, KvPair, run_layers};
use crate::model::weights::Weights;
use burn::tensor::activation::gelu;
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::Deserialize;

/// `config.json` of a BERT checkpoint; keys FlowLM does not use are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".into()
}

impl BertConfig {
    fn validate(&self) -> Result<()> {
        let invalid = |message: String| FlowError::config("config.json", message);
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(invalid(format!(
                "hidden_size {} must be a positive multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.hidden_act != "gelu" {
            return Err(invalid(format!(
                "hidden_act `{}`: FlowLM's BERT runs `gelu` (erf) only",
                self.hidden_act
            )));
        }
        if self.vocab_size == 0 || self.type_vocab_size == 0 {
            return Err(invalid(
                "vocab_size and type_vocab_size must be positive".into(),
            ));
        }
        Ok(())
    }
}

struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl BertLayer {
    fn new(config: &BertConfig, weights: &Weights, prefix: &str, device: &Device) -> Result<Self> {
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let linear = |name: &str, inputs, outputs| {
            Linear::new(
                weights,
                &format!("{prefix}.{name}"),
                inputs,
                outputs,
                true,
                device,
            )
        };
        Ok(Self {
            query: linear("attention.self.query", h, h)?,
            key: linear("attention.self.key", h, h)?,
            value: linear("attention.self.value", h, h)?,
            attention_output: linear("attention.output.dense", h, h)?,
            attention_norm: LayerNorm::new(
                weights,
                &format!("{prefix}.attention.output.LayerNorm"),
                h,
                eps,
                device,
            )?,
            intermediate: linear("intermediate.dense", h, i)?,
            output: linear("output.dense", i, h)?,
            output_norm: LayerNorm::new(
                weights,
                &format!("{prefix}.output.LayerNorm"),
                h,
                eps,
                device,
            )?,
        })
    }

    /// Post-norm: x = LN(x + Attention(x)); x = LN(x + FFN(x)), on the columns a pass computes;
    /// also returns the keys/values attended to. `cache` is the pass and this layer's index.
    fn forward(
        &self,
        x: Tensor<3>,
        heads: usize,
        padding: Option<Tensor<2, Bool>>,
        cache: Option<(&CachePass, usize)>,
    ) -> (Tensor<3>, KvPair) {
        let fresh = KvPair {
            keys: split_heads(self.key.forward(x.clone()), heads),
            values: split_heads(self.value.forward(x.clone()), heads),
        };
        let kv = match cache {
            Some((pass, layer)) => pass.attended(layer, fresh),
            None => fresh,
        };
        let attended = attend(
            split_heads(self.query.forward(x.clone()), heads),
            kv.keys.clone(),
            kv.values.clone(),
            padding,
        );
        let x = self
            .attention_norm
            .forward(x + self.attention_output.forward(attended));
        let inner = gelu(self.intermediate.forward(x.clone()));
        (self.output_norm.forward(x + self.output.forward(inner)), kv)
    }
}

/// A BERT masked LM with its MLM head.
pub struct BertMaskedLm {
    pub config: BertConfig,
    /// `[vocab, hidden]`, also the tied decoder.
    word_embeddings: Matrix,
    decoder_bias: Tensor<1>,
    position_embeddings: Tensor<2>,
    /// Segment 0's embedding (every slot of a single-segment input).
    token_type: Tensor<1>,
    embedding_norm: LayerNorm,
    layers: Vec<BertLayer>,
    transform: Linear,
    transform_norm: LayerNorm,
}

impl BertMaskedLm {
    pub fn new(config: BertConfig, weights: &Weights, device: &Device) -> Result<Self> {
        config.validate()?;
        // BertForMaskedLM prefixes the encoder with `bert.`; a bare BertModel export does not.
        let base = if weights.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let (h, v, eps) = (config.hidden_size, config.vocab_size, config.layer_norm_eps);
        let word_embeddings = Matrix::load(
            weights,
            &format!("{base}embeddings.word_embeddings.weight"),
            [v, h],
            device,
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|n| {
                BertLayer::new(
                    &config,
                    weights,
                    &format!("{base}encoder.layer.{n}"),
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            decoder_bias: weights.tensor("cls.predictions.bias", [v], device)?,
            position_embeddings: weights.tensor(
                &format!("{base}embeddings.position_embeddings.weight"),
                [config.max_position_embeddings, h],
                device,
            )?,
            token_type: weights
                .tensor(
                    &format!("{base}embeddings.token_type_embeddings.weight"),
                    [config.type_vocab_size, h],
                    device,
                )?
                .slice([0..1, 0..h])
                .reshape([h]),
            embedding_norm: LayerNorm::new(
                weights,
                &format!("{base}embeddings.LayerNorm"),
                h,
                eps,
                device,
            )?,
            layers,
            transform: Linear::new(
                weights,
                "cls.predictions.transform.dense",
                h,
                h,
                true,
                device,
            )?,
            transform_norm: LayerNorm::new(
                weights,
                "cls.predictions.transform.LayerNorm",
                h,
                eps,
                device,
            )?,
            word_embeddings,
            config,
        })
    }

    /// Logits `[B, C, vocab]` of the C columns `pass` computes (all without one) for token ids
    /// `[B, L]` at positions `[B, L]`; `padding` `[B, L]` is true at slots no other slot may
    /// attend to. Also every layer's keys/values when the pass records.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        pass: Option<&CachePass>,
    ) -> (Tensor<3>, KvCache) {
        let (ids, positions) = super::pass_columns(ids, positions, pass);
        let [batch, length] = ids.dims();
        let hidden = self.config.hidden_size;
        let gather = |table: &Tensor<2>, index: Tensor<2, Int>| {
            table
                .clone()
                .select(0, index.reshape([batch * length]))
                .reshape([batch, length, hidden])
        };
        let embedded = self.word_embeddings.rows(ids)
            + gather(&self.position_embeddings, positions)
            + self.token_type.clone().unsqueeze();
        let x = self.embedding_norm.forward(embedded);
        let heads = self.config.num_attention_heads;
        let (x, cache) = run_layers(&self.layers, x, pass, |layer, x, cache| {
            layer.forward(x, heads, padding.clone(), cache)
        });
        let x = self.transform_norm.forward(gelu(self.transform.forward(x)));
        let logits = self.word_embeddings.apply(x) + self.decoder_bias.clone().unsqueeze();
        (logits, cache)
    }
}

impl super::Network for BertMaskedLm {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn context_length(&self) -> usize {
        self.config.max_position_embeddings
    }

    fn forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        _time: Tensor<1>,
        pass: Option<&CachePass>,
    ) -> Result<(Tensor<3>, KvCache)> {
        Ok(BertMaskedLm::forward(self, ids, positions, padding, pass))
    }
}

/// The family registry's constructor: `config` is the text of `config.json`.
pub fn load(config: &str, weights: &Weights, device: &Device) -> Result<Box<dyn super::Network>> {
    let config: BertConfig = super::parse_config(config, "BERT")?;
    Ok(Box::new(BertMaskedLm::new(config, weights, device)?))
}
