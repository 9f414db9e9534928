//! streamclassd: classify camera, RTSP and file video with an ONNX ResNet and publish each
//! frame's top-5 ImageNet labels to MQTT.
//!
//! ```text
//!  camera / RTSP / file
//!        │  capture    one thread per camera, OpenCV VideoCapture (bounded open/read time)
//!        ▼             live: 1-slot edge, newest frame wins (stale ones dropped + counted)
//!  Frame (BGR Mat)     file: blocking edge, nothing lost
//!        │  preprocess one thread per camera: resize shorter side, center crop, normalize
//!        ▼
//!  Prepared (CHW f32)  one slot per camera: at most one frame waits per camera
//!        │  inference  one worker owning the ort::Session; batches across cameras
//!        ▼
//!  Classification      bounded
//!        │  publish    rumqttc on a tokio runtime: JSON on {prefix}/{camera}/labels
//!        ▼
//!      MQTT
//! ```
//!
//! Module map: [`config`] (TOML → checked config), [`capture`], [`preprocess`],
//! [`inference`], [`publish`] (one module per stage), [`messages`] (what travels between
//! stages), [`labels`] (class names), [`status`] (per-camera state for the status topic),
//! [`pipeline`] (wiring, start-up checks, shutdown), [`reload`] (what a new configuration
//! changes on SIGHUP), [`service`] (systemd), [`metrics`] and [`admin`] (Prometheus, health).

pub mod admin;
pub mod backoff;
pub mod capture;
pub mod config;
pub mod inference;
pub mod labels;
pub mod memory;
pub mod messages;
pub mod metrics;
pub mod pipeline;
pub mod pool;
pub mod preprocess;
pub mod problems;
pub mod publish;
pub mod service;
pub mod status;
