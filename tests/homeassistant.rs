//! Home Assistant MQTT discovery against a real broker: the retained configs use only the
//! fields Home Assistant's MQTT sensor documents, point at topics the daemon really
//! publishes, and are announced again when Home Assistant comes online.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{config, fixtures, Broker, Daemon, RtspServer, Subscriber, PATIENCE};
use rumqttc::{Client, MqttOptions, QoS};

/// Configuration variables of Home Assistant's MQTT sensor (integrations/sensor.mqtt).
const SENSOR_FIELDS: &[&str] = &[
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "device_class",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "expire_after",
    "force_update",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "last_reset_value_template",
    "name",
    "object_id",
    "default_entity_id",
    "options",
    "payload_available",
    "payload_not_available",
    "platform",
    "qos",
    "state_class",
    "state_topic",
    "suggested_display_precision",
    "unique_id",
    "unit_of_measurement",
    "value_template",
];
const DEVICE_FIELDS: &[&str] = &[
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
];

fn publish(port: u16, topic: &str, payload: &str) {
    let (client, mut conn) = Client::new(MqttOptions::new("ha-core", "127.0.0.1", port), 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
        .expect("publish");
    for ev in conn.iter() {
        match ev {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => break,
            Err(e) => panic!("publish failed: {e}"),
            _ => {}
        }
    }
    let _ = client.disconnect();
}

#[test]
fn discovery_configs_are_valid_and_reannounced_when_home_assistant_restarts() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "#");
    let cfg = config(broker.port, "ha", &[("porch", &server.url(""), 2.0)], "")
        + "\n[[camera.region]]\nname = \"steps\"\nrect = [0, 180, 320, 180]\n"
        + "\n[homeassistant]\nnode_id = \"garage box\"\nattributes_interval_s = 3600\n";
    let mut d = Daemon::start(&cfg);
    let configs = |m: &[common::Message]| {
        m.iter()
            .filter(|m| {
                m.topic.starts_with("homeassistant/sensor/") && m.topic.ends_with("/config")
            })
            .count()
    };
    assert!(
        sub.wait_until(PATIENCE, |m| configs(m) >= 3),
        "{}",
        d.stderr()
    );
    assert!(sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.topic == "ha/porch/labels")));
    assert!(sub.wait_until(PATIENCE, |m| m
        .iter()
        .any(|m| m.topic == "ha/porch/region/steps/labels")));

    let msgs = sub.messages();
    let topics: HashSet<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
    let found: Vec<(String, serde_json::Value)> = msgs
        .iter()
        .filter(|m| m.topic.starts_with("homeassistant/sensor/"))
        .map(|m| (m.topic.clone(), m.json()))
        .collect();
    let expected = [
        "homeassistant/sensor/garage_box/porch_label/config",
        "homeassistant/sensor/garage_box/porch_status/config",
        "homeassistant/sensor/garage_box/porch_region_steps_label/config",
    ];
    for t in expected {
        assert!(found.iter().any(|(topic, _)| topic == t), "no {t}");
    }
    let mut unique = HashSet::new();
    for (topic, v) in &found {
        let obj = v.as_object().expect("object");
        for key in obj.keys() {
            assert!(
                SENSOR_FIELDS.contains(&key.as_str()),
                "{topic}: undocumented field {key}"
            );
        }
        for key in obj["device"].as_object().expect("device").keys() {
            assert!(
                DEVICE_FIELDS.contains(&key.as_str()),
                "{topic}: device field {key}"
            );
        }
        let state = v["state_topic"].as_str().expect("state_topic is required");
        assert!(
            topics.contains(state),
            "{topic}: state_topic {state} never published"
        );
        if let Some(attributes) = v["json_attributes_topic"].as_str() {
            assert!(
                topics.contains(attributes),
                "{topic}: {attributes} never published"
            );
        }
        assert_eq!(v["availability_topic"], "ha/status");
        assert!(unique.insert(v["unique_id"].as_str().expect("unique_id").to_owned()));
    }
    let label = &found
        .iter()
        .find(|(t, _)| t.ends_with("porch_label/config"))
        .expect("label sensor")
        .1;
    assert_eq!(label["value_template"], "{{ value_json.label }}");
    assert_eq!(label["state_topic"], "ha/porch/label");
    assert_eq!(label["json_attributes_topic"], "ha/porch/top5");
    // Entity ids as a user expects them, and a device name that says "streamclassd" once.
    for (suffix, entity) in [
        ("porch_label/config", "sensor.porch_label"),
        ("porch_status/config", "sensor.porch_status"),
        (
            "porch_region_steps_label/config",
            "sensor.porch_region_steps_label",
        ),
    ] {
        let v = &found
            .iter()
            .find(|(t, _)| t.ends_with(suffix))
            .expect(suffix)
            .1;
        assert_eq!(v["default_entity_id"], entity, "{v}");
        assert_eq!(v["object_id"], &entity["sensor.".len()..], "{v}");
        assert_eq!(v["device"]["name"], "streamclassd garage_box", "{v}");
    }

    // Home Assistant restarts and announces itself: discovery is published again.
    let before = configs(&sub.messages());
    publish(broker.port, "homeassistant/status", "online");
    assert!(
        sub.wait_until(Duration::from_secs(30), |m| configs(m) >= before + 3),
        "not re-announced:\n{}",
        d.stderr()
    );
    // Enough frames that a label sensor fed every frame would have churned.
    assert!(sub.wait_until(PATIENCE, common::at_least("ha/porch/labels", 6)));
    d.signal("TERM");
    let status = d.wait();
    assert_eq!(status.code(), Some(0), "{}", d.stderr());

    // No state churn: the label entity's state changes only when the top-1 does, and its
    // attributes were sent once in the run (attributes_interval_s = 3600), however many
    // frames were classified.
    assert!(sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.payload == b"offline")));
    let frames = common::labels(&sub, "ha/porch/labels");
    let mut changes = Vec::new();
    for f in &frames {
        let top1 = f["top5"][0]["index"].as_u64();
        if changes.last().map(|(c, _)| *c) != Some(top1) {
            changes.push((top1, f["frame"].as_u64()));
        }
    }
    let states: Vec<(Option<u64>, Option<u64>)> = common::labels(&sub, "ha/porch/label")
        .iter()
        .map(|v| (v["index"].as_u64(), v["frame"].as_u64()))
        .collect();
    assert_eq!(states, changes, "{} frames", frames.len());
    let distinct: HashSet<Vec<u8>> = sub
        .on("ha/porch/top5")
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(distinct.len(), 1, "{} frames", frames.len());
    assert!(frames.len() >= 6);
}

