//! Per-camera state, written by capture threads and published (retained) by the publisher
//! on `{prefix}/{camera}/status` whenever it changes.
//!
//! Capture threads never wait for the publisher: they update the board and ring a
//! one-slot bell; the publisher reads the latest state of every camera whose version
//! moved, so bursts of changes coalesce into the newest one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::SystemTime;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;

/// What a camera is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraState {
    /// Opening the source for the first time.
    Starting,
    /// Frames are arriving.
    Streaming,
    /// The source failed or could not be opened; retrying with backoff.
    Reconnecting,
    /// No frame arrived within the stall timeout; reopening.
    Stalled,
    /// The source cannot be read at all (a file that is not video); not retried.
    Failed,
    /// A file source reached its end.
    Finished,
    /// The daemon stopped (SIGTERM): published as the camera's last state, before
    /// `offline`, so no subscriber reads a stopped camera as streaming.
    Stopped,
}

impl CameraState {
    pub const ALL: [CameraState; 7] = [
        CameraState::Starting,
        CameraState::Streaming,
        CameraState::Reconnecting,
        CameraState::Stalled,
        CameraState::Failed,
        CameraState::Finished,
        CameraState::Stopped,
    ];

    /// The state's name in payloads, metrics labels and the admin listener.
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Starting => "starting",
            CameraState::Streaming => "streaming",
            CameraState::Reconnecting => "reconnecting",
            CameraState::Stalled => "stalled",
            CameraState::Failed => "failed",
            CameraState::Finished => "finished",
            CameraState::Stopped => "stopped",
        }
    }
}

impl Serialize for CameraState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Latest state and counters of one camera.
#[derive(Debug, Clone)]
pub struct CameraStatus {
    pub state: CameraState,
    /// Last error, with any secret redacted.
    pub error: Option<String>,
    /// Times the source was reopened after a failure or stall.
    pub reconnects: u64,
    /// When `state` last changed.
    pub since: SystemTime,
    /// Frames decoded.
    pub frames: u64,
    /// Frames dropped because the pipeline was busy.
    pub dropped: u64,
    /// Frames that could not be decoded.
    pub decode_errors: u64,
    /// Frames of the source not decoded at all (keyframe-only decoding).
    pub skipped: u64,
    /// What is decoded: `all` or `keyframes` (none until the source is open).
    pub decoding: Option<&'static str>,
    /// The stream's measured keyframe interval, seconds (network streams).
    pub keyframe_interval_s: Option<f64>,
    /// Label messages queued for the broker: the whole frame's and every region's.
    pub classified: u64,
    /// Label messages dropped because the outbox was full.
    pub outbox_dropped: u64,
    /// Inferences per second the camera asks for: its frame rate (its source's, or `fps`
    /// when lower) for the whole frame and for each region (or the region's `fps`); 0
    /// until the source is open.
    pub demand_fps: f64,
    /// Model inputs per classified frame: the whole frame (unless `full_frame = false`)
    /// and each region.
    pub per_frame: usize,
    /// Inferences per second over the last status period (below `demand_fps` when the
    /// pipeline is at capacity: the camera's share of it).
    pub classified_fps: f64,
    /// Regions that cannot be classified (outside the frame), with why; the camera and
    /// its other regions go on.
    pub region_errors: Vec<(Arc<str>, String)>,
    /// Label messages queued per region (the whole frame's are `classified` less these).
    pub region_classified: Vec<(Arc<str>, u64)>,
    /// Time spent on this camera's frames per stage, in microseconds: decoding (every
    /// decoded frame), preprocessing, inference (a batch's time split over its frames) and
    /// encoding and queueing for the broker (every classified frame).
    pub stage_us: StageTimes,
}

/// Cumulative time per stage, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StageTimes {
    pub decode: u64,
    pub preprocess: u64,
    pub inference: u64,
    pub publish: u64,
}

impl Default for CameraStatus {
    fn default() -> Self {
        CameraStatus {
            state: CameraState::Starting,
            error: None,
            reconnects: 0,
            since: SystemTime::now(),
            frames: 0,
            dropped: 0,
            decode_errors: 0,
            skipped: 0,
            decoding: None,
            keyframe_interval_s: None,
            classified: 0,
            outbox_dropped: 0,
            demand_fps: 0.0,
            per_frame: 1,
            region_errors: Vec::new(),
            region_classified: Vec::new(),
            classified_fps: 0.0,
            stage_us: StageTimes::default(),
        }
    }
}

