//! One inference worker's thread: runs the frames the dispatcher hands it on its own
//! session, and hands the results on through [`Release`] (in order per camera).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use smallvec::SmallVec;

use super::release::Release;
use super::worker::InferenceWorker;
use super::{topk, Pools};
use crate::messages::{Classification, Latency, ModelInfo, Prepared};
use crate::metrics::Metrics;
use crate::service::Beat;
use crate::status::StatusBoard;

/// Frames for one worker: each with its camera's input id (for the dispatcher's
/// in-flight count) and its ticket (for the order of results).
pub(super) struct Job {
    pub frames: Vec<Taken>,
}

pub(super) struct Taken {
    pub frame: Prepared,
    pub input: u64,
    pub ticket: u64,
}

/// What a worker tells the dispatcher.
pub(super) enum Report {
    /// A job is done: these inputs have one frame fewer in flight.
    Done {
        worker: usize,
        inputs: SmallVec<[u64; 8]>,
    },
    /// The publisher is gone: nothing more can be handed on.
    Closed,
    /// The worker's thread ended (its jobs channel closed, or it panicked).
    Left { worker: usize },
}

/// What every worker shares: the way out, and the daemon's books.
pub(super) struct Outlet<'a> {
    pub release: Mutex<Release<Classification>>,
    pub tx: Sender<Classification>,
    pub metrics: &'a Metrics,
    pub status: &'a StatusBoard,
    pub pools: &'a Pools,
}

impl Outlet<'_> {
    fn release(&self) -> std::sync::MutexGuard<'_, Release<Classification>> {
        self.release.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A frame was taken with `ticket`: its results will wait for the camera's earlier ones.
    pub fn expect(&self, camera: usize, ticket: u64) {
        self.release().expect(camera, ticket);
    }

    /// Hands on a finished frame's results in their camera's order; false when the
    /// publisher is gone.
    fn finish(&self, camera: usize, ticket: u64, items: Vec<Classification>) -> bool {
        self.release()
            .finish(camera, ticket, items, |c| self.tx.send(c).is_ok())
    }
}

/// Sends [`Report::Left`] when the worker's thread ends, however it ends.
struct Leaving<'a> {
    reports: &'a Sender<Report>,
    worker: usize,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        let _ = self.reports.send(Report::Left {
            worker: self.worker,
        });
    }
}

/// A worker: its session and the model and preprocessing generation it serves.
pub(super) struct Runner {
    pub id: usize,
    pub worker: InferenceWorker,
    pub model: Arc<ModelInfo>,
    pub spec_generation: u64,
}

/// Batch-size bookkeeping, summed over the workers and logged when inference stops.
#[derive(Debug, Default)]
pub(super) struct BatchStats {
    pub frames: u64,
    pub batches: u64,
    pub largest: usize,
}

impl BatchStats {
    fn record(&mut self, size: usize) {
        self.frames += size as u64;
        self.batches += 1;
        self.largest = self.largest.max(size);
    }

    pub fn add(&mut self, other: &BatchStats) {
        self.frames += other.frames;
        self.batches += other.batches;
        self.largest = self.largest.max(other.largest);
    }

    pub fn log(&self, workers: usize) {
        tracing::info!(
            frames = self.frames,
            batches = self.batches,
            largest_batch = self.largest,
            workers,
            "inference stopped"
        );
    }
}

impl Runner {
    /// Runs jobs until the dispatcher closes `jobs` (or the publisher is gone).
    pub fn run(
        mut self,
        jobs: Receiver<Job>,
        reports: Sender<Report>,
        outlet: &Outlet,
        beat: Beat,
    ) -> BatchStats {
        let _leaving = Leaving {
            reports: &reports,
            worker: self.id,
        };
        let mut stats = BatchStats::default();
        for job in jobs {
            beat.busy();
            let inputs = job.frames.iter().map(|t| t.input).collect();
            let open = self.infer(job.frames, outlet, &mut stats);
            beat.idle();
            let _ = reports.send(Report::Done {
                worker: self.id,
                inputs,
            });
            if !open {
                let _ = reports.send(Report::Closed);
                break;
            }
        }
        tracing::info!(
            worker = self.id,
            frames = stats.frames,
            batches = stats.batches,
            "inference worker stopped"
        );
        stats
    }

