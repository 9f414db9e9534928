//! Stage 1: one thread per camera reads frames with OpenCV's `VideoCapture`.
//!
//! The edge to preprocessing depends on the source:
//! - live (network stream, device): a one-slot channel where the newest frame wins; a frame
//!   still waiting when the next arrives is evicted and counted as dropped, so a busy
//!   pipeline never builds a backlog of stale frames;
//! - file: a replay; sending blocks, so no frame is lost.
//!
//! Every open and read is bounded in time (OpenCV's open/read timeouts). A live source that
//! fails or stalls is released and reopened with capped, jittered exponential backoff.

mod config;
mod source;

pub use config::{check_unique_ids, CameraConfig, RawCamera};
pub use source::{redact_url, scrub, Device, Source};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

use crate::backoff::Backoff;
use crate::messages::Frame;
use crate::pool::Pool;
use crate::service::Beat;
use crate::status::{CameraState, StatusBoard};

/// Consecutive failed reads after which a file is taken to have ended (a damaged file can
/// fail a few reads and then continue).
const FILE_EOF_AFTER: u32 = 8;

/// How a capture thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureEnd {
    /// A file source reached its end.
    Finished { frames: u64 },
    /// Shutdown was requested (or the pipeline behind it went away).
    Stopped { frames: u64 },
    /// The source cannot be read at all (only for files: live sources are retried).
    Failed(String),
}

/// Where a capture thread sends frames, with the policy for when the edge is full.
pub enum FrameSink {
    /// Live: keep the newest; `evict` is a receiver on the same one-slot channel.
    LatestWins {
        tx: Sender<Frame>,
        evict: Receiver<Frame>,
    },
    /// Replay: block until there is room.
    Block(Sender<Frame>),
}

impl FrameSink {
    /// Passes a frame on. Returns `Ok(true)` if an older frame was evicted for it,
    /// `Err(())` when the receiving side has gone.
    fn send(&self, frame: Frame) -> Result<bool, ()> {
        match self {
            FrameSink::Block(tx) => tx.send(frame).map(|_| false).map_err(|_| ()),
            FrameSink::LatestWins { tx, evict } => {
                let mut evicted = false;
                let mut frame = frame;
                loop {
                    match tx.try_send(frame) {
                        Ok(()) => return Ok(evicted),
                        Err(TrySendError::Disconnected(_)) => return Err(()),
                        Err(TrySendError::Full(back)) => {
                            frame = back;
                            evicted |= evict.try_recv().is_ok();
                        }
                    }
                }
            }
        }
    }
}

/// Decides which frames to classify for a target rate.
#[derive(Debug, Clone)]
pub struct FpsGate {
    interval: Option<f64>,
    next_due: f64,
}

impl FpsGate {
    /// `fps` of 0 admits every frame.
    pub fn new(fps: f64) -> Self {
        Self {
            interval: (fps > 0.0).then(|| 1.0 / fps),
            next_due: 0.0,
        }
    }

    /// Should the frame at time `t` (seconds, non-decreasing) be classified?
    pub fn admit(&mut self, t: f64) -> bool {
        let Some(interval) = self.interval else {
            return true;
        };
        // A microsecond of slack absorbs rounding in frame timestamps.
        if t + 1e-6 < self.next_due {
            return false;
        }
        self.next_due += interval;
        if self.next_due <= t {
            // After a gap, restart the schedule rather than bursting to catch up.
            self.next_due = t + interval;
        }
        true
    }
}

/// One camera's capture stage: built from its config and [`CaptureDeps`];
/// [`Capture::run`] is its thread.
pub struct Capture {
    camera: usize,
    id: Arc<str>,
    config: CameraConfig,
    cancel: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    status: Arc<StatusBoard>,
    beat: Beat,
    images: Pool<Mat>,
}

/// What a capture thread works with besides its camera's config.
pub struct CaptureDeps {
    /// The whole daemon stops.
    pub cancel: Arc<AtomicBool>,
    /// This camera stops (removed or changed by a reload).
    pub stop: Arc<AtomicBool>,
    pub status: Arc<StatusBoard>,
    pub beat: Beat,
    /// Images preprocessing is done with, decoded into again.
    pub images: Pool<Mat>,
}

