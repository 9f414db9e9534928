//! The admin HTTP listener (`[admin] listen`, loopback by default): the console (`/`),
//! `/api/cameras` (each camera's state, counters, latency and latest results),
//! `/api/cameras/{id}` (with its last ten minutes), `/api/cameras/{id}/latest.jpg` and
//! `stream.mjpeg` (the last classified frame), `/api/events` (Server-Sent Events),
//! `/metrics` (Prometheus), `/healthz` and `/readyz`.
//!
//! It runs on a small tokio runtime of its own (one thread, JPEG encodes on its blocking
//! pool), apart from the pipeline: a viewer never makes a stage wait. Every socket write
//! gives up after [`WRITE_TIMEOUT`], so a client that stops reading is dropped; streams
//! are capped at [`MAX_STREAMS`]. Responses name cameras by id: no source URL, so no
//! credential, ever appears (errors are redacted where they are made).

mod api;
mod console;
mod images;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;

use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::status::StatusBoard;

/// A write that cannot go on for this long drops the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open MJPEG and event streams at most (more are refused with 503).
pub const MAX_STREAMS: i64 = 64;
/// The cookie a browser may carry the token in (set by `?token=`).
const COOKIE: &str = "streamclassd_token";

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub monitor: Arc<Monitor>,
    /// When set, every request but `/healthz` must carry the token: `Authorization:
    /// Bearer <token>`, or (for a browser, whose images and event streams cannot send
    /// headers) the cookie a `?token=` request sets.
    pub token: Option<String>,
}

/// Compares two byte strings in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A response with a plain-text body.
fn text(code: StatusCode, body: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

fn json(code: StatusCode, body: &serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// How a request proves it may see the listener.
#[derive(Debug, PartialEq)]
enum Proof {
    None,
    Header,
    Cookie,
    /// `?token=`: the response sets the cookie.
    Query,
}

impl Admin {
    fn proof(&self, request: &Request) -> Proof {
        let Some(token) = &self.token else {
            return Proof::Header;
        };
        let ok = |t: &str| same_secret(t.trim().as_bytes(), token.as_bytes());
        let headers = request.headers();
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok()?.strip_prefix("Bearer "))
            .any(ok);
        if bearer {
            return Proof::Header;
        }
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
            .any(ok);
        if cookie {
            return Proof::Cookie;
        }
        let query = request.uri().query().unwrap_or("");
        let queried = query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("token="))
            .any(ok);
        if queried {
            Proof::Query
        } else {
            Proof::None
        }
    }

    /// The router: every route behind the token check (served by [`Admin::spawn`]; the
    /// fuzz target `admin_request` drives it directly).
    pub fn router(self: Arc<Admin>) -> Router {
        Router::new()
            .route("/", get(console::index))
            .route("/console.js", get(console::script))
            .route("/console.css", get(console::style))
            .route("/healthz", get(|| async { text(StatusCode::OK, "ok") }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/api/cameras", get(cameras))
            .route("/api/cameras/{id}", get(camera))
            .route("/api/cameras/{id}/latest.jpg", get(images::latest))
            .route("/api/cameras/{id}/stream.mjpeg", get(images::mjpeg))
            .route("/api/events", get(console::events))
            .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self)
    }

    /// Serves until `stop` is set. Binding happens before the thread starts, so a port
    /// that is taken is an error at start-up.
    pub fn spawn(
        self,
        listen: SocketAddr,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(4)
            .thread_name("admin-encode")
            .build()?;
        tracing::info!(%listen, "admin listener: console on /, /api/cameras, /api/events, /metrics, /healthz, /readyz");
        let app = Arc::new(self).router();
        std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => Timeouts(l),
                        Err(e) => {
                            tracing::error!(error = %e, "admin listener failed");
                            return;
                        }
                    };
                    let serve = axum::serve(listener, app).into_future();
                    tokio::select! {
                        r = serve => if let Err(e) = r {
                            tracing::error!(error = %e, "admin listener failed");
                        },
                        () = stopped(stop) => {}
                    }
                });
            })
    }
}

async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/healthz` for everyone; everything else with the token, when one is configured.
async fn guard(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    let proof = if request.uri().path() == "/healthz" {
        Proof::Header
    } else {
        admin.proof(&request)
    };
    if proof == Proof::None {
        let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let mut response = next.run(request).await;
    if let (Proof::Query, Some(token)) = (proof, &admin.token) {
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    response
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    let (ready, body) = admin.readiness();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, &body)
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let kind = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, kind)], admin.metrics.render()).into_response()
}

async fn cameras(State(admin): State<Arc<Admin>>) -> Response {
    json(StatusCode::OK, &admin.cameras())
}

async fn camera(
    State(admin): State<Arc<Admin>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match admin.camera(&id).and_then(|i| admin.camera_detail(i, &id)) {
        Some(v) => json(StatusCode::OK, &v),
        None => text(StatusCode::NOT_FOUND, "no such camera"),
    }
}

/// Accepted connections with a write timeout (a peer that stops reading is dropped).
struct Timeouts(TcpListener);

impl axum::serve::Listener for Timeouts {
    type Io = Pin<Box<TimeoutStream<TcpStream>>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let mut stream = TimeoutStream::new(stream);
                    stream.set_write_timeout(Some(WRITE_TIMEOUT));
                    return (Box::pin(stream), addr);
                }
                // Out of descriptors, or a connection reset before it was taken.
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
