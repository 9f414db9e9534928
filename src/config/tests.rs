use super::*;
use crate::capture::Source;
use crate::inference::{ExecutionProvider, Threads};
use crate::labels::LabelsSource;
use crate::preprocess::{ChannelOrder, IMAGENET_MEAN, IMAGENET_STD};
use crate::publish::Qos;

const BASE: &str = "/etc/streamclassd";

fn parse(text: &str) -> Result<Config, ParseError> {
    Config::parse(text, Path::new(BASE))
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(ParseError::Syntax(m)) => panic!("syntax error instead of problems: {m}"),
        Err(ParseError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
    }
}

#[track_caller]
fn has(got: &[String], prefix: &str) {
    assert!(
        got.iter().any(|g| g.starts_with(prefix)),
        "no problem starts with {prefix:?}: {got:#?}"
    );
}

const MINIMAL: &str = r#"
[model]
path = "m.onnx"
[[camera]]
id = "cam"
source = "clip.mp4"
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(c.mqtt.servers.len(), 1);
    assert_eq!(c.mqtt.servers[0].to_string(), "127.0.0.1:1883");
    assert_eq!(c.mqtt.topic_prefix, "streamclassd");
    assert_eq!(c.mqtt.qos, Qos::AtLeastOnce);
    assert!(c.mqtt.client_id.starts_with("streamclassd-"));
    assert_eq!(c.model.path, Path::new("/etc/streamclassd/m.onnx"));
    assert_eq!(c.model.name, "m");
    assert_eq!(c.model.labels, LabelsSource::ImageNet);
    assert_eq!(
        (
            c.model.top_k,
            c.model.threads,
            c.model.workers,
            c.model.max_batch
        ),
        (5, Threads::Count(2), Threads::Count(1), 4)
    );
    assert_eq!(c.model.provider.kind, ExecutionProvider::Cpu);
    assert!(!c.model.provider.fallback_to_cpu);
    let p = &c.model.preprocess;
    assert_eq!((p.resize_shorter, p.crop), (None, None));
    assert_eq!(p.normalize.mean, IMAGENET_MEAN);
    assert_eq!(p.normalize.std, IMAGENET_STD);
    assert_eq!(p.normalize.channel_order, ChannelOrder::Rgb);
    assert_eq!(c.cameras.len(), 1);
    assert_eq!(
        c.cameras[0].source,
        Source::File("/etc/streamclassd/clip.mp4".into())
    );
    assert_eq!(c.cameras[0].fps, 0.0);
}

