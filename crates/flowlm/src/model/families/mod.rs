//! Pretrained model families, loaded from checkpoint directories as the Hub ships them
//! (`config.json`, safetensors weights, `tokenizer.json`) and decoded as masked diffusion
//! models. One file per family; adding one is that file plus one line in [`FAMILIES`].

pub mod a2d;
pub mod bert;
pub mod dream;
mod fine_tuning;
mod layers;
pub mod llada;
pub mod mdlm;
pub mod modernbert;

pub use fine_tuning::{FamilyParameters, is_pretrained};

use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::kv_cache::{CachePass, KvCache};
use crate::model::saved::{cache_pass, canvas_tensors, host_logits, read_columns};
use crate::model::weights::Weights;
use crate::model::{Denoiser, Logits, TopChoices};
use burn::tensor::{Bool, Device, Int, Tensor};
use std::ops::Range;

/// A pretrained network that predicts every slot of a canvas.
pub trait Network {
    fn vocab_size(&self) -> usize;
    /// The longest canvas its position table covers.
    fn context_length(&self) -> usize;
    /// The mask id `config.json` declares, when it does (it wins over the tokenizer's guess).
    fn mask_token_id(&self) -> Option<u32> {
        None
    }
    /// Logits `[B, C, vocab]` of the C columns a pass computes (every column without one;
    /// ids, positions and padding span the whole canvas) and, when `pass` records, every
    /// layer's keys/values. `time` `[B]` is each row's noise level, read only by
    /// time-conditioned checkpoints (MDLM's with `time_conditioning`).
    fn forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        padding: Option<Tensor<2, Bool>>,
        time: Tensor<1>,
        pass: Option<&CachePass>,
    ) -> Result<(Tensor<3>, KvCache)>;
}

/// One family: the `model_type` its `config.json` declares and how to build it.
pub struct Family {
    pub model_type: &'static str,
    /// Whether a prompt starts with the tokenizer's beginning token (BERT's `[CLS]`).
    pub starts_with_bos: bool,
    pub load: fn(&str, &Weights, &Device) -> Result<Box<dyn Network>>,
}

/// The registry of pretrained families.
pub const FAMILIES: &[Family] = &[
    Family {
        model_type: "bert",
        starts_with_bos: true,
        load: bert::load,
    },
    Family {
        model_type: "modernbert",
        starts_with_bos: true,
        load: modernbert::load,
    },
    Family {
        model_type: "Dream",
        starts_with_bos: false,
        load: dream::load,
    },
    Family {
        model_type: "llada",
        starts_with_bos: false,
        load: llada::load,
    },
    Family {
        model_type: "mdlm",
        starts_with_bos: false,
        load: mdlm::load,
    },
    Family {
        model_type: "a2d-llama",
        starts_with_bos: false,
        load: a2d::load_llama,
    },
    Family {
        model_type: "a2d-qwen2",
        starts_with_bos: false,
        load: a2d::load_qwen2,
    },
    Family {
        model_type: "a2d-qwen3",
        starts_with_bos: false,
        load: a2d::load_qwen3,
    },
];

/// Checkpoint shapes `flowlm bench generate --random-weights NAME` builds with random values in
/// bf16 and no file: (name, `model_type`, `config.json`). LLaDA-8B's are the released models'.
pub const RANDOM_PRESETS: &[(&str, &str, &str)] = &[
    (
        "llada-8b",
        "llada",
        r#"{"d_model": 4096, "n_heads": 32, "n_kv_heads": 32, "n_layers": 32,
            "mlp_hidden_size": 12288, "vocab_size": 126464, "embedding_size": 126464,
            "max_sequence_length": 4096, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
            "weight_tying": false, "mask_token_id": 126336, "block_type": "llama",
            "activation_type": "silu", "layer_norm_type": "rms", "rope": true}"#,
    ),
    (
        "llada-46m",
        "llada",
        r#"{"d_model": 768, "n_heads": 12, "n_layers": 6, "mlp_hidden_size": 2048,
            "vocab_size": 4096, "max_sequence_length": 4096, "mask_token_id": 4095,
            "weight_tying": true}"#,
    ),
];

