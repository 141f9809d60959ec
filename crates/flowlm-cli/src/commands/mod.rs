pub mod align;
pub mod bench;
pub mod bench_cache;
pub mod data;
pub mod eval;
pub mod eval_budget;
pub mod eval_correction;
pub mod export;
pub mod generate;
pub mod plot;
pub mod serve;
pub mod tokenizer;
pub mod train;
pub mod train_policy;

use std::path::PathBuf;

/// `models/default` in the working directory, else the one beside this source tree.
pub fn default_model_dir() -> PathBuf {
    let local = PathBuf::from("models/default");
    if local.is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/default")
}

pub fn device(name: &str) -> anyhow::Result<burn::tensor::Device> {
    Ok(flowlm::device::parse_device(name)?)
}