#[test]
fn every_problem_is_reported_at_once_with_its_field() {
    let got = problems(
        r#"
[mqtt]
port = 70000
qos = 3
topic_prefix = "a/#"
[model]
path = "m.onnx"
top_k = 0
[model.preprocess]
crop = 224
resize_shorter = 200
std = [0.2, 0.0, 0.2]
mean = [0.5, 0.5]
[[camera]]
id = "front-door"
source = "rtsp://cam/1"
[[camera]]
id = "front-door"
source = "0"
fps = -1
[[camera]]
id = "bad id!"
source = ""
"#,
    );
    let expected = [
        "mqtt.port: 70000 is out of range 1..=65535",
        "mqtt.qos: 3 is out of range 0..=2",
        "mqtt.topic_prefix:",
        "model.top_k: 0 is out of range 1..=1000",
        "model.preprocess.resize_shorter: 200 is smaller than crop 224",
        "model.preprocess.mean: expected 3 values",
        "model.preprocess.std: every value must be positive",
        "camera[1].fps:",
        "camera[2].id:",
        "camera[2].source: must not be empty",
    ];
    for e in expected {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
}

#[test]
fn duplicate_ids_name_the_later_camera() {
    let got = problems(
        r#"
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
    assert_eq!(got, vec![r#"camera[1].id: duplicate "front-door""#]);
}

#[test]
fn unknown_fields_and_wrong_types_name_the_path() {
    let got = problems(
        r#"
colour = "blue"
[mqtt]
hots = "x"
[model]
path = "m.onnx"
[model.preprocess]
channel_order = "rbg"
[[camera]]
id = "a"
source = "a.mp4"
fps = "fast"
"#,
    );
    has(&got, "colour: unknown section");
    has(
        &got,
        "mqtt.hots: unknown field `hots`, expected one of `host`",
    );
    has(
        &got,
        "model.preprocess.channel_order: unknown variant `rbg`",
    );
    has(&got, "camera[0].fps: invalid type");
    assert_eq!(got.len(), 4, "{got:#?}");
}

#[test]
fn missing_sections_are_problems() {
    let got = problems("[mqtt]\nhost = \"h\"\n");
    has(&got, "model: missing section");
    has(&got, "camera: at least one");
    let got = problems("[model]\npath = \"m.onnx\"\ncamera = 3\n");
    has(&got, "model.camera: unknown field `camera`");
}

#[test]
fn syntax_errors_are_not_problems() {
    assert!(matches!(parse("[model\n"), Err(ParseError::Syntax(_))));
}

#[test]
fn labels_path_and_overrides() {
    let c = parse(
        r#"
[mqtt]
client_id = "me"
[model]
path = "/models/r.onnx"
name = "resnet50"
labels = "labels.txt"
[model.preprocess]
crop = 224
resize_shorter = 256
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
channel_order = "bgr"
[[camera]]
id = "a"
source = "rtsp://user:pw@host/s"
fps = 2.5
"#,
    )
    .expect("valid");
    assert_eq!(c.mqtt.client_id, "me");
    assert_eq!(c.model.path, Path::new("/models/r.onnx"));
    assert_eq!(c.model.name, "resnet50");
    assert_eq!(
        c.model.labels,
        LabelsSource::File("/etc/streamclassd/labels.txt".into())
    );
    let p = &c.model.preprocess;
    assert_eq!((p.resize_shorter, p.crop), (Some(256), Some(224)));
    assert_eq!(p.normalize.channel_order, ChannelOrder::Bgr);
    assert!(c.cameras[0].source.is_live());
    assert_eq!(c.cameras[0].fps, 2.5);
}

#[test]
fn log_level_comes_from_the_log_section() {
    let c = parse(&format!(
        "{MINIMAL}\n[log]\nlevel = \"debug,rumqttc=warn\"\n"
    ))
    .expect("valid");
    assert_eq!(c.log_level, "debug,rumqttc=warn");
    assert_eq!(parse(MINIMAL).expect("valid").log_level, "info");
    let got = problems(&format!("{MINIMAL}\n[log]\nlevel = \"info,x=notalevel\"\n"));
    has(&got, "log.level:");
}

#[test]
fn threads_auto_and_gpu_providers_are_checked() {
    let base = "[mqtt]\nhost = \"h\"\n[[camera]]\nid = \"c\"\nsource = \"rtsp://h/c\"\n";
    let c = Config::parse(
        &format!(
            "{base}[model]\npath = \"m.onnx\"\nthreads = \"auto\"\nexecution_provider = \
             \"tensorrt\"\ndevice_id = 1\nfp16 = true\nengine_cache_dir = \"trt\"\n"
        ),
        Path::new("/etc/streamclassd"),
    )
    .expect("valid");
    assert_eq!(c.model.threads, Threads::Auto);
    // A GPU runs one worker, whatever the CPUs.
    assert_eq!(c.model.parallelism().workers, 1);
    assert_eq!(c.model.provider.kind, ExecutionProvider::TensorRt);
    assert_eq!(c.model.provider.device_id, 1);
    assert_eq!(
        c.model.provider.engine_cache_dir.as_deref(),
        Some(Path::new("/etc/streamclassd/trt"))
    );
    let err = Config::parse(
        &format!(
            "{base}[model]\npath = \"m.onnx\"\nthreads = \"lots\"\nexecution_provider = \
             \"cuda\"\nfp16 = true\ndevice_id = -1\n"
        ),
        Path::new("/"),
    )
    .expect_err("invalid");
    let ParseError::Invalid(problems) = err else {
        panic!("{err:?}")
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["model.threads", "model.device_id", "model.fp16"]);
    let err = Config::parse(
        &format!("{base}[model]\npath = \"m.onnx\"\nexecution_provider = \"opencl\"\n"),
        Path::new("/"),
    )
    .expect_err("unknown provider");
    assert!(
        format!("{err:?}").contains("model.execution_provider"),
        "{err:?}"
    );
}

#[test]
fn decode_modes_parse_and_keyframes_needs_a_network_stream() {
    use crate::capture::DecodeMode;
    let c = parse(&format!(
        "{MINIMAL}\n[[camera]]\nid = \"net\"\nsource = \"rtsp://cam/1\"\ndecode = \"keyframes\"\n\
         [[camera]]\nid = \"all\"\nsource = \"rtsp://cam/2\"\ndecode = \"all\"\n"
    ))
    .expect("valid");
    let modes: Vec<DecodeMode> = c.cameras.iter().map(|c| c.decode).collect();
    assert_eq!(
        modes,
        [DecodeMode::Auto, DecodeMode::Keyframes, DecodeMode::All]
    );
    let got = problems(&MINIMAL.replace(
        "source = \"clip.mp4\"",
        "source = \"clip.mp4\"\ndecode = \"keyframes\"",
    ));
    has(
        &got,
        "camera[0].decode: \"keyframes\" is for network streams",
    );
    let got = problems(&MINIMAL.replace(
        "source = \"clip.mp4\"",
        "source = \"rtsp://x/y\"\ndecode = \"some\"",
    ));
    has(&got, "camera[0].decode: unknown variant `some`");
}

#[test]
fn the_admin_token_is_a_file_or_a_credential_and_needs_a_listener() {
    let with = |admin: &str| format!("{MINIMAL}\n[admin]\n{admin}\n");
    let c = parse(&with(
        "listen = \"127.0.0.1:9810\"\ntoken_file = \"admin-token\"",
    ))
    .expect("valid");
    assert_eq!(
        c.admin_token,
        PasswordSource::File(Path::new(BASE).join("admin-token"))
    );
    assert_eq!(
        parse(MINIMAL).expect("valid").admin_token,
        PasswordSource::None
    );
    let both = problems(&with(
        "listen = \"127.0.0.1:9810\"\ntoken_file = \"t\"\ntoken_credential = \"t\"",
    ));
    has(
        &both,
        "admin.token_credential: give either token_file or token_credential, not both",
    );
    has(
        &problems(&with("token_credential = \"admin-token\"")),
        "admin.token_file: a token needs admin.listen",
    );
}

#[test]
fn snapshots_default_their_size_and_their_fields_need_snapshot() {
    use crate::monitor::frames::JpegKey;
    let c = parse(&format!(
        "{MINIMAL}\n[[camera]]\nid = \"snap\"\nsource = \"rtsp://cam/1\"\nsnapshot = true\n\
         [[camera]]\nid = \"small\"\nsource = \"rtsp://cam/2\"\nsnapshot = true\n\
         snapshot_height = 240\nsnapshot_quality = 60\n"
    ))
    .expect("valid");
    let key = |height, quality| {
        Some(JpegKey {
            height: Some(height),
            quality,
            overlay: false,
        })
    };
    let snapshots: Vec<Option<JpegKey>> = c.cameras.iter().map(|c| c.snapshot).collect();
    assert_eq!(snapshots, [None, key(480, 75), key(240, 60)]);
    // A reload that only turns snapshots on keeps the source open.
    let mut on = c.cameras[0].clone();
    on.snapshot = key(480, 75);
    assert!(c.cameras[0].same_source_as(&on));

    let got = problems(&MINIMAL.replace(
        "source = \"clip.mp4\"",
        "source = \"clip.mp4\"\nsnapshot_height = 240\nsnapshot_quality = 0",
    ));
    has(&got, "camera[0].snapshot_height: needs snapshot = true");
    has(&got, "camera[0].snapshot_quality: 0 is out of range");
    let got = problems(&MINIMAL.replace(
        "source = \"clip.mp4\"",
        "source = \"clip.mp4\"\nsnapshot = true\nsnapshot_height = 8",
    ));
    has(&got, "camera[0].snapshot_height: 8 is out of range");
}

#[test]
fn workers_and_threads_resolve_from_the_cpus_and_the_cameras() {
    use crate::inference::Parallelism;
    let (a, n) = (Threads::Auto, Threads::Count);
    let many = usize::MAX;
    let p = |w, t, gpu, cpus, streams| {
        let r = Parallelism::resolve(w, t, gpu, cpus, streams);
        (r.workers, r.threads)
    };
    // Given counts are kept.
    assert_eq!(p(n(3), n(2), false, 2, 1), (3, 2));
    // Both "auto" on the CPU, for a file: one single-threaded worker per CPU of the budget
    // (every CPU up to two, then one left to decoding, at most 16).
    assert_eq!(p(a, a, false, 1, many), (1, 1));
    assert_eq!(p(a, a, false, 2, many), (2, 1));
    assert_eq!(p(a, a, false, 8, many), (7, 1));
    assert_eq!(p(a, a, false, 64, many), (16, 1));
    // One worker per frame the cameras can have in flight: one live camera gets one
    // worker with the budget's threads, three live cameras three workers.
    assert_eq!(p(a, a, false, 2, 1), (1, 2));
    assert_eq!(p(a, a, false, 8, 1), (1, 7));
    assert_eq!(p(a, a, false, 8, 3), (3, 2));
    assert_eq!(p(a, a, false, 2, 2), (2, 1));
    // One given: the other divides the budget by it, never below one.
    assert_eq!(p(n(2), a, false, 8, 1), (2, 3));
    assert_eq!(p(a, n(2), false, 8, many), (3, 2));
    assert_eq!(p(a, n(2), false, 8, 2), (2, 2));
    assert_eq!(p(a, n(4), false, 2, many), (1, 4));
    // A GPU: one worker; "auto" threads take the budget.
    assert_eq!(p(a, a, true, 8, many), (1, 7));
    assert_eq!(p(a, n(2), true, 8, many), (1, 2));
    // From a config: the cameras it lists decide (on whatever CPUs this machine has).
    let cfg = |cameras: &str| {
        Config::parse(
            &format!(
                "[mqtt]\nhost = \"h\"\n[model]\npath = \"m.onnx\"\nworkers = \"auto\"\n\
                 threads = \"auto\"\n{cameras}"
            ),
            Path::new("/"),
        )
        .expect("valid")
        .model
        .parallelism()
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let live = "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/a\"\n";
    let file = "[[camera]]\nid = \"f\"\nsource = \"clip.mp4\"\n";
    assert_eq!(cfg(live), Parallelism::resolve(a, a, false, cpus, 1));
    assert_eq!(cfg(live).workers, 1);
    assert_eq!(cfg(file), Parallelism::resolve(a, a, false, cpus, many));
    let bad = Config::parse(
        "[mqtt]\nhost = \"h\"\n[model]\npath = \"m.onnx\"\nworkers = \"many\"\n\
         [[camera]]\nid = \"c\"\nsource = \"rtsp://h/c\"\n",
        Path::new("/"),
    )
    .expect_err("bad workers");
    assert!(format!("{bad}").contains("model.workers"), "{bad}");
    let zero = Config::parse(
        "[mqtt]\nhost = \"h\"\n[model]\npath = \"m.onnx\"\nworkers = 0\n\
         [[camera]]\nid = \"c\"\nsource = \"rtsp://h/c\"\n",
        Path::new("/"),
    )
    .expect_err("zero workers");
    assert!(format!("{zero}").contains("model.workers"), "{zero}");
}
