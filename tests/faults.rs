//! Fault injection against real servers: the broker, RTSP servers and the daemon itself
//! are killed, frozen and restarted; nothing is lost beyond the counted bounds, and one
//! camera's trouble never stops another.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_complete_in_order, at_least, config, fixtures, labels, Broker, Daemon, Message,
    RtspServer, Subscriber, PATIENCE,
};

fn photos() -> String {
    fixtures().join("photos.mp4").display().to_string()
}

fn count(topic: &str) -> impl Fn(&[Message]) -> bool + '_ {
    move |m: &[Message]| m.iter().filter(|m| m.topic == topic).count() > 0
}

/// Waits for a daemon on photos.mp4 that lost its broker to exit 0 (everything confirmed);
/// returns the messages it published: all 120 frames (a real-time file loses none).
fn delivered_after_the_loss(d: &mut Daemon) -> u64 {
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("lost MQTT broker"), "{log}");
    let n = d.total("cam", "published");
    assert_eq!(
        n, 120,
        "a real-time file source classifies every frame:\n{log}"
    );
    n
}

/// The camera's successive states: the retained status is also republished every
/// `STATUS_REFRESH` with fresh counters, so a repeat of the same state is not a change
/// (one refresh can fall between `stopped` and the daemon's exit).
fn statuses(sub: &Subscriber, topic: &str) -> Vec<String> {
    let mut states: Vec<String> = sub
        .on(topic)
        .iter()
        .map(|m| m.json()["state"].as_str().unwrap_or("").to_owned())
        .collect();
    states.dedup();
    states
}

#[test]
fn broker_outage_mid_stream_loses_nothing_at_qos1() {
    let mut broker = Broker::start_persistent();
    let sub = Subscriber::connect_with(broker.port, "out/#", true);
    let clip = photos();
    let admin = common::stable_port();
    let mut cfg = config(broker.port, "out", &[("cam", &clip, 0.0)], "")
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    cfg = cfg.replace("fps = 0\n", "fps = 0\nrealtime = true\n");
    // Waiting for the broker at the end is not what is measured: a generous grace period
    // keeps a slow reconnect on a loaded machine from failing the run.
    let mut d = Daemon::start_with(&cfg, &["--shutdown-grace", "60s"], &[]);
    assert!(
        sub.wait_until(PATIENCE, at_least("out/cam/labels", 15)),
        "{}",
        d.stderr()
    );

    // The outage lasts until 24 more frames have been classified with the broker away,
    // however long a loaded machine takes for them. Of those, only the frames already
    // between capture and the publisher when it went were captured before (a file's
    // edges hold at most 6: one blocked in capture, two queued, one in preprocessing,
    // one handed over, one in inference).
    let classified = "streamclassd_frames_classified_total{camera=\"cam\"}";
    broker.stop();
    let down = std::time::SystemTime::now();
    let before = common::metric(admin, classified).expect("admin metrics");
    let reached = common::wait_for_metric(admin, classified, before + 24.0);
    assert!(
        reached >= Some(before + 24.0),
        "only {reached:?} of {} frames classified during the outage:\n{}",
        before + 24.0,
        d.stderr()
    );
    let up = std::time::SystemTime::now();
    broker.restart();

    let n = delivered_after_the_loss(&mut d);
    // The daemon exited after the broker confirmed everything: delivery is imminent.
    sub.wait_until(
        Duration::from_secs(30),
        at_least("out/cam/labels", n as usize),
    );
    let msgs = labels(&sub, "out/cam/labels");
    let connacks: Vec<String> = sub
        .messages()
        .iter()
        .filter(|m| m.topic.starts_with("$connack"))
        .map(|m| m.topic.clone())
        .collect();
    // The subscriber's session survived the broker restart, so it cannot have missed
    // anything that was delivered before it reconnected.
    assert_eq!(
        connacks.last().map(String::as_str),
        Some("$connack/session_present=true"),
        "{connacks:?}"
    );
    let dups = assert_complete_in_order(&msgs, n);
    // Frames classified while the broker was down arrived after it came back.
    let during = msgs
        .iter()
        .filter(|m| {
            let t = humantime::parse_rfc3339(m["captured_at"].as_str().unwrap_or(""))
                .expect("captured_at");
            t > down && t < up
        })
        .count();
    // 24 were classified between `down` and `up`, at most 6 of them captured before (and
    // one or two waiting for the publisher).
    assert!(
        during >= 16,
        "only {during} messages captured during the outage"
    );
    eprintln!(
        "broker outage: {n} messages, {during} captured during the outage, {dups} duplicates"
    );
}

