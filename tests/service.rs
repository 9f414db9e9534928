//! Running as a service: systemd notifications (READY, WATCHDOG, STATUS) over a real
//! notification socket, the admin listener (/metrics checked by Prometheus' own promtool,
//! /healthz, /readyz), credentials from systemd's credentials directory, and no secret in
//! anything the daemon emits.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    config, fixtures, http_get, stable_port, Broker, Daemon, RtspServer, Subscriber, PATIENCE,
};

fn wait_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "admin listener never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{report}\n{text}"
    );
    report
}

#[test]
fn metrics_health_readiness_and_no_secret_anywhere() {
    const RTSP_SECRET: &str = "rtspS3cret";
    const MQTT_SECRET: &str = "mqttS3cret";
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let mut broker = Broker::start_with_password("daemon", MQTT_SECRET);
    let creds = tempfile::tempdir().expect("credentials dir");
    std::fs::write(
        creds.path().join("mqtt-password"),
        format!("{MQTT_SECRET}\n"),
    )
    .expect("write");
    let admin = stable_port();
    let url = server.url(&format!("viewer:{RTSP_SECRET}@"));
    let cfg = config(broker.port, "svc", &[("street", &url, 0.0)], "").replace(
        "qos = 1\n",
        "qos = 1\nusername = \"daemon\"\npassword_credential = \"mqtt-password\"\n",
    ) + "\n[[camera.region]]\nname = \"steps\"\nrect = [0, 180, 320, 180]\n"
        // clip.mp4 is 640x360: not inside it.
        + "\n[[camera.region]]\nname = \"off\"\nrect = [600, 0, 100, 100]\n"
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let creds_dir = creds.path().display().to_string();
    let mut d = Daemon::start_with(&cfg, &[], &[("CREDENTIALS_DIRECTORY", &creds_dir)]);
    wait_http(admin);

    // A real subscriber on the password-protected broker (same credentials).
    let sub = {
        let mut opts = rumqttc::MqttOptions::new("svc-sub", "127.0.0.1", broker.port);
        opts.set_credentials("daemon", MQTT_SECRET);
        opts
    };
    let (client, mut conn) = rumqttc::Client::new(sub, 100);
    client
        .subscribe("svc/#", rumqttc::QoS::AtLeastOnce)
        .expect("subscribe");
    let payloads = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = payloads.clone();
    let reader = std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    sink.lock().expect("lock").push(format!(
                        "{} {}",
                        p.topic,
                        String::from_utf8_lossy(&p.payload)
                    ))
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (code, _) = http_get(admin, "/readyz");
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready:\n{}", d.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, ready) = http_get(admin, "/readyz");
    assert_eq!(code, 200, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("readyz JSON");
    assert_eq!(ready["cameras"]["street"], "streaming");
    let (code, body) = http_get(admin, "/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    while payloads.lock().expect("lock").len() < 30 {
        assert!(Instant::now() < deadline, "no labels:\n{}", d.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }

    let (code, metrics) = http_get(admin, "/metrics");
    assert_eq!(code, 200);
    let report = promtool_check(&metrics);
    eprintln!("promtool: {}", report.trim());
    for needle in [
        "streamclassd_frames_captured_total{camera=\"street\"}",
        "streamclassd_frames_classified_total{camera=\"street\"}",
        "streamclassd_frames_dropped_total{camera=\"street\",reason=\"busy\"}",
        "streamclassd_frames_dropped_total{camera=\"street\",reason=\"outbox_full\"}",
        "streamclassd_reconnects_total{camera=\"street\"}",
        "streamclassd_camera_state{camera=\"street\",state=\"streaming\"} 1",
        "streamclassd_inference_duration_seconds_bucket",
        "streamclassd_batch_size_bucket",
        "streamclassd_latency_seconds_bucket",
        "streamclassd_outbox_depth",
        "streamclassd_broker_connected 1",
        "streamclassd_region_classified_total{camera=\"street\",region=\"steps\"}",
        "streamclassd_region_unclassifiable{camera=\"street\",region=\"off\"} 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    let classified: f64 = metrics
        .lines()
        .find(|l| l.starts_with("streamclassd_frames_classified_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("classified value");
    assert!(classified >= 10.0, "{classified}");

    // /api/cameras: the camera's state, counters, latency, and its latest results, which
    // are the ones published on MQTT for that frame.
    let (code, api) = http_get(admin, "/api/cameras");
    assert_eq!(code, 200, "{api}");
    let v: serde_json::Value = serde_json::from_str(&api).expect("/api/cameras JSON");
    let cam = &v["cameras"][0];
    assert_eq!(
        (cam["id"].as_str(), cam["state"].as_str()),
        (Some("street"), Some("streaming"))
    );
    assert!(cam["latency_ms"]["p50"].as_f64() > Some(0.0), "{cam}");
    assert!(
        cam["latency_ms"]["p99"].as_f64() >= cam["latency_ms"]["p50"].as_f64(),
        "{cam}"
    );
    assert_eq!(
        cam["fps"]["per_frame"], 2,
        "the whole frame and the region inside it: {cam}"
    );
    assert_eq!(cam["region_errors"][0]["region"], "off", "{cam}");
    let published = |topic: &str, frame: &serde_json::Value| -> Option<serde_json::Value> {
        payloads.lock().expect("lock").iter().find_map(|p| {
            let (t, body) = p.split_once(' ')?;
            let m: serde_json::Value = serde_json::from_str(body).ok()?;
            (t == topic && &m["frame"] == frame).then_some(m)
        })
    };
    let wait_published = |topic: &str, frame: &serde_json::Value| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(m) = published(topic, frame) {
                return m;
            }
            assert!(Instant::now() < deadline, "frame {frame} never on {topic}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let last = &cam["last"];
    let m = wait_published("svc/street/labels", &last["frame"]);
    assert_eq!(
        (&last["top5"], &last["captured_at"]),
        (&m["top5"], &m["captured_at"])
    );
    let steps = cam["regions"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["region"] == "steps"))
        .unwrap_or_else(|| panic!("no region steps in {cam}"));
    let m = wait_published("svc/street/region/steps/labels", &steps["frame"]);
    assert_eq!(
        (&steps["top5"], &steps["input_rect"]),
        (&m["top5"], &m["input_rect"])
    );

    // Without the broker the daemon is alive but not ready, and says why.
    broker.stop();
    let mut not_ready = String::new();
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let (code, body) = http_get(admin, "/readyz");
        if code == 503 {
            not_ready = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(not_ready.contains("broker not connected"), "{not_ready}");
    assert_eq!(http_get(admin, "/healthz").0, 200);
    let (_, metrics_down) = http_get(admin, "/metrics");
    broker.restart();

    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    let _ = client.disconnect();
    let _ = reader.join();

    // Everything the daemon emitted: its log, every MQTT payload, every admin response.
    let emitted = [
        log,
        payloads.lock().expect("lock").join("\n"),
        metrics,
        metrics_down,
        ready.to_string(),
        not_ready,
        api,
    ]
    .join("\n");
    for secret in [RTSP_SECRET, MQTT_SECRET] {
        assert!(!emitted.contains(secret), "{secret} leaked");
    }
    assert!(
        emitted.contains("rtsp://viewer:***@127.0.0.1"),
        "the redacted URL is logged"
    );
}

#[test]
fn systemd_hears_ready_watchdog_and_status_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "sd/#");
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let cfg = config(broker.port, "sd", &[("cam", &server.url(""), 0.0)], "");
    let sock = path.display().to_string();
    let mut d = Daemon::start_with(
        &cfg,
        &[],
        &[("NOTIFY_SOCKET", &sock), ("WATCHDOG_USEC", "1000000")],
    );
    let mut messages: Vec<String> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let watchdogs = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
        if watchdogs >= 4
            && messages
                .iter()
                .any(|m| m.contains("1/1 camera(s) streaming"))
        {
            break;
        }
    }
    assert!(sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.topic == "sd/cam/labels")));
    // systemctl reload: RELOADING=1, then READY=1 once the new configuration is in effect.
    let before_reload = messages.len();
    d.signal("HUP");
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline
        && !messages[before_reload..]
            .iter()
            .skip_while(|m| !m.contains("RELOADING=1"))
            .any(|m| m.contains("READY=1"))
    {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    d.signal("TERM");
    let status = d.wait();
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let reloading = messages[before_reload..]
        .iter()
        .position(|m| m.contains("RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1 after SIGHUP: {messages:?}"));
    assert!(
        messages[before_reload + reloading..]
            .iter()
            .any(|m| m.contains("READY=1")),
        "no READY=1 after the reload: {messages:?}"
    );
    assert!(
        d.stderr().contains("configuration reloaded"),
        "{}",
        d.stderr()
    );
    let ready = messages
        .iter()
        .position(|m| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {messages:?}"));
    let first_watchdog = messages.iter().position(|m| m.contains("WATCHDOG=1"));
    assert!(first_watchdog.is_some_and(|w| w > ready), "{messages:?}");
    assert!(
        messages.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 4,
        "watchdog fed at half of WATCHDOG_USEC: {messages:?}"
    );
    let status_line = messages
        .iter()
        .rev()
        .find(|m| m.starts_with("STATUS=") && m.contains("streaming"))
        .unwrap_or_else(|| panic!("no status line in {messages:?}"));
    assert!(
        status_line.contains("1/1 camera(s) streaming"),
        "{status_line}"
    );
    assert!(
        messages.iter().any(|m| m.contains("STOPPING=1")),
        "{messages:?}"
    );
}
