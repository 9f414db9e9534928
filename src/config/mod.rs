//! Configuration: TOML → raw serde types ([`raw`]) → the checked [`Config`].
//!
//! Loading opens no camera, no model and no broker. Every problem found is reported at
//! once, each naming its dotted field (`camera[1].id: duplicate "front-door"`).

pub mod raw;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

pub use raw::ChannelOrder;
use raw::{RawCamera, RawModel, RawMqtt};

use crate::capture::Source;
use crate::preprocess::{Interpolation, Preset, ResizeMode};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub model: ModelConfig,
    pub cameras: Vec<CameraConfig>,
    /// Where the admin HTTP listener binds (none when absent).
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Home Assistant discovery: (discovery prefix, node id), off when absent.
    pub homeassistant: Option<(String, String)>,
    /// Log filter (`[log] level`).
    pub log_level: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    pub qos: u8,
    pub client_id: String,
    pub keep_alive_s: u16,
    pub username: Option<String>,
    pub password: PasswordSource,
    pub outbox_max: usize,
    pub spool_dir: Option<PathBuf>,
    pub protocol: MqttProtocol,
    /// TLS settings; `None` for plain TCP.
    pub tls: Option<TlsConfig>,
    /// Period of the retained `{prefix}/stats` message (none: off).
    pub stats_interval: Option<Duration>,
    /// Debounce of `{prefix}/{camera}/label`: (hold, window), off when absent.
    pub label_debounce: Option<(usize, usize)>,
    /// MQTT 5 message expiry of label messages.
    pub message_expiry: Option<Duration>,
}

/// TLS to the broker (files are read at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA certificates; the system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Where the broker password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    None,
    /// First line of this file.
    File(PathBuf),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttProtocol {
    V311,
    V5,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub name: String,
    pub labels: LabelsSource,
    pub top_k: usize,
    pub threads: Threads,
    pub provider: ProviderConfig,
    pub max_batch: usize,
    pub preprocess: PreprocessConfig,
}

/// ONNX Runtime's intra-op thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    Count(usize),
    /// Chosen from the CPUs this process may use (see [`Threads::resolve`]).
    Auto,
}

impl Threads {
    /// The thread count. `auto`: every CPU up to two; beyond two, one CPU is left to the
    /// cameras' decode and preprocess threads (measured on 2 CPUs with ResNet-50: 2
    /// threads 14.5 frames/s end to end vs 9.6 with 1, but beside a decoder that keeps a
    /// CPU busy 2 threads fall to 7.2 frames/s, below 1 thread's 9.3), at most 16.
    pub fn resolve(self) -> usize {
        match self {
            Threads::Count(n) => n,
            Threads::Auto => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                if cpus <= 2 {
                    cpus
                } else {
                    (cpus - 1).min(16)
                }
            }
        }
    }
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
}

/// The execution provider and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub kind: ExecutionProvider,
    pub device_id: i32,
    /// TensorRT FP16 engines.
    pub fp16: bool,
    /// TensorRT engine cache.
    pub engine_cache_dir: Option<PathBuf>,
    /// Run on the CPU (with a warning) when the provider cannot be used.
    pub fallback_to_cpu: bool,
}

/// Where class names come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelsSource {
    /// The built-in ImageNet-1k names.
    ImageNet,
    /// A file with one label per line.
    File(PathBuf),
}

/// Preprocessing as configured: the preset's values with the user's overrides. The crop
/// size (and what derives from it) may still depend on the model.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    pub preset: Preset,
    pub mode: ResizeMode,
    pub resize_shorter: Option<u32>,
    pub crop: Option<u32>,
    pub crop_fraction: Option<f64>,
    /// Crop / resized shorter side used when neither `resize_shorter` nor
    /// `crop_fraction` is given (the preset's, 224/256).
    pub crop_ratio: f64,
    pub interpolation: Interpolation,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub channel_order: ChannelOrder,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    pub id: String,
    pub source: Source,
    /// Frames per second to classify; 0 = every frame.
    pub fps: f64,
    /// File sources: pace reading at the video's frame rate.
    pub realtime: bool,
    pub stall_timeout: Duration,
    pub open_timeout: Duration,
    pub reconnect_max: Duration,
}

