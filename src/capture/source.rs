//! What a camera's `source` string names, and how to print it without its secrets.

use std::fmt;
use std::path::{Path, PathBuf};

/// A video source, parsed from a camera's `source` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A network stream (`rtsp://`, `rtsps://`, `http://`, `https://`, `rtmp://`, `udp://`,
    /// `tcp://`, `srt://`). Live: may contain credentials in its userinfo.
    Network(String),
    /// A local capture device: `/dev/videoN` or a bare index such as `0`. Live.
    Device(Device),
    /// A video file, read as a replay: no frame is dropped.
    File(PathBuf),
}

/// A V4L2 device, by index or by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Index(i32),
    Path(PathBuf),
}

const NETWORK_SCHEMES: &[&str] = &[
    "rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://", "srt://",
];

impl Source {
    /// Parses a `source` string. Relative file paths are joined to `base` (the config
    /// file's directory).
    pub fn parse(raw: &str, base: &Path) -> Source {
        let lower = raw.to_ascii_lowercase();
        if NETWORK_SCHEMES.iter().any(|s| lower.starts_with(s)) {
            return Source::Network(raw.to_owned());
        }
        if let Ok(index) = raw.parse::<i32>() {
            if index >= 0 {
                return Source::Device(Device::Index(index));
            }
        }
        if raw.starts_with("/dev/video") {
            return Source::Device(Device::Path(PathBuf::from(raw)));
        }
        let path = Path::new(raw);
        if path.is_absolute() {
            Source::File(path.to_path_buf())
        } else {
            Source::File(base.join(path))
        }
    }

    /// Live sources drop stale frames; files are replayed without loss.
    pub fn is_live(&self) -> bool {
        !matches!(self, Source::File(_))
    }
}

/// Shows a source with any URL password replaced by `***`: safe for logs and payloads.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Network(url) => f.write_str(&redact_url(url)),
            Source::Device(Device::Index(i)) => write!(f, "device {i}"),
            Source::Device(Device::Path(p)) | Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Replaces the userinfo of a URL with `user:***` (or `***` when there is no `:`), leaving
/// the rest intact. Strings that are not URLs are returned unchanged.
///
/// The userinfo ends at the URL's *last* `@`, wherever it is: a password written with an
/// unencoded `/`, `?`, `#` or `@` would otherwise end the authority early and be shown.
/// The price is that a URL with an `@` in its path or query (and no password) is masked
/// up to that `@` too.
pub fn redact_url(url: &str) -> String {
    let Some((start, at)) = userinfo(url) else {
        return url.to_owned();
    };
    let masked = match url[start..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{masked}{}", &url[..start], &url[at..])
}

/// Removes every occurrence of a source's secrets from an arbitrary message (for example an
/// OpenCV error that echoes the URL back).
pub fn scrub(message: &str, source: &Source) -> String {
    match source {
        Source::Network(url) => {
            let redacted = redact_url(url);
            let mut out = message.replace(url.as_str(), &redacted);
            if let Some(password) = url_password(url) {
                if !password.is_empty() {
                    out = out.replace(password, "***");
                }
            }
            out
        }
        _ => message.to_owned(),
    }
}

/// The byte range of a URL's userinfo: from after `://` to its last `@` (see
/// [`redact_url`]); `None` without either.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let at = url[start..].rfind('@')?;
    Some((start, start + at))
}

fn url_password(url: &str) -> Option<&str> {
    let (start, at) = userinfo(url)?;
    url[start..at].split_once(':').map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let base = Path::new("/etc/streamclassd");
        assert_eq!(
            Source::parse("rtsp://cam/1", base),
            Source::Network("rtsp://cam/1".into())
        );
        assert_eq!(
            Source::parse("RTSP://cam/1", base),
            Source::Network("RTSP://cam/1".into())
        );
        assert_eq!(Source::parse("0", base), Source::Device(Device::Index(0)));
        assert_eq!(
            Source::parse("/dev/video2", base),
            Source::Device(Device::Path("/dev/video2".into()))
        );
        assert_eq!(
            Source::parse("clips/a.mp4", base),
            Source::File("/etc/streamclassd/clips/a.mp4".into())
        );
        assert_eq!(
            Source::parse("/srv/a.mp4", base),
            Source::File("/srv/a.mp4".into())
        );
        assert!(Source::parse("-1", base) == Source::File("/etc/streamclassd/-1".into()));
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("rtsp://user:secret@192.0.2.7/stream1"),
            "rtsp://user:***@192.0.2.7/stream1"
        );
        assert_eq!(
            redact_url("rtsp://u:p@ss@host:554/x?y=1"),
            "rtsp://u:***@host:554/x?y=1"
        );
        assert_eq!(redact_url("rtsp://token@host/x"), "rtsp://***@host/x");
        // An `@` after the host ends the userinfo too (a password may hold a raw `/`):
        // masked, never shown.
        assert_eq!(redact_url("rtsp://host/x@y"), "rtsp://***@y");
        assert_eq!(redact_url("rtsp://u:a/b@host/x"), "rtsp://u:***@host/x");
        assert_eq!(redact_url("/dev/video0"), "/dev/video0");
    }

    #[test]
    fn scrub_removes_password_anywhere() {
        let s = Source::Network("rtsp://admin:hunter2@cam/live".into());
        let msg = "open rtsp://admin:hunter2@cam/live failed; pw hunter2";
        let out = scrub(msg, &s);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("rtsp://admin:***@cam/live"));
    }
}
