//! Stage 1: one thread per camera reads frames: network streams with FFmpeg directly
//! (only the frames `decode` asks for are decoded, see [`decode`]), devices and files with
//! OpenCV's `VideoCapture`. Only frames the fps gate admits are converted to BGR.
//!
//! The edge to preprocessing depends on the source:
//! - live (network stream, device): a one-slot channel where the newest frame wins; a frame
//!   still waiting when the next arrives is evicted and counted as dropped, so a busy
//!   pipeline never builds a backlog of stale frames;
//! - file: a replay; sending blocks, so no frame is lost.
//!
//! Every open and read is bounded in time (`open_timeout_s`, `stall_timeout_s`). A live
//! source that fails or stalls is released and reopened with capped, jittered exponential
//! backoff. Frames not decoded at all count as `skipped`, apart from `dropped`.

mod config;
pub mod decode;

mod libav;
mod reader;
mod report;
mod sink;
mod source;

pub use crate::gate::FpsGate;
pub use config::{check_unique_ids, CameraConfig, RawCamera};
pub use decode::{DecodeMode, Decoding};
pub use sink::FrameSink;
pub use source::{redact_url, scrub, Device, Source};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opencv::core::Mat;
use opencv::prelude::MatTraitConst;

use libav::{Grab, Watch};
use reader::Reader;

use crate::backoff::Backoff;
use crate::messages::Frame;
use crate::pool::Pool;
use crate::preprocess::TargetsCell;
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
    targets: Arc<TargetsCell>,
}

/// What a capture thread works with besides its camera's config.
pub struct CaptureDeps {
    /// The whole daemon stops.
    pub cancel: Arc<AtomicBool>,
    /// This camera stops (removed or changed by a reload).
    pub stop: Arc<AtomicBool>,
    pub status: Arc<StatusBoard>,
    pub beat: Beat,
    /// Images preprocessing is done with (shared by every camera), decoded into again.
    pub images: Pool<Mat>,
    /// What the camera classifies per frame (a reload may change it): its demand.
    pub targets: Arc<TargetsCell>,
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
            targets: deps.targets,
        }
    }

    /// The camera's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Capture {
    fn source(&self) -> &Source {
        &self.config.source
    }

    fn open(&self) -> Result<Reader, String> {
        Reader::open(
            &self.config,
            Watch::new(self.cancel.clone(), self.stop.clone()),
        )
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
        let end = self.capture(sink);
        // The daemon stops: the camera's last state says so (a reload that stops one
        // camera to start it again, or removes it, does not).
        if matches!(end, CaptureEnd::Stopped { .. }) && self.cancel.load(Ordering::Relaxed) {
            self.state(CameraState::Stopped, None);
        }
        end
    }

    /// Opens and reads the source, reopening a live one, until it ends or is cancelled.
    fn capture(&self, sink: FrameSink) -> CaptureEnd {
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

    /// Reads frames from an open source and passes on those the fps gate admits, until
    /// the source ends or fails, shutdown, or the pipeline behind goes away.
    fn stream(&self, cap: &mut Reader, sink: &FrameSink, p: &mut Progress) -> Streamed {
        let live = self.source().is_live();
        let source_fps = self.opened(cap);
        let mut reported = None;
        self.report_decoding(cap, source_fps, &mut reported);
        let opened_at = Instant::now();
        let first_index = p.index;
        let mut first = true;
        let mut failures = 0u32;
        // (rows, cols) of this camera's images so far.
        let mut size = None;
        p.last_frame = Instant::now();
        while !self.cancelled() {
            let read_started = Instant::now();
            self.beat.busy();
            let grabbed = cap.grab();
            self.beat.idle();
            let (before, why) = match grabbed {
                Grab::Frame { before, skipped } => {
                    if skipped > 0 {
                        self.status.count(self.camera, |s| s.skipped += skipped);
                    }
                    (Some(before), None)
                }
                Grab::Failed(e) => (None, Some(e)),
            };
            // Frames of the stream before this one that gave no picture here.
            p.index += before.unwrap_or(0);
            if before.is_none() {
                failures += 1;
                if live {
                    let why = why.unwrap_or_default();
                    let lost = self.why_lost(read_started, p.last_frame, &why);
                    return Streamed::Ended(Some(lost));
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
            if std::mem::take(&mut first) {
                p.backoff.reset();
                self.state(CameraState::Streaming, None);
            }
            let frame_index = p.index;
            p.index += 1;
            self.report_decoding(cap, source_fps, &mut reported);
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
            let admitted = p.gate.admit(t, cap.slack());
            // A returned image of this camera's size is converted into in place.
            let mut image = admitted.then(|| self.image(size));
            if let Some(img) = image.as_mut() {
                if cap.retrieve(img) {
                    size = Some((img.rows(), img.cols()));
                } else {
                    self.status.count(self.camera, |s| s.decode_errors += 1);
                    image = None;
                }
            }
            // Read, decode and convert; for a live source this includes waiting.
            let decode_us = read_started.elapsed().as_micros() as u64;
            self.status.count(self.camera, |s| {
                s.frames += 1;
                s.stage_us.decode += decode_us;
            });
            if let Some(image) = image {
                if self.pass_on(sink, image, frame_index, t).is_err() {
                    return Streamed::SinkGone;
                }
            }
        }
        Streamed::Ended(None)
    }

    /// Why a live read failed: a read that gave up after blocking (the read timeout) is a
    /// stall; one that failed at once is a stream that ended (`why` says how).
    fn why_lost(
        &self,
        read_started: Instant,
        last_frame: Instant,
        why: &str,
    ) -> (CameraState, String) {
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
                    "stream ended or failed: {} ({:.2} s after the last frame)",
                    scrub(why, self.source()),
                    silent.as_secs_f64()
                ),
            )
        }
    }

    /// An image to convert into: a returned one of `size` (rows, cols) if the shared
    /// pool has one, else a new one (sized by the conversion).
    fn image(&self, size: Option<(i32, i32)>) -> Mat {
        let fits = |m: &Mat| size.is_none_or(|s| (m.rows(), m.cols()) == s);
        self.images.take_where(fits).unwrap_or_default()
    }

    /// Sends an admitted frame (at `timeline_s` on the gate's timeline) to
    /// preprocessing, counting a waiting frame it evicted.
    fn pass_on(&self, sink: &FrameSink, image: Mat, index: u64, timeline_s: f64) -> Result<(), ()> {
        // Frames dropped so far, here and by preprocessing (a prepared frame replaced by
        // a newer one).
        let dropped = self.status.count(self.camera, |s| s.dropped).unwrap_or(0);
        let frame = Frame {
            camera_id: self.id.clone(),
            camera: self.camera,
            index,
            timeline_s,
            captured_at: SystemTime::now(),
            captured: Instant::now(),
            dropped,
            image,
        };
        if let Some(old) = sink.send(frame)? {
            self.status.count(self.camera, |s| s.dropped += 1);
            self.images.give(old.image);
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
    Capture(Reader),
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
