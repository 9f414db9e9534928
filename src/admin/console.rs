//! The console and its event stream. The console is three static files embedded in the
//! binary (`src/admin/console/`: plain HTML, CSS and JavaScript, no build step, nothing
//! fetched from elsewhere) that read the API. `/api/events` is Server-Sent Events: each
//! classification as published on MQTT (`seq` included) and each camera status; a client
//! that falls [`KEPT`](crate::monitor::events::KEPT) events behind is dropped (a browser's
//! `EventSource` reconnects by itself).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::images::Viewer;
use super::{text, Admin};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

pub(super) async fn events(State(admin): State<Arc<Admin>>) -> Response {
    let Some(viewer) = Viewer::open(&admin.metrics) else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many streams open");
    };
    let rx = admin.monitor.events.subscribe();
    let stream = futures_util::stream::unfold((rx, viewer), |(mut rx, viewer)| async move {
        // Lagged (too slow) or closed: the stream ends, and the client with it.
        let e = rx.recv().await.ok()?;
        let event = Event::default().event(e.kind).data(&*e.data);
        Some((Ok::<_, Infallible>(event), (rx, viewer)))
    });
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    let mut r = Sse::new(stream).keep_alive(keep_alive).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
