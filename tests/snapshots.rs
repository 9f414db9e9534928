//! MQTT snapshots against a real broker and a real RTSP camera: a retained JPEG of the
//! requested height on `{prefix}/{camera}/snapshot`, once at start and on each debounced
//! label change (never on the labels topic), Home Assistant's image entity pointing at
//! it, and both withdrawn when a reload turns snapshots off.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{config, fixtures, Broker, Daemon, RtspServer, Subscriber, PATIENCE};
use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;

/// Configuration variables of Home Assistant's MQTT image (integrations/image.mqtt).
const IMAGE_FIELDS: &[&str] = &[
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "content_type",
    "default_entity_id",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "image_encoding",
    "image_topic",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "payload_available",
    "payload_not_available",
    "platform",
    "unique_id",
    "url_template",
    "url_topic",
];

fn decode(jpeg: &[u8]) -> Mat {
    let m = imgcodecs::imdecode(&Vector::from_slice(jpeg), imgcodecs::IMREAD_COLOR)
        .expect("a JPEG that decodes");
    assert!(m.rows() > 0, "{} bytes are no JPEG", jpeg.len());
    m
}

const IMAGE_CONFIG: &str = "homeassistant/image/box/porch_snapshot/config";

fn camera(url: &str, snapshot: bool) -> String {
    let snap = if snapshot {
        "snapshot = true\nsnapshot_height = 120\nsnapshot_quality = 60\n"
    } else {
        ""
    };
    format!("\n[[camera]]\nid = \"porch\"\nsource = \"{url}\"\nfps = 4\n{snap}")
}

#[test]
fn snapshots_follow_the_label_and_home_assistant_shows_them() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "#");
    let url = server.url("");
    let ha = "\n[homeassistant]\nnode_id = \"box\"\nattributes_interval_s = 3600\n";
    let cfg = |snapshot| config(broker.port, "ha", &[], "") + &camera(&url, snapshot) + ha;
    let mut d = Daemon::start(&cfg(true));
    assert!(
        sub.wait_until(PATIENCE, |m| m
            .iter()
            .any(|m| m.topic == "ha/porch/snapshot")),
        "no snapshot:\n{}",
        d.stderr()
    );
    assert!(sub.wait_until(PATIENCE, common::at_least("ha/porch/labels", 12)));

    // What a client connecting now finds: the snapshot and the image entity, retained.
    let late = Subscriber::connect(broker.port, "#");
    assert!(late.wait_until(PATIENCE, |m| m
        .iter()
        .any(|m| m.topic == "ha/porch/snapshot" && m.retain)));
    assert!(late.wait_until(PATIENCE, |m| m
        .iter()
        .any(|m| m.topic == IMAGE_CONFIG && m.retain)));
    let snapshot = late.on("ha/porch/snapshot").pop().expect("snapshot");
    let image = decode(&snapshot.payload);
    assert_eq!(image.rows(), 120, "snapshot_height");
    assert!(image.cols() > 120, "width in proportion: {}", image.cols());
    let entity = late.on(IMAGE_CONFIG).pop().expect("image entity").json();
    for key in entity.as_object().expect("object").keys() {
        assert!(IMAGE_FIELDS.contains(&key.as_str()), "undocumented {key}");
    }
    assert_eq!(entity["image_topic"], "ha/porch/snapshot");
    assert_eq!(entity["content_type"], "image/jpeg");
    assert_eq!(entity["default_entity_id"], "image.porch_snapshot");
    assert_eq!(entity["availability_topic"], "ha/status");
    assert_eq!(entity["device"]["name"], "streamclassd box");
    let unique: HashSet<String> = late
        .messages()
        .iter()
        .filter(|m| m.topic.starts_with("homeassistant/") && !m.payload.is_empty())
        .map(|m| {
            m.json()["unique_id"]
                .as_str()
                .expect("unique_id")
                .to_owned()
        })
        .collect();
    assert_eq!(unique.len(), 3, "label, status and image: {unique:?}");

    // Snapshots come at start and with label changes only, and never on the labels topic.
    let snapshots = sub.on("ha/porch/snapshot");
    let changes = sub.on("ha/porch/label").len();
    assert!(
        !snapshots.is_empty() && snapshots.len() <= changes,
        "{} snapshots for {changes} label changes",
        snapshots.len()
    );
    for s in &snapshots {
        assert_eq!(decode(&s.payload).rows(), 120);
    }
    for m in sub.on("ha/porch/labels") {
        assert!(m.json()["top5"].is_array(), "labels carry JSON only");
    }

    // Snapshots off: the retained snapshot and the image entity go; labels go on.
    std::fs::write(d.dir.path().join("config.toml"), cfg(false)).expect("rewrite config");
    d.signal("HUP");
    let cleared = |topic: &'static str| {
        move |m: &[common::Message]| m.iter().any(|m| m.topic == topic && m.payload.is_empty())
    };
    assert!(
        sub.wait_until(PATIENCE, cleared("ha/porch/snapshot")),
        "snapshot not cleared:\n{}",
        d.stderr()
    );
    assert!(sub.wait_until(PATIENCE, cleared(IMAGE_CONFIG)));
    let published = sub.on("ha/porch/labels").len();
    assert!(sub.wait_until(PATIENCE, common::at_least("ha/porch/labels", published + 4)));
    let after = Subscriber::connect(broker.port, "#");
    assert!(after.wait_until(PATIENCE, |m| m.iter().any(|m| m.topic == "ha/porch/status")));
    std::thread::sleep(Duration::from_millis(500));
    let retained: Vec<String> = after.messages().into_iter().map(|m| m.topic).collect();
    assert!(!retained
        .iter()
        .any(|t| t == "ha/porch/snapshot" || t == IMAGE_CONFIG));
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
}
