//! The second phase of a run: the stages spawned on their named threads, the publisher
//! first (it must be there to take what inference produces), then inference, then the
//! cameras.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::admin::Admin;
use crate::config::Config;
use crate::inference::{self, Control, Serving};
use crate::messages::{Classification, Scored};
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::pool::Pool;
use crate::preprocess::SpecCell;
use crate::publish::homeassistant::Discovery;
use crate::publish::{PublishReport, Publisher, PublisherDeps};
use crate::service::Liveness;
use crate::status::StatusBoard;

use super::cameras::Cameras;
use super::reload::plan::ModelFiles;
use super::reload::Reloader;
use super::startup::Prepared;
use super::{edges, spawn, Bell, RunError, RunOptions};

/// A running pipeline: every thread's handle and what supervising them needs.
pub(super) struct Stages {
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) status: Arc<StatusBoard>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) liveness: Arc<Liveness>,
    pub(super) cameras: Cameras,
    pub(super) reloader: Reloader,
    pub(super) inference: JoinHandle<()>,
    pub(super) publish: JoinHandle<std::io::Result<PublishReport>>,
    pub(super) admin: Option<JoinHandle<()>>,
    pub(super) admin_stop: Arc<AtomicBool>,
    /// Rung whenever a stage thread ends.
    pub(super) exits: Receiver<()>,
    /// Rung when a stop or a reload is requested.
    pub(super) wake: Receiver<()>,
    pub(super) running_since: Instant,
}

impl Stages {
    pub(super) fn start(
        cfg: Config,
        opts: &RunOptions,
        cancel: Arc<AtomicBool>,
        prepared: Prepared,
    ) -> Result<Stages, RunError> {
        let Prepared {
            password,
            admin_token,
            tls,
            status,
            restored,
            runtime,
            model,
        } = prepared;
        let (bell, exits) = Bell::new();
        let (control_tx, control_rx) = edges::CONTROL.channel();
        let (class_tx, class_rx) = edges::CLASSIFIED.channel();
        let metrics = Arc::new(Metrics::new(status.clone()));
        metrics.set_model_loaded();
        let monitor = Arc::new(Monitor::new(Cameras::images()));
        let (admin, admin_stop) = spawn_admin(&cfg, &metrics, &status, &monitor, admin_token)?;
        let liveness = Liveness::new();
        // Tensors: one waiting per camera plus a batch in flight. Top-k lists: the
        // classification channel's worth.
        let tensors = Pool::new(2 * cfg.cameras.len() + 2 * cfg.model.max_batch);
        let tops = Pool::new(edges::CLASSIFIED.capacity);
        let publisher = Publisher::new(
            &cfg.mqtt,
            PublisherDeps {
                tops: tops.clone(),
                password,
                tls,
                grace: opts.shutdown_grace,
                status: status.clone(),
                restored,
                metrics: metrics.clone(),
                beat: liveness.stage("publish", Duration::from_secs(30)),
                discovery: discovery(&cfg),
                monitor: monitor.clone(),
            },
        );
        let publish = spawn("publish".into(), &bell, move || {
            let _span = tracing::info_span!("publish").entered();
            publisher.run(class_rx)
        })?;
        let spec = Arc::new(SpecCell::new(model.spec));
        let serving = Serving {
            workers: model.workers,
            model: model.info,
            spec_generation: spec.generation(),
        };
        let inference = spawn_inference(
            serving,
            (tensors.clone(), tops),
            (control_rx, class_tx),
            &metrics,
            &status,
            &liveness,
            &bell,
        )?;
        let mut cameras = Cameras::new(
            cancel.clone(),
            status.clone(),
            liveness.clone(),
            spec,
            tensors,
            control_tx,
            bell,
        )
        .with_monitor(monitor);
        for cam in &cfg.cameras {
            cameras.start(cam.clone())?;
        }
        tracing::info!(cameras = cfg.cameras.len(), "pipeline running");
        let reloader = Reloader {
            path: opts.config_path.clone(),
            requested: opts.reload.clone(),
            files: ModelFiles::of(&cfg.model),
            config: cfg,
            runtime,
            pending: None,
        };
        Ok(Stages {
            cancel,
            status,
            metrics,
            liveness,
            cameras,
            reloader,
            inference,
            publish,
            admin,
            admin_stop,
            exits,
            wake: opts.wake.clone().unwrap_or_else(crossbeam_channel::never),
            running_since: Instant::now(),
        })
    }
}

/// The inference stage's thread: its workers serve what the control channel brings and
/// send what they classified on.
fn spawn_inference(
    serving: Serving,
    (tensors, tops): (Pool<Vec<f32>>, Pool<Vec<Scored>>),
    (control_rx, class_tx): (Receiver<Control>, Sender<Classification>),
    metrics: &Arc<Metrics>,
    status: &Arc<StatusBoard>,
    liveness: &Arc<Liveness>,
    bell: &Bell,
) -> Result<JoinHandle<()>, RunError> {
    let pools = inference::Pools { tensors, tops };
    let beat = liveness.stage("inference", Duration::from_secs(60));
    let (m, st, live) = (metrics.clone(), status.clone(), liveness.clone());
    spawn("inference".into(), bell, move || {
        let _span = tracing::info_span!("inference").entered();
        let deps = inference::ServingDeps {
            metrics: &m,
            status: &st,
            pools: &pools,
            liveness: &live,
            beat,
        };
        serving.run(control_rx, class_tx, deps)
    })
}

/// Home Assistant discovery, when configured; cameras join as the publisher sees them on
/// the status board, regions a reload adds when they are first classified.
fn discovery(cfg: &Config) -> Option<Discovery> {
    cfg.homeassistant.as_ref().map(|ha| Discovery {
        discovery_prefix: ha.discovery_prefix.clone(),
        node_id: ha.node_id.clone(),
        topic_prefix: cfg.mqtt.topic_prefix.clone(),
        model: cfg.model.name.clone(),
        attributes_interval: ha.attributes_interval,
        cameras: Vec::new(),
        regions: cfg
            .cameras
            .iter()
            .flat_map(|c| c.regions.iter().map(|r| (c.id.clone(), r.name.clone())))
            .collect(),
        snapshots: cfg
            .cameras
            .iter()
            .filter(|c| c.snapshot.is_some())
            .map(|c| c.id.clone())
            .collect(),
    })
}

/// The admin listener, when configured, and the flag that stops it. Binding happens
/// here, so a port that is taken fails the start.
fn spawn_admin(
    cfg: &Config,
    metrics: &Arc<Metrics>,
    status: &Arc<StatusBoard>,
    monitor: &Arc<Monitor>,
    token: Option<String>,
) -> Result<(Option<JoinHandle<()>>, Arc<AtomicBool>), RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    let Some(addr) = cfg.admin_listen else {
        return Ok((None, stop));
    };
    let admin = Admin {
        metrics: metrics.clone(),
        status: status.clone(),
        monitor: monitor.clone(),
        token,
    };
    let handle = admin
        .spawn(addr, stop.clone())
        .map_err(|source| RunError::Admin { addr, source })?;
    Ok((Some(handle), stop))
}
