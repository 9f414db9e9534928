//! The admin HTTP listener (`[admin] listen`, loopback by default): `/metrics` in
//! Prometheus text format, `/healthz` (the process answers) and `/readyz` (model loaded,
//! broker connected, every camera streaming or cleanly reconnecting). Responses name
//! cameras by id and state only: no source URL, so no credential, ever appears.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Response, Server};

use crate::metrics::Metrics;
use crate::status::{CameraState, StatusBoard};

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
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

    /// Serves until `stop` is set. Binding happens before the thread starts, so a port
    /// that is taken is an error at start-up.
    pub fn spawn(
        self,
        listen: SocketAddr,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        let server = Server::http(listen).map_err(|e| std::io::Error::other(e.to_string()))?;
        tracing::info!(%listen, "admin listener on /metrics, /healthz, /readyz");
        std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200)) else {
                        continue;
                    };
                    let path = request.url().split('?').next().unwrap_or("").to_owned();
                    let (code, body, kind) = match path.as_str() {
                        "/metrics" => (
                            200,
                            self.metrics.render(),
                            "text/plain; version=0.0.4; charset=utf-8",
                        ),
                        "/healthz" => (200, "ok\n".to_owned(), "text/plain"),
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
