//! Device selection through burn's dispatch: `flex` (CPU, default) or `vulkan` (GPU, with the
//! `gpu` cargo feature).

use crate::error::{FlowError, Result};
use burn::tensor::Device;

/// Parses `--device`: `cpu`/`flex`, or `vulkan`/`gpu` when built with the `gpu` feature.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "gpu")]
        "vulkan" | "gpu" => vulkan(),
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

/// The default Vulkan adapter, acquired up front: without one, cubecl panics (and aborts) on the
/// first tensor operation, so the missing GPU is reported here as an error instead.
#[cfg(feature = "gpu")]
fn vulkan() -> Result<Device> {
    use burn_wgpu::{RuntimeOptions, WgpuBackend, WgpuDevice, graphics::Vulkan, try_init_setup};
    // The same device `Device::vulkan(DefaultDevice)` names, so the setup registered here is
    // the one its tensors use.
    let device = WgpuDevice::default().on(WgpuBackend::Vulkan);
    try_init_setup::<Vulkan>(&device, RuntimeOptions::default()).map_err(|error| {
        FlowError::argument(
            "--device",
            format!("no usable Vulkan GPU on this machine ({error}); use --device cpu"),
        )
    })?;
    Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice))
}
