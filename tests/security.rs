//! MQTT over TLS against a real mosquitto configured by the harness: a CA and server
//! certificate made with openssl at test time, a password file and an ACL that allows
//! only the daemon's prefix. Valid credentials publish; anonymous, a wrong password and an
//! untrusted server certificate are each refused with a clear error and retried. The admin
//! listener's bearer token guards everything but `/healthz`.

mod common;

use std::path::Path;

use common::tls::TlsBroker;
use common::{config, fixtures, http_get_with, Broker, Daemon, RtspServer, Subscriber, PATIENCE};

/// Daemon config for the TLS listener; `auth` = (user, password) or none.
fn tls_config(b: &TlsBroker, ca: &str, auth: Option<(&str, &str)>, dir: &Path) -> String {
    let clip = fixtures().join("clip.mp4").display().to_string();
    let mut mqtt = format!("qos = 1\ntls = true\nca_file = \"{}\"\n", b.file(ca));
    if let Some((user, pw)) = auth {
        let path = dir.join("pw");
        std::fs::write(&path, format!("{pw}\n")).expect("pw");
        mqtt += &format!(
            "username = \"{user}\"\npassword_file = \"{}\"\n",
            path.display()
        );
    }
    config(b.tls_port, "sec", &[("cam", &clip, 5.0)], "").replace("qos = 1\n", &mqtt)
}

#[test]
fn tls_with_valid_credentials_publishes_under_the_prefix_only() {
    let b = TlsBroker::start();
    let sub = Subscriber::connect_auth(b.plain_port, "#", "daemon", "s3cure-pass");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(&tls_config(
        &b,
        "ca.crt",
        Some(("daemon", "s3cure-pass")),
        dir.path(),
    ));
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(sub.wait_until(PATIENCE, |m| m
        .iter()
        .filter(|m| m.topic == "sec/cam/labels")
        .count()
        == 10));
    // The subscriber may read every topic ("#"); the daemon wrote only under its prefix.
    let topics: Vec<String> = sub
        .messages()
        .into_iter()
        .map(|m| m.topic)
        .filter(|t| !t.starts_with("$connack"))
        .collect();
    assert!(topics.iter().all(|t| t.starts_with("sec/")), "{topics:?}");
    assert!(!log.contains("s3cure-pass"));
}

fn assert_refused(config: &str, needle: &str) {
    let mut d = Daemon::start_with(config, &["--shutdown-grace", "2s"], &[]);
    let status = d.wait();
    let log = d.stderr();
    assert_eq!(status.code(), Some(75), "{log}");
    let attempts = log.matches(needle).count();
    assert!(
        attempts >= 2,
        "expected {needle:?} retried with backoff, got {attempts}:\n{log}"
    );
}

#[test]
fn anonymous_wrong_password_and_untrusted_certificate_are_refused_and_retried() {
    let b = TlsBroker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    assert_refused(
        &tls_config(&b, "ca.crt", None, dir.path()),
        "broker refused the connection: not authorized",
    );
    assert_refused(
        &tls_config(&b, "ca.crt", Some(("daemon", "guess")), dir.path()),
        "broker refused the connection: not authorized",
    );
    // The broker's certificate does not chain to the configured CA.
    assert_refused(
        &tls_config(&b, "rogue.crt", Some(("daemon", "s3cure-pass")), dir.path()),
        "UnknownIssuer",
    );
}

#[test]
fn the_admin_token_guards_everything_but_healthz() {
    const TOKEN: &str = "s3cret-admin-T0ken";
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("admin-token"), format!("{TOKEN}\n")).expect("token");
    let admin = common::stable_port();
    let server = RtspServer::start(&fixtures().join("clip.mp4"));
    let cfg = config(broker.port, "tok", &[("cam", &server.url(""), 5.0)], "")
        + &format!(
            "\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"{}\"\n",
            dir.path().join("admin-token").display()
        );
    let mut d = Daemon::start(&cfg);
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{}", d.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let bearer = format!("Bearer {TOKEN}");
    let mut seen = String::new();
    for path in ["/metrics", "/readyz", "/api/cameras"] {
        for headers in [vec![], vec![("Authorization", "Bearer wrong")]] {
            let (code, head, body) = http_get_with(admin, path, &headers);
            assert_eq!(code, 401, "{path} {headers:?}: {body}");
            let challenge = common::header_value(&head, "WWW-Authenticate");
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{head}");
            seen += &body;
        }
        let (code, _, body) = http_get_with(admin, path, &[("Authorization", &bearer)]);
        assert!(
            code == 200 || (path == "/readyz" && code == 503),
            "{path}: {code} {body}"
        );
        seen += &body;
    }
    let (code, _, body) = http_get_with(admin, "/healthz", &[]);
    assert_eq!((code, body.trim()), (200, "ok"));
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
    assert!(
        !seen.contains(TOKEN) && !d.stderr().contains(TOKEN),
        "the token leaked"
    );
}
