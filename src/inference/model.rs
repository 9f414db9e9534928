//! Loading ONNX Runtime and the model, and reading what the model expects from it.

use std::path::{Path, PathBuf};

use ort::session::builder::SessionBuilder;
use ort::session::Session;

use super::shared::SharedWeights;
use ort::value::{TensorElementType, ValueType};

use super::config::{ExecutionProvider, ModelConfig, ProviderConfig};
use crate::preprocess::{Geometry, Layout, PreprocessConfig, PreprocessSpec, ResizeMode};

/// Environment variable naming the ONNX Runtime shared library (as `ort` reads it).
pub const ORT_LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// Places searched for the ONNX Runtime library when neither the command line nor
/// `ORT_DYLIB_PATH` names one.
const LIBRARY_CANDIDATES: &[&str] = &[
    "/usr/lib/streamclassd/libonnxruntime.so",
    "/usr/local/lib/streamclassd/libonnxruntime.so",
    "/usr/local/lib/libonnxruntime.so",
    "/usr/lib/x86_64-linux-gnu/libonnxruntime.so",
    "/usr/lib/aarch64-linux-gnu/libonnxruntime.so",
];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("ONNX Runtime library not found: {0}")]
    RuntimeMissing(String),
    #[error("cannot load the ONNX Runtime library {path}: {message}")]
    RuntimeLoad { path: PathBuf, message: String },
    #[error("model.execution_provider = {provider:?}: {message} (set model.fallback_to_cpu = true to run on the CPU instead)")]
    ProviderUnavailable { provider: String, message: String },
    #[error("model file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model file {path} is not a usable ONNX model: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("model {path}: input `{input}` has type and shape {shape}; expected a 3-channel float32/float16 image, [N,3,S,S] (NCHW) or [N,S,S,3] (NHWC)")]
    UnsupportedInput {
        path: PathBuf,
        input: String,
        shape: String,
    },
    #[error(
        "model {path}: output `{output}` has shape {shape}; expected float32 class scores [N,C]"
    )]
    UnsupportedOutput {
        path: PathBuf,
        output: String,
        shape: String,
    },
    #[error("model.preprocess.crop: {crop} does not match the model's input size {side}x{side}")]
    CropMismatch { crop: u32, side: u32 },
    #[error("ONNX Runtime: {0}")]
    Ort(String),
}

impl<T> From<ort::Error<T>> for ModelError {
    fn from(e: ort::Error<T>) -> Self {
        ModelError::Ort(e.to_string())
    }
}

/// The loaded ONNX Runtime: keep it alive as long as sessions are created from it.
pub struct Runtime {
    pub library: PathBuf,
    pub env: ort::environment::Environment,
}

/// Finds and loads the ONNX Runtime shared library. Must run before any other `ort` call:
/// `ort` would otherwise panic at first use when the library is absent.
pub fn load_runtime(explicit: Option<&Path>) -> Result<Runtime, ModelError> {
    let from_env = std::env::var_os(ORT_LIBRARY_ENV).map(PathBuf::from);
    let path = match explicit.map(Path::to_path_buf).or(from_env) {
        Some(p) if p.is_file() => p,
        Some(p) => {
            return Err(ModelError::RuntimeMissing(format!(
                "{} does not exist (set by --ort-library or {ORT_LIBRARY_ENV})",
                p.display()
            )))
        }
        None => LIBRARY_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                ModelError::RuntimeMissing(format!(
                    "set {ORT_LIBRARY_ENV} or --ort-library to libonnxruntime.so (searched {})",
                    LIBRARY_CANDIDATES.join(", ")
                ))
            })?,
    };
    let env = ort::init_from(&path)
        .map_err(|e| ModelError::RuntimeLoad {
            path: path.clone(),
            message: e.to_string(),
        })?
        .with_name("streamclassd")
        // No telemetry store under the service's cache directory.
        .with_telemetry(false)
        .build()?;
    Ok(Runtime { library: path, env })
}

/// Batch dimension of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchDim {
    /// Any batch size.
    Dynamic,
    /// Exactly this many images per run; shorter batches are padded.
    Fixed(usize),
}

/// Element type of a model input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    F32,
    F16,
}