#[test]
fn broker_crash_with_messages_in_flight_loses_nothing() {
    // The broker is frozen, so every message written meanwhile waits for its PUBACK,
    // then killed: the daemon's new connection is a new session (its client forgets what
    // it had in flight), and the daemon must send those messages again itself.
    let mut broker = Broker::start_autosaving();
    let subscribed = std::time::SystemTime::now();
    let sub = Subscriber::connect_with(broker.port, "crash/#", true);
    broker.wait_saved_since(subscribed);
    let clip = photos();
    let admin = common::stable_port();
    let cfg = config(broker.port, "crash", &[("cam", &clip, 0.0)], "")
        .replace("fps = 0\n", "fps = 0\nrealtime = true\n")
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let mut d = Daemon::start_with(&cfg, &["--shutdown-grace", "60s"], &[]);
    assert!(
        sub.wait_until(PATIENCE, at_least("crash/cam/labels", 10)),
        "{}",
        d.stderr()
    );
    broker.freeze();
    let classified = "streamclassd_frames_classified_total{camera=\"cam\"}";
    let before = common::metric(admin, classified).expect("admin metrics");
    let reached = common::wait_for_metric(admin, classified, before + 12.0);
    assert!(reached >= Some(before + 12.0), "{}", d.stderr());
    broker.kill();
    broker.restart();

    let n = delivered_after_the_loss(&mut d);
    sub.wait_until(PATIENCE, at_least("crash/cam/labels", n as usize));
    let msgs = labels(&sub, "crash/cam/labels");
    let dups = assert_complete_in_order(&msgs, n);
    eprintln!("broker crash: {n} messages, {dups} duplicates");
}

#[test]
fn sigterm_with_the_broker_down_spools_and_the_next_start_delivers() {
    let mut broker = Broker::start_persistent();
    let sub = Subscriber::connect_with(broker.port, "spool/#", true);
    let spool = tempfile::tempdir().expect("spool dir");
    let clip = photos();
    let admin = common::stable_port();
    let cfg = config(broker.port, "spool", &[("cam", &clip, 0.0)], "")
        .replace("fps = 0\n", "fps = 0\nrealtime = true\n")
        .replace(
            "qos = 1\n",
            &format!("qos = 1\nspool_dir = \"{}\"\n", spool.path().display()),
        )
        + "\n[[camera.region]]\nname = \"top\"\nrect = [0, 0, 640, 180]\nfit = \"pad\"\n"
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");

    let mut first = Daemon::start(&cfg);
    assert!(sub.wait_until(PATIENCE, at_least("spool/cam/labels", 10)));
    broker.stop();
    // Frames classified after the broker went cannot have been delivered.
    let classified = "streamclassd_frames_classified_total{camera=\"cam\"}";
    let before = common::metric(admin, classified).expect("admin metrics");
    let reached = common::wait_for_metric(admin, classified, before + 5.0);
    assert!(reached >= Some(before + 5.0), "{}", first.stderr());
    first.signal("TERM");
    let status = first.wait();
    let log = first.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(first.summary()["spooled"].as_u64() >= Some(5), "{log}");
    let k = first.total("cam", "published");
    assert!(k > 10, "{log}");

    broker.restart();
    let mut second = Daemon::start(&cfg.replace("realtime = true\n", ""));
    let status = second.wait();
    let log2 = second.stderr();
    assert_eq!(status.code(), Some(0), "{log2}");
    assert!(
        log2.contains("delivering messages spooled by the previous run"),
        "{log2}"
    );
    let m = second.total("cam", "published");
    // Each frame gave a whole-frame and a region message (a stop drains both).
    assert!(
        k.is_multiple_of(2) && m.is_multiple_of(2),
        "{k} and {m} messages: {log}\n{log2}"
    );
    let total = (k + m) / 2;
    let mut dups = 0;
    for topic in ["spool/cam/labels", "spool/cam/region/top/labels"] {
        assert!(sub.wait_until(PATIENCE, at_least(topic, total as usize)));
        let msgs = labels(&sub, topic);
        // seq continues across the restart (per stream), so both runs together are
        // 0..(k+m)/2 on each topic.
        dups += assert_complete_in_order(&msgs, total);
    }
    eprintln!("spool: first run {k} messages (stopped with the broker down), second run {m}, {dups} duplicates");
}

