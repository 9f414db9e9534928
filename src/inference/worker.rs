//! One ONNX Runtime session with its reusable buffers: runs a batch of preprocessed
//! frames and gives the raw rows or the top k of each.

use half::f16;
use ort::session::Session;
use ort::value::TensorRef;

use super::model::{self, BatchDim, Element, ModelError, ModelIo, Runtime};
use super::shared::SharedWeights;
use super::topk;
use super::{InferenceError, ModelConfig};
use crate::messages::Scored;
use crate::preprocess::{Layout, PreprocessSpec};

/// One inference worker's session and its reusable buffers.
pub struct InferenceWorker {
    session: Session,
    io: ModelIo,
    max_batch: usize,
    pub(super) top_k: usize,
    side: usize,
    frame_len: usize,
    batch_buf: Vec<f32>,
    half_buf: Vec<f16>,
    pub(super) row_buf: Vec<f32>,
}

impl InferenceWorker {
    /// Opens the model, resolves the preprocessing against its input size, and warms it up
    /// with one run, which also tells the output size.
    pub fn open(
        cfg: &ModelConfig,
        runtime: &Runtime,
    ) -> Result<(Self, PreprocessSpec), ModelError> {
        Self::open_sharing(cfg, runtime, None)
    }

    /// As [`InferenceWorker::open`], on the graph and weights `shared` holds (every
    /// session opened on them shares one copy of the weights).
    pub fn open_sharing(
        cfg: &ModelConfig,
        runtime: &Runtime,
        shared: Option<&SharedWeights>,
    ) -> Result<(Self, PreprocessSpec), ModelError> {
        let (session, io) = model::open_session(cfg, runtime, shared)?;
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
    pub(super) fn run_raw(&mut self, frames: &[&[f32]]) -> Result<usize, InferenceError> {
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
