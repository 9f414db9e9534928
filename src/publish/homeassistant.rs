//! Home Assistant MQTT discovery: per camera, a sensor whose state is the debounced top-1
//! label (the top-5 as attributes, refreshed at most every few seconds), a sensor for
//! the camera's status and, with `snapshot = true`, an image entity showing its snapshot;
//! and a label sensor per region
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
    /// Shortest time between two refreshes of a label sensor's attributes.
    pub attributes_interval: std::time::Duration,
    pub cameras: Vec<String>,
    /// (camera, region) of every region classified so far.
    pub regions: Vec<(String, String)>,
    /// Cameras that publish snapshots (each gets an image entity).
    pub snapshots: Vec<String>,
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
            "name": device_name(&self.node_id),
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
        let image = self
            .snapshots
            .iter()
            .any(|c| c == cam)
            .then(|| discovery.image_config(cam));
        ["label", "status"]
            .iter()
            .map(|kind| discovery.sensor_config(cam, kind))
            .chain(regions)
            .chain(image)
            .collect()
    }

    /// The config topic of camera `cam`'s image entity.
    pub fn image_topic(&self, cam: &str) -> String {
        self.topics().1.image_config(cam)
    }

    /// The retained discovery message of camera `cam`'s image entity: its snapshot (the
    /// raw JPEG on `{prefix}/{camera}/snapshot`), under the same device.
    pub fn image_message(&self, cam: &str) -> OutMsg {
        let ours = self.topics().0;
        let object = entity_object(&format!("{cam}_snapshot"));
        let config = json!({
            "name": format!("{cam} snapshot"),
            "unique_id": format!("streamclassd_{}_{cam}_snapshot", self.node_id),
            "object_id": object,
            "default_entity_id": format!("image.{object}"),
            "image_topic": ours.snapshot(cam),
            "content_type": "image/jpeg",
            "availability_topic": ours.status(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:camera",
            "device": self.device(),
        });
        topics::retained(self.image_topic(cam), config.to_string().into_bytes())
    }

    /// A label sensor named `name` for the stream `stream` (a camera, or a region's
    /// [`topics::stream`]): its state the debounced label (retained, changing only when the
    /// label does), its attributes the top-5, refreshed at most every
    /// `attributes_interval`, so Home Assistant records a change per label, not per frame.
    fn label_sensor(&self, name: String, object: &str, stream: &str) -> Value {
        let ours = self.topics().0;
        let object = format!("{object}_label");
        json!({
            "name": name,
            "unique_id": format!("streamclassd_{}_{object}", self.node_id),
            "object_id": entity_object(&object),
            "default_entity_id": format!("sensor.{}", entity_object(&object)),
            "state_topic": ours.label(stream),
            "value_template": "{{ value_json.label }}",
            "json_attributes_topic": ours.top5(stream),
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
        let discovery = self.topics().1;
        let object = region_object(cam, region);
        let stream = topics::stream(cam, Some(region));
        let config = self.label_sensor(format!("{cam} {region} label"), &object, &stream);
        topics::retained(
            discovery.sensor_config(&object, "label"),
            config.to_string().into_bytes(),
        )
    }

    /// The retained discovery messages for one camera.
    pub fn messages_for(&self, cam: &str) -> Vec<OutMsg> {
        let ours = self.topics().0;
        let availability = ours.status();
        let mut out = Vec::with_capacity(3);
        {
            let status = ours.camera_status(cam);
            let label_sensor = self.label_sensor(format!("{cam} label"), cam, cam);
            let status_sensor = json!({
                "name": format!("{cam} status"),
                "unique_id": format!("streamclassd_{}_{cam}_status", self.node_id),
                "object_id": entity_object(&format!("{cam}_status")),
                "default_entity_id": format!("sensor.{}", entity_object(&format!("{cam}_status"))),
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
        if self.snapshots.iter().any(|c| c == cam) {
            out.push(self.image_message(cam));
        }
        out
    }
}

/// The device's name: `streamclassd <node>`, without repeating `streamclassd` when the
/// node id already starts with it (the default node id is the MQTT client id,
/// `streamclassd-<hostname>`).
fn device_name(node_id: &str) -> String {
    let rest = node_id
        .strip_prefix("streamclassd")
        .map(|r| r.trim_start_matches(['-', '_']))
        .unwrap_or(node_id);
    if rest.is_empty() {
        "streamclassd".to_owned()
    } else {
        format!("streamclassd {rest}")
    }
}

/// An entity's object id as Home Assistant writes entity ids: lower case, `-` as `_`
/// (camera ids and region names are `[A-Za-z0-9_-]`), so `front-door` gives
/// `sensor.front_door_label`.
fn entity_object(object: &str) -> String {
    object.to_ascii_lowercase().replace('-', "_")
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
            attributes_interval: std::time::Duration::from_secs(5),
            cameras: vec!["front".into(), "back".into()],
            regions: vec![("front".into(), "door".into())],
            snapshots: vec!["back".into()],
        };
        let msgs = d.messages();
        assert_eq!(msgs.len(), 6);
        assert_eq!(
            msgs[0].topic,
            "homeassistant/sensor/streamclassd-garage_lan/front_label/config"
        );
        let v: Value = serde_json::from_slice(&msgs[0].payload).expect("json");
        assert_eq!(v["state_topic"], "streamclassd/front/label");
        assert_eq!(v["json_attributes_topic"], "streamclassd/front/top5");
        assert_eq!(v["object_id"], "front_label");
        assert_eq!(v["default_entity_id"], "sensor.front_label");
        assert_eq!(v["device"]["name"], "streamclassd garage_lan");
        assert_eq!(v["availability_topic"], "streamclassd/status");
        assert_eq!(
            v["device"]["identifiers"][0],
            "streamclassd_streamclassd-garage_lan"
        );
        assert!(msgs.iter().all(|m| m.retain));
        let image = &msgs[4];
        assert_eq!(
            image.topic,
            "homeassistant/image/streamclassd-garage_lan/back_snapshot/config"
        );
        let v: Value = serde_json::from_slice(&image.payload).expect("json");
        assert_eq!(v["image_topic"], "streamclassd/back/snapshot");
        assert_eq!(v["content_type"], "image/jpeg");
        assert_eq!(v["default_entity_id"], "image.back_snapshot");
        assert_eq!(
            v["unique_id"],
            "streamclassd_streamclassd-garage_lan_back_snapshot"
        );
        assert_eq!(v["availability_topic"], "streamclassd/status");
        assert_eq!(v["device"]["name"], "streamclassd garage_lan");
        let region = &msgs[5];
        assert_eq!(
            region.topic,
            "homeassistant/sensor/streamclassd-garage_lan/front_region_door_label/config"
        );
        let v: Value = serde_json::from_slice(&region.payload).expect("json");
        assert_eq!(v["state_topic"], "streamclassd/front/region/door/label");
        assert_eq!(v["name"], "front door label");
        assert_eq!(v["default_entity_id"], "sensor.front_region_door_label");
        assert_eq!(
            v["device"]["identifiers"][0],
            "streamclassd_streamclassd-garage_lan"
        );
        assert_eq!(d.config_topics("front").len(), 3);
        assert_eq!(d.config_topics("back").len(), 3);
    }

    #[test]
    fn names_do_not_repeat_and_entity_ids_are_what_home_assistant_writes() {
        assert_eq!(device_name("streamclassd-garage"), "streamclassd garage");
        assert_eq!(device_name("streamclassd"), "streamclassd");
        assert_eq!(device_name("garage"), "streamclassd garage");
        assert_eq!(entity_object("Front-Door_label"), "front_door_label");
    }
}
