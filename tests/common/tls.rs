//! A TLS-enabled mosquitto with certificates made by openssl at test time.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::stable_port;

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

/// mosquitto with a TLS listener (certificate for 127.0.0.1 signed by `ca.crt`; an
/// unrelated `rogue.crt` CA beside it), a plain listener, a password file with the user
/// `daemon` (password `s3cure-pass`) and an ACL that lets it use `sec/#` only.
pub struct TlsBroker {
    pub dir: tempfile::TempDir,
    pub tls_port: u16,
    pub plain_port: u16,
    child: std::process::Child,
}

impl TlsBroker {
    pub fn start() -> TlsBroker {
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

    /// A file of the broker's directory (`ca.crt`, `rogue.crt`, ...).
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
