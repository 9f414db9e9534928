//! Configuration: TOML → each section checked by the stage that reads it → the checked
//! [`Config`].
//!
//! Every stage owns its section (the serde type as written and its check): this module
//! only reads the file, splits it into sections and assembles what the stages return, so
//! no stage depends on it. Loading opens no camera, no model and no broker. Every problem
//! found is reported at once, each naming its dotted field
//! (`camera[1].id: duplicate "front-door"`).

mod raw;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::capture::{check_unique_ids, CameraConfig, RawCamera};
use crate::inference::{ModelConfig, RawModel};
pub use crate::problems::Problem;
use crate::problems::Problems;
use crate::publish::{
    secret_source, HomeAssistantConfig, MqttConfig, PasswordSource, RawHomeAssistant, RawMqtt,
};
use raw::{RawAdmin, RawLog, SECTIONS};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub model: ModelConfig,
    pub cameras: Vec<CameraConfig>,
    /// Where the admin HTTP listener binds (none when absent).
    pub admin_listen: Option<std::net::SocketAddr>,
    /// The bearer token the admin listener asks for, where it is read from.
    pub admin_token: PasswordSource,
    /// Home Assistant discovery, off when absent.
    pub homeassistant: Option<HomeAssistantConfig>,
    /// Log filter (`[log] level`).
    pub log_level: String,
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

/// A log level or tracing filter (`[log] level`, `--log`, `STREAMCLASSD_LOG`), parsed.
/// Only levels and `target=level` directives (`warn,streamclassd::publish=debug`) are
/// taken: ASCII letters, digits, `_ : , = . -` and spaces, at most 1024 bytes. Span and
/// field filters (`[span{field=value}]`) are refused before tracing-subscriber sees
/// them: its parser panics on some non-ASCII text and took minutes over a 395-byte
/// field filter (both found by the `config_bytes` fuzz target).
pub fn log_filter(spec: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_:,=.- ".contains(c);
    if spec.len() > 1024 || !spec.chars().all(plain) {
        return Err(
            "not a level or filter: only levels and `target=level` directives \
                    (ASCII letters, digits, `_ : , = . -`, at most 1024 bytes)"
                .to_owned(),
        );
    }
    tracing_subscriber::EnvFilter::try_new(spec).map_err(|e| format!("not a level or filter: {e}"))
}

/// Why config text was rejected (without the file name; see [`ConfigError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid TOML: {0}")]
    Syntax(String),
    #[error("{} problem(s):\n{}", .0.len(), join(.0))]
    Invalid(Vec<Problem>),
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
        let mut p = Problems::default();
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                p.add(
                    crate::problems::toml_key(key),
                    "unknown section; expected `mqtt`, `model`, `camera`, `admin`, `homeassistant` or `log`",
                );
            }
        }
        let mqtt = match table.get("mqtt") {
            Some(value) => section::<RawMqtt>(&mut p, "mqtt", value),
            None => Some(RawMqtt::default()),
        };
        let model = match table.get("model") {
            Some(value) => section::<RawModel>(&mut p, "model", value),
            None => {
                p.add("model", "missing section `[model]` (at least `path`)");
                None
            }
        };
        let cameras = cameras(&mut p, table.get("camera"), base);
        let (admin_listen, admin_token) = admin(&mut p, table.get("admin"), base);
        let log_level = match table.get("log") {
            Some(value) => section::<RawLog>(&mut p, "log", value)
                .map(|l| l.level)
                .unwrap_or_else(raw::default_log_level),
            None => raw::default_log_level(),
        };
        if let Err(why) = log_filter(&log_level) {
            p.add("log.level", format!("{log_level:?}: {why}"));
        }
        let ha = table
            .get("homeassistant")
            .and_then(|value| section::<RawHomeAssistant>(&mut p, "homeassistant", value));
        let mqtt = mqtt.and_then(|m| m.check(base, &mut p));
        let homeassistant = match (ha, &mqtt) {
            (Some(h), Some(m)) => h.check(&m.client_id, &mut p),
            _ => None,
        };
        let mut model = model.and_then(|m| m.check(base, &mut p));
        if let Some(m) = &mut model {
            m.fit(in_flight(&cameras));
        }
        match (p.is_empty(), mqtt, model) {
            (true, Some(mqtt), Some(model)) => Ok(Config {
                mqtt,
                model,
                cameras,
                admin_listen,
                admin_token,
                homeassistant,
                log_level,
            }),
            _ => Err(ParseError::Invalid(p.into_vec())),
        }
    }
}

/// How many frames `cameras` can have in flight at once: one per live camera (latest
/// frame wins), any number for a file.
fn in_flight(cameras: &[CameraConfig]) -> usize {
    cameras.iter().fold(0usize, |n, c| {
        n.saturating_add(if c.source.is_live() { 1 } else { usize::MAX })
    })
}

/// Every `[[camera]]`, checked one by one and then for duplicate ids.
fn cameras(p: &mut Problems, value: Option<&toml::Value>, base: &Path) -> Vec<CameraConfig> {
    let items = match value {
        Some(toml::Value::Array(items)) if !items.is_empty() => items,
        Some(toml::Value::Array(_)) | None => {
            p.add("camera", "at least one `[[camera]]` is required");
            return Vec::new();
        }
        Some(_) => {
            p.add("camera", "expected an array of tables: `[[camera]]`");
            return Vec::new();
        }
    };
    let checked: Vec<(usize, CameraConfig)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let raw = section::<RawCamera>(p, &format!("camera[{i}]"), item)?;
            raw.check(i, base, p).map(|c| (i, c))
        })
        .collect();
    check_unique_ids(&checked, p);
    checked.into_iter().map(|(_, c)| c).collect()
}

/// `[admin]`: where to listen, when given, and the token it asks for.
fn admin(
    p: &mut Problems,
    value: Option<&toml::Value>,
    base: &Path,
) -> (Option<std::net::SocketAddr>, PasswordSource) {
    let admin = match value {
        Some(value) => section::<RawAdmin>(p, "admin", value).unwrap_or_default(),
        None => RawAdmin::default(),
    };
    let fields = ("admin.token_file", "admin.token_credential");
    let token = secret_source(fields, admin.token_file, admin.token_credential, base, p);
    let Some(listen) = admin.listen else {
        if token != PasswordSource::None {
            p.add("admin.token_file", "a token needs admin.listen");
        }
        return (None, token);
    };
    match listen.parse() {
        Ok(addr) => (Some(addr), token),
        Err(_) => {
            p.add(
                "admin.listen",
                format!("{listen:?} is not an address:port such as \"127.0.0.1:9810\""),
            );
            (None, token)
        }
    }
}

/// Deserializes one section, recording the failing field's full path on error.
fn section<T: DeserializeOwned>(p: &mut Problems, name: &str, value: &toml::Value) -> Option<T> {
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
            p.add(field, first);
            None
        }
    }
}

#[cfg(test)]
mod tests;
