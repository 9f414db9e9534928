//! Bad input gets a clear error naming what is wrong, and the documented exit code.

mod common;

use std::time::Duration;

use common::{config, fixtures, free_port, run_cli, Broker, Daemon, Subscriber, PATIENCE};

const EX_USAGE: i32 = 64;
const EX_DATAERR: i32 = 65;
const EX_NOINPUT: i32 = 66;
const EX_UNAVAILABLE: i32 = 69;
const EX_TEMPFAIL: i32 = 75;

fn clip() -> String {
    fixtures().join("clip.mp4").display().to_string()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn invalid_config_names_every_field_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        &dir,
        "bad.toml",
        r#"
[mqtt]
qos = 7
[model]
path = "m.onnx"
[[camera]]
id = "front-door"
source = "a.mp4"
[[camera]]
id = "front-door"
source = "b.mp4"
"#,
    );
    for args in [
        vec!["check-config", cfg.as_str()],
        vec!["run", "--config", cfg.as_str()],
    ] {
        let (code, out) = run_cli(&args, &[]);
        assert_eq!(code, EX_USAGE, "{args:?}: {out}");
        assert!(out.contains("mqtt.qos: 7 is out of range 0..=2"), "{out}");
        assert!(
            out.contains(r#"camera[1].id: duplicate "front-door""#),
            "{out}"
        );
    }
    let (code, _) = run_cli(&["run", "--no-such-flag"], &[]);
    assert_eq!(code, EX_USAGE);
}

#[test]
fn invalid_regions_name_their_fields_and_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = "[mqtt]\n[model]\npath = \"m.onnx\"\n[[camera]]\nid = \"yard\"\nsource = \"a.mp4\"\nfps = 2\n";
    let region = |name: &str, rest: &str| format!("[[camera.region]]\nname = \"{name}\"\n{rest}\n");
    let cases = [
        (
            head.to_owned()
                + &region("door", "rect = [0, 0, 64, 64]")
                + &region("drive", "rect = [10, 10, 0, 50]")
                + &region("door", "rect = [0, 0, 8, 8]")
                + &region("bad name", "rect = [0, 0, 8, 8]\nfps = 5")
                + &region("both", "rect = [0, 0, 8, 8]\nrect_fraction = [0, 0, 1, 1]")
                + &region("wide", "rect_fraction = [0.5, 0, 0.75, 1]"),
            vec![
                "camera[0].region[1].rect: [10, 10, 0, 50] must be [x, y, width, height]",
                r#"camera[0].region[2].name: duplicate "door" in this camera"#,
                "camera[0].region[3].name:",
                "camera[0].region[3].fps: 5 must be above 0 and at most the camera's fps (2)",
                "camera[0].region[4].rect_fraction: give rect or rect_fraction, not both",
                "camera[0].region[5].rect_fraction: [0.5, 0.0, 0.75, 1.0] must be",
            ],
        ),
        (
            head.to_owned() + &region("door", "rect = [0, 0, 64, 64]\nfit = \"zoom\""),
            vec!["camera[0].region[0].fit: unknown variant `zoom`"],
        ),
        (
            head.to_owned()
                + &region(
                    "door",
                    "rect = [0, 0, 64, 64]\nfit = \"crop\"\npad_color = [0, 0, 0]",
                ),
            vec!["camera[0].region[0].pad_color: only for fit = \"pad\""],
        ),
        (
            head.replace("fps = 2\n", "fps = 2\nfull_frame = false\n"),
            vec!["camera[0].full_frame: false needs at least one [[camera.region]]"],
        ),
    ];
    for (i, (text, wants)) in cases.iter().enumerate() {
        let cfg = write(&dir, &format!("regions{i}.toml"), text);
        let (code, out) = run_cli(&["check-config", &cfg], &[]);
        assert_eq!(code, EX_USAGE, "{text}\n{out}");
        for want in wants {
            assert!(out.contains(want), "want {want:?} in:\n{out}");
        }
    }
}

