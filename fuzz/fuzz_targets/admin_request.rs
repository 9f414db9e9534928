//! The admin listener's request path: any method, path, query and headers through the
//! real router (the token check, every route, the query parameters of the image
//! endpoints), with and without a token. A response always comes, with one of the
//! statuses the API documents; without the token only `/healthz` answers anything but
//! 401; no response body carries the token to a request that did not hold it.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use streamclassd::admin::Admin;
use streamclassd::metrics::Metrics;
use streamclassd::monitor::Monitor;
use streamclassd::pool::Pool;
use streamclassd::status::StatusBoard;
use tower::ServiceExt;

const TOKEN: &str = "s3cr3t-t0ken-9f2c";

struct Apps {
    open: Router,
    guarded: Router,
    runtime: tokio::runtime::Runtime,
}

fn apps() -> &'static Apps {
    static APPS: OnceLock<Apps> = OnceLock::new();
    APPS.get_or_init(|| {
        let status = Arc::new(StatusBoard::new());
        for id in ["cam", "a b", "ü"] {
            status.register(id);
        }
        let app = |token: Option<&str>| {
            Arc::new(Admin {
                metrics: Arc::new(Metrics::new(status.clone())),
                status: status.clone(),
                monitor: Arc::new(Monitor::new(Pool::new(2))),
                token: token.map(str::to_owned),
            })
            .router()
        };
        Apps {
            open: app(None),
            guarded: app(Some(TOKEN)),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    })
}

// The input is an HTTP/1 request head as a client sends it (so real requests seed the
// corpus), parsed by httparse as hyper parses it for the listener, then served by the
// router without a token and with one.
fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut head = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = head.parse(data) else {
        return;
    };
    let (Some(method), Some(uri)) = (head.method, head.path) else {
        return;
    };
    let mut request = Request::builder().method(method).uri(uri);
    for h in head.headers.iter() {
        request = request.header(h.name, h.value);
    }
    let Ok(request) = request.body(Body::empty()) else {
        return; // not a request hyper would hand over (bad method, URI or header)
    };
    // A request that holds the token anywhere may prove itself (checked loosely), and
    // may see its own text echoed back (an unknown parameter is named in the 400).
    let knows = String::from_utf8_lossy(data).contains(TOKEN);
    let apps = apps();
    for guarded in [false, true] {
        let app = if guarded { &apps.guarded } else { &apps.open };
        serve(apps, app, copy(&request), guarded, knows);
    }
});

fn copy(request: &Request<Body>) -> Request<Body> {
    let mut r = Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone())
        .body(Body::empty())
        .expect("a copy of a valid request");
    *r.headers_mut() = request.headers().clone();
    r
}

fn serve(apps: &Apps, app: &Router, request: Request<Body>, guarded: bool, knows: bool) {
    let what = format!("{} {}", request.method(), request.uri());
    let path = request.uri().path().to_owned();
    apps.runtime.block_on(async {
        let response = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(request))
            .await
            .expect("a response within 5 s")
            .expect("infallible");
        let status = response.status();
        assert!(
            [200, 304, 400, 401, 404, 405, 416, 503].contains(&status.as_u16()),
            "{what}: {status}"
        );
        if guarded && !knows && path != "/healthz" {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without the token");
        }
        let endless = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream") || t.starts_with("multipart/"));
        if endless {
            return; // a stream, by design; dropped here, as a viewer leaving
        }
        let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
            .await
            .expect("the body within 5 s")
            .expect("a body")
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(
            knows || !text.contains(TOKEN),
            "{what}: the token in the body"
        );
    });
}