pub use crate::preprocess::preset::{IMAGENET_MEAN, IMAGENET_STD};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `camera[1].id`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n{}", .problems.len(), join(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and validates a config file. Relative paths inside it are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|e| match e {
            ParseError::Syntax(message) => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            ParseError::Invalid(problems) => ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            },
        })
    }

    /// Parses and validates config text; `base` is the directory relative paths start from.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ParseError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ParseError::Syntax(e.message().to_owned()))?;
        let mut v = Validator::default();

        for key in table.keys() {
            if !matches!(
                key.as_str(),
                "mqtt" | "model" | "camera" | "admin" | "homeassistant" | "log"
            ) {
                v.problem(
                    key,
                    "unknown section; expected `mqtt`, `model`, `camera`, `admin`, `homeassistant` or `log`",
                );
            }
        }

        let mqtt = match table.get("mqtt") {
            Some(value) => v.section::<RawMqtt>("mqtt", value),
            None => Some(RawMqtt::default()),
        };
        let model = match table.get("model") {
            Some(value) => v.section::<RawModel>("model", value),
            None => {
                v.problem("model", "missing section `[model]` (at least `path`)");
                None
            }
        };
        let mut cameras = Vec::new();
        match table.get("camera") {
            Some(toml::Value::Array(items)) => {
                if items.is_empty() {
                    v.problem("camera", "at least one `[[camera]]` is required");
                }
                for (i, item) in items.iter().enumerate() {
                    cameras.push(v.section::<RawCamera>(&format!("camera[{i}]"), item));
                }
            }
            Some(_) => v.problem("camera", "expected an array of tables: `[[camera]]`"),
            None => v.problem("camera", "at least one `[[camera]]` is required"),
        }

        let admin = match table.get("admin") {
            Some(value) => v.section::<raw::RawAdmin>("admin", value),
            None => Some(raw::RawAdmin::default()),
        };
        let admin_listen = admin.and_then(|a| a.listen).and_then(|l| match l.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                v.problem(
                    "admin.listen",
                    format!("{l:?} is not an address:port such as \"127.0.0.1:9810\""),
                );
                None
            }
        });
        let log_level = match table.get("log") {
            Some(value) => v
                .section::<raw::RawLog>("log", value)
                .map(|l| l.level)
                .unwrap_or_else(|| "info".to_owned()),
            None => "info".to_owned(),
        };
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            v.problem(
                "log.level",
                format!("{log_level:?} is not a level or filter"),
            );
        }
        let ha = table
            .get("homeassistant")
            .and_then(|value| v.section::<raw::RawHomeAssistant>("homeassistant", value));
        let mqtt = mqtt.and_then(|m| v.mqtt(m, base));
        let homeassistant = match (ha, &mqtt) {
            (Some(h), Some(m)) if h.enabled => {
                if h.discovery_prefix.is_empty() || h.discovery_prefix.contains(['+', '#']) {
                    v.problem(
                        "homeassistant.discovery_prefix",
                        "must be a topic without wildcards",
                    );
                }
                let node = h.node_id.unwrap_or_else(|| m.client_id.clone());
                Some((
                    h.discovery_prefix,
                    crate::publish::homeassistant::node_id(&node),
                ))
            }
            _ => None,
        };
        let model = model.and_then(|m| v.model(m, base));
        let cameras: Vec<_> = cameras
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| c.and_then(|c| v.camera(i, c, base)).map(|c| (i, c)))
            .collect();
        v.unique_ids(&cameras);
        let cameras = cameras.into_iter().map(|(_, c)| c).collect();

        match (v.problems.is_empty(), mqtt, model) {
            (true, Some(mqtt), Some(model)) => Ok(Config {
                mqtt,
                model,
                cameras,
                admin_listen,
                homeassistant,
                log_level,
            }),
            _ => Err(ParseError::Invalid(v.problems)),
        }
    }
}

