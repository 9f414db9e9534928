//! Stage 4: publish classifications and camera states to MQTT (rumqttc on tokio).
//!
//! The publisher thread numbers each camera's classifications (`seq`), encodes them and
//! puts them in the [`outbox::Outbox`]; it never waits for the broker, so a broker outage
//! does not slow the pipeline. Two tokio tasks move messages on:
//! - the feeder hands messages from the outbox to the rumqttc client while connected,
//!   keeping at most [`WINDOW`] in flight;
//! - the driver polls the rumqttc event loop, reports writes and acknowledgements to the
//!   outbox, announces `online` on every connection and reconnects with capped, jittered
//!   backoff (rumqttc itself would retry at once).
//!
//! A message leaves the outbox only once the broker confirmed it (QoS ≥ 1) or it was
//! written (QoS 0). At shutdown, once every earlier stage has drained, `offline` is
//! published and the thread waits, within the grace period, for the outbox to empty;
//! whatever is left is written to the spool (`[mqtt] spool_dir`) or reported as lost.

pub mod client;
mod config;
pub mod debounce;
pub mod homeassistant;
pub mod outbox;
pub mod payload;
pub mod spool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::messages::Classification;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::service::Beat;
use crate::status::StatusBoard;
use client::{Client, Connect, Connection, NetEvent};
pub use config::{
    HomeAssistantConfig, MqttConfig, MqttProtocol, PasswordSource, Qos, RawHomeAssistant, RawMqtt,
    TlsConfig,
};
use outbox::{OutMsg, Outbox};
use spool::{Restored, Spool};

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

/// State shared by the publisher thread and its two tasks.
struct Shared {
    outbox: Mutex<Outbox>,
    connected: AtomicBool,
    stopping: AtomicBool,
    /// Wakes the feeder: a message arrived, one was confirmed, or the client connected.
    work: Notify,
    /// Wakes whoever waits for the outbox to drain.
    progress: Notify,
    /// Home Assistant discovery for the active cameras, when configured.
    discovery: Mutex<Option<homeassistant::Discovery>>,
}

impl Shared {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // Nothing panics while holding this lock; if something did, the queues are
        // still consistent enough to deliver or spool.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn discovery(&self) -> MutexGuard<'_, Option<homeassistant::Discovery>> {
        self.discovery.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.work.notify_one();
        self.progress.notify_waiters();
    }
}

/// The publish stage.
pub struct Publisher {
    pub mqtt: MqttConfig,
    /// Password read from `mqtt.password_file` at start-up.
    pub password: Option<String>,
    /// TLS certificates read at start-up.
    pub tls: Option<client::TlsMaterial>,
    /// How long shutdown may wait for the broker.
    pub grace: Duration,
    pub cancel: Arc<AtomicBool>,
    pub status: Arc<StatusBoard>,
    /// What the spool held at start (empty without a spool).
    pub restored: Restored,
    pub metrics: Arc<Metrics>,
    pub beat: Beat,
    /// Home Assistant discovery, when configured (its camera list is kept in step with
    /// the status board's active cameras).
    pub discovery: Option<homeassistant::Discovery>,
    /// Top-k lists go back to the inference thread once encoded.
    pub tops: Pool<Vec<crate::messages::Scored>>,
}

/// What the publisher keeps per camera index (see [`StatusBoard`]): kept when a camera is
/// removed, so one added again continues its `seq`.
struct Cam {
    id: Arc<str>,
    labels_topic: String,
    seq: u64,
    published: u64,
    debouncer: Option<debounce::Debouncer>,
    /// Status version last published (`u64::MAX`: publish again).
    status_seen: u64,
    /// Active as of the last roster check.
    active: bool,
    /// `classified` at the last rate measurement.
    classified_then: u64,
    /// Classifying well below its demand (the pipeline is at capacity).
    degraded: bool,
}