#[test]
fn rtsp_server_restart_reconnects_while_the_other_camera_keeps_publishing() {
    let clip = fixtures().join("clip.mp4");
    let mut a = RtspServer::start(&clip);
    let b = RtspServer::start(&clip);
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "two/#");
    let cfg = config(
        broker.port,
        "two",
        &[("a", &a.url(""), 0.0), ("b", &b.url(""), 0.0)],
        "",
    )
    .replace(
        "fps = 0\n",
        "fps = 0\nstall_timeout_s = 2\nreconnect_max_s = 2\n",
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        sub.wait_until(PATIENCE, at_least("two/a/labels", 10)),
        "{}",
        d.stderr()
    );
    assert!(sub.wait_until(PATIENCE, at_least("two/b/labels", 10)));

    a.kill();
    let killed = Instant::now();
    // While a is down (until it is restarted below), b keeps publishing: wait for a to
    // notice, then for 20 more frames of b. No time bound: a loaded machine is slower,
    // not wrong.
    assert!(
        sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.topic == "two/a/status"
            && matches!(
                m.json()["state"].as_str(),
                Some("reconnecting" | "stalled")
            ))),
        "camera a never noticed its server died:\n{}",
        d.stderr()
    );
    let b_before = sub.on("two/b/labels").len();
    assert!(
        sub.wait_until(PATIENCE, at_least("two/b/labels", b_before + 20)),
        "camera b stopped publishing while a was down:\n{}",
        d.stderr()
    );
    let b_during = sub.on("two/b/labels").len() - b_before;
    let a_before = sub.on("two/a/labels").len();
    a.restart();
    let restarted = Instant::now();
    let resumed = sub.wait_until(PATIENCE, at_least("two/a/labels", a_before + 10));
    let took = restarted.elapsed();
    assert!(resumed, "camera a never resumed:\n{}", d.stderr());

    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    let a_states = statuses(&sub, "two/a/status");
    assert!(
        a_states
            .iter()
            .any(|s| s == "reconnecting" || s == "stalled"),
        "{a_states:?}"
    );
    // It recovered: streaming again until the daemon stopped.
    let tail: Vec<&str> = a_states
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["streaming", "stopped"], "{a_states:?}");
    assert!(d.total("a", "reconnects") >= 1);
    assert_eq!(d.total("b", "reconnects"), 0);
    for cam in ["a", "b"] {
        let msgs = labels(&sub, &format!("two/{cam}/labels"));
        assert_complete_in_order(&msgs, msgs.len() as u64);
    }
    eprintln!(
        "rtsp restart: camera a resumed {:.1} s after the server restarted ({:.1} s after the kill); \
         camera b published {b_during} messages while a was reconnecting",
        took.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
}

#[test]
fn frozen_rtsp_server_makes_the_camera_stalled_then_it_recovers() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "frz/#");
    let cfg = config(broker.port, "frz", &[("cam", &server.url(""), 0.0)], "").replace(
        "fps = 0\n",
        "fps = 0\nstall_timeout_s = 2\nopen_timeout_s = 2\nreconnect_max_s = 2\n",
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        sub.wait_until(PATIENCE, at_least("frz/cam/labels", 10)),
        "{}",
        d.stderr()
    );

    server.freeze();
    let stalled = sub.wait_until(PATIENCE, |m| {
        m.iter()
            .any(|m| m.topic == "frz/cam/status" && m.json()["state"] == "stalled")
    });
    assert!(stalled, "never reported stalled:\n{}", d.stderr());
    let before = sub.on("frz/cam/labels").len();
    server.thaw();
    let resumed = sub.wait_until(PATIENCE, at_least("frz/cam/labels", before + 10));
    assert!(resumed, "no frames after SIGCONT:\n{}", d.stderr());

    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("source stalled; reopening"), "{log}");
    let states = statuses(&sub, "frz/cam/status");
    let stall_at = states.iter().position(|s| s == "stalled").expect("stalled");
    assert!(
        states[stall_at..].iter().any(|s| s == "streaming"),
        "no recovery after the stall: {states:?}"
    );
    let status = sub.on("frz/cam/status");
    let last = status.last().expect("a status").json();
    assert!(last["reconnects"].as_u64().unwrap_or(0) >= 1, "{last}");
}

