//! The configuration file as written: serde types that mirror the TOML one to one.
//!
//! Nothing here is trusted yet; `super::validate` turns these into the checked
//! [`super::Config`]. Integer fields are read as `i64` so that an out-of-range value gets
//! our own message naming the field instead of a bare serde type error.

use serde::Deserialize;

use super::ExecutionProvider;
use crate::preprocess::{Interpolation, Preset, ResizeMode};

/// `[mqtt]`: where classifications go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// Broker host name or address.
    #[serde(default = "default_host")]
    pub host: String,
    /// Broker TCP port.
    #[serde(default = "default_port")]
    pub port: i64,
    /// First level of every topic: `{topic_prefix}/{camera}/labels`, `{topic_prefix}/status`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// QoS of the per-frame label messages: 0, 1 or 2.
    #[serde(default = "default_qos")]
    pub qos: i64,
    /// MQTT client id; defaults to `streamclassd-<hostname>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// MQTT keep-alive interval in seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: i64,
    /// User name for the broker, if it requires one.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (its first line), so the config never contains it.
    #[serde(default)]
    pub password_file: Option<String>,
    /// Name of a systemd credential (`LoadCredential=`) holding the password.
    #[serde(default)]
    pub password_credential: Option<String>,
    /// Label messages that may wait for the broker; beyond this the oldest are dropped.
    #[serde(default = "default_outbox_max")]
    pub outbox_max: i64,
    /// Directory where undelivered messages and sequence numbers survive a restart.
    #[serde(default)]
    pub spool_dir: Option<String>,
    /// Connect with TLS.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA certificate(s) the broker's certificate must chain to (default: the
    /// system's trusted roots).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM client certificate, for brokers that require one.
    #[serde(default)]
    pub client_cert_file: Option<String>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub client_key_file: Option<String>,
    /// Seconds between retained `{prefix}/stats` messages; 0 turns them off.
    #[serde(default = "default_stats_interval")]
    pub stats_interval_s: i64,
    /// Debounced `{prefix}/{camera}/label`: a new top-1 must hold for this many of the
    /// last `label_window` frames. Off when absent.
    #[serde(default)]
    pub label_hold: Option<i64>,
    /// Frames the debounce looks back over (default 2 × label_hold − 1).
    #[serde(default)]
    pub label_window: Option<i64>,
    /// MQTT protocol version: "3.1.1" (default) or "5".
    #[serde(default)]
    pub protocol: Option<String>,
    /// MQTT 5: seconds after which the broker discards an undelivered label message.
    #[serde(default)]
    pub message_expiry_s: Option<i64>,
}

impl Default for RawMqtt {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            topic_prefix: default_prefix(),
            qos: default_qos(),
            client_id: None,
            keep_alive_s: default_keep_alive(),
            username: None,
            password_file: None,
            password_credential: None,
            outbox_max: default_outbox_max(),
            spool_dir: None,
            tls: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            stats_interval_s: default_stats_interval(),
            label_hold: None,
            label_window: None,
            protocol: None,
            message_expiry_s: None,
        }
    }
}

/// `[model]`: the ONNX classifier and how frames are prepared for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Path of the `.onnx` file (relative paths are relative to the config file).
    pub path: String,
    /// Name reported in every payload; defaults to the model file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// `"imagenet"` for the built-in ImageNet-1k names, or a file with one label per line.
    #[serde(default = "default_labels")]
    pub labels: String,
    /// How many labels each message carries.
    #[serde(default = "default_top_k")]
    pub top_k: i64,
    /// ONNX Runtime intra-op threads: a number, or `"auto"` (see `Threads::resolve`).
    #[serde(default = "default_threads")]
    pub threads: RawThreads,
    /// Where the model runs: `cpu` (default), `cuda` or `tensorrt`.
    #[serde(default)]
    pub execution_provider: ExecutionProvider,
    /// GPU to use (CUDA device ordinal).
    #[serde(default)]
    pub device_id: i64,
    /// TensorRT: build FP16 engines.
    #[serde(default)]
    pub fp16: bool,
    /// TensorRT: directory where built engines are kept and reused across starts.
    pub engine_cache_dir: Option<String>,
    /// When the execution provider cannot be used: `false` (default) refuses to start,
    /// `true` logs a warning and runs on the CPU.
    #[serde(default)]
    pub fallback_to_cpu: bool,
    /// Largest batch the inference worker forms from frames that are waiting.
    #[serde(default = "default_max_batch")]
    pub max_batch: i64,
    /// Preprocessing; defaults to torchvision's ResNet evaluation recipe.
    #[serde(default)]
    pub preprocess: RawPreprocess,
}

