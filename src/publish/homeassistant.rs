//! Home Assistant MQTT discovery: per camera, a sensor whose state is the top-1 label (the
//! top-5 as attributes) and a sensor for the camera's status, and a label sensor per region
//! (announced when the region is first classified), grouped under one device, available
//! while `{prefix}/status` is `online`. Announced (retained) on every connection
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
    /// (camera, region) of every region classified so far.
    pub regions: Vec<(String, String)>,
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

    /// The retained discovery messages for every camera and region.
    pub fn messages(&self) -> Vec<OutMsg> {
        let cameras = self.cameras.iter().flat_map(|cam| self.messages_for(cam));
        let regions = self
            .regions
            .iter()
            .filter(|(cam, _)| self.cameras.contains(cam))
            .map(|(cam, region)| self.region_message(cam, region));
        cameras.chain(regions).collect()
    }

    /// The discovery config topics of one camera and its regions (an empty retained
    /// message on each removes its entities from Home Assistant).
    pub fn config_topics(&self, cam: &str) -> Vec<String> {
        let discovery = self.topics().1;
        let regions = self
            .regions
            .iter()
            .filter(|(c, _)| c == cam)
            .map(|(_, region)| discovery.sensor_config(&region_object(cam, region), "label"));
        ["label", "status"]
            .iter()
            .map(|kind| discovery.sensor_config(cam, kind))
            .chain(regions)
            .collect()
    }

    /// A label sensor named `name` for the label messages on `state_topic`.
    fn label_sensor(&self, name: String, object: &str, state_topic: String) -> Value {
        json!({
            "name": name,
            "unique_id": format!("streamclassd_{}_{object}_label", self.node_id),
            "state_topic": state_topic,
            "value_template": "{{ value_json.top5[0].label }}",
            "json_attributes_topic": state_topic,
            "json_attributes_template": "{{ {'top5': value_json.top5, 'frame': value_json.frame, 'captured_at': value_json.captured_at} | tojson }}",
            "availability_topic": self.topics().0.status(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:cctv",
            "device": self.device(),
        })
    }

    /// The retained discovery message of region `region` of camera `cam`: a label sensor
    /// under the same device.
    pub fn region_message(&self, cam: &str, region: &str) -> OutMsg {
        let (ours, discovery) = self.topics();
        let object = region_object(cam, region);
        let state = ours.labels(&topics::stream(cam, Some(region)));
        let config = self.label_sensor(format!("{cam} {region} label"), &object, state);
        topics::retained(
            discovery.sensor_config(&object, "label"),
            config.to_string().into_bytes(),
        )
    }

    /// The retained discovery messages for one camera.
    pub fn messages_for(&self, cam: &str) -> Vec<OutMsg> {
        let ours = self.topics().0;
        let availability = ours.status();
        let mut out = Vec::with_capacity(2);
        {
            let status = ours.camera_status(cam);
            let label_sensor = self.label_sensor(format!("{cam} label"), cam, ours.labels(cam));
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
            let discovery = self.topics().1;
            let topics = ["label", "status"].map(|kind| discovery.sensor_config(cam, kind));
            for (topic, config) in topics.into_iter().zip([label_sensor, status_sensor]) {
                out.push(topics::retained(topic, config.to_string().into_bytes()));
            }
        }
        out
    }
}

/// The object id of a region's sensor: `{camera}_region_{name}`.
fn region_object(cam: &str, region: &str) -> String {
    format!("{cam}_region_{region}")
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
            regions: vec![("front".into(), "door".into())],
        };
        let msgs = d.messages();
        assert_eq!(msgs.len(), 5);
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
        let region = &msgs[4];
        assert_eq!(
            region.topic,
            "homeassistant/sensor/streamclassd-garage_lan/front_region_door_label/config"
        );
        let v: Value = serde_json::from_slice(&region.payload).expect("json");
        assert_eq!(v["state_topic"], "streamclassd/front/region/door/labels");
        assert_eq!(v["name"], "front door label");
        assert_eq!(
            v["device"]["identifiers"][0],
            "streamclassd_streamclassd-garage_lan"
        );
        assert_eq!(d.config_topics("front").len(), 3);
        assert_eq!(d.config_topics("back").len(), 2);
    }
}