#[test]
fn a_missing_config_file_exits_66_and_a_bad_log_filter_64() {
    for args in [
        vec!["run", "--config", "/nonexistent/streamclassd.toml"],
        vec!["check-config", "/nonexistent/streamclassd.toml"],
    ] {
        let (code, out) = run_cli(&args, &[]);
        assert_eq!(code, EX_NOINPUT, "{args:?}: {out}");
        assert!(out.contains("/nonexistent/streamclassd.toml"), "{out}");
    }
    // A filter that does not parse is refused before anything starts, from the command
    // line and from the environment alike.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        &dir,
        "ok.toml",
        &config(free_port(), "x", &[("c", &clip(), 0.0)], ""),
    );
    let (code, out) = run_cli(&["run", "--config", &cfg, "--log", "info,x=notalevel"], &[]);
    assert_eq!(code, EX_USAGE, "{out}");
    assert!(out.contains("not a level or filter"), "{out}");
    let (code, out) = run_cli(
        &["run", "--config", &cfg],
        &[("STREAMCLASSD_LOG", "info,x=notalevel")],
    );
    assert_eq!(code, EX_USAGE, "{out}");
    assert!(out.contains("STREAMCLASSD_LOG"), "{out}");
}

#[test]
fn missing_model_exits_66_naming_the_path() {
    let text = config(free_port(), "x", &[("c", &clip(), 0.0)], "").replace(
        &common::model().display().to_string(),
        "/nonexistent/resnet.onnx",
    );
    let mut d = Daemon::start(&text);
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(EX_NOINPUT), "{log}");
    assert!(log.contains("/nonexistent/resnet.onnx"), "{log}");
}

#[test]
fn a_file_that_is_not_a_model_exits_65() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bogus = write(&dir, "bogus.onnx", "this is not protobuf");
    let text = config(free_port(), "x", &[("c", &clip(), 0.0)], "")
        .replace(&common::model().display().to_string(), &bogus);
    let mut d = Daemon::start(&text);
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(EX_DATAERR), "{log}");
    assert!(log.contains("is not a usable ONNX model"), "{log}");
}

#[test]
fn missing_onnxruntime_library_exits_69() {
    let text = config(free_port(), "x", &[("c", &clip(), 0.0)], "");
    let mut d = Daemon::start_with(
        &text,
        &[],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(EX_UNAVAILABLE), "{log}");
    assert!(log.contains("ONNX Runtime library not found"), "{log}");
    assert!(log.contains("/nonexistent/libonnxruntime.so"), "{log}");
}

#[test]
fn an_unavailable_gpu_provider_is_a_clear_error_or_an_explicit_fallback() {
    // This machine's ONNX Runtime (the PyPI CPU build) has neither CUDA nor TensorRT.
    for provider in ["cuda", "tensorrt"] {
        let extra = format!("execution_provider = \"{provider}\"\n");
        let text = config(free_port(), "x", &[("c", &clip(), 0.0)], &extra);
        let mut d = Daemon::start(&text);
        let status = d.wait();
        let log = d.stderr();
        assert_eq!(status.code(), Some(EX_UNAVAILABLE), "{log}");
        assert!(
            log.contains(&format!("model.execution_provider = \"{provider}\"")),
            "{log}"
        );
        assert!(log.contains("is not in this ONNX Runtime build"), "{log}");
        assert!(log.contains("fallback_to_cpu"), "{log}");
    }
    // With the fallback allowed, it says so and classifies on the CPU.
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "fb/#");
    let extra = "execution_provider = \"cuda\"\nfallback_to_cpu = true\n";
    let text = config(broker.port, "fb", &[("c", &clip(), 0.0)], extra)
        .replace("threads = 2\n", "threads = \"auto\"\n");
    let mut d = Daemon::start(&text);
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("running on the CPU"), "{log}");
    assert_eq!(sub.on("fb/c/labels").len(), 50, "{log}");
    // Settings that only make sense for another provider are configuration errors.
    let extra = "fp16 = true\nengine_cache_dir = \"trt\"\n";
    let text = config(free_port(), "x", &[("c", &clip(), 0.0)], extra)
        .replace("threads = 2\n", "threads = \"many\"\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = run_cli(&["check-config", &write(&dir, "c.toml", &text)], &[]);
    assert_eq!(code, EX_USAGE, "{out}");
    for field in ["model.fp16", "model.engine_cache_dir", "model.threads"] {
        assert!(out.contains(field), "{field}: {out}");
    }
}

