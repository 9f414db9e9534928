//! The JSON published on `{prefix}/{camera}/labels` (payload version 1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::labels::Labels;
use crate::messages::Classification;
use crate::status::{CameraState, CameraStatus};

/// Payload format version; bumped on any incompatible change.
pub const VERSION: u8 = 1;

#[derive(Debug, Serialize)]
pub struct LabelsPayload<'a> {
    pub v: u8,
    pub camera: &'a str,
    /// Messages published for this camera before this one: contiguous from 0.
    pub seq: u64,
    /// Index of the frame in its source.
    pub frame: u64,
    /// RFC 3339 UTC time the frame was read, millisecond precision.
    pub captured_at: String,
    pub model: &'a str,
    /// The top-k classes (key kept as `top5` whatever k is), best first.
    pub top5: Vec<Entry<'a>>,
    pub latency_ms: LatencyMs,
    /// Frames of this camera dropped so far because the pipeline was busy.
    pub dropped: u64,
    /// A region's messages only: its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'a str>,
    /// A region's messages only: the part of the source frame the model saw (x, y,
    /// width, height in source pixels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_rect: Option<[u32; 4]>,
}

#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub index: usize,
    pub label: &'a str,
    pub score: f32,
}

#[derive(Debug, Serialize)]
pub struct LatencyMs {
    pub queue: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub total: f64,
}

/// Rounds a millisecond figure to microseconds: finer digits are noise.
fn ms(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The retained JSON on `{prefix}/{camera}/status`.
#[derive(Debug, Serialize)]
pub struct StatusPayload<'a> {
    pub state: CameraState,
    pub error: Option<&'a str>,
    pub reconnects: u64,
    pub since: String,
    pub frames: u64,
    pub dropped: u64,
    pub decode_errors: u64,
    pub skipped: u64,
    pub outbox_dropped: u64,
    pub fps: FpsPayload,
    pub decode: DecodePayload,
    /// Regions that cannot be classified (outside the frame); empty when all can.
    pub region_errors: Vec<RegionErrorPayload<'a>>,
}

/// A region that cannot be classified, and why.
#[derive(Debug, Serialize)]
pub struct RegionErrorPayload<'a> {
    pub region: &'a str,
    pub error: &'a str,
}

/// What the camera decodes and the keyframe interval it measured.
#[derive(Debug, Serialize)]
pub struct DecodePayload {
    pub mode: Option<&'static str>,
    pub keyframe_interval_s: Option<f64>,
}

/// A camera's demand and what it got, inferences per second (frames per second times
/// `per_frame`, the whole frame and its regions).
#[derive(Debug, Serialize)]
pub struct FpsPayload {
    pub demand: f64,
    pub classified: f64,
    pub per_frame: usize,
}

pub fn encode_status(s: &CameraStatus) -> Vec<u8> {
    let payload = StatusPayload {
        state: s.state,
        error: s.error.as_deref(),
        reconnects: s.reconnects,
        since: rfc3339_millis(s.since),
        frames: s.frames,
        dropped: s.dropped,
        decode_errors: s.decode_errors,
        skipped: s.skipped,
        outbox_dropped: s.outbox_dropped,
        fps: FpsPayload {
            demand: s.demand_fps,
            classified: s.classified_fps,
            per_frame: s.per_frame,
        },
        region_errors: s
            .region_errors
            .iter()
            .map(|(name, error)| RegionErrorPayload {
                region: name,
                error,
            })
            .collect(),
        decode: DecodePayload {
            mode: s.decoding,
            keyframe_interval_s: s.keyframe_interval_s.map(|i| (i * 1000.0).round() / 1000.0),
        },
    };
    // Serializing plain strings and integers cannot fail.
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// RFC 3339 in UTC with milliseconds. A clock outside what RFC 3339 can write (before
/// 1970, after 9999) gives the nearest end of that range, never a panic.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
    humantime::format_rfc3339_millis(t.clamp(UNIX_EPOCH, last)).to_string()
}

/// Encodes one classification (of the whole frame or a region; `seq` is that one's);
/// `out` is cleared and reused.
pub fn encode(
    c: &Classification,
    camera: &str,
    seq: u64,
    model: &str,
    labels: &Labels,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let payload = LabelsPayload {
        v: VERSION,
        camera,
        seq,
        frame: c.meta.index,
        captured_at: rfc3339_millis(c.meta.captured_at),
        model,
        top5: c
            .top
            .iter()
            .map(|s| Entry {
                index: s.index,
                label: labels.get(s.index),
                score: s.score,
            })
            .collect(),
        latency_ms: LatencyMs {
            queue: ms(c.latency.queue),
            preprocess: ms(c.latency.preprocess),
            inference: ms(c.latency.inference),
            total: ms(c.latency.total),
        },
        dropped: c.meta.dropped,
        region: c.region.as_ref().map(|r| r.name.as_ref()),
        input_rect: c.region.as_ref().map(|r| r.input_rect),
    };
    out.clear();
    serde_json::to_writer(&mut *out, &payload)
}

/// The retained debounced label on `{prefix}/{camera}/label` (a region's on
/// `{prefix}/{camera}/region/{name}/label`, with `region`).
pub fn encode_label(c: &Classification, camera: &str, index: usize, labels: &Labels) -> Vec<u8> {
    let score = c
        .top
        .iter()
        .find(|s| s.index == index)
        .map_or(0.0, |s| s.score);
    let mut payload = serde_json::json!({
        "camera": camera,
        "label": labels.get(index),
        "index": index,
        "score": score,
        "frame": c.meta.index,
        "since": rfc3339_millis(c.meta.captured_at),
    });
    if let Some(r) = &c.region {
        payload["region"] = r.name.as_ref().into();
    }
    payload.to_string().into_bytes()
}

