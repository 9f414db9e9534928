//! Stage 4: publish each classification to MQTT with rumqttc on a small tokio runtime.
//!
//! The publisher thread takes classifications off its channel, numbers them per camera
//! (`seq`, contiguous from 0), encodes them and hands them to the rumqttc client. One tokio
//! task drives the event loop: it counts acknowledgements, announces `online` (retained) on
//! every connection, and reconnects with capped, jittered backoff (rumqttc itself would
//! retry at once). The Last Will publishes `offline` if the daemon dies.
//!
//! At shutdown the channel disconnects once every earlier stage has drained; then
//! `offline` is published and the thread waits, within the grace period, until the broker
//! has acknowledged everything (QoS ≥ 1) or it has been written (QoS 0), and disconnects.

pub mod payload;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rumqttc::{
    AsyncClient, ClientError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
};
use tokio::sync::{watch, Notify};

use crate::capture::Backoff;
use crate::config::MqttConfig;
use crate::labels::Labels;
use crate::messages::Classification;

/// Requests the rumqttc client buffers before `publish` waits.
const REQUEST_CAPACITY: usize = 4096;

/// What the publisher did, for the exit summary.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Label messages handed to the client, per camera.
    pub published: Vec<u64>,
    /// Messages given up on because the grace period ran out at shutdown.
    pub abandoned: u64,
    /// Messages not confirmed by the broker when the publisher stopped.
    pub unconfirmed: u64,
}

/// Counts of what was queued and what the broker confirmed.
#[derive(Default)]
struct Delivery {
    queued_qos0: AtomicU64,
    queued_acked: AtomicU64,
    written_qos0: AtomicU64,
    acked: AtomicU64,
    changed: Notify,
}

