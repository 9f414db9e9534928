//! Hot reload (SIGHUP) against a real broker, a real RTSP server and real models: cameras
//! added, removed and changed start and stop alone (a removed camera's console stream
//! ends), an invalid configuration is rejected while the running one keeps going, and a
//! changed model takes over only once warmed up.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use common::{
    at_least, config, fixtures, labels, Broker, Daemon, Message, RtspServer, Subscriber, PATIENCE,
};
use serde_json::Value;

/// Asserts `seq` runs 0, 1, 2, ... with no gap and no restart (QoS 1 duplicates aside).
fn assert_contiguous(msgs: &[Value], what: &str) {
    let mut next = 0;
    for m in msgs {
        let s = m["seq"].as_u64().expect("seq");
        assert!(s <= next, "{what}: seq jumped from {} to {s}", next - 1);
        if s == next {
            next += 1;
        }
    }
}

/// The `state` of each status message of a camera, in order (empty payload: cleared).
fn states(sub: &Subscriber, topic: &str) -> Vec<String> {
    sub.on(topic)
        .iter()
        .map(|m| {
            if m.payload.is_empty() {
                "(cleared)".to_owned()
            } else {
                m.json()["state"].as_str().unwrap_or("?").to_owned()
            }
        })
        .collect()
}

/// Opens an MJPEG stream on the admin listener and reads until its first part's headers
/// (the camera is watched and has a kept frame); the rest is left to read.
fn watch(admin: u16, path: &str) -> BufReader<TcpStream> {
    let (head, mut r) = common::http_stream(admin, path);
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).expect("the stream");
        assert!(n > 0, "the stream ended before its first part: {head}");
        if line.starts_with(b"X-Frame:") {
            return r;
        }
    }
}

/// Rewrites the daemon's configuration file and sends SIGHUP; waits for the outcome.
fn reload(d: &Daemon, text: &str, outcome: &str) {
    let before = d.stderr().matches(outcome).count();
    std::fs::write(d.dir.path().join("config.toml"), text).expect("rewrite config");
    d.signal("HUP");
    let seen = (0..(PATIENCE.as_millis() / 50)).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        d.stderr().matches(outcome).count() > before
    });
    assert!(seen, "no {outcome:?} after SIGHUP; log:\n{}", d.stderr());
}

/// Waits until each of `cams` has published 3 label messages under `prefix`.
fn wait_streaming(sub: &Subscriber, d: &Daemon, prefix: &str, cams: &[&str]) {
    for cam in cams {
        let topic = format!("{prefix}/{cam}/labels");
        assert!(
            sub.wait_until(PATIENCE, at_least(&topic, 3)),
            "{cam} never streamed; log:\n{}",
            d.stderr()
        );
    }
}

const APPLIED: &str = "configuration reloaded";
const REJECTED: &str = "configuration reload rejected";

#[test]
fn cameras_added_removed_and_changed_leave_the_others_alone() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "hot/#");
    let url = server.url("");
    let admin = common::stable_port();
    let hot = |cams: &[(&str, &str, f64)]| {
        config(broker.port, "hot", cams, "")
            + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n")
    };
    let mut d = Daemon::start(&hot(&[("a", &url, 4.0), ("b", &url, 4.0)]));
    wait_streaming(&sub, &d, "hot", &["a", "b"]);
    // Someone watches b: its MJPEG stream is open and a frame of it is kept.
    let mut viewer = watch(admin, "/api/cameras/b/stream.mjpeg?h=90");

    // b leaves, c joins; a is not touched.
    reload(&d, &hot(&[("a", &url, 4.0), ("c", &url, 4.0)]), APPLIED);
    assert!(
        sub.wait_until(PATIENCE, at_least("hot/c/labels", 3)),
        "the added camera never streamed; log:\n{}",
        d.stderr()
    );
    assert!(
        sub.wait_until(PATIENCE, |m| m
            .iter()
            .any(|m| m.topic == "hot/b/status" && m.payload.is_empty())),
        "the removed camera's retained status was not cleared"
    );
    // The removed camera's stream ends (its place among the streams is free again), and
    // it is gone from the API.
    let mut rest = Vec::new();
    let ended = std::io::Read::read_to_end(&mut viewer, &mut rest);
    assert!(ended.is_ok(), "b's MJPEG stream did not end: {ended:?}");
    let (code, _, _) = common::http_bytes(admin, "/api/cameras/b/latest.jpg", &[]);
    assert_eq!(code, 404);
    let deadline = std::time::Instant::now() + PATIENCE;
    while common::metric(admin, "streamclassd_viewers") != Some(0.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "a viewer is still counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let b_after_removal = sub.on("hot/b/labels").len();
    let a_now = sub.on("hot/a/labels").len();
    assert!(sub.wait_until(PATIENCE, at_least("hot/a/labels", a_now + 4)));
    assert_eq!(
        sub.on("hot/b/labels").len(),
        b_after_removal,
        "a removed camera keeps publishing"
    );
    assert_eq!(
        states(&sub, "hot/a/status")
            .iter()
            .filter(|s| *s == "starting")
            .count(),
        1,
        "camera a was restarted by a reload that did not change it: {:?}",
        states(&sub, "hot/a/status")
    );

    // a changes (fps): only a restarts, and its seq continues.
    reload(&d, &hot(&[("a", &url, 2.0), ("c", &url, 4.0)]), APPLIED);
    assert!(
        sub.wait_until(PATIENCE, |m| m
            .iter()
            .filter(|m| m.topic == "hot/a/status"
                && !m.payload.is_empty()
                && m.json()["state"] == "starting")
            .count()
            == 2),
        "the changed camera was not restarted: {:?}",
        states(&sub, "hot/a/status")
    );
    let a_now = sub.on("hot/a/labels").len();
    assert!(sub.wait_until(PATIENCE, at_least("hot/a/labels", a_now + 3)));
    let c_states = states(&sub, "hot/c/status");
    assert_eq!(
        c_states.iter().filter(|s| *s == "starting").count(),
        1,
        "camera c was restarted by a change to camera a: {c_states:?}"
    );

    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_contiguous(&labels(&sub, "hot/a/labels"), "a");
    assert_contiguous(&labels(&sub, "hot/b/labels"), "b");
    assert_contiguous(&labels(&sub, "hot/c/labels"), "c");
    assert_eq!(
        d.summary_cameras(),
        vec!["a", "c"],
        "a removed camera is not in the final summary:\n{log}"
    );
}

