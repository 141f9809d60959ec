//! `flowlm serve`: the OpenAI-compatible server (crate `flowlm-serve`).

use anyhow::Context;
use clap::Args;
use flowlm_serve::engine::EngineOptions;
use flowlm_serve::{ServeOptions, run as serve};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Serves POST /v1/completions and /v1/chat/completions (OpenAI's API, streaming included, plus
/// diffusion fields: sampler, steps, block_length, remasking, cache, threshold, stream_steps),
/// GET /v1/models, /health, /metrics (Prometheus), and GET / (a page that draws the denoising).
#[derive(Args)]
pub struct ServeArgs {
    /// Model directory: a FlowLM model or a pretrained checkpoint [default: the bundled model]
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port; the address is printed)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most rows (requests x n) decoded together in one batch
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Most requests waiting; more are answered 429
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Seconds a request may wait and decode before it is answered 408
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// cpu or vulkan
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    use flowlm::limits::{MAX_BATCH, flag, within};
    flag("--max-batch", within(args.max_batch, 1, MAX_BATCH))?;
    flag("--queue", within(args.queue, 1, 1_000_000))?;
    flag("--timeout", within(args.timeout, 1, 86_400))?;
    let model = args.model.unwrap_or_else(super::default_model_dir);
    let options = ServeOptions {
        model: model.clone(),
        host: args.host,
        port: args.port,
        device: super::device(&args.device)?,
        engine: EngineOptions {
            max_batch: args.max_batch,
            queue: args.queue,
            timeout: Duration::from_secs(args.timeout),
        },
    };
    serve(options, |address| {
        println!(
            "serving {} on http://{address} (the page: http://{address}/)",
            model.display()
        );
        let _ = std::io::stdout().flush();
    })
    .with_context(|| format!("serving {}", model.display()))
}
