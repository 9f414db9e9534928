//! A real clustered MQTT broker for fail-over tests: a 3-node NATS cluster (Debian's
//! `nats-server` 2.9) with JetStream and an MQTT listener on each node, every port a free
//! loopback one, every node's store in its own temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet};

use super::{free_port, PATIENCE};

pub struct Node {
    pub name: String,
    /// The node's MQTT listener.
    pub mqtt: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until each one's MQTT listener accepts a session.
    pub fn start(n: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, r, _)| format!("\"nats-route://127.0.0.1:{r}\""))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, route, mqtt)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let conf = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{client}\n\
                     jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 1GB }}\n\
                     cluster {{ name: streamclassd-test, listen: 127.0.0.1:{route}, routes: [{}] }}\n\
                     mqtt {{ listen: 127.0.0.1:{mqtt} }}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )
            .expect("write nats.conf");
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                mqtt: *mqtt,
                conf,
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes, _dir: dir };
        for i in 0..n {
            cluster.nodes[i].start();
        }
        for i in 0..n {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// `host:port` of each node's MQTT listener, for `[mqtt] servers`.
    pub fn servers(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.mqtt))
            .collect()
    }

    /// Waits until node `i` completes an MQTT session (JetStream has a leader and the
    /// MQTT streams exist): a clean CONNECT answered with CONNACK.
    pub fn wait_ready(&self, i: usize) {
        let node = &self.nodes[i];
        let deadline = Instant::now() + PATIENCE;
        loop {
            if mqtt_answers(node.mqtt) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "NATS node {} never accepted an MQTT session:\n{}",
                node.name,
                node.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills node `i` (SIGKILL), as a crash or a power loss would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again with its store, and waits until it serves MQTT.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
        self.wait_ready(i);
    }
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server (Debian's nats-server package)");
        self.child = Some(child);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Whether an MQTT 3.1.1 CONNECT on `port` gets a CONNACK within a few seconds.
fn mqtt_answers(port: u16) -> bool {
    let id = format!("probe-{}-{}", std::process::id(), free_port());
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(opts, 10);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ok = false;
    while Instant::now() < deadline {
        match connection.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                ok = true;
                break;
            }
            Ok(Err(_)) => break,
            _ => {}
        }
    }
    let _ = client.disconnect();
    ok
}
