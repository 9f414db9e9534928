//! `[mqtt] servers` against real brokers: a 3-node NATS cluster (MQTT listeners, JetStream)
//! loses the node the daemon is connected to mid-stream and not one label is lost; what the
//! cluster refuses (MQTT 5, QoS 2) is said in words naming the server and the setting;
//! two mosquitto brokers fail over; MQTT 5 shared subscriptions split the stream.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::nats::NatsCluster;
use common::{assert_complete_in_order, fixtures, labels, Broker, Daemon, Subscriber, PATIENCE};

/// A daemon config with `servers` instead of `host`/`port`, one real-time file camera
/// (photos.mp4: 120 frames at 25 frames/s, every one classified) and `extra` in `[mqtt]`.
fn config(servers: &[String], prefix: &str, extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[mqtt]\nservers = [{}]\ntopic_prefix = \"{prefix}\"\nqos = 1\n\
         client_id = \"{prefix}-daemon\"\n{extra}\n\n[model]\npath = \"{}\"\n\
         name = \"resnet50\"\nthreads = 2\n\n[[camera]]\nid = \"cam\"\nsource = \"{}\"\n\
         realtime = true\n",
        list.join(", "),
        common::model().display(),
        fixtures().join("photos.mp4").display()
    )
}

fn seqs(msgs: &[serde_json::Value]) -> BTreeSet<u64> {
    msgs.iter().filter_map(|m| m["seq"].as_u64()).collect()
}

/// The `seq`s among `msgs` on `topic` (for `wait_until`, which holds the messages' lock).
fn seqs_on(msgs: &[common::Message], topic: &str) -> BTreeSet<u64> {
    let on: Vec<serde_json::Value> = msgs
        .iter()
        .filter(|m| m.topic == topic)
        .map(common::Message::json)
        .collect();
    seqs(&on)
}

#[test]
fn losing_the_connected_nats_node_loses_no_label() {
    let mut cluster = NatsCluster::start(3);
    let servers = cluster.servers();
    // A persistent QoS 1 subscriber on node 3: its session lives on the cluster.
    let sub = Subscriber::connect_with(cluster.nodes[2].mqtt, "fo/#", true);
    let mut d = Daemon::start_with(
        &config(&servers, "fo", ""),
        &["--shutdown-grace", "120s"],
        &[],
    );
    assert!(
        sub.wait_until(PATIENCE, common::at_least("fo/cam/labels", 15)),
        "{}",
        d.stderr()
    );
    assert!(d.stderr().contains(&format!("server={}", servers[0])));
    cluster.kill(0);
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "every label confirmed:\n{log}");
    assert!(log.contains("lost MQTT broker"), "{log}");
    assert!(
        log.contains("failovers=1"),
        "the fail-over is reported:\n{log}"
    );
    let n = d.total("cam", "published");
    assert_eq!(n, 120, "{log}");
    // Every frame's message reaches the subscriber on the surviving node, first
    // deliveries in order; duplicates (QoS 1 resends) are allowed and counted.
    assert!(
        sub.wait_until(PATIENCE, |m| seqs_on(m, "fo/cam/labels").len() as u64 == n),
        "missing {:?}",
        (0..n)
            .filter(|s| !seqs(&labels(&sub, "fo/cam/labels")).contains(s))
            .collect::<Vec<_>>()
    );
    let dupes = assert_complete_in_order(&labels(&sub, "fo/cam/labels"), n);
    let timeline: Vec<&str> = log.lines().filter(|l| l.contains("MQTT broker")).collect();
    eprintln!(
        "fail-over: {n} labels, {dupes} duplicates at the subscriber\n{}",
        timeline.join("\n")
    );

    // The camera's last state reached the subscriber through the fail-over.
    let states: Vec<String> = sub
        .on("fo/cam/status")
        .iter()
        .map(|m| m.json()["state"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        states.last().map(String::as_str),
        Some("finished"),
        "{states:?}"
    );
    // Node 1 back changes nothing; the retained daemon status survives on the cluster
    // (a late subscriber on a surviving node and on node 1 both read `offline`).
    cluster.restart(0);
    for node in [1, 0] {
        let late = Subscriber::connect(cluster.nodes[node].mqtt, "fo/status");
        assert!(
            late.wait_until(PATIENCE, |m| m
                .iter()
                .any(|m| m.payload == b"offline" && m.retain)),
            "node {}: {:?}",
            node + 1,
            late.messages()
        );
    }
}

#[test]
fn what_nats_refuses_is_said_naming_the_server_and_the_setting() {
    let cluster = NatsCluster::start(3);
    let one = vec![cluster.servers()[0].clone()];
    // QoS 2: the server closes the connection after the first QoS 2 publish.
    let mut d = Daemon::start(&config(&one, "q2", "").replace("qos = 1", "qos = 2"));
    let said = format!("QoS 2 not supported by this server: {} closed", one[0]);
    assert!(d.wait_for_log(&said, PATIENCE), "{}", d.stderr());
    d.signal("TERM");
    let status = d.wait();
    assert_ne!(status.code(), Some(0), "labels were never confirmed");
    // MQTT 5: refused at connect.
    let mut d = Daemon::start(&config(&one, "v5", "protocol = \"5\""));
    let said = format!("{} refused MQTT 5 (mqtt.protocol = \"5\")", one[0]);
    assert!(d.wait_for_log(&said, PATIENCE), "{}", d.stderr());
    d.signal("TERM");
    d.wait();
}

