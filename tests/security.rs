//! MQTT over TLS against a real mosquitto configured by the harness: a CA and server
//! certificate made with openssl at test time, a password file and an ACL that allows
//! only the daemon's prefix. Valid credentials publish; anonymous, a wrong password and an
//! untrusted server certificate are each refused with a clear error and retried.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{config, fixtures, stable_port, Daemon, Subscriber, PATIENCE};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=streamclassd test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rogue.key",
            "-out",
            "rogue.crt",
            "-days",
            "2",
            "-subj",
            "/CN=somebody else's CA",
        ],
    );
}

struct TlsBroker {
    dir: tempfile::TempDir,
    tls_port: u16,
    plain_port: u16,
    child: std::process::Child,
}

impl TlsBroker {
    fn start() -> TlsBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        certificates(d);
        let pw = d.join("passwd");
        std::fs::write(&pw, "").expect("passwd");
        let ok = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&pw)
            .args(["daemon", "s3cure-pass"])
            .status()
            .expect("mosquitto_passwd");
        assert!(ok.success());
        std::fs::write(d.join("acl"), "user daemon\ntopic readwrite sec/#\n").expect("acl");
        let (tls_port, plain_port) = (stable_port(), stable_port());
        std::fs::write(
            d.join("mosquitto.conf"),
            format!(
                "per_listener_settings false\nallow_anonymous false\npersistence false\n\
                 password_file {pw}\nacl_file {acl}\nmax_queued_messages 100000\n\
                 listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n\
                 listener {plain_port} 127.0.0.1\n",
                pw = pw.display(),
                acl = d.join("acl").display(),
                ca = d.join("ca.crt").display(),
                crt = d.join("server.crt").display(),
                key = d.join("server.key").display(),
            ),
        )
        .expect("conf");
        // mosquitto drops root for its own user, which must read these files.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for f in std::fs::read_dir(d).expect("dir").flatten() {
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(d.join("mosquitto.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto");
        for port in [tls_port, plain_port] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "mosquitto did not start"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        TlsBroker {
            dir,
            tls_port,
            plain_port,
            child,
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
