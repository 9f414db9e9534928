//! Hostile input never panics: the config loader, the labels-file parser, the spool
//! reader and the payload encoder get random and adversarial input (proptest), and each
//! either gives a value or a clear error.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use proptest::prelude::*;
use streamclassd::config::{Config, ParseError};
use streamclassd::labels::Labels;
use streamclassd::messages::{Classification, FrameMeta, Latency, ModelInfo, Scored};
use streamclassd::publish::payload;
use streamclassd::publish::spool::Spool;

/// TOML values of every type, to put under real and made-up keys.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")
            .replace("inf", "1e999")
            .replace("NaN", "nan")),
        any::<bool>().prop_map(|v| v.to_string()),
        ".{0,12}".prop_map(|s| format!("{s:?}")),
        prop::collection::vec(any::<i16>(), 0..5).prop_map(|v| format!("{v:?}")),
        Just("{}".to_owned()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "host",
            "port",
            "topic_prefix",
            "qos",
            "client_id",
            "keep_alive_s",
            "username",
            "password_file",
            "outbox_max",
            "spool_dir",
            "path",
            "name",
            "labels",
            "top_k",
            "threads",
            "max_batch",
            "id",
            "source",
            "fps",
            "realtime",
            "stall_timeout_s",
            "open_timeout_s",
            "reconnect_max_s",
            "preset",
            "mode",
            "crop",
            "resize_shorter",
            "crop_fraction",
            "interpolation",
            "scale",
            "mean",
            "std",
            "channel_order",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ]
}

fn section() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "[mqtt]",
        "[model]",
        "[model.preprocess]",
        "[[camera]]",
        "[[camera]]",
        "[other]",
    ])
    .prop_map(str::to_owned)
}