struct Slot {
    version: u64,
    status: CameraStatus,
}

impl Slot {
    /// Moves to `state`; a change of state or error (or `force`) bumps the version and
    /// returns true. `since` moves only with the state.
    fn move_to(&mut self, state: CameraState, error: Option<String>, force: bool) -> bool {
        if !force && self.status.state == state && self.status.error == error {
            return false;
        }
        if force || self.status.state != state {
            self.status.since = SystemTime::now();
        }
        self.status.state = state;
        self.status.error = error;
        self.version += 1;
        true
    }
}

/// One camera ever configured. Its index never changes, so a camera removed and added
/// again by a reload keeps its counters (and its `seq`, which the publisher keeps by index).
struct Entry {
    id: Arc<str>,
    active: AtomicBool,
    slot: Mutex<Slot>,
}

/// The roster of cameras and their latest states. Cameras are added by index in order of
/// appearance and never reused for another id; a removed camera is inactive (hidden from
/// metrics, readiness and the publisher's statuses) until it is configured again.
pub struct StatusBoard {
    entries: RwLock<Vec<Arc<Entry>>>,
    /// Bumped whenever a camera is added, removed or added again.
    roster: AtomicU64,
    bell: Sender<()>,
    rings: Receiver<()>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard")
            .field("cameras", &self.cameras())
            .finish()
    }
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard::new()
    }
}

impl StatusBoard {
    pub fn new() -> StatusBoard {
        let (bell, rings) = bounded(1);
        StatusBoard {
            entries: RwLock::new(Vec::new()),
            roster: AtomicU64::new(0),
            bell,
            rings,
        }
    }

    fn entries(&self) -> RwLockReadGuard<'_, Vec<Arc<Entry>>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds camera `id` (or makes a removed or restarted one active again, back in
    /// `Starting`) and returns its index. Like any state change, moving an active camera
    /// that is still `Starting` to `Starting` is none: start-up registers every camera to
    /// fix the indices and again when it starts it, and announcing `starting` twice would
    /// look like a restart. A removed camera coming back always starts over.
    pub fn register(&self, id: &str) -> usize {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let index = match entries.iter().position(|e| e.id.as_ref() == id) {
            Some(i) => {
                let e = &entries[i];
                let was_active = e.active.swap(true, Ordering::SeqCst);
                e.slot.lock().unwrap_or_else(|e| e.into_inner()).move_to(
                    CameraState::Starting,
                    None,
                    !was_active,
                );
                i
            }
            None => {
                entries.push(Arc::new(Entry {
                    id: Arc::from(id),
                    active: AtomicBool::new(true),
                    slot: Mutex::new(Slot {
                        version: 0,
                        status: CameraStatus::default(),
                    }),
                }));
                entries.len() - 1
            }
        };
        drop(entries);
        self.roster.fetch_add(1, Ordering::SeqCst);
        let _ = self.bell.try_send(());
        index
    }

    /// Marks a camera removed from the configuration.
    pub fn retire(&self, camera: usize) {
        if let Some(e) = self.entries().get(camera) {
            e.active.store(false, Ordering::SeqCst);
        }
        self.roster.fetch_add(1, Ordering::SeqCst);
        let _ = self.bell.try_send(());
    }

    /// Changes whenever the set of active cameras changes.
    pub fn roster(&self) -> u64 {
        self.roster.load(Ordering::SeqCst)
    }

    pub fn id(&self, camera: usize) -> Option<Arc<str>> {
        self.entries().get(camera).map(|e| e.id.clone())
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.entries().iter().position(|e| e.id.as_ref() == id)
    }

    pub fn is_active(&self, camera: usize) -> bool {
        self.entries()
            .get(camera)
            .is_some_and(|e| e.active.load(Ordering::SeqCst))
    }

