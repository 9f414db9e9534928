//! The cameras of a run: each one's capture and preprocess threads, started and stopped
//! one by one (at start-up and by reloads).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use opencv::core::Mat;

use crate::capture::{CameraConfig, Capture, CaptureDeps, CaptureEnd, FrameSink};
use crate::inference::Control;
use crate::monitor::Monitor;
use crate::pool::Pool;
use crate::preprocess::{self, Preprocess, SpecCell, TargetsCell};
use crate::service::Liveness;
use crate::status::StatusBoard;

use super::{edges, spawn, Bell, RunError};

/// Decoded images kept for reuse while no camera needs them, for all cameras together. A
/// camera has at most three in flight (being converted, waiting, being preprocessed), and
/// one classified at a low rate holds one for a few milliseconds a second: with a pool per
/// camera every camera would keep its own (6.2 MB at 1080p) all the time; shared, what is
/// kept follows how many frames are in flight at once, not how many cameras there are.
const IMAGES_KEPT: usize = 4;
/// A kept image unused this long is let go: the spare ones of a burst (every camera's
/// first frame at once at start-up) are not kept for ever.
const IMAGES_IDLE: Duration = Duration::from_secs(10);

/// One camera's capture and preprocess threads.
pub(super) struct CameraThreads {
    pub(super) config: CameraConfig,
    pub(super) index: usize,
    /// Its regions and `full_frame`, replaced in place by a reload.
    pub(super) targets: Arc<TargetsCell>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) capture: JoinHandle<CaptureEnd>,
    pub(super) preprocess: JoinHandle<u64>,
}

/// The cameras of a run: started at start-up and by reloads, stopped by reloads.
pub(super) struct Cameras {
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) status: Arc<StatusBoard>,
    pub(super) liveness: Arc<Liveness>,
    pub(super) spec: Arc<SpecCell>,
    /// Input tensors, shared with the inference thread.
    pub(super) tensors: Pool<Vec<f32>>,
    /// Decoded images, shared by every camera's capture and preprocess threads.
    pub(super) images: Pool<Mat>,
    /// Hands each camera's input to the inference thread; dropped once capture is over.
    pub(super) control: Option<Sender<Control>>,
    pub(super) running: Vec<CameraThreads>,
    /// Removed or changed cameras whose threads have not ended yet.
    pub(super) stopping: Vec<CameraThreads>,
    /// Changed cameras waiting for their previous threads to end.
    pub(super) waiting: Vec<CameraConfig>,
    /// How each camera index last ended, and frames preprocessed per index.
    pub(super) ends: Vec<Option<CaptureEnd>>,
    pub(super) preprocessed: Vec<u64>,
    pub(super) panicked: usize,
    /// Rung when a camera thread ends.
    pub(super) bell: Bell,
    /// What the admin API and the console show (a camera's regions are forgotten when it
    /// starts or its regions change); watched cameras' frames wait there.
    pub(super) monitor: Arc<Monitor>,
}

impl Cameras {
    pub(super) fn new(
        cancel: Arc<AtomicBool>,
        status: Arc<StatusBoard>,
        liveness: Arc<Liveness>,
        spec: Arc<SpecCell>,
        tensors: Pool<Vec<f32>>,
        control: Sender<Control>,
        bell: Bell,
    ) -> Cameras {
        let monitor = Arc::new(Monitor::new(Cameras::images()));
        Cameras {
            cancel,
            status,
            liveness,
            spec,
            tensors,
            images: monitor.frames.images().clone(),
            control: Some(control),
            running: Vec::new(),
            stopping: Vec::new(),
            waiting: Vec::new(),
            ends: Vec::new(),
            preprocessed: Vec::new(),
            panicked: 0,
            bell,
            monitor,
        }
    }

    /// Shares `monitor` (what the admin API and the console show) with the cameras, and
    /// its image pool.
    pub(super) fn with_monitor(mut self, monitor: Arc<Monitor>) -> Cameras {
        self.images = monitor.frames.images().clone();
        self.monitor = monitor;
        self
    }

    /// The pool decoded images come from and go back to, for every camera.
    pub(super) fn images() -> Pool<Mat> {
        Pool::with_max_idle(IMAGES_KEPT, IMAGES_IDLE)
    }

