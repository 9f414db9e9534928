//! Wires the stages together, runs them on named threads, and takes them down in order.
//!
//! ```text
//! capture-<cam> ─[1: newest wins | 2: block]─▶ pre-<cam> ─[1: block]─┐
//! capture-<cam> ─[...]───────────────────────▶ pre-<cam> ─[1: block]─┴▶ inference ─[256: block]─▶ publish
//! ```
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
use crate::capture::{Capture, CaptureEnd, FrameSink, Source};
use crate::config::{Config, PasswordSource};
use crate::inference::{self, InferenceWorker, ModelError};
use crate::labels::{Labels, LabelsError};
use crate::metrics::Metrics;
use crate::preprocess::{self, Preprocessor};
use crate::publish::client::TlsMaterial;
use crate::publish::spool::{Restored, Spool};
use crate::publish::{PublishReport, Publisher};
use crate::service::{LivenessBuilder, Notifier};
use crate::status::StatusBoard;

/// Exit codes (sysexits.h), documented in the README.
pub mod exit {
    /// Invalid configuration or command line.
    pub const USAGE: i32 = 64;
    /// A model, labels file or file source that is unusable, or a file that cannot be decoded.
    pub const DATAERR: i32 = 65;
    /// A model, labels file or file source that does not exist or cannot be read.
    pub const NOINPUT: i32 = 66;
    /// The ONNX Runtime library cannot be found or loaded.
    pub const UNAVAILABLE: i32 = 69;
    /// A stage failed unexpectedly (a bug): systemd should restart the daemon.
    pub const SOFTWARE: i32 = 70;
    /// The operating system refused a thread or runtime.
    pub const OSERR: i32 = 71;
    /// The spool directory cannot be created or read.
    pub const CANTCREAT: i32 = 73;
    /// Messages could not be delivered to the broker before the grace period ended.
    pub const TEMPFAIL: i32 = 75;
}

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
    Model(#[from] ModelError),
    #[error(transparent)]
    Labels(#[from] LabelsError),
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

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::SourceMissing { .. }
            | RunError::PasswordFile { .. }
            | RunError::NoCredentials { .. }
            | RunError::TlsFile { .. } => exit::NOINPUT,
            RunError::Admin { .. } => exit::UNAVAILABLE,
            RunError::Spool { .. } => exit::CANTCREAT,
            RunError::Model(ModelError::RuntimeMissing(_) | ModelError::RuntimeLoad { .. }) => {
                exit::UNAVAILABLE
            }
            RunError::Model(ModelError::Unreadable { .. }) => exit::NOINPUT,
            RunError::Model(ModelError::CropMismatch { .. }) => exit::USAGE,
            RunError::Model(_) => exit::DATAERR,
            RunError::Labels(LabelsError::Unreadable { .. }) => exit::NOINPUT,
            RunError::Labels(_) => exit::DATAERR,
            RunError::Spawn { .. } => exit::OSERR,
            RunError::StageFailed(_) => exit::SOFTWARE,
            RunError::CameraFailed(_) => exit::DATAERR,
            RunError::Undelivered(_) => exit::TEMPFAIL,
        }
    }
}

/// Settings that come from the command line rather than the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub ort_library: Option<PathBuf>,
    /// How long shutdown may wait for in-flight frames and the broker.
    pub shutdown_grace: Duration,
}

/// What a finished run did.
#[derive(Debug)]
pub struct Summary {
    pub captures: Vec<CaptureEnd>,
    pub publish: PublishReport,
}

/// systemd's STATUS= line: cameras by state, classification rate, broker.
fn service_status(
    ids: &[Arc<str>],
    status: &StatusBoard,
    metrics: &Metrics,
    since: std::time::Instant,
) -> String {
    let mut streaming = 0;
    let mut classified = 0;
    for i in 0..ids.len() {
        if let Some((_, s)) = status.snapshot(i) {
            streaming += usize::from(s.state == crate::status::CameraState::Streaming);
            classified += s.classified;
        }
    }
    format!(
        "{streaming}/{} camera(s) streaming, {:.1} frames/s classified, broker {}",
        ids.len(),
        classified as f64 / since.elapsed().as_secs_f64().max(1.0),
        if metrics.broker_is_connected() {
            "connected"
        } else {
            "not connected"
        }
    )
}