/// Why config text was rejected (without the file name; see [`ConfigError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Syntax(String),
    Invalid(Vec<Problem>),
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Deserializes one section, recording the failing field's full path on error.
    fn section<T: DeserializeOwned>(&mut self, name: &str, value: &toml::Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let field = if inner == "." || inner.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}.{inner}")
                };
                // toml appends "in `key`" lines; the dotted field already says where.
                let message = e.into_inner().to_string();
                let first = message.lines().next().unwrap_or_default().trim();
                self.problem(field, first);
                None
            }
        }
    }

    fn range(&mut self, field: &str, value: i64, lo: i64, hi: i64) -> Option<i64> {
        if (lo..=hi).contains(&value) {
            Some(value)
        } else {
            self.problem(field, format!("{value} is out of range {lo}..={hi}"));
            None
        }
    }

    fn mqtt(&mut self, m: RawMqtt, base: &Path) -> Option<MqttConfig> {
        if m.host.trim().is_empty() {
            self.problem("mqtt.host", "must not be empty");
        }
        let port = self.range("mqtt.port", m.port, 1, 65535);
        let qos = self.range("mqtt.qos", m.qos, 0, 2);
        let keep_alive = self.range("mqtt.keep_alive_s", m.keep_alive_s, 5, 3600);
        if m.topic_prefix.is_empty()
            || m.topic_prefix.starts_with('/')
            || m.topic_prefix.ends_with('/')
            || m.topic_prefix.contains(['+', '#', '\0'])
        {
            self.problem(
                "mqtt.topic_prefix",
                format!(
                    "{:?} must be a non-empty topic without wildcards (+, #) or leading/trailing '/'",
                    m.topic_prefix
                ),
            );
        }
        if let Some(id) = &m.client_id {
            if id.is_empty() || id.len() > 128 {
                self.problem("mqtt.client_id", "must be 1 to 128 characters");
            }
        }
        let client_id = m.client_id.unwrap_or_else(default_client_id);
        if m.username.as_deref() == Some("") {
            self.problem("mqtt.username", "must not be empty (leave it out for none)");
        }
        let password = match (m.password_file, m.password_credential) {
            (Some(_), Some(_)) => {
                self.problem(
                    "mqtt.password_credential",
                    "give either password_file or password_credential, not both",
                );
                PasswordSource::None
            }
            (Some(f), None) => PasswordSource::File(base.join(f)),
            (None, Some(c)) if c.is_empty() || c.contains('/') => {
                self.problem(
                    "mqtt.password_credential",
                    format!("{c:?} must be a credential name (no '/')"),
                );
                PasswordSource::None
            }
            (None, Some(c)) => PasswordSource::Credential(c),
            (None, None) => PasswordSource::None,
        };
        if password != PasswordSource::None && m.username.is_none() {
            self.problem("mqtt.username", "is required when a password is configured");
        }
        let outbox_max = self.range("mqtt.outbox_max", m.outbox_max, 1, 10_000_000);
        let protocol = match m.protocol.as_deref() {
            None | Some("3.1.1") | Some("4") => Some(MqttProtocol::V311),
            Some("5") | Some("5.0") => Some(MqttProtocol::V5),
            Some(other) => {
                self.problem(
                    "mqtt.protocol",
                    format!("{other:?} must be \"3.1.1\" or \"5\""),
                );
                None
            }
        };
        let stats = self.range("mqtt.stats_interval_s", m.stats_interval_s, 0, 86_400);
        let client = match (m.client_cert_file, m.client_key_file) {
            (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
            (None, None) => None,
            (Some(_), None) => {
                self.problem("mqtt.client_key_file", "needed with client_cert_file");
                None
            }
            (None, Some(_)) => {
                self.problem("mqtt.client_cert_file", "needed with client_key_file");
                None
            }
        };
        let ca_file = m.ca_file.map(|p| base.join(p));
        if !m.tls && (ca_file.is_some() || client.is_some()) {
            self.problem(
                "mqtt.tls",
                "must be true when ca_file or a client certificate is given",
            );
        }
        let tls = m.tls.then_some(TlsConfig { ca_file, client });
        let hold = m
            .label_hold
            .and_then(|h| self.range("mqtt.label_hold", h, 1, 1000));
        let window = m
            .label_window
            .and_then(|w| self.range("mqtt.label_window", w, 1, 1000));
        if m.label_window.is_some() && m.label_hold.is_none() {
            self.problem("mqtt.label_window", "needs mqtt.label_hold");
        }
        let label_debounce = match (hold, window) {
            (Some(h), Some(w)) if w < h => {
                self.problem(
                    "mqtt.label_window",
                    format!("{w} is smaller than label_hold {h}"),
                );
                None
            }
            (Some(h), w) => Some((h as usize, w.map_or(2 * h as usize - 1, |w| w as usize))),
            _ => None,
        };
        let expiry = m
            .message_expiry_s
            .and_then(|s| self.range("mqtt.message_expiry_s", s, 1, 4_294_967_295));
        if expiry.is_some() && protocol == Some(MqttProtocol::V311) {
            self.problem(
                "mqtt.message_expiry_s",
                "needs protocol = \"5\" (MQTT 3.1.1 has no message expiry)",
            );
        }
        Some(MqttConfig {
            host: m.host,
            port: port? as u16,
            topic_prefix: m.topic_prefix,
            qos: qos? as u8,
            client_id,
            keep_alive_s: keep_alive? as u16,
            username: m.username,
            password,
            outbox_max: outbox_max? as usize,
            spool_dir: m.spool_dir.map(|p| base.join(p)),
            protocol: protocol?,
            tls,
            stats_interval: stats.and_then(|s| (s > 0).then(|| Duration::from_secs(s as u64))),
            label_debounce,
            message_expiry: expiry.map(|s| Duration::from_secs(s as u64)),
        })
    }

    fn seconds(&mut self, field: String, value: f64, lo: f64, hi: f64) -> Option<Duration> {
        if value.is_finite() && (lo..=hi).contains(&value) {
            Some(Duration::from_secs_f64(value))
        } else {
            self.problem(
                field,
                format!("{value} must be between {lo} and {hi} seconds"),
            );
            None
        }
    }

    fn model(&mut self, m: RawModel, base: &Path) -> Option<ModelConfig> {
        if m.path.is_empty() {
            self.problem("model.path", "must name an .onnx file");
        }
        let path = base.join(&m.path);
        let name = m.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".to_owned())
        });
        let labels = match m.labels.as_str() {
            "imagenet" => LabelsSource::ImageNet,
            "" => {
                self.problem(
                    "model.labels",
                    "must be \"imagenet\" or a path to a labels file",
                );
                LabelsSource::ImageNet
            }
            file => LabelsSource::File(base.join(file)),
        };
        let top_k = self.range("model.top_k", m.top_k, 1, 1000);
        let threads = match m.threads {
            raw::RawThreads::Count(n) => self
                .range("model.threads", n, 1, 256)
                .map(|n| Threads::Count(n as usize)),
            raw::RawThreads::Word(w) if w == "auto" => Some(Threads::Auto),
            raw::RawThreads::Word(w) => {
                self.problem(
                    "model.threads",
                    format!("{w:?}: expected a number of threads or \"auto\""),
                );
                None
            }
        };
        let device_id = self.range("model.device_id", m.device_id, 0, 255);
        let tensorrt = m.execution_provider == ExecutionProvider::TensorRt;
        if m.fp16 && !tensorrt {
            self.problem(
                "model.fp16",
                "only with execution_provider = \"tensorrt\" (for CUDA or the CPU, use a float16 model)",
            );
        }
        if m.engine_cache_dir.is_some() && !tensorrt {
            self.problem(
                "model.engine_cache_dir",
                "only with execution_provider = \"tensorrt\"",
            );
        }
        let max_batch = self.range("model.max_batch", m.max_batch, 1, 256);
        let preprocess = self.preprocess(m.preprocess);
        Some(ModelConfig {
            path,
            name,
            labels,
            top_k: top_k? as usize,
            threads: threads?,
            provider: ProviderConfig {
                kind: m.execution_provider,
                device_id: device_id? as i32,
                fp16: m.fp16,
                engine_cache_dir: m.engine_cache_dir.map(|d| base.join(d)),
                fallback_to_cpu: m.fallback_to_cpu,
            },
            max_batch: max_batch? as usize,
            preprocess: preprocess?,
        })
    }

    fn preprocess(&mut self, p: raw::RawPreprocess) -> Option<PreprocessConfig> {
        const F: &str = "model.preprocess";
        let preset = p.preset.values();
        let mode = p.mode.unwrap_or(preset.mode);
        let crop = p
            .crop
            .and_then(|c| self.range(&format!("{F}.crop"), c, 8, 4096));
        let resize = p
            .resize_shorter
            .and_then(|r| self.range(&format!("{F}.resize_shorter"), r, 8, 8192));
        if let (Some(c), Some(r)) = (crop, resize) {
            if r < c {
                self.problem(
                    format!("{F}.resize_shorter"),
                    format!("{r} is smaller than crop {c}"),
                );
            }
        }
        if mode == ResizeMode::CropResize && p.resize_shorter.is_some() {
            self.problem(
                format!("{F}.resize_shorter"),
                "only used with mode = \"resize-crop\" (this preset/mode crops first)",
            );
        }
        if mode == ResizeMode::ResizeCrop && p.crop_fraction.is_some() {
            self.problem(
                format!("{F}.crop_fraction"),
                "only used with mode = \"crop-resize\"; use resize_shorter",
            );
        }
        let crop_fraction = match p.crop_fraction {
            Some(f) if !(f > 0.0 && f <= 1.0) => {
                self.problem(
                    format!("{F}.crop_fraction"),
                    format!("{f} must be in (0, 1]"),
                );
                None
            }
            other => other,
        };
        let scale = match p.scale {
            Some(s) if !(s.is_finite() && s > 0.0) => {
                self.problem(format!("{F}.scale"), format!("{s} must be positive"));
                None
            }
            Some(s) => Some(s as f32),
            None => Some(preset.scale),
        };
        let mean = self.triple(&format!("{F}.mean"), p.mean, preset.mean, false);
        let std = self.triple(&format!("{F}.std"), p.std, preset.std, true);
        Some(PreprocessConfig {
            preset: p.preset,
            mode,
            resize_shorter: resize.map(|r| r as u32),
            crop: crop.map(|c| c as u32),
            crop_fraction,
            crop_ratio: preset.crop_ratio,
            interpolation: p.interpolation.unwrap_or(preset.interpolation),
            scale: scale?,
            mean: mean?,
            std: std?,
            channel_order: p.channel_order.unwrap_or(preset.channel_order),
        })
    }

    fn triple(
        &mut self,
        field: &str,
        value: Option<Vec<f64>>,
        default: [f32; 3],
        positive: bool,
    ) -> Option<[f32; 3]> {
        let Some(v) = value else {
            return Some(default);
        };
        if v.len() != 3 {
            self.problem(
                field,
                format!("expected 3 values (one per channel), got {}", v.len()),
            );
            return None;
        }
        if v.iter().any(|x| !x.is_finite() || (positive && *x <= 0.0)) {
            let what = if positive { "positive" } else { "finite" };
            self.problem(field, format!("every value must be {what}: {v:?}"));
            return None;
        }
        Some([v[0] as f32, v[1] as f32, v[2] as f32])
    }

    fn camera(&mut self, i: usize, c: RawCamera, base: &Path) -> Option<CameraConfig> {
        let mut ok = true;
        if c.id.is_empty()
            || c.id.len() > 64
            || !c
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            self.problem(
                format!("camera[{i}].id"),
                format!("{:?} must be 1 to 64 characters of [A-Za-z0-9_-]", c.id),
            );
            ok = false;
        }
        if c.source.trim().is_empty() {
            self.problem(format!("camera[{i}].source"), "must not be empty");
            ok = false;
        }
        if !c.fps.is_finite() || c.fps < 0.0 || c.fps > 1000.0 {
            self.problem(
                format!("camera[{i}].fps"),
                format!("{} must be between 0 (every frame) and 1000", c.fps),
            );
            ok = false;
        }
        let source = Source::parse(&c.source, base);
        if c.realtime && source.is_live() {
            self.problem(
                format!("camera[{i}].realtime"),
                "only for file sources (live sources are real time already)",
            );
            ok = false;
        }
        let stall = self.seconds(
            format!("camera[{i}].stall_timeout_s"),
            c.stall_timeout_s,
            0.5,
            600.0,
        );
        let open = self.seconds(
            format!("camera[{i}].open_timeout_s"),
            c.open_timeout_s,
            0.5,
            600.0,
        );
        let reconnect = self.seconds(
            format!("camera[{i}].reconnect_max_s"),
            c.reconnect_max_s,
            1.0,
            3600.0,
        );
        let (Some(stall_timeout), Some(open_timeout), Some(reconnect_max)) =
            (stall, open, reconnect)
        else {
            return None;
        };
        ok.then_some(CameraConfig {
            source,
            id: c.id,
            fps: c.fps,
            realtime: c.realtime,
            stall_timeout,
            open_timeout,
            reconnect_max,
        })
    }

    /// `cameras` pairs each valid camera with its index in the file.
    fn unique_ids(&mut self, cameras: &[(usize, CameraConfig)]) {
        let mut seen = HashSet::new();
        for (i, c) in cameras {
            if !seen.insert(c.id.as_str()) {
                self.problem(format!("camera[{i}].id"), format!("duplicate {:?}", c.id));
            }
        }
    }
}

fn default_client_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("streamclassd-{host}")
}

#[cfg(test)]
mod tests;