/// What the model takes and gives, read from the model itself.
#[derive(Debug, Clone)]
pub struct ModelIo {
    pub input: String,
    pub output: String,
    pub batch: BatchDim,
    pub layout: Layout,
    pub input_type: Element,
    pub output_type: Element,
    /// Fixed spatial input size (square), or `None` when dynamic.
    pub side: Option<u32>,
    /// Number of classes in one output row (learnt from a warm-up run).
    pub classes: usize,
}

/// Registers the configured GPU execution provider (nothing for the CPU). The provider
/// must be in the loaded ONNX Runtime build (the `onnxruntime-gpu` package's library) and
/// its own libraries (CUDA, cuDNN, TensorRT) must load.
fn with_provider(
    builder: &mut ort::session::builder::SessionBuilder,
    cfg: &ProviderConfig,
    runtime: &Runtime,
) -> Result<(), ModelError> {
    use ort::ep::{ExecutionProvider as _, TensorRT, CUDA};
    let unavailable = |message: String| ModelError::ProviderUnavailable {
        provider: format!("{:?}", cfg.kind).to_lowercase(),
        message,
    };
    let missing = |name: &str| {
        unavailable(format!(
            "{name} is not in this ONNX Runtime build ({}); point --ort-library at a GPU \
             build of libonnxruntime (the onnxruntime-gpu package)",
            runtime.library.display()
        ))
    };
    let registered = match cfg.kind {
        ExecutionProvider::Cpu => return Ok(()),
        ExecutionProvider::Cuda => {
            if !CUDA::is_available().unwrap_or(false) {
                return Err(missing("the CUDA execution provider"));
            }
            CUDA::default()
                .with_device_id(cfg.device_id)
                .register(builder)
        }
        ExecutionProvider::TensorRt => {
            if !TensorRT::is_available().unwrap_or(false) {
                return Err(missing("the TensorRT execution provider"));
            }
            let mut trt = TensorRT::default()
                .with_device_id(cfg.device_id)
                .with_fp16(cfg.fp16);
            if let Some(dir) = &cfg.engine_cache_dir {
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(dir.display())
                    .with_timing_cache(true)
                    .with_timing_cache_path(dir.display());
            }
            // Nodes TensorRT cannot take run on CUDA, not on the CPU.
            trt.register(builder).and_then(|()| {
                CUDA::default()
                    .with_device_id(cfg.device_id)
                    .register(builder)
            })
        }
    };
    registered.map_err(|e| unavailable(e.to_string()))
}

/// Fails with [`ModelError::Unreadable`] when the model file cannot be opened, before
/// ONNX Runtime gets to say it in its own words.
pub fn check_readable(cfg: &ModelConfig) -> Result<(), ModelError> {
    std::fs::File::open(&cfg.path)
        .map(drop)
        .map_err(|source| ModelError::Unreadable {
            path: cfg.path.clone(),
            source,
        })
}

/// The daemon's session settings for `cfg`, with its execution provider.
pub fn session_builder(cfg: &ModelConfig, runtime: &Runtime) -> Result<SessionBuilder, ModelError> {
    let threads = cfg.parallelism().threads;
    let mut builder = Session::builder(&runtime.env)?
        .with_intra_threads(threads)?
        .with_inter_threads(1)?
        // A memory pattern is planned per input shape, and the batch size varies with how
        // many cameras have a frame ready: with patterns, the arena keeps a block for each
        // batch size seen (ResNet-50: +27 MB once batches of 3 and 4 have run), without
        // them it reuses the same memory at the same speed (bench/run.py, cameras).
        .with_memory_pattern(false)?;
    match with_provider(&mut builder, &cfg.provider, runtime) {
        Ok(()) => {}
        Err(e) if cfg.provider.fallback_to_cpu => {
            tracing::warn!(error = %e, "execution provider unavailable: running on the CPU");
        }
        Err(e) => return Err(e),
    }
    tracing::debug!(provider = ?cfg.provider.kind, threads, "creating an inference session");
    Ok(builder)
}