#[test]
fn labels_that_do_not_match_the_model_exit_65() {
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = write(&dir, "labels.txt", "cat\ndog\nbird\n");
    let text = config(
        free_port(),
        "x",
        &[("c", &clip(), 0.0)],
        &format!("labels = \"{labels}\"\n"),
    );
    let mut d = Daemon::start(&text);
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(EX_DATAERR), "{log}");
    assert!(
        log.contains("has 3 labels but the model outputs 1000 classes"),
        "{log}"
    );
}

#[test]
fn missing_source_file_exits_66_before_anything_runs() {
    let text = config(free_port(), "x", &[("c", "/nonexistent/clip.mp4", 0.0)], "");
    let mut d = Daemon::start(&text);
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(EX_NOINPUT), "{log}");
    assert!(
        log.contains(r#"camera[0] "c": source file /nonexistent/clip.mp4 not found"#),
        "{log}"
    );
}

#[test]
fn a_file_that_is_not_video_fails_its_camera_but_not_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = write(&dir, "junk.mp4", "not a video at all");
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "mixed/#");
    let clip = clip();
    let mut d = Daemon::start(&config(
        broker.port,
        "mixed",
        &[("bad", &junk, 0.0), ("good", &clip, 0.0)],
        "",
    ));
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(EX_DATAERR), "{log}");
    assert!(log.contains("camera failed"), "{log}");
    let frames = std::fs::read_to_string(fixtures().join("reference.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["frames"].as_array().map(Vec::len))
        .expect("reference frame count");
    assert!(sub.wait_until(PATIENCE, |m| m
        .iter()
        .filter(|m| m.topic == "mixed/good/labels")
        .count()
        == frames));
    assert!(sub.on("mixed/bad/labels").is_empty());
}

#[test]
fn unreachable_stream_is_retried_with_backoff_and_its_password_never_logged() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "dead/#");
    let dead = format!("rtsp://viewer:s3cretPW@127.0.0.1:{}/stream", free_port());
    let mut d = Daemon::start(&config(broker.port, "dead", &[("gone", &dead, 0.0)], ""));
    // Two attempts logged means the daemon retried instead of giving up or exiting.
    assert!(
        d.wait_for_log("attempt=2", Duration::from_secs(60)),
        "no retry logged:\n{}",
        d.stderr()
    );
    assert!(sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.payload == b"online")));
    d.signal("TERM");
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("cannot open source"), "{log}");
    assert!(log.contains("rtsp://viewer:***@127.0.0.1"), "{log}");
    assert!(
        !log.contains("s3cretPW"),
        "password leaked into the log:\n{log}"
    );
    assert!(sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.payload == b"offline")));
    assert!(sub
        .messages()
        .iter()
        .all(|m| !String::from_utf8_lossy(&m.payload).contains("s3cretPW")));
}

#[test]
fn unreachable_broker_is_retried_and_undelivered_messages_fail_the_exit_code() {
    // Nothing listens on this port: the publisher retries with backoff while the file is
    // classified, then gives up after the grace period and says how many were lost.
    let port = free_port();
    let mut d = Daemon::start_with(
        &config(port, "nobroker", &[("c", &clip(), 5.0)], ""),
        &["--shutdown-grace", "2s"],
        &[],
    );
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(EX_TEMPFAIL), "{log}");
    assert!(log.contains("cannot reach MQTT broker"), "{log}");
    assert!(
        log.matches("cannot reach MQTT broker").count() >= 2,
        "no retry:\n{log}"
    );
    // 10 label messages (50 frames at fps 5).
    assert!(log.contains("10 message(s) were not confirmed"), "{log}");
}
