//! Source strings and URL redaction. Any string parses to a source and prints without a
//! panic; for a URL with a password (any characters but `@`, even an unencoded `/`, `?`,
//! `#` or `:`), `redact_url` gives the URL with exactly `user:***` in place of the
//! userinfo, and `scrub` leaves no copy of the password in a message that quotes it.
#![no_main]

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use streamclassd::capture::{redact_url, scrub, Source};

const SCHEMES: &[&str] = &[
    "rtsp://", "RTSP://", "rtsps://", "http://", "https://", "rtmp://", "srt://",
];

/// A URL with a password, from parts.
#[derive(Arbitrary, Debug)]
struct Parts {
    scheme: u8,
    user: String,
    password: String,
    host_and_path: String,
    before: String,
    after: String,
}

// The input is a camera's `source` string (so real ones seed the corpus); the same
// bytes, read as `arbitrary` data, give the parts of a URL with a password.
fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let source = Source::parse(&raw, Path::new("/etc/streamclassd"));
    let shown = source.to_string();
    let _ = redact_url(&raw);
    let _ = scrub(&format!("error: {raw}"), &source);
    if let Source::Network(url) = &source {
        assert_eq!(shown, redact_url(url));
    }

    let Ok(parts) = Parts::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let user: String = parts
        .user
        .chars()
        .filter(|c| !matches!(c, ':' | '@'))
        .collect();
    let password: String = parts.password.chars().filter(|c| *c != '@').collect();
    let rest: String = parts.host_and_path.chars().filter(|c| *c != '@').collect();
    if password.is_empty() || password.contains('*') {
        return; // "***" itself (a password of stars would match inside it)
    }
    let scheme = SCHEMES[usize::from(parts.scheme) % SCHEMES.len()];
    let url = format!("{scheme}{user}:{password}@{rest}");
    assert_eq!(
        redact_url(&url),
        format!("{scheme}{user}:***@{rest}"),
        "{url:?}"
    );
    let source = Source::parse(&url, Path::new("/"));
    assert!(matches!(source, Source::Network(_)));
    assert!(
        !source.to_string().contains(&format!(":{password}@")),
        "{url:?}"
    );
    let message = format!("{}{url}{}: {password}", parts.before, parts.after);
    let clean = scrub(&message, &source);
    assert!(!clean.contains(&password), "{message:?} -> {clean:?}");
});
