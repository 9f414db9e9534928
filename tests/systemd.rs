//! The systemd units and their companions, checked with systemd's own tools (Debian
//! package `systemd`, which scripts/setup installs): `systemd-analyze verify` accepts both
//! units without a warning, `systemd-analyze security` rates their sandbox at an exposure
//! level of at most 2.0 (so a weakened setting fails here), the service behaviour the
//! daemon relies on is configured, and systemd-sysusers / systemd-tmpfiles accept the
//! sysusers.d and tmpfiles.d files and create what the units expect.
//!
//! None of this needs systemd running as PID 1.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Highest acceptable "Overall exposure level" (0.0 = fully sandboxed, 10.0 = none).
const MAX_EXPOSURE: f64 = 2.0;

const UNITS: [&str; 2] = ["streamclassd.service", "streamclassd@.service"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn unit_text(name: &str) -> String {
    let path = repo().join("systemd").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a systemd tool; a missing tool fails with what to install.
fn run(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{program} not found: install the Debian package `systemd` (scripts/setup does)")
        }
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The unit files copied to `dir` with ExecStart= pointing at the binary cargo built:
/// `verify` insists that the program exists. The template is also instantiated, so that
/// its `%i` paths are resolved as for a real instance.
fn staged_units(dir: &Path) -> Vec<PathBuf> {
    let bin = env!("CARGO_BIN_EXE_streamclassd");
    assert!(
        Path::new(bin).is_file(),
        "{bin} missing: cargo builds it before the tests"
    );
    let mut files = Vec::new();
    for (src, dst) in [
        ("streamclassd.service", "streamclassd.service"),
        ("streamclassd@.service", "streamclassd@.service"),
        ("streamclassd@.service", "streamclassd@front-door.service"),
    ] {
        let body = unit_text(src);
        assert!(
            body.contains("ExecStart=/usr/bin/streamclassd "),
            "{src}: ExecStart= must run /usr/bin/streamclassd (the Makefile rewrites it for other prefixes)"
        );
        let path = dir.join(dst);
        std::fs::write(&path, body.replace("/usr/bin/streamclassd", bin)).expect("write unit");
        files.push(path);
    }
    files
}

#[test]
fn systemd_analyze_verify_accepts_both_units() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = staged_units(dir.path());
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--recursive-errors=no"])
        .args(files));
    let report = text(&out);
    println!("systemd-analyze verify:\n{report}");
    // Some problems (an unknown key, a value that does not parse) are only warnings and
    // leave the exit status at 0; a line about our units is a failure too. Lines about
    // other installed units (dependencies) are not ours to judge.
    let ours: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("streamclassd"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify complains ({}):\n{}",
        out.status,
        ours.join("\n")
    );
}

/// `systemd-analyze security --offline=true`'s overall exposure level of a unit file.
fn exposure(file: &Path) -> (f64, String) {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(file));
    let report = text(&out);
    assert!(
        out.status.success(),
        "systemd-analyze security failed:\n{report}"
    );
    let level = report
        .lines()
        .find_map(|l| {
            let rest = &l[l.find("Overall exposure level for ")?..];
            let (_, value) = rest.split_once(": ")?;
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("no \"Overall exposure level\" in:\n{report}"));
    (level, report)
}

#[test]
fn exposure_level_is_at_most_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in staged_units(dir.path()) {
        let (level, report) = exposure(&file);
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        println!("{name}: overall exposure level {level:.1} (limit {MAX_EXPOSURE:.1})");
        // The findings that count against the unit, for the log.
        for l in report.lines().filter(|l| l.starts_with('✗')) {
            println!("  {}", l.trim_end());
        }
        assert!(
            level <= MAX_EXPOSURE,
            "{name}: exposure level {level} above {MAX_EXPOSURE}: a hardening setting was \
             weakened or removed\n{report}"
        );
    }
}