impl Publisher {
    pub fn status_topic(&self) -> String {
        format!("{}/status", self.mqtt.topic_prefix)
    }

    /// The publisher thread: runs until the classification channel disconnects.
    pub fn run(mut self, rx: Receiver<Classification>) -> std::io::Result<PublishReport> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mqtt-io")
            .enable_all()
            .build()?;
        let mut outbox = Outbox::new(self.mqtt.outbox_max, self.status.cameras());
        let restored = std::mem::take(&mut self.restored);
        if !restored.messages.is_empty() {
            tracing::info!(
                messages = restored.messages.len(),
                "delivering messages spooled by the previous run"
            );
        }
        outbox.restore(restored.messages);
        let shared = Arc::new(Shared {
            outbox: Mutex::new(outbox),
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            work: Notify::new(),
            progress: Notify::new(),
            discovery: Mutex::new(self.discovery.take()),
        });
        let (client, eventloop) = Client::new(Connect {
            mqtt: &self.mqtt,
            password: self.password.as_deref(),
            tls: self.tls.as_ref(),
            will_topic: self.status_topic(),
            capacity: WINDOW,
        });
        let client = Arc::new(client);
        let expiry = self.mqtt.message_expiry;
        let (stop_tx, stop_rx) = watch::channel(false);
        let driver = rt.spawn(drive(
            Driver {
                connection: eventloop,
                client: client.clone(),
                shared: shared.clone(),
                metrics: self.metrics.clone(),
                status_topic: self.status_topic(),
                broker: format!("{}:{}", self.mqtt.host, self.mqtt.port),
            },
            stop_rx.clone(),
        ));
        let feeder = rt.spawn(feed(client.clone(), shared.clone(), expiry, stop_rx));

        let level = self.mqtt.qos;
        let mut cams: Vec<Cam> = Vec::new();
        let mut roster = u64::MAX;
        let mut last_refresh = Instant::now();
        let started = Instant::now();
        let mut last_stats = Instant::now();
        self.sync_roster(&shared, &mut cams, &mut roster, &restored.seq);
        self.publish_statuses(&shared, &mut cams);
        let mut report = PublishReport::default();
        let mut model_name = shared
            .discovery()
            .as_ref()
            .map(|d| d.model.clone())
            .unwrap_or_default();

