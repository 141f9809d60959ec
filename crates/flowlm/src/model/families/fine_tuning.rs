//! Fine-tuning a pretrained family: the checkpoint's floating-point tensors become trainable f32
//! parameters under their checkpoint names, and every forward pass builds the family's network
//! from them through [`Weights::from_tensors`], the same loading code that reads the files. So
//! every family trains without a second implementation, and a fine-tuned checkpoint is written
//! back as the family's own directory (`config.json`, `model.safetensors` under the original
//! names, the tokenizer files), which `flowlm generate` and transformers open as they open the
//! original.

use super::{Family, Network, NetworkDenoiser, family};
use crate::error::{FlowError, Result};
use crate::model::saved::{CONFIG_FILE, METADATA_FILE};
use crate::model::weights::{INDEX_FILE, SINGLE_FILE, Weights};
use crate::model::{Denoiser, LossModel};
use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A pretrained checkpoint's parameters, trainable.
#[derive(Module, Debug)]
pub struct FamilyParameters {
    /// Flattened, in the order of `layout.names`.
    values: Vec<Param<Tensor<1>>>,
    #[module(skip)]
    layout: Arc<Layout>,
}

/// What the parameters alone do not say: names, shapes, the family, and the small files that
/// describe the checkpoint (configs, tokenizer, chat template), copied into every save.
#[derive(Debug)]
struct Layout {
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    model_type: String,
    config: String,
    vocab_size: usize,
    files: Vec<(String, Vec<u8>)>,
}

/// Whether `dir` holds a pretrained checkpoint (a `config.json`, no `flowlm.json`).
pub fn is_pretrained(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file() && !dir.join(METADATA_FILE).is_file()
}

/// The small files of a checkpoint directory a save carries over: configs, tokenizer and chat
/// files and the modeling code some families ship (never weights, whose copies would be stale).
fn describing_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| FlowError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| FlowError::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let describes = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "txt" | "py" | "jinja" | "model")
        );
        let training_state = matches!(name, INDEX_FILE | "trainer_state.json");
        if path.is_file() && describes && !training_state && !name.starts_with('.') {
            let bytes = std::fs::read(&path).map_err(|e| FlowError::io(&path, e))?;
            files.push((name.to_string(), bytes));
        }
    }
    files.sort();
    Ok(files)
}

impl FamilyParameters {
    /// The parameters of the checkpoint in `dir` on `device` (an autodiff device to train),
    /// numbered 0, 1, ... in name order so a resumed optimizer finds its state.
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let config = crate::io::read_to_string(&config_path)?;
        let model_type = super::super::open::model_type(&config, &config_path)?;
        family(&model_type)?;
        let weights = Weights::open(dir)?;
        let names = weights.float_names();
        let mut shapes = Vec::with_capacity(names.len());
        let mut values = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let (shape, tensor) = weights.flat(name, device)?;
            shapes.push(shape);
            let mut parameter = Param::from_tensor(tensor);
            parameter.id = ParamId::from(index as u64);
            values.push(parameter);
        }
        let mut parameters = Self {
            values,
            layout: Arc::new(Layout {
                names,
                shapes,
                model_type,
                config,
                vocab_size: 0,
                files: describing_files(dir)?,
            }),
        };
        // Building the network once checks every tensor the family reads.
        let vocab_size = parameters.network(device)?.vocab_size();
        if let Some(layout) = Arc::get_mut(&mut parameters.layout) {
            layout.vocab_size = vocab_size;
        }
        Ok(parameters)
    }

    pub(crate) fn family(&self) -> Result<&'static Family> {
        family(&self.layout.model_type)
    }

    /// The family's network on these parameters (differentiable on an autodiff device).
    pub fn network(&self, device: &Device) -> Result<Box<dyn Network>> {
        let tensors: HashMap<String, (Vec<usize>, Tensor<1>)> = self
            .layout
            .names
            .iter()
            .zip(&self.layout.shapes)
            .zip(&self.values)
            .map(|((name, shape), value)| (name.clone(), (shape.clone(), value.val())))
            .collect();
        (self.family()?.load)(&self.layout.config, &Weights::from_tensors(tensors), device)
    }

    /// A denoiser on the current values, for samples during training.
    pub fn denoiser(&self, device: &Device) -> Result<Box<dyn Denoiser>> {
        Ok(Box::new(NetworkDenoiser {
            network: self.network(device)?,
            device: device.clone(),
        }))
    }

    /// Writes the checkpoint directory into `dir`: `model.safetensors` in f32 under the original
    /// names (f32 so that a resumed run continues from exactly these values) and the describing
    /// files. Nothing is written when a value is NaN or infinite.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(SINGLE_FILE);
        let mut tensors = Vec::with_capacity(self.values.len());
        for ((name, shape), value) in self
            .layout
            .names
            .iter()
            .zip(&self.layout.shapes)
            .zip(&self.values)
        {
            let values: Vec<f32> = value.val().into_data().try_to_vec().map_err(|e| {
                FlowError::Checkpoint(format!("{}: tensor `{name}`: {e:?}", path.display()))
            })?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(FlowError::Checkpoint(format!(
                    "{}: not written: the weight `{name}` holds NaN or infinity (the training diverged; lower the learning rate or resume from an earlier checkpoint)",
                    path.display()
                )));
            }
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((name.clone(), shape.clone(), bytes));
        }
        let views = tensors
            .iter()
            .map(|(name, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|view| (name.clone(), view))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| FlowError::Checkpoint(format!("{}: {e}", path.display())))?;
        let bytes = safetensors::serialize(views, None)
            .map_err(|e| FlowError::Checkpoint(format!("{}: {e}", path.display())))?;
        std::fs::create_dir_all(dir).map_err(|e| FlowError::io(dir, e))?;
        crate::io::write_atomic(&path, &bytes)?;
        for (name, bytes) in &self.layout.files {
            crate::io::write_atomic(&dir.join(name), bytes)?;
        }
        Ok(())
    }
}

impl LossModel for FamilyParameters {
    fn vocab_size(&self) -> usize {
        self.layout.vocab_size
    }

    fn scored_logits(
        &self,
        ids: Tensor<2, Int>,
        time: Tensor<1>,
        scored: Tensor<1, Int>,
    ) -> Result<Tensor<2>> {
        let [rows, length] = ids.dims();
        let device = ids.device();
        let positions: Vec<i64> = (0..rows).flat_map(|_| 0..length as i64).collect();
        let positions =
            Tensor::<2, Int>::from_data(TensorData::new(positions, [rows, length]), &device);
        let (logits, _) = self
            .network(&device)?
            .forward(ids, positions, None, time, None)?;
        let vocab = logits.dims()[2];
        Ok(logits.reshape([rows * length, vocab]).select(0, scored))
    }
}