/// The retained `{prefix}/{stream}/top5` (Home Assistant's label sensor attributes):
/// `{"top5":[{"index","label","score"}...],"frame":…,"captured_at":"…"}`.
pub fn encode_top5(c: &Classification, labels: &Labels) -> Vec<u8> {
    let top5: Vec<serde_json::Value> = c
        .top
        .iter()
        .map(|s| serde_json::json!({"index": s.index, "label": labels.get(s.index), "score": s.score}))
        .collect();
    let payload = serde_json::json!({
        "top5": top5,
        "frame": c.meta.index,
        "captured_at": rfc3339_millis(c.meta.captured_at),
    });
    payload.to_string().into_bytes()
}

/// The retained `{prefix}/stats`: per-camera counters and states.
/// The broker side of `{prefix}/stats`.
#[derive(Debug, Clone, Default)]
pub struct Broker {
    /// The server connected to last (`host:port`).
    pub server: Option<String>,
    /// Times the connection moved to another server.
    pub failovers: u64,
    /// Label messages sent again on a new connection after being written on a lost one.
    pub resent: u64,
}

pub fn encode_stats(
    cameras: &[(&str, CameraStatus)],
    uptime_s: u64,
    outbox_depth: usize,
    broker: &Broker,
) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    for (id, s) in cameras {
        map.insert(
            (*id).to_owned(),
            serde_json::json!({
                "state": s.state,
                "frames": s.frames,
                "classified": s.classified,
                "dropped": s.dropped,
                "decode_errors": s.decode_errors,
                "skipped": s.skipped,
                "decode": s.decoding,
                "keyframe_interval_s": s.keyframe_interval_s,
                "reconnects": s.reconnects,
                "outbox_dropped": s.outbox_dropped,
                "demand_fps": s.demand_fps,
                "classified_fps": s.classified_fps,
            }),
        );
    }
    serde_json::json!({
        "uptime_s": uptime_s,
        "outbox_depth": outbox_depth,
        "broker": {"server": broker.server, "failovers": broker.failovers,
                   "resent": broker.resent},
        "cameras": map,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LabelsSource;
    use crate::messages::{FrameMeta, Latency, ModelInfo, Scored};
    use std::sync::Arc;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    #[test]
    fn encodes_the_documented_shape() {
        let labels = Labels::load(&LabelsSource::ImageNet).expect("labels");
        let c = Classification {
            model: Arc::new(ModelInfo {
                name: "resnet50".into(),
                labels: labels.clone(),
            }),
            meta: FrameMeta {
                camera: 0,
                index: 1230,
                captured_at: UNIX_EPOCH + Duration::from_millis(1_795_885_200_123),
                captured: Instant::now(),
                dropped: 12,
            },
            region: None,
            top: vec![
                Scored {
                    index: 258,
                    score: 0.8831,
                },
                Scored {
                    index: 0,
                    score: 0.01,
                },
            ],
            latency: Latency {
                queue: 1.23456,
                preprocess: 0.9,
                inference: 61.0,
                total: 66.3,
            },
            batch: 1,
        };
        let mut out = Vec::new();
        encode(&c, "front-door", 41, "resnet50", &labels, &mut out).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["v"], 1);
        assert_eq!(v["camera"], "front-door");
        assert_eq!(v["seq"], 41);
        assert_eq!(v["frame"], 1230);
        assert_eq!(v["captured_at"], "2026-11-28T17:00:00.123Z");
        assert_eq!(v["model"], "resnet50");
        assert_eq!(v["top5"][0]["index"], 258);
        assert_eq!(v["top5"][0]["label"], "Samoyed");
        assert!((v["top5"][0]["score"].as_f64().expect("score") - 0.8831).abs() < 1e-6);
        assert_eq!(v["top5"][1]["label"], "tench");
        assert_eq!(v["latency_ms"]["queue"], 1.235);
        assert_eq!(v["latency_ms"]["total"], 66.3);
        assert_eq!(v["dropped"], 12);
        assert!(v.get("region").is_none() && v.get("input_rect").is_none());
        let region = Classification {
            region: Some(crate::messages::RegionOf {
                name: "driveway".into(),
                input_rect: [640, 0, 640, 720],
            }),
            ..c
        };
        encode(&region, "front-door", 3, "resnet50", &labels, &mut out).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            (v["seq"].clone(), v["region"].clone()),
            (3.into(), "driveway".into())
        );
        assert_eq!(v["input_rect"], serde_json::json!([640, 0, 640, 720]));
    }

    #[test]
    fn hostile_label_text_stays_valid_json() {
        let labels = Labels::parse("a \"quoted\" \\ label\u{7}\n", std::path::Path::new("x"))
            .expect("labels");
        let c = Classification {
            model: Arc::new(ModelInfo {
                name: "resnet50".into(),
                labels: labels.clone(),
            }),
            meta: FrameMeta {
                camera: 0,
                index: 0,
                captured_at: UNIX_EPOCH,
                captured: Instant::now(),
                dropped: 0,
            },
            region: None,
            top: vec![Scored {
                index: 0,
                score: 1.0,
            }],
            latency: Latency::default(),
            batch: 1,
        };
        let mut out = Vec::new();
        encode(&c, "c", 0, "m", &labels, &mut out).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["top5"][0]["label"], "a \"quoted\" \\ label\u{7}");
    }
}
