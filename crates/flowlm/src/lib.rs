//! FlowLM: diffusion language models in Rust.
//!
//! One module per concept of `DESIGN.md`: [`tokenizer`], [`data`], [`model`] (the `Denoiser`),
//! [`schedule`], [`corruption`], [`objective`], [`sampler`], [`trainer`] and [`eval`]. The
//! `flowlm` binary is a thin layer over them.

pub mod canvas;
pub mod corruption;
pub mod cpu;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod io;
pub mod limits;
pub mod model;
pub mod objective;
pub mod plot;
pub mod policy;
pub mod random;
pub mod recipe;
pub mod sampler;
pub mod schedule;
pub mod tasks;
pub mod tokenizer;
pub mod trainer;
pub mod vocabulary;

pub use error::{FlowError, Result};