    pub(super) fn start(&mut self, cam: CameraConfig) -> Result<(), RunError> {
        let Some(control) = &self.control else {
            return Ok(());
        };
        let index = self.status.register(&cam.id);
        self.monitor.results.forget_regions(index);
        self.monitor.frames.set_snapshot(index, cam.snapshot);
        let id: Arc<str> = Arc::from(cam.id.as_str());
        let live = cam.source.is_live();
        let capture_edge = if live {
            edges::CAPTURE_LIVE
        } else {
            edges::CAPTURE_FILE
        };
        let (frame_tx, frame_rx) = capture_edge.channel();
        let sink = if live {
            FrameSink::LatestWins {
                tx: frame_tx,
                evict: frame_rx.clone(),
            }
        } else {
            FrameSink::Block(frame_tx)
        };
        // One edge per camera into inference (see Serving::run).
        let (tx, rx) = edges::PREPARED.channel();
        // What "wedged" means for each stage: busy on one item for longer than any
        // healthy run could take.
        let capture_limit = cam.open_timeout.max(cam.stall_timeout) + Duration::from_secs(15);
        let capture_beat = self.liveness.stage(format!("capture {id}"), capture_limit);
        let pre_beat = self
            .liveness
            .stage(format!("preprocess {id}"), Duration::from_secs(10));
        let spec = self.spec.clone();
        let span_id = id.clone();
        let images = self.images.clone();
        let pools = preprocess::Pools {
            tensors: self.tensors.clone(),
            images: images.clone(),
        };
        let status = self.status.clone();
        let monitor = self.monitor.clone();
        let targets = Arc::new(TargetsCell::new(cam.targets()));
        let pre_targets = targets.clone();
        let preprocess = spawn(format!("pre-{id}"), &self.bell, move || {
            let _span = tracing::info_span!("preprocess", camera = %span_id).entered();
            Preprocess::new(spec, pre_targets, pools, status, monitor, live, pre_beat)
                .run(frame_rx, tx)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let capture = Capture::new(
            index,
            &cam,
            CaptureDeps {
                cancel: self.cancel.clone(),
                stop: stop.clone(),
                status: self.status.clone(),
                beat: capture_beat,
                images,
                targets: targets.clone(),
            },
        );
        let capture = spawn(format!("cap-{id}"), &self.bell, move || {
            let _span = tracing::info_span!("capture", camera = %capture.id()).entered();
            capture.run(sink)
        })?;
        // The inference thread outlives every camera thread; if it is gone, the watch
        // loop notices and stops the run.
        let _ = control.send(Control::Camera { rx, live });
        if self.ends.len() <= index {
            self.ends.resize_with(index + 1, || None);
            self.preprocessed.resize(index + 1, 0);
        }
        self.running.push(CameraThreads {
            config: cam,
            index,
            targets,
            stop,
            capture,
            preprocess,
        });
        Ok(())
    }

    /// Gives a running camera new regions (or `full_frame`), its source left open; a
    /// camera waiting to start again gets them when it starts.
    pub(super) fn retarget(&mut self, cam: CameraConfig) {
        if let Some(w) = self.waiting.iter_mut().find(|c| c.id == cam.id) {
            *w = cam;
        } else if let Some(c) = self.running.iter_mut().find(|c| c.config.id == cam.id) {
            c.targets.replace(cam.targets());
            self.monitor.results.forget_regions(c.index);
            self.monitor.frames.set_snapshot(c.index, cam.snapshot);
            c.config = cam;
        }
    }

    /// Stops camera `id`; `retire` when it leaves the configuration (not when it changes).
    pub(super) fn stop(&mut self, id: &str, retire: bool) {
        if let Some(pos) = self.running.iter().position(|c| c.config.id == id) {
            let cam = self.running.swap_remove(pos);
            if retire {
                self.status.retire(cam.index);
                self.monitor.frames.forget(cam.index);
            }
            cam.stop.store(true, Ordering::Relaxed);
            self.stopping.push(cam);
        }
    }

    /// Joins the threads of stopped cameras that have ended and starts the changed
    /// cameras that were waiting for them.
    pub(super) fn reap(&mut self) -> Result<(), RunError> {
        let mut i = 0;
        while i < self.stopping.len() {
            let c = &self.stopping[i];
            if c.capture.is_finished() && c.preprocess.is_finished() {
                let c = self.stopping.swap_remove(i);
                self.join(c);
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < self.waiting.len() {
            if self
                .stopping
                .iter()
                .any(|c| c.config.id == self.waiting[i].id)
            {
                i += 1;
            } else {
                let cam = self.waiting.swap_remove(i);
                self.start(cam)?;
            }
        }
        Ok(())
    }

    pub(super) fn join(&mut self, c: CameraThreads) {
        let end = match c.capture.join() {
            Ok(end) => end,
            Err(_) => {
                self.panicked += 1;
                CaptureEnd::Failed("capture thread panicked".into())
            }
        };
        match c.preprocess.join() {
            Ok(n) => self.preprocessed[c.index] += n,
            Err(_) => self.panicked += 1,
        }
        self.ends[c.index] = Some(end);
    }

    /// Some capture thread is still running or about to start.
    pub(super) fn capturing(&self) -> bool {
        !self.waiting.is_empty()
            || self
                .running
                .iter()
                .chain(&self.stopping)
                .any(|c| !c.capture.is_finished())
    }

    /// A preprocess thread ended while its capture still runs: only a failure does that.
    pub(super) fn broken(&self) -> bool {
        self.running
            .iter()
            .any(|c| c.preprocess.is_finished() && !c.capture.is_finished())
    }

    pub(super) fn all_finished(&self) -> bool {
        self.waiting.is_empty()
            && self
                .running
                .iter()
                .chain(&self.stopping)
                .all(|c| c.capture.is_finished() && c.preprocess.is_finished())
    }
}
