//! Checkpoint tensors as the Hub ships them: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, memory-mapped and read by name. F32, F16 and BF16
//! tensors become f32 tensors on the device, except the large matrices ([`Weights::matrix`]),
//! which keep a 16-bit checkpoint's precision in memory. A missing shard, a missing tensor, a tensor of the
//! wrong shape or an unsupported dtype is an error that names the tensor and the file.
//!
//! The same interface also serves tensors already in memory ([`Weights::from_tensors`]): fine-
//! tuning builds a family's network from its trainable parameters through it, so a family's
//! loading code is the one path for files and for training.

use crate::error::{FlowError, Result};
use burn::tensor::{DType, Device, Tensor, TensorCreationOptions, TensorData};
use memmap2::Mmap;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorInfo};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Where a family's tensors come from, read by name.
pub struct Weights {
    source: Source,
}

enum Source {
    /// The memory-mapped files of a checkpoint directory.
    Files(Checkpoint),
    /// Named tensors in memory, each flattened with its shape.
    Memory(HashMap<String, (Vec<usize>, Tensor<1>)>),
    /// Made-up values of any name and shape asked for, matrices in `dtype`.
    Random { seed: u64, dtype: DType },
}

/// A checkpoint's files, their headers read once, and where each tensor lies.
struct Checkpoint {
    files: Vec<(PathBuf, Mmap)>,
    tensors: HashMap<String, Entry>,
    progress: Option<Progress>,
}

/// Bytes of tensor data read so far, reported as (read, total) after each tensor: loading a
/// large checkpoint takes a minute, and a user should see it advance.
struct Progress {
    read: AtomicU64,
    total: u64,
    report: Box<dyn Fn(u64, u64) + Send + Sync>,
}

/// Where one tensor lies: its file (index into `files`), dtype, shape and byte range.
struct Entry {
    file: usize,
    info: TensorInfo,
    /// Where the file's data section starts (after the 8-byte length and the header).
    data_start: usize,
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

/// Little-endian 16-bit values, each decoded by `value`.
fn halves<T>(bytes: &[u8], value: impl Fn([u8; 2]) -> T) -> Vec<T> {
    bytes.chunks_exact(2).map(|c| value([c[0], c[1]])).collect()
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
        let mut tensors = HashMap::new();
        for name in shard_names {
            let path = dir.join(&name);
            if !path.is_file() {
                return Err(FlowError::Model {
                    path: path.clone(),
                    message: format!("shard listed in {INDEX_FILE} is missing"),
                });
            }
            let map = map_file(&path)?;
            // Validates every tensor's offsets against the file's length.
            let (header, metadata) =
                SafeTensors::read_metadata(&map).map_err(|e| header_error(&path, e))?;
            for (tensor, info) in metadata.tensors() {
                let entry = Entry {
                    file: files.len(),
                    info: info.clone(),
                    data_start: 8 + header,
                };
                tensors.insert(tensor, entry);
            }
            files.push((path, map));
        }
        Ok(Self {
            source: Source::Files(Checkpoint {
                files,
                tensors,
                progress: None,
            }),
        })
    }

    /// Every tensor a family asks for, made up on the spot: matrices uniform in +-0.02 in
    /// `dtype` (keyed by `seed` and the name), vectors (norm scales, biases) ones. A forward
    /// pass costs what it costs on a real checkpoint of those shapes, with no file: how
    /// `flowlm bench generate --random-weights` measures an 8B model's speed.
    pub fn random(seed: u64, dtype: DType) -> Self {
        Self {
            source: Source::Random { seed, dtype },
        }
    }

    /// Named tensors in memory, each flattened with its shape; reads return them reshaped
    /// (the same tensors, so gradients flow back to them).
    pub fn from_tensors(tensors: HashMap<String, (Vec<usize>, Tensor<1>)>) -> Self {
        Self {
            source: Source::Memory(tensors),
        }
    }