#[test]
fn a_reload_announces_added_cameras_and_withdraws_removed_ones() {
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let broker = Broker::start();
    let url = server.url("");
    let ha = "\n[homeassistant]\nnode_id = \"box\"\n";
    let mut d = Daemon::start(&(config(broker.port, "ha", &[("porch", &url, 2.0)], "") + ha));
    let sub = Subscriber::connect(broker.port, "#");
    let porch = "homeassistant/sensor/box/porch_label/config";
    assert!(sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.topic == porch)));
    assert!(sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.topic == "ha/porch/status")));

    std::fs::write(
        d.dir.path().join("config.toml"),
        config(broker.port, "ha", &[("yard", &url, 2.0)], "") + ha,
    )
    .expect("rewrite config");
    d.signal("HUP");
    assert!(
        sub.wait_until(PATIENCE, |m| m.iter().any(|m| m.topic == "ha/yard/labels")),
        "{}",
        d.stderr()
    );

    // What Home Assistant would find on connecting now: the retained state.
    let late = Subscriber::connect(broker.port, "#");
    assert!(late.wait_until(PATIENCE, |m| m
        .iter()
        .any(|m| m.topic == "homeassistant/sensor/box/yard_status/config")));
    std::thread::sleep(Duration::from_millis(500));
    let retained: HashSet<String> = late
        .messages()
        .into_iter()
        .filter(|m| m.retain && !m.payload.is_empty())
        .map(|m| m.topic)
        .collect();
    for t in [
        "homeassistant/sensor/box/yard_label/config",
        "homeassistant/sensor/box/yard_status/config",
        "ha/yard/status",
        "ha/yard/label",
        "ha/yard/top5",
    ] {
        assert!(retained.contains(t), "{t} not retained: {retained:?}");
    }
    for t in [
        porch,
        "homeassistant/sensor/box/porch_status/config",
        "ha/porch/status",
        "ha/porch/label",
        "ha/porch/top5",
    ] {
        assert!(!retained.contains(t), "{t} still retained after removal");
    }
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
}