    /// The active cameras: (index, id), in index order.
    pub fn active(&self) -> Vec<(usize, Arc<str>)> {
        self.entries()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.active.load(Ordering::SeqCst))
            .map(|(i, e)| (i, e.id.clone()))
            .collect()
    }

    fn with_slot<T>(&self, camera: usize, f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
        let entry = self.entries().get(camera)?.clone();
        // A poisoned lock only means a capture thread panicked mid-update; the data is
        // plain counters, still worth reporting.
        let mut slot = entry.slot.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut slot))
    }

    /// Moves a camera to `state` (announced to the publisher if it differs or the error
    /// changed).
    pub fn set_state(&self, camera: usize, state: CameraState, error: Option<String>) {
        let changed = self.with_slot(camera, |s| s.move_to(state, error, false));
        if changed == Some(true) {
            let _ = self.bell.try_send(());
        }
    }

    /// Sets the regions of a camera that cannot be classified (announced when it changed).
    pub fn set_region_errors(&self, camera: usize, errors: Vec<(Arc<str>, String)>) {
        let changed = self.with_slot(camera, |s| {
            if s.status.region_errors == errors {
                return false;
            }
            s.status.region_errors = errors;
            s.version += 1;
            true
        });
        if changed == Some(true) {
            let _ = self.bell.try_send(());
        }
    }

    /// Updates counters without announcing (they travel with the next announcement).
    /// Returns what `f` returns (`None` for an unknown camera), so a counter can be read
    /// without copying the whole status.
    pub fn count<T>(&self, camera: usize, f: impl FnOnce(&mut CameraStatus) -> T) -> Option<T> {
        self.with_slot(camera, |s| f(&mut s.status))
    }

    /// Latest status and its version.
    pub fn snapshot(&self, camera: usize) -> Option<(u64, CameraStatus)> {
        self.with_slot(camera, |s| (s.version, s.status.clone()))
    }

    /// Cameras ever registered (active or not): indices run from 0 to this.
    pub fn cameras(&self) -> usize {
        self.entries().len()
    }

    /// Rings (at most one pending) whenever some camera's state changed or a camera was
    /// added or removed.
    pub fn rings(&self) -> &Receiver<()> {
        &self.rings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_has_one_name_everywhere() {
        let names: Vec<&str> = CameraState::ALL.iter().map(|s| s.as_str()).collect();
        let json: Vec<String> = CameraState::ALL
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .expect("json")
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(names, json);
        assert_eq!(
            names,
            [
                "starting",
                "streaming",
                "reconnecting",
                "stalled",
                "failed",
                "finished",
                "stopped"
            ]
        );
    }

    #[test]
    fn changes_bump_the_version_and_ring_once() {
        let b = StatusBoard::new();
        assert_eq!((b.register("a"), b.register("b")), (0, 1));
        let _ = b.rings().try_recv();
        b.set_state(1, CameraState::Reconnecting, Some("refused".into()));
        b.set_state(1, CameraState::Reconnecting, Some("refused".into()));
        b.set_state(1, CameraState::Streaming, None);
        b.count(1, |s| s.frames += 5);
        let (v, s) = b.snapshot(1).expect("camera 1");
        assert_eq!(v, 2, "the repeated identical state is not a change");
        assert_eq!((s.state, s.frames), (CameraState::Streaming, 5));
        assert!(b.rings().try_recv().is_ok());
        assert!(b.rings().try_recv().is_err(), "rings coalesce");
        assert_eq!(b.snapshot(0).map(|(v, _)| v), Some(0));
        assert!(b.snapshot(2).is_none());
    }

    #[test]
    fn registering_a_starting_camera_again_is_not_a_change_but_restarting_one_is() {
        let b = StatusBoard::new();
        let a = b.register("a");
        assert_eq!(b.register("a"), a);
        assert_eq!(
            b.snapshot(a).map(|(v, _)| v),
            Some(0),
            "still the first `starting`"
        );
        b.set_state(a, CameraState::Streaming, None);
        assert_eq!(b.register("a"), a, "a reload changed it: restarted");
        let (v, s) = b.snapshot(a).expect("a");
        assert_eq!((v, s.state), (2, CameraState::Starting));
    }

    #[test]
    fn a_camera_added_again_keeps_its_index_and_counters() {
        let b = StatusBoard::new();
        let (a, c) = (b.register("a"), b.register("c"));
        b.set_state(a, CameraState::Streaming, None);
        b.count(a, |s| s.frames = 7);
        let before = b.roster();
        b.retire(a);
        assert!(b.roster() > before);
        assert_eq!(b.active().len(), 1);
        assert_eq!(b.active()[0].0, c);
        assert!(!b.is_active(a));
        assert_eq!(b.register("a"), a, "same id, same index");
        let (_, s) = b.snapshot(a).expect("a");
        assert_eq!((s.state, s.frames), (CameraState::Starting, 7));
        assert_eq!(b.register("d"), 2);
        assert_eq!(b.index_of("d"), Some(2));
        assert_eq!(b.cameras(), 3);
    }
}
