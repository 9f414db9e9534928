//! streamclassd: classify camera, RTSP and file video with an ONNX ResNet and publish each
//! frame's top-5 ImageNet labels to MQTT.
//!
//! ```text
//!  camera / RTSP / file
//!        │  capture    one thread per camera, OpenCV VideoCapture (bounded open/read time)
//!        ▼             live: 1-slot edge, newest frame wins (stale ones dropped + counted)
//!  Frame (BGR Mat)     file: blocking edge, nothing lost
//!        │  preprocess one thread per camera: the whole frame and its regions, each
//!        │             resized and cropped (or padded, stretched), normalized
//!        ▼
//!  Prepared (CHW f32s) rendezvous per camera: a frame waits for at most the run in progress
//!        │  inference  one worker owning the ort::Session; batches across cameras
//!        ▼
//!  Classification      256, blocks (the publisher never waits for the broker)
//!        │  publish    rumqttc on a tokio runtime: JSON on {prefix}/{camera}/labels
//!        ▼
//!      MQTT
//! ```
//!
//! Edges, capacities and full-policies: [`pipeline::edges`] (and `docs/design.md`).
//!
//! Module map, in the direction dependencies go (a module uses only those below it;
//! `tests/structure.rs` fails on a cycle):
//! - [`pipeline`]: the lifecycle — start-up checks and loading (`startup`), the cameras'
//!   threads (`cameras`), the edge table (`edges`), hot reload's plan and its application
//!   (`reload`), the exit summary (`summary`);
//! - [`config`]: reads the TOML, hands each section to the stage that owns it, assembles
//!   the checked [`config::Config`];
//! - the stages, each with its own `config.rs` (the section as written and its check):
//!   [`capture`] (OpenCV and libav, sources), [`preprocess`] (Pillow-exact resampling,
//!   normalization, the per-camera thread), [`inference`] (ONNX Runtime session, batching,
//!   top-k), [`publish`] (outbox, connection tasks, topics, shutdown and spool, Home
//!   Assistant);
//! - [`admin`] (HTTP: the console, `/api/...`, MJPEG, Server-Sent Events, `/metrics`,
//!   `/healthz`, `/readyz`) and [`metrics`] (Prometheus);
//! - [`monitor`] (what viewers see: each camera's latest results and history, its last
//!   classified frame while watched and its JPEGs, the event stream; uses [`messages`],
//!   [`pool`]);
//! - leaves: [`messages`] (what travels between stages; uses only [`labels`]),
//!   [`labels`], [`status`] (per-camera state), [`service`] (systemd), [`problems`]
//!   (config problems with their fields), [`gate`] (fps), [`backoff`], [`pool`],
//!   [`memory`].
//!
//! The binary (`main.rs`) parses arguments, sets up logging and signals, runs the
//! pipeline and maps errors to exit codes (`exit.rs`).

pub mod admin;
pub mod backoff;
pub mod capture;
pub mod config;
pub mod gate;
pub mod inference;
pub mod labels;
pub mod memory;
pub mod messages;
pub mod metrics;
pub mod monitor;
pub mod pipeline;
pub mod pool;
pub mod preprocess;
pub mod problems;
pub mod publish;
pub mod service;
pub mod status;
