//! `/api/cameras/{id}/latest.jpg` and `/api/cameras/{id}/stream.mjpeg`: the camera's last
//! classified frame as JPEG, each encoded once per frame and way of asking (cached on the
//! shot), on the runtime's blocking pool. Asking keeps the camera watched (its frames are
//! kept until classified) for the next [`WATCH_FOR`](crate::monitor::frames::WATCH_FOR).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::api::millis;
use super::{text, Admin, MAX_STREAMS};
use crate::metrics::Metrics;
use crate::monitor::frames::{JpegKey, Shot};
use crate::monitor::jpeg::HEIGHTS;

/// How often at most an MJPEG stream re-marks its camera as watched while no frame comes.
const REWATCH: Duration = Duration::from_secs(5);
const BOUNDARY: &str = "streamclassd-frame";

/// What a request asks for.
#[derive(Debug, PartialEq)]
struct Asked {
    key: JpegKey,
    /// MJPEG only: frames per second at most.
    fps: Option<f64>,
}

/// Parses `h`, `q`, `overlay` (and, for a stream, `fps`); `token` and `_` (a cache
/// buster) are allowed and ignored. The error names the parameter.
fn parse(params: &[(String, String)], stream: bool) -> Result<Asked, String> {
    let mut asked = Asked {
        key: JpegKey {
            height: None,
            quality: 75,
            overlay: false,
        },
        fps: None,
    };
    for (name, value) in params {
        match name.as_str() {
            "h" => match value.parse::<u32>() {
                Ok(h) if HEIGHTS.contains(&h) => asked.key.height = Some(h),
                _ => {
                    return Err(format!(
                        "h: expected a height in pixels from {} to {}, got {value:?}",
                        HEIGHTS.start(),
                        HEIGHTS.end()
                    ))
                }
            },
            "q" => match value.parse::<u8>() {
                Ok(q @ 1..=100) => asked.key.quality = q,
                _ => {
                    return Err(format!(
                        "q: expected a JPEG quality from 1 to 100, got {value:?}"
                    ))
                }
            },
            "overlay" => match value.as_str() {
                "1" | "true" => asked.key.overlay = true,
                "0" | "false" => asked.key.overlay = false,
                _ => return Err(format!("overlay: expected 0 or 1, got {value:?}")),
            },
            "fps" if stream => match value.parse::<f64>() {
                Ok(f) if f > 0.0 && f <= 30.0 => asked.fps = Some(f),
                _ => {
                    return Err(format!(
                        "fps: expected frames per second above 0 and at most 30, got {value:?}"
                    ))
                }
            },
            "token" | "_" => {}
            other => return Err(format!("{other}: unknown parameter")),
        }
    }
    Ok(asked)
}

