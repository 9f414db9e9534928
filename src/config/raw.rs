//! The sections of the configuration file that belong to no stage, as written. Each
//! stage's own section lives beside it (`capture::RawCamera`, `inference::RawModel`,
//! `preprocess::RawPreprocess`, `publish::{RawMqtt, RawHomeAssistant}`).

use serde::Deserialize;

/// The sections a configuration file may have.
pub const SECTIONS: [&str; 6] = ["mqtt", "model", "camera", "admin", "homeassistant", "log"];

/// `[admin]`: the HTTP listener for metrics and health.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Address to listen on, e.g. "127.0.0.1:9810"; no listener when absent.
    #[serde(default)]
    pub listen: Option<String>,
    /// A bearer token every request but `/healthz` must carry: first line of this file ...
    #[serde(default)]
    pub token_file: Option<String>,
    /// ... or of this systemd credential.
    #[serde(default)]
    pub token_credential: Option<String>,
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

pub fn default_log_level() -> String {
    "info".to_owned()
}
