//! What the fuzz targets share: the properties a parsed configuration must have, and
//! structure-aware TOML documents (`arbitrary`) whose sections and keys are the real
//! ones, so that the fuzzer reaches field and region validation instead of failing TOML
//! parsing.

use std::collections::HashSet;
use std::path::Path;

use arbitrary::Arbitrary;
use streamclassd::config::{Config, ParseError};

/// The directory relative paths of a fuzzed configuration start from.
pub const BASE: &str = "/etc/streamclassd";

/// Parses `text` as a configuration and checks what every outcome promises: a valid one
/// has cameras with unique non-empty ids, finite rates and uniquely named regions; an
/// invalid one names at least one field, each under a section, with a message; an
/// unreadable one says why. Panics (a finding) otherwise.
pub fn check_config(text: &str) {
    match Config::parse(text, Path::new(BASE)) {
        Ok(cfg) => {
            assert!(!cfg.cameras.is_empty(), "a valid config without cameras");
            let mut ids = HashSet::new();
            for cam in &cfg.cameras {
                assert!(!cam.id.is_empty(), "empty camera id accepted");
                assert!(
                    ids.insert(cam.id.as_str()),
                    "duplicate camera id {}",
                    cam.id
                );
                assert!(
                    cam.fps.is_finite() && cam.fps >= 0.0,
                    "camera {} fps {}",
                    cam.id,
                    cam.fps
                );
                let mut names = HashSet::new();
                for r in &cam.regions {
                    assert!(
                        names.insert(r.name.to_string()),
                        "duplicate region {}",
                        r.name
                    );
                }
                // Showing a source never panics and never shows a URL password.
                let _ = cam.source.to_string();
            }
            let _ = format!("{cfg:?}");
        }
        Err(ParseError::Syntax(message)) => assert!(!message.is_empty()),
        Err(e @ ParseError::Invalid(_)) => {
            let ParseError::Invalid(problems) = &e else {
                unreachable!()
            };
            assert!(!problems.is_empty(), "invalid without a problem");
            for p in problems {
                let root = p.field.split(['.', '[']).next().unwrap_or("");
                assert!(!root.is_empty(), "a problem naming no field: {p:?}");
                assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
            }
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Declares a section's keys: an enum the fuzzer picks from, and each key's TOML name.
macro_rules! keys {
    ($name:ident { $($var:ident = $s:literal),* $(,)? }) => {
        #[derive(Arbitrary, Debug, Clone, Copy)]
        pub enum $name { $($var),* }
        impl $name {
            pub fn name(self) -> &'static str {
                match self { $(Self::$var => $s),* }
            }
        }
    };
}

keys!(MqttKey {
    Host = "host", Port = "port", Servers = "servers", ServersOrder = "servers_order",
    TopicPrefix = "topic_prefix", Qos = "qos", ClientId = "client_id",
    KeepAlive = "keep_alive_s", Username = "username", PasswordFile = "password_file",
    PasswordCredential = "password_credential", OutboxMax = "outbox_max",
    SpoolDir = "spool_dir", Tls = "tls", CaFile = "ca_file",
    ClientCertFile = "client_cert_file", ClientKeyFile = "client_key_file",
    StatsInterval = "stats_interval_s", LabelHold = "label_hold",
    LabelWindow = "label_window", Protocol = "protocol", MessageExpiry = "message_expiry_s",
});
keys!(ModelKey {
    Path = "path", Name = "name", Labels = "labels", TopK = "top_k", Threads = "threads",
    Workers = "workers", ExecutionProvider = "execution_provider", DeviceId = "device_id",
    Fp16 = "fp16", EngineCacheDir = "engine_cache_dir", FallbackToCpu = "fallback_to_cpu",
    MaxBatch = "max_batch",
});
keys!(PreprocessKey {
    Preset = "preset", Mode = "mode", ResizeShorter = "resize_shorter", Crop = "crop",
    CropFraction = "crop_fraction", Interpolation = "interpolation", Scale = "scale",
    Mean = "mean", Std = "std", ChannelOrder = "channel_order",
});
keys!(CameraKey {
    Id = "id", Source = "source", Fps = "fps", Realtime = "realtime",
    StallTimeout = "stall_timeout_s", OpenTimeout = "open_timeout_s",
    ReconnectMax = "reconnect_max_s", Decode = "decode", FullFrame = "full_frame",
    Snapshot = "snapshot", SnapshotHeight = "snapshot_height",
    SnapshotQuality = "snapshot_quality",
});
keys!(RegionKey {
    Name = "name", Rect = "rect", RectFraction = "rect_fraction", Fit = "fit",
    PadColor = "pad_color", Fps = "fps",
});
keys!(AdminKey { Listen = "listen", TokenFile = "token_file", TokenCredential = "token_credential" });
keys!(HomeAssistantKey {
    Enabled = "enabled", DiscoveryPrefix = "discovery_prefix", NodeId = "node_id",
    AttributesInterval = "attributes_interval_s",
});
keys!(LogKey { Level = "level" });

/// Strings the validators give meaning to (enum names, paths, addresses, URLs), beside
/// arbitrary text.
const WORDS: &[&str] = &[
    "",
    " ",
    "auto",
    "torchvision",
    "caffe",
    "tf-efficientnet-lite",
    "imagenet",
    "cpu",
    "cuda",
    "tensorrt",
    "crop",
    "pad",
    "stretch",
    "all",
    "keyframes",
    "rgb",
    "bgr",
    "bilinear",
    "bicubic",
    "area",
    "nearest",
    "resize-crop",
    "crop-resize",
    "info",
    "debug",
    "warn,streamclassd=trace",
    "priority",
    "round-robin",
    "3.1.1",
    "5",
    "cam",
    "cam-1",
    "a/b",
    "a+b",
    "#",
    "$share",
    "models/resnet50.onnx",
    "/nonexistent/model.onnx",
    "labels.txt",
    "0",
    "-1",
    "/dev/video0",
    "clip.mp4",
    "../clip.mp4",
    "rtsp://user:secret@127.0.0.1:8554/cam",
    "rtsp://127.0.0.1:8554/cam",
    "http://h/x.mjpg",
    "127.0.0.1:9810",
    "[::1]:9810",
    "0.0.0.0:0",
    "localhost",
    "localhost:1883",
    "mqtt://b:1883",
    "mqtts://b:8883",
    "b:99999",
    "[::1]:1883",
    "homeassistant",
    "node",
    "/run/credentials/x",
    "streamclassd",
    "spool",
];

/// A TOML value of any type, weighted towards the ones the fields take.
#[derive(Arbitrary, Debug)]
pub enum Val {
    Int(i64),
    Small(i8),
    Float(f64),
    Unit(u8),
    Bool(bool),
    Word(u8),
    Text(String),
    Ints(Vec<i16>),
    Floats(Vec<f32>),
    Words(Vec<u8>),
    Table(Vec<(String, i8)>),
}

impl Val {
    pub fn toml(&self) -> toml::Value {
        use toml::Value;
        let word = |i: &u8| Value::String(WORDS[usize::from(*i) % WORDS.len()].to_owned());
        match self {
            Val::Int(v) => Value::Integer(*v),
            Val::Small(v) => Value::Integer(i64::from(*v)),
            Val::Float(v) => Value::Float(*v),
            Val::Unit(v) => Value::Float(f64::from(*v) / 255.0),
            Val::Bool(v) => Value::Boolean(*v),
            Val::Word(i) => word(i),
            Val::Text(s) => Value::String(s.clone()),
            Val::Ints(v) => Value::Array(v.iter().map(|x| Value::Integer(i64::from(*x))).collect()),
            Val::Floats(v) => Value::Array(v.iter().map(|x| Value::Float(f64::from(*x))).collect()),
            Val::Words(v) => Value::Array(v.iter().map(word).collect()),
            Val::Table(kv) => Value::Table(
                kv.iter()
                    .map(|(k, v)| (k.clone(), Value::Integer(i64::from(*v))))
                    .collect(),
            ),
        }
    }
}

/// A key of a section: one of its real ones, or made up.
#[derive(Arbitrary, Debug)]
pub enum Key<K> {
    Known(K),
    Other(String),
}

/// A section's entries.
#[derive(Arbitrary, Debug)]
pub struct Entries<K>(pub Vec<(Key<K>, Val)>);

macro_rules! impl_table {
    ($($k:ty),*) => {$(
        impl Entries<$k> {
            pub fn table(&self) -> toml::Table {
                self.0
                    .iter()
                    .map(|(k, v)| {
                        let name = match k {
                            Key::Known(k) => k.name().to_owned(),
                            Key::Other(s) => s.clone(),
                        };
                        (name, v.toml())
                    })
                    .collect()
            }
        }
    )*};
}
impl_table!(
    MqttKey,
    ModelKey,
    PreprocessKey,
    CameraKey,
    RegionKey,
    AdminKey,
    HomeAssistantKey,
    LogKey
);

#[derive(Arbitrary, Debug)]
pub struct Camera {
    pub fields: Entries<CameraKey>,
    pub regions: Vec<Entries<RegionKey>>,
}

/// A configuration document: every section optional, any number of cameras.
#[derive(Arbitrary, Debug)]
pub struct Doc {
    pub mqtt: Option<Entries<MqttKey>>,
    pub model: Option<Entries<ModelKey>>,
    pub preprocess: Option<Entries<PreprocessKey>>,
    pub cameras: Vec<Camera>,
    pub admin: Option<Entries<AdminKey>>,
    pub homeassistant: Option<Entries<HomeAssistantKey>>,
    pub log: Option<Entries<LogKey>>,
    pub other: Vec<(String, Val)>,
}

impl Doc {
    /// The document as TOML text.
    pub fn text(&self) -> String {
        use toml::Value;
        let mut root = toml::Table::new();
        if let Some(m) = &self.mqtt {
            root.insert("mqtt".into(), Value::Table(m.table()));
        }
        let mut model = self.model.as_ref().map(|e| e.table());
        if let Some(p) = &self.preprocess {
            model
                .get_or_insert_with(toml::Table::new)
                .insert("preprocess".into(), Value::Table(p.table()));
        }
        if let Some(m) = model {
            root.insert("model".into(), Value::Table(m));
        }
        if !self.cameras.is_empty() {
            let cams = self
                .cameras
                .iter()
                .map(|c| {
                    let mut t = c.fields.table();
                    if !c.regions.is_empty() {
                        let regions = c.regions.iter().map(|r| Value::Table(r.table()));
                        t.insert("region".into(), Value::Array(regions.collect()));
                    }
                    Value::Table(t)
                })
                .collect();
            root.insert("camera".into(), Value::Array(cams));
        }
        for (name, section) in [
            ("admin", self.admin.as_ref().map(|e| e.table())),
            (
                "homeassistant",
                self.homeassistant.as_ref().map(|e| e.table()),
            ),
            ("log", self.log.as_ref().map(|e| e.table())),
        ] {
            if let Some(t) = section {
                root.insert(name.into(), Value::Table(t));
            }
        }
        for (k, v) in &self.other {
            root.entry(k.clone()).or_insert_with(|| v.toml());
        }
        toml::to_string(&root).unwrap_or_default()
    }
}
