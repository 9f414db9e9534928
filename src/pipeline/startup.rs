//! Start-up checks and loading: secrets, certificates, file sources, the model.

use std::path::PathBuf;
use std::sync::Arc;

use crate::capture::{CameraConfig, Source};
use crate::config::Config;
use crate::inference::{self, InferenceWorker, ModelConfig, Runtime};
use crate::labels::Labels;
use crate::messages::ModelInfo;
use crate::preprocess::PreprocessSpec;
use crate::publish::client::TlsMaterial;
use crate::publish::spool::{Restored, Spool};
use crate::publish::PasswordSource;
use crate::status::StatusBoard;

use super::{RunError, RunOptions};

/// Everything loaded and checked before any stage thread, socket or camera exists.
pub(super) struct Prepared {
    pub(super) password: Option<String>,
    /// The bearer token the admin listener asks for, if any.
    pub(super) admin_token: Option<String>,
    pub(super) tls: Option<TlsMaterial>,
    /// Every configured camera registered (indices follow the configuration's order).
    pub(super) status: Arc<StatusBoard>,
    /// What the spool kept from the previous run.
    pub(super) restored: Restored,
    pub(super) runtime: Arc<Runtime>,
    pub(super) model: LoadedModel,
}

/// The first phase of a run: file sources exist, secrets and certificates are read, the
/// spool is loaded, ONNX Runtime and the model load (and the model runs once).
pub(super) fn prepare(cfg: &Config, opts: &RunOptions) -> Result<Prepared, RunError> {
    check_sources(cfg.cameras.iter().enumerate())?;
    let password = secret(
        &cfg.mqtt.password,
        "MQTT password",
        "mqtt.password_credential",
    )?;
    let admin_token = secret(&cfg.admin_token, "admin token", "admin.token_credential")?;
    if admin_token.as_deref() == Some("") {
        return Err(RunError::EmptyToken);
    }
    let tls = tls_material(cfg)?;
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
    let runtime = Arc::new(crate::inference::load_runtime(opts.ort_library.as_deref())?);
    tracing::info!(library = %runtime.library.display(), "ONNX Runtime loaded");
    let model = load_model(&cfg.model, &runtime)?;
    Ok(Prepared {
        password,
        admin_token,
        tls,
        status,
        restored,
        runtime,
        model,
    })
}

/// The first line of a password file (trailing newline and spaces removed).
fn read_secret(what: &'static str, path: &std::path::Path) -> Result<String, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::PasswordFile {
        what,
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

/// A secret from a file or a systemd credential (`field` names the credential's key).
fn secret(
    source: &PasswordSource,
    what: &'static str,
    field: &'static str,
) -> Result<Option<String>, RunError> {
    Ok(match source {
        PasswordSource::None => None,
        PasswordSource::File(path) => Some(read_secret(what, path)?),
        PasswordSource::Credential(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                RunError::NoCredentials {
                    field,
                    name: name.clone(),
                }
            })?;
            Some(read_secret(what, &PathBuf::from(dir).join(name))?)
        }
    })
}

/// The TLS certificates and key named in `[mqtt]`, read once at start-up.
fn tls_material(cfg: &Config) -> Result<Option<TlsMaterial>, RunError> {
    let Some(t) = &cfg.mqtt.tls else {
        return Ok(None);
    };
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
    Ok(Some(TlsMaterial { ca, client }))
}

/// File sources must exist before their camera starts (at start-up and on reload).
pub(super) fn check_sources<'a>(
    cameras: impl IntoIterator<Item = (usize, &'a CameraConfig)>,
) -> Result<(), RunError> {
    for (index, cam) in cameras {
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
    Ok(())
}

/// A model loaded, checked against its labels and warmed up: ready to serve.
pub struct LoadedModel {
    pub workers: Vec<InferenceWorker>,
    pub spec: PreprocessSpec,
    pub info: Arc<ModelInfo>,
}

/// Loads the labels and the model, checks that they agree, and warms the model up.
pub fn load_model(cfg: &ModelConfig, runtime: &Runtime) -> Result<LoadedModel, RunError> {
    let labels = Labels::load(&cfg.labels)?;
    let (workers, spec) = inference::open_workers(cfg, runtime)?;
    let worker = &workers[0];
    labels.check_count(worker.io().classes)?;
    tracing::info!(
        model = %cfg.path.display(),
        input = %worker.io().input,
        batch = ?worker.io().batch,
        max_batch = worker.max_batch(),
        workers = workers.len(),
        threads = cfg.parallelism().threads,
        classes = worker.io().classes,
        layout = ?spec.layout,
        geometry = ?spec.geometry,
        interpolation = ?spec.interpolation,
        crop = spec.crop,
        "model loaded and warmed up"
    );
    // The model's parse is freed by now; hand its pages back.
    crate::memory::release_free_heap();
    Ok(LoadedModel {
        workers,
        spec,
        info: Arc::new(ModelInfo {
            name: cfg.name.clone(),
            labels,
        }),
    })
}
