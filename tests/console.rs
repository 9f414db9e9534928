//! The console and its HTTP API against a running daemon reading a real RTSP camera (the
//! GStreamer server on loopback) with a real broker: `latest.jpg` (size, quality, overlay,
//! the headers that tie it to its MQTT message, 404/400/503), `stream.mjpeg` (parts that
//! parse and decode), `/api/events` (events equal to the published messages), a viewer that
//! stops reading (dropped; publishing goes on), and the console itself in Debian's headless
//! Chromium (driven by playwright-core, `tests/console/check.mjs`; screenshots under
//! `target/console/`).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    at_least, config, fixtures, header_value, http_bytes, http_get, http_stream, repo,
    wait_for_metric, Broker, Daemon, RtspServer, Subscriber, PATIENCE,
};
use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;
use serde_json::Value;

fn decode(jpeg: &[u8]) -> Mat {
    let m = imgcodecs::imdecode(&Vector::from_slice(jpeg), imgcodecs::IMREAD_COLOR)
        .expect("a JPEG that decodes");
    assert!(m.rows() > 0, "an empty image");
    m
}

/// A daemon with one RTSP camera (the whole frame and a region) and the admin listener.
fn start(prefix: &str) -> (Broker, RtspServer, Daemon, u16, Subscriber) {
    let broker = Broker::start();
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let admin = common::stable_port();
    let sub = Subscriber::connect(broker.port, &format!("{prefix}/#"));
    let cfg = config(broker.port, prefix, &[("cam", &server.url(""), 5.0)], "")
        + "\n[[camera.region]]\nname = \"right\"\nrect_fraction = [0.5, 0.0, 0.5, 1.0]\n"
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let d = Daemon::start(&cfg);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(Instant::now() < deadline, "{}", d.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, server, d, admin, sub)
}

/// Asks for `path` until it answers 200: (headers, body).
fn until_ok(admin: u16, path: &str) -> (String, Vec<u8>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (code, head, body) = http_bytes(admin, path, &[]);
        if code == 200 {
            return (head, body);
        }
        assert_eq!(code, 503, "{path}: {head}");
        assert!(Instant::now() < deadline, "{path} never had a frame");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The published whole-frame message of `frame`, once it is in.
fn message_of(sub: &Subscriber, topic: &str, frame: u64) -> Value {
    let has = |m: &[common::Message]| {
        m.iter()
            .any(|m| m.topic == topic && m.json()["frame"] == frame)
    };
    assert!(
        sub.wait_until(PATIENCE, has),
        "no message for frame {frame}"
    );
    common::labels(sub, topic)
        .into_iter()
        .find(|v| v["frame"] == frame)
        .expect("found")
}

/// Reads Server-Sent Events into `into` until the connection ends.
fn read_events(admin: u16, into: Arc<Mutex<Vec<(String, Value)>>>) {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).expect("connect");
    write!(s, "GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let reader = BufReader::new(s);
    let (mut kind, mut data) = (String::new(), String::new());
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data += d;
        } else if line.is_empty() && !data.is_empty() {
            let v: Value = serde_json::from_str(&data).expect("an event's data is JSON");
            into.lock()
                .expect("events")
                .push((std::mem::take(&mut kind), v));
            data.clear();
        }
    }
}

/// Reads `n` parts of an MJPEG stream: (X-Frame, JPEG) each.
fn mjpeg_parts(admin: u16, path: &str, n: usize) -> (String, Vec<(u64, Vec<u8>)>) {
    let (head, mut r) = http_stream(admin, path);
    let mut parts = Vec::new();
    while parts.len() < n {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("part header");
            let line = line.trim_end().to_owned();
            if line.is_empty() && !headers.is_empty() {
                break;
            }
            if !line.is_empty() {
                headers.push(line);
            }
        }
        assert_eq!(headers[0], "--streamclassd-frame", "{headers:?}");
        let value = |name: &str| header_value(&headers.join("\n"), name).expect(name);
        let len: usize = value("Content-Length").parse().expect("length");
        let mut jpeg = vec![0; len + 2];
        r.read_exact(&mut jpeg).expect("part body");
        assert_eq!(&jpeg[len..], b"\r\n");
        jpeg.truncate(len);
        parts.push((value("X-Frame").parse().expect("frame"), jpeg));
    }
    (head, parts)
}

