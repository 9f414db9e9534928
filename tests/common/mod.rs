//! Test harness: real peers on free loopback ports.
//!
//! - [`Broker`]: a mosquitto process with its own config, stoppable and restartable;
//! - [`Subscriber`]: a real MQTT client (rumqttc) recording every message it receives;
//! - [`Daemon`]: the `streamclassd` binary under test, with its stderr kept;
//! - [`RtspServer`]: GStreamer's RTSP server serving a clip (`tests/support/rtsp_server.py`);
//! - [`fixtures`]: clips, model and reference outputs written by `scripts/fixtures`;
//! - [`tls::TlsBroker`]: mosquitto over TLS with certificates made at test time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

pub mod nats;
pub mod reference;
pub mod tls;

/// Upper bound for anything a test waits on; only a hang guard, never a performance claim.
pub const PATIENCE: Duration = Duration::from_secs(180);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directory of generated test inputs (see `scripts/fixtures`).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("STREAMCLASSD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/test-fixtures"));
    assert!(
        dir.join("clip.mp4").is_file() && dir.join("reference.json").is_file(),
        "test fixtures missing in {}: run scripts/test (it generates them)",
        dir.display()
    );
    dir
}

/// The seeded random-weight ResNet-50 written by `scripts/setup`.
pub fn model() -> PathBuf {
    let m = repo().join("models/resnet50-random.onnx");
    assert!(m.is_file(), "{} missing: run scripts/test", m.display());
    m
}

/// The `onnx` package's constant-weight ResNet-50: fixed batch 1, ends in Softmax, every
/// output exactly 0.001.
pub fn light_model() -> PathBuf {
    let lib = repo().join(".venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .and_then(|dirs| {
            dirs.flatten().find_map(|py| {
                let p = py
                    .path()
                    .join("site-packages/onnx/backend/test/data/light/light_resnet50.onnx");
                p.is_file().then_some(p)
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no light_resnet50.onnx under {}: run scripts/test",
                lib.display()
            )
        })
}

/// The ONNX Runtime library, as `scripts/env` finds it.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let lib = repo().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten().find_map(|py| {
            let capi = py.path().join("site-packages/onnxruntime/capi");
            std::fs::read_dir(capi).ok()?.flatten().find_map(|f| {
                let name = f.file_name().to_string_lossy().into_owned();
                name.starts_with("libonnxruntime.so.").then(|| f.path())
            })
        })
    });
    found.unwrap_or_else(|| panic!("no libonnxruntime in {}: run scripts/test", lib.display()))
}