#[test]
fn live_source_faster_than_inference_drops_frames_instead_of_lagging() {
    // 100 fps RTSP into a ResNet-50 on one thread (at most ~30 frames/s on these CPUs):
    // most frames must be dropped and counted, none queued.
    let server = RtspServer::start(&fixtures().join("clip100.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "fast/#");
    let cfg = config(broker.port, "fast", &[("cam", &server.url(""), 0.0)], "")
        .replace("threads = 2\n", "threads = 1\n");
    let mut d = Daemon::start(&cfg);
    assert!(
        sub.wait_until(PATIENCE, at_least("fast/cam/labels", 120)),
        "{}",
        d.stderr()
    );
    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");

    let msgs = labels(&sub, "fast/cam/labels");
    let n = msgs.len();
    let last = &msgs[n - 1];
    let frames = last["frame"].as_u64().expect("frame") + 1;
    let dropped = last["dropped"].as_u64().expect("dropped");
    assert!(
        dropped > 0,
        "nothing dropped: the source should outpace inference"
    );
    // Every decoded frame is classified, dropped, or was still waiting at the end.
    assert!(n as u64 + dropped <= frames, "{n} + {dropped} > {frames}");
    // Dropped frames are the newest-wins edge at work, not loss: each message's `dropped`
    // only grows, and frames advance strictly. How fresh the classified frames stay
    // (capture→publish latency under overload) is measured by `scripts/bench`.
    for w in msgs.windows(2) {
        assert!(w[1]["frame"].as_u64() > w[0]["frame"].as_u64(), "{w:?}");
        assert!(
            w[1]["dropped"].as_u64() >= w[0]["dropped"].as_u64(),
            "{w:?}"
        );
    }
    eprintln!("fast source: {n} classified, {dropped} dropped of {frames} frames");
}

#[test]
fn sigterm_drains_every_frame_that_entered_preprocessing() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "drain/#");
    let clip = photos();
    let cfg = config(broker.port, "drain", &[("cam", &clip, 0.0)], "")
        .replace("fps = 0\n", "fps = 0\nrealtime = true\n");
    let mut d = Daemon::start(&cfg);
    assert!(sub.wait_until(PATIENCE, at_least("drain/cam/labels", 20)));
    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    let entered = d.total("cam", "preprocessed");
    let published = d.total("cam", "published");
    assert_eq!(entered, published, "{log}");
    assert!(entered < 120, "SIGTERM came too late to test draining");
    assert!(sub.wait_until(PATIENCE, |m| m
        .iter()
        .any(|m| m.topic == "drain/status" && m.payload == b"offline")));
    let msgs = labels(&sub, "drain/cam/labels");
    assert_eq!(msgs.len() as u64, entered);
    assert_complete_in_order(&msgs, entered);
}

#[test]
fn damaged_file_is_read_to_its_end() {
    // Overwrite 30 KB in the middle of the clip with garbage.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = std::fs::read(fixtures().join("photos.mp4")).expect("clip");
    let mid = data.len() / 2;
    let mut x = 12345u32;
    for b in &mut data[mid..mid + 30_000] {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let damaged = dir.path().join("damaged.mp4");
    std::fs::write(&damaged, &data).expect("write");

    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "dmg/#");
    let damaged = damaged.display().to_string();
    let mut d = Daemon::start(&config(broker.port, "dmg", &[("cam", &damaged, 0.0)], ""));
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    let published = d.total("cam", "published");
    let frames = d.total("cam", "frames");
    let errors = d.total("cam", "decode_errors");
    assert_eq!(published, frames, "every decoded frame is classified");
    assert!(sub.wait_until(PATIENCE, count("dmg/status")));
    assert!(sub.wait_until(PATIENCE, at_least("dmg/cam/labels", published as usize)));
    let msgs = labels(&sub, "dmg/cam/labels");
    assert_complete_in_order(&msgs, published);
    // The frames after the damage were read: the last ones of the 120-frame clip arrived.
    let last = msgs
        .iter()
        .filter_map(|m| m["frame"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        last + errors >= 110,
        "reading stopped at frame {last} ({errors} undecodable)"
    );
    eprintln!(
        "damaged file: {frames} frames decoded, {errors} undecodable, last frame index {last}"
    );
}

#[test]
fn refused_credentials_are_reported_and_retried() {
    let broker = Broker::start_with_password("streamer", "correct horse");
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "battery staple\n").expect("write");
    let right = dir.path().join("right");
    std::fs::write(&right, "correct horse\n").expect("write");
    let clip = fixtures().join("clip.mp4").display().to_string();
    let cfg = |pw: &std::path::Path| {
        config(broker.port, "auth", &[("cam", &clip, 5.0)], "").replace(
            "qos = 1\n",
            &format!(
                "qos = 1\nusername = \"streamer\"\npassword_file = \"{}\"\n",
                pw.display()
            ),
        )
    };
    let mut d = Daemon::start_with(&cfg(&wrong), &["--shutdown-grace", "2s"], &[]);
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(75), "{log}");
    // mosquitto answers a wrong password with "not authorized" (MQTT 3.1.1 code 5).
    let refusals = log
        .matches("broker refused the connection: not authorized")
        .count();
    assert!(refusals >= 2, "expected retries with backoff:\n{log}");
    assert!(!log.contains("battery staple"), "password in the log");

    let mut d = Daemon::start(&cfg(&right));
    let status = d.wait();
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
}

