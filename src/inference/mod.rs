//! Stage 3: inference workers, each owning an `ort::Session`, fed by one dispatcher.
//!
//! The dispatcher waits until a worker is free and a camera has a frame, then takes every
//! frame that is already waiting (from any camera, least recently served first) up to
//! `max_batch` per free worker, and deals them out among the free workers. Each worker
//! runs its frames as one batch, turns each output row into probabilities (softmax only
//! when the model does not already output a distribution) and keeps the top k. A live
//! camera has at most one frame in flight; a file read at full speed has up to one per
//! worker, and its results are handed on in the order its frames were taken.

mod config;
mod dispatch;
pub mod model;
mod release;
mod serve;
mod shared;
pub mod topk;
pub mod turns;
mod worker;

use std::sync::Arc;

use crossbeam_channel::Receiver;
pub use shared::SharedWeights;

use crate::messages::{ModelInfo, Prepared, Scored};
use crate::pool::Pool;
use crate::preprocess::PreprocessSpec;
pub use config::{ExecutionProvider, ModelConfig, Parallelism, ProviderConfig, RawModel, Threads};
pub use dispatch::ServingDeps;
pub use model::{load_runtime, BatchDim, Element, ModelError, ModelIo, Runtime};
pub use worker::InferenceWorker;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error("output `{name}` has shape {shape:?}; expected {rows} rows")]
    OutputShape {
        name: String,
        shape: Vec<i64>,
        rows: usize,
    },
}

/// The buffers the inference thread hands back and reuses.
#[derive(Debug, Clone)]
pub struct Pools {
    /// Input tensors, back to the preprocess threads.
    pub tensors: Pool<Vec<f32>>,
    /// Top-k lists, back from the publisher.
    pub tops: Pool<Vec<Scored>>,
}

/// What the pipeline tells a running inference stage.
pub enum Control {
    /// A camera's preprocessed frames (a camera started at start-up or by a reload); a
    /// live camera has at most one frame in flight.
    Camera { rx: Receiver<Prepared>, live: bool },
    /// A model loaded and warmed up by a reload, replacing the running one.
    Swap(Box<Serving>),
}

/// A model ready to serve: its warmed-up workers (one session each), its name and
/// labels, and the generation of preprocessing its input follows.
pub struct Serving {
    pub workers: Vec<InferenceWorker>,
    pub model: Arc<ModelInfo>,
    pub spec_generation: u64,
}

/// Opens `parallelism.workers` sessions of the model, each warmed up. Several workers on
/// the CPU share one copy of the optimized weights (see [`SharedWeights`]); on a GPU each
/// session holds its own on the device.
pub fn open_workers(
    cfg: &ModelConfig,
    runtime: &Runtime,
) -> Result<(Vec<InferenceWorker>, PreprocessSpec), ModelError> {
    let n = cfg.parallelism().workers.max(1);
    let mut shared = if n > 1 && cfg.provider.kind == ExecutionProvider::Cpu {
        model::check_readable(cfg)?;
        let shared = SharedWeights::prepare(cfg, model::session_builder(cfg, runtime)?)?;
        tracing::info!(
            workers = n,
            weights_mb = shared.len() / 1_000_000,
            "workers share the optimized weights"
        );
        Some(shared)
    } else {
        None
    };
    // The first session tells whether the model's kernels can share prepacked weights.
    let (first, spec) = match InferenceWorker::open_sharing(cfg, runtime, shared.as_ref()) {
        Err(e) if shared.as_mut().is_some_and(|s| s.refused_prepacking(&e)) => {
            InferenceWorker::open_sharing(cfg, runtime, shared.as_ref())?
        }
        opened => opened?,
    };
    let mut workers = Vec::with_capacity(n);
    workers.push(first);
    for _ in 1..n {
        workers.push(InferenceWorker::open_sharing(cfg, runtime, shared.as_ref())?.0);
    }
    Ok((workers, spec))
}
