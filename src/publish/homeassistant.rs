//! Home Assistant MQTT discovery: per camera, a sensor whose state is the top-1 label (the
//! top-5 as attributes) and a sensor for the camera's status, grouped under one device,
//! available while `{prefix}/status` is `online`. Announced (retained) on every connection
//! and again whenever Home Assistant publishes `online` on `{discovery_prefix}/status`.

use serde_json::{json, Value};

use super::outbox::OutMsg;
use super::topics::{self, DiscoveryTopics, Topics};

/// What discovery needs to know.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub discovery_prefix: String,
    pub node_id: String,
    pub topic_prefix: String,
    pub model: String,
    pub cameras: Vec<String>,
}

impl Discovery {
    fn topics(&self) -> (Topics, DiscoveryTopics) {
        (
            Topics::new(&self.topic_prefix),
            DiscoveryTopics::new(&self.discovery_prefix, &self.node_id),
        )
    }

    /// Home Assistant's own availability topic.
    pub fn birth_topic(&self) -> String {
        self.topics().1.birth()
    }

    fn device(&self) -> Value {
        json!({
            "identifiers": [format!("streamclassd_{}", self.node_id)],
            "name": format!("streamclassd {}", self.node_id),
            "manufacturer": "streamclassd",
            "model": self.model,
            "sw_version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// The retained discovery messages for every camera.
    pub fn messages(&self) -> Vec<OutMsg> {
        self.cameras
            .iter()
            .flat_map(|cam| self.messages_for(cam))
            .collect()
    }

    /// The discovery config topics of one camera (an empty retained message on each
    /// removes its entities from Home Assistant).
    pub fn config_topics(&self, cam: &str) -> Vec<String> {
        let discovery = self.topics().1;
        ["label", "status"]
            .iter()
            .map(|kind| discovery.sensor_config(cam, kind))
            .collect()
    }

    /// The retained discovery messages for one camera.
    pub fn messages_for(&self, cam: &str) -> Vec<OutMsg> {
        let ours = self.topics().0;
        let availability = ours.status();
        let mut out = Vec::with_capacity(2);
        {
            let labels = ours.labels(cam);
            let status = ours.camera_status(cam);
            let label_sensor = json!({
                "name": format!("{cam} label"),
                "unique_id": format!("streamclassd_{}_{cam}_label", self.node_id),
                "state_topic": labels,
                "value_template": "{{ value_json.top5[0].label }}",
                "json_attributes_topic": labels,
                "json_attributes_template": "{{ {'top5': value_json.top5, 'frame': value_json.frame, 'captured_at': value_json.captured_at} | tojson }}",
                "availability_topic": availability,
                "payload_available": "online",
                "payload_not_available": "offline",
                "icon": "mdi:cctv",
                "device": self.device(),
            });
            let status_sensor = json!({
                "name": format!("{cam} status"),
                "unique_id": format!("streamclassd_{}_{cam}_status", self.node_id),
                "state_topic": status,
                "value_template": "{{ value_json.state }}",
                "json_attributes_topic": status,
                "availability_topic": availability,
                "payload_available": "online",
                "payload_not_available": "offline",
                "icon": "mdi:video-check",
                "entity_category": "diagnostic",
                "device": self.device(),
            });
            for (topic, config) in self
                .config_topics(cam)
                .into_iter()
                .zip([label_sensor, status_sensor])
            {
                out.push(topics::retained(topic, config.to_string().into_bytes()));
            }
        }
        out
    }
}

/// A node id Home Assistant accepts in a topic: `[a-zA-Z0-9_-]`.
pub fn node_id(from: &str) -> String {
    from.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sensors_per_camera_with_availability_and_device() {
        let d = Discovery {
            discovery_prefix: "homeassistant".into(),
            node_id: node_id("streamclassd-garage.lan"),
            topic_prefix: "streamclassd".into(),
            model: "resnet50".into(),
            cameras: vec!["front".into(), "back".into()],
        };
        let msgs = d.messages();
        assert_eq!(msgs.len(), 4);
        assert_eq!(
            msgs[0].topic,
            "homeassistant/sensor/streamclassd-garage_lan/front_label/config"
        );
        let v: Value = serde_json::from_slice(&msgs[0].payload).expect("json");
        assert_eq!(v["state_topic"], "streamclassd/front/labels");
        assert_eq!(v["availability_topic"], "streamclassd/status");
        assert_eq!(
            v["device"]["identifiers"][0],
            "streamclassd_streamclassd-garage_lan"
        );
        assert!(msgs.iter().all(|m| m.retain));
    }
}
