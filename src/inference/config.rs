//! `[model]`: the section as written ([`RawModel`]) and the checked [`ModelConfig`]:
//! which ONNX model, its labels, and how ONNX Runtime runs it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::labels::LabelsSource;
use crate::preprocess::{PreprocessConfig, RawPreprocess};
use crate::problems::Problems;

/// `[model]`: the ONNX classifier and how frames are prepared for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Path of the `.onnx` file (relative paths are relative to the config file).
    pub path: String,
    /// Name reported in every payload; defaults to the model file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// `"imagenet"` for the built-in ImageNet-1k names, or a file with one label per line.
    #[serde(default = "default_labels")]
    pub labels: String,
    /// How many labels each message carries.
    #[serde(default = "default_top_k")]
    pub top_k: i64,
    /// ONNX Runtime intra-op threads per worker: a number, or `"auto"` (see
    /// `ModelConfig::parallelism`).
    #[serde(default = "default_threads")]
    pub threads: RawThreads,
    /// Inference workers, each running whole frames on its own session (the sessions
    /// share one copy of the optimized weights): a number, or `"auto"`.
    #[serde(default = "default_workers")]
    pub workers: RawThreads,
    /// Where the model runs: `cpu` (default), `cuda` or `tensorrt`.
    #[serde(default)]
    pub execution_provider: ExecutionProvider,
    /// GPU to use (CUDA device ordinal).
    #[serde(default)]
    pub device_id: i64,
    /// TensorRT: build FP16 engines.
    #[serde(default)]
    pub fp16: bool,
    /// TensorRT: directory where built engines are kept and reused across starts.
    pub engine_cache_dir: Option<String>,
    /// When the execution provider cannot be used: `false` (default) refuses to start,
    /// `true` logs a warning and runs on the CPU.
    #[serde(default)]
    pub fallback_to_cpu: bool,
    /// Largest batch the inference worker forms from frames that are waiting.
    #[serde(default = "default_max_batch")]
    pub max_batch: i64,
    /// Preprocessing; defaults to torchvision's ResNet evaluation recipe.
    #[serde(default)]
    pub preprocess: RawPreprocess,
}

/// `threads = 2` or `threads = "auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawThreads {
    Count(i64),
    Word(String),
}

impl RawThreads {
    fn check(self, field: &str, what: &str, p: &mut Problems) -> Option<Threads> {
        match self {
            RawThreads::Count(n) => p
                .range(field, n, 1, 256)
                .map(|n| Threads::Count(n as usize)),
            RawThreads::Word(w) if w == "auto" => Some(Threads::Auto),
            RawThreads::Word(w) => {
                p.add(
                    field,
                    format!("{w:?}: expected a number of {what} or \"auto\""),
                );
                None
            }
        }
    }
}

fn default_labels() -> String {
    "imagenet".to_owned()
}
fn default_top_k() -> i64 {
    5
}
fn default_threads() -> RawThreads {
    RawThreads::Count(2)
}
fn default_workers() -> RawThreads {
    RawThreads::Count(1)
}
fn default_max_batch() -> i64 {
    4
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub name: String,
    pub labels: LabelsSource,
    pub top_k: usize,
    pub threads: Threads,
    pub workers: Threads,
    /// `workers` and `threads` resolved on this machine for the cameras configured (see
    /// [`ModelConfig::fit`]): a reload that changes it loads the model again.
    pub parallelism: Parallelism,
    pub provider: ProviderConfig,
    pub max_batch: usize,
    pub preprocess: PreprocessConfig,
}

/// A count of ONNX Runtime intra-op threads or of workers, or `"auto"` (see
/// [`Parallelism::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    Count(usize),
    /// Chosen from the CPUs this process may use and the cameras (see
    /// [`Parallelism::resolve`]).
    Auto,
}

/// How inference uses the CPUs: `workers` sessions, each running whole frames with
/// `threads` intra-op threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub workers: usize,
    pub threads: usize,
}