        loop {
            self.beat.idle();
            select! {
                recv(rx) -> msg => {
                    self.beat.busy();
                    let Ok(c) = msg else { break };
                    let received = Instant::now();
                    let cam = c.meta.camera;
                    if cam >= cams.len() {
                        self.sync_roster(&shared, &mut cams, &mut roster, &restored.seq);
                    }
                    let Some(state) = cams.get_mut(cam) else {
                        tracing::error!(camera = cam, "classification for an unknown camera");
                        continue;
                    };
                    let id = &state.id;
                    // Encoded straight into the message's own buffer: no copy per message.
                    let mut buf = Vec::with_capacity(512);
                    if let Err(e) = payload::encode(&c, id, state.seq, &c.model.name, &c.model.labels, &mut buf) {
                        tracing::error!(camera = %id, error = %e, "cannot encode payload");
                        continue;
                    }
                    state.seq += 1;
                    state.published += 1;
                    if let (Some(d), Some(top1)) = (state.debouncer.as_mut(), c.top.first()) {
                        if let Some(index) = d.push(top1.index) {
                            // An event in order with the labels (not coalesced like state).
                            let _ = shared.outbox().push(OutMsg {
                                topic: format!("{}/{id}/label", self.mqtt.topic_prefix),
                                payload: payload::encode_label(&c, id, index, &c.model.labels),
                                qos: Qos::AtLeastOnce,
                                retain: true,
                                camera: Some(cam),
                            });
                        }
                    }
                    self.metrics.latency_seconds.observe(c.latency.total / 1e3);
                    let msg = OutMsg {
                        topic: state.labels_topic.clone(),
                        payload: buf,
                        qos: level,
                        retain: false,
                        camera: Some(cam),
                    };
                    let lost = shared.outbox().push(msg);
                    if let Some(lost) = lost {
                        if let Some(cam) = lost.camera {
                            let mut dropped = 0;
                            self.status.count(cam, |s| {
                                s.outbox_dropped += 1;
                                dropped = s.outbox_dropped;
                            });
                            if dropped.is_power_of_two() {
                                let id = cams.get(cam).map(|c| c.id.clone()).unwrap_or_default();
                                tracing::warn!(camera = %id, dropped,
                                    "outbox full: oldest label messages dropped");
                            }
                        }
                    }
                    shared.changed();
                    self.metrics.outbox_depth.set(shared.outbox().pending() as i64);
                    let Classification { top, latency, batch, .. } = c;
                    self.tops.give(top);
                    let us = |ms: f64| (ms * 1e3) as u64;
                    let publish_us = received.elapsed().as_micros() as u64;
                    self.status.count(cam, |s| {
                        s.classified += 1;
                        s.stage_us.preprocess += us(latency.preprocess);
                        s.stage_us.inference += us(latency.inference / batch.max(1) as f64);
                        s.stage_us.publish += publish_us;
                    });
                    if c.model.name != model_name {
                        model_name.clone_from(&c.model.name);
                        self.model_changed(&shared, &model_name);
                    }
                },
                recv(self.status.rings()) -> _ => {
                    self.sync_roster(&shared, &mut cams, &mut roster, &restored.seq);
                    self.publish_statuses(&shared, &mut cams);
                },
                default(Duration::from_secs(1)) => {
                    // Outbox drops change the status without a state change.
                    self.sync_roster(&shared, &mut cams, &mut roster, &restored.seq);
                    self.publish_statuses(&shared, &mut cams);
                },
            }
            if let Some(every) = self.mqtt.stats_interval {
                if last_stats.elapsed() >= every {
                    last_stats = Instant::now();
                    self.publish_stats(&shared, started);
                }
            }
            if last_refresh.elapsed() >= STATUS_REFRESH {
                // Counters move without state changes: refresh the retained statuses.
                self.measure_rates(&mut cams, last_refresh.elapsed());
                last_refresh = Instant::now();
                cams.iter_mut().for_each(|c| c.status_seen = u64::MAX);
                self.publish_statuses(&shared, &mut cams);
            }
        }

        // Every stage before us has drained: final camera states and stats, then offline.
        self.sync_roster(&shared, &mut cams, &mut roster, &restored.seq);
        self.publish_statuses(&shared, &mut cams);
        if self.mqtt.stats_interval.is_some() {
            self.publish_stats(&shared, started);
        }
        shared.stopping.store(true, Ordering::SeqCst);
        shared.outbox().push_urgent(OutMsg {
            topic: self.status_topic(),
            payload: b"offline".to_vec(),
            qos: Qos::AtLeastOnce,
            retain: true,
            camera: None,
        });
        shared.changed();
        let deadline = Instant::now() + self.grace;
        let settled = rt.block_on(async {
            loop {
                let progress = shared.progress.notified();
                if shared.outbox().pending() == 0 {
                    return true;
                }
                if tokio::time::timeout_at(deadline.into(), progress)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        });

        let undelivered: Vec<OutMsg> = shared
            .outbox()
            .undelivered()
            .into_iter()
            .filter(|m| m.camera.is_some())
            .collect();
        if !settled {
            tracing::warn!(
                undelivered = undelivered.len(),
                "grace period over before the broker confirmed every message"
            );
        }
        if let Some(dir) = &self.mqtt.spool_dir {
            let mut next: HashMap<String, u64> = restored.seq.clone();
            next.extend(cams.iter().map(|c| (c.id.to_string(), c.seq)));
            let name = |i: usize| cams.get(i).map(|c| c.id.to_string()).unwrap_or_default();
            match Spool::new(dir).save(&undelivered, name, &next) {
                Ok(()) => {
                    report.spooled = undelivered.len();
                    if report.spooled > 0 {
                        tracing::info!(messages = report.spooled, dir = %dir.display(), "undelivered messages spooled for the next start");
                    }
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "cannot write the spool");
                    report.unconfirmed = undelivered.len();
                }
            }
        } else {
            report.unconfirmed = undelivered.len();
        }

