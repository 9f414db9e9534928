//! The values that travel between stages.
//!
//! `Frame` (capture → preprocess) → `Prepared` (preprocess → inference) →
//! `Classification` (inference → publish). Each carries the same [`FrameMeta`] so the
//! publisher can report where a frame came from and how long each stage held it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use opencv::core::Mat;

use crate::labels::Labels;

/// Identity and timing of one captured frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    /// Position of the camera in the configuration (index into the camera list).
    pub camera: usize,
    /// Index of the frame in its source, counting every decoded frame (also across
    /// reconnects), including those skipped by `fps` or dropped for freshness.
    pub index: u64,
    /// Wall-clock time the frame was read.
    pub captured_at: SystemTime,
    /// Monotonic time the frame was read; latencies are measured from here.
    pub captured: Instant,
    /// Frames of this camera dropped so far because the pipeline was busy.
    pub dropped: u64,
}

/// A decoded frame, 8-bit BGR as OpenCV returns it.
pub struct Frame {
    pub camera_id: Arc<str>,
    pub index: u64,
    /// Where the frame sits on the timeline the camera's `fps` is counted on (seconds):
    /// the file's own, or the clock's for a live source. Regions with an `fps` of their
    /// own are gated on it.
    pub timeline_s: f64,
    pub captured_at: SystemTime,
    pub captured: Instant,
    pub dropped: u64,
    pub camera: usize,
    pub image: Mat,
}

impl Frame {
    pub fn meta(&self) -> FrameMeta {
        FrameMeta {
            camera: self.camera,
            index: self.index,
            captured_at: self.captured_at,
            captured: self.captured,
            dropped: self.dropped,
        }
    }
}

/// The region of interest a classification is of (`None` in its place: the whole frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionOf {
    pub name: Arc<str>,
    /// The part of the source frame the model saw: x, y, width, height in source pixels.
    pub input_rect: [u32; 4],
}

/// One model input made from a frame: the whole frame or one of its regions.
pub struct Input {
    /// `None`: the whole frame.
    pub region: Option<RegionOf>,
    /// Planar CHW or interleaved HWC float32, batch dimension excluded.
    pub tensor: Vec<f32>,
    /// Time spent preprocessing it, in milliseconds.
    pub preprocess_ms: f64,
}

/// A frame turned into model inputs: the whole frame and the regions due in it, inferred
/// together (one camera's frame is one unit of freshness and fairness).
pub struct Prepared {
    pub meta: FrameMeta,
    /// Which preprocessing made it (see [`crate::preprocess::SpecCell`]): a model swapped
    /// in by a reload only takes frames made for it.
    pub generation: u64,
    /// At least one.
    pub inputs: Vec<Input>,
    /// When preprocessing finished: from here until inference starts is queueing.
    pub prepared_at: Instant,
}

/// One class of a classification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub index: usize,
    pub score: f32,
}

/// Time each stage held a frame, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Capture → inference start, less preprocessing: time spent waiting in queues.
    pub queue: f64,
    pub preprocess: f64,
    /// Duration of the batch the frame was inferred in.
    pub inference: f64,
    /// Capture → handed to the publisher.
    pub total: f64,
}

/// The model a classification came from: its configured name and its class names.
#[derive(Debug)]
pub struct ModelInfo {
    pub name: String,
    pub labels: Labels,
}

/// The model's verdict on one frame or one region of it: the top-k classes, best first.
pub struct Classification {
    pub meta: FrameMeta,
    /// `None`: the whole frame.
    pub region: Option<RegionOf>,
    /// The model that classified it (a reload may swap models between two frames).
    pub model: Arc<ModelInfo>,
    pub top: Vec<Scored>,
    pub latency: Latency,
    /// Number of inputs in the batch this one was inferred in.
    pub batch: usize,
}
