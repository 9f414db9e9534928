//! Per-camera state, written by capture threads and published (retained) by the publisher
//! on `{prefix}/{camera}/status` whenever it changes.
//!
//! Capture threads never wait for the publisher: they update the board and ring a
//! one-slot bell; the publisher reads the latest state of every camera whose version
//! moved, so bursts of changes coalesce into the newest one.

use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;

/// What a camera is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
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
    /// Frames that could not be decoded (skipped).
    pub decode_errors: u64,
    /// Label messages queued for the broker.
    pub classified: u64,
    /// Label messages dropped because the outbox was full.
    pub outbox_dropped: u64,
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
            classified: 0,
            outbox_dropped: 0,
        }
    }
}

struct Slot {
    version: u64,
    status: CameraStatus,
}

pub struct StatusBoard {
    slots: Vec<Mutex<Slot>>,
    bell: Sender<()>,
    rings: Receiver<()>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard")
            .field("cameras", &self.slots.len())
            .finish()
    }
}

impl StatusBoard {
    pub fn new(cameras: usize) -> StatusBoard {
        let (bell, rings) = bounded(1);
        StatusBoard {
            slots: (0..cameras)
                .map(|_| {
                    Mutex::new(Slot {
                        version: 0,
                        status: CameraStatus::default(),
                    })
                })
                .collect(),
            bell,
            rings,
        }
    }

    fn slot(&self, camera: usize) -> Option<MutexGuard<'_, Slot>> {
        // A poisoned lock only means a capture thread panicked mid-update; the data is
        // plain counters, still worth reporting.
        self.slots
            .get(camera)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Moves a camera to `state` (announced to the publisher if it differs or the error
    /// changed).
    pub fn set_state(&self, camera: usize, state: CameraState, error: Option<String>) {
        if let Some(mut s) = self.slot(camera) {
            if s.status.state == state && s.status.error == error {
                return;
            }
            if s.status.state != state {
                s.status.since = SystemTime::now();
            }
            s.status.state = state;
            s.status.error = error;
            s.version += 1;
        }
        let _ = self.bell.try_send(());
    }

    /// Updates counters without announcing (they travel with the next announcement).
    pub fn count(&self, camera: usize, f: impl FnOnce(&mut CameraStatus)) {
        if let Some(mut s) = self.slot(camera) {
            f(&mut s.status);
        }
    }

    /// Latest status and its version.
    pub fn snapshot(&self, camera: usize) -> Option<(u64, CameraStatus)> {
        self.slot(camera).map(|s| (s.version, s.status.clone()))
    }

    pub fn cameras(&self) -> usize {
        self.slots.len()
    }

    /// Rings (at most one pending) whenever some camera's state changed.
    pub fn rings(&self) -> &Receiver<()> {
        &self.rings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_bump_the_version_and_ring_once() {
        let b = StatusBoard::new(2);
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
}
