//! The preprocess thread of one camera, and the preprocessing spec every camera shares
//! (replaced when a reload swaps in a model with another input).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crossbeam_channel::{select, Receiver, Sender};
use opencv::core::Mat;

use super::targets::{Targets, TargetsCell};
use super::{PreprocessSpec, Preprocessor};
use crate::messages::{Frame, Input, Prepared};
use crate::monitor::Monitor;
use crate::pool::Pool;
use crate::service::Beat;
use crate::status::StatusBoard;

/// The preprocessing the running model needs, shared by every camera's preprocess thread.
/// A reload that swaps in a model with different input needs replaces it; each thread
/// notices at its next frame (one atomic load per frame) and rebuilds its preprocessor.
#[derive(Debug)]
pub struct SpecCell {
    generation: AtomicU64,
    spec: RwLock<(u64, PreprocessSpec)>,
}

impl SpecCell {
    pub fn new(spec: PreprocessSpec) -> SpecCell {
        SpecCell {
            generation: AtomicU64::new(0),
            spec: RwLock::new((0, spec)),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current spec and its generation.
    pub fn get(&self) -> (u64, PreprocessSpec) {
        *self.spec.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs `spec` and returns its generation: the current one when nothing changed
    /// (frames already made stay valid), a new one otherwise.
    pub fn replace(&self, spec: PreprocessSpec) -> u64 {
        let mut cur = self.spec.write().unwrap_or_else(|e| e.into_inner());
        if cur.1 != spec {
            *cur = (cur.0 + 1, spec);
            self.generation.store(cur.0, Ordering::Release);
        }
        cur.0
    }

    /// The generation `spec` would get from [`SpecCell::replace`], without installing it.
    pub fn generation_for(&self, spec: &PreprocessSpec) -> u64 {
        let cur = self.get();
        if cur.1 == *spec {
            cur.0
        } else {
            cur.0 + 1
        }
    }
}

/// A live camera's pace: how often frames arrive and how long a hand-over to inference
/// takes (from the first frame prepared for it), as moving averages.
#[derive(Debug, Default)]
struct Pace {
    last_frame: Option<Instant>,
    interval_ms: f64,
    cycle_start: Option<Instant>,
    cycle_ms: f64,
}

impl Pace {
    const WEIGHT: f64 = 0.2;

    fn frame(&mut self, captured: Instant) {
        if let Some(last) = self.last_frame {
            let ms = captured.saturating_duration_since(last).as_secs_f64() * 1e3;
            self.interval_ms += Self::WEIGHT * (ms - self.interval_ms);
        }
        self.last_frame = Some(captured);
        self.cycle_start.get_or_insert_with(Instant::now);
    }

    fn handed_over(&mut self) {
        if let Some(start) = self.cycle_start.take() {
            let ms = start.elapsed().as_secs_f64() * 1e3;
            self.cycle_ms += Self::WEIGHT * (ms - self.cycle_ms);
        }
    }

    /// Inference takes this camera's frames within about three frame intervals.
    fn served_promptly(&self) -> bool {
        self.cycle_ms < 3.0 * self.interval_ms
    }
}

/// The buffers a preprocess thread reuses.
#[derive(Debug, Clone)]
pub struct Pools {
    /// Input tensors inference is done with (shared by every camera).
    pub tensors: Pool<Vec<f32>>,
    /// Decoded images, handed back to capture (one pool for every camera).
    pub images: Pool<Mat>,
}

/// The preprocess stage of one camera: built from the shared preprocessing, the camera's
/// targets (whole frame, regions) and what it reports to; [`Preprocess::run`] is its
/// thread.
pub struct Preprocess {
    cell: Arc<SpecCell>,
    /// What to make of each frame, as configured (a reload may replace it) ...
    targets_cell: Arc<TargetsCell>,
    /// ... and as in use, with its version.
    targets: (u64, Targets),
    pools: Pools,
    status: Arc<StatusBoard>,
    /// Watched cameras' prepared frames are kept there until classified.
    monitor: Arc<Monitor>,
    /// A live camera's stale prepared frames are replaced (and counted); a file's all go on.
    live: bool,
    beat: Beat,
}

/// Gives a frame's tensors back to the pool.
fn give_back(inputs: Vec<Input>, tensors: &Pool<Vec<f32>>) {
    for input in inputs {
        tensors.give(input.tensor);
    }
}

impl Preprocess {
    pub fn new(
        cell: Arc<SpecCell>,
        targets: Arc<TargetsCell>,
        pools: Pools,
        status: Arc<StatusBoard>,
        monitor: Arc<Monitor>,
        live: bool,
        beat: Beat,
    ) -> Self {
        let (version, config) = targets.get();
        Preprocess {
            cell,
            targets_cell: targets,
            targets: (version, Targets::new(config)),
            pools,
            status,
            monitor,
            live,
            beat,
        }
    }

    /// Makes the inputs of `frame` (the image goes back to its pool, or to the monitor while
    /// the camera is watched); `None` when there is nothing to classify in it (an error,
    /// logged, or no region due).
    fn prepare(
        &mut self,
        pre: &mut Preprocessor,
        generation: u64,
        frame: Frame,
    ) -> Option<Prepared> {
        if self.targets_cell.version() != self.targets.0 {
            let (version, config) = self.targets_cell.get();
            tracing::info!(camera = %frame.camera_id, regions = config.regions.len(),
                full_frame = config.full_frame, "regions changed");
            self.targets = (version, Targets::new(config));
        }
        let mut inputs = Vec::new();
        let t = frame.timeline_s;
        let tensors = &self.pools.tensors;
        let made = self
            .targets
            .1
            .prepare(pre, generation, &frame.image, t, tensors, &mut inputs);
        let meta = frame.meta();
        // A frame that will be classified is kept while its camera is watched.
        let image = if made.is_ok() && !inputs.is_empty() {
            self.monitor
                .frames
                .offer(meta.camera, meta.index, meta.captured_at, frame.image)
        } else {
            Some(frame.image)
        };
        if let Some(image) = image {
            self.pools.images.give(image);
        }
        match made {
            Err(e) => {
                tracing::warn!(camera = %frame.camera_id, frame = frame.index, error = %e, "frame skipped");
                give_back(inputs, tensors);
                return None;
            }
            Ok(Some(errors)) => {
                for (region, error) in &errors {
                    tracing::warn!(camera = %frame.camera_id, %region, %error, "region not classified");
                }
                self.status.set_region_errors(meta.camera, errors);
            }
            Ok(None) => {}
        }
        if inputs.is_empty() {
            return None;
        }
        Some(Prepared {
            prepared_at: Instant::now(),
            inputs,
            generation,
            meta,
        })
    }

    /// The preprocess thread of one camera: frames in, tensors out, until the capture side
    /// hangs up. A file's frames are all handed on (sending blocks). A live camera's prepared
    /// frame waits for inference only until a newer frame arrives: then it is stale, is
    /// dropped (counted in the camera's `dropped`) and the newer one is prepared instead, so
    /// inference gets a fresh frame and capture→publish latency stays near one frame interval
    /// plus one inference. How often: while the camera is served within a few frame intervals
    /// (few cameras), every time; when it waits longer (many cameras share inference) only
    /// once per handed-over frame, since preprocessing every newer frame of every camera
    /// would spend the CPU inference needs (16 cameras on 2 cores: 2.8 instead of 9.7
    /// classified frames/s). Returns how many frames entered preprocessing.
    pub fn run(mut self, rx: Receiver<Frame>, tx: Sender<Prepared>) -> u64 {
        let (mut generation, spec) = self.cell.get();
        let mut pre = Preprocessor::new(spec);
        let mut entered = 0;
        let mut newer: Option<Frame> = None;
        // The frame being prepared replaced a stale one.
        let mut replacement = false;
        let mut pace = Pace::default();
        loop {
            let frame = match newer.take() {
                Some(f) => f,
                None => match rx.recv() {
                    Ok(f) => f,
                    Err(_) => break,
                },
            };
            self.beat.busy();
            if self.cell.generation() != generation {
                let (g, spec) = self.cell.get();
                generation = g;
                pre = Preprocessor::new(spec);
            }
            entered += 1;
            let t = frame.timeline_s;
            let prepared = self.prepare(&mut pre, generation, frame);
            // Waiting for inference to take the frame is idle time, not work.
            self.beat.idle();
            let Some(prepared) = prepared else { continue };
            let meta = prepared.meta;
            pace.frame(meta.captured);
            if !self.live || (replacement && !pace.served_promptly()) {
                replacement = false;
                if tx.send(prepared).is_err() {
                    break;
                }
                self.targets.1.handed_over(t);
                pace.handed_over();
                continue;
            }
            select! {
                send(tx, prepared) -> sent => {
                    if sent.is_err() {
                        break;
                    }
                    replacement = false;
                    self.targets.1.handed_over(t);
                    pace.handed_over();
                }
                recv(rx) -> next => match next {
                    Ok(next) => {
                        self.status.count(meta.camera, |s| s.dropped += 1);
                        give_back(prepared.inputs, &self.pools.tensors);
                        newer = Some(next);
                        replacement = true;
                    }
                    // The camera stopped: its last frame still goes to inference.
                    Err(_) => {
                        let _ = tx.send(prepared);
                        break;
                    }
                },
            }
        }
        self.beat.idle();
        entered
    }
}
