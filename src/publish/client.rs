//! One face for rumqttc's MQTT 3.1.1 and MQTT 5 clients.
//!
//! The publisher needs the same few things from either protocol: publish (with an
//! optional MQTT 5 message expiry), disconnect, and from the event loop the events that
//! move the outbox (connected, written with packet id, confirmed). This module maps both
//! clients onto that, so the rest of the publisher is protocol-free.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{ConnectReturnCode, Outgoing, Packet, QoS};

use super::config::{MqttConfig, MqttProtocol, Qos};
use super::outbox::OutMsg;
use super::servers::Server;

/// Seconds a connection may take, TCP and TLS handshake and CONNACK together; a cluster
/// node that holds back CONNACK (while it takes over a session) is left for the next.
pub const CONNECT_TIMEOUT_S: u64 = 5;

/// What the event loop reported, reduced to what the publisher acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    Connected,
    /// A PUBLISH was written; `0` for QoS 0.
    Written(u16),
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) for this packet id.
    Confirmed(u16),
    /// Our DISCONNECT went out.
    Disconnected,
    /// A message on a topic we subscribed to.
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    Other,
}

/// A lost or refused connection: in words, and whether the peer just closed it (no
/// reason given: reset, end of stream), which is how some brokers refuse what they do
/// not support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    pub text: String,
    pub closed: bool,
}

impl NetError {
    fn of(e: &(dyn std::error::Error + 'static)) -> NetError {
        let text = e.to_string();
        let mut closed = ["closed by peer", "reset by peer", "Broken pipe"]
            .iter()
            .any(|t| text.contains(t));
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                closed |= matches!(
                    io.kind(),
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
                );
            }
            cur = err.source();
        }
        NetError { text, closed }
    }

    fn refused(text: String) -> NetError {
        NetError {
            text,
            closed: false,
        }
    }
}

pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

pub enum Connection {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// TLS material read at start-up.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// PEM CA certificates; the system's roots when absent.
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate and key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsMaterial {
    fn transport(&self) -> rumqttc::Transport {
        match &self.ca {
            Some(ca) => rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca: ca.clone(),
                alpn: None,
                client_auth: self.client.clone(),
            }),
            None => rumqttc::Transport::Tls(rumqttc::TlsConfiguration::default()),
        }
    }
}

/// How to reach the broker: everything a fresh client for one connection is made from.
pub struct Connector {
    pub mqtt: MqttConfig,
    pub password: Option<String>,
    pub tls: Option<TlsMaterial>,
    pub will_topic: String,
    /// Requests the client buffers.
    pub capacity: usize,
}

fn qos(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
        Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos5(q: Qos) -> QoS5 {
    match q {
        Qos::AtMostOnce => QoS5::AtMostOnce,
        Qos::AtLeastOnce => QoS5::AtLeastOnce,
        Qos::ExactlyOnce => QoS5::ExactlyOnce,
    }
}

impl Connector {
    /// A new client for `server` and its event loop, not yet connected (its first poll
    /// connects, within [`CONNECT_TIMEOUT_S`]). The publisher makes one per connection,
    /// so nothing from a lost connection lingers.
    pub fn open(&self, server: &Server) -> (Client, Connection) {
        let c = self;
        let m = &c.mqtt;
        let (host, port) = (server.host.clone(), server.port);
        let keep_alive = Duration::from_secs(m.keep_alive_s.into());
        match m.protocol {
            MqttProtocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(m.client_id.clone(), host, port);
                o.set_keep_alive(keep_alive);
                o.set_last_will(rumqttc::LastWill::new(
                    c.will_topic.clone(),
                    "offline",
                    QoS::AtLeastOnce,
                    true,
                ));
                o.set_max_packet_size(1 << 20, 1 << 20);
                if let Some(user) = &m.username {
                    o.set_credentials(user.clone(), c.password.clone().unwrap_or_default());
                }
                if let Some(tls) = &c.tls {
                    o.set_transport(tls.transport());
                }
                let (client, mut el) = rumqttc::AsyncClient::new(o, c.capacity);
                el.network_options.set_connection_timeout(CONNECT_TIMEOUT_S);
                (Client::V4(client), Connection::V4(Box::new(el)))
            }
            MqttProtocol::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(m.client_id.clone(), host, port);
                o.set_connection_timeout(CONNECT_TIMEOUT_S);
                o.set_keep_alive(keep_alive);
                o.set_last_will(m5::LastWill::new(
                    c.will_topic.clone(),
                    "offline",
                    QoS5::AtLeastOnce,
                    true,
                    None,
                ));
                o.set_max_packet_size(Some(1 << 20));
                if let Some(user) = &m.username {
                    o.set_credentials(user.clone(), c.password.clone().unwrap_or_default());
                }
                if let Some(tls) = &c.tls {
                    o.set_transport(tls.transport());
                }
                let (client, el) = rumqttc::v5::AsyncClient::new(o, c.capacity);
                (Client::V5(client), Connection::V5(Box::new(el)))
            }
        }
    }
}

