//! The connection side of the publisher, two tokio tasks: the feeder hands messages from
//! the outbox to the current link's rumqttc client (at most [`WINDOW`] in flight), and the
//! driver makes a fresh client for every connection (a *link*), polls its event loop,
//! reports writes and acknowledgements to the outbox, announces `online` (and Home
//! Assistant discovery) on every connection and, when the link is lost, gives its
//! unconfirmed messages back to the outbox and reconnects with capped, jittered backoff.
//!
//! One client per link because rumqttc forgets what it had in flight when the broker
//! starts a new session (always, with a clean session): resending is the outbox's job, and
//! a client that outlived its connection could still write a message handed to it before.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::client::{Client, Connection, Connector, NetEvent};
use super::shared::Shared;
use super::topics;
use super::WINDOW;
use crate::backoff::Backoff;
use crate::metrics::Metrics;

/// Hands messages from the outbox to the client of the link they were taken for.
pub(super) async fn feed(
    shared: Arc<Shared>,
    expiry: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let work = shared.work.notified();
        let next = shared.outbox().next_to_send(WINDOW);
        match next {
            Some((link, m)) => {
                // A message taken for a link that is already gone was given back to the
                // outbox with the link: it goes out on the next one.
                let Some(client) = shared.client_for(link) else {
                    continue;
                };
                // Status messages are state, not events: they never expire.
                let expiry = if m.camera.is_some() { expiry } else { None };
                // An error means the link's event loop is gone, and the message with it.
                let _ = client.publish(m, expiry).await;
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
    pub(super) connector: Connector,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) status_topic: String,
    pub(super) broker: String,
}

/// How a link ended.
enum End {
    /// Told to stop (or our DISCONNECT went out).
    Stopped,
    /// The connection failed or was lost; `connected`: it had been up.
    Lost { error: String, connected: bool },
}

/// Makes a link per connection until told to stop.
pub(super) async fn drive(d: Driver, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    for link in 1u64.. {
        let (client, connection) = d.connector.open();
        let client = Arc::new(client);
        d.shared.set_client(link, client.clone());
        let end = d
            .serve(link, &client, connection, &mut backoff, &mut stop)
            .await;
        let End::Lost { error, connected } = end else {
            return;
        };
        d.shared.connected.store(false, Ordering::SeqCst);
        let pending = {
            let mut outbox = d.shared.outbox();
            outbox.close_link();
            outbox.pending()
        };
        d.metrics.broker_connected.set(0);
        d.metrics.broker_errors.inc();
        let delay = backoff.next_delay();
        let broker = &d.broker;
        let retry_in_ms = delay.as_millis() as u64;
        if connected {
            tracing::warn!(%broker, %error, pending, retry_in_ms, "lost MQTT broker");
        } else {
            tracing::warn!(%broker, %error, pending, retry_in_ms, "cannot reach MQTT broker");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

impl Driver {
    /// Polls one link's event loop until it fails or the publisher stops.
    async fn serve(
        &self,
        link: u64,
        client: &Arc<Client>,
        mut connection: Connection,
        backoff: &mut Backoff,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        let shared = &self.shared;
        let mut connected = false;
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
                    return End::Stopped;
                }
            };
            match event {
                Ok(NetEvent::Connected) => {
                    connected = true;
                    backoff.reset();
                    self.connected(link, client);
                }
                Ok(NetEvent::Message { topic, payload }) => {
                    if birth_topic(shared).is_some_and(|t| t == topic) && payload == b"online" {
                        tracing::info!("Home Assistant is online: announcing discovery");
                        announce(shared);
                        shared.changed();
                    }
                }
                Ok(NetEvent::Confirmed(pkid)) => {
                    let depth = {
                        let mut o = shared.outbox();
                        o.on_confirmed(pkid);
                        o.pending()
                    };
                    self.metrics.outbox_depth.set(depth as i64);
                    shared.changed();
                }
                Ok(NetEvent::Written(pkid)) => {
                    shared.outbox().on_written(pkid);
                    shared.changed();
                }
                Ok(NetEvent::Disconnected) => return End::Stopped,
                Ok(NetEvent::Other) => {}
                Err(error) => return End::Lost { error, connected },
            }
        }
    }

    /// The broker accepted link `link`: `online`, discovery, and messages may flow.
    fn connected(&self, link: u64, client: &Arc<Client>) {
        let shared = &self.shared;
        tracing::info!(broker = %self.broker, "connected to MQTT broker");
        if !shared.stopping.load(Ordering::SeqCst) {
            shared.outbox().push_urgent(topics::retained(
                self.status_topic.clone(),
                b"online".to_vec(),
            ));
        }
        // Connected before announcing: a camera a reload adds meanwhile is then either in
        // this announcement or announced by the publisher itself.
        shared.connected.store(true, Ordering::SeqCst);
        announce(shared);
        shared.outbox().open_link(link);
        if let Some(topic) = birth_topic(shared) {
            let client = client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.subscribe(&topic).await {
                    tracing::warn!(%topic, error = %e, "cannot subscribe");
                }
            });
        }
        self.metrics.broker_connected.set(1);
        shared.changed();
    }
}