/// A free port below Linux's ephemeral range (32768+), never handed out twice in this
/// process: a server restarted on it cannot lose it to another test's `bind(0)` while down.
pub fn stable_port() -> u16 {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().expect("lock");
    let mut x = u64::from(std::process::id()) ^ (taken.len() as u64).wrapping_mul(0x9e37_79b9);
    loop {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let port = 20_000 + ((x >> 33) % 12_000) as u16;
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
}

/// A free ephemeral port (nothing listens on it afterwards).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A mosquitto broker on a free loopback port.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra mosquitto.conf lines (authentication, persistence).
    extra: String,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_with("")
    }

    /// A broker that keeps sessions across restarts (stopped with SIGTERM it saves them),
    /// so a persistent subscriber misses nothing while it is down.
    pub fn start_persistent() -> Broker {
        Broker::persisting(0)
    }

    /// A broker that also saves its sessions every second, so a persistent subscriber's
    /// session survives a crash (`kill`) once [`Broker::wait_saved_since`] has seen it saved.
    pub fn start_autosaving() -> Broker {
        Broker::persisting(1)
    }

    /// A persistent broker saving every `autosave_s` seconds (0: only when stopped).
    fn persisting(autosave_s: u32) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        // mosquitto started as root drops to its own user, which must be able to write
        // the database there.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let extra = format!(
            "persistence true\npersistence_location {}/\nautosave_interval {autosave_s}\n",
            dir.path().display()
        );
        Broker::started(dir, extra)
    }

    /// Waits until the broker has saved its state after `since`.
    pub fn wait_saved_since(&self, since: std::time::SystemTime) {
        let db = self.dir.path().join("mosquitto.db");
        let deadline = Instant::now() + PATIENCE;
        while !std::fs::metadata(&db)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > since)
        {
            assert!(Instant::now() < deadline, "the broker never saved {db:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is read or answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Kills the broker (SIGKILL), as a crash would: what it had not saved is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A port for a broker that is not running yet: `restart()` starts it.
    pub fn reserve() -> Broker {
        Broker {
            port: stable_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            extra: String::new(),
        }
    }

    /// A broker on a fresh stable port with `extra` configuration, started.
    fn started(dir: tempfile::TempDir, extra: String) -> Broker {
        let mut b = Broker {
            port: stable_port(),
            dir,
            child: None,
            extra,
        };
        b.restart();
        b
    }

    /// A broker that requires `user`/`password`.
    pub fn start_with_password(user: &str, password: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("passwd");
        std::fs::write(&pw, "").expect("passwd");
        let ok = Command::new("mosquitto_passwd")
            .args(["-b"])
            .arg(&pw)
            .args([user, password])
            .status()
            .expect("mosquitto_passwd");
        assert!(ok.success());
        let extra = format!("allow_anonymous false\npassword_file {}\n", pw.display());
        Broker::started(dir, extra)
    }

    pub fn start_with(extra: &str) -> Broker {
        Broker::started(tempfile::tempdir().expect("tempdir"), extra.to_owned())
    }

    /// (Re)starts the broker on the same port.
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        // mosquitto's default max_queued_messages (1000) silently drops messages to a
        // subscriber that falls behind; tests must see every message.
        let base = if self.extra.contains("allow_anonymous") {
            String::new()
        } else {
            "allow_anonymous true\n".to_owned()
        };
        let persist = if self.extra.contains("persistence") {
            ""
        } else {
            "persistence false\n"
        };
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n{base}{persist}max_queued_messages 100000\n{}",
                self.port, self.extra
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (scripts/setup installs it)");
        self.child = Some(child);
        wait_listening(self.port);
    }

    /// Stops the broker with SIGTERM (it saves persistent sessions) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("payload is JSON")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A real MQTT client subscribed (QoS 1) to a filter, recording what arrives. It
/// reconnects (and resubscribes) by itself when the broker goes away.
pub struct Subscriber {
    client: Client,
    messages: Arc<Mutex<Vec<Message>>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    pub fn connect(port: u16, filter: &str) -> Subscriber {
        Subscriber::connect_with(port, filter, false)
    }

    /// `persistent`: a session the broker keeps while this client is away (clean session
    /// off), so nothing published meanwhile is missed.
    pub fn connect_with(port: u16, filter: &str, persistent: bool) -> Subscriber {
        let id = format!("test-sub-{}-{}", std::process::id(), free_port());
        Subscriber::connect_as(port, filter, &id, persistent)
    }

    /// Connects with a user name and password.
    pub fn connect_auth(port: u16, filter: &str, user: &str, password: &str) -> Subscriber {
        let id = format!("test-sub-{}-{}", std::process::id(), free_port());
        Subscriber::connect_full(port, filter, &id, false, Some((user, password)))
    }

    /// Connects with a given client id (to resume a persistent session).
    pub fn connect_as(port: u16, filter: &str, id: &str, persistent: bool) -> Subscriber {
        Subscriber::connect_full(port, filter, id, persistent, None)
    }

    fn connect_full(
        port: u16,
        filter: &str,
        id: &str,
        persistent: bool,
        auth: Option<(&str, &str)>,
    ) -> Subscriber {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        if let Some((user, password)) = auth {
            opts.set_credentials(user, password);
        }
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_clean_session(!persistent);
        let (client, mut connection) = Client::new(opts, 1000);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = messages.clone();
        let stop = stopping.clone();
        let sub_client = client.clone();
        let filter = filter.to_owned();
        let thread = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        sink.lock().expect("lock").push(Message {
                            topic: format!("$connack/session_present={}", ack.session_present),
                            payload: Vec::new(),
                            retain: false,
                        });
                        if !ack.session_present {
                            let _ = sub_client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        } else {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().expect("lock").push(Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("SUBACK from the broker");
        Subscriber {
            client,
            messages,
            stopping,
            thread: Some(thread),
        }
    }

    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().expect("lock").clone()
    }

    pub fn on(&self, topic: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until `pred` holds for the messages so far; false after `timeout`.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[Message]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.messages.lock().expect("lock")) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The daemon under test.
pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    stderr: PathBuf,
}

impl Daemon {
    /// Starts `streamclassd run --config <dir>/config.toml` with `config` as the file.
    pub fn start(config: &str) -> Daemon {
        Daemon::start_with(config, &[], &[])
    }

    pub fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, config).expect("write config");
        let stderr = dir.path().join("stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamclassd"));
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--summary-json")
            .arg(dir.path().join("summary.json"))
            .args(args)
            .env("ORT_DYLIB_PATH", ort_library())
            .env("STREAMCLASSD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start streamclassd");
        Daemon { child, dir, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// Waits for the daemon to exit; panics (after killing it) if it outlives `PATIENCE`.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("streamclassd did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The exit summary (`--summary-json`) of a daemon that has exited.
    pub fn summary(&self) -> serde_json::Value {
        let path = self.dir.path().join("summary.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "no exit summary {}: {e}; stderr:
{}",
                path.display(),
                self.stderr()
            )
        });
        serde_json::from_str(&text).expect("summary JSON")
    }

    /// The cameras of the exit summary, by id, in order.
    pub fn summary_cameras(&self) -> Vec<String> {
        self.summary()["cameras"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["id"].as_str())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One counter of one camera in the exit summary (`published`, `frames`,
    /// `preprocessed`, `dropped`, `decode_errors`, `reconnects`, `outbox_dropped`).
    pub fn total(&self, camera: &str, key: &str) -> u64 {
        let summary = self.summary();
        summary["cameras"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == camera))
            .and_then(|c| c[key].as_u64())
            .unwrap_or_else(|| panic!("no {key} for camera {camera} in {summary}"))
    }

    /// Waits until stderr contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary once with `args` (no config written) and returns (exit code, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamclassd"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run streamclassd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// GStreamer's RTSP server (a real one) serving an H.264 clip (looped) on a loopback port.
pub struct RtspServer {
    child: Option<Child>,
    clip: PathBuf,
    pub port: u16,
}

impl RtspServer {
    pub fn start(clip: &Path) -> RtspServer {
        RtspServer::start_on(clip, stable_port())
    }

    /// Starts on `port` (0: a free one).
    pub fn start_on(clip: &Path, port: u16) -> RtspServer {
        let script = repo().join("tests/support/rtsp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg("--file")
            .arg(clip)
            .arg("--port")
            .arg(port.to_string())
            .arg("--loop")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start RTSP server (scripts/setup installs GStreamer)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read RTSP server banner");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected RTSP server banner {line:?}"));
        RtspServer {
            child: Some(child),
            clip: clip.to_path_buf(),
            port,
        }
    }

    pub fn url(&self, userinfo: &str) -> String {
        format!("rtsp://{userinfo}127.0.0.1:{}/stream", self.port)
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.signal("CONT");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = std::panic::catch_unwind(|| RtspServer::start_on(&self.clip, self.port));
            if let Ok(mut s) = s {
                self.child = s.child.take();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "RTSP server cannot restart on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is sent.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    pub fn thaw(&self) {
        self.signal("CONT");
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A config for the daemon under test: one `[[camera]]` block per (id, source, fps).
pub fn config(
    broker_port: u16,
    prefix: &str,
    cameras: &[(&str, &str, f64)],
    extra_model: &str,
) -> String {
    // Two intra-op threads unless the test sets its own.
    let threads = if extra_model.contains("threads") {
        ""
    } else {
        "threads = 2\n"
    };
    let mut s = format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {broker_port}\ntopic_prefix = \"{prefix}\"\nqos = 1\n\
         client_id = \"{prefix}-daemon\"\n\n[model]\npath = \"{}\"\nname = \"resnet50\"\n\
         {threads}{extra_model}\n",
        model().display()
    );
    for (id, source, fps) in cameras {
        s += &format!("\n[[camera]]\nid = \"{id}\"\nsource = \"{source}\"\nfps = {fps}\n");
    }
    s
}

/// Frames each inference worker ran, from the lines the workers log when they stop.
pub fn frames_per_worker(log: &str) -> Vec<(u64, u64)> {
    let field = |l: &str, name: &str| -> Option<u64> {
        l.split(&format!("{name}="))
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let mut out: Vec<(u64, u64)> = log
        .lines()
        .filter_map(|l| {
            l.split_once("inference worker stopped")
                .map(|(_, rest)| rest)
        })
        .filter_map(|l| Some((field(l, "worker")?, field(l, "frames")?)))
        .collect();
    out.sort_unstable();
    out
}

/// A plain HTTP/1.0 GET: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let (code, _, body) = http_get_with(port, path, &[]);
    (code, body)
}

/// An HTTP/1.0 GET with extra request headers: (status code, response headers, body).
pub fn http_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let (code, head, body) = http_bytes(port, path, headers);
    (code, head, String::from_utf8_lossy(&body).into_owned())
}

/// An HTTP/1.0 GET with extra request headers: (status code, response headers, body as
/// bytes).
pub fn http_bytes(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to admin listener");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{extra}\r\n").expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head, body)
}

