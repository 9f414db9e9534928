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

use super::client::{Client, Connection, Connector, NetError, NetEvent};
use super::config::{MqttProtocol, Qos};
use super::servers::{Rotation, Server};
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
    /// The servers, in the order they are tried.
    pub(super) servers: Rotation,
}

/// How a link ended.
enum End {
    /// Told to stop (or our DISCONNECT went out).
    Stopped,
    /// The connection failed or was lost; `connected`: it had been up; `proven`: it
    /// confirmed a message or lasted [`PROVEN_AFTER`] (only then is the backoff reset, so
    /// a server that accepts and then drops every connection is not hammered); `refused`:
    /// the server refused one of our settings.
    Lost {
        error: String,
        connected: bool,
        proven: bool,
        refused: bool,
    },
}

/// A connection up this long counts as working even if nothing was confirmed on it.
const PROVEN_AFTER: Duration = Duration::from_secs(10);

/// What one link saw of QoS 2, to tell a server that does not support it.
#[derive(Default)]
struct Qos2 {
    /// The last PUBLISH written was QoS 2.
    last_written: bool,
    /// A QoS 2 exchange completed (PUBCOMP).
    completed: bool,
}

/// Makes a link per connection, to one server after the other, until told to stop.
pub(super) async fn drive(mut d: Driver, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    for link in 1u64.. {
        let server = d.servers.current().clone();
        let (client, connection) = d.connector.open(&server);
        let client = Arc::new(client);
        d.shared.set_client(link, client.clone());
        let end = d.serve(link, &server, &client, connection, &mut stop).await;
        let End::Lost {
            error,
            connected,
            proven,
            refused,
        } = end
        else {
            return;
        };
        if proven {
            backoff.reset();
        }
        d.shared.connected.store(false, Ordering::SeqCst);
        let (pending, resent) = {
            let mut outbox = d.shared.outbox();
            let resent = outbox.close_link();
            (outbox.pending(), resent)
        };
        d.metrics.mqtt_resent.inc_by(resent as u64);
        d.metrics.broker_connected.set(0);
        d.metrics.broker_server(&server.to_string()).set(0);
        d.metrics.broker_errors.inc();
        let delay = backoff.next_delay();
        let retry_in_ms = delay.as_millis() as u64;
        d.servers.advance();
        let next = d.servers.current();
        if refused {
            tracing::error!(%server, %error, pending, %next, retry_in_ms, "MQTT broker refused a setting");
        } else if connected {
            tracing::warn!(%server, %error, pending, resent, %next, retry_in_ms, "lost MQTT broker");
        } else {
            tracing::warn!(%server, %error, pending, %next, retry_in_ms, "cannot reach MQTT broker");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What a lost connection says, and whether it was the server refusing a setting: a
/// connection that the server closed without a reason right after a QoS 2 PUBLISH, with
/// no QoS 2 exchange completed, is how some brokers (NATS) refuse QoS 2; one closed in
/// reply to an MQTT 5 CONNECT is how they refuse MQTT 5.
fn explain(
    server: &Server,
    protocol: MqttProtocol,
    qos2: &Qos2,
    connected: bool,
    e: NetError,
) -> (String, bool) {
    let text = e.text;
    if !e.closed {
        (text, false)
    } else if !connected && protocol == MqttProtocol::V5 {
        let error = format!(
            "{server} refused MQTT 5 (mqtt.protocol = \"5\"): it closed the connection in \
             reply to an MQTT 5 CONNECT; a broker without MQTT 5 (NATS 2.9, for one) needs \
             protocol = \"3.1.1\" ({text})"
        );
        (error, true)
    } else if connected && qos2.last_written && !qos2.completed {
        let error = format!(
            "QoS 2 not supported by this server: {server} closed the connection after a \
             QoS 2 publish (set mqtt.qos = 1; {text})"
        );
        (error, true)
    } else {
        (text, false)
    }
}

impl Driver {
    /// Polls one link's event loop until it fails or the publisher stops.
    async fn serve(
        &self,
        link: u64,
        server: &Server,
        client: &Arc<Client>,
        mut connection: Connection,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        let shared = &self.shared;
        let mut connected = false;
        let mut qos2 = Qos2::default();
        let mut up_since = None;
        let mut confirmed = false;
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
                    up_since = Some(tokio::time::Instant::now());
                    self.connected(link, server, client);
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
                        let qos = o.on_confirmed(pkid);
                        confirmed |= qos.is_some();
                        qos2.completed |= qos == Some(Qos::ExactlyOnce);
                        o.pending()
                    };
                    self.metrics.outbox_depth.set(depth as i64);
                    shared.changed();
                }
                Ok(NetEvent::Written(pkid)) => {
                    let qos = shared.outbox().on_written(pkid);
                    qos2.last_written = qos == Some(Qos::ExactlyOnce);
                    shared.changed();
                }
                Ok(NetEvent::Disconnected) => return End::Stopped,
                Ok(NetEvent::Other) => {}
                Err(e) => {
                    let protocol = self.connector.mqtt.protocol;
                    let (error, refused) = explain(server, protocol, &qos2, connected, e);
                    let lasted = up_since.is_some_and(|t| t.elapsed() >= PROVEN_AFTER);
                    return End::Lost {
                        error,
                        connected,
                        proven: confirmed || lasted,
                        refused,
                    };
                }
            }
        }
    }

    /// `server` accepted link `link`: `online` (the Last Will is set on every connection;
    /// a cluster does not publish it when the node holding our session dies, so `online`
    /// is said again on the new node), discovery, and messages may flow.
    fn connected(&self, link: u64, server: &Server, client: &Arc<Client>) {
        let shared = &self.shared;
        let name = server.to_string();
        let (failovers, moved) = shared.connected_to(&name);
        if moved {
            self.metrics.broker_failovers.inc();
        }
        self.metrics.broker_server(&name).set(1);
        tracing::info!(server = %name, failovers, "connected to MQTT broker");
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
