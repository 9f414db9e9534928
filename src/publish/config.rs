//! `[mqtt]` and `[homeassistant]`: the sections as written ([`RawMqtt`],
//! [`RawHomeAssistant`]) and the checked [`MqttConfig`] and [`HomeAssistantConfig`] the
//! publisher runs with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::servers::{self, Server, ServersOrder};
use crate::problems::Problems;

/// `[mqtt]`: where classifications go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// Broker host name or address (default 127.0.0.1).
    #[serde(default)]
    pub host: Option<String>,
    /// Broker TCP port (default 1883).
    #[serde(default)]
    pub port: Option<i64>,
    /// A broker cluster's nodes, `host:port` each, instead of `host`/`port`.
    #[serde(default)]
    pub servers: Option<Vec<String>>,
    /// `in-order` (default) or `shuffle`.
    #[serde(default)]
    pub servers_order: Option<String>,
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
            host: None,
            port: None,
            servers: None,
            servers_order: None,
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

fn default_prefix() -> String {
    "streamclassd".to_owned()
}
fn default_qos() -> i64 {
    1
}
fn default_keep_alive() -> i64 {
    30
}
fn default_stats_interval() -> i64 {
    60
}
fn default_outbox_max() -> i64 {
    10_000
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
    /// Shortest time between two refreshes of a label sensor's top-5 attributes.
    #[serde(default = "default_attributes_interval")]
    pub attributes_interval_s: f64,
}

fn default_attributes_interval() -> f64 {
    5.0
}

fn yes() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}

/// An MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

impl Qos {
    /// The level as MQTT numbers it (0, 1, 2).
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
            Qos::ExactlyOnce => 2,
        }
    }

    pub fn from_level(level: u8) -> Option<Qos> {
        match level {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            2 => Some(Qos::ExactlyOnce),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// The brokers to connect to, one at a time (one unless `servers` lists a cluster).
    pub servers: Vec<Server>,
    pub servers_order: ServersOrder,
    pub topic_prefix: String,
    pub qos: Qos,
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
    /// Not configured.
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

/// Home Assistant discovery, when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeAssistantConfig {
    pub discovery_prefix: String,
    /// Node id in discovery topics (already reduced to what Home Assistant accepts).
    pub node_id: String,
    /// Shortest time between two `{stream}/top5` messages (the label sensors' attributes).
    pub attributes_interval: Duration,
}

impl RawMqtt {
    /// Checks `[mqtt]`; relative paths are joined to `base`.
    pub fn check(self, base: &Path, p: &mut Problems) -> Option<MqttConfig> {
        let m = self;
        let servers = servers::check(m.host, m.port, m.servers, m.servers_order, p);
        let qos = p
            .range("mqtt.qos", m.qos, 0, 2)
            .and_then(|q| Qos::from_level(q as u8));
        let keep_alive = p.range("mqtt.keep_alive_s", m.keep_alive_s, 5, 3600);
        check_prefix(&m.topic_prefix, p);
        if let Some(id) = &m.client_id {
            if id.is_empty() || id.len() > 128 {
                p.add("mqtt.client_id", "must be 1 to 128 characters");
            }
        }
        let client_id = m.client_id.unwrap_or_else(default_client_id);
        if m.username.as_deref() == Some("") {
            p.add("mqtt.username", "must not be empty (leave it out for none)");
        }
        let password = password(m.password_file, m.password_credential, base, p);
        if password != PasswordSource::None && m.username.is_none() {
            p.add("mqtt.username", "is required when a password is configured");
        }
        let outbox_max = p.range("mqtt.outbox_max", m.outbox_max, 1, 10_000_000);
        let protocol = match m.protocol.as_deref() {
            None | Some("3.1.1") | Some("4") => Some(MqttProtocol::V311),
            Some("5") | Some("5.0") => Some(MqttProtocol::V5),
            Some(other) => {
                p.add(
                    "mqtt.protocol",
                    format!("{other:?} must be \"3.1.1\" or \"5\""),
                );
                None
            }
        };
        let stats = p.range("mqtt.stats_interval_s", m.stats_interval_s, 0, 86_400);
        let tls = tls(
            m.tls,
            m.ca_file,
            m.client_cert_file,
            m.client_key_file,
            base,
            p,
        );
        let label_debounce = debounce(m.label_hold, m.label_window, p);
        let expiry = m
            .message_expiry_s
            .and_then(|s| p.range("mqtt.message_expiry_s", s, 1, 4_294_967_295));
        if expiry.is_some() && protocol == Some(MqttProtocol::V311) {
            p.add(
                "mqtt.message_expiry_s",
                "needs protocol = \"5\" (MQTT 3.1.1 has no message expiry)",
            );
        }
        let (servers, servers_order) = servers?;
        Some(MqttConfig {
            servers,
            servers_order,
            topic_prefix: m.topic_prefix,
            qos: qos?,
            client_id,
            keep_alive_s: keep_alive? as u16,
            username: m.username,
            password,
            outbox_max: outbox_max? as usize,
            spool_dir: m.spool_dir.map(|d| base.join(d)),
            protocol: protocol?,
            tls,
            stats_interval: stats.and_then(|s| (s > 0).then(|| Duration::from_secs(s as u64))),
            label_debounce,
            message_expiry: expiry.map(|s| Duration::from_secs(s as u64)),
        })
    }
}

fn check_prefix(prefix: &str, p: &mut Problems) {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.contains(['+', '#', '\0'])
    {
        p.add(
            "mqtt.topic_prefix",
            format!(
                "{prefix:?} must be a non-empty topic without wildcards (+, #) or leading/trailing '/'"
            ),
        );
    }
}

fn password(
    file: Option<String>,
    credential: Option<String>,
    base: &Path,
    p: &mut Problems,
) -> PasswordSource {
    secret_source(
        ("mqtt.password_file", "mqtt.password_credential"),
        file,
        credential,
        base,
        p,
    )
}

/// A secret given as a file (first line; relative to `base`) or a systemd credential
/// name, at most one of the two; `fields` name them in problems.
pub fn secret_source(
    (file_field, credential_field): (&str, &str),
    file: Option<String>,
    credential: Option<String>,
    base: &Path,
    p: &mut Problems,
) -> PasswordSource {
    let short = |f: &str| f.rsplit('.').next().unwrap_or(f).to_owned();
    match (file, credential) {
        (Some(_), Some(_)) => {
            p.add(
                credential_field,
                format!(
                    "give either {} or {}, not both",
                    short(file_field),
                    short(credential_field)
                ),
            );
            PasswordSource::None
        }
        (Some(f), None) => PasswordSource::File(base.join(f)),
        (None, Some(c)) if c.is_empty() || c.contains('/') => {
            p.add(
                credential_field,
                format!("{c:?} must be a credential name (no '/')"),
            );
            PasswordSource::None
        }
        (None, Some(c)) => PasswordSource::Credential(c),
        (None, None) => PasswordSource::None,
    }
}

/// The TLS settings; `None` for plain TCP.
fn tls(
    on: bool,
    ca_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    base: &Path,
    p: &mut Problems,
) -> Option<TlsConfig> {
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
        (None, None) => None,
        (Some(_), None) => {
            p.add("mqtt.client_key_file", "needed with client_cert_file");
            None
        }
        (None, Some(_)) => {
            p.add("mqtt.client_cert_file", "needed with client_key_file");
            None
        }
    };
    let ca_file = ca_file.map(|f| base.join(f));
    if !on && (ca_file.is_some() || client.is_some()) {
        p.add(
            "mqtt.tls",
            "must be true when ca_file or a client certificate is given",
        );
    }
    on.then_some(TlsConfig { ca_file, client })
}

