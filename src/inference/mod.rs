//! Stage 3: one worker owning the `ort::Session`.
//!
//! It waits for a frame, then takes every other frame that is already waiting (from any
//! camera) up to `max_batch`, runs them as one batch, turns each output row into
//! probabilities (softmax only when the model does not already output a distribution) and
//! keeps the top k.

mod config;
pub mod model;
pub mod topk;
pub mod turns;

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use ort::session::Session;
use ort::value::TensorRef;

use crate::messages::{Classification, Latency, ModelInfo, Prepared, Scored};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::preprocess::PreprocessSpec;
use crate::service::Beat;
use crate::status::StatusBoard;
pub use config::{ExecutionProvider, ModelConfig, ProviderConfig, RawModel, Threads};
pub use model::{load_runtime, BatchDim, Element, ModelError, ModelIo, Runtime};
use turns::Turns;

use half::f16;
use smallvec::SmallVec;

use crate::preprocess::Layout;

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

/// The inference stage: owns the session and its reusable buffers.
pub struct InferenceWorker {
    session: Session,
    io: ModelIo,
    max_batch: usize,
    top_k: usize,
    side: usize,
    frame_len: usize,
    batch_buf: Vec<f32>,
    half_buf: Vec<f16>,
    row_buf: Vec<f32>,
}

impl InferenceWorker {
    /// Opens the model, resolves the preprocessing against its input size, and warms it up
    /// with one run, which also tells the output size.
    pub fn open(
        cfg: &ModelConfig,
        runtime: &Runtime,
    ) -> Result<(Self, PreprocessSpec), ModelError> {
        let (session, io) = model::open_session(cfg, runtime)?;
        let spec = model::resolve_preprocess(&cfg.preprocess, &io)?;
        let max_batch = match io.batch {
            BatchDim::Dynamic => cfg.max_batch,
            BatchDim::Fixed(n) => {
                tracing::info!(
                    batch = n,
                    "model has a fixed batch size: every run uses it (padding short batches)"
                );
                n
            }
        };
        let mut worker = Self {
            session,
            io,
            max_batch,
            top_k: cfg.top_k,
            side: spec.crop as usize,
            frame_len: spec.tensor_len(),
            batch_buf: Vec::new(),
            half_buf: Vec::new(),
            row_buf: Vec::new(),
        };
        let zeros = vec![0f32; spec.tensor_len()];
        let classes = worker
            .run_raw(&[zeros.as_slice()])
            .map_err(|e| ModelError::Invalid {
                path: cfg.path.clone(),
                message: format!("warm-up run failed: {e}"),
            })?;
        worker.io.classes = classes;
        Ok((worker, spec))
    }