        let _ = stop_tx.send(true);
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
            for mut task in [driver, feeder] {
                if tokio::time::timeout(Duration::from_secs(2), &mut task)
                    .await
                    .is_err()
                {
                    task.abort();
                }
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
        report.published = cams.iter().map(|c| c.published).collect();
        Ok(report)
    }

    /// Queues the retained `{prefix}/stats` message.
    fn publish_stats(&self, shared: &Shared, started: Instant) {
        let active = self.status.active();
        let cams: Vec<(&str, crate::status::CameraStatus)> = active
            .iter()
            .filter_map(|(i, id)| self.status.snapshot(*i).map(|(_, s)| (id.as_ref(), s)))
            .collect();
        let depth = shared.outbox().pending();
        shared.outbox().push_urgent(OutMsg {
            topic: format!("{}/stats", self.mqtt.topic_prefix),
            payload: payload::encode_stats(&cams, started.elapsed().as_secs(), depth),
            qos: Qos::AtLeastOnce,
            retain: true,
            camera: None,
        });
        shared.changed();
    }

    /// Follows cameras added and removed (by a reload) on the status board: a new camera
    /// gets its state here (its `seq` continues from the spool, if any) and its discovery
    /// configs; a removed one has its retained topics cleared so nothing stale remains.
    fn sync_roster(
        &self,
        shared: &Shared,
        cams: &mut Vec<Cam>,
        seen: &mut u64,
        restored_seq: &HashMap<String, u64>,
    ) {
        let roster = self.status.roster();
        if roster == *seen {
            return;
        }
        *seen = roster;
        for i in 0..self.status.cameras() {
            if i == cams.len() {
                let Some(id) = self.status.id(i) else { break };
                cams.push(Cam {
                    labels_topic: format!("{}/{id}/labels", self.mqtt.topic_prefix),
                    seq: restored_seq.get(id.as_ref()).copied().unwrap_or(0),
                    published: 0,
                    debouncer: self
                        .mqtt
                        .label_debounce
                        .map(|(hold, window)| debounce::Debouncer::new(hold, window)),
                    status_seen: u64::MAX,
                    active: false,
                    classified_then: 0,
                    degraded: false,
                    id,
                });
            }
            let cam = &mut cams[i];
            let active = self.status.is_active(i);
            if active == cam.active {
                continue;
            }
            cam.active = active;
            cam.status_seen = u64::MAX;
            let mut discovery = shared.discovery();
            let mut outbox = shared.outbox();
            if active {
                if let Some(d) = discovery.as_mut() {
                    if !d.cameras.iter().any(|c| c == cam.id.as_ref()) {
                        d.cameras.push(cam.id.to_string());
                    }
                    // Before the first connection, the announcement on connect has it.
                    if shared.connected.load(Ordering::SeqCst)
                        && !shared.stopping.load(Ordering::SeqCst)
                    {
                        outbox_extend(&mut outbox, d.messages_for(&cam.id));
                    }
                }
            } else {
                tracing::info!(camera = %cam.id, "camera removed: clearing its retained topics");
                let mut topics = vec![format!("{}/{}/status", self.mqtt.topic_prefix, cam.id)];
                if cam.debouncer.is_some() {
                    topics.push(format!("{}/{}/label", self.mqtt.topic_prefix, cam.id));
                }
                if let Some(d) = discovery.as_mut() {
                    d.cameras.retain(|c| c != cam.id.as_ref());
                    topics.extend(d.config_topics(&cam.id));
                }
                for topic in topics {
                    // An empty retained message deletes the retained one.
                    outbox.push_urgent(OutMsg {
                        topic,
                        payload: Vec::new(),
                        qos: Qos::AtLeastOnce,
                        retain: true,
                        camera: None,
                    });
                }
            }
            drop(outbox);
            drop(discovery);
            shared.changed();
        }
    }