/// `[model.preprocess]`: a preset, and any of its values overridden.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocess {
    /// Named recipe: `torchvision` (default), `caffe`, `tf-efficientnet-lite`.
    #[serde(default)]
    pub preset: Preset,
    /// `resize-crop` (resize the shorter side, then center crop) or `crop-resize` (center
    /// crop a fraction of the shorter side, then resize).
    pub mode: Option<ResizeMode>,
    /// `resize-crop`: shorter side after resizing; default `crop * 256 / 224`.
    pub resize_shorter: Option<i64>,
    /// Side of the square model input; default the model's input size (224 if dynamic).
    pub crop: Option<i64>,
    /// `crop-resize`: fraction of the shorter side cut out before resizing; default 0.875.
    pub crop_fraction: Option<f64>,
    /// `bilinear`, `bicubic`, `area` or `nearest` (Pillow's antialiased filters).
    pub interpolation: Option<Interpolation>,
    /// Factor applied to each 0..255 pixel before `mean`/`std` (1/255 for 0..1 models).
    pub scale: Option<f64>,
    /// Per-channel mean subtracted after scaling, in the model's channel order.
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviation divided by, in the model's channel order.
    pub std: Option<Vec<f64>>,
    /// Channel order the model expects: `rgb` or `bgr`.
    pub channel_order: Option<ChannelOrder>,
}

/// Channel order of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue (torchvision and most exports).
    Rgb,
    /// Blue, green, red (caffe-style models; OpenCV's native order).
    Bgr,
}

/// One `[[camera]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// Identifier used in topics: `[A-Za-z0-9_-]+`, unique.
    pub id: String,
    /// An RTSP/HTTP URL, a V4L2 device (`/dev/video0` or an index such as `"0"`), or a file.
    pub source: String,
    /// Frames per second to classify; 0 classifies every frame.
    #[serde(default)]
    pub fps: f64,
    /// Files only: read at the video's own frame rate, like a live camera (no frame lost).
    #[serde(default)]
    pub realtime: bool,
    /// A live source that delivers no frame for this long is reopened (state `stalled`).
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_s: f64,
    /// Longest time opening a source may take.
    #[serde(default = "default_open_timeout")]
    pub open_timeout_s: f64,
    /// Cap of the exponential backoff between reopen attempts.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_s: f64,
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> i64 {
    1883
}
fn default_prefix() -> String {
    "streamclassd".to_owned()
}
fn default_qos() -> i64 {
    1
}
fn default_keep_alive() -> i64 {
    30
}
fn default_labels() -> String {
    "imagenet".to_owned()
}
fn default_top_k() -> i64 {
    5
}
fn default_threads() -> RawThreads {
    RawThreads::Count(2)
}

/// `threads = 2` or `threads = "auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawThreads {
    Count(i64),
    Word(String),
}
fn default_max_batch() -> i64 {
    4
}
fn default_stats_interval() -> i64 {
    60
}
fn default_outbox_max() -> i64 {
    10_000
}
fn default_stall_timeout() -> f64 {
    5.0
}
fn default_open_timeout() -> f64 {
    10.0
}
fn default_reconnect_max() -> f64 {
    30.0
}

/// `[admin]`: the HTTP listener for metrics and health.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Address to listen on, e.g. "127.0.0.1:9810"; no listener when absent.
    #[serde(default)]
    pub listen: Option<String>,
}

/// `[homeassistant]`: MQTT discovery for Home Assistant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHomeAssistant {
    /// Announce the sensors (default true when the section is present).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Home Assistant's discovery prefix.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Node id in discovery topics and unique ids; default: the MQTT client id.
    #[serde(default)]
    pub node_id: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A level (error, warn, info, debug, trace) or tracing filter directives; the
    /// `STREAMCLASSD_LOG` environment variable and `--log` override it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}
