//! `flowlm serve`: an OpenAI-compatible HTTP server for every model `flowlm generate` runs.
//!
//! - [`api`]: request bodies read field by field (400s name the field);
//! - [`engine`]: one thread owns the model and decodes queued requests, streaming each step:
//!   LLaDA requests step by step with requests joining between steps (`continuous`), the
//!   others in batches (`batch`);
//! - [`metrics`]: Prometheus counters and latency histograms;
//! - `routes`: the endpoints, server-sent events, and the page that draws the canvas.

pub mod api;
mod batch;
mod continuous;
pub mod engine;
pub mod metrics;
mod routes;

use engine::{Engine, EngineOptions};
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Model(#[from] flowlm::FlowError),
    #[error("cannot listen on {address}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

pub struct ServeOptions {
    pub model: PathBuf,
    pub host: String,
    pub port: u16,
    pub device: burn::tensor::Device,
    pub engine: EngineOptions,
}

/// Opens the model, listens, calls `on_listening` with the bound address (port 0 picks a free
/// one), and serves until Ctrl-C or SIGTERM.
pub fn run(options: ServeOptions, on_listening: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::default());
    let engine = Arc::new(Engine::start(
        options.model,
        options.device,
        options.engine,
        metrics,
    )?);
    // The model decodes on its own thread; two threads are plenty for HTTP.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let address = format!("{}:{}", options.host, options.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|source| ServeError::Listen { address, source })?;
        on_listening(listener.local_addr()?);
        axum::serve(listener, routes::router(engine))
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
