//! Every topic the publisher writes — under `{prefix}`, and Home Assistant's discovery
//! topics under its own prefix — and the retained messages it builds.

use super::config::Qos;
use super::outbox::OutMsg;

/// The topic names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        Topics {
            prefix: prefix.to_owned(),
        }
    }

    /// `{prefix}/status`: `online` / `offline` (retained; the last will).
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// `{prefix}/stats`: the periodic counters (retained).
    pub fn stats(&self) -> String {
        format!("{}/stats", self.prefix)
    }

    /// `{prefix}/{stream}/labels`: one message per classified frame (`stream`: a camera
    /// id, or a region's [`stream`]).
    pub fn labels(&self, stream: &str) -> String {
        format!("{}/{stream}/labels", self.prefix)
    }

    /// `{prefix}/{stream}/label`: the debounced top-1 (retained).
    pub fn label(&self, stream: &str) -> String {
        format!("{}/{stream}/label", self.prefix)
    }

    /// `{prefix}/{stream}/top5`: the latest top-5, at most every `attributes_interval_s`
    /// (retained; with Home Assistant, the label sensor's attributes).
    pub fn top5(&self, stream: &str) -> String {
        format!("{}/{stream}/top5", self.prefix)
    }

    /// `{prefix}/{camera}/snapshot`: a JPEG of the frame whose debounced label changed
    /// (retained, raw bytes; cameras with `snapshot = true`).
    pub fn snapshot(&self, camera: &str) -> String {
        format!("{}/{camera}/snapshot", self.prefix)
    }

    /// `{prefix}/{camera}/status`: the camera's state and counters (retained).
    pub fn camera_status(&self, camera: &str) -> String {
        format!("{}/{camera}/status", self.prefix)
    }
}

/// What a camera's or a region's topics are under: `{camera}` for the whole frame,
/// `{camera}/region/{name}` for a region. Also the key of its `seq` in the spool (ids and
/// names hold no `/`).
pub fn stream(camera: &str, region: Option<&str>) -> String {
    match region {
        None => camera.to_owned(),
        Some(name) => format!("{camera}/region/{name}"),
    }
}

/// Home Assistant's discovery topics: `{discovery_prefix}/sensor/{node}/{camera}_{kind}/config`
/// and its availability topic `{discovery_prefix}/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryTopics {
    discovery_prefix: String,
    node_id: String,
}

impl DiscoveryTopics {
    pub fn new(discovery_prefix: &str, node_id: &str) -> DiscoveryTopics {
        DiscoveryTopics {
            discovery_prefix: discovery_prefix.to_owned(),
            node_id: node_id.to_owned(),
        }
    }

    /// Where Home Assistant says `online` when it (re)starts.
    pub fn birth(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// The config topic of one sensor (`kind`: `label` or `status`) of a camera.
    pub fn sensor_config(&self, camera: &str, kind: &str) -> String {
        format!(
            "{}/sensor/{}/{camera}_{kind}/config",
            self.discovery_prefix, self.node_id
        )
    }

    /// The config topic of a camera's snapshot image entity.
    pub fn image_config(&self, camera: &str) -> String {
        format!(
            "{}/image/{}/{camera}_snapshot/config",
            self.discovery_prefix, self.node_id
        )
    }
}

/// A retained state message at QoS 1: it jumps the queue and never expires.
pub fn retained(topic: String, payload: Vec<u8>) -> OutMsg {
    OutMsg {
        topic,
        payload,
        qos: Qos::AtLeastOnce,
        retain: true,
        camera: None,
    }
}

/// An empty retained message, which deletes the retained one on `topic`.
pub fn cleared(topic: String) -> OutMsg {
    retained(topic, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_documented_layout() {
        let t = Topics::new("home/cams");
        assert_eq!(t.status(), "home/cams/status");
        assert_eq!(t.stats(), "home/cams/stats");
        assert_eq!(t.labels("door"), "home/cams/door/labels");
        assert_eq!(t.label("door"), "home/cams/door/label");
        assert_eq!(t.camera_status("door"), "home/cams/door/status");
        assert_eq!(t.snapshot("door"), "home/cams/door/snapshot");
        let d = DiscoveryTopics::new("homeassistant", "garage");
        assert_eq!(d.birth(), "homeassistant/status");
        assert_eq!(
            d.sensor_config("door", "label"),
            "homeassistant/sensor/garage/door_label/config"
        );
        let c = cleared(t.label("door"));
        assert!(c.retain && c.payload.is_empty() && c.camera.is_none());
    }
}
