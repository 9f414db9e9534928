//! One copy of the weights for every inference worker.
//!
//! ONNX Runtime optimizes a model for the machine when a session opens it (on x86, the
//! convolutions' weights are reordered into blocked layouts), and each session keeps its
//! own optimized copy: ResNet-50 costs ~120 MB per extra session that way. Neither a
//! container of prepacked weights (those reordered weights are not prepacked) nor weights
//! handed over as an in-memory file (ONNX Runtime copies them out) changes that
//! (`examples/ort_workers`, `separate` vs `shared`). So the model is optimized once and
//! saved; its initializers are read into tensors this process owns; and every worker's
//! session opens the optimized graph with optimization off and those tensors given as
//! initializers (`AddInitializer`), which ONNX Runtime uses in place. What kernels still
//! prepack goes into one shared container.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use half::f16;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights, SessionBuilder};
use ort::value::{DynValue, Tensor};
use prost::Message;

use super::model::ModelError;
use super::ModelConfig;

/// Initializers smaller than this stay in the graph (shapes, scales, biases of a few
/// values): sharing them saves nothing.
const SHARED_MIN_BYTES: usize = 1024;

/// The parts of ONNX's `ModelProto` read here (field numbers from `onnx.proto`).
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

/// `TensorProto.DataType` values shared here.
const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const FLOAT16: i32 = 10;

/// The model optimized once for this machine, with its initializers as tensors.
pub struct SharedWeights {
    /// The optimized graph, in a scratch directory removed when this is dropped (the
    /// sessions need it only while they open).
    graph: PathBuf,
    dir: PathBuf,
    initializers: Vec<(String, Arc<DynValue>)>,
    bytes: usize,
    /// `None` once a kernel of the model turned out unable to use a shared container
    /// (ONNX Runtime refuses the session then): each session prepacks for itself.
    prepacked: Option<PrepackedWeights>,
}

impl Drop for SharedWeights {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scratch directory for one model's optimized graph.
fn scratch_dir() -> std::io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "streamclassd-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A tensor this process owns, from an initializer's raw little-endian bytes; `None`
/// for element types not shared.
fn tensor_of(t: &TensorProto) -> Result<Option<DynValue>, ort::Error> {
    let dims = t.dims.clone();
    let raw = &t.raw_data;
    Ok(Some(match t.data_type {
        FLOAT => {
            let v: Vec<f32> = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Tensor::from_array((dims, v))?.into_dyn()
        }
        FLOAT16 => {
            let v: Vec<f16> = raw
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect();
            Tensor::from_array((dims, v))?.into_dyn()
        }
        INT8 => {
            let v: Vec<i8> = raw.iter().map(|&b| b as i8).collect();
            Tensor::from_array((dims, v))?.into_dyn()
        }
        UINT8 => Tensor::from_array((dims, raw.clone()))?.into_dyn(),
        _ => return Ok(None),
    }))
}

impl SharedWeights {
    /// Optimizes the model at `cfg.path` for this machine with `builder` (the daemon's
    /// session settings), saves it, and reads its large initializers into tensors.
    pub fn prepare(cfg: &ModelConfig, builder: SessionBuilder) -> Result<Self, ModelError> {
        let invalid = |message: String| ModelError::Invalid {
            path: cfg.path.clone(),
            message,
        };
        let scratch = |e: std::io::Error| ModelError::Ort(format!("scratch directory: {e}"));
        let dir = scratch_dir().map_err(scratch)?;
        let mut shared = SharedWeights {
            graph: dir.join("optimized.onnx"),
            dir,
            initializers: Vec::new(),
            bytes: 0,
            prepacked: Some(PrepackedWeights::new()),
        };
        let optimized = builder
            .with_optimization_level(GraphOptimizationLevel::All)?
            .with_optimized_model_path(&shared.graph)?
            .commit_from_file(&cfg.path)
            .map_err(|e| invalid(e.to_string()))?;
        drop(optimized);
        let bytes = std::fs::read(&shared.graph).map_err(scratch)?;
        let model = ModelProto::decode(bytes.as_slice())
            .map_err(|e| invalid(format!("reading the optimized graph: {e}")))?;
        drop(bytes);
        for t in model.graph.map(|g| g.initializer).unwrap_or_default() {
            if t.raw_data.len() < SHARED_MIN_BYTES {
                continue;
            }
            if let Some(value) = tensor_of(&t)? {
                shared.bytes += t.raw_data.len();
                shared.initializers.push((t.name, Arc::new(value)));
            }
        }
        Ok(shared)
    }

    /// The optimized graph (while this lives).
    pub fn graph(&self) -> &Path {
        &self.graph
    }

    /// Gives `builder` the shared initializers and prepacked weights, and switches off
    /// the optimizations that were already applied.
    pub fn apply(&self, builder: SessionBuilder) -> Result<SessionBuilder, ModelError> {
        let mut builder = builder.with_optimization_level(GraphOptimizationLevel::Disable)?;
        if let Some(prepacked) = &self.prepacked {
            builder = builder.with_prepacked_weights(prepacked)?;
        }
        for (name, value) in &self.initializers {
            builder = builder.with_initializer(name, value.clone())?;
        }
        Ok(builder)
    }

    /// Whether `error` (from opening a session) is ONNX Runtime refusing the shared
    /// container of prepacked weights (INT8 convolutions, for one, cannot use it); if so,
    /// sessions opened from now on prepack for themselves.
    pub fn refused_prepacking(&mut self, error: &ModelError) -> bool {
        let refused = self.prepacked.is_some()
            && error
                .to_string()
                .contains("can cache computed pre-packed weights");
        if refused {
            self.prepacked = None;
            tracing::info!("a kernel of this model cannot share prepacked weights: each worker prepacks its own");
        }
        refused
    }

    /// Bytes of initializers shared.
    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}