impl Parallelism {
    /// Resolves `workers` and `threads` on a machine with `cpus` CPUs for this process,
    /// for cameras that can have `streams` frames in flight at once (one per live camera,
    /// any number for a file read at full speed).
    ///
    /// The CPU budget is every CPU up to two; beyond two, one CPU is left to the cameras'
    /// decode and preprocess threads (at most 16). `"auto"` fills the budget. On the CPU,
    /// `workers = "auto"` runs frames in parallel, one worker per frame the cameras can
    /// have in flight, up to the budget (a thread stalled by a decoder delays only its
    /// own frame), and `threads = "auto"` divides the budget among the workers: one live
    /// camera gets one worker across the budget's threads (its next frame waits for this
    /// one, so a second worker would sit idle), two cameras or a file get two single-thread
    /// workers on two CPUs. See the README's measurements. A GPU runs one worker: its
    /// session already overlaps the cameras' frames.
    pub fn resolve(
        workers: Threads,
        threads: Threads,
        gpu: bool,
        cpus: usize,
        streams: usize,
    ) -> Parallelism {
        let budget = if cpus <= 2 {
            cpus.max(1)
        } else {
            (cpus - 1).min(16)
        };
        let fill = |per: usize| (budget / per).clamp(1, streams.max(1));
        let (workers, threads) = match (workers, threads) {
            (Threads::Count(w), Threads::Count(t)) => (w, t),
            (Threads::Count(w), Threads::Auto) => (w, (budget / w).max(1)),
            (Threads::Auto, Threads::Count(t)) if gpu => (1, t),
            (Threads::Auto, Threads::Count(t)) => (fill(t), t),
            (Threads::Auto, Threads::Auto) if gpu => (1, budget),
            (Threads::Auto, Threads::Auto) => {
                let w = fill(1);
                (w, (budget / w).max(1))
            }
        };
        Parallelism { workers, threads }
    }
}

impl ModelConfig {
    /// Workers and threads on this machine.
    pub fn parallelism(&self) -> Parallelism {
        self.parallelism
    }

    /// Resolves `workers` and `threads` for cameras that can have `streams` frames in
    /// flight at once (see [`Parallelism::resolve`]).
    pub fn fit(&mut self, streams: usize) {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let gpu = self.provider.kind != ExecutionProvider::Cpu;
        self.parallelism = Parallelism::resolve(self.workers, self.threads, gpu, cpus, streams);
    }
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
}

/// The execution provider and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub kind: ExecutionProvider,
    pub device_id: i32,
    /// TensorRT FP16 engines.
    pub fp16: bool,
    /// TensorRT engine cache.
    pub engine_cache_dir: Option<PathBuf>,
    /// Run on the CPU (with a warning) when the provider cannot be used.
    pub fallback_to_cpu: bool,
}

impl RawModel {
    /// Checks `[model]`; relative paths are joined to `base`.
    pub fn check(self, base: &Path, p: &mut Problems) -> Option<ModelConfig> {
        if self.path.is_empty() {
            p.add("model.path", "must name an .onnx file");
        }
        let path = base.join(&self.path);
        let name = self.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".to_owned())
        });
        let labels = match self.labels.as_str() {
            "imagenet" => LabelsSource::ImageNet,
            "" => {
                p.add(
                    "model.labels",
                    "must be \"imagenet\" or a path to a labels file",
                );
                LabelsSource::ImageNet
            }
            file => LabelsSource::File(base.join(file)),
        };
        let top_k = p.range("model.top_k", self.top_k, 1, 1000);
        let threads = self.threads.check("model.threads", "threads", p);
        let workers = self.workers.check("model.workers", "workers", p);
        let device_id = p.range("model.device_id", self.device_id, 0, 255);
        let tensorrt = self.execution_provider == ExecutionProvider::TensorRt;
        if self.fp16 && !tensorrt {
            p.add(
                "model.fp16",
                "only with execution_provider = \"tensorrt\" (for CUDA or the CPU, use a float16 model)",
            );
        }
        if self.engine_cache_dir.is_some() && !tensorrt {
            p.add(
                "model.engine_cache_dir",
                "only with execution_provider = \"tensorrt\"",
            );
        }
        let max_batch = p.range("model.max_batch", self.max_batch, 1, 256);
        let preprocess = self.preprocess.check(p);
        let mut model = ModelConfig {
            path,
            name,
            labels,
            top_k: top_k? as usize,
            threads: threads?,
            workers: workers?,
            parallelism: Parallelism {
                workers: 1,
                threads: 1,
            },
            provider: ProviderConfig {
                kind: self.execution_provider,
                device_id: device_id? as i32,
                fp16: self.fp16,
                engine_cache_dir: self.engine_cache_dir.map(|d| base.join(d)),
                fallback_to_cpu: self.fallback_to_cpu,
            },
            max_batch: max_batch? as usize,
            preprocess: preprocess?,
        };
        // Until the cameras are known: as if a file were read at full speed.
        model.fit(usize::MAX);
        Some(model)
    }
}
