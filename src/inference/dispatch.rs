//! The dispatcher: which frames go to which inference worker, and when.
//!
//! Each camera has its own one-slot input, so a camera has at most one preprocessed frame
//! waiting and none can crowd out another. While some worker is free, the dispatcher
//! waits until any camera has a frame, takes frames least recently served camera first
//! (see [`Turns`]), up to `max_batch` per free worker, and deals them out so the free
//! workers get about as many inputs each. A camera whose frames in flight reached its
//! limit is not taken from until one comes back: one for a live camera (latest frame
//! wins, and its next frame is the freshest when a worker frees up), one per worker for
//! a file read at full speed.

use std::sync::Mutex;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Select, Sender, TryRecvError};
use smallvec::SmallVec;

use super::release::Release;
use super::serve::{BatchStats, Job, Outlet, Report, Runner, Taken};
use super::turns::Turns;
use super::{Control, Pools, Serving};
use crate::messages::{Classification, Prepared};
use crate::metrics::Metrics;
use crate::service::{Beat, Liveness};
use crate::status::StatusBoard;

/// Capacity of the workers' reports to the dispatcher.
const REPORTS: usize = 64;

/// A camera's input and its frames in flight.
struct Input {
    id: u64,
    rx: Receiver<Prepared>,
    live: bool,
    in_flight: usize,
}

impl Input {
    /// How many of its frames may be in flight with `workers` workers.
    fn limit(&self, workers: usize) -> usize {
        if self.live {
            1
        } else {
            workers.max(1)
        }
    }
}

/// A running worker, as the dispatcher sees it.
struct Slot {
    id: usize,
    jobs: Sender<Job>,
    busy: bool,
}

/// What the dispatcher needs besides its inputs and workers.
pub struct ServingDeps<'a> {
    pub metrics: &'a Metrics,
    pub status: &'a StatusBoard,
    pub pools: &'a Pools,
    pub liveness: &'a Liveness,
    pub beat: Beat,
}

/// Why the dispatcher wakes up.
enum Wake {
    Control(Control),
    ControlClosed,
    Reports,
    Frames,
}

impl Serving {
    /// The inference stage: the dispatcher on this thread, the workers on their own
    /// (`infer-N`). Cameras and models arrive on `control`; the stage ends once `control`
    /// and every camera have hung up, after the workers have finished what they hold.
    pub fn run(self, control: Receiver<Control>, tx: Sender<Classification>, deps: ServingDeps) {
        let outlet = Outlet {
            release: Mutex::new(Release::default()),
            tx,
            metrics: deps.metrics,
            status: deps.status,
            pools: deps.pools,
        };
        let mut stats = BatchStats::default();
        let mut workers = 0;
        std::thread::scope(|scope| {
            let mut d = Dispatcher::new(scope, &outlet, deps.liveness);
            d.hire(self);
            d.run(&control, &deps.beat);
            workers = d.peak;
            // Closed jobs end the workers; with the reports' receiver gone, what they
            // still report on the way out is dropped instead of waiting for a reader.
            drop(d.slots);
            drop(d.reports);
            for h in d.handles {
                match h.join() {
                    Ok(s) => stats.add(&s),
                    Err(_) => tracing::error!("an inference worker panicked"),
                }
            }
        });
        stats.log(workers);
    }
}

struct Dispatcher<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    outlet: &'env Outlet<'env>,
    liveness: &'env Liveness,
    reports_tx: Sender<Report>,
    reports: Receiver<Report>,
    slots: Vec<Slot>,
    handles: Vec<ScopedJoinHandle<'scope, BatchStats>>,
    inputs: Vec<Input>,
    turns: Turns,
    next_input: u64,
    next_ticket: u64,
    next_worker: usize,
    max_batch: usize,
    /// Most workers at once (logged at the end).
    peak: usize,
}

impl<'scope, 'env> Dispatcher<'scope, 'env> {
    fn new(
        scope: &'scope Scope<'scope, 'env>,
        outlet: &'env Outlet<'env>,
        liveness: &'env Liveness,
    ) -> Self {
        // Full: a worker waits for the dispatcher, which reads every report before it
        // waits again and never waits for a worker (a worker is sent a job only when its
        // previous one is done). Each worker has at most three unread: its job done, the
        // publisher gone, its end.
        let (reports_tx, reports) = bounded(REPORTS);
        Dispatcher {
            scope,
            outlet,
            liveness,
            reports_tx,
            reports,
            slots: Vec::new(),
            handles: Vec::new(),
            inputs: Vec::new(),
            turns: Turns::default(),
            next_input: 0,
            next_ticket: 0,
            next_worker: 0,
            max_batch: 1,
            peak: 0,
        }
    }