#[test]
fn the_api_serves_classified_frames_streams_and_events_and_drops_a_stalled_viewer() {
    let (_broker, _server, mut d, admin, sub) = start("con");
    let topic = "con/cam/labels";
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    std::thread::spawn(move || read_events(admin, sink));

    // Errors first: unknown camera, bad parameters (named), no frame yet.
    let (code, _, body) = http_bytes(admin, "/api/cameras/nope/latest.jpg", &[]);
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    for (query, name) in [
        ("h=0", "h:"),
        ("q=500", "q:"),
        ("overlay=2", "overlay:"),
        ("size=9", "size:"),
    ] {
        let (code, _, body) =
            http_bytes(admin, &format!("/api/cameras/cam/latest.jpg?{query}"), &[]);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.starts_with(name), "{query}: {body}");
    }
    // Nothing is kept before someone asks, so the first request has no frame.
    let (code, head, _) = http_bytes(admin, "/api/cameras/cam/latest.jpg", &[]);
    assert_eq!(code, 503, "{head}");
    assert_eq!(header_value(&head, "Retry-After").as_deref(), Some("1"));

    // The frame: the height asked for, and the frame and capture time of its message.
    let (head, jpeg) = until_ok(admin, "/api/cameras/cam/latest.jpg?h=240&q=60");
    assert_eq!(
        header_value(&head, "Content-Type").as_deref(),
        Some("image/jpeg")
    );
    assert_eq!(
        header_value(&head, "Cache-Control").as_deref(),
        Some("no-store")
    );
    let image = decode(&jpeg);
    assert_eq!(image.rows(), 240);
    let frame: u64 = header_value(&head, "X-Frame")
        .expect("X-Frame")
        .parse()
        .expect("a number");
    let message = message_of(&sub, topic, frame);
    let captured_at = header_value(&head, "X-Captured-At");
    assert_eq!(captured_at.as_deref(), message["captured_at"].as_str());
    let width: i32 = header_value(&head, "X-Frame-Width")
        .expect("width")
        .parse()
        .expect("n");
    let height: i32 = header_value(&head, "X-Frame-Height")
        .expect("height")
        .parse()
        .expect("n");
    assert_eq!(
        image.cols(),
        (f64::from(width) * 240.0 / f64::from(height)).round() as i32
    );
    let (_, overlaid) = until_ok(admin, "/api/cameras/cam/latest.jpg?h=240&overlay=1");
    assert_eq!(decode(&overlaid).rows(), 240);

    // MJPEG: parts that parse and decode, frames moving on.
    let (head, parts) = mjpeg_parts(admin, "/api/cameras/cam/stream.mjpeg?h=120&fps=5", 3);
    assert!(
        header_value(&head, "Content-Type")
            .is_some_and(|t| t.starts_with("multipart/x-mixed-replace")),
        "{head}"
    );
    for (_, jpeg) in &parts {
        assert_eq!(decode(jpeg).rows(), 120);
    }
    assert!(
        parts.windows(2).all(|w| w[1].0 > w[0].0),
        "frames move on: {:?}",
        parts.iter().map(|p| p.0).collect::<Vec<_>>()
    );

    // Events: each classification event is its published message, seq included.
    let deadline = Instant::now() + PATIENCE;
    let seen = loop {
        let got: Vec<Value> = events
            .lock()
            .expect("events")
            .iter()
            .filter(|(k, v)| k == "classification" && v.get("region").is_none())
            .map(|(_, v)| v.clone())
            .collect();
        if got.len() >= 3 {
            break got;
        }
        assert!(Instant::now() < deadline, "too few events: {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for e in &seen {
        let seq = e["seq"].as_u64().expect("seq");
        let has =
            |m: &[common::Message]| m.iter().any(|m| m.topic == topic && m.json()["seq"] == seq);
        assert!(sub.wait_until(PATIENCE, has), "seq {seq} never published");
        let published = common::labels(&sub, topic)
            .into_iter()
            .find(|v| v["seq"] == seq);
        assert_eq!(
            Some(e),
            published.as_ref(),
            "the event is the published message"
        );
    }
    assert!(events
        .lock()
        .expect("events")
        .iter()
        .any(|(k, v)| k == "status" && v["camera"] == "cam"));
    let (code, detail) = http_get(admin, "/api/cameras/cam");
    assert_eq!(code, 200, "{detail}");
    let detail: Value = serde_json::from_str(&detail).expect("JSON");
    assert!(
        !detail["timeline"].as_array().expect("timeline").is_empty(),
        "{detail}"
    );
    assert!(
        !detail["series"]["points"]
            .as_array()
            .expect("points")
            .is_empty(),
        "{detail}"
    );
    assert_eq!(detail["regions"][0]["region"], "right");

    // Twenty viewers at once, ten on MJPEG and ten fetching stills: every one is served
    // classified frames of the height it asked for, and publishing goes on meanwhile.
    let published = sub.on(topic).len();
    let clients: Vec<std::thread::JoinHandle<Vec<u64>>> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    let (_, parts) = mjpeg_parts(admin, "/api/cameras/cam/stream.mjpeg?h=90", 3);
                    for (_, jpeg) in &parts {
                        assert_eq!(decode(jpeg).rows(), 90);
                    }
                    parts.into_iter().map(|(f, _)| f).collect()
                } else {
                    (0..3)
                        .map(|_| {
                            let (head, jpeg) = until_ok(admin, "/api/cameras/cam/latest.jpg?h=90");
                            assert_eq!(decode(&jpeg).rows(), 90);
                            header_value(&head, "X-Frame")
                                .and_then(|f| f.parse().ok())
                                .expect("X-Frame")
                        })
                        .collect()
                }
            })
        })
        .collect();
    let mut shown = HashSet::new();
    for c in clients {
        let frames = c.join().expect("a viewer failed");
        assert_eq!(frames.len(), 3);
        shown.extend(frames);
    }
    // Each frame shown is one that has its MQTT message.
    let has_all = |m: &[common::Message]| {
        let classified: HashSet<u64> = m
            .iter()
            .filter(|m| m.topic == topic)
            .filter_map(|m| m.json()["frame"].as_u64())
            .collect();
        shown.is_subset(&classified)
    };
    assert!(sub.wait_until(PATIENCE, has_all), "{shown:?}");
    assert!(
        sub.wait_until(PATIENCE, at_least(topic, published + 10)),
        "publishing stopped while 20 viewers watched"
    );

    // A viewer that stops reading: dropped once its writes time out, and publishing goes on.
    let viewers = "streamclassd_viewers";
    // Only the event stream is open once the MJPEG client above is gone.
    let before = 1.0;
    let deadline = Instant::now() + PATIENCE;
    while common::metric(admin, viewers) != Some(before) {
        assert!(
            Instant::now() < deadline,
            "{:?} viewers",
            common::metric(admin, viewers)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut stalled = TcpStream::connect(("127.0.0.1", admin)).expect("connect");
    write!(
        stalled,
        "GET /api/cameras/cam/stream.mjpeg?q=100 HTTP/1.0\r\nHost: x\r\n\r\n"
    )
    .expect("request");
    assert_eq!(
        wait_for_metric(admin, viewers, before + 1.0),
        Some(before + 1.0)
    );
    let published = sub.on(topic).len();
    assert!(
        sub.wait_until(PATIENCE, at_least(topic, published + 25)),
        "publishing stopped"
    );
    let deadline = Instant::now() + PATIENCE;
    while common::metric(admin, viewers) != Some(before) {
        assert!(
            Instant::now() < deadline,
            "the stalled viewer was never dropped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let seqs: Vec<u64> = common::labels(&sub, topic)
        .iter()
        .map(|v| v["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq contiguous: {seqs:?}"
    );
    drop(stalled);
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
}

#[test]
fn the_console_in_chromium_shows_the_camera_streaming_its_label_and_timeline() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && repo().join("node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run scripts/setup"
    );
    let (_broker, _server, mut d, admin, sub) = start("web");
    let shots = repo().join("target/console");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let out = std::process::Command::new("node")
        .arg(repo().join("tests/console/check.mjs"))
        .arg(format!("http://127.0.0.1:{admin}/"))
        .arg("cam")
        .arg(&shots)
        .current_dir(repo())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("the check's JSON");
    assert_eq!(seen["state"], "streaming", "{seen}");
    assert_eq!(seen["conn"], "live", "{seen}");
    let frames = seen["frames"].as_array().expect("frames");
    assert!(
        frames[1].as_u64() > frames[0].as_u64(),
        "the image refreshes: {seen}"
    );
    assert!(seen["image"]["width"].as_u64() > Some(0));
    // The label shown is one the daemon published for this camera.
    let top1 = seen["top1"].as_str().expect("top1");
    let labels: Vec<String> = common::labels(&sub, "web/cam/labels")
        .iter()
        .map(|v| {
            v["top5"][0]["label"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        labels.iter().any(|l| l == top1),
        "{top1} not among {labels:?}"
    );
    assert_eq!(seen["top5"].as_array().map(Vec::len), Some(5), "{seen}");
    assert_eq!(seen["regions"], serde_json::json!(["right"]), "{seen}");
    assert!(
        !seen["timeline"].as_array().expect("timeline").is_empty(),
        "{seen}"
    );
    assert_eq!(seen["viewTitle"], "cam");
    assert!(
        seen["phoneOverflow"].as_i64() <= Some(0),
        "wider than a phone: {seen}"
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    for shot in [
        "console-grid.png",
        "console-camera.png",
        "console-phone.png",
    ] {
        assert!(shots.join(shot).exists(), "{shot}");
    }
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
}
