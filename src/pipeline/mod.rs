//! Wires the stages together, runs them on named threads, and takes them down in order.
//!
//! ```text
//! capture-<cam> ─[1: newest wins | 2: block]─▶ pre-<cam> ─[0: block]─┐
//! capture-<cam> ─[...]───────────────────────▶ pre-<cam> ─[0: block]─┴▶ inference ─[256: block]─▶ publish
//! ```
//! Cameras are started and stopped one by one (at start-up and by a reload, see
//! [`reload`]): each camera's inference edge reaches the inference thread over its
//! control channel, which also carries a reloaded model.
//! Start-up checks everything that can be checked before a camera is opened: file sources
//! exist, the ONNX Runtime library loads, the model loads and runs once, the labels match
//! its output. Shutdown flows downstream: capture threads stop (cancel flag or end of
//! file), and each later stage ends when its input disconnects, after draining it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::bounded;

use crate::admin::Admin;
use crate::capture::CaptureEnd;
use crate::config::Config;
use crate::inference::{self, Serving};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::preprocess::SpecCell;
use crate::publish::spool::{Restored, Spool};
use crate::publish::{PublishReport, Publisher};
use crate::service::{Liveness, Notifier};
use crate::status::StatusBoard;
use reload::plan::ModelFiles;

mod cameras;
mod reload;
mod startup;
mod summary;

use cameras::Cameras;
use reload::Reloader;
use startup::{check_sources, password, tls_material};
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
    #[error("MQTT password {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mqtt.password_credential {name:?}: CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)")]
    NoCredentials { name: String },
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

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, RunError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|source| RunError::Spawn { name, source })
}