#[test]
fn mqtt5_message_expiry_keeps_stale_labels_from_late_subscribers() {
    // A subscriber with a persistent session goes away; the daemon publishes 10 labels
    // (MQTT 5, expiry 2 s); the subscriber comes back 3 s later. With expiry it gets none
    // of the stale labels; without (the control run) the broker kept all 10 for it.
    let broker = Broker::start();
    let clip = fixtures().join("clip.mp4").display().to_string();
    for (prefix, expiry, expect) in [("ctl", "", 10usize), ("exp", "message_expiry_s = 2\n", 0)] {
        let id = format!("late-{prefix}");
        drop(Subscriber::connect_as(
            broker.port,
            &format!("{prefix}/#"),
            &id,
            true,
        ));
        let cfg = config(broker.port, prefix, &[("cam", &clip, 5.0)], "")
            .replace("qos = 1\n", &format!("qos = 1\nprotocol = \"5\"\n{expiry}"));
        let mut d = Daemon::start(&cfg);
        let status = d.wait();
        assert_eq!(status.code(), Some(0), "{}", d.stderr());
        std::thread::sleep(Duration::from_secs(3));
        let sub = Subscriber::connect_as(broker.port, &format!("{prefix}/#"), &id, true);
        // The retained camera status (no expiry) proves the session delivered.
        assert!(sub.wait_until(PATIENCE, count(&format!("{prefix}/cam/status"))));
        std::thread::sleep(Duration::from_millis(500));
        let got = sub.on(&format!("{prefix}/cam/labels")).len();
        assert_eq!(
            got, expect,
            "{prefix}: late subscriber received {got} labels"
        );
    }
}

#[test]
fn full_outbox_drops_the_oldest_counts_them_and_delivers_the_rest() {
    // No broker while the file is classified (10 messages) and room for 4: the 6 oldest
    // are dropped and counted, the 4 newest are delivered once the broker is back. The
    // subscriber's session is made before and survives the outage, so it sees exactly
    // what the daemon delivered.
    let mut broker = Broker::start_persistent();
    let sub = Subscriber::connect_with(broker.port, "box/#", true);
    broker.stop();
    let clip = fixtures().join("clip.mp4").display().to_string();
    let cfg = config(broker.port, "box", &[("cam", &clip, 5.0)], "")
        .replace("qos = 1\n", "qos = 1\noutbox_max = 4\n");
    let mut d = Daemon::start_with(&cfg, &["--shutdown-grace", "60s"], &[]);
    // Every frame classified (inference drained and stopped) before the broker returns.
    assert!(
        d.wait_for_log("inference stopped", PATIENCE),
        "{}",
        d.stderr()
    );
    assert!(d.wait_for_log("cannot reach MQTT broker", PATIENCE));
    broker.restart();
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("outbox full: oldest label messages dropped"),
        "{log}"
    );
    assert_eq!(d.total("cam", "outbox_dropped"), 6, "{log}");
    assert!(sub.wait_until(PATIENCE, at_least("box/cam/labels", 4)));
    assert!(sub.wait_until(PATIENCE, |m| m
        .iter()
        .any(|m| m.topic == "box/cam/status" && m.json()["state"] == "finished")));
    std::thread::sleep(Duration::from_millis(500));
    let seqs: Vec<u64> = labels(&sub, "box/cam/labels")
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![6, 7, 8, 9], "the newest four, in order");
    let st = sub
        .on("box/cam/status")
        .last()
        .map(Message::json)
        .expect("status");
    assert_eq!(st["outbox_dropped"], 6, "{st}");
}