#[test]
fn regions_added_changed_and_removed_keep_the_source_open() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "roi/#");
    let url = server.url("");
    let base = config(broker.port, "roi", &[("a", &url, 4.0)], "");
    let region = |rect: &str| {
        format!("\n[[camera.region]]\nname = \"door\"\nrect = {rect}\nfit = \"stretch\"\n")
    };
    let mut d = Daemon::start(&base);
    wait_streaming(&sub, &d, "roi", &["a"]);
    let topic = "roi/a/region/door/labels";

    // A region appears: classified on its own topic, the whole frame goes on.
    reload(&d, &(base.clone() + &region("[0, 0, 320, 180]")), APPLIED);
    assert!(
        sub.wait_until(PATIENCE, at_least(topic, 3)),
        "{}",
        d.stderr()
    );
    let whole = sub.on("roi/a/labels").len();
    assert!(sub.wait_until(PATIENCE, at_least("roi/a/labels", whole + 3)));

    // It moves: new frames show the new input_rect; the whole frame is switched off.
    let moved = base.replace("fps = 4\n", "fps = 4\nfull_frame = false\n")
        + &region("[320, 180, 320, 180]");
    reload(&d, &moved, APPLIED);
    let rect = |m: &Message| m.json()["input_rect"].clone();
    assert!(
        sub.wait_until(PATIENCE, |m| m
            .iter()
            .filter(|m| m.topic == topic)
            .any(|m| rect(m) == serde_json::json!([320, 180, 320, 180]))),
        "{}",
        d.stderr()
    );
    let whole = sub.on("roi/a/labels").len();
    let door = sub.on(topic).len();
    assert!(sub.wait_until(PATIENCE, at_least(topic, door + 3)));
    assert!(
        sub.on("roi/a/labels").len() <= whole + 1,
        "the whole frame is still classified with full_frame = false"
    );

    // And goes: the whole frame is back, the region's topic falls silent.
    reload(&d, &base, APPLIED);
    let whole = sub.on("roi/a/labels").len();
    assert!(sub.wait_until(PATIENCE, at_least("roi/a/labels", whole + 3)));
    let door = sub.on(topic).len();
    let whole = sub.on("roi/a/labels").len();
    assert!(sub.wait_until(PATIENCE, at_least("roi/a/labels", whole + 3)));
    assert!(
        sub.on(topic).len() <= door + 1,
        "a removed region is still classified"
    );

    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    // The source was opened once: no reload reopened it, and the camera never restarted.
    assert_eq!(log.matches("source opened").count(), 1, "{log}");
    let starts = states(&sub, "roi/a/status")
        .iter()
        .filter(|s| *s == "starting")
        .count();
    assert_eq!(starts, 1, "{:?}", states(&sub, "roi/a/status"));
    assert_contiguous(&labels(&sub, "roi/a/labels"), "whole frame");
    assert_contiguous(&labels(&sub, topic), "region door");
    // Every message on the region's topic names it and the rect it was classified with.
    for m in labels(&sub, topic) {
        assert_eq!(m["region"], "door");
        let r = &m["input_rect"];
        assert!(
            r == &serde_json::json!([0, 0, 320, 180])
                || r == &serde_json::json!([320, 180, 320, 180]),
            "{m}"
        );
    }
}

