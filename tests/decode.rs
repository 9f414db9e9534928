//! Decoding only what is classified: network streams with a known keyframe pattern,
//! served by a real RTSP server, read with `decode = "keyframes"`, `"auto"` and `"all"`.
//! Outcomes are exact where the stream fixes them (which frame indices are classified,
//! which mode is in use) and never a rate.

mod common;

use common::{
    at_least, config, fixtures, labels, Broker, Daemon, RtspServer, Subscriber, PATIENCE,
};
use serde_json::Value;

fn camera(id: &str, url: &str, fps: f64, extra: &str) -> String {
    format!("\n[[camera]]\nid = \"{id}\"\nsource = \"{url}\"\nfps = {fps}\n{extra}")
}

/// The daemon's config with `cameras` (each from [`camera`]) and no other.
fn daemon_config(broker: u16, prefix: &str, cameras: &[String]) -> String {
    config(broker, prefix, &[], "").replace("threads = 2\n", "threads = 1\n") + &cameras.concat()
}

/// The camera's retained statuses, as JSON, in order.
fn statuses(sub: &Subscriber, topic: &str) -> Vec<Value> {
    sub.on(topic)
        .into_iter()
        .filter(|m| !m.payload.is_empty())
        .map(|m| m.json())
        .collect()
}

fn decoding_is<'a>(topic: &'a str, mode: &'static str) -> impl Fn(&[common::Message]) -> bool + 'a {
    move |m: &[common::Message]| {
        m.iter()
            .filter(|m| m.topic == topic && !m.payload.is_empty())
            .any(|m| m.json()["decode"]["mode"] == mode)
    }
}