    pub fn io(&self) -> &ModelIo {
        &self.io
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Runs one batch and leaves `rows` rows of raw outputs in `self.row_buf`; returns the
    /// number of classes per row.
    fn run_raw(&mut self, frames: &[&[f32]]) -> Result<usize, InferenceError> {
        let rows = frames.len();
        let n = match self.io.batch {
            BatchDim::Dynamic => rows,
            BatchDim::Fixed(n) => n,
        };
        // One frame for a dynamic batch is fed as it is; otherwise frames are laid out
        // back to back (a fixed-batch model gets zero padding after the real frames).
        let input: &[f32] = if let ([single], BatchDim::Dynamic) = (frames, self.io.batch) {
            single
        } else {
            self.batch_buf.clear();
            for f in frames {
                self.batch_buf.extend_from_slice(f);
            }
            self.batch_buf.resize(n * self.frame_len, 0.0);
            &self.batch_buf
        };
        let shape = match self.io.layout {
            Layout::Nchw => [n, 3, self.side, self.side],
            Layout::Nhwc => [n, self.side, self.side, 3],
        };
        let name = self.io.input.as_str();
        let outputs = match self.io.input_type {
            Element::F32 => {
                let input = TensorRef::from_array_view((shape, input))?;
                self.session.run(ort::inputs![name => input])?
            }
            Element::F16 => {
                self.half_buf.clear();
                self.half_buf
                    .extend(input.iter().map(|&v| f16::from_f32(v)));
                let input = TensorRef::from_array_view((shape, self.half_buf.as_slice()))?;
                self.session.run(ort::inputs![name => input])?
            }
        };
        let output = &outputs[self.io.output.as_str()];
        self.row_buf.clear();
        // Only the leading dimension is needed (and the whole shape for an error): no copy
        // of the shape per run.
        let shape_ok = |shape: &[i64]| shape.first().is_some_and(|&d| d as usize == n);
        let ok = match self.io.output_type {
            Element::F32 => {
                let (shape, data) = output.try_extract_tensor::<f32>()?;
                self.row_buf.extend_from_slice(data);
                shape_ok(shape)
            }
            Element::F16 => {
                let (shape, data) = output.try_extract_tensor::<f16>()?;
                self.row_buf.extend(data.iter().map(|v| v.to_f32()));
                shape_ok(shape)
            }
        };
        let total = self.row_buf.len();
        if !ok || !total.is_multiple_of(n) || total == 0 {
            let shape = match self.io.output_type {
                Element::F32 => output.try_extract_tensor::<f32>()?.0.to_vec(),
                Element::F16 => output.try_extract_tensor::<f16>()?.0.to_vec(),
            };
            return Err(InferenceError::OutputShape {
                name: self.io.output.clone(),
                shape,
                rows: n,
            });
        }
        let classes = total / n;
        self.row_buf.truncate(rows * classes);
        Ok(classes)
    }

    /// Raw model output for up to `max_batch` preprocessed frames, before any softmax:
    /// returns the number of classes and the rows, one per frame.
    pub fn logits(&mut self, frames: &[&[f32]]) -> Result<(usize, &[f32]), InferenceError> {
        let classes = self.run_raw(frames)?;
        Ok((classes, &self.row_buf))
    }

    /// Classifies a batch of preprocessed frames: top-k probabilities per frame, best first.
    pub fn classify(&mut self, frames: &[&[f32]]) -> Result<Vec<Vec<Scored>>, InferenceError> {
        let mut out = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(self.max_batch) {
            let classes = self.run_raw(chunk)?;
            for row in self.row_buf.chunks_exact_mut(classes) {
                topk::to_probabilities(row);
                let mut top = Vec::with_capacity(self.top_k);
                topk::top_k_into(row, self.top_k, &mut top);
                out.push(top);
            }
        }
        Ok(out)
    }
}

/// The buffers the inference thread hands back and reuses.
#[derive(Debug, Clone)]
pub struct Pools {
    /// Input tensors, back to the preprocess threads.
    pub tensors: Pool<Vec<f32>>,
    /// Top-k lists, back from the publisher.
    pub tops: Pool<Vec<Scored>>,
}

/// What the pipeline tells a running inference thread.
pub enum Control {
    /// A camera's preprocessed frames (a camera started at start-up or by a reload).
    Camera(Receiver<Prepared>),
    /// A model loaded and warmed up by a reload, replacing the running one.
    Swap(Box<Serving>),
}

/// Why the inference thread rebuilds its set of inputs.
enum Change {
    Control(Control),
    ControlClosed,
    CameraGone(usize),
}

/// A model ready to serve: the warmed-up worker, its name and labels, and the generation
/// of preprocessing its input follows.
pub struct Serving {
    pub worker: InferenceWorker,
    pub model: Arc<ModelInfo>,
    pub spec_generation: u64,
}

impl Serving {
    /// The inference thread. Each camera has its own one-slot input, so a camera has at
    /// most one preprocessed frame waiting and none can crowd out another: the worker
    /// waits until any camera has a frame, then takes frames least recently served camera
    /// first (see [`Turns`]), up to `max_batch`. Cameras and models arrive on `control`;
    /// the thread ends once `control` and every camera have hung up.
    pub fn run(
        mut self,
        control: Receiver<Control>,
        tx: Sender<Classification>,
        metrics: &Metrics,
        status: &StatusBoard,
        pools: &Pools,
        beat: Beat,
    ) {
        let mut inputs: Vec<Receiver<Prepared>> = Vec::new();
        let mut turns = Turns::default();
        let mut control_open = true;
        let mut batch: Vec<Prepared> = Vec::with_capacity(self.worker.max_batch);
        let mut stats = BatchStats::default();
        while control_open || !inputs.is_empty() {
            // The select is rebuilt only when the inputs change, not per frame.
            let change = {
                let mut select = Select::new();
                let ctl = control_open.then(|| select.recv(&control));
                for rx in &inputs {
                    select.recv(rx);
                }
                loop {
                    beat.idle();
                    // Only a wake-up: which frames are taken is decided below, not by
                    // which input happened to be ready first.
                    let ready = select.ready();
                    beat.busy();
                    if Some(ready) == ctl {
                        match control.try_recv() {
                            Ok(c) => break Change::Control(c),
                            Err(TryRecvError::Disconnected) => break Change::ControlClosed,
                            Err(TryRecvError::Empty) => continue,
                        }
                    }
                    let mut gone = None;
                    turns.pick(self.worker.max_batch, |i| match inputs[i].try_recv() {
                        Ok(p) => {
                            let n = p.inputs.len();
                            batch.push(p);
                            n
                        }
                        Err(TryRecvError::Disconnected) => {
                            gone.get_or_insert(i);
                            0
                        }
                        Err(TryRecvError::Empty) => 0,
                    });
                    if !self.infer(&mut batch, &tx, metrics, status, pools, &mut stats) {
                        stats.log();
                        return;
                    }
                    if let Some(i) = gone {
                        break Change::CameraGone(i);
                    }
                }
            };
            match change {
                Change::Control(Control::Camera(rx)) => {
                    inputs.push(rx);
                    turns.push();
                }
                Change::Control(Control::Swap(next)) => {
                    tracing::info!(
                        model = %next.model.name,
                        previous = %self.model.name,
                        "model swapped in"
                    );
                    self = *next;
                    batch.reserve(self.worker.max_batch);
                }
                Change::ControlClosed => control_open = false,
                Change::CameraGone(i) => {
                    inputs.swap_remove(i);
                    turns.swap_remove(i);
                }
            }
        }
        stats.log();
    }