/// Opens a session (on `shared`'s optimized graph and weights when given, else on the
/// model file) and checks the model's input and output.
pub fn open_session(
    cfg: &ModelConfig,
    runtime: &Runtime,
    shared: Option<&SharedWeights>,
) -> Result<(Session, ModelIo), ModelError> {
    check_readable(cfg)?;
    let invalid = |message: String| ModelError::Invalid {
        path: cfg.path.clone(),
        message,
    };
    let mut builder = session_builder(cfg, runtime)?;
    let session = match shared {
        Some(shared) => shared.apply(builder)?.commit_from_file(shared.graph()),
        None => builder.commit_from_file(&cfg.path),
    }
    .map_err(|e| invalid(e.to_string()))?;

    let input = session
        .inputs()
        .first()
        .ok_or_else(|| invalid("it has no inputs".into()))?;
    let output = session
        .outputs()
        .first()
        .ok_or_else(|| invalid("it has no outputs".into()))?;

    let (input_type, layout, batch, side) =
        image_input(input.dtype()).ok_or_else(|| ModelError::UnsupportedInput {
            path: cfg.path.clone(),
            input: input.name().to_owned(),
            shape: describe(input.dtype()),
        })?;
    let output_type = match output.dtype() {
        ValueType::Tensor { ty, shape, .. }
            if shape.len() >= 2 && shape[2..].iter().all(|&d| d == 1 || d == -1) =>
        {
            element(*ty)
        }
        _ => None,
    }
    .ok_or_else(|| ModelError::UnsupportedOutput {
        path: cfg.path.clone(),
        output: output.name().to_owned(),
        shape: describe(output.dtype()),
    })?;
    let io = ModelIo {
        input: input.name().to_owned(),
        output: output.name().to_owned(),
        batch,
        layout,
        input_type,
        output_type,
        side,
        classes: 0,
    };
    Ok((session, io))
}

fn element(ty: TensorElementType) -> Option<Element> {
    match ty {
        TensorElementType::Float32 => Some(Element::F32),
        TensorElementType::Float16 => Some(Element::F16),
        _ => None,
    }
}

/// Reads a 3-channel image input: element type, layout, batch dimension and (square)
/// spatial size. Dynamic dimensions are -1; a dynamic channel dimension is taken as NCHW.
fn image_input(t: &ValueType) -> Option<(Element, Layout, BatchDim, Option<u32>)> {
    let ValueType::Tensor { ty, shape, .. } = t else {
        return None;
    };
    if shape.len() != 4 {
        return None;
    }
    let square = |h: i64, w: i64| h == w || h == -1 || w == -1;
    let (layout, h, w) = if shape[1] == 3 && square(shape[2], shape[3]) {
        (Layout::Nchw, shape[2], shape[3])
    } else if shape[3] == 3 && square(shape[1], shape[2]) {
        (Layout::Nhwc, shape[1], shape[2])
    } else if shape[1] == -1 && shape[3] != 3 && square(shape[2], shape[3]) {
        (Layout::Nchw, shape[2], shape[3])
    } else {
        return None;
    };
    let batch = if shape[0] > 0 {
        BatchDim::Fixed(shape[0] as usize)
    } else {
        BatchDim::Dynamic
    };
    let side = h.max(w);
    Some((
        element(*ty)?,
        layout,
        batch,
        (side > 0).then_some(side as u32),
    ))
}

/// Applies the model's input size and layout to the configured preprocessing.
pub fn resolve_preprocess(
    cfg: &PreprocessConfig,
    io: &ModelIo,
) -> Result<PreprocessSpec, ModelError> {
    let crop = match (cfg.crop, io.side) {
        (Some(crop), Some(side)) if crop != side => {
            return Err(ModelError::CropMismatch { crop, side })
        }
        (Some(crop), _) => crop,
        (None, Some(side)) => side,
        (None, None) => 224,
    };
    let geometry = match cfg.mode {
        ResizeMode::ResizeCrop => Geometry::ResizeCrop {
            resize_shorter: cfg
                .resize_shorter
                .unwrap_or_else(|| (f64::from(crop) / cfg.crop_ratio).round() as u32)
                .max(crop),
        },
        ResizeMode::CropResize => Geometry::CropResize {
            crop_fraction: cfg.crop_fraction.unwrap_or(cfg.crop_ratio),
        },
    };
    Ok(PreprocessSpec {
        geometry,
        crop,
        interpolation: cfg.interpolation,
        normalize: cfg.normalize,
        layout: io.layout,
    })
}

fn describe(t: &ValueType) -> String {
    match t {
        ValueType::Tensor { ty, shape, .. } => format!("{ty:?} {shape}"),
        other => format!("{other:?}"),
    }
}
