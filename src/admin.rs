//! The admin HTTP listener (`[admin] listen`, loopback by default): `/metrics` in
//! Prometheus text format, `/healthz` (the process answers), `/readyz` (model loaded,
//! broker connected, every camera streaming or cleanly reconnecting) and `/api/cameras`
//! (each camera's state, counters, latency over the last minute and latest results).
//! Responses name cameras by id: no source URL, so no credential, ever appears (errors
//! are redacted where they are made).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Response, Server};

use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::results::{Last, Results};
use crate::status::{CameraState, StatusBoard};

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub results: Arc<Results>,
    /// When set, every request but `/healthz` must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Compares two byte strings in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A result's top-k with the class names of the model that made it; scores written as
/// the MQTT payload writes them (the shortest text of the f32, not its f64 widening).
fn top5(last: &Last) -> Value {
    let score = |s: f32| s.to_string().parse::<f64>().unwrap_or(f64::from(s));
    last.top
        .iter()
        .map(|s| json!({"index": s.index, "label": last.model.labels.get(s.index), "score": score(s.score)}))
        .collect()
}

fn millis(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

impl Admin {
    /// Readiness and, when not ready, why.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
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
        let body = serde_json::json!({ "ready": ready, "reasons": reasons, "cameras": cameras });
        (ready, body)
    }

    /// `/api/cameras`: every active camera's state, counters, latency over the last
    /// minute and latest results (the whole frame's and each region's).
    pub fn cameras(&self) -> Value {
        let mut out = Vec::new();
        for (i, id) in self.status.active() {
            let Some((_, s)) = self.status.snapshot(i) else {
                continue;
            };
            let view = self.results.view(i);
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
            out.push(json!({
                "id": id.as_ref(),
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
            }));
        }
        json!({ "cameras": out })
    }

    /// Whether `request` may see `path`: `/healthz` always; everything else with the
    /// token, when one is configured.
    fn allowed(&self, request: &tiny_http::Request, path: &str) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        path == "/healthz"
            || request.headers().iter().any(|h| {
                h.field.equiv("Authorization")
                    && h.value
                        .as_str()
                        .strip_prefix("Bearer ")
                        .is_some_and(|t| same_secret(t.trim().as_bytes(), token.as_bytes()))
            })
    }

    /// Serves until `stop` is set. Binding happens before the thread starts, so a port
    /// that is taken is an error at start-up.
    pub fn spawn(
        self,
        listen: SocketAddr,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        let server = Server::http(listen).map_err(|e| std::io::Error::other(e.to_string()))?;
        tracing::info!(%listen, "admin listener on /metrics, /healthz, /readyz, /api/cameras");
        std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200)) else {
                        continue;
                    };
                    let path = request.url().split('?').next().unwrap_or("").to_owned();
                    if !self.allowed(&request, &path) {
                        let mut response =
                            Response::from_string("unauthorized\n").with_status_code(401);
                        if let Some(h) = header("WWW-Authenticate", "Bearer") {
                            response = response.with_header(h);
                        }
                        let _ = request.respond(response);
                        continue;
                    }
                    let (code, body, kind) = match path.as_str() {
                        "/metrics" => (
                            200,
                            self.metrics.render(),
                            "text/plain; version=0.0.4; charset=utf-8",
                        ),
                        "/healthz" => (200, "ok\n".to_owned(), "text/plain"),
                        "/api/cameras" => {
                            (200, format!("{}\n", self.cameras()), "application/json")
                        }
                        "/readyz" => {
                            let (ready, body) = self.readiness();
                            (
                                if ready { 200 } else { 503 },
                                format!("{body}\n"),
                                "application/json",
                            )
                        }
                        _ => (404, "not found\n".to_owned(), "text/plain"),
                    };
                    let mut response = Response::from_string(body).with_status_code(code);
                    if let Some(h) = header("Content-Type", kind) {
                        response = response.with_header(h);
                    }
                    let _ = request.respond(response);
                }
            })
    }
}

fn state_name(state: Option<CameraState>) -> &'static str {
    state.map_or("unknown", CameraState::as_str)
}