    /// Classifies every input of the frames in `batch` (emptying it), `max_batch` inputs
    /// per run, and hands the results on. Frames made for another model's input (just
    /// before or after a swap) are dropped and counted. False when the publisher is gone.
    fn infer(
        &mut self,
        batch: &mut Vec<Prepared>,
        tx: &Sender<Classification>,
        metrics: &Metrics,
        status: &StatusBoard,
        pools: &Pools,
        stats: &mut BatchStats,
    ) -> bool {
        let generation = self.spec_generation;
        let mut i = 0;
        while i < batch.len() {
            if batch[i].generation == generation {
                i += 1;
            } else {
                let p = batch.swap_remove(i);
                status.count(p.meta.camera, |s| s.dropped += 1);
                p.inputs
                    .into_iter()
                    .for_each(|x| pools.tensors.give(x.tensor));
            }
        }
        // (frame, input) of every input, in order: whole frames before their regions.
        // Up to 32 inputs (a few frames with regions) need no allocation here.
        let all: SmallVec<[(usize, usize); 32]> = batch
            .iter()
            .enumerate()
            .flat_map(|(f, p)| (0..p.inputs.len()).map(move |k| (f, k)))
            .collect();
        let mut open = true;
        for run in all.chunks(self.worker.max_batch.max(1)) {
            open = open && self.run_once(batch, run, tx, metrics, pools, stats);
        }
        for p in batch.drain(..) {
            p.inputs
                .into_iter()
                .for_each(|x| pools.tensors.give(x.tensor));
        }
        open
    }

    /// One run of the model over the inputs `run` names ((frame, input) in `batch`);
    /// false when the publisher is gone.
    fn run_once(
        &mut self,
        batch: &[Prepared],
        run: &[(usize, usize)],
        tx: &Sender<Classification>,
        metrics: &Metrics,
        pools: &Pools,
        stats: &mut BatchStats,
    ) -> bool {
        let started = Instant::now();
        // A run never exceeds max_batch; up to 16 inputs need no allocation here.
        let tensors: SmallVec<[&[f32]; 16]> = run
            .iter()
            .map(|&(f, k)| batch[f].inputs[k].tensor.as_slice())
            .collect();
        let result = self.worker.run_raw(&tensors);
        drop(tensors);
        let inference_ms = started.elapsed().as_secs_f64() * 1e3;
        let size = run.len();
        stats.record(size);
        metrics.inference_seconds.observe(inference_ms / 1e3);
        metrics.batch_size.observe(size as f64);
        let classes = match result {
            Ok(classes) => classes,
            Err(e) => {
                tracing::error!(batch = size, error = %e, "inference failed; batch lost");
                return true;
            }
        };
        let done = Instant::now();
        let rows = self.worker.row_buf.chunks_exact_mut(classes);
        for (&(f, k), row) in run.iter().zip(rows) {
            let p = &batch[f];
            let input = &p.inputs[k];
            topk::to_probabilities(row);
            let mut top = pools.tops.take().unwrap_or_default();
            topk::top_k_into(row, self.worker.top_k, &mut top);
            let total = done.duration_since(p.meta.captured).as_secs_f64() * 1e3;
            let waited = started.duration_since(p.meta.captured).as_secs_f64() * 1e3;
            // The frame waited while all its inputs were preprocessed.
            let preprocessed: f64 = p.inputs.iter().map(|x| x.preprocess_ms).sum();
            let c = Classification {
                meta: p.meta,
                region: input.region.clone(),
                model: self.model.clone(),
                top,
                latency: Latency {
                    queue: (waited - preprocessed).max(0.0),
                    preprocess: input.preprocess_ms,
                    inference: inference_ms,
                    total,
                },
                batch: size,
            };
            if tx.send(c).is_err() {
                return false;
            }
        }
        true
    }
}

/// Batch-size bookkeeping, logged when the worker stops.
#[derive(Debug, Default)]
struct BatchStats {
    frames: u64,
    batches: u64,
    largest: usize,
}

impl BatchStats {
    fn record(&mut self, size: usize) {
        self.frames += size as u64;
        self.batches += 1;
        self.largest = self.largest.max(size);
    }

    fn log(&self) {
        tracing::info!(
            frames = self.frames,
            batches = self.batches,
            largest_batch = self.largest,
            "inference stopped"
        );
    }
}