    /// Each active camera's classified frames/s over the period just ended, against what
    /// it asks for: a camera held well below its demand (the pipeline is at capacity and
    /// shares it out) is reported once, and again when it recovers.
    fn measure_rates(&self, cams: &mut [Cam], period: Duration) {
        for (i, cam) in cams.iter_mut().enumerate() {
            if !cam.active {
                continue;
            }
            let Some((_, s)) = self.status.snapshot(i) else {
                continue;
            };
            let rate = (s.classified - cam.classified_then.min(s.classified)) as f64
                / period.as_secs_f64().max(1e-3);
            cam.classified_then = s.classified;
            self.status
                .count(i, |st| st.classified_fps = (rate * 10.0).round() / 10.0);
            let streaming = s.state == crate::status::CameraState::Streaming;
            let degraded = streaming && s.demand_fps > 0.0 && rate < 0.9 * s.demand_fps;
            if degraded != cam.degraded {
                cam.degraded = degraded;
                if degraded {
                    tracing::warn!(camera = %cam.id, classified_fps = format!("{rate:.1}"),
                        demand_fps = format!("{:.1}", s.demand_fps),
                        "pipeline at capacity: camera classified below its frame rate");
                } else {
                    tracing::info!(camera = %cam.id, classified_fps = format!("{rate:.1}"),
                        "camera classified at its frame rate again");
                }
            }
        }
    }

    /// A reload swapped the model: discovery's device info names it, so announce again.
    fn model_changed(&self, shared: &Shared, name: &str) {
        let mut discovery = shared.discovery();
        if let Some(d) = discovery.as_mut() {
            if d.model != name {
                d.model = name.to_owned();
                if !shared.stopping.load(Ordering::SeqCst) {
                    outbox_extend(&mut shared.outbox(), d.messages());
                }
                drop(discovery);
                shared.changed();
            }
        }
    }

    /// Queues the retained status of every active camera whose state moved since last time.
    fn publish_statuses(&self, shared: &Shared, cams: &mut [Cam]) {
        for (i, cam) in cams.iter_mut().enumerate() {
            if !cam.active {
                continue;
            }
            let Some((version, status)) = self.status.snapshot(i) else {
                continue;
            };
            // Fold the outbox drop count into the version so a new drop republishes.
            let key = version
                .wrapping_mul(1 << 20)
                .wrapping_add(status.outbox_dropped);
            if key == cam.status_seen {
                continue;
            }
            cam.status_seen = key;
            shared.outbox().push_urgent(OutMsg {
                topic: format!("{}/{}/status", self.mqtt.topic_prefix, cam.id),
                payload: payload::encode_status(&status),
                qos: Qos::AtLeastOnce,
                retain: true,
                camera: None,
            });
            shared.changed();
        }
    }
}

fn outbox_extend(outbox: &mut Outbox, msgs: Vec<OutMsg>) {
    for m in msgs {
        outbox.push_urgent(m);
    }
}