impl Client {
    /// Hands a message to the client; `expiry` (MQTT 5 only) bounds how long the broker
    /// may keep it for subscribers.
    pub async fn publish(&self, msg: OutMsg, expiry: Option<Duration>) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .publish(msg.topic, qos(msg.qos), msg.retain, msg.payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => {
                let props = m5::PublishProperties {
                    message_expiry_interval: expiry
                        .map(|d| d.as_secs().clamp(1, u64::from(u32::MAX)) as u32),
                    ..Default::default()
                };
                c.publish_with_properties(msg.topic, qos5(msg.qos), msg.retain, msg.payload, props)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Subscribes at QoS 1.
    pub async fn subscribe(&self, topic: &str) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .subscribe(topic, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .subscribe(topic, QoS5::AtLeastOnce)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}

impl Connection {
    /// Next event; an error is described in words (a refusal names its reason).
    pub async fn poll(&mut self) -> Result<NetEvent, NetError> {
        match self {
            Connection::V4(el) => match el.poll().await {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => Ok(NetEvent::Connected),
                Ok(rumqttc::Event::Incoming(Packet::PubAck(a))) => Ok(NetEvent::Confirmed(a.pkid)),
                Ok(rumqttc::Event::Incoming(Packet::PubComp(c))) => Ok(NetEvent::Confirmed(c.pkid)),
                Ok(rumqttc::Event::Outgoing(Outgoing::Publish(p))) => Ok(NetEvent::Written(p)),
                Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => Ok(NetEvent::Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                }),
                Ok(rumqttc::Event::Outgoing(Outgoing::Disconnect)) => Ok(NetEvent::Disconnected),
                Ok(_) => Ok(NetEvent::Other),
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    Err(NetError::refused(format!(
                        "broker refused the connection: {}",
                        match code {
                            ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                            ConnectReturnCode::NotAuthorized => {
                                "not authorized (check username and password)"
                            }
                            ConnectReturnCode::BadClientId => "client id rejected",
                            ConnectReturnCode::ServiceUnavailable => "service unavailable",
                            ConnectReturnCode::RefusedProtocolVersion => {
                                "protocol version not supported"
                            }
                            ConnectReturnCode::Success => "unexpected",
                        }
                    )))
                }
                Err(e) => Err(NetError::of(&e)),
            },
            Connection::V5(el) => match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(m5::Packet::ConnAck(_))) => Ok(NetEvent::Connected),
                Ok(rumqttc::v5::Event::Incoming(m5::Packet::PubAck(a))) => {
                    Ok(NetEvent::Confirmed(a.pkid))
                }
                Ok(rumqttc::v5::Event::Incoming(m5::Packet::PubComp(c))) => {
                    Ok(NetEvent::Confirmed(c.pkid))
                }
                Ok(rumqttc::v5::Event::Outgoing(Outgoing::Publish(p))) => Ok(NetEvent::Written(p)),
                Ok(rumqttc::v5::Event::Incoming(m5::Packet::Publish(p))) => Ok(NetEvent::Message {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    payload: p.payload.to_vec(),
                }),
                Ok(rumqttc::v5::Event::Outgoing(Outgoing::Disconnect)) => {
                    Ok(NetEvent::Disconnected)
                }
                Ok(_) => Ok(NetEvent::Other),
                Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Err(NetError {
                    text: format!("broker refused the connection: {code:?}"),
                    closed: code == m5::ConnectReturnCode::UnsupportedProtocolVersion,
                }),
                Err(e) => Err(NetError::of(&e)),
            },
        }
    }
}
