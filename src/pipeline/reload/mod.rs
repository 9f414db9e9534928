//! Hot reload (SIGHUP, `systemctl reload`): [`plan`] works out what a new configuration
//! changes, [`Reloader`] applies it to the running pipeline.
//!
//! The pipeline re-reads its file and, only when the whole new configuration is valid,
//! applies the difference: cameras added, removed or changed start and stop alone, and a
//! changed model (its settings, or its file or labels rewritten in place) is loaded and
//! warmed up before it replaces the running one. Settings the running process cannot
//! change (the broker connection, the admin listener, Home Assistant, logging) are
//! reported as needing a restart and otherwise ignored.

pub mod plan;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::Config;
use crate::inference::{Control, Runtime, Serving};
use crate::metrics::Metrics;
use crate::service::Notifier;
use plan::{ModelFiles, Plan};

use super::cameras::Cameras;
use super::startup::{check_sources, load_model, LoadedModel};
use super::{spawn, RunError};

/// A reload waiting for its new model to load and warm up.
pub(super) struct PendingReload {
    pub(super) config: Config,
    pub(super) plan: Plan,
    pub(super) files: ModelFiles,
    pub(super) loader: JoinHandle<Result<LoadedModel, RunError>>,
}

/// The running configuration and what reloads need.
pub(super) struct Reloader {
    pub(super) path: Option<PathBuf>,
    pub(super) requested: Arc<AtomicBool>,
    pub(super) config: Config,
    pub(super) files: ModelFiles,
    pub(super) runtime: Arc<Runtime>,
    pub(super) pending: Option<PendingReload>,
}

impl Reloader {
    /// Starts a reload if one was requested and none is under way. Camera-only changes
    /// apply at once; a changed model loads on its own thread first.
    pub(super) fn poll(&mut self, cameras: &mut Cameras, metrics: &Metrics, notifier: &Notifier) {
        if let Some(p) = &self.pending {
            if p.loader.is_finished() {
                if let Some(p) = self.pending.take() {
                    let result = p
                        .loader
                        .join()
                        .unwrap_or_else(|_| Err(RunError::StageFailed(1)));
                    match result {
                        Ok(model) => {
                            self.apply(p.config, p.plan, p.files, Some(model), cameras, metrics)
                        }
                        Err(e) => self.reject(&e.to_string(), metrics),
                    }
                    notifier.reloaded();
                }
            }
            return;
        }
        if !self.requested.swap(false, Ordering::SeqCst) {
            return;
        }
        let Some(path) = self.path.clone() else {
            tracing::warn!("reload requested, but the daemon was not started from a file");
            return;
        };
        notifier.reloading();
        tracing::info!(config = %path.display(), "reloading configuration");
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                self.reject(&e.to_string(), metrics);
                notifier.reloaded();
                return;
            }
        };
        let files = ModelFiles::of(&config.model);
        let plan = Plan::new(&self.config, &config, &self.files, &files);
        for section in &plan.restart_needed {
            tracing::warn!(
                section,
                "changed settings take effect at the next restart, not on reload"
            );
        }
        let starting = config
            .cameras
            .iter()
            .enumerate()
            .filter(|(_, c)| plan.added.contains(c) || plan.changed.contains(c));
        if let Err(e) = check_sources(starting) {
            self.reject(&e.to_string(), metrics);
            notifier.reloaded();
            return;
        }
        if !plan.model {
            self.apply(config, plan, files, None, cameras, metrics);
            notifier.reloaded();
            return;
        }
        let model = config.model.clone();
        let runtime = self.runtime.clone();
        match spawn("model-load".into(), &cameras.bell, move || {
            let _span = tracing::info_span!("reload").entered();
            load_model(&model, &runtime)
        }) {
            Ok(loader) => {
                self.pending = Some(PendingReload {
                    config,
                    plan,
                    files,
                    loader,
                })
            }
            Err(e) => {
                self.reject(&e.to_string(), metrics);
                notifier.reloaded();
            }
        }
    }

    pub(super) fn reject(&self, error: &str, metrics: &Metrics) {
        metrics.reload_failures.inc();
        tracing::error!(
            error,
            "configuration reload rejected; the running configuration stays in effect"
        );
    }

    pub(super) fn apply(
        &mut self,
        config: Config,
        plan: Plan,
        files: ModelFiles,
        model: Option<LoadedModel>,
        cameras: &mut Cameras,
        metrics: &Metrics,
    ) {
        if let (Some(m), Some(control)) = (model, &cameras.control) {
            let spec_generation = cameras.spec.generation_for(&m.spec);
            // The worker is swapped first: frames made for the old input (if it changed)
            // are dropped by the new worker rather than fed to it.
            let _ = control.send(Control::Swap(Box::new(Serving {
                workers: m.workers,
                model: m.info,
                spec_generation,
            })));
            cameras.spec.replace(m.spec);
        }
        let [added, removed, changed, regions] = plan.summary();
        tracing::info!(
            ?added,
            ?removed,
            ?changed,
            new_regions = ?regions,
            model = if plan.model { "reloaded" } else { "unchanged" },
            "configuration reloaded"
        );
        for id in &plan.removed {
            cameras.stop(id, true);
        }
        for cam in plan.changed {
            cameras.stop(&cam.id, false);
            cameras.waiting.push(cam);
        }
        for cam in plan.retargeted {
            cameras.retarget(cam);
        }
        for cam in plan.added {
            if let Err(e) = cameras.start(cam) {
                tracing::error!(error = %e, "cannot start camera");
            }
        }
        metrics.reloads.inc();
        self.config = config;
        self.files = files;
    }
}