/// Runs the daemon until `cancel` is set or every (file) source has ended.
pub fn run(cfg: Config, opts: RunOptions, cancel: Arc<AtomicBool>) -> Result<Summary, RunError> {
    check_sources(cfg.cameras.iter().enumerate())?;
    let password = password(&cfg)?;
    let tls = tls_material(&cfg)?;
    // Camera indices follow the configuration's order at start-up (the spool names
    // cameras by id and is mapped onto them).
    let status = Arc::new(StatusBoard::new());
    for cam in &cfg.cameras {
        status.register(&cam.id);
    }
    let restored = match &cfg.mqtt.spool_dir {
        Some(dir) => Spool::new(dir)
            .load(|id| status.index_of(id))
            .map_err(|source| RunError::Spool {
                path: dir.clone(),
                source,
            })?,
        None => Restored::default(),
    };
    if restored.unreadable > 0 {
        tracing::warn!(
            unreadable = restored.unreadable,
            "damaged lines in the spool were skipped"
        );
    }
    let runtime = Arc::new(inference::load_runtime(opts.ort_library.as_deref())?);
    tracing::info!(library = %runtime.library.display(), "ONNX Runtime loaded");
    let model = load_model(&cfg.model, &runtime)?;

    // Control messages are rare (a camera started, a model swapped) and the inference
    // thread reads them between batches: when full, the sender waits at most one batch.
    let (control_tx, control_rx) = bounded(64);
    let (class_tx, class_rx) = bounded(256);
    let metrics = Arc::new(Metrics::new(status.clone()));
    metrics.set_model_loaded();
    let admin_stop = Arc::new(AtomicBool::new(false));
    let admin = match cfg.admin_listen {
        Some(addr) => Some(
            Admin {
                metrics: metrics.clone(),
                status: status.clone(),
            }
            .spawn(addr, admin_stop.clone())
            .map_err(|source| RunError::Admin { addr, source })?,
        ),
        None => None,
    };
    let liveness = Liveness::new();
    // Tensors: one waiting per camera plus a batch in flight. Top-k lists: the
    // classification channel's worth.
    let tensors = Pool::new(2 * cfg.cameras.len() + 2 * cfg.model.max_batch);
    let tops = Pool::new(256);
    let publisher = Publisher {
        tops: tops.clone(),
        mqtt: cfg.mqtt.clone(),
        password,
        tls,
        grace: opts.shutdown_grace,
        cancel: cancel.clone(),
        status: status.clone(),
        restored,
        metrics: metrics.clone(),
        beat: liveness.stage("publish", Duration::from_secs(30)),
        discovery: cfg.homeassistant.as_ref().map(|ha| {
            crate::publish::homeassistant::Discovery {
                discovery_prefix: ha.discovery_prefix.clone(),
                node_id: ha.node_id.clone(),
                topic_prefix: cfg.mqtt.topic_prefix.clone(),
                model: cfg.model.name.clone(),
                // Cameras join as the publisher sees them on the status board.
                cameras: Vec::new(),
            }
        }),
    };
    let publish = spawn("publish".into(), move || {
        let _span = tracing::info_span!("publish").entered();
        publisher.run(class_rx)
    })?;
    let spec = Arc::new(SpecCell::new(model.spec));
    let serving = Serving {
        worker: model.worker,
        model: model.info,
        spec_generation: spec.generation(),
    };
    let inference_metrics = metrics.clone();
    let inference_status = status.clone();
    let beat = liveness.stage("inference", Duration::from_secs(60));
    let pools = inference::Pools {
        tensors: tensors.clone(),
        tops,
    };
    let inference = spawn("inference".into(), move || {
        let _span = tracing::info_span!("inference").entered();
        serving.run(
            control_rx,
            class_tx,
            &inference_metrics,
            &inference_status,
            &pools,
            beat,
        )
    })?;

    let mut cameras = Cameras {
        cancel: cancel.clone(),
        status: status.clone(),
        liveness: liveness.clone(),
        spec,
        tensors,
        control: Some(control_tx),
        running: Vec::new(),
        stopping: Vec::new(),
        waiting: Vec::new(),
        ends: Vec::new(),
        preprocessed: Vec::new(),
        panicked: 0,
    };
    for cam in &cfg.cameras {
        cameras.start(cam.clone())?;
    }
    let n = cfg.cameras.len();
    tracing::info!(cameras = n, "pipeline running");
    let running_since = std::time::Instant::now();
    let mut notifier = Notifier::new();
    let mut stopping_sent = false;
    notifier.ready(&format!("{n} camera(s), model {}", cfg.model.name));
    let mut reloader = Reloader {
        path: opts.config_path.clone(),
        requested: opts.reload.clone(),
        files: ModelFiles::of(&cfg.model),
        config: cfg,
        runtime,
        pending: None,
    };

    // Watch every thread: a panic anywhere stops the capture side so the rest drains.
    loop {
        if !cancel.load(Ordering::Relaxed) {
            reloader.poll(&mut cameras, &metrics, &notifier);
        }
        if let Err(e) = cameras.reap() {
            tracing::error!(error = %e, "cannot start camera");
        }
        let capturing = cameras.capturing() || reloader.pending.is_some();
        let consumer_gone = inference.is_finished() || publish.is_finished() || cameras.broken();
        if capturing && consumer_gone {
            // A consumer ended before its producer: only a failure does that.
            cancel.store(true, Ordering::Relaxed);
        }
        if !capturing && cameras.all_finished() {
            // Every camera has ended: inference drains what is left and hangs up.
            cameras.control = None;
        }
        let all_done = !capturing
            && cameras.all_finished()
            && inference.is_finished()
            && publish.is_finished();
        // A requested stop is announced as soon as it is seen, even when the pipeline
        // drains within this very iteration.
        if cancel.load(Ordering::Relaxed) && !stopping_sent {
            stopping_sent = true;
            notifier.stopping();
        }
        if all_done {
            break;
        }
        notifier.tick(&liveness, || {
            service_status(&status, &metrics, running_since)
        });
        std::thread::sleep(Duration::from_millis(50));
    }

    admin_stop.store(true, Ordering::Relaxed);
    let mut panicked = 0;
    if let Some(h) = admin {
        panicked += usize::from(h.join().is_err());
    }
    for c in std::mem::take(&mut cameras.running) {
        cameras.join(c);
    }
    for c in std::mem::take(&mut cameras.stopping) {
        cameras.join(c);
    }
    panicked += cameras.panicked;
    panicked += usize::from(inference.join().is_err());
    let publish = match publish.join() {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "publisher could not start its runtime");
            panicked += 1;
            PublishReport::default()
        }
        Err(_) => {
            panicked += 1;
            PublishReport::default()
        }
    };
    // The cameras configured at the end: their ends decide the exit code.
    let active = status.active();
    let cameras_summary = active
        .iter()
        .map(|(i, id)| {
            let end = cameras.ends[*i]
                .take()
                .unwrap_or(CaptureEnd::Stopped { frames: 0 });
            if let CaptureEnd::Failed(e) = &end {
                tracing::error!(camera = %id, error = %e, "camera failed");
            }
            let st = status.snapshot(*i).map(|(_, s)| s).unwrap_or_default();
            let published = publish.published.get(*i).copied().unwrap_or(0);
            CameraSummary::new(id, &end, &st, cameras.preprocessed[*i], published)
        })
        .collect();
    let elapsed = running_since.elapsed().as_secs_f64();
    let summary = Summary {
        elapsed_s: elapsed,
        cameras: cameras_summary,
        spooled: publish.spooled,
        unconfirmed: publish.unconfirmed,
    };
    let total: u64 = summary.cameras.iter().map(|c| c.published).sum();
    tracing::info!(
        published = total,
        elapsed_s = format!("{elapsed:.2}"),
        frames_per_s = format!("{:.2}", total as f64 / elapsed.max(1e-9)),
        "pipeline stopped"
    );
    summary.cameras.iter().for_each(CameraSummary::log);
    if let Some(path) = &opts.summary_json {
        if let Err(e) = summary.write_json(path) {
            tracing::error!(path = %path.display(), error = %e, "cannot write the summary");
        }
    }
    if panicked > 0 {
        return Err(RunError::StageFailed(panicked));
    }
    let failed = summary.failed_cameras();
    if failed > 0 {
        return Err(RunError::CameraFailed(failed));
    }
    if summary.unconfirmed > 0 {
        return Err(RunError::Undelivered(summary.unconfirmed));
    }
    Ok(summary)
}