#[test]
fn an_invalid_config_is_rejected_and_the_running_one_keeps_going() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "bad/#");
    let url = server.url("");
    let good = config(broker.port, "bad", &[("a", &url, 4.0)], "");
    let mut d = Daemon::start(&good);
    assert!(sub.wait_until(PATIENCE, at_least("bad/a/labels", 3)));

    // Field-level problems, named as `check-config` names them.
    let invalid = config(
        broker.port,
        "bad",
        &[("a", &url, 4.0), ("b", &url, -1.0)],
        "top_k = 0",
    );
    reload(&d, &invalid, REJECTED);
    let log = d.stderr();
    assert!(log.contains("camera[1].fps"), "{log}");
    assert!(log.contains("model.top_k"), "{log}");
    // A camera whose file does not exist.
    let missing = config(
        broker.port,
        "bad",
        &[("a", &url, 4.0), ("f", "/nonexistent/clip.mp4", 0.0)],
        "",
    );
    reload(&d, &missing, REJECTED);
    assert!(d.stderr().contains("/nonexistent/clip.mp4"));
    // A model that is not a model: rejected after the load fails, nothing swapped.
    let not_a_model = d.dir.path().join("broken.onnx");
    std::fs::write(&not_a_model, b"not an ONNX file").expect("write");
    let broken = good.replace(
        &common::model().display().to_string(),
        &not_a_model.display().to_string(),
    );
    reload(&d, &broken, REJECTED);
    assert!(
        !d.stderr().contains(APPLIED),
        "nothing was applied:\n{}",
        d.stderr()
    );

    // The original configuration kept running all along.
    let now = sub.on("bad/a/labels").len();
    assert!(
        sub.wait_until(PATIENCE, at_least("bad/a/labels", now + 4)),
        "the running camera stopped after a rejected reload; log:\n{}",
        d.stderr()
    );
    for cam in ["b", "f"] {
        assert!(
            sub.on(&format!("bad/{cam}/labels")).is_empty()
                && states(&sub, &format!("bad/{cam}/status")).is_empty(),
            "camera {cam} of a rejected configuration started"
        );
    }
    // And it still reloads when given a valid file.
    reload(
        &d,
        &config(
            broker.port,
            "bad",
            &[("a", &url, 4.0), ("b", &url, 4.0)],
            "",
        ),
        APPLIED,
    );
    assert!(sub.wait_until(PATIENCE, at_least("bad/b/labels", 2)));
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    assert_contiguous(&labels(&sub, "bad/a/labels"), "a");
}

#[test]
fn a_changed_model_is_warmed_up_before_it_replaces_the_running_one() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "swap/#");
    let url = server.url("");
    let cams = [("a", url.as_str(), 5.0), ("b", url.as_str(), 5.0)];
    let mut d = Daemon::start(&config(broker.port, "swap", &cams, ""));
    // Both cameras run on the first model before the reload (they open their RTSP
    // sessions one after the other).
    wait_streaming(&sub, &d, "swap", &["a", "b"]);

    // ResNet-18 instead of ResNet-50, and caffe preprocessing instead of torchvision's:
    // every camera's preprocessing changes along with the model.
    let resnet18 = fixtures().join("resnet18.onnx");
    let changed = config(broker.port, "swap", &cams, "")
        .replace(
            &common::model().display().to_string(),
            &resnet18.display().to_string(),
        )
        .replace("name = \"resnet50\"", "name = \"resnet18\"")
        + "\n[model.preprocess]\npreset = \"caffe\"\n";
    reload(&d, &changed, APPLIED);
    let switched = |topic: &'static str| {
        move |m: &[Message]| {
            m.iter()
                .filter(|m| m.topic == topic && m.json()["model"] == "resnet18")
                .count()
                >= 3
        }
    };
    assert!(
        sub.wait_until(PATIENCE, switched("swap/a/labels"))
            && sub.wait_until(PATIENCE, switched("swap/b/labels")),
        "the new model never classified; log:\n{}",
        d.stderr()
    );
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    let log = d.stderr();

    // Loaded and warmed up (second "model loaded") before the swap, which the
    // reload reports as applied.
    let loaded = log
        .match_indices("model loaded and warmed up")
        .nth(1)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("the new model was not loaded:\n{log}"));
    let swapped = log
        .find("model swapped in")
        .unwrap_or_else(|| panic!("no swap:\n{log}"));
    assert!(loaded < swapped, "{log}");
    for cam in ["a", "b"] {
        let msgs = labels(&sub, &format!("swap/{cam}/labels"));
        assert_contiguous(&msgs, cam);
        let models: Vec<&str> = msgs.iter().filter_map(|m| m["model"].as_str()).collect();
        let switch = models
            .iter()
            .position(|m| *m == "resnet18")
            .expect("switched");
        assert!(switch > 0, "{cam}: no frame from the first model");
        assert!(
            models[..switch].iter().all(|m| *m == "resnet50")
                && models[switch..].iter().all(|m| *m == "resnet18"),
            "{cam}: models interleave: {models:?}"
        );
    }
}