/// `Key=value` assignments of a unit file, comments skipped.
fn settings(body: &str) -> Vec<(String, String)> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn values<'a>(s: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    s.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn units_configure_what_the_daemon_relies_on() {
    for name in UNITS {
        let s = settings(&unit_text(name));
        let one = |key: &str| -> String {
            let v = values(&s, key);
            assert_eq!(
                v.len(),
                1,
                "{name}: expected exactly one {key}=, found {v:?}"
            );
            v[0].to_owned()
        };
        // READY=1 after warm-up, WATCHDOG=1 while frames flow, STATUS= lines.
        assert_eq!(one("Type"), "notify", "{name}");
        assert_eq!(one("NotifyAccess"), "main", "{name}");
        assert_eq!(one("WatchdogSec"), "30s", "{name}");
        assert_eq!(one("Restart"), "on-failure", "{name}");
        assert!(
            one("RestartPreventExitStatus")
                .split_whitespace()
                .any(|c| c == "64"),
            "{name}: a configuration error (exit 64) must not be restarted"
        );
        // RestartPreventExitStatus= only looks at the main process: a check-config in
        // ExecStartPre= failing with 64 would be restarted every RestartSec= forever.
        assert!(
            values(&s, "ExecStartPre").is_empty(),
            "{name}: ExecStartPre= defeats RestartPreventExitStatus=64"
        );
        assert!(
            values(&s, "Environment")
                .contains(&"ORT_DYLIB_PATH=/usr/lib/streamclassd/libonnxruntime.so"),
            "{name}: the bundled ONNX Runtime"
        );
        assert_eq!(one("User"), "streamclassd", "{name}");
        assert_eq!(one("SupplementaryGroups"), "video", "{name}");
        assert_eq!(one("DevicePolicy"), "closed", "{name}");
        // video4linux's fixed major, not a name looked up in /proc/devices at start.
        assert_eq!(one("DeviceAllow"), "char-81 rw", "{name}");
        assert_eq!(one("MemoryDenyWriteExecute"), "yes", "{name}");
        assert_eq!(one("UMask"), "0077", "{name}");
        // The password comes from the credential store by name: a missing one is skipped
        // (a missing absolute path would fail the start with 243/CREDENTIALS).
        let cred = one("LoadCredential");
        let (id, source) = cred.split_once(':').expect("LoadCredential=ID:SOURCE");
        assert_eq!(
            id, "mqtt-password",
            "{name}: the id [mqtt] password_credential names"
        );
        assert!(
            !source.starts_with('/'),
            "{name}: LoadCredential={cred}: an absolute path fails the start when the file \
             is missing; use a credential store name"
        );
        let state = one("StateDirectory");
        assert!(
            state.split_whitespace().next() == Some("streamclassd"),
            "{name}: StateDirectory={state}"
        );
        assert!(
            one("RestrictAddressFamilies")
                .split_whitespace()
                .collect::<Vec<_>>()
                == ["AF_UNIX", "AF_INET", "AF_INET6"],
            "{name}"
        );
    }
    let plain = settings(&unit_text("streamclassd.service"));
    assert_eq!(
        values(&plain, "ExecStart"),
        ["/usr/bin/streamclassd run --config /etc/streamclassd/streamclassd.toml"]
    );
    let template = settings(&unit_text("streamclassd@.service"));
    assert_eq!(
        values(&template, "ExecStart"),
        ["/usr/bin/streamclassd run --config /etc/streamclassd/%i.toml"]
    );
    assert_eq!(values(&template, "SyslogIdentifier"), ["streamclassd-%i"]);
    assert_eq!(
        values(&template, "StateDirectory"),
        ["streamclassd streamclassd/%i"]
    );
    assert!(values(&template, "Description")[0].contains("%i"));
    assert!(values(&template, "LoadCredential")[0].contains("%i"));
}

fn is_root() -> bool {
    let out = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// uid or gid of `name` in a passwd/group file.
fn id_in(file: &Path, name: &str) -> u32 {
    let body = std::fs::read_to_string(file).expect("read passwd/group");
    body.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().expect("numeric id"))
        })
        .unwrap_or_else(|| panic!("{name} not in {}:\n{body}", file.display()))
}

#[test]
fn sysusers_and_tmpfiles_create_user_and_state_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("etc")).expect("etc");
    let sysusers = repo().join("systemd/streamclassd.sysusers");
    let out = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(sysusers));
    println!("systemd-sysusers:\n{}", text(&out));
    assert!(
        out.status.success(),
        "systemd-sysusers failed:\n{}",
        text(&out)
    );

    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("streamclassd:"))
        .unwrap_or_else(|| panic!("no user streamclassd in\n{passwd}"));
    let f: Vec<&str> = user.split(':').collect();
    assert_eq!(f[5], "/", "home: nothing is kept there ({user})");
    assert!(f[6].ends_with("nologin"), "no login shell ({user})");
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    let video = group
        .lines()
        .find(|l| l.starts_with("video:"))
        .unwrap_or_else(|| panic!("no group video in\n{group}"));
    assert!(
        video
            .rsplit(':')
            .next()
            .expect("members")
            .split(',')
            .any(|m| m == "streamclassd"),
        "streamclassd must be in group video (cameras): {video}"
    );
    assert!(
        group.lines().any(|l| l.starts_with("streamclassd:")),
        "{group}"
    );

    if !is_root() {
        println!("systemd-tmpfiles --create skipped: it must run as root to chown");
        return;
    }
    let tmpfiles = repo().join("systemd/streamclassd.tmpfiles");
    let out = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(tmpfiles));
    assert!(
        out.status.success(),
        "systemd-tmpfiles failed:\n{}",
        text(&out)
    );
    let uid = id_in(&root.path().join("etc/passwd"), "streamclassd");
    let gid = id_in(&root.path().join("etc/group"), "streamclassd");
    // As StateDirectory=streamclassd + StateDirectoryMode=0750 expect (otherwise systemd
    // would chown the whole tree, models included, at the first start).
    let state = std::fs::metadata(root.path().join("var/lib/streamclassd")).expect("state dir");
    assert_eq!(
        (state.uid(), state.gid()),
        (uid, gid),
        "owner of /var/lib/streamclassd"
    );
    assert_eq!(state.permissions().mode() & 0o7777, 0o750);
    let models =
        std::fs::metadata(root.path().join("var/lib/streamclassd/models")).expect("models dir");
    assert_eq!(
        (models.uid(), models.gid()),
        (0, 0),
        "models are root's, read-only to the daemon"
    );
    assert_eq!(models.permissions().mode() & 0o7777, 0o755);
}
