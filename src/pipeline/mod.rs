//! Wires the stages together, runs them on named threads, and takes them down in order.
//!
//! ```text
//! capture-<cam> ─[1: newest wins | 2: block]─▶ pre-<cam> ─[0: rendezvous]─┐
//! capture-<cam> ─[...]───────────────────────▶ pre-<cam> ─[0: rendezvous]─┴▶ inference ─[256: block]─▶ publish
//! ```
//! (capacities and policies: [`edges`]).
//! Cameras are started and stopped one by one (at start-up and by a reload, see
//! [`reload`]): each camera's inference edge reaches the inference thread over its
//! control channel, which also carries a reloaded model.
//! Start-up checks everything that can be checked before a camera is opened: file sources
//! exist, the ONNX Runtime library loads, the model loads and runs once, the labels match
//! its output. Shutdown flows downstream: capture threads stop (cancel flag or end of
//! file), and each later stage ends when its input disconnects, after draining it.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::status::StatusBoard;

mod cameras;
pub mod edges;
mod reload;
mod stages;
mod startup;
mod summary;
mod supervise;

use stages::Stages;
use startup::prepare;
pub use startup::{load_model, LoadedModel};
pub use summary::{CameraSummary, StageMs, Summary};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("camera[{index}] {id:?}: source file {path} not found")]
    SourceMissing {
        index: usize,
        id: String,
        path: PathBuf,
    },
    #[error("{what} {path}: {source}")]
    PasswordFile {
        /// What the file holds: "MQTT password", "admin token".
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{field} {name:?}: CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"
    )]
    NoCredentials { field: &'static str, name: String },
    #[error("admin token: the file's first line is empty (an empty token would let anyone in)")]
    EmptyToken,
    #[error("{field} {path}: {source}")]
    TlsFile {
        field: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin.listen {addr}: {source}")]
    Admin {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("mqtt.spool_dir {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] crate::inference::ModelError),
    #[error(transparent)]
    Labels(#[from] crate::labels::LabelsError),
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{0} stage(s) failed unexpectedly; see the log")]
    StageFailed(usize),
    #[error("{0} camera(s) could not read their source file; see the log")]
    CameraFailed(usize),
    #[error("{0} message(s) were not confirmed by the MQTT broker before the grace period ended (set mqtt.spool_dir to keep them)")]
    Undelivered(usize),
}

/// Settings that come from the command line rather than the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub ort_library: Option<PathBuf>,
    /// How long shutdown may wait for in-flight frames and the broker.
    pub shutdown_grace: Duration,
    /// The configuration file, read again on reload.
    pub config_path: Option<PathBuf>,
    /// Set (by SIGHUP) to request a reload.
    pub reload: Arc<AtomicBool>,
    /// Where to write the exit summary as JSON (none: only logged).
    pub summary_json: Option<PathBuf>,
    /// Rung by whoever sets the cancel or reload flag (the binary's signal thread), so
    /// supervision acts on it at once; without it, flags are read every few hundred ms.
    pub wake: Option<Receiver<()>>,
}

/// systemd's STATUS= line: cameras by state, classification rate, broker.
fn service_status(status: &StatusBoard, metrics: &Metrics, since: std::time::Instant) -> String {
    let mut streaming = 0;
    let mut classified = 0;
    let active = status.active();
    for &(i, _) in &active {
        if let Some((_, s)) = status.snapshot(i) {
            streaming += usize::from(s.state == crate::status::CameraState::Streaming);
            classified += s.classified;
        }
    }
    format!(
        "{streaming}/{} camera(s) streaming, {:.1} frames/s classified, broker {}",
        active.len(),
        classified as f64 / since.elapsed().as_secs_f64().max(1.0),
        if metrics.broker_is_connected() {
            "connected"
        } else {
            "not connected"
        }
    )
}

/// Wakes the supervisor whenever a stage thread ends, however it ends (the ringer rings
/// when the thread's closure is dropped, on return and on panic alike). Rings coalesce.
#[derive(Debug, Clone)]
pub(super) struct Bell(Sender<()>);

struct Ringer(Sender<()>);

impl Drop for Ringer {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

impl Bell {
    fn new() -> (Bell, Receiver<()>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (Bell(tx), rx)
    }
}

/// Starts a named stage thread that rings `bell` when it ends.
pub(super) fn spawn<T: Send + 'static>(
    name: String,
    bell: &Bell,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, RunError> {
    let ringer = Ringer(bell.0.clone());
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let _ringer = ringer;
            f()
        })
        .map_err(|source| RunError::Spawn { name, source })
}

/// Runs the daemon until `cancel` is set or every (file) source has ended, in four
/// phases: [`prepare`] (everything checked and loaded, no stage thread, socket or camera
/// yet), [`Stages::start`] (the stages spawned, publisher first, cameras last),
/// [`Stages::supervise`] (reloads applied, failures stopping the capture side, until
/// every thread has ended) and [`Stages::finish`] (threads joined, the summary and the
/// exit verdict).
pub fn run(cfg: Config, opts: RunOptions, cancel: Arc<AtomicBool>) -> Result<Summary, RunError> {
    let prepared = prepare(&cfg, &opts)?;
    let mut stages = Stages::start(cfg, &opts, cancel, prepared)?;
    stages.supervise();
    stages.finish(&opts)
}
