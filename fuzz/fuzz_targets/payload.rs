//! The payload encoders: for any camera id, model name, labels, scores, counters and
//! times, every payload is valid JSON and gives the strings and numbers back.
#![no_main]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use streamclassd::labels::Labels;
use streamclassd::messages::{Classification, FrameMeta, Latency, ModelInfo, RegionOf, Scored};
use streamclassd::publish::payload;
use streamclassd::status::CameraStatus;

#[derive(Arbitrary, Debug)]
struct Input {
    camera: String,
    model: String,
    labels: Vec<String>,
    top: Vec<(u16, f32)>,
    seq: u64,
    frame: u64,
    dropped: u64,
    /// Seconds since the epoch; negative is before it (a clock set back).
    seconds: i64,
    nanos: u32,
    region: Option<(String, [u32; 4])>,
    latency: [f64; 4],
    error: Option<String>,
}

fn score_of(v: &Value, score: f32) {
    if score.is_finite() {
        assert_eq!(v.as_f64().map(|x| x as f32), Some(score), "{v}");
    } else {
        assert!(v.is_null(), "{v} for {score}");
    }
}

fuzz_target!(|input: Input| {
    let names: Vec<String> = input
        .labels
        .iter()
        .map(|l| l.replace('\n', " "))
        .filter(|l| !l.trim().is_empty())
        .collect();
    if names.is_empty() {
        return;
    }
    let labels = Labels::parse(&names.join("\n"), Path::new("l")).expect("labels");
    let offset = Duration::new(input.seconds.unsigned_abs(), input.nanos % 1_000_000_000);
    let at = if input.seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    let Some(captured_at) = at else { return };
    let top: Vec<Scored> = input
        .top
        .iter()
        .take(5)
        .map(|(i, s)| Scored {
            index: usize::from(*i) % labels.len(),
            score: *s,
        })
        .collect();
    let [queue, preprocess, inference, total] = input.latency;
    let c = Classification {
        model: Arc::new(ModelInfo {
            name: input.model.clone(),
            labels: labels.clone(),
        }),
        meta: FrameMeta {
            camera: 0,
            index: input.frame,
            captured_at,
            captured: Instant::now(),
            dropped: input.dropped,
        },
        region: input.region.as_ref().map(|(name, rect)| RegionOf {
            name: Arc::from(name.as_str()),
            input_rect: *rect,
        }),
        top: top.clone(),
        latency: Latency {
            queue,
            preprocess,
            inference,
            total,
        },
        batch: 1,
    };

    let mut out = Vec::new();
    payload::encode(
        &c,
        &input.camera,
        input.seq,
        &input.model,
        &labels,
        &mut out,
    )
    .expect("encodes");
    let v: Value = serde_json::from_slice(&out).expect("valid JSON");
    assert_eq!(v["camera"].as_str(), Some(input.camera.as_str()));
    assert_eq!(v["model"].as_str(), Some(input.model.as_str()));
    assert_eq!(v["seq"].as_u64(), Some(input.seq));
    assert_eq!(v["frame"].as_u64(), Some(input.frame));
    assert_eq!(v["dropped"].as_u64(), Some(input.dropped));
    assert!(v["captured_at"].is_string());
    let entries = v["top5"].as_array().expect("top5");
    assert_eq!(entries.len(), top.len());
    for (e, s) in entries.iter().zip(&top) {
        assert_eq!(e["index"].as_u64(), Some(s.index as u64));
        assert_eq!(e["label"].as_str(), Some(labels.get(s.index)));
        score_of(&e["score"], s.score);
    }
    if let Some((name, rect)) = &input.region {
        assert_eq!(v["region"].as_str(), Some(name.as_str()));
        assert_eq!(v["input_rect"], serde_json::json!(rect));
    }

    if let Some(first) = top.first() {
        let label: Value = serde_json::from_slice(&payload::encode_label(
            &c,
            &input.camera,
            first.index,
            &labels,
        ))
        .expect("label JSON");
        assert_eq!(label["label"].as_str(), Some(labels.get(first.index)));
        assert_eq!(label["camera"].as_str(), Some(input.camera.as_str()));
    }
    let top5: Value =
        serde_json::from_slice(&payload::encode_top5(&c, &labels)).expect("top5 JSON");
    assert_eq!(top5["top5"].as_array().map(Vec::len), Some(top.len()));

    let status = CameraStatus {
        error: input.error.clone(),
        since: captured_at,
        frames: input.frame,
        dropped: input.dropped,
        keyframe_interval_s: Some(queue),
        demand_fps: preprocess,
        classified_fps: inference,
        region_errors: input
            .region
            .iter()
            .map(|(n, _)| (Arc::from(n.as_str()), input.model.clone()))
            .collect(),
        ..CameraStatus::default()
    };
    let s: Value = serde_json::from_slice(&payload::encode_status(&status)).expect("status JSON");
    assert_eq!(s["error"].as_str(), input.error.as_deref());
    assert_eq!(s["frames"].as_u64(), Some(input.frame));
    let broker = payload::Broker::default();
    let stats = payload::encode_stats(&[(input.camera.as_str(), status)], input.seq, 0, &broker);
    let st: Value = serde_json::from_slice(&stats).expect("stats JSON");
    assert!(st.is_object());
});