#[test]
fn keyframes_classifies_exactly_the_keyframes_of_the_stream() {
    // A keyframe every 10 frames; fps = 0 asks for every frame that is decoded.
    let server = RtspServer::start(&fixtures().join("gop10.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "key/#");
    let cam = camera("cam", &server.url(""), 0.0, "decode = \"keyframes\"\n");
    let mut d = Daemon::start(&daemon_config(broker.port, "key", &[cam]));
    assert!(
        sub.wait_until(PATIENCE, at_least("key/cam/labels", 12)),
        "{}",
        d.stderr()
    );
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    let frames: Vec<u64> = labels(&sub, "key/cam/labels")
        .iter()
        .filter_map(|m| m["frame"].as_u64())
        .collect();
    let first = frames[0];
    // The stream was joined mid-way: indices count from the client's first frame, and
    // every classified one is a keyframe, ten frames apart (a busy pipeline may drop
    // some, never classify another).
    for f in &frames {
        assert_eq!((f - first) % 10, 0, "{frames:?}");
    }
    assert!(frames.windows(2).all(|w| w[1] > w[0]), "{frames:?}");
    let skipped = d.total("cam", "skipped");
    let decoded = d.total("cam", "frames");
    // Nine of every ten frames were never decoded.
    assert!(
        skipped >= 9 * (decoded - 1),
        "{skipped} skipped, {decoded} decoded"
    );
    let st = statuses(&sub, "key/cam/status");
    let modes: Vec<&Value> = st.iter().map(|s| &s["decode"]["mode"]).collect();
    assert!(
        modes.iter().all(|m| m.is_null() || *m == "keyframes")
            && modes.contains(&&Value::from("keyframes")),
        "{st:?}"
    );
}

#[test]
fn auto_decodes_keyframes_at_1fps_on_a_1s_gop_and_everything_at_fps_0() {
    let server = RtspServer::start(&fixtures().join("gop25.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "auto/#");
    let url = server.url("");
    let cams = [camera("one", &url, 1.0, ""), camera("zero", &url, 0.0, "")];
    let mut d = Daemon::start(&daemon_config(broker.port, "auto", &cams));
    assert!(
        sub.wait_until(PATIENCE, decoding_is("auto/one/status", "keyframes")),
        "camera one never switched to keyframes:\n{}",
        d.stderr()
    );
    // Two keyframe intervals measured, and some classified frames after the switch.
    let before = sub.on("auto/one/labels").len();
    assert!(sub.wait_until(PATIENCE, at_least("auto/one/labels", before + 3)));
    assert!(sub.wait_until(PATIENCE, at_least("auto/zero/labels", 10)));
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    let log = d.stderr();
    assert!(
        log.lines().any(|l| l.contains("decoding changed")
            && l.contains("camera=one")
            && l.contains("keyframes")),
        "{log}"
    );
    let one = statuses(&sub, "auto/one/status");
    let last = one.last().expect("a status");
    let interval = last["decode"]["keyframe_interval_s"].as_f64();
    assert!(interval.is_some_and(|i| i > 0.0), "{last}");
    let zero = statuses(&sub, "auto/zero/status");
    assert!(
        zero.iter()
            .filter(|s| !s["decode"]["mode"].is_null())
            .all(|s| s["decode"]["mode"] == "all"),
        "fps = 0 needs every frame: {zero:?}"
    );
    assert_eq!(d.total("zero", "skipped"), 0);
    assert!(d.total("one", "skipped") > 0);
}

#[test]
fn a_keyframe_interval_longer_than_the_stall_timeout_is_not_a_stall() {
    // A keyframe every 5 s, a 2 s stall timeout: packets keep coming, so the camera
    // streams, classifying one frame per keyframe.
    let server = RtspServer::start(&fixtures().join("gop125.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "long/#");
    let cam = camera(
        "cam",
        &server.url(""),
        0.0,
        "decode = \"keyframes\"\nstall_timeout_s = 2\n",
    );
    let mut d = Daemon::start(&daemon_config(broker.port, "long", &[cam]));
    assert!(
        sub.wait_until(PATIENCE, at_least("long/cam/labels", 3)),
        "{}",
        d.stderr()
    );
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    let st = statuses(&sub, "long/cam/status");
    assert!(st.iter().all(|s| s["state"] != "stalled"), "{st:?}");
    assert_eq!(d.total("cam", "reconnects"), 0, "{}", d.stderr());
    let frames: Vec<u64> = labels(&sub, "long/cam/labels")
        .iter()
        .filter_map(|m| m["frame"].as_u64())
        .collect();
    // Keyframes every 125 frames, except where the looping clip starts over (its own
    // start is a keyframe too): every gap is a whole number of 125s or ends at a loop.
    assert!(frames.windows(2).all(|w| w[1] > w[0]), "{frames:?}");
}

#[test]
fn an_intra_refresh_stream_falls_back_to_every_frame_and_still_classifies() {
    // x264's intra refresh: recovery points are flagged as keyframes but do not decode to
    // whole pictures on their own.
    let server = RtspServer::start(&fixtures().join("intra.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "ir/#");
    let cam = camera("cam", &server.url(""), 1.0, "decode = \"keyframes\"\n");
    let mut d = Daemon::start(&daemon_config(broker.port, "ir", &[cam]));
    assert!(
        sub.wait_until(PATIENCE, decoding_is("ir/cam/status", "all")),
        "never fell back:\n{}",
        d.stderr()
    );
    let before = sub.on("ir/cam/labels").len();
    assert!(
        sub.wait_until(PATIENCE, at_least("ir/cam/labels", before + 5)),
        "{}",
        d.stderr()
    );
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    let log = d.stderr();
    let said = log
        .lines()
        .filter(|l| l.contains("keyframe-only decoding given up"))
        .count();
    assert_eq!(said, 1, "logged once:\n{log}");
}

#[test]
fn a_file_at_fps_1_classifies_one_frame_a_second_of_its_own_timeline() {
    // 200 frames at 25 fps: frames 0, 25, …, 175, every frame decoded (files are read in
    // full), whatever `decode` says.
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "file/#");
    let clip = fixtures().join("gop25.mp4");
    let cam = camera("f", &clip.display().to_string(), 1.0, "");
    let mut d = Daemon::start(&daemon_config(broker.port, "file", &[cam]));
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    assert!(sub.wait_until(PATIENCE, at_least("file/f/labels", 8)));
    let frames: Vec<u64> = labels(&sub, "file/f/labels")
        .iter()
        .filter_map(|m| m["frame"].as_u64())
        .collect();
    assert_eq!(frames, (0..8).map(|i| i * 25).collect::<Vec<u64>>());
    assert_eq!(d.total("f", "frames"), 200);
    assert_eq!(d.total("f", "skipped"), 0);
    let st = statuses(&sub, "file/f/status");
    assert!(
        st.iter()
            .all(|s| s["decode"]["mode"].is_null() || s["decode"]["mode"] == "all"),
        "{st:?}"
    );
}