fn config_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (section(), prop::collection::vec((key(), value()), 0..6)),
        0..6,
    )
    .prop_map(|sections| {
        let mut s = String::new();
        for (header, entries) in sections {
            s += &header;
            s.push('\n');
            for (k, v) in entries {
                s += &format!("{k} = {v}\n");
            }
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn config_loader_never_panics_on_bytes(text in ".{0,300}") {
        let _ = Config::parse(&text, Path::new("/etc/streamclassd"));
    }

    #[test]
    fn config_errors_name_a_field(text in config_text()) {
        match Config::parse(&text, Path::new("/etc/streamclassd")) {
            Ok(cfg) => prop_assert!(!cfg.cameras.is_empty()),
            Err(ParseError::Syntax(m)) => prop_assert!(!m.is_empty()),
            Err(ParseError::Invalid(problems)) => {
                prop_assert!(!problems.is_empty());
                for p in problems {
                    let root = p.field.split(['.', '[']).next().unwrap_or("");
                    prop_assert!(!root.is_empty() && !p.message.is_empty(), "{p:?}");
                }
            }
        }
    }

    #[test]
    fn labels_parser_never_panics(text in "(.{0,20}\r?\n){0,30}") {
        match Labels::parse(&text, Path::new("l.txt")) {
            Ok(l) => {
                prop_assert!(!l.is_empty());
                for i in 0..l.len() {
                    prop_assert!(!l.get(i).is_empty());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn payload_stays_valid_json_for_hostile_ids_and_labels(
        camera in "\\PC{0,40}",
        model in "\\PC{0,40}",
        label in "[\\x00-\\x7f\\u{80}-\\u{10ffff}]{1,40}",
        score in any::<f32>(),
        seq in any::<u64>(),
    ) {
        let label = label.replace(['\n', '\r'], " ");
        let label = if label.trim().is_empty() { "x".to_owned() } else { label };
        let labels = Labels::parse(&label, Path::new("l")).expect("one label");
        let c = Classification {
            model: Arc::new(ModelInfo { name: model.clone(), labels: labels.clone() }),
            meta: FrameMeta {
                camera: 0,
                index: seq / 2,
                captured_at: UNIX_EPOCH,
                captured: Instant::now(),
                dropped: 0,
            },
            region: None,
            top: vec![Scored { index: 0, score }],
            latency: Latency::default(),
            batch: 1,
        };
        let mut out = Vec::new();
        payload::encode(&c, &camera, seq, &model, &labels, &mut out).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        prop_assert_eq!(v["camera"].as_str(), Some(camera.as_str()));
        prop_assert_eq!(v["model"].as_str(), Some(model.as_str()));
        prop_assert_eq!(v["top5"][0]["label"].as_str(), Some(label.trim()));
        prop_assert_eq!(v["seq"].as_u64(), Some(seq));
    }

    #[test]
    fn spool_reader_never_panics(lines in prop::collection::vec(".{0,80}", 0..20)) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("outbox.jsonl"), lines.join("\n")).expect("write");
        std::fs::write(dir.path().join("state.json"), lines.first().cloned().unwrap_or_default())
            .expect("write");
        let r = Spool::new(dir.path()).load(|_| None).expect("readable directory");
        prop_assert!(r.messages.len() + r.unreadable <= lines.len() + 1);
    }
}

// Regression tests for what the coverage-guided fuzzers (`fuzz/`, `scripts/fuzz`) found.

/// config_bytes: `"" = ""` made a problem with an empty field name.
#[test]
fn an_unknown_section_with_an_odd_name_is_named_quoted() {
    for (text, field) in [
        ("\"\" = \"\"#", "\"\""),
        ("\"a.b\" = 1", "\"a.b\""),
        ("[\"my cam\"]", "\"my cam\""),
        ("extra = 1", "extra"),
    ] {
        let Err(ParseError::Invalid(problems)) = Config::parse(text, Path::new("/")) else {
            panic!("{text} must be invalid");
        };
        assert!(
            problems.iter().any(|p| p.field == field),
            "{text}: {problems:?}"
        );
    }
}

/// source_redaction: a password with an unencoded `/` ended the authority early and was
/// shown whole by `redact_url` and left in place by `scrub`.
#[test]
fn a_password_with_an_unencoded_slash_question_mark_or_at_is_masked() {
    use streamclassd::capture::{redact_url, scrub, Source};
    assert_eq!(redact_url("http://:/@"), "http://:***@");
    for (url, shown, password) in [
        (
            "rtsp://admin:pa/ss@cam:554/h264",
            "rtsp://admin:***@cam:554/h264",
            "pa/ss",
        ),
        (
            "rtsp://admin:a?b#c@cam/x",
            "rtsp://admin:***@cam/x",
            "a?b#c",
        ),
        ("rtsp://admin:p@ss@cam/x", "rtsp://admin:***@cam/x", "p@ss"),
        (
            "rtsp://admin:plain@cam/x",
            "rtsp://admin:***@cam/x",
            "plain",
        ),
    ] {
        assert_eq!(redact_url(url), shown);
        let source = Source::parse(url, Path::new("/"));
        assert_eq!(source.to_string(), shown);
        let message = format!("could not open {url} (password {password})");
        let clean = scrub(&message, &source);
        assert!(!clean.contains(password), "{clean}");
    }
    // No userinfo: unchanged.
    assert_eq!(redact_url("rtsp://cam:554/h264"), "rtsp://cam:554/h264");
}

/// payload: a time after year 9999 (or before 1970) made the RFC 3339 formatter panic.
#[test]
fn times_rfc3339_cannot_write_are_clamped_not_a_panic() {
    use std::time::Duration;
    let far = UNIX_EPOCH + Duration::from_secs(858_050_250_695);
    assert_eq!(payload::rfc3339_millis(far), "9999-12-31T23:59:59.999Z");
    let before = UNIX_EPOCH - Duration::from_secs(86_400);
    assert_eq!(payload::rfc3339_millis(before), "1970-01-01T00:00:00.000Z");
    let ok = UNIX_EPOCH + Duration::from_millis(1_795_885_200_123);
    assert_eq!(payload::rfc3339_millis(ok), "2026-11-28T17:00:00.123Z");
}

/// config_bytes: a non-ASCII `[log] level` made tracing-subscriber's filter parser panic
/// (slicing inside a character), and a 395-byte field filter kept it busy for minutes,
/// instead of a problem naming the field.
#[test]
fn a_log_filter_beyond_levels_and_targets_is_a_problem_not_a_panic_or_a_hang() {
    let hang = format!(
        "2(1E22[[{{[BBBBpathBBB=BB{}*.....>BBpat...*..BBBBpBJ{}$0",
        "B".repeat(40),
        ".".repeat(200)
    );
    for level in [
        " 2(0E2\u{524}=2{2}2$n$$0",
        hang.as_str(),
        "[span{field=x}]=debug",
    ] {
        let text = format!("[log]\nlevel = {level:?}\n");
        let Err(ParseError::Invalid(problems)) = Config::parse(&text, Path::new("/")) else {
            panic!("{level} must be invalid");
        };
        assert!(
            problems
                .iter()
                .any(|p| p.field == "log.level" && p.message.contains("target=level")),
            "{problems:?}"
        );
    }
    for good in [
        "info",
        "warn,streamclassd=debug",
        "streamclassd::publish=trace",
    ] {
        assert!(
            streamclassd::config::log_filter(good).is_ok(),
            "{good} must parse"
        );
    }
}

/// The words in backquotes after "expected" in a serde unknown-field message.
fn expected_keys(message: &str) -> Vec<String> {
    let (_, list) = message.split_once("expected").unwrap_or(("", ""));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The key names one `keys!(Name { ... })` block of the fuzz crate declares.
fn fuzzed_keys(source: &str, name: &str) -> Vec<String> {
    let start = source
        .find(&format!("keys!({name} {{"))
        .unwrap_or_else(|| panic!("no keys!({name}) in fuzz/src/lib.rs"));
    let block = &source[start..];
    let block = &block[..block.find("});").expect("the block ends")];
    block
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_structure_aware_fuzzer_knows_every_config_key() {
    // fuzz/src/lib.rs names each section's keys by hand so that `config_toml` reaches
    // field validation; a field the loader takes but the fuzzer does not know would go
    // unfuzzed. The loader's own "expected one of" list is the truth. Nested tables are
    // sections of their own there (`model.preprocess`, `camera.region`).
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/src/lib.rs"))
            .expect("fuzz/src/lib.rs");
    let model = "[model]\npath = \"m.onnx\"\n";
    let camera = "[[camera]]\nid = \"a\"\nsource = \"a.mp4\"\n";
    let sections: [(&str, String, &[&str]); 8] = [
        ("MqttKey", format!("[mqtt]\nzz = 1\n{model}"), &[]),
        ("ModelKey", format!("{model}zz = 1\n"), &["preprocess"]),
        (
            "PreprocessKey",
            format!("{model}[model.preprocess]\nzz = 1\n"),
            &[],
        ),
        ("CameraKey", format!("{model}{camera}zz = 1\n"), &["region"]),
        (
            "RegionKey",
            format!("{model}{camera}[[camera.region]]\nname = \"r\"\nzz = 1\n"),
            &[],
        ),
        ("AdminKey", format!("{model}[admin]\nzz = 1\n"), &[]),
        (
            "HomeAssistantKey",
            format!("{model}[homeassistant]\nzz = 1\n"),
            &[],
        ),
        ("LogKey", format!("{model}[log]\nzz = 1\n"), &[]),
    ];
    for (name, text, nested) in sections {
        let problems = match Config::parse(&text, Path::new("/etc/streamclassd")) {
            Err(ParseError::Invalid(p)) => p,
            other => panic!("{name}: {other:?}"),
        };
        let unknown = problems
            .iter()
            .find(|p| p.field.ends_with(".zz"))
            .unwrap_or_else(|| panic!("{name}: no unknown-field problem in {problems:?}"));
        let mut loader = expected_keys(&unknown.message);
        loader.retain(|k| !nested.contains(&k.as_str()));
        loader.sort();
        let mut fuzzer = fuzzed_keys(&source, name);
        fuzzer.sort();
        assert!(loader.len() > 1 || name == "LogKey", "{name}: {unknown:?}");
        assert_eq!(fuzzer, loader, "{name}: fuzz/src/lib.rs against the loader");
    }
}
