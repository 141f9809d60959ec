//! What the training objectives read of a model, so that one trainer and one set of losses serve
//! FlowLM's own transformer and every pretrained family ([`super::families::FamilyParameters`]).

use super::{DenoiserInput, DiffusionTransformer, default_positions};
use crate::error::Result;
use burn::tensor::{Int, Tensor};

pub trait LossModel: Sync {
    fn vocab_size(&self) -> usize;

    /// Logits `[n, vocab]` at the `n` flattened positions `scored` (row-major over
    /// `[rows, length]`) of the corrupted canvas `ids` `[rows, length]` at noise levels `time`
    /// `[rows]` (read only by models with a time embedding).
    fn scored_logits(
        &self,
        ids: Tensor<2, Int>,
        time: Tensor<1>,
        scored: Tensor<1, Int>,
    ) -> Result<Tensor<2>>;

    /// FlowLM's own transformer, the one model soft-token objectives can feed embeddings to
    /// (`None` for the pretrained families).
    fn transformer(&self) -> Option<&DiffusionTransformer> {
        None
    }
}

impl LossModel for DiffusionTransformer {
    fn vocab_size(&self) -> usize {
        DiffusionTransformer::vocab_size(self)
    }

    /// The output head and its softmax run only at the scored rows: for the masked objective
    /// the others are about half of the canvas, and the `[positions, vocab]` head is the largest
    /// single cost of a step.
    fn scored_logits(
        &self,
        ids: Tensor<2, Int>,
        time: Tensor<1>,
        scored: Tensor<1, Int>,
    ) -> Result<Tensor<2>> {
        let [rows, length] = ids.dims();
        let positions = default_positions(rows, length, &ids.device());
        let hidden = self.hidden_states(DenoiserInput::Tokens(ids), positions, Some(time), None);
        let width = hidden.dims()[2];
        Ok(self.output_logits(hidden.reshape([rows * length, width]).select(0, scored)))
    }

    fn transformer(&self) -> Option<&DiffusionTransformer> {
        Some(self)
    }
}
