//! Dream (`model_type` "Dream", `DreamModel`): a Qwen2 network with bidirectional attention,
//! trained from an autoregressive model so that the output at slot i - 1 predicts slot i. Its
//! logits are therefore shifted right by one slot (slot 0 keeps its own), as Dream's
//! `generation_utils.py` does. Qwen2 names: `model.embed_tokens`, `model.layers.N.{self_attn.
//! {q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}`,
//! `model.norm`, `lm_head` (or tied embeddings); q/k/v carry biases, grouped-query heads,
//! rotary positions: the network of [`super::a2d`]. The mask id comes from `config.json`
//! (151666 in Dream 7B). Reference: Dream's published `modeling_dream.py` and
//! `generation_utils.py` (`benches/dream_fixture.py`); its decoding is the `dream` sampler.

use super::a2d::{Architecture, QWEN2};
use super::layers::GatedNetwork;
use crate::error::Result;
use crate::model::kv_cache::{CachePass, KvCache};
use crate::model::weights::Weights;
use burn::tensor::{Bool, Device, Int, Tensor};

/// Qwen2 under Dream's name (its config class has Qwen2's defaults, `rope_theta` 10000; the
/// released checkpoints set 1e6 in `config.json`).
const DREAM: Architecture = Architecture {
    name: "Dream",
    ..QWEN2
};

/// A Dream denoiser network: the bidirectional Qwen2 decoder, read one slot later.
pub struct DreamModel {
    decoder: GatedNetwork,
}

impl super::Network for DreamModel {
    fn vocab_size(&self) -> usize {
        self.decoder.vocab_size()
    }

    fn context_length(&self) -> usize {
        self.decoder.context_length()
    }

    fn mask_token_id(&self) -> Option<u32> {
        self.decoder.mask_token_id()
    }

    fn forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        time: Tensor<1>,
        pass: Option<&CachePass>,
    ) -> Result<(Tensor<3>, KvCache)> {
        // Column c is predicted by the output at c - 1 (column 0 keeps its own), so a window
        // also computes the column before it.
        let wanted_start = pass.map_or(0, |p| p.columns(ids.dims()[1]).start);
        let widened = pass.map(|p| p.starting_at(wanted_start.saturating_sub(1)));
        let (logits, cache) =
            self.decoder
                .forward(ids, positions, padding, time, widened.as_ref())?;
        let [batch, length, vocab] = logits.dims();
        if length < 2 {
            return Ok((logits, cache));
        }
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
    let decoder = super::a2d::load_decoder(config, &DREAM, weights, device)?;
    Ok(Box::new(DreamModel { decoder }))
}