impl Admin {
    /// The JPEG of `shot` (camera `camera`'s) for `key`: made once, on the blocking pool.
    pub(super) async fn jpeg(
        self: &Arc<Admin>,
        camera: usize,
        shot: Arc<Shot>,
        key: JpegKey,
    ) -> Result<Bytes, String> {
        let overlay = key.overlay.then(|| self.monitor.overlay(camera));
        let metrics = self.metrics.clone();
        let made = tokio::task::spawn_blocking(move || {
            shot.render(key, overlay.as_ref(), &metrics.jpeg_encode_seconds)
        })
        .await;
        match made {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The camera of `id` and what the request asks for, or the response that says why not.
    fn asked(
        &self,
        id: &str,
        params: &[(String, String)],
        stream: bool,
    ) -> Result<(usize, Asked), (StatusCode, String)> {
        let Some(camera) = self.camera(id) else {
            return Err((StatusCode::NOT_FOUND, "no such camera".into()));
        };
        let asked = parse(params, stream).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        Ok((camera, asked))
    }
}

/// The headers that tie an image to its MQTT message.
fn frame_headers(headers: &mut HeaderMap, shot: &Shot) {
    let (w, h) = shot.size();
    for (name, value) in [
        ("x-frame", shot.frame.to_string()),
        ("x-captured-at", millis(shot.captured_at)),
        ("x-frame-width", w.to_string()),
        ("x-frame-height", h.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

pub(super) async fn latest(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let (camera, asked) = match admin.asked(&id, &params, false) {
        Ok(a) => a,
        Err((code, why)) => return text(code, &why),
    };
    admin.monitor.frames.watch(camera);
    let Some(shot) = admin.monitor.frames.shot(camera) else {
        let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "no classified frame yet");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    match admin.jpeg(camera, shot.clone(), asked.key).await {
        Ok(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            let headers = r.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            frame_headers(headers, &shot);
            r
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode: {e}"),
        ),
    }
}

/// Counts an open stream in `streamclassd_viewers` for as long as it lives.
pub(super) struct Viewer(Arc<Metrics>);

impl Viewer {
    /// `None` when [`MAX_STREAMS`] are open.
    pub(super) fn open(metrics: &Arc<Metrics>) -> Option<Viewer> {
        if metrics.viewers.inc() >= MAX_STREAMS {
            metrics.viewers.dec();
            return None;
        }
        Some(Viewer(metrics.clone()))
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.viewers.dec();
    }
}

/// One MJPEG client's stream.
struct Mjpeg {
    admin: Arc<Admin>,
    camera: usize,
    asked: Asked,
    shots: tokio::sync::watch::Receiver<Option<Arc<Shot>>>,
    last: Option<Instant>,
    _viewer: Viewer,
}

impl Mjpeg {
    /// The next part: the next classified frame (no sooner than `fps` allows), or `None`
    /// when the camera's frames can no longer come (the daemon stops, or a reload removed
    /// the camera: the stream ends and its place among `MAX_STREAMS` is free).
    async fn next(&mut self) -> Option<Bytes> {
        let frames = &self.admin.monitor.frames;
        loop {
            if !self.admin.status.is_active(self.camera) {
                return None;
            }
            frames.watch(self.camera);
            match tokio::time::timeout(REWATCH, self.shots.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => continue,
            }
            if let (Some(fps), Some(last)) = (self.asked.fps, self.last) {
                let wait = Duration::from_secs_f64(1.0 / fps).saturating_sub(last.elapsed());
                tokio::time::sleep(wait).await;
            }
            let Some(shot) = self.shots.borrow_and_update().clone() else {
                continue;
            };
            self.last = Some(Instant::now());
            let jpeg = self
                .admin
                .jpeg(self.camera, shot.clone(), self.asked.key)
                .await
                .ok()?;
            let head = format!(
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame: {}\r\nX-Captured-At: {}\r\n\r\n",
                jpeg.len(),
                shot.frame,
                millis(shot.captured_at)
            );
            let mut part = Vec::with_capacity(head.len() + jpeg.len() + 2);
            part.extend_from_slice(head.as_bytes());
            part.extend_from_slice(&jpeg);
            part.extend_from_slice(b"\r\n");
            return Some(Bytes::from(part));
        }
    }
}

pub(super) async fn mjpeg(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let (camera, asked) = match admin.asked(&id, &params, true) {
        Ok(a) => a,
        Err((code, why)) => return text(code, &why),
    };
    let Some(viewer) = Viewer::open(&admin.metrics) else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many streams open");
    };
    let mut shots = admin.monitor.frames.follow(camera);
    // The frame kept now, if any, goes first.
    shots.mark_changed();
    let stream = Mjpeg {
        admin: admin.clone(),
        camera,
        asked,
        shots,
        last: None,
        _viewer: viewer,
    };
    // One part is made only when the connection has taken the last: a slow client holds
    // at most one frame, and one that stops reading is dropped by the write timeout.
    let parts = futures_util::stream::unfold(stream, |mut s| async move {
        let part = s.next().await?;
        Some((Ok::<_, Infallible>(part), s))
    });
    let kind = format!("multipart/x-mixed-replace; boundary={BOUNDARY}");
    let mut r = Response::new(Body::from_stream(parts));
    let headers = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&kind) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn parameters_are_checked_and_a_bad_one_is_named() {
        let a = parse(&params("h=240&q=60&overlay=1&_=17&token=x"), false).expect("valid");
        assert_eq!(
            a.key,
            JpegKey {
                height: Some(240),
                quality: 60,
                overlay: true
            }
        );
        let plain = parse(&params(""), false).expect("defaults");
        assert_eq!(
            (plain.key.height, plain.key.quality, plain.key.overlay),
            (None, 75, false)
        );
        for (q, name) in [
            ("h=0", "h:"),
            ("h=tall", "h:"),
            ("q=0", "q:"),
            ("q=101", "q:"),
            ("overlay=yes", "overlay:"),
            ("fps=2", "fps:"),
            ("width=3", "width:"),
        ] {
            let e = parse(&params(q), false).expect_err(q);
            assert!(e.starts_with(name), "{q}: {e}");
        }
        assert_eq!(
            parse(&params("fps=2"), true).expect("a stream's").fps,
            Some(2.0)
        );
        assert!(parse(&params("fps=0"), true).is_err());
    }
}