    /// Classifies every input of `frames`, `max_batch` inputs per run, and hands each
    /// frame's results on once its last input ran. Frames made for another model's input
    /// (just before or after a swap) are dropped and counted. False when the publisher is
    /// gone.
    fn infer(&mut self, frames: Vec<Taken>, outlet: &Outlet, stats: &mut BatchStats) -> bool {
        let mut open = true;
        let mut kept: SmallVec<[Taken; 8]> = SmallVec::new();
        for t in frames {
            if t.frame.generation == self.spec_generation {
                kept.push(t);
                continue;
            }
            outlet.status.count(t.frame.meta.camera, |s| s.dropped += 1);
            open = open && outlet.finish(t.frame.meta.camera, t.ticket, Vec::new());
            give_back(t.frame, outlet.pools);
        }
        // (frame, input) of every input, in order: whole frames before their regions.
        let all: SmallVec<[(usize, usize); 32]> = kept
            .iter()
            .enumerate()
            .flat_map(|(f, t)| (0..t.frame.inputs.len()).map(move |k| (f, k)))
            .collect();
        let mut results: SmallVec<[Vec<Classification>; 8]> =
            kept.iter().map(|_| Vec::new()).collect();
        let mut finished = 0;
        for run in all.chunks(self.worker.max_batch().max(1)) {
            self.run_once(&kept, run, outlet, stats, &mut results);
            // Frames whose every input has run are complete.
            let &(f, k) = run.last().unwrap_or(&(0, 0));
            let complete = if k + 1 == kept[f].frame.inputs.len() {
                f + 1
            } else {
                f
            };
            while finished < complete {
                let t = &kept[finished];
                let items = std::mem::take(&mut results[finished]);
                open = open && outlet.finish(t.frame.meta.camera, t.ticket, items);
                finished += 1;
            }
        }
        // Frames with no input left (none to classify) still release their turn.
        for (t, items) in kept.iter().zip(results).skip(finished) {
            open = open && outlet.finish(t.frame.meta.camera, t.ticket, items);
        }
        for t in kept {
            give_back(t.frame, outlet.pools);
        }
        open
    }

    /// One run of the model over the inputs `run` names ((frame, input) in `frames`); the
    /// results go to `results`, per frame.
    fn run_once(
        &mut self,
        frames: &[Taken],
        run: &[(usize, usize)],
        outlet: &Outlet,
        stats: &mut BatchStats,
        results: &mut [Vec<Classification>],
    ) {
        let started = Instant::now();
        // A run never exceeds max_batch; up to 16 inputs need no allocation here.
        let tensors: SmallVec<[&[f32]; 16]> = run
            .iter()
            .map(|&(f, k)| frames[f].frame.inputs[k].tensor.as_slice())
            .collect();
        let result = self.worker.run_raw(&tensors);
        drop(tensors);
        let inference_ms = started.elapsed().as_secs_f64() * 1e3;
        let size = run.len();
        stats.record(size);
        outlet.metrics.inference_seconds.observe(inference_ms / 1e3);
        outlet.metrics.batch_size.observe(size as f64);
        let classes = match result {
            Ok(classes) => classes,
            Err(e) => {
                tracing::error!(batch = size, error = %e, "inference failed; batch lost");
                return;
            }
        };
        let done = Instant::now();
        let rows = self.worker.row_buf.chunks_exact_mut(classes);
        for (&(f, k), row) in run.iter().zip(rows) {
            let p = &frames[f].frame;
            let input = &p.inputs[k];
            topk::to_probabilities(row);
            let mut top = outlet.pools.tops.take().unwrap_or_default();
            topk::top_k_into(row, self.worker.top_k, &mut top);
            let total = done.duration_since(p.meta.captured).as_secs_f64() * 1e3;
            let waited = started.duration_since(p.meta.captured).as_secs_f64() * 1e3;
            // The frame waited while all its inputs were preprocessed.
            let preprocessed: f64 = p.inputs.iter().map(|x| x.preprocess_ms).sum();
            results[f].push(Classification {
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
            });
        }
    }
}

fn give_back(p: Prepared, pools: &Pools) {
    p.inputs
        .into_iter()
        .for_each(|x| pools.tensors.give(x.tensor));
}
