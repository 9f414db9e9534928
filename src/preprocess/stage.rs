//! The preprocess thread of one camera, and the preprocessing spec every camera shares
//! (replaced when a reload swaps in a model with another input).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crossbeam_channel::{select, Receiver, Sender};
use opencv::core::Mat;

use super::{PreprocessSpec, Preprocessor};
use crate::messages::{Frame, Prepared};
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

/// The preprocess stage of one camera: built from the shared preprocessing and what it
/// reports to; [`Preprocess::run`] is its thread.
pub struct Preprocess {
    cell: Arc<SpecCell>,
    pools: Pools,
    /// The status board, for a live camera (whose stale prepared frames are replaced and
    /// counted); `None` for a file, whose frames all go on.
    live: Option<Arc<StatusBoard>>,
    beat: Beat,
}

impl Preprocess {
    pub fn new(
        cell: Arc<SpecCell>,
        pools: Pools,
        live: Option<Arc<StatusBoard>>,
        beat: Beat,
    ) -> Self {
        Preprocess {
            cell,
            pools,
            live,
            beat,
        }
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
    pub fn run(self, rx: Receiver<Frame>, tx: Sender<Prepared>) -> u64 {
        let Preprocess {
            cell,
            pools,
            live,
            beat,
        } = self;
        let (mut generation, spec) = cell.get();
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
            beat.busy();
            if cell.generation() != generation {
                let (g, spec) = cell.get();
                generation = g;
                pre = Preprocessor::new(spec);
            }
            entered += 1;
            let started = Instant::now();
            // Every element is written below: a reused tensor needs no clearing.
            let mut tensor = pools.tensors.take().unwrap_or_default();
            tensor.resize(pre.spec().tensor_len(), 0.0);
            let result = pre.run_into(&frame.image, &mut tensor);
            let meta = frame.meta();
            pools.images.give(frame.image);
            if let Err(e) = result {
                tracing::warn!(camera = %frame.camera_id, frame = frame.index, error = %e, "frame skipped");
                pools.tensors.give(tensor);
                beat.idle();
                continue;
            }
            let prepared = Prepared {
                preprocess_ms: started.elapsed().as_secs_f64() * 1e3,
                prepared_at: Instant::now(),
                tensor,
                generation,
                meta,
            };
            // Waiting for inference to take the frame is idle time, not work.
            beat.idle();
            pace.frame(meta.captured);
            let replace = live
                .as_ref()
                .filter(|_| !replacement || pace.served_promptly());
            let Some(status) = replace else {
                replacement = false;
                if tx.send(prepared).is_err() {
                    break;
                }
                pace.handed_over();
                continue;
            };
            select! {
                send(tx, prepared) -> sent => {
                    if sent.is_err() {
                        break;
                    }
                    replacement = false;
                    pace.handed_over();
                }
                recv(rx) -> next => match next {
                    Ok(next) => {
                        status.count(meta.camera, |s| s.dropped += 1);
                        pools.tensors.give(prepared.tensor);
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
        beat.idle();
        entered
    }
}