/// (hold, window) of the debounced label, off when `hold` is absent.
fn debounce(hold: Option<i64>, window: Option<i64>, p: &mut Problems) -> Option<(usize, usize)> {
    let h = hold.and_then(|h| p.range("mqtt.label_hold", h, 1, 1000));
    let w = window.and_then(|w| p.range("mqtt.label_window", w, 1, 1000));
    if window.is_some() && hold.is_none() {
        p.add("mqtt.label_window", "needs mqtt.label_hold");
    }
    match (h, w) {
        (Some(h), Some(w)) if w < h => {
            p.add(
                "mqtt.label_window",
                format!("{w} is smaller than label_hold {h}"),
            );
            None
        }
        (Some(h), w) => Some((h as usize, w.map_or(2 * h as usize - 1, |w| w as usize))),
        _ => None,
    }
}

impl RawHomeAssistant {
    /// Checks `[homeassistant]`; the node id defaults to the MQTT client id.
    pub fn check(self, client_id: &str, p: &mut Problems) -> Option<HomeAssistantConfig> {
        if !self.enabled {
            return None;
        }
        if self.discovery_prefix.is_empty() || self.discovery_prefix.contains(['+', '#']) {
            p.add(
                "homeassistant.discovery_prefix",
                "must be a topic without wildcards",
            );
        }
        let node = self.node_id.unwrap_or_else(|| client_id.to_owned());
        let attributes_interval = p.seconds(
            "homeassistant.attributes_interval_s",
            self.attributes_interval_s,
            0.1,
            86400.0,
        )?;
        Some(HomeAssistantConfig {
            discovery_prefix: self.discovery_prefix,
            node_id: super::homeassistant::node_id(&node),
            attributes_interval,
        })
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
