//! Device selection through burn's dispatch: `flex` (CPU, default) or `vulkan` (GPU, with the
//! `gpu` cargo feature).

use crate::error::{FlowError, Result};
use burn::tensor::Device;

/// Parses `--device`: `cpu`/`flex`, or `vulkan`/`gpu` when built with the `gpu` feature.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "gpu")]
        "vulkan" | "gpu" => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "gpu"))]
        "vulkan" | "gpu" => Err(FlowError::argument(
            "--device",
            "this binary was built without GPU support; rebuild with `cargo build --release --features gpu`",
        )),
        other => Err(FlowError::argument(
            "--device",
            format!("unknown device `{other}`; use cpu or vulkan"),
        )),
    }
}