/// Opens a streamed HTTP/1.0 GET (an MJPEG stream) on `port` and reads the response head
/// (its lines, each with its CRLF); the body is left in the reader, which waits at most
/// [`PATIENCE`] for each read.
pub fn http_stream(port: u16, path: &str) -> (String, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to admin listener");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("request");
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head += &line;
    }
    (head, r)
}

/// A response header's value (names compare without case, as HTTP's do).
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The JSON payloads received on `topic`, in order.
pub fn labels(sub: &Subscriber, topic: &str) -> Vec<serde_json::Value> {
    sub.on(topic).iter().map(Message::json).collect()
}

/// A `wait_until` condition: at least `n` messages on `topic`.
pub fn at_least(topic: &str, n: usize) -> impl Fn(&[Message]) -> bool + '_ {
    move |m: &[Message]| m.iter().filter(|m| m.topic == topic).count() >= n
}

/// The value of one series (`name{labels}`, exactly as exposed) on the admin listener's
/// `/metrics`; `None` while the listener is not up or the series is absent.
pub fn metric(port: u16, series: &str) -> Option<f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    raw.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `metric(port, series)` is at least `min`; returns the last value seen.
pub fn wait_for_metric(port: u16, series: &str, min: f64) -> Option<f64> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = metric(port, series);
        if v.is_some_and(|v| v >= min) || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that `msgs` hold every seq in `0..n` and that first deliveries come in order;
/// returns the number of duplicates (allowed by QoS 1).
pub fn assert_complete_in_order(msgs: &[serde_json::Value], n: u64) -> usize {
    let seqs: Vec<u64> = msgs
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    let unique: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
    let missing: Vec<u64> = (0..n).filter(|s| !unique.contains(s)).collect();
    assert!(missing.is_empty(), "missing seq {missing:?} of 0..{n}");
    assert_eq!(unique.len() as u64, n, "unexpected extra seq: {unique:?}");
    let mut seen = std::collections::BTreeSet::new();
    let mut last = None;
    for s in &seqs {
        if seen.insert(*s) {
            assert!(
                last.is_none_or(|l| *s > l),
                "seq {s} arrived after {last:?}"
            );
            last = Some(*s);
        }
    }
    seqs.len() - unique.len()
}