    /// Calls `report(bytes read, total bytes)` after each file tensor the model reads.
    pub fn with_progress(mut self, report: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        if let Source::Files(checkpoint) = &mut self.source {
            let total = checkpoint
                .tensors
                .values()
                .map(|entry| (entry.info.data_offsets.1 - entry.info.data_offsets.0) as u64)
                .sum();
            checkpoint.progress = Some(Progress {
                read: AtomicU64::new(0),
                total,
                report: Box::new(report),
            });
        }
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Files(checkpoint) => checkpoint.tensors.contains_key(name),
            Source::Memory(tensors) => tensors.contains_key(name),
            Source::Random { .. } => true,
        }
    }

    /// The names of the file's floating-point tensors (the parameters; integer buffers such
    /// as BERT's `position_ids` are not), sorted; none for tensors not read from files.
    pub fn float_names(&self) -> Vec<String> {
        let Source::Files(checkpoint) = &self.source else {
            return Vec::new();
        };
        let mut names: Vec<String> = checkpoint
            .tensors
            .iter()
            .filter(|(_, entry)| matches!(entry.info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The matrix `name` (a linear layer's weight or an embedding table), checked against
    /// `shape`, in the precision the checkpoint stores it: f16 and bf16 stay 16-bit on the
    /// device (half the memory: an 8B model in 16 GB), and a product widens it to f32 exactly
    /// when it reads it ([`crate::model::families`]'s `Matrix`); other dtypes become f32.
    pub fn matrix(&self, name: &str, shape: [usize; 2], device: &Device) -> Result<Tensor<2>> {
        match &self.source {
            Source::Files(checkpoint) => checkpoint.matrix(name, shape, device),
            Source::Memory(tensors) => memory_tensor(tensors, name, shape),
            Source::Random { seed, dtype } => Ok(random_matrix(name, shape, *seed, *dtype, device)),
        }
    }

    /// The tensor `name`, checked against `shape`, as f32 on `device`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        match &self.source {
            Source::Files(checkpoint) => checkpoint.tensor(name, shape, device),
            Source::Memory(tensors) => memory_tensor(tensors, name, shape),
            Source::Random { .. } => Ok(Tensor::ones(shape, device)),
        }
    }

    /// The file tensor `name` flattened, as f32 on `device`, with its stored shape.
    pub fn flat(&self, name: &str, device: &Device) -> Result<(Vec<usize>, Tensor<1>)> {
        match &self.source {
            Source::Files(checkpoint) => checkpoint.flat(name, device),
            _ => Err(FlowError::Model {
                path: PathBuf::from("(tensors not read from files)"),
                message: format!("`{name}` is not a file tensor"),
            }),
        }
    }
}

/// The tensor `name` of `tensors`, checked against `shape`.
fn memory_tensor<const D: usize>(
    tensors: &HashMap<String, (Vec<usize>, Tensor<1>)>,
    name: &str,
    shape: [usize; D],
) -> Result<Tensor<D>> {
    let error = |message: String| FlowError::Model {
        path: PathBuf::from("(parameters in memory)"),
        message,
    };
    let (stored, tensor) = tensors
        .get(name)
        .ok_or_else(|| error(format!("the parameters hold no tensor `{name}`")))?;
    if stored.as_slice() != shape.as_slice() {
        return Err(error(format!(
            "tensor `{name}` has shape {stored:?}; config.json implies {shape:?}"
        )));
    }
    Ok(tensor.clone().reshape(shape))
}

fn random_matrix(
    name: &str,
    shape: [usize; 2],
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Tensor<2> {
    // xorshift64*: billions of values in seconds; speed does not depend on them.
    let mut state = name.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (bits as f32 / (1u64 << 24) as f32 - 0.5) * 0.04
    };
    let count = shape[0] * shape[1];
    let options = TensorCreationOptions::new(device.clone()).with_dtype(dtype);
    match dtype {
        DType::BF16 => Tensor::from_data(
            TensorData::new(
                (0..count).map(|_| half::bf16::from_f32(next())).collect(),
                shape,
            ),
            options,
        ),
        DType::F16 => Tensor::from_data(
            TensorData::new(
                (0..count).map(|_| half::f16::from_f32(next())).collect(),
                shape,
            ),
            options,
        ),
        _ => Tensor::from_data(
            TensorData::new((0..count).map(|_| next()).collect(), shape),
            device,
        ),
    }
}

impl Checkpoint {
    fn matrix(&self, name: &str, shape: [usize; 2], device: &Device) -> Result<Tensor<2>> {
        let (entry, bytes) = self.entry(name, &shape)?;
        let options = |dtype| TensorCreationOptions::new(device.clone()).with_dtype(dtype);
        Ok(match entry.info.dtype {
            Dtype::F16 => Tensor::from_data(
                TensorData::new(halves(bytes, half::f16::from_le_bytes), shape),
                options(DType::F16),
            ),
            Dtype::BF16 => Tensor::from_data(
                TensorData::new(halves(bytes, half::bf16::from_le_bytes), shape),
                options(DType::BF16),
            ),
            _ => self.tensor(name, shape, device)?,
        })
    }

    fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        let values = self.f32_values(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    fn flat(&self, name: &str, device: &Device) -> Result<(Vec<usize>, Tensor<1>)> {
        let shape = self
            .tensors
            .get(name)
            .map(|entry| entry.info.shape.clone())
            .unwrap_or_default();
        let values = self.f32_values(name, &shape)?;
        let count = values.len();
        Ok((
            shape,
            Tensor::from_data(TensorData::new(values, [count]), device),
        ))
    }

    /// The values of the file tensor `name`, checked against `shape`, widened to f32.
    fn f32_values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (entry, bytes) = self.entry(name, shape)?;
        Ok(match entry.info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => halves(bytes, |b| half::f16::from_le_bytes(b).to_f32()),
            Dtype::BF16 => halves(bytes, |b| half::bf16::from_le_bytes(b).to_f32()),
            other => {
                return Err(FlowError::Model {
                    path: self.files[entry.file].0.clone(),
                    message: format!(
                        "tensor `{name}` is {other:?}; FlowLM reads F32, F16 and BF16"
                    ),
                });
            }
        })
    }

    /// The entry of tensor `name` and its bytes, checked against `shape`.
    fn entry(&self, name: &str, shape: &[usize]) -> Result<(&Entry, &[u8])> {
        let entry = self.tensors.get(name).ok_or_else(|| FlowError::Model {
            path: self.files.first().map(|f| f.0.clone()).unwrap_or_default(),
            message: format!("the checkpoint has no tensor `{name}`"),
        })?;
        let (path, map) = &self.files[entry.file];
        let info = &entry.info;
        if info.shape != shape {
            return Err(FlowError::Model {
                path: path.clone(),
                message: format!(
                    "tensor `{name}` has shape {:?}; config.json implies {shape:?}",
                    info.shape
                ),
            });
        }
        let (begin, end) = info.data_offsets;
        if let Some(progress) = &self.progress {
            // A tied matrix is read twice; the count never passes the total.
            let read = progress
                .read
                .fetch_add((end - begin) as u64, Ordering::Relaxed);
            (progress.report)(
                (read + (end - begin) as u64).min(progress.total),
                progress.total,
            );
        }
        Ok((
            entry,
            &map[entry.data_start + begin..entry.data_start + end],
        ))
    }
}
