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

use crate::capture::Backoff;
use crate::config::MqttConfig;
use crate::labels::Labels;
use crate::messages::Classification;
use crate::metrics::Metrics;
use crate::service::Beat;
use crate::status::StatusBoard;
use client::{Client, Connect, Connection, NetEvent};
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
}

impl Shared {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // Nothing panics while holding this lock; if something did, the queues are
        // still consistent enough to deliver or spool.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
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
    pub cameras: Vec<Arc<str>>,
    pub model: String,
    pub labels: Labels,
    /// How long shutdown may wait for the broker.
    pub grace: Duration,
    pub cancel: Arc<AtomicBool>,
    pub status: Arc<StatusBoard>,
    /// What the spool held at start (empty without a spool).
    pub restored: Restored,
    pub metrics: Arc<Metrics>,
    pub beat: Beat,
    /// Home Assistant discovery, when configured.
    pub discovery: Option<homeassistant::Discovery>,
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
        let n = self.cameras.len();
        let mut outbox = Outbox::new(self.mqtt.outbox_max, n);
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
                discovery: self.discovery.clone(),
                shared: shared.clone(),
                metrics: self.metrics.clone(),
                status_topic: self.status_topic(),
                broker: format!("{}:{}", self.mqtt.host, self.mqtt.port),
            },
            stop_rx.clone(),
        ));
        let feeder = rt.spawn(feed(client.clone(), shared.clone(), expiry, stop_rx));

        let level = self.mqtt.qos;
        let topics: Vec<String> = self
            .cameras
            .iter()
            .map(|id| format!("{}/{id}/labels", self.mqtt.topic_prefix))
            .collect();
        let mut seq: Vec<u64> = self
            .cameras
            .iter()
            .map(|id| restored.seq.get(id.as_ref()).copied().unwrap_or(0))
            .collect();
        let mut report = PublishReport {
            published: vec![0; n],
            ..PublishReport::default()
        };
        let mut status_seen = vec![u64::MAX; n];
        let mut last_refresh = Instant::now();
        let started = Instant::now();
        let mut last_stats = Instant::now();
        let mut debouncers: Vec<Option<debounce::Debouncer>> = (0..n)
            .map(|_| {
                self.mqtt
                    .label_debounce
                    .map(|(hold, window)| debounce::Debouncer::new(hold, window))
            })
            .collect();
        self.publish_statuses(&shared, &mut status_seen);

        loop {
            self.beat.idle();
            select! {
                recv(rx) -> msg => {
                    self.beat.busy();
                    let Ok(c) = msg else { break };
                    let cam = c.meta.camera;
                    let id = &self.cameras[cam];
                    // Encoded straight into the message's own buffer: no copy per message.
                    let mut buf = Vec::with_capacity(512);
                    if let Err(e) = payload::encode(&c, id, seq[cam], &self.model, &self.labels, &mut buf) {
                        tracing::error!(camera = %id, error = %e, "cannot encode payload");
                        continue;
                    }
                    seq[cam] += 1;
                    report.published[cam] += 1;
                    if let (Some(d), Some(top1)) = (debouncers[cam].as_mut(), c.top.first()) {
                        if let Some(index) = d.push(top1.index) {
                            // An event in order with the labels (not coalesced like state).
                            let _ = shared.outbox().push(OutMsg {
                                topic: format!("{}/{id}/label", self.mqtt.topic_prefix),
                                payload: payload::encode_label(&c, id, index, &self.labels),
                                qos: 1,
                                retain: true,
                                camera: Some(cam),
                            });
                        }
                    }
                    self.status.count(cam, |s| s.classified += 1);
                    self.metrics.latency_seconds.observe(c.latency.total / 1e3);
                    let msg = OutMsg {
                        topic: topics[cam].clone(),
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
                                tracing::warn!(camera = %self.cameras[cam], dropped,
                                    "outbox full: oldest label messages dropped");
                            }
                        }
                    }
                    shared.changed();
                    self.metrics.outbox_depth.set(shared.outbox().pending() as i64);
                },
                recv(self.status.rings()) -> _ => {
                    self.publish_statuses(&shared, &mut status_seen);
                },
                default(Duration::from_secs(1)) => {
                    // Outbox drops change the status without a state change.
                    self.publish_statuses(&shared, &mut status_seen);
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
                last_refresh = Instant::now();
                status_seen.iter_mut().for_each(|v| *v = u64::MAX);
                self.publish_statuses(&shared, &mut status_seen);
            }
        }

        // Every stage before us has drained: final camera states and stats, then offline.
        self.publish_statuses(&shared, &mut status_seen);
        if self.mqtt.stats_interval.is_some() {
            self.publish_stats(&shared, started);
        }
        shared.stopping.store(true, Ordering::SeqCst);
        shared.outbox().push_urgent(OutMsg {
            topic: self.status_topic(),
            payload: b"offline".to_vec(),
            qos: 1,
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
            let next: HashMap<String, u64> = self
                .cameras
                .iter()
                .zip(&seq)
                .map(|(id, s)| (id.to_string(), *s))
                .collect();
            match Spool::new(dir).save(&undelivered, |i| self.cameras[i].to_string(), &next) {
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
        Ok(report)
    }

    /// Queues the retained `{prefix}/stats` message.
    fn publish_stats(&self, shared: &Shared, started: Instant) {
        let cams: Vec<(&str, crate::status::CameraStatus)> = self
            .cameras
            .iter()
            .enumerate()
            .filter_map(|(i, id)| self.status.snapshot(i).map(|(_, s)| (id.as_ref(), s)))
            .collect();
        let depth = shared.outbox().pending();
        shared.outbox().push_urgent(OutMsg {
            topic: format!("{}/stats", self.mqtt.topic_prefix),
            payload: payload::encode_stats(&cams, started.elapsed().as_secs(), depth),
            qos: 1,
            retain: true,
            camera: None,
        });
        shared.changed();
    }

    /// Queues the retained status of every camera whose state moved since last time.
    fn publish_statuses(&self, shared: &Shared, seen: &mut [u64]) {
        for (cam, last) in seen.iter_mut().enumerate() {
            let Some((version, status)) = self.status.snapshot(cam) else {
                continue;
            };
            // Fold the outbox drop count into the version so a new drop republishes.
            let key = version
                .wrapping_mul(1 << 20)
                .wrapping_add(status.outbox_dropped);
            if key == *last {
                continue;
            }
            *last = key;
            shared.outbox().push_urgent(OutMsg {
                topic: format!("{}/{}/status", self.mqtt.topic_prefix, self.cameras[cam]),
                payload: payload::encode_status(&status),
                qos: 1,
                retain: true,
                camera: None,
            });
            shared.changed();
        }
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

/// Queues the retained discovery configs (unless shutting down).
fn announce(shared: &Shared, d: &homeassistant::Discovery) {
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let mut outbox = shared.outbox();
    for m in d.messages() {
        outbox.push_urgent(m);
    }
}

/// Everything the event-loop task needs.
struct Driver {
    connection: Connection,
    client: Arc<Client>,
    discovery: Option<homeassistant::Discovery>,
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
        discovery,
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
                        qos: 1,
                        retain: true,
                        camera: None,
                    });
                }
                if let Some(d) = &discovery {
                    announce(&shared, d);
                    let client = client.clone();
                    let topic = d.birth_topic();
                    tokio::spawn(async move {
                        if let Err(e) = client.subscribe(&topic).await {
                            tracing::warn!(%topic, error = %e, "cannot subscribe");
                        }
                    });
                }
                shared.connected.store(true, Ordering::SeqCst);
                metrics.broker_connected.set(1);
                shared.changed();
            }
            Ok(NetEvent::Message { topic, payload }) => {
                if let Some(d) = &discovery {
                    if topic == d.birth_topic() && payload == b"online" {
                        tracing::info!("Home Assistant is online: announcing discovery");
                        announce(&shared, d);
                        shared.changed();
                    }
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