/// The network of random-weight preset `name` (see [`RANDOM_PRESETS`]) on `device`.
pub fn random_network(name: &str, device: &Device) -> Result<Box<dyn Network>> {
    let (_, model_type, config) = RANDOM_PRESETS
        .iter()
        .find(|preset| preset.0 == name)
        .ok_or_else(|| {
            let known: Vec<&str> = RANDOM_PRESETS.iter().map(|p| p.0).collect();
            FlowError::argument(
                "--random-weights",
                format!("`{name}` is not a preset; known: {}", known.join(", ")),
            )
        })?;
    let weights = Weights::random(0, burn::tensor::DType::BF16);
    (family(model_type)?.load)(config, &weights, device)
}

/// A family's `config.json` text as its config struct; `family` names it in the error.
fn parse_config<C: serde::de::DeserializeOwned>(text: &str, family: &str) -> Result<C> {
    serde_json::from_str(text)
        .map_err(|e| FlowError::config("config.json", format!("not a {family} config: {e}")))
}

/// The family whose `model_type` is `name`, or an error listing the known ones.
pub fn family(name: &str) -> Result<&'static Family> {
    FAMILIES
        .iter()
        .find(|family| family.model_type == name)
        .ok_or_else(|| {
            let known: Vec<&str> = FAMILIES.iter().map(|f| f.model_type).collect();
            FlowError::config(
                "config.json model_type",
                format!(
                    "`{name}` is not a family FlowLM runs; known: {} (and FlowLM's own models, which carry flowlm.json)",
                    known.join(", ")
                ),
            )
        })
}

/// A pretrained network as a [`Denoiser`]. A sampler that carries no time gives each row its
/// masked share of the answer (what a time-conditioned masked model reads as t).
pub struct NetworkDenoiser {
    pub network: Box<dyn Network>,
    pub device: Device,
}

impl NetworkDenoiser {
    /// Device logits `[B, C, V]` of `columns` after a full pass over the canvas (all columns
    /// without a range).
    fn device_logits(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
        columns: Option<&Range<usize>>,
    ) -> Result<Tensor<3>> {
        let (ids, positions, padding) = canvas_tensors(canvas, &self.device);
        let time = self.time(canvas, time);
        let (logits, _) = self
            .network
            .forward(ids, positions.int(), padding, time, None)?;
        match columns {
            Some(columns) => read_columns(logits, columns, 0),
            None => Ok(logits),
        }
    }
}

impl NetworkDenoiser {
    /// Each row's time `[B]`: the sampler's, or the share of the row's answer still masked.
    fn time(&self, canvas: &Canvas, time: Option<&[f32]>) -> Tensor<1> {
        let length = canvas.response_length().max(1) as f32;
        let time: Vec<f32> = match time {
            Some(time) => time.to_vec(),
            None => (0..canvas.batch())
                .map(|row| canvas.masked_count(row) as f32 / length)
                .collect(),
        };
        let rows = time.len();
        Tensor::from_data(burn::tensor::TensorData::new(time, [rows]), &self.device)
    }
}

impl Denoiser for NetworkDenoiser {
    fn vocab_size(&self) -> usize {
        self.network.vocab_size()
    }

    fn logits(&self, canvas: &Canvas, time: Option<&[f32]>) -> Result<Logits> {
        host_logits(self.device_logits(canvas, time, None)?)
    }

    fn device_logits_in(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
        columns: Range<usize>,
    ) -> Option<Result<Tensor<3>>> {
        Some(self.device_logits(canvas, time, Some(&columns)))
    }

    fn cached_top_choices(
        &self,
        canvas: &Canvas,
        cache: Option<&KvCache>,
        computed: Range<usize>,
        read: Range<usize>,
        forbidden: u32,
    ) -> Result<(TopChoices, Option<KvCache>)> {
        let (ids, positions, padding) = canvas_tensors(canvas, &self.device);
        let pass = cache_pass(cache, computed);
        let time = self.time(canvas, None);
        let (logits, recorded) =
            self.network
                .forward(ids, positions.int(), padding, time, Some(&pass))?;
        let columns = pass.columns(canvas.width());
        let logits = read_columns(logits, &read, columns.start)?;
        let choices = TopChoices::on_device(logits, forbidden, read.start)?;
        Ok((choices, cache.is_none().then_some(recorded)))
    }
}

/// Ids and positions `[B, L]` of the columns a pass computes (`None`: all of them).
fn pass_columns(
    ids: Tensor<2, Int>,
    positions: Tensor<2, Int>,
    pass: Option<&CachePass>,
) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let [batch, width] = ids.dims();
    let columns = pass.map_or(0..width, |p| p.columns(width));
    (
        ids.slice([0..batch, columns.clone()]),
        positions.slice([0..batch, columns]),
    )
}