#[test]
fn two_mosquitto_brokers_the_first_frozen_moves_the_daemon_to_the_second() {
    let first = Broker::start();
    let second = Broker::start();
    let servers = vec![
        format!("127.0.0.1:{}", first.port),
        format!("127.0.0.1:{}", second.port),
    ];
    let on_first = Subscriber::connect(first.port, "mo/cam/labels");
    let on_second = Subscriber::connect(second.port, "mo/cam/labels");
    let mut d = Daemon::start_with(
        &config(&servers, "mo", "keep_alive_s = 5"),
        &["--shutdown-grace", "60s"],
        &[],
    );
    assert!(
        on_first.wait_until(PATIENCE, common::at_least("mo/cam/labels", 15)),
        "{}",
        d.stderr()
    );
    // The first broker stops answering (a hung host): the daemon finds out by its
    // keep-alive and moves to the second with what the first had not confirmed.
    first.freeze();
    let moved = format!("connected to MQTT broker server={}", servers[1]);
    assert!(d.wait_for_log(&moved, PATIENCE), "{}", d.stderr());
    // Back, the first delivers what it had confirmed before it froze: a broker that
    // confirmed a label and then died with it would lose it whatever the publisher did.
    first.thaw();
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("failovers=1"), "{log}");
    // What reached the first before it froze and the second after: every label.
    let n = d.total("cam", "published");
    let union = || -> BTreeSet<u64> {
        seqs(&labels(&on_first, "mo/cam/labels"))
            .union(&seqs(&labels(&on_second, "mo/cam/labels")))
            .copied()
            .collect()
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while union().len() as u64 != n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(union(), (0..n).collect(), "{log}");
    assert!(!labels(&on_second, "mo/cam/labels").is_empty());
}

/// An MQTT 5 consumer of a shared subscription, recording (topic, payload) of each label.
struct SharedConsumer {
    got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    client: rumqttc::v5::Client,
}

impl SharedConsumer {
    fn start(port: u16, filter: &str, id: &str) -> SharedConsumer {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::{Client, Event, MqttOptions};
        let opts = MqttOptions::new(id, "127.0.0.1", port);
        let (client, mut connection) = Client::new(opts, 100);
        client
            .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .expect("subscribe");
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        let (ready, subscribed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice(&p.payload).expect("JSON label");
                        sink.lock().expect("lock").push(v);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        subscribed
            .recv_timeout(Duration::from_secs(20))
            .expect("SUBACK");
        SharedConsumer { got, client }
    }

    fn labels(&self) -> BTreeSet<(String, u64)> {
        let got = self.got.lock().expect("lock");
        let set: BTreeSet<(String, u64)> = got
            .iter()
            .map(|v| {
                (
                    v["camera"].as_str().expect("camera").to_owned(),
                    v["seq"].as_u64().expect("seq"),
                )
            })
            .collect();
        assert_eq!(set.len(), got.len(), "no duplicates without a reconnect");
        set
    }
}

impl Drop for SharedConsumer {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

#[test]
fn shared_subscriptions_split_the_stream_and_a_plain_subscriber_sees_it_all() {
    let broker = Broker::start();
    let photos = fixtures().join("photos.mp4").display().to_string();
    let filter = "$share/workers/sh/+/labels";
    let (a, b) = (
        SharedConsumer::start(broker.port, filter, "worker-1"),
        SharedConsumer::start(broker.port, filter, "worker-2"),
    );
    let plain = Subscriber::connect(broker.port, "sh/+/labels");
    let cams = [("a", photos.as_str(), 0.0), ("b", photos.as_str(), 0.0)];
    let mut d = Daemon::start(&common::config(broker.port, "sh", &cams, ""));
    let status = d.wait();
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    let all: BTreeSet<(String, u64)> = ["a", "b"]
        .iter()
        .flat_map(|c| (0..d.total(c, "published")).map(move |s| (c.to_string(), s)))
        .collect();
    assert_eq!(all.len(), 240);
    let whole = || a.labels().len() + b.labels().len() == all.len();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !(whole() && plain.on("sh/a/labels").len() + plain.on("sh/b/labels").len() >= all.len())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (a, b) = (a.labels(), b.labels());
    assert!(a.is_disjoint(&b), "no message at both workers");
    assert_eq!(a.union(&b).cloned().collect::<BTreeSet<_>>(), all);
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both share the work: {} / {}",
        a.len(),
        b.len()
    );
    let on_plain = [plain.on("sh/a/labels"), plain.on("sh/b/labels")].concat();
    let seen: BTreeSet<(String, u64)> = on_plain
        .iter()
        .map(|m| {
            let v = m.json();
            (
                v["camera"].as_str().expect("camera").to_owned(),
                v["seq"].as_u64().expect("seq"),
            )
        })
        .collect();
    assert_eq!(seen, all, "the plain subscriber sees every message");
}
