//! The connection side of the publisher, two tokio tasks: the feeder hands messages from
//! the outbox to the rumqttc client while connected (at most [`WINDOW`] in flight), and the
//! driver polls the event loop, reports writes and acknowledgements to the outbox,
//! announces `online` (and Home Assistant discovery) on every connection and reconnects
//! with capped, jittered backoff (rumqttc itself would retry at once).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::client::{Client, Connection, NetEvent};
use super::shared::Shared;
use super::topics;
use super::WINDOW;
use crate::backoff::Backoff;
use crate::metrics::Metrics;

/// Hands messages from the outbox to the client while connected.
pub(super) async fn feed(
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
        shared.extend_urgent(d.messages());
    }
    true
}

/// Home Assistant's availability topic, when discovery is on.
fn birth_topic(shared: &Shared) -> Option<String> {
    shared.discovery().as_ref().map(|d| d.birth_topic())
}

/// Everything the event-loop task needs.
pub(super) struct Driver {
    pub(super) connection: Connection,
    pub(super) client: Arc<Client>,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) status_topic: String,
    pub(super) broker: String,
}

/// Drives the rumqttc event loop until told to stop.
pub(super) async fn drive(d: Driver, mut stop: watch::Receiver<bool>) {
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
                    shared
                        .outbox()
                        .push_urgent(topics::retained(status_topic.clone(), b"online".to_vec()));
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
