//! The JSON the admin listener serves: readiness, every camera's state and latest results
//! (`/api/cameras`), and one camera with its last ten minutes (`/api/cameras/{id}`).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::Admin;
use crate::monitor::results::Last;
use crate::status::CameraState;

/// A result's top-k with the class names of the model that made it; scores written as
/// the MQTT payload writes them (the shortest text of the f32, not its f64 widening).
fn top5(last: &Last) -> Value {
    last.top
        .iter()
        .map(|s| json!({"index": s.index, "label": last.model.labels.get(s.index), "score": score(s.score)}))
        .collect()
}

fn score(s: f32) -> f64 {
    s.to_string().parse::<f64>().unwrap_or(f64::from(s))
}

pub(super) fn millis(t: SystemTime) -> String {
    crate::publish::payload::rfc3339_millis(t)
}

fn state_name(state: Option<CameraState>) -> &'static str {
    state.map_or("unknown", CameraState::as_str)
}

impl Admin {
    /// The index of the active camera `id`.
    pub(super) fn camera(&self, id: &str) -> Option<usize> {
        self.status
            .active()
            .into_iter()
            .find(|(_, c)| c.as_ref() == id)
            .map(|(i, _)| i)
    }

    /// Readiness and, when not ready, why.
    pub fn readiness(&self) -> (bool, Value) {
        let mut reasons = Vec::new();
        if !self.metrics.model_loaded() {
            reasons.push("model not loaded".to_owned());
        }
        if !self.metrics.broker_is_connected() {
            reasons.push("broker not connected".to_owned());
        }
        let mut cameras = serde_json::Map::new();
        for (i, id) in self.status.active() {
            let state = self.status.snapshot(i).map(|(_, s)| s.state);
            let ok = matches!(
                state,
                Some(CameraState::Streaming | CameraState::Reconnecting | CameraState::Finished)
            );
            if !ok {
                reasons.push(format!("camera {id} is {}", state_name(state)));
            }
            cameras.insert(id.to_string(), state_name(state).into());
        }
        let ready = reasons.is_empty();
        let body = json!({ "ready": ready, "reasons": reasons, "cameras": cameras });
        (ready, body)
    }

    /// One active camera's state, counters, latency over the last minute and latest
    /// results (the whole frame's and each region's).
    fn camera_json(&self, i: usize, id: &str) -> Option<Value> {
        let (_, s) = self.status.snapshot(i)?;
        let view = self.monitor.results.view(i);
        let last = view.whole.as_ref().map(|l| {
            json!({"frame": l.frame, "captured_at": millis(l.captured_at),
                   "model": l.model.name, "top5": top5(l)})
        });
        let regions: Vec<Value> = view
            .regions
            .iter()
            .filter_map(|l| {
                let r = l.region.as_ref()?;
                Some(
                    json!({"region": r.name.as_ref(), "input_rect": r.input_rect,
                            "frame": l.frame, "captured_at": millis(l.captured_at),
                            "top5": top5(l)}),
                )
            })
            .collect();
        let region_errors: Vec<Value> = s
            .region_errors
            .iter()
            .map(|(region, error)| json!({"region": region.as_ref(), "error": error}))
            .collect();
        Some(json!({
            "id": id,
            "state": s.state,
            "error": s.error,
            "since": millis(s.since),
            "fps": {"demand": s.demand_fps, "classified": s.classified_fps,
                    "per_frame": s.per_frame},
            "frames": s.frames,
            "dropped": s.dropped,
            "skipped": s.skipped,
            "decode_errors": s.decode_errors,
            "reconnects": s.reconnects,
            "outbox_dropped": s.outbox_dropped,
            "latency_ms": view.latency_ms.map(|(p50, p99, samples)|
                json!({"p50": p50, "p99": p99, "samples": samples})),
            "last": last,
            "regions": regions,
            "region_errors": region_errors,
        }))
    }

    /// `/api/cameras`: every active camera.
    pub fn cameras(&self) -> Value {
        let out: Vec<Value> = self
            .status
            .active()
            .into_iter()
            .filter_map(|(i, id)| self.camera_json(i, &id))
            .collect();
        json!({ "cameras": out })
    }

    /// `/api/cameras/{id}`: the camera as in the list, plus its label timeline (top-1
    /// changes) and sparklines (frames classified per second and mean latency per 10 s)
    /// over the last ten minutes.
    pub fn camera_detail(&self, i: usize, id: &str) -> Option<Value> {
        let mut v = self.camera_json(i, id)?;
        let h = self.monitor.results.history(i);
        let label = |index: usize| h.model.as_ref().map(|m| m.labels.get(index).to_owned());
        let timeline: Vec<Value> = h
            .changes
            .iter()
            .map(|c| {
                json!({"at": millis(c.at), "frame": c.frame, "index": c.index,
                            "label": label(c.index), "score": score(c.score)})
            })
            .collect();
        let bucket_s = crate::monitor::results::BUCKET.as_secs_f64();
        let series: Vec<Value> = h
            .buckets
            .iter()
            .map(|b| {
                let latency = (b.frames > 0).then(|| b.latency_ms / f64::from(b.frames));
                json!({"start": millis(b.start), "fps": f64::from(b.frames) / bucket_s,
                       "latency_ms": latency})
            })
            .collect();
        v["timeline"] = timeline.into();
        v["series"] = json!({"bucket_s": bucket_s, "points": series});
        Some(v)
    }
}