impl Delivery {
    /// Counts a message about to be handed to the client (before, so that its
    /// confirmation can never be seen first).
    fn queued(&self, qos: QoS) {
        self.counter(qos).fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back a [`Delivery::queued`] whose publish did not happen.
    fn unqueued(&self, qos: QoS) {
        self.counter(qos).fetch_sub(1, Ordering::Relaxed);
    }

    fn counter(&self, qos: QoS) -> &AtomicU64 {
        match qos {
            QoS::AtMostOnce => &self.queued_qos0,
            _ => &self.queued_acked,
        }
    }

    fn outstanding(&self) -> u64 {
        let q0 = self.queued_qos0.load(Ordering::Relaxed);
        let w0 = self.written_qos0.load(Ordering::Relaxed);
        let qa = self.queued_acked.load(Ordering::Relaxed);
        let a = self.acked.load(Ordering::Relaxed);
        q0.saturating_sub(w0) + qa.saturating_sub(a)
    }

    async fn settled(&self) {
        loop {
            let changed = self.changed.notified();
            if self.outstanding() == 0 {
                return;
            }
            changed.await;
        }
    }
}

pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The publish stage.
pub struct Publisher {
    pub mqtt: MqttConfig,
    pub cameras: Vec<Arc<str>>,
    pub model: String,
    pub labels: Labels,
    /// How long shutdown may wait for the broker.
    pub grace: Duration,
    pub cancel: Arc<AtomicBool>,
}

impl Publisher {
    pub fn status_topic(&self) -> String {
        format!("{}/status", self.mqtt.topic_prefix)
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(
            self.mqtt.client_id.clone(),
            self.mqtt.host.clone(),
            self.mqtt.port,
        );
        o.set_keep_alive(Duration::from_secs(self.mqtt.keep_alive_s.into()));
        o.set_last_will(LastWill::new(
            self.status_topic(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o
    }

    /// The publisher thread: runs until the classification channel disconnects.
    pub fn run(self, rx: Receiver<Classification>) -> std::io::Result<PublishReport> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mqtt-io")
            .enable_all()
            .build()?;
        let (client, eventloop) = AsyncClient::new(self.options(), REQUEST_CAPACITY);
        let delivery = Arc::new(Delivery::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let driver = rt.spawn(drive(
            eventloop,
            client.clone(),
            delivery.clone(),
            self.status_topic(),
            format!("{}:{}", self.mqtt.host, self.mqtt.port),
            stop_rx,
        ));

        let level = qos(self.mqtt.qos);
        let topics: Vec<String> = self
            .cameras
            .iter()
            .map(|id| format!("{}/{id}/labels", self.mqtt.topic_prefix))
            .collect();
        let mut report = PublishReport {
            published: vec![0; self.cameras.len()],
            ..PublishReport::default()
        };
        let mut deadline: Option<Instant> = None;
        let mut buf = Vec::with_capacity(1024);

        for c in rx.iter() {
            let cam = c.meta.camera;
            let seq = report.published[cam];
            if let Err(e) = payload::encode(
                &c,
                &self.cameras[cam],
                seq,
                &self.model,
                &self.labels,
                &mut buf,
            ) {
                tracing::error!(camera = %self.cameras[cam], error = %e, "cannot encode payload");
                continue;
            }
            delivery.queued(level);
            let message = (topics[cam].as_str(), level, false, buf.clone());
            match rt.block_on(self.send(&client, message, &mut deadline)) {
                Ok(()) => report.published[cam] += 1,
                Err(()) => {
                    delivery.unqueued(level);
                    report.abandoned += 1;
                }
            }
        }

        // Every stage before us has drained: announce offline and wait for the broker.
        let status = self.status_topic();
        delivery.queued(QoS::AtLeastOnce);
        let offline = (status.as_str(), QoS::AtLeastOnce, true, b"offline".to_vec());
        if rt
            .block_on(self.send(&client, offline, &mut deadline))
            .is_err()
        {
            delivery.unqueued(QoS::AtLeastOnce);
        }
        let wait = deadline.map_or(self.grace, |d| d.saturating_duration_since(Instant::now()));
        let settled = rt.block_on(async { tokio::time::timeout(wait, delivery.settled()).await });
        if settled.is_err() {
            report.unconfirmed = delivery.outstanding();
            tracing::warn!(
                unconfirmed = report.unconfirmed,
                "grace period over: messages not confirmed by the broker"
            );
        }
        let _ = stop_tx.send(true);
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
            let mut driver = driver;
            if tokio::time::timeout(Duration::from_secs(2), &mut driver)
                .await
                .is_err()
            {
                driver.abort();
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
        Ok(report)
    }

    /// Hands one message to the client. Waits while the client's buffer is full, except
    /// that once shutdown has begun it gives up when the grace period is over.
    async fn send(
        &self,
        client: &AsyncClient,
        (topic, qos, retain, payload): (&str, QoS, bool, Vec<u8>),
        deadline: &mut Option<Instant>,
    ) -> Result<(), ()> {
        let publish = client.publish(topic, qos, retain, payload);
        tokio::pin!(publish);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = &mut publish => {
                    return r.map_err(|e: ClientError| {
                        tracing::error!(error = %e, "MQTT client closed");
                    });
                }
                _ = tick.tick() => {
                    if self.cancel.load(Ordering::Relaxed) {
                        let d = *deadline.get_or_insert_with(|| Instant::now() + self.grace);
                        if Instant::now() >= d {
                            return Err(());
                        }
                    }
                }
            }
        }
    }
}

/// Drives the rumqttc event loop until told to stop: counts confirmations, publishes
/// `online` on each connection, and backs off between reconnection attempts.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    delivery: Arc<Delivery>,
    status_topic: String,
    broker: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut connected = false;
    loop {
        let event = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = stop.changed() => {
                // Keep polling briefly so the DISCONNECT request goes out.
                match tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await {
                    Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(_)) => continue,
                }
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff.reset();
                tracing::info!(%broker, "connected to MQTT broker");
                let client = client.clone();
                let topic = status_topic.clone();
                let delivery = delivery.clone();
                delivery.queued(QoS::AtLeastOnce);
                tokio::spawn(async move {
                    if client
                        .publish(topic, QoS::AtLeastOnce, true, "online")
                        .await
                        .is_err()
                    {
                        delivery.unqueued(QoS::AtLeastOnce);
                    }
                });
            }
            Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                delivery.acked.fetch_add(1, Ordering::Relaxed);
                delivery.changed.notify_waiters();
            }
            Ok(Event::Outgoing(Outgoing::Publish(0))) => {
                delivery.written_qos0.fetch_add(1, Ordering::Relaxed);
                delivery.changed.notify_waiters();
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                let delay = backoff.next_delay();
                if connected {
                    tracing::warn!(%broker, error = %e, retry_in_ms = delay.as_millis() as u64, "lost MQTT broker");
                } else {
                    tracing::warn!(%broker, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot reach MQTT broker");
                }
                connected = false;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}
