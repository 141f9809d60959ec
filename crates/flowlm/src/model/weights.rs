//! Checkpoint tensors as the Hub ships them: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, memory-mapped and read by name. F32, F16 and BF16
//! tensors become f32 tensors on the device. A missing shard, a missing tensor, a tensor of the
//! wrong shape or an unsupported dtype is an error that names the tensor and the file.

use crate::error::{FlowError, Result};
use burn::tensor::{Device, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The memory-mapped weight files of one checkpoint directory.
pub struct Weights {
    files: Vec<(PathBuf, Mmap)>,
    /// Tensor name -> index into `files`.
    location: HashMap<String, usize>,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

fn map_file(path: &Path) -> Result<Mmap> {
    let file = std::fs::File::open(path).map_err(|e| FlowError::io(path, e))?;
    // SAFETY: the mapping is read-only and lives as long as `Weights`; a checkpoint file
    // truncated by another process while FlowLM reads it is outside what any reader survives.
    unsafe { Mmap::map(&file) }.map_err(|e| FlowError::io(path, e))
}

fn header_error(path: &Path, error: impl std::fmt::Display) -> FlowError {
    FlowError::Model {
        path: path.to_path_buf(),
        message: format!("not a readable safetensors file: {error}"),
    }
}

impl Weights {
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        let shard_names: Vec<String> = if index_path.is_file() {
            let index: ShardIndex = crate::io::read_json(&index_path)?;
            let mut names: Vec<String> = index.weight_map.into_values().collect();
            names.sort();
            names.dedup();
            names
        } else if dir.join(SINGLE_FILE).is_file() {
            vec![SINGLE_FILE.to_string()]
        } else {
            return Err(FlowError::Model {
                path: dir.to_path_buf(),
                message: format!("no {SINGLE_FILE} and no {INDEX_FILE}"),
            });
        };
        let mut files = Vec::new();
        let mut location = HashMap::new();
        for name in shard_names {
            let path = dir.join(&name);
            if !path.is_file() {
                return Err(FlowError::Model {
                    path: path.clone(),
                    message: format!("shard listed in {INDEX_FILE} is missing"),
                });
            }
            let map = map_file(&path)?;
            let tensors = SafeTensors::deserialize(&map).map_err(|e| header_error(&path, e))?;
            for tensor in tensors.names() {
                location.insert(tensor.to_string(), files.len());
            }
            files.push((path, map));
        }
        Ok(Self { files, location })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    /// The tensor `name`, checked against `shape`, as f32 on `device`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        let &file = self.location.get(name).ok_or_else(|| FlowError::Model {
            path: self.files.first().map(|f| f.0.clone()).unwrap_or_default(),
            message: format!("the checkpoint has no tensor `{name}`"),
        })?;
        let (path, map) = &self.files[file];
        let tensors = SafeTensors::deserialize(map).map_err(|e| header_error(path, e))?;
        let view = tensors.tensor(name).map_err(|e| header_error(path, e))?;
        if view.shape() != shape {
            return Err(FlowError::Model {
                path: path.clone(),
                message: format!(
                    "tensor `{name}` has shape {:?}; config.json implies {shape:?}",
                    view.shape()
                ),
            });
        }
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(FlowError::Model {
                    path: path.clone(),
                    message: format!(
                        "tensor `{name}` is {other:?}; FlowLM reads F32, F16 and BF16"
                    ),
                });
            }
        };
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }
}