    /// Starts a thread per worker of `serving`. Workers already running are retired: they
    /// finish the frames they hold (their results keep their cameras' order) and end.
    fn hire(&mut self, serving: Serving) {
        self.slots.clear();
        self.max_batch = serving
            .workers
            .iter()
            .map(|w| w.max_batch())
            .min()
            .unwrap_or(1);
        for worker in serving.workers {
            let id = self.next_worker;
            self.next_worker += 1;
            let runner = Runner {
                id,
                worker,
                model: serving.model.clone(),
                spec_generation: serving.spec_generation,
            };
            let (jobs_tx, jobs) = bounded(1);
            let reports = self.reports_tx.clone();
            let beat = self
                .liveness
                .stage(format!("inference worker {id}"), Duration::from_secs(60));
            let outlet = self.outlet;
            let spawned = std::thread::Builder::new()
                .name(format!("infer-{id}"))
                .spawn_scoped(self.scope, move || {
                    let _span = tracing::info_span!("inference", worker = id).entered();
                    runner.run(jobs, reports, outlet, beat)
                });
            match spawned {
                Ok(h) => {
                    self.handles.push(h);
                    self.slots.push(Slot {
                        id,
                        jobs: jobs_tx,
                        busy: false,
                    });
                }
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "cannot start an inference worker")
                }
            }
        }
        self.peak = self.peak.max(self.slots.len());
    }

    fn run(&mut self, control: &Receiver<Control>, beat: &Beat) {
        let mut control_open = true;
        while (control_open || !self.inputs.is_empty()) && !self.slots.is_empty() {
            let wake = self.wait(control_open.then_some(control), beat);
            beat.busy();
            let go_on = match wake {
                Wake::Control(Control::Camera { rx, live }) => {
                    self.inputs.push(Input {
                        id: self.next_input,
                        rx,
                        live,
                        in_flight: 0,
                    });
                    self.next_input += 1;
                    self.turns.push();
                    true
                }
                Wake::Control(Control::Swap(next)) => {
                    tracing::info!(
                        model = %next.model.name,
                        workers = next.workers.len(),
                        "model swapped in"
                    );
                    self.hire(*next);
                    true
                }
                Wake::ControlClosed => {
                    control_open = false;
                    true
                }
                Wake::Reports => self.read_reports(),
                Wake::Frames => {
                    self.dispatch();
                    true
                }
            };
            if !go_on {
                return;
            }
        }
    }

    /// Waits for a control message, a worker's report, or (while a worker is free) a
    /// frame from a camera that may have one more in flight.
    fn wait(&self, control: Option<&Receiver<Control>>, beat: &Beat) -> Wake {
        let mut select = Select::new();
        let ctl = control.map(|c| select.recv(c));
        let reports = select.recv(&self.reports);
        let workers = self.slots.len();
        if self.slots.iter().any(|s| !s.busy) {
            for input in &self.inputs {
                if input.in_flight < input.limit(workers) {
                    select.recv(&input.rx);
                }
            }
        }
        loop {
            beat.idle();
            // Only a wake-up: which frames are taken is decided by `dispatch`, not by
            // which input happened to be ready first.
            let ready = select.ready();
            if Some(ready) == ctl {
                if let Some(c) = control {
                    match c.try_recv() {
                        Ok(c) => return Wake::Control(c),
                        Err(TryRecvError::Disconnected) => return Wake::ControlClosed,
                        Err(TryRecvError::Empty) => continue,
                    }
                }
            }
            return if ready == reports {
                Wake::Reports
            } else {
                Wake::Frames
            };
        }
    }

    /// Applies every report waiting; false when the stage must stop (the publisher is
    /// gone, or a worker ended on its own).
    fn read_reports(&mut self) -> bool {
        while let Ok(report) = self.reports.try_recv() {
            match report {
                Report::Done { worker, inputs } => {
                    if let Some(slot) = self.slots.iter_mut().find(|s| s.id == worker) {
                        slot.busy = false;
                    }
                    for id in inputs {
                        if let Some(input) = self.inputs.iter_mut().find(|i| i.id == id) {
                            input.in_flight = input.in_flight.saturating_sub(1);
                        }
                    }
                }
                Report::Closed => return false,
                Report::Left { worker } => {
                    if self.slots.iter().any(|s| s.id == worker) {
                        tracing::error!(worker, "an inference worker stopped unexpectedly");
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Takes the frames waiting (up to `max_batch` inputs per free worker) and deals them
    /// out among the free workers; forgets a camera that hung up.
    fn dispatch(&mut self) {
        // Inline buffers: a steady stream of frames allocates nothing here but each job's
        // list of frames.
        let free: SmallVec<[usize; 8]> = (0..self.slots.len())
            .filter(|&i| !self.slots[i].busy)
            .collect();
        let workers = self.slots.len();
        let mut taken: SmallVec<[(usize, Prepared); 8]> = SmallVec::new();
        let mut gone = None;
        let inputs = &self.inputs;
        self.turns.pick(self.max_batch * free.len(), |i| {
            let input = &inputs[i];
            if input.in_flight >= input.limit(workers) {
                return 0;
            }
            match input.rx.try_recv() {
                Ok(p) => {
                    let n = p.inputs.len().max(1);
                    taken.push((i, p));
                    n
                }
                Err(TryRecvError::Disconnected) => {
                    gone.get_or_insert(i);
                    0
                }
                Err(TryRecvError::Empty) => 0,
            }
        });
        let mut dealer = Dealer::new(free.len());
        let mut jobs: SmallVec<[Vec<Taken>; 8]> = (0..free.len()).map(|_| Vec::new()).collect();
        for (i, frame) in taken {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            self.outlet.expect(frame.meta.camera, ticket);
            self.inputs[i].in_flight += 1;
            jobs[dealer.next(frame.inputs.len())].push(Taken {
                frame,
                input: self.inputs[i].id,
                ticket,
            });
        }
        for (frames, &slot) in jobs.into_iter().zip(&free) {
            if frames.is_empty() {
                continue;
            }
            let slot = &mut self.slots[slot];
            slot.busy = true;
            // A worker that is gone reports it (Report::Left) and stops the stage.
            let _ = slot.jobs.send(Job { frames });
        }
        if let Some(i) = gone {
            self.inputs.swap_remove(i);
            self.turns.swap_remove(i);
        }
    }
}

/// Deals frames out among free workers, in order, each to the worker with the fewest
/// inputs so far (the first of them on a tie).
struct Dealer {
    load: SmallVec<[usize; 8]>,
}

impl Dealer {
    fn new(workers: usize) -> Self {
        Dealer {
            load: smallvec::smallvec![0; workers.max(1)],
        }
    }

    /// The worker a frame of `inputs` inputs goes to.
    fn next(&mut self, inputs: usize) -> usize {
        let (w, _) = self
            .load
            .iter()
            .enumerate()
            .min_by_key(|&(w, &l)| (l, w))
            .unwrap_or((0, &0));
        self.load[w] += inputs.max(1);
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal(sizes: &[usize], workers: usize) -> Vec<usize> {
        let mut dealer = Dealer::new(workers);
        sizes.iter().map(|&n| dealer.next(n)).collect()
    }

    #[test]
    fn frames_are_dealt_so_free_workers_share_the_inputs() {
        // One worker: everything in one batch.
        assert_eq!(deal(&[1, 1, 1], 1), [0, 0, 0]);
        // Two workers, two frames: one each (frames in parallel, not one batch of two).
        assert_eq!(deal(&[1, 1], 2), [0, 1]);
        assert_eq!(deal(&[1, 1, 1, 1], 2), [0, 1, 0, 1]);
        // A frame with regions counts its inputs: the next two go to the other worker.
        assert_eq!(deal(&[3, 1, 1, 1], 2), [0, 1, 1, 1]);
        assert_eq!(deal(&[1], 3), [0]);
        assert!(deal(&[], 2).is_empty());
    }

    #[test]
    fn a_live_camera_has_one_frame_in_flight_and_a_file_one_per_worker() {
        let (_tx, rx) = crossbeam_channel::bounded::<Prepared>(0);
        let live = Input {
            id: 0,
            rx: rx.clone(),
            live: true,
            in_flight: 0,
        };
        let file = Input {
            id: 1,
            rx,
            live: false,
            in_flight: 0,
        };
        assert_eq!((live.limit(1), live.limit(4)), (1, 1));
        assert_eq!((file.limit(1), file.limit(4)), (1, 4));
    }
}