impl Capture {
    /// The capture stage of camera `camera` (its index on the status board).
    pub fn new(camera: usize, config: &CameraConfig, deps: CaptureDeps) -> Capture {
        Capture {
            camera,
            id: Arc::from(config.id.as_str()),
            config: config.clone(),
            cancel: deps.cancel,
            stop: deps.stop,
            status: deps.status,
            beat: deps.beat,
            images: deps.images,
        }
    }

    /// The camera's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

impl Capture {
    fn source(&self) -> &Source {
        &self.config.source
    }

    fn open(&self) -> Result<VideoCapture, String> {
        let timeouts = Vector::from_slice(&[
            videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
            millis(self.config.open_timeout),
            videoio::CAP_PROP_READ_TIMEOUT_MSEC,
            millis(self.config.stall_timeout),
        ]);
        let cap = match self.source() {
            Source::Network(url) => {
                VideoCapture::from_file_with_params(url, videoio::CAP_FFMPEG, &timeouts)
            }
            Source::Device(Device::Index(i)) => {
                VideoCapture::new_with_params(*i, videoio::CAP_ANY, &timeouts)
            }
            Source::Device(Device::Path(p)) => {
                VideoCapture::from_file_with_params(p, videoio::CAP_V4L2, &timeouts)
            }
            Source::File(p) => {
                VideoCapture::from_file_with_params(p, videoio::CAP_FFMPEG, &Vector::new())
            }
        }
        .map_err(|e| scrub(&e.to_string(), self.source()))?;
        match cap.is_opened() {
            Ok(true) => Ok(cap),
            Ok(false) => Err("cannot open the source".to_owned()),
            Err(e) => Err(scrub(&e.to_string(), self.source())),
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking early on cancellation. Returns false if cancelled.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.cancelled() {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
        false
    }

    fn state(&self, state: CameraState, error: Option<String>) {
        self.status.set_state(self.camera, state, error);
    }

    /// Waits out a backoff delay after a failure, reporting it. Returns false if
    /// cancelled meanwhile.
    fn back_off(
        &self,
        backoff: &mut Backoff,
        state: CameraState,
        error: String,
        what: &str,
    ) -> bool {
        let delay = backoff.next_delay();
        let attempt = self
            .status
            .snapshot(self.camera)
            .map_or(0, |(_, s)| s.reconnects)
            + 1;
        self.status.count(self.camera, |s| s.reconnects += 1);
        tracing::warn!(camera = %self.id, source = %self.source(), attempt,
            retry_in_ms = delay.as_millis() as u64, error = %error, "{what}");
        self.state(state, Some(error));
        self.sleep(delay)
    }

    /// The capture thread. Runs until the file ends, shutdown is requested, or the
    /// pipeline behind it goes away.
    pub fn run(self, sink: FrameSink) -> CaptureEnd {
        let live = self.source().is_live();
        let mut p = Progress::new(&self.config);
        while !self.cancelled() {
            let mut cap = match self.open_or_back_off(&mut p) {
                Opened::Capture(cap) => cap,
                Opened::Retry => continue,
                Opened::Cancelled => break,
                Opened::Failed(e) => return CaptureEnd::Failed(e),
            };
            let lost = match self.stream(&mut cap, &sink, &mut p) {
                Streamed::SinkGone => return CaptureEnd::Stopped { frames: p.index },
                Streamed::Ended(lost) => lost,
            };
            drop(cap);
            if !live {
                if !self.cancelled() {
                    tracing::info!(camera = %self.id, frames = p.index, "file finished");
                    self.state(CameraState::Finished, None);
                    return CaptureEnd::Finished { frames: p.index };
                }
                break;
            }
            if self.cancelled() {
                break;
            }
            let (state, error) =
                lost.unwrap_or((CameraState::Reconnecting, "stream ended".to_owned()));
            let what = match state {
                CameraState::Stalled => "source stalled; reopening",
                _ => "stream lost; reopening",
            };
            if !self.back_off(&mut p.backoff, state, error, what) {
                break;
            }
        }
        CaptureEnd::Stopped { frames: p.index }
    }

    /// Opens the source; a live source that cannot be opened is waited out with backoff
    /// (`Retry`), a file that cannot be opened has failed.
    fn open_or_back_off(&self, p: &mut Progress) -> Opened {
        let open_started = Instant::now();
        self.beat.busy();
        let opened = self.open();
        self.beat.idle();
        let e = match opened {
            Ok(cap) => return Opened::Capture(cap),
            Err(e) => e,
        };
        if !self.source().is_live() {
            self.state(CameraState::Failed, Some(e.clone()));
            return Opened::Failed(e);
        }
        // An open that ran into its timeout means the peer accepts but does not answer
        // (stalled); a quick refusal means it is gone.
        let (state, what, error) = if open_started.elapsed() >= self.config.open_timeout / 2 {
            let silent = p.last_frame.elapsed().as_secs_f64();
            (
                CameraState::Stalled,
                "source stalled; reopening",
                format!("no answer to open; no frame for {silent:.1} s"),
            )
        } else {
            (CameraState::Reconnecting, "cannot open source; retrying", e)
        };
        if self.back_off(&mut p.backoff, state, error, what) {
            Opened::Retry
        } else {
            Opened::Cancelled
        }
    }

    /// Logs the opened source and reports what the camera asks for; returns the source's
    /// frame rate (25 when it does not say).
    fn opened(&self, cap: &VideoCapture) -> f64 {
        let source_fps = cap
            .get(videoio::CAP_PROP_FPS)
            .ok()
            .filter(|f| f.is_finite() && *f > 0.0)
            .unwrap_or(25.0);
        tracing::info!(camera = %self.id, source = %self.source(), source_fps, "source opened");
        // A file that is not paced asks for as many frames as the pipeline takes (0).
        let demand = if !self.source().is_live() && !self.config.realtime {
            0.0
        } else if self.config.fps > 0.0 {
            self.config.fps.min(source_fps)
        } else {
            source_fps
        };
        self.status.count(self.camera, |s| s.demand_fps = demand);
        source_fps
    }

    /// Reads frames from an open source and passes on those the fps gate admits, until
    /// the source ends or fails, shutdown, or the pipeline behind goes away.
    fn stream(&self, cap: &mut VideoCapture, sink: &FrameSink, p: &mut Progress) -> Streamed {
        let live = self.source().is_live();
        let source_fps = self.opened(cap);
        let opened_at = Instant::now();
        let first_index = p.index;
        let mut failures = 0u32;
        p.last_frame = Instant::now();
        while !self.cancelled() {
            // A returned image of the same size is decoded into in place.
            let mut image = self.images.take().unwrap_or_default();
            let read_started = Instant::now();
            self.beat.busy();
            let ok = matches!(cap.read(&mut image), Ok(true)) && !image.empty();
            self.beat.idle();
            if !ok {
                failures += 1;
                if live {
                    return Streamed::Ended(Some(self.why_lost(read_started, p.last_frame)));
                }
                if failures >= FILE_EOF_AFTER {
                    return Streamed::Ended(None);
                }
                continue;
            }
            if failures > 0 {
                // Reads failed and then the file went on: those were damaged frames.
                self.status
                    .count(self.camera, |s| s.decode_errors += u64::from(failures));
                tracing::warn!(camera = %self.id, skipped = failures, "undecodable frames skipped");
                failures = 0;
            }
            p.last_frame = Instant::now();
            if p.index == first_index {
                p.backoff.reset();
                self.state(CameraState::Streaming, None);
            }
            let frame_index = p.index;
            p.index += 1;
            // Read and decode; for a live source this includes waiting for the frame.
            let decode_us = read_started.elapsed().as_micros() as u64;
            let frames = p.index;
            self.status.count(self.camera, |s| {
                s.frames = frames;
                s.stage_us.decode += decode_us;
            });
            // Files are paced by their own timeline, live sources by the clock.
            let t = if live {
                p.started.elapsed().as_secs_f64()
            } else {
                (frame_index - first_index) as f64 / source_fps
            };
            if self.config.realtime {
                let due = opened_at + Duration::from_secs_f64(t);
                if !self.sleep(due.saturating_duration_since(Instant::now())) {
                    return Streamed::Ended(None);
                }
            }
            if p.gate.admit(t) && self.pass_on(sink, image, frame_index).is_err() {
                return Streamed::SinkGone;
            }
        }
        Streamed::Ended(None)
    }

    /// Why a live read failed: a read that gave up after blocking (OpenCV's read timeout)
    /// is a stall; one that failed at once is a stream that ended.
    fn why_lost(&self, read_started: Instant, last_frame: Instant) -> (CameraState, String) {
        let waited = read_started.elapsed();
        let silent = last_frame.elapsed();
        let half = self.config.stall_timeout / 2;
        if waited >= half || silent >= half {
            (
                CameraState::Stalled,
                format!("no frame for {:.1} s", silent.as_secs_f64()),
            )
        } else {
            (
                CameraState::Reconnecting,
                format!(
                    "stream ended or failed ({:.2} s after the last frame)",
                    silent.as_secs_f64()
                ),
            )
        }
    }

    /// Sends an admitted frame to preprocessing, counting a waiting frame it evicted.
    fn pass_on(&self, sink: &FrameSink, image: Mat, index: u64) -> Result<(), ()> {
        // Frames dropped so far, here and by preprocessing (a prepared frame replaced by
        // a newer one).
        let dropped = self.status.count(self.camera, |s| s.dropped).unwrap_or(0);
        let frame = Frame {
            camera_id: self.id.clone(),
            camera: self.camera,
            index,
            captured_at: SystemTime::now(),
            captured: Instant::now(),
            dropped,
            image,
        };
        if sink.send(frame)? {
            self.status.count(self.camera, |s| s.dropped += 1);
        }
        Ok(())
    }
}

/// What a capture thread keeps across reopenings of its source.
struct Progress {
    gate: FpsGate,
    backoff: Backoff,
    started: Instant,
    /// Frames decoded so far: the next frame's index.
    index: u64,
    last_frame: Instant,
}

impl Progress {
    fn new(config: &CameraConfig) -> Progress {
        Progress {
            gate: FpsGate::new(config.fps),
            backoff: Backoff::new(Duration::from_millis(500), config.reconnect_max),
            started: Instant::now(),
            index: 0,
            last_frame: Instant::now(),
        }
    }
}

/// How opening the source went.
enum Opened {
    Capture(VideoCapture),
    /// A live source that could not be opened; waited out, try again.
    Retry,
    Cancelled,
    /// A file that cannot be opened.
    Failed(String),
}

/// How reading an open source ended.
enum Streamed {
    /// The source ended, failed or stalled (with what to report, for a live one), or
    /// shutdown was requested.
    Ended(Option<(CameraState, String)>),
    /// The pipeline behind has gone away.
    SinkGone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_gate_thins_a_25fps_timeline_to_5() {
        let mut gate = FpsGate::new(5.0);
        let admitted: Vec<u32> = (0..50).filter(|i| gate.admit(*i as f64 / 25.0)).collect();
        assert_eq!(admitted, vec![0, 5, 10, 15, 20, 25, 30, 35, 40, 45]);
    }

    #[test]
    fn fps_gate_zero_admits_everything_and_gaps_do_not_burst() {
        let mut all = FpsGate::new(0.0);
        assert!((0..10).all(|i| all.admit(i as f64)));
        let mut gate = FpsGate::new(1.0);
        assert!(gate.admit(0.0));
        assert!(gate.admit(10.0));
        assert!(!gate.admit(10.5));
        assert!(gate.admit(11.0));
    }

    #[test]
    fn latest_wins_evicts_and_counts() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sink = FrameSink::LatestWins {
            tx,
            evict: rx.clone(),
        };
        let frame = |index| Frame {
            camera_id: Arc::from("c"),
            camera: 0,
            index,
            captured_at: SystemTime::now(),
            captured: Instant::now(),
            dropped: 0,
            image: Mat::default(),
        };
        assert_eq!(sink.send(frame(0)), Ok(false));
        assert_eq!(sink.send(frame(1)), Ok(true));
        assert_eq!(sink.send(frame(2)), Ok(true));
        assert_eq!(rx.try_recv().map(|f| f.index).ok(), Some(2));
        assert!(rx.try_recv().is_err());
    }
}
