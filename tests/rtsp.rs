//! A live RTSP source, served by a real RTSP server (GStreamer) on loopback, classified
//! live and stopped cleanly (its last state `stopped`, before `offline`).

mod common;

use common::{
    config, fixtures, frames_per_worker, Broker, Daemon, RtspServer, Subscriber, PATIENCE,
};

#[test]
fn rtsp_stream_is_classified_live_and_drains_on_sigterm() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "live/#");
    let url = server.url("viewer:s3cretPW@");
    let mut d = Daemon::start(&config(broker.port, "live", &[("street", &url, 0.0)], ""));
    let enough = sub.wait_until(PATIENCE, |m| {
        m.iter().filter(|m| m.topic == "live/street/labels").count() >= 15
    });
    assert!(
        enough,
        "too few frames from the RTSP source; log:\n{}",
        d.stderr()
    );
    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.payload == b"offline")));

    let msgs: Vec<serde_json::Value> = sub
        .on("live/street/labels")
        .iter()
        .map(|m| m.json())
        .collect();
    let mut last_frame = None;
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m["seq"].as_u64(), Some(i as u64), "seq must be contiguous");
        let frame = m["frame"].as_u64().expect("frame");
        assert!(last_frame.is_none_or(|l| frame > l), "frames must advance");
        last_frame = Some(frame);
        assert_eq!(m["top5"].as_array().map(Vec::len), Some(5));
        // Every frame skipped by the live source is accounted for in `dropped`.
        assert!(m["dropped"].as_u64().expect("dropped") <= frame);
    }
    // The camera's last retained state says it stopped, before the daemon's `offline`.
    let all = sub.messages();
    let position = |pred: &dyn Fn(&common::Message) -> bool| all.iter().rposition(pred);
    let stopped = position(&|m| m.topic == "live/street/status" && m.json()["state"] == "stopped");
    let offline = position(&|m| m.topic == "live/status" && m.payload == b"offline");
    assert!(
        stopped.is_some() && stopped < offline,
        "{stopped:?} {offline:?}:\n{log}"
    );
    let last = sub
        .on("live/street/status")
        .last()
        .map(|m| m.json()["state"].clone());
    assert_eq!(last, Some("stopped".into()));
    assert!(!log.contains("s3cretPW"), "password leaked:\n{log}");
    assert!(log.contains("rtsp://viewer:***@127.0.0.1"), "{log}");
}

/// A live camera has at most one frame in flight, however many workers there are: with
/// two workers and one live camera, every frame went to the first free worker (the
/// first), so the second never ran one; the labels still advance frame by frame.
#[test]
fn a_live_camera_keeps_one_frame_in_flight_with_two_workers() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "one/#");
    let url = server.url("");
    let mut d = Daemon::start(&config(
        broker.port,
        "one",
        &[("street", &url, 0.0)],
        "workers = 2\nthreads = 1\n",
    ));
    let enough = sub.wait_until(PATIENCE, |m| {
        m.iter().filter(|m| m.topic == "one/street/labels").count() >= 15
    });
    assert!(enough, "too few frames; log:\n{}", d.stderr());
    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    let frames: Vec<u64> = sub
        .on("one/street/labels")
        .iter()
        .map(|m| m.json()["frame"].as_u64().expect("frame"))
        .collect();
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
    let per_worker = frames_per_worker(&log);
    assert_eq!(per_worker.len(), 2, "{per_worker:?}\n{log}");
    assert!(per_worker[0].1 >= 15, "{per_worker:?}");
    assert_eq!(
        per_worker[1].1, 0,
        "a second frame was in flight: {per_worker:?}"
    );
}