/// Hands messages from the outbox to the client while connected.
async fn feed(
    client: Arc<Client>,
    shared: Arc<Shared>,
    expiry: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let work = shared.work.notified();
        let next = if shared.connected.load(Ordering::SeqCst) {
            shared.outbox().next_to_send(WINDOW)
        } else {
            None
        };
        match next {
            Some(m) => {
                // Status messages are state, not events: they never expire.
                let expiry = if m.camera.is_some() { expiry } else { None };
                if client.publish(m, expiry).await.is_err() {
                    return; // the event loop is gone: shutting down
                }
            }
            None => {
                tokio::select! {
                    _ = work => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// Queues the retained discovery configs (unless shutting down); false when discovery
/// is off.
fn announce(shared: &Shared) -> bool {
    let discovery = shared.discovery();
    let Some(d) = discovery.as_ref() else {
        return false;
    };
    if !shared.stopping.load(Ordering::SeqCst) {
        outbox_extend(&mut shared.outbox(), d.messages());
    }
    true
}

/// Home Assistant's availability topic, when discovery is on.
fn birth_topic(shared: &Shared) -> Option<String> {
    shared.discovery().as_ref().map(|d| d.birth_topic())
}

/// Everything the event-loop task needs.
struct Driver {
    connection: Connection,
    client: Arc<Client>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    status_topic: String,
    broker: String,
}

/// Drives the rumqttc event loop until told to stop.
async fn drive(d: Driver, mut stop: watch::Receiver<bool>) {
    let Driver {
        mut connection,
        client,
        shared,
        metrics,
        status_topic,
        broker,
    } = d;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut was_connected = false;
    loop {
        let event = tokio::select! {
            ev = connection.poll() => ev,
            _ = stop.changed() => {
                // Keep polling briefly so the DISCONNECT request goes out.
                let until = tokio::time::Instant::now() + Duration::from_secs(1);
                while let Ok(Ok(ev)) = tokio::time::timeout_at(until, connection.poll()).await {
                    if ev == NetEvent::Disconnected {
                        break;
                    }
                }
                return;
            }
        };
        match event {
            Ok(NetEvent::Connected) => {
                was_connected = true;
                backoff.reset();
                tracing::info!(%broker, "connected to MQTT broker");
                if !shared.stopping.load(Ordering::SeqCst) {
                    shared.outbox().push_urgent(OutMsg {
                        topic: status_topic.clone(),
                        payload: b"online".to_vec(),
                        qos: Qos::AtLeastOnce,
                        retain: true,
                        camera: None,
                    });
                }
                // Connected before announcing: a camera a reload adds meanwhile is then
                // either in this announcement or announced by the publisher itself.
                shared.connected.store(true, Ordering::SeqCst);
                announce(&shared);
                if let Some(topic) = birth_topic(&shared) {
                    let client = client.clone();
                    tokio::spawn(async move {
                        if let Err(e) = client.subscribe(&topic).await {
                            tracing::warn!(%topic, error = %e, "cannot subscribe");
                        }
                    });
                }
                metrics.broker_connected.set(1);
                shared.changed();
            }
            Ok(NetEvent::Message { topic, payload }) => {
                if birth_topic(&shared).is_some_and(|t| t == topic) && payload == b"online" {
                    tracing::info!("Home Assistant is online: announcing discovery");
                    announce(&shared);
                    shared.changed();
                }
            }
            Ok(NetEvent::Confirmed(pkid)) => {
                let depth = {
                    let mut o = shared.outbox();
                    o.on_confirmed(pkid);
                    o.pending()
                };
                metrics.outbox_depth.set(depth as i64);
                shared.changed();
            }
            Ok(NetEvent::Written(pkid)) => {
                shared.outbox().on_written(pkid);
                shared.changed();
            }
            Ok(NetEvent::Disconnected) => return,
            Ok(NetEvent::Other) => {}
            Err(error) => {
                shared.connected.store(false, Ordering::SeqCst);
                metrics.broker_connected.set(0);
                metrics.broker_errors.inc();
                let delay = backoff.next_delay();
                let pending = shared.outbox().pending();
                if was_connected {
                    tracing::warn!(%broker, %error, pending, retry_in_ms = delay.as_millis() as u64, "lost MQTT broker");
                } else {
                    tracing::warn!(%broker, %error, pending, retry_in_ms = delay.as_millis() as u64, "cannot reach MQTT broker");
                }
                was_connected = false;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}