/// The first line of a password file (trailing newline and spaces removed).
fn read_password(path: &std::path::Path) -> Result<String, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::PasswordFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned())
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
    for (index, cam) in cfg.cameras.iter().enumerate() {
        if let Source::File(path) = &cam.source {
            if !path.is_file() {
                return Err(RunError::SourceMissing {
                    index,
                    id: cam.id.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    let password = match &cfg.mqtt.password {
        PasswordSource::None => None,
        PasswordSource::File(path) => Some(read_password(path)?),
        PasswordSource::Credential(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                .ok_or_else(|| RunError::NoCredentials { name: name.clone() })?;
            Some(read_password(&PathBuf::from(dir).join(name))?)
        }
    };
    let tls = match &cfg.mqtt.tls {
        Some(t) => {
            let read = |field: &str, path: &PathBuf| {
                std::fs::read(path).map_err(|source| RunError::TlsFile {
                    field: field.to_owned(),
                    path: path.clone(),
                    source,
                })
            };
            let ca = t
                .ca_file
                .as_ref()
                .map(|p| read("mqtt.ca_file", p))
                .transpose()?;
            let client = match &t.client {
                Some((cert, key)) => Some((
                    read("mqtt.client_cert_file", cert)?,
                    read("mqtt.client_key_file", key)?,
                )),
                None => None,
            };
            Some(TlsMaterial { ca, client })
        }
        None => None,
    };
    let restored = match &cfg.mqtt.spool_dir {
        Some(dir) => Spool::new(dir)
            .load(|id| cfg.cameras.iter().position(|c| c.id == id))
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
    let runtime = inference::load_runtime(opts.ort_library.as_deref())?;
    tracing::info!(library = %runtime.library.display(), "ONNX Runtime loaded");
    let labels = Labels::load(&cfg.model.labels)?;
    let (worker, spec) = InferenceWorker::open(&cfg.model, &runtime)?;
    labels.check_count(worker.io().classes)?;
    tracing::info!(
        model = %cfg.model.path.display(),
        input = %worker.io().input,
        batch = ?worker.io().batch,
        max_batch = worker.max_batch(),
        classes = worker.io().classes,
        layout = ?spec.layout,
        geometry = ?spec.geometry,
        interpolation = ?spec.interpolation,
        crop = spec.crop,
        "model loaded and warmed up"
    );

    let ids: Vec<Arc<str>> = cfg
        .cameras
        .iter()
        .map(|c| Arc::from(c.id.as_str()))
        .collect();
    let n = cfg.cameras.len();
    // One single-slot edge per camera into inference (see InferenceWorker::run).
    let (prep_txs, prep_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| bounded(0)).unzip();
    let (class_tx, class_rx) = bounded(256);

    let status = Arc::new(StatusBoard::new(n));
    let metrics = Arc::new(Metrics::new(ids.clone(), status.clone()));
    metrics.set_model_loaded();
    let admin_stop = Arc::new(AtomicBool::new(false));
    let admin = match cfg.admin_listen {
        Some(addr) => Some(
            Admin {
                metrics: metrics.clone(),
                status: status.clone(),
                cameras: ids.clone(),
            }
            .spawn(addr, admin_stop.clone())
            .map_err(|source| RunError::Admin { addr, source })?,
        ),
        None => None,
    };
    // What "wedged" means for each stage: busy on one item for longer than any healthy
    // run could take.
    let mut lb = LivenessBuilder::default();
    let publish_beat = lb.stage("publish", Duration::from_secs(30));
    let inference_beat = lb.stage("inference", Duration::from_secs(60));
    let mut stage_beats = Vec::with_capacity(n);
    for cam in &cfg.cameras {
        let capture_limit = cam.open_timeout.max(cam.stall_timeout) + Duration::from_secs(15);
        stage_beats.push((
            lb.stage(format!("capture {}", cam.id), capture_limit),
            lb.stage(format!("preprocess {}", cam.id), Duration::from_secs(10)),
        ));
    }
    let liveness = lb.build();
    let publisher = Publisher {
        mqtt: cfg.mqtt.clone(),
        password,
        tls,
        cameras: ids.clone(),
        model: cfg.model.name.clone(),
        labels,
        grace: opts.shutdown_grace,
        cancel: cancel.clone(),
        status: status.clone(),
        restored,
        metrics: metrics.clone(),
        beat: liveness.beat(publish_beat),
        discovery: cfg.homeassistant.as_ref().map(|(prefix, node)| {
            crate::publish::homeassistant::Discovery {
                discovery_prefix: prefix.clone(),
                node_id: node.clone(),
                topic_prefix: cfg.mqtt.topic_prefix.clone(),
                model: cfg.model.name.clone(),
                cameras: cfg.cameras.iter().map(|c| c.id.clone()).collect(),
            }
        }),
    };
    let publish = spawn("publish".into(), move || {
        let _span = tracing::info_span!("publish").entered();
        publisher.run(class_rx)
    })?;
    let inference_metrics = metrics.clone();
    let beat = liveness.beat(inference_beat);
    let inference = spawn("inference".into(), move || {
        let _span = tracing::info_span!("inference").entered();
        worker.run(prep_rxs, class_tx, &inference_metrics, beat)
    })?;

    let mut captures = Vec::with_capacity(n);
    let mut preprocessors = Vec::with_capacity(n);
    for ((i, cam), tx) in cfg.cameras.iter().enumerate().zip(prep_txs) {
        let id = ids[i].clone();
        let live = cam.source.is_live();
        let (frame_tx, frame_rx) = bounded(if live { 1 } else { 2 });
        let sink = if live {
            FrameSink::LatestWins {
                tx: frame_tx,
                evict: frame_rx.clone(),
            }
        } else {
            FrameSink::Block(frame_tx)
        };
        let pre = Preprocessor::new(spec);
        let span_id = id.clone();
        let pre_beat = liveness.beat(stage_beats[i].1);
        preprocessors.push(spawn(format!("pre-{id}"), move || {
            let _span = tracing::info_span!("preprocess", camera = %span_id).entered();
            preprocess::run(pre, frame_rx, tx, pre_beat)
        })?);
        let capture = Capture {
            camera: i,
            id: id.clone(),
            config: cam.clone(),
            cancel: cancel.clone(),
            status: status.clone(),
            beat: liveness.beat(stage_beats[i].0),
        };
        captures.push(spawn(format!("cap-{id}"), move || {
            let _span = tracing::info_span!("capture", camera = %capture.id).entered();
            capture.run(sink)
        })?);
    }
    tracing::info!(cameras = n, "pipeline running");
    let running_since = std::time::Instant::now();
    let mut notifier = Notifier::new();
    let mut stopping_sent = false;
    notifier.ready(&format!("{n} camera(s), model {}", cfg.model.name));

    // Watch every thread: a panic anywhere stops the capture side so the rest drains.
    let mut panicked = 0;
    loop {
        let capturing = captures.iter().any(|h| !h.is_finished());
        let consumer_gone = inference.is_finished()
            || publish.is_finished()
            || captures
                .iter()
                .zip(&preprocessors)
                .any(|(c, p)| p.is_finished() && !c.is_finished());
        if capturing && consumer_gone {
            // A consumer ended before its producer: only a failure does that.
            cancel.store(true, Ordering::Relaxed);
        }
        let all_done = !capturing
            && preprocessors.iter().all(|h| h.is_finished())
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
            service_status(&ids, &status, &metrics, running_since)
        });
        std::thread::sleep(Duration::from_millis(50));
    }

    admin_stop.store(true, Ordering::Relaxed);
    if let Some(h) = admin {
        panicked += usize::from(h.join().is_err());
    }
    let mut ends = Vec::with_capacity(n);
    for (i, h) in captures.into_iter().enumerate() {
        match h.join() {
            Ok(end) => {
                if let CaptureEnd::Failed(e) = &end {
                    tracing::error!(camera = %ids[i], error = %e, "camera failed");
                }
                ends.push(end);
            }
            Err(_) => {
                panicked += 1;
                ends.push(CaptureEnd::Failed("capture thread panicked".into()));
            }
        }
    }
    let mut preprocessed = Vec::with_capacity(n);
    for h in preprocessors {
        match h.join() {
            Ok(count) => preprocessed.push(count),
            Err(_) => {
                panicked += 1;
                preprocessed.push(0);
            }
        }
    }
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
    if panicked > 0 {
        return Err(RunError::StageFailed(panicked));
    }
    let failed = ends
        .iter()
        .filter(|e| matches!(e, CaptureEnd::Failed(_)))
        .count();
    let summary = Summary {
        captures: ends,
        publish,
    };
    let elapsed = running_since.elapsed().as_secs_f64();
    let total: u64 = summary.publish.published.iter().sum();
    tracing::info!(
        published = ?summary.publish.published,
        elapsed_s = format!("{elapsed:.2}"),
        frames_per_s = format!("{:.2}", total as f64 / elapsed.max(1e-9)),
        "pipeline stopped"
    );
    if failed > 0 {
        return Err(RunError::CameraFailed(failed));
    }
    for (i, id) in ids.iter().enumerate() {
        let st = status.snapshot(i).map(|(_, s)| s).unwrap_or_default();
        tracing::info!(
            camera = %id,
            frames = st.frames,
            preprocessed = preprocessed[i],
            published = summary.publish.published.get(i).copied().unwrap_or(0),
            dropped = st.dropped,
            decode_errors = st.decode_errors,
            reconnects = st.reconnects,
            outbox_dropped = st.outbox_dropped,
            "camera summary"
        );
    }
    let undelivered = summary.publish.unconfirmed;
    if undelivered > 0 {
        return Err(RunError::Undelivered(undelivered));
    }
    Ok(summary)
}
