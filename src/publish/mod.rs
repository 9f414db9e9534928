//! Stage 4: publish classifications and camera states to MQTT (rumqttc on tokio).
//!
//! The publisher thread ([`stage`]) numbers each camera's classifications (`seq`), encodes
//! them and puts them in the [`outbox::Outbox`]; it never waits for the broker, so a broker
//! outage does not slow the pipeline. Two tokio tasks ([`driver`]) move messages on: the
//! feeder hands them to the rumqttc client while connected, the driver makes a fresh client
//! per connection, polls its event loop, reports writes and acknowledgements to the outbox
//! and, when the connection is lost, gives back what was in flight and reconnects with
//! backoff.
//!
//! A message leaves the outbox only once the broker confirmed it (QoS ≥ 1) or it was
//! written (QoS 0). At shutdown ([`shutdown`]), once every earlier stage has drained,
//! `offline` is published and the thread waits, within the grace period, for the outbox to
//! empty; whatever is left is written to the spool (`[mqtt] spool_dir`) or reported as lost.
//!
//! Files: [`config`] (`[mqtt]`, `[homeassistant]`), [`stage`] (the thread loop),
//! [`cameras`] (per-camera topics, roster, statuses, rates), [`driver`] (the connection
//! tasks), [`topics`] (every topic name and retained message), [`shutdown`] (drain and
//! spool), [`client`] (rumqttc 3.1.1 and 5 behind one face), [`outbox`], [`spool`],
//! [`payload`], [`debounce`], [`homeassistant`], [`snapshot`] (JPEGs of the frame on a
//! label change, encoded on a thread of their own).

mod cameras;
pub mod client;
mod config;
pub mod debounce;
mod driver;
pub mod homeassistant;
pub mod outbox;
pub mod payload;
pub mod servers;
mod shared;
mod shutdown;
mod snapshot;
pub mod spool;
mod stage;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use crate::messages::Scored;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::pool::Pool;
use crate::service::Beat;
use crate::status::StatusBoard;
pub use config::{
    secret_source, HomeAssistantConfig, MqttConfig, MqttProtocol, PasswordSource, Qos,
    RawHomeAssistant, RawMqtt, TlsConfig,
};
use spool::Restored;
use topics::Topics;

/// Messages handed to the client but not yet confirmed, at most. Below rumqttc's own
/// in-flight limit (100), so the client never blocks on it.
pub const WINDOW: usize = 64;

/// How often the retained camera statuses are republished with fresh counters.
pub const STATUS_REFRESH: Duration = Duration::from_secs(10);

/// What the publisher did, for the exit summary.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Label messages numbered and queued, per camera.
    pub published: Vec<u64>,
    /// Messages written to the spool at shutdown.
    pub spooled: usize,
    /// Messages neither confirmed nor spooled when the publisher stopped.
    pub unconfirmed: usize,
}

/// The publish stage: built from `[mqtt]` and [`PublisherDeps`]; [`Publisher::run`] is its
/// thread.
pub struct Publisher {
    mqtt: MqttConfig,
    topics: Topics,
    password: Option<String>,
    tls: Option<client::TlsMaterial>,
    grace: Duration,
    status: Arc<StatusBoard>,
    restored: Restored,
    metrics: Arc<Metrics>,
    beat: Beat,
    discovery: Option<homeassistant::Discovery>,
    /// With Home Assistant: how often at most each stream's `top5` is refreshed.
    ha_attributes: Option<Duration>,
    tops: Pool<Vec<Scored>>,
    monitor: Arc<Monitor>,
}

/// What the publisher works with besides its configuration.
pub struct PublisherDeps {
    /// Password read from `mqtt.password_file` at start-up.
    pub password: Option<String>,
    /// TLS certificates read at start-up.
    pub tls: Option<client::TlsMaterial>,
    /// How long shutdown may wait for the broker.
    pub grace: Duration,
    pub status: Arc<StatusBoard>,
    /// What the spool held at start (empty without a spool).
    pub restored: Restored,
    pub metrics: Arc<Metrics>,
    pub beat: Beat,
    /// Home Assistant discovery, when configured (its camera list is kept in step with
    /// the status board's active cameras).
    pub discovery: Option<homeassistant::Discovery>,
    /// Top-k lists go back to the inference thread once encoded.
    pub tops: Pool<Vec<Scored>>,
    /// Every classification is recorded here for the admin API and the console (its
    /// results, its frame, an event), and every status is an event.
    pub monitor: Arc<Monitor>,
}

impl Publisher {
    pub fn new(mqtt: &MqttConfig, deps: PublisherDeps) -> Publisher {
        Publisher {
            mqtt: mqtt.clone(),
            topics: Topics::new(&mqtt.topic_prefix),
            password: deps.password,
            tls: deps.tls,
            grace: deps.grace,
            status: deps.status,
            restored: deps.restored,
            metrics: deps.metrics,
            beat: deps.beat,
            ha_attributes: deps.discovery.as_ref().map(|d| d.attributes_interval),
            discovery: deps.discovery,
            tops: deps.tops,
            monitor: deps.monitor,
        }
    }
}
